//! Shadow redundancy, the primary's side (reference §1.2, §1.3; identity-and-rights.md "Shadow
//! redundancy gates"): a real `hubgate serve` as org2, a raw-socket client playing org1's shadow
//! server, real aiosmtpd next hops, real PostgreSQL.

mod common;

use std::net::SocketAddr;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use common::mail::*;
use common::peers::{Sink, SinkOptions};
use common::*;
use uuid::Uuid;

/// The receive connector org1's gateway reaches: secured outside SMTP, so its sessions are
/// Externally Secured Servers from connect time, and Exchange's Accept-XShadow granted to them.
const FROM_ORG1: &str = "HUB1\\From Org1";

/// A gateway with the "From Org1" connector (ExternalAuthoritative, ExchangeServers, protocol
/// log on, no tarpit, no limit on protocol errors, no delayed acknowledgement: held mail would
/// otherwise hold each unshadowed 250 back) on its own port; returns its address.
/// `grant` names who gets Accept-XShadow on it.
async fn org2(grant: Option<&str>, extra: &[&str]) -> (Setup, SocketAddr) {
    let s = setup().await;
    let port = s.another_port();
    let mut lines = vec![format!(
        "New-ReceiveConnector -Name 'From Org1' -Bindings {}:{port} -RemoteIPRanges 127.0.0.0/8 -AuthMechanism ExternalAuthoritative -PermissionGroups ExchangeServers -ProtocolLoggingLevel Verbose -TarpitInterval 00:00:00 -MaxProtocolErrors unlimited -MaxAcknowledgementDelay 00:00:00",
        s.ip
    )];
    if let Some(user) = grant {
        lines.push(format!(
            "Get-ReceiveConnector '{FROM_ORG1}' | Add-ADPermission -User '{user}' -ExtendedRights ms-Exch-SMTP-Accept-XShadow"
        ));
    }
    lines.extend(extra.iter().map(|l| l.to_string()));
    let refs: Vec<&str> = lines.iter().map(String::as_str).collect();
    configure(&s, &refs).await;
    let addr = SocketAddr::from((s.ip, port));
    (s, addr)
}

const EXTERNALLY_SECURED: &str = "MS Exchange\\Externally Secured Servers";

/// org1's shadow context, as its send side builds it (reference §1.2).
fn context(connector: Uuid, server: &str) -> String {
    STANDARD.encode(format!("{connector}@{server}@"))
}

/// The dbid the gateway's database holds, as XSHADOW must answer it.
async fn stored_dbid(gw: &Gateway) -> String {
    let (id,): (Uuid,) = sqlx::query_as("SELECT dbid FROM queue_database WHERE server = 'HUB1'")
        .fetch_one(gw.pool())
        .await
        .unwrap();
    STANDARD.encode(id.as_bytes())
}

async fn ehlo(addr: SocketAddr) -> (Raw, String) {
    let mut c = Raw::connect(addr).await;
    assert!(c.reply().await.starts_with("220 "));
    let r = c.cmd("EHLO org1.example").await;
    assert!(r.starts_with("250-"), "{r}");
    (c, r)
}

/// A session that gave its XSHADOW context and got the dbid.
async fn shadow_session(addr: SocketAddr, ctx: &str) -> (Raw, String) {
    let (mut c, _) = ehlo(addr).await;
    let r = c.cmd(&format!("XSHADOW {ctx}")).await;
    let dbid = r
        .strip_prefix("250 ")
        .unwrap_or_else(|| panic!("XSHADOW refused: {r}"))
        .trim_end()
        .to_string();
    (c, dbid)
}

/// Sends one message whose MAIL carries `XSHADOW=<id>`; panics unless it is accepted.
async fn send_shadowed(c: &mut Raw, shadow_id: &str, to: &str) {
    let r = c
        .cmd(&format!("MAIL FROM:<{SENDER}> XSHADOW={shadow_id}"))
        .await;
    assert!(r.starts_with("250 2.1.0"), "{r}");
    let r = c.cmd(&format!("RCPT TO:<{to}>")).await;
    assert!(r.starts_with("250 2.1.5"), "{r}");
    let r = c.cmd("DATA").await;
    assert!(r.starts_with("354"), "{r}");
    let r = c
        .cmd(&format!(
            "Subject: shadowed {shadow_id}\r\n\r\nkept by the shadow server\r\n."
        ))
        .await;
    assert!(r.starts_with("250 2.6.0"), "{r}");
}

/// The shadow columns of the message whose subject names `shadow_id`.
async fn shadow_columns(gw: &Gateway, subject: &str) -> (Option<String>, Option<String>) {
    sqlx::query_as("SELECT shadow_message_id, shadow_context FROM message WHERE subject = $1")
        .bind(subject)
        .fetch_one(gw.pool())
        .await
        .unwrap()
}

/// Every line of the receive protocol logs.
fn receive_log(gw: &Gateway) -> String {
    let dir = gw.data_dir().join("logs/ProtocolLog/SmtpReceive");
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return String::new();
    };
    entries
        .filter_map(|e| e.ok())
        .map(|e| std::fs::read_to_string(e.path()).unwrap_or_default())
        .collect()
}

#[tokio::test]
async fn xshadow_and_xqdiscard_replies_and_errors() {
    let (s, addr) = org2(Some(EXTERNALLY_SECURED), &[]).await;
    let gw = s.start().await;
    let ctx = context(Uuid::new_v4(), "ORG1");

    let mut c = Raw::connect(addr).await;
    c.reply().await;
    assert_eq!(
        c.cmd(&format!("XSHADOW {ctx}")).await,
        "503 5.5.2 Send EHLO first\r\n"
    );
    assert!(c.cmd("HELO org1.example").await.starts_with("250 "));
    assert_eq!(
        c.cmd(&format!("XSHADOW {ctx}")).await,
        "503 5.5.2 Send EHLO first\r\n"
    );
    let r = c.cmd("EHLO org1.example").await;
    let lines: Vec<&str> = r.lines().collect();
    let at = lines
        .iter()
        .position(|l| *l == "250-XSHADOW" || *l == "250 XSHADOW")
        .unwrap_or_else(|| panic!("XSHADOW not advertised: {r}"));
    // After the E12 extensions (§3.5); hubgate offers nothing that comes after it (XOORG).
    assert_eq!(at, lines.len() - 1, "{r}");
    let chunking = lines.iter().position(|l| l.ends_with("CHUNKING")).unwrap();
    assert!(chunking < at, "{r}");

    assert_eq!(
        c.cmd("XSHADOW").await,
        "501 5.0.0 XSHADOW requires Shadow server's context\r\n"
    );
    let long = STANDARD.encode(vec![b'a'; 192]);
    assert_eq!(long.len(), 256);
    assert_eq!(
        c.cmd(&format!("XSHADOW {long}")).await,
        "501 5.5.4 Invalid arguments\r\n"
    );
    assert_eq!(
        c.cmd("XSHADOW not*base64").await,
        "501 5.5.4 Invalid arguments\r\n"
    );
    assert_eq!(
        c.cmd("XQDISCARD 50").await,
        "503 5.5.1 Bad sequence of commands\r\n"
    );
    // Not during a mail transaction.
    assert!(
        c.cmd(&format!("MAIL FROM:<{SENDER}>"))
            .await
            .starts_with("250")
    );
    assert_eq!(
        c.cmd(&format!("XSHADOW {ctx}")).await,
        "503 5.5.1 Bad sequence of commands\r\n"
    );
    assert!(c.cmd("RSET").await.starts_with("250"));

    let r = c.cmd(&format!("XSHADOW {ctx}")).await;
    let dbid = stored_dbid(&gw).await;
    assert_eq!(r, format!("250 {dbid}\r\n"));
    assert_eq!(dbid.len(), 24);
    assert_eq!(
        c.cmd(&format!("XSHADOW {ctx}")).await,
        "503 5.5.1 Bad sequence of commands\r\n"
    );

    assert_eq!(
        c.cmd("XQDISCARD").await,
        "501 5.0.0 XQDISCARD requires maximum discard events count\r\n"
    );
    for bad in ["0", "-1", "+5", "abc", "5 6", "1.5"] {
        assert_eq!(
            c.cmd(&format!("XQDISCARD {bad}")).await,
            "501 5.5.4 Invalid arguments\r\n",
            "{bad}"
        );
    }
    for ok in ["1", "50", "99999999999999999999999999999"] {
        assert_eq!(
            c.cmd(&format!("XQDISCARD {ok}")).await,
            "251 OK, no discard events\r\n",
            "{ok}"
        );
    }
    assert!(c.cmd("QUIT").await.starts_with("221"));

    // The protocol log shows the conversation as for any other command.
    let log = receive_log(&gw);
    assert!(log.contains(&format!(",<,XSHADOW {ctx},")), "{log}");
    assert!(log.contains(&format!(",>,250 {dbid},")), "{log}");
    assert!(log.contains(",<,XQDISCARD 50,"), "{log}");
    // A comma in the data: the field is quoted, as in Exchange's CSV.
    assert!(log.contains(",>,\"251 OK, no discard events\","), "{log}");
}

/// XSHADOW is advertised exactly when ShadowRedundancyEnabled is true and the connector's
/// AuthMechanism has ExchangeServer or ExternalAuthoritative; both set live with the shell.
#[tokio::test]
async fn advertisement_matrix_set_live() {
    let (s, addr) = org2(Some(EXTERNALLY_SECURED), &[]).await;
    let gw = s.start().await;
    let ctx = context(Uuid::new_v4(), "ORG1");
    let cases: [(&str, bool, bool); 8] = [
        ("ExternalAuthoritative", true, true),
        ("ExternalAuthoritative", false, false),
        ("Tls, ExchangeServer", true, true),
        ("Tls, ExchangeServer", false, false),
        ("Tls", true, false),
        ("Tls", false, false),
        ("Tls, ExternalAuthoritative", true, true),
        ("None", true, false),
    ];
    for (mechanism, enabled, expected) in cases {
        run(
            &gw,
            &format!(
                "Set-TransportConfig -ShadowRedundancyEnabled ${}",
                if enabled { "true" } else { "false" }
            ),
        )
        .await;
        run(
            &gw,
            &format!("Set-ReceiveConnector '{FROM_ORG1}' -AuthMechanism {mechanism}"),
        )
        .await;
        let what = format!("{mechanism} with ShadowRedundancyEnabled {enabled}");
        // The next session after the gateway reloaded the configuration sees it.
        eventually(&what, || async {
            let (mut c, r) = ehlo(addr).await;
            let shown = r
                .lines()
                .any(|l| l.ends_with("-XSHADOW") || l == "250 XSHADOW");
            if shown != expected {
                return false;
            }
            if !expected {
                assert_eq!(
                    c.cmd(&format!("XSHADOW {ctx}")).await,
                    "502 5.3.3 Command not implemented\r\n",
                    "{what}"
                );
                assert_eq!(
                    c.cmd("XQDISCARD 50").await,
                    "502 5.3.3 Command not implemented\r\n",
                    "{what}"
                );
            }
            true
        })
        .await;
    }
}

/// The seed's first attempt (identity-and-rights.md): Accept-XShadow granted to ANONYMOUS LOGON
/// on an ExternalAuthoritative connector does not reach the session, which is Externally
/// Secured; granted to Externally Secured Servers, it does.
#[tokio::test]
async fn rights_gate_of_the_first_attempt() {
    let (s, addr) = org2(Some("NT AUTHORITY\\ANONYMOUS LOGON"), &[]).await;
    let gw = s.start().await;
    let ctx = context(Uuid::new_v4(), "ORG1");
    let (mut c, r) = ehlo(addr).await;
    assert!(
        r.contains("250-XSHADOW") || r.contains("250 XSHADOW"),
        "{r}"
    );
    assert_eq!(
        c.cmd(&format!("XSHADOW {ctx}")).await,
        "550 5.7.1 Not authorized\r\n"
    );
    // Refused, the session has no context: nothing to ask for.
    assert_eq!(
        c.cmd("XQDISCARD 50").await,
        "503 5.5.1 Bad sequence of commands\r\n"
    );
    let log = receive_log(&gw);
    assert!(log.contains(",>,550 5.7.1 Not authorized,"), "{log}");
    assert!(!log.contains("SMTPAcceptXShadow"), "{log}");

    run(
        &gw,
        &format!(
            "Get-ReceiveConnector '{FROM_ORG1}' | Add-ADPermission -User '{EXTERNALLY_SECURED}' -ExtendedRights ms-Exch-SMTP-Accept-XShadow"
        ),
    )
    .await;
    eventually("XSHADOW accepted after the grant", || async {
        let (mut c, _) = ehlo(addr).await;
        c.cmd(&format!("XSHADOW {ctx}")).await.starts_with("250 ")
    })
    .await;
    let (_, dbid) = shadow_session(addr, &ctx).await;
    assert_eq!(dbid, stored_dbid(&gw).await);
    assert!(receive_log(&gw).contains("SMTPAcceptXShadow"));
}

#[tokio::test]
async fn dbid_is_stable_across_a_restart_and_new_with_a_new_database() {
    let ctx = context(Uuid::new_v4(), "ORG1");
    let (s, addr) = org2(Some(EXTERNALLY_SECURED), &[]).await;
    let mut gw = s.start().await;
    let (_, first) = shadow_session(addr, &ctx).await;
    assert_eq!(first.len(), 24);
    assert_eq!(STANDARD.decode(&first).unwrap().len(), 16);
    gw.restart().await;
    let (_, again) = shadow_session(addr, &ctx).await;
    assert_eq!(again, first, "the same queue database answers the same id");
    drop(gw);

    let (s, addr) = org2(Some(EXTERNALLY_SECURED), &[]).await;
    let _other = s.start().await;
    let (_, fresh) = shadow_session(addr, &ctx).await;
    assert_ne!(fresh, first, "a new queue database answers a new id");
}

/// XSHADOW= is kept only after this session's XSHADOW, only with Accept-Headers-Organization
/// (Externally Secured lacks it until granted), and only when it is a GUID.
#[tokio::test]
async fn xshadow_parameter_recorded_only_with_the_right() {
    let port = peer_port();
    let (s, addr) = org2(
        Some(EXTERNALLY_SECURED),
        // Nothing listens there: the messages wait in Retry, their rows readable.
        &[&format!(
            "New-SendConnector -Name Down -AddressSpaces 'down.example' -DNSRoutingEnabled $false -SmartHosts '127.0.0.81' -Port {port}"
        )],
    )
    .await;
    let gw = s.start().await;
    let ctx = context(Uuid::new_v4(), "ORG1");

    let without_right = Uuid::new_v4().to_string();
    let (mut c, _) = shadow_session(addr, &ctx).await;
    send_shadowed(&mut c, &without_right, "a@down.example").await;
    // No XSHADOW in this session: the parameter means nothing.
    let (mut c, _) = ehlo(addr).await;
    let no_context = Uuid::new_v4().to_string();
    send_shadowed(&mut c, &no_context, "a@down.example").await;

    run(
        &gw,
        &format!(
            "Get-ReceiveConnector '{FROM_ORG1}' | Add-ADPermission -User '{EXTERNALLY_SECURED}' -ExtendedRights ms-Exch-Accept-Headers-Organization"
        ),
    )
    .await;
    eventually("the right reaches new sessions", || async {
        let (mut c, _) = ehlo(addr).await;
        c.cmd("NOOP").await;
        receive_log(&gw).contains("AcceptOrganizationHeaders")
    })
    .await;
    let with_right = Uuid::new_v4().to_string();
    let (mut c, _) = shadow_session(addr, &ctx).await;
    send_shadowed(&mut c, &with_right, "b@down.example").await;
    send_shadowed(&mut c, "not-a-guid", "b@down.example").await;
    let long = format!("{}{}", Uuid::new_v4(), "0".repeat(230));
    send_shadowed(&mut c, &long, "b@down.example").await;

    for id in [&without_right, &no_context, "not-a-guid", &long] {
        assert_eq!(
            shadow_columns(&gw, &format!("shadowed {id}")).await,
            (None, None),
            "{id}"
        );
    }
    assert_eq!(
        shadow_columns(&gw, &format!("shadowed {with_right}")).await,
        (Some(with_right.clone()), Some(ctx.clone()))
    );
}

/// Every way a shadowed message leaves the queue (delivered, failed with an NDR, removed by an
/// administrator) queues exactly one discard event; XQDISCARD hands them to the session with
/// the same context, in pages, once each, and to no other context.
#[tokio::test]
async fn discard_events_for_every_way_out_paged_to_their_context_only() {
    let port = peer_port();
    let sink = Sink::with(
        addr("127.0.0.82", port),
        SinkOptions {
            refuse: vec!["refused@next.example".into()],
            ..Default::default()
        },
    );
    let down = peer_port();
    let (s, addr) = org2(
        Some(EXTERNALLY_SECURED),
        &[
            &format!(
                "Get-ReceiveConnector '{FROM_ORG1}' | Add-ADPermission -User '{EXTERNALLY_SECURED}' -ExtendedRights ms-Exch-Accept-Headers-Organization"
            ),
            &format!(
                "New-SendConnector -Name Next -AddressSpaces 'next.example' -DNSRoutingEnabled $false -SmartHosts '127.0.0.82' -Port {port}"
            ),
            &format!(
                "New-SendConnector -Name Down -AddressSpaces 'down.example' -DNSRoutingEnabled $false -SmartHosts '127.0.0.83' -Port {down}"
            ),
        ],
    )
    .await;
    let gw = s.start().await;
    let ctx = context(Uuid::new_v4(), "ORG1");
    let other = context(Uuid::new_v4(), "ORG3");
    let delivered = Uuid::new_v4().to_string();
    let failed = Uuid::new_v4().to_string();
    let removed = Uuid::new_v4().to_string();

    let (mut c, _) = shadow_session(addr, &ctx).await;
    send_shadowed(&mut c, &delivered, "user@next.example").await;
    send_shadowed(&mut c, &failed, "refused@next.example").await;
    send_shadowed(&mut c, &removed, "held@down.example").await;
    // Nothing is done yet from the shadow's point of view until the messages leave.
    within(60, "delivered and failed left the queue", || async {
        let (n,): (i64,) =
            sqlx::query_as("SELECT count(*) FROM message WHERE shadow_message_id = ANY($1)")
                .bind(vec![delivered.clone(), failed.clone()])
                .fetch_one(gw.pool())
                .await
                .unwrap();
        n == 0
    })
    .await;
    assert_eq!(sink.recipients(), vec!["user@next.example".to_string()]);
    let (internal_id,): (i64,) =
        sqlx::query_as("SELECT internal_id FROM message WHERE shadow_message_id = $1")
            .bind(&removed)
            .fetch_one(gw.pool())
            .await
            .unwrap();
    within(30, "the held message in its queue", || async {
        run(&gw, "Get-Message")
            .await
            .contains(&format!("\\{internal_id} "))
    })
    .await;
    let (q,): (i64,) =
        sqlx::query_as("SELECT id FROM delivery_queue WHERE next_hop_domain = '127.0.0.83'")
            .fetch_one(gw.pool())
            .await
            .unwrap();
    run(
        &gw,
        &format!("Remove-Message -Identity HUB1\\{q}\\{internal_id} -WithNDR $false"),
    )
    .await;
    within(30, "the removed message left the queue", || async {
        sqlx::query_as::<_, (i64,)>(
            "SELECT count(*) FROM message WHERE shadow_message_id IS NOT NULL",
        )
        .fetch_one(gw.pool())
        .await
        .unwrap()
        .0 == 0
    })
    .await;

    // Exactly one event each.
    let events: Vec<(String, String)> =
        sqlx::query_as("SELECT shadow_message_id, context FROM shadow_discard ORDER BY id")
            .fetch_all(gw.pool())
            .await
            .unwrap();
    let mut ids: Vec<&str> = events.iter().map(|(m, _)| m.as_str()).collect();
    ids.sort();
    let mut want = vec![delivered.as_str(), failed.as_str(), removed.as_str()];
    want.sort();
    assert_eq!(ids, want, "{events:?}");
    assert!(events.iter().all(|(_, c)| *c == ctx), "{events:?}");

    // Another shadow server's context has nothing.
    let (mut o, _) = shadow_session(addr, &other).await;
    assert_eq!(o.cmd("XQDISCARD 50").await, "251 OK, no discard events\r\n");

    // A new session with the same context: a page of two, then the last, then none.
    let (mut c, _) = shadow_session(addr, &ctx).await;
    let page = c.cmd("XQDISCARD 2").await;
    let lines: Vec<&str> = page.lines().collect();
    assert_eq!(lines.len(), 2, "{page}");
    assert!(lines[0].starts_with("250-"), "{page}");
    assert!(lines[1].starts_with("250 "), "{page}");
    let last = c.cmd("XQDISCARD 2").await;
    assert!(
        last.starts_with("250 ") && last.lines().count() == 1,
        "{last}"
    );
    let mut got: Vec<String> = lines
        .iter()
        .chain(last.lines().collect::<Vec<_>>().iter())
        .map(|l| l[4..].to_string())
        .collect();
    got.sort();
    assert_eq!(got, want);
    assert_eq!(c.cmd("XQDISCARD 2").await, "251 OK, no discard events\r\n");
    assert_eq!(o.cmd("XQDISCARD 50").await, "251 OK, no discard events\r\n");
}

/// Discard events nobody asks for go after ShadowMessageAutoDiscardInterval.
#[tokio::test]
async fn auto_discard_drops_unclaimed_events() {
    let port = peer_port();
    let sink = Sink::start(addr("127.0.0.84", port));
    let (s, addr) = org2(
        Some(EXTERNALLY_SECURED),
        &[
            &format!(
                "Get-ReceiveConnector '{FROM_ORG1}' | Add-ADPermission -User '{EXTERNALLY_SECURED}' -ExtendedRights ms-Exch-Accept-Headers-Organization"
            ),
            &format!(
                "New-SendConnector -Name Next -AddressSpaces 'next.example' -DNSRoutingEnabled $false -SmartHosts '127.0.0.84' -Port {port}"
            ),
        ],
    )
    .await;
    let gw = s.start().await;
    let ctx = context(Uuid::new_v4(), "ORG1");
    let id = Uuid::new_v4().to_string();
    let (mut c, _) = shadow_session(addr, &ctx).await;
    send_shadowed(&mut c, &id, "user@next.example").await;
    let events = || async {
        sqlx::query_as::<_, (i64,)>("SELECT count(*) FROM shadow_discard")
            .fetch_one(gw.pool())
            .await
            .unwrap()
            .0
    };
    within(60, "the delivered message's event", || async {
        events().await == 1
    })
    .await;
    assert_eq!(sink.received().len(), 1);
    // At the default two days the event stays through sweeps; made short, it goes.
    run(
        &gw,
        "Set-TransportConfig -ShadowMessageAutoDiscardInterval 00:00:05",
    )
    .await;
    within(90, "the unclaimed event dropped", || async {
        events().await == 0
    })
    .await;
    assert_eq!(c.cmd("XQDISCARD 50").await, "251 OK, no discard events\r\n");
}

/// The other way to the right: on Default (AuthMechanism ExchangeServer), a session that logs
/// on over TLS with an account in Exchange Servers holds Accept-XShadow and Accept-Headers-
/// Organization (the E14 set), so its XSHADOW and XSHADOW= count; before it logs on it is
/// anonymous and refused. The client is Python's smtplib, as another server would speak.
#[tokio::test]
async fn exchange_server_account_over_tls_may_shadow_on_default() {
    let port = peer_port();
    let s = setup().await;
    hubgate::org::Account::create(&s.pool, "org1-hub", "Org1-Hub-pw-1", &["Exchange Servers"])
        .await
        .unwrap();
    configure(
        &s,
        &[&format!(
            "New-SendConnector -Name Down -AddressSpaces 'down.example' -DNSRoutingEnabled $false -SmartHosts '127.0.0.85' -Port {port}"
        )],
    )
    .await;
    let gw = s.start().await;
    let ctx = context(Uuid::new_v4(), "ORG1");
    let id = Uuid::new_v4().to_string();
    let script = r#"
import smtplib, ssl, sys
host, port, ctx, sid, sender = sys.argv[1:6]
c = smtplib.SMTP(host, int(port), timeout=30)
c.ehlo("org1.example")
assert c.has_extn("xshadow"), c.esmtp_features
print("anonymous", c.docmd("XSHADOW", ctx))
tls = ssl.create_default_context()
tls.check_hostname = False
tls.verify_mode = ssl.CERT_NONE
c.starttls(context=tls)
c.ehlo("org1.example")
c.login("org1-hub", "Org1-Hub-pw-1")
code, dbid = c.docmd("XSHADOW", ctx)
print("server", code, dbid.decode())
c.sendmail(sender, ["x@down.example"], "Subject: shadowed " + sid + "\r\n\r\nhi\r\n",
           mail_options=["XSHADOW=" + sid])
print("discard", c.docmd("XQDISCARD", "50"))
c.quit()
"#;
    let (ok, out) = python(
        script,
        &[
            &gw.smtp().ip().to_string(),
            &gw.smtp().port().to_string(),
            &ctx,
            &id,
            SENDER,
        ],
    );
    assert!(ok, "{out}");
    assert!(
        out.contains("anonymous (550, b'5.7.1 Not authorized')"),
        "{out}"
    );
    let dbid = stored_dbid(&gw).await;
    assert!(out.contains(&format!("server 250 {dbid}")), "{out}");
    assert!(
        out.contains("discard (251, b'OK, no discard events')"),
        "{out}"
    );
    assert_eq!(
        shadow_columns(&gw, &format!("shadowed {id}")).await,
        (Some(id.clone()), Some(ctx))
    );
}
