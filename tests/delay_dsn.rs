//! InternalDelayDsnEnabled and ExternalDelayDsnEnabled (Set-TransportServer) each decide the delay
//! DSN for their own senders: one of the organisation's (an Authoritative or InternalRelay domain),
//! or anyone else.

mod common;

use common::mail::*;
use common::peers::Sink;
use common::*;

const EXTERNAL_SENDER: &str = "someone@partner.example";

async fn delay_notified(gw: &Gateway, address: &str) -> Option<bool> {
    sqlx::query_scalar("SELECT delay_notified FROM message_recipient WHERE address = $1")
        .bind(address)
        .fetch_optional(gw.pool())
        .await
        .unwrap()
}

#[tokio::test]
async fn internal_delay_dsn_disabled_spares_internal_senders_only() {
    let port = peer_port();
    // The partner's server, up: where the external sender's delay DSN goes.
    let partner = Sink::start(addr("127.0.0.82", port));
    let s = setup().await;
    configure(
        &s,
        &[
            "New-AcceptedDomain -Name Customer -DomainName customer.example -DomainType ExternalRelay",
            // Nothing listens on 127.0.0.81: the customer's server stays down.
            &format!(
                "New-SendConnector -Name 'Customer primary' -AddressSpaces 'customer.example' -DNSRoutingEnabled $false -SmartHosts '127.0.0.81' -Port {port}"
            ),
            &format!(
                "New-SendConnector -Name Partner -AddressSpaces 'partner.example' -DNSRoutingEnabled $false -SmartHosts '127.0.0.82' -Port {port}"
            ),
            "Set-TransportServer HUB1 -InternalDelayDsnEnabled $false -ExternalDelayDsnEnabled $true -TransientFailureRetryInterval 00:00:01 -OutboundConnectionFailureRetryInterval 00:00:01 -MessageRetryInterval 00:00:01 -DelayNotificationTimeout 00:00:02",
        ],
    )
    .await;
    let gw = s.start().await;
    // The internal sender's message first: its delay is due no later than the external one's.
    send(&gw, &["in@customer.example"], "from inside");
    let server = gw.smtp().to_string();
    let (ok, out) = swaks(&[
        "--server",
        &server,
        "--from",
        EXTERNAL_SENDER,
        "--to",
        "out@customer.example",
        "--header",
        "Subject: from outside",
        "--body",
        "hello",
    ]);
    assert!(ok, "swaks failed: {out}");

    within(
        60,
        "the external sender's delay DSN at the partner",
        || async {
            partner.received().iter().any(|m| {
                m.rcpt_tos == [EXTERNAL_SENDER]
                    && (m.data.contains("Delivery delayed")
                        || m.data.contains("Delivery is delayed"))
            })
        },
    )
    .await;
    // The same timer pass that noticed the external message's delay passed over the internal one,
    // due earlier: it was not notified, and the sender's mailbox has no delay DSN.
    assert_eq!(
        delay_notified(&gw, "out@customer.example").await,
        Some(true)
    );
    assert_eq!(
        delay_notified(&gw, "in@customer.example").await,
        Some(false)
    );
    let dir = gw.data_dir();
    assert!(
        !mailbox(&dir, SENDER)
            .iter()
            .any(|m| m.contains("Delivery delayed")),
        "an internal sender got a delay DSN"
    );
}
