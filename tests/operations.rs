//! The operations layer called directly, as the console will: no shell parsing. Each object type's
//! create, set and remove, and each validation error with the parameter it names.

mod common;

use common::*;
use hubgate::ops::permission::{self, AddADPermission};
use hubgate::ops::props::{Value, Values};
use hubgate::ops::recipient::{self, Type};
use hubgate::ops::{
    Identity, OpError, accepted_domain, receive_connector, send_connector, transport,
};
use hubgate::org::ExtendedRight;
use sqlx::PgConnection;

fn v(pairs: &[(&'static str, Value)]) -> Values {
    Values(pairs.to_vec())
}
fn s(t: &str) -> Value {
    Value::Str(t.into())
}
fn l(items: &[&str]) -> Value {
    Value::List(items.iter().map(|x| x.to_string()).collect())
}
fn id(name: &str) -> Identity {
    Identity::from(name)
}

/// The parameter an error names, and the error.
fn param<T: std::fmt::Debug>(r: Result<T, OpError>) -> (Option<&'static str>, String) {
    let e = r.expect_err("the operation should fail");
    (e.param(), e.to_string())
}

async fn conn(setup: &Setup) -> sqlx::pool::PoolConnection<sqlx::Postgres> {
    setup.pool.acquire().await.unwrap()
}

#[tokio::test]
async fn accepted_domain_create_set_remove_and_its_errors() {
    let setup = Setup::new().await;
    let mut c = conn(&setup).await;
    let tx: &mut PgConnection = &mut c;

    let d = accepted_domain::new(
        tx,
        &v(&[
            ("Name", s("Relay")),
            ("DomainName", s("Relay.Example")),
            ("DomainType", s("InternalRelay")),
        ]),
    )
    .await
    .unwrap();
    assert_eq!(d.domain_name, "relay.example");
    assert!(!d.is_default && !d.address_book_enabled);

    let ch = accepted_domain::set(
        tx,
        &id("Relay"),
        &v(&[("AddressBookEnabled", Value::Bool(true))]),
    )
    .await
    .unwrap();
    assert!(!ch.before.address_book_enabled && ch.after.address_book_enabled);

    let (p, e) = param(
        accepted_domain::set(
            tx,
            &id("relay.example"),
            &v(&[("MessageExpirationTimeout", Value::Span(91 * 86400))]),
        )
        .await,
    );
    assert_eq!(p, Some("MessageExpirationTimeout"), "{e}");
    assert!(e.contains("between 00:00:05 and 90.00:00:00"), "{e}");

    let (p, e) = param(
        accepted_domain::new(
            tx,
            &v(&[("Name", s("Again")), ("DomainName", s("relay.example"))]),
        )
        .await,
    );
    assert_eq!(p, Some("DomainName"), "{e}");
    assert_eq!(
        e,
        "The domain \"relay.example\" is already an accepted domain."
    );

    let (p, e) =
        param(accepted_domain::new(tx, &v(&[("Name", s("Bad")), ("DomainName", s("a..b"))])).await);
    assert_eq!(p, Some("DomainName"), "{e}");

    let (p, e) = param(
        accepted_domain::set(tx, &id(DOMAIN), &v(&[("MakeDefault", Value::Bool(false))])).await,
    );
    assert_eq!(p, Some("MakeDefault"), "{e}");

    // The default accepted domain stays.
    let (p, e) = param(accepted_domain::remove(tx, &id(DOMAIN)).await);
    assert_eq!(p, Some("Identity"), "{e}");
    assert!(
        e.contains("is the default domain and cannot be removed"),
        "{e}"
    );

    let (p, _) = param(accepted_domain::remove(tx, &id("Nope")).await);
    assert_eq!(p, Some("Identity"));
    // A parameter the verb does not take is refused by name.
    let (p, _) =
        param(accepted_domain::set(tx, &id("Relay"), &v(&[("DomainName", s("x.example"))])).await);
    assert_eq!(p, Some("DomainName"));

    accepted_domain::remove(tx, &id("Relay")).await.unwrap();
    assert!(matches!(
        accepted_domain::get(tx, Some(&id("Relay")), true).await,
        Err(OpError::NotFound(_))
    ));
}

#[tokio::test]
async fn transport_server_and_config_set_and_their_errors() {
    let setup = Setup::new().await;
    let mut c = conn(&setup).await;
    let tx: &mut PgConnection = &mut c;

    // The in-memory defaults (used where no database is at hand) are the schema's.
    let stored = hubgate::org::TransportConfig::load_in(tx).await.unwrap();
    assert_eq!(
        format!("{stored:?}"),
        format!("{:?}", hubgate::org::TransportConfig::with_defaults())
    );

    let ch = transport::set_server(
        tx,
        &id(SERVER),
        &v(&[
            ("TransientFailureRetryCount", Value::Int(10)),
            ("MaxOutboundConnections", Value::Unlimited),
        ]),
    )
    .await
    .unwrap();
    assert_eq!(ch.after.transient_failure_retry_count, 10);
    assert_eq!(ch.after.max_outbound_connections, None);
    // By FQDN too.
    assert_eq!(
        transport::get_servers(tx, Some(&id(FQDN)), false)
            .await
            .unwrap()
            .len(),
        1
    );

    let (p, e) = param(
        transport::set_server(
            tx,
            &id(SERVER),
            &v(&[("MessageExpirationTimeout", Value::Span(91 * 86400))]),
        )
        .await,
    );
    assert_eq!(p, Some("MessageExpirationTimeout"), "{e}");
    let (p, e) = param(
        transport::set_server(
            tx,
            &id(SERVER),
            &v(&[
                ("MaxOutboundConnections", Value::Int(10)),
                ("MaxPerDomainOutboundConnections", Value::Int(20)),
            ]),
        )
        .await,
    );
    assert_eq!(p, Some("MaxPerDomainOutboundConnections"), "{e}");
    let (p, e) = param(
        transport::set_server(
            tx,
            &id(SERVER),
            &v(&[("PoisonThreshold", Value::Unlimited)]),
        )
        .await,
    );
    assert_eq!(p, Some("PoisonThreshold"), "{e}");
    assert_eq!(e, "PoisonThreshold cannot be unlimited.");
    let (p, e) = param(
        transport::set_server(
            tx,
            &id(SERVER),
            &v(&[("ExternalDNSServers", l(&["not-an-ip"]))]),
        )
        .await,
    );
    assert_eq!(p, Some("ExternalDNSServers"), "{e}");

    let ch = transport::set_config(tx, &v(&[("MaxSendSize", Value::Bytes(20 << 20))]))
        .await
        .unwrap();
    assert_eq!(ch.after.max_send_size, Some(20 << 20));
    let (p, e) = param(
        transport::set_config(tx, &v(&[("TLSSendDomainSecureList", l(&["not a domain"]))])).await,
    );
    assert_eq!(p, Some("TLSSendDomainSecureList"), "{e}");
    let (p, e) = param(
        transport::set_config(tx, &v(&[("ShadowHeartbeatRetryCount", Value::Int(99))])).await,
    );
    assert_eq!(p, Some("ShadowHeartbeatRetryCount"), "{e}");
    assert!(e.contains("between 1 and 15"), "{e}");
    let (p, e) =
        param(transport::set_config(tx, &v(&[("MaxReceiveSize", Value::Bytes(1 << 40))])).await);
    assert_eq!(p, Some("MaxReceiveSize"), "{e}");
    assert_eq!(
        transport::get_config(tx).await.unwrap().max_send_size,
        Some(20 << 20)
    );
}

#[tokio::test]
async fn send_connector_create_set_remove_and_its_errors() {
    let setup = Setup::new().await;
    let mut c = conn(&setup).await;
    let tx: &mut PgConnection = &mut c;

    let ch = send_connector::new(
        tx,
        SERVER,
        &v(&[
            ("Name", s("Out")),
            ("AddressSpaces", l(&["out.example;5"])),
            ("SmartHosts", l(&["127.0.0.9"])),
            ("Partner", Value::Bool(true)),
        ]),
        None,
    )
    .await
    .unwrap();
    // The usage switch, the canonical address space, and smart hosts turning DNS routing off.
    assert_eq!(ch.after.usage, "Partner");
    assert_eq!(ch.after.address_spaces, ["SMTP:out.example;5"]);
    assert!(!ch.after.dns_routing_enabled);
    assert_eq!(ch.after.source_transport_servers, [SERVER]);

    let base = v(&[("Name", s("Two")), ("AddressSpaces", l(&["two.example"]))]);
    let (p, e) = param(
        send_connector::new(
            tx,
            SERVER,
            &base.clone().with("MaxMessageSize", Value::Bytes(1 << 40)),
            None,
        )
        .await,
    );
    assert_eq!(p, Some("MaxMessageSize"), "{e}");
    let (p, e) = param(
        send_connector::new(
            tx,
            SERVER,
            &base
                .clone()
                .with("RequireTLS", Value::Bool(true))
                .with("IgnoreSTARTTLS", Value::Bool(true)),
            None,
        )
        .await,
    );
    assert_eq!(p, Some("IgnoreSTARTTLS"), "{e}");
    assert_eq!(
        e,
        "RequireTLS cannot be $true when IgnoreSTARTTLS is $true."
    );
    let (p, e) = param(
        send_connector::new(
            tx,
            SERVER,
            &base
                .clone()
                .with("Internet", Value::Bool(true))
                .with("Usage", s("Partner")),
            None,
        )
        .await,
    );
    assert_eq!(p, Some("Usage"), "{e}");
    let (p, e) = param(
        send_connector::new(
            tx,
            SERVER,
            &base.clone().with("SmartHostAuthMechanism", s("BasicAuth")),
            None,
        )
        .await,
    );
    assert_eq!(p, Some("AuthenticationCredential"), "{e}");
    let (p, e) = param(
        send_connector::new(
            tx,
            SERVER,
            &base.clone().with("AddressSpaces", l(&["a b"])),
            None,
        )
        .await,
    );
    assert_eq!(p, Some("AddressSpaces"), "{e}");
    // A credential is sealed as it is set: without the organisation key, nothing is stored.
    let e = send_connector::new(
        tx,
        SERVER,
        &base.clone().with(
            "AuthenticationCredential",
            Value::Cred {
                user: "u".into(),
                password: "p".into(),
            },
        ),
        None,
    )
    .await
    .unwrap_err();
    assert!(matches!(e, OpError::Org(_)), "{e}");
    let (p, e) =
        param(send_connector::new(tx, SERVER, &base.clone().with("Name", s("Out")), None).await);
    assert_eq!(p, Some("Name"), "{e}");
    assert!(e.ends_with("\"Out\" already exists."), "{e}");

    let ch = send_connector::set(
        tx,
        &id("Out"),
        &v(&[("Port", Value::Int(2525)), ("Enabled", Value::Bool(false))]),
        None,
    )
    .await
    .unwrap();
    assert_eq!(
        (ch.before.port, ch.after.port, ch.after.enabled),
        (25, 2525, false)
    );
    let (p, e) =
        param(send_connector::set(tx, &id("Out"), &v(&[("Port", Value::Int(70000))]), None).await);
    assert_eq!(p, Some("Port"), "{e}");
    let (p, _) =
        param(send_connector::set(tx, &id("Out"), &v(&[("Usage", s("Internet"))]), None).await);
    assert_eq!(p, Some("Usage"));

    send_connector::remove(tx, &id("Out")).await.unwrap();
    let (p, _) = param(send_connector::remove(tx, &id("Out")).await);
    assert_eq!(p, Some("Identity"));
}

#[tokio::test]
async fn receive_connector_usage_presets_required_parameters_and_errors() {
    let setup = Setup::new().await;
    let mut c = conn(&setup).await;
    let tx: &mut PgConnection = &mut c;
    let name = |n: &str| v(&[("Name", s(n))]);

    // Each usage needs what its preset does not supply, named.
    for (usage, missing) in [
        ("Internet", vec!["Bindings"]),
        ("Custom", vec!["Bindings", "RemoteIPRanges"]),
        ("Client", vec!["RemoteIPRanges"]),
    ] {
        match receive_connector::new(tx, SERVER, &name("R").with(usage, Value::Bool(true))).await {
            Err(OpError::MissingMandatory(m)) => assert_eq!(m, missing, "{usage}"),
            other => panic!("{usage}: {other:?}"),
        }
    }

    let ch = receive_connector::new(
        tx,
        SERVER,
        &name("From Partner")
            .with("Usage", s("Partner"))
            .with("Bindings", l(&["127.0.0.1:2590"]))
            .with("RemoteIPRanges", l(&["10.20.0.0/16"])),
    )
    .await
    .unwrap();
    assert_eq!(ch.after.permission_groups, ["Partners"]);
    assert!(ch.after.domain_secure_enabled && !ch.before.domain_secure_enabled);
    assert_eq!(ch.after.identity(), format!("{SERVER}\\From Partner"));

    let (p, e) = param(
        receive_connector::set(
            tx,
            SERVER,
            &id("From Partner"),
            &v(&[("MaxMessageSize", Value::Bytes(100))]),
        )
        .await,
    );
    assert_eq!(p, Some("MaxMessageSize"), "{e}");
    assert!(e.contains("between 65536 and 2147483647"), "{e}");
    let (p, e) = param(
        receive_connector::set(
            tx,
            SERVER,
            &id("From Partner"),
            &v(&[("PermissionGroups", l(&["Custom"]))]),
        )
        .await,
    );
    assert_eq!(p, Some("PermissionGroups"), "{e}");
    let (p, e) = param(
        receive_connector::set(
            tx,
            SERVER,
            &id("From Partner"),
            &v(&[("Banner", s("hello"))]),
        )
        .await,
    );
    assert_eq!(p, Some("Banner"), "{e}");
    let (p, e) = param(
        receive_connector::set(
            tx,
            SERVER,
            &id("From Partner"),
            &v(&[("RemoteIPRanges", l(&["no range"]))]),
        )
        .await,
    );
    assert_eq!(p, Some("RemoteIPRanges"), "{e}");

    // A second connector on the same IP:port for a range the first already serves is refused,
    // by New and by Set, and changes nothing; another range on that binding is allowed.
    let (p, e) = param(
        receive_connector::new(
            tx,
            SERVER,
            &name("Twin")
                .with("Usage", s("Custom"))
                .with("Bindings", l(&["127.0.0.1:2590"]))
                .with("RemoteIPRanges", l(&["192.0.2.7", "10.20.0.0/16"])),
        )
        .await,
    );
    assert_eq!(p, Some("Bindings"), "{e}");
    assert!(
        e.contains("From Partner") && e.contains("127.0.0.1:2590"),
        "{e}"
    );
    receive_connector::new(
        tx,
        SERVER,
        &name("Twin")
            .with("Usage", s("Custom"))
            .with("Bindings", l(&["127.0.0.1:2590"]))
            .with("RemoteIPRanges", l(&["192.0.2.7"])),
    )
    .await
    .unwrap();
    let (p, e) = param(
        receive_connector::set(
            tx,
            SERVER,
            &id("Twin"),
            &v(&[("RemoteIPRanges", l(&["10.20.0.0/16"]))]),
        )
        .await,
    );
    assert_eq!(p, Some("Bindings"), "{e}");
    let twin = receive_connector::get(tx, SERVER, Some(&id("Twin")), false)
        .await
        .unwrap();
    assert_eq!(twin[0].remote_ip_ranges, ["192.0.2.7"]);
    receive_connector::remove(tx, SERVER, &id("Twin"))
        .await
        .unwrap();

    let (p, _) =
        param(receive_connector::set(tx, SERVER, &id(&format!("{SERVER}\\*")), &v(&[])).await);
    assert_eq!(p, Some("Identity"));

    let ch = receive_connector::set(
        tx,
        SERVER,
        &id(&format!("{SERVER}\\From Partner")),
        &v(&[
            ("AuthMechanism", l(&["None", "Tls"])),
            ("MaxHopCount", Value::Int(40)),
        ]),
    )
    .await
    .unwrap();
    assert_eq!(ch.after.auth_mechanism, ["Tls"]);
    assert_eq!(ch.after.max_hop_count, 40);

    receive_connector::remove(tx, SERVER, &id("From Partner"))
        .await
        .unwrap();
    assert!(
        receive_connector::get(tx, SERVER, Some(&id("From Partner")), false)
            .await
            .is_err()
    );
}

#[tokio::test]
async fn recipients_create_set_remove_and_their_errors() {
    let setup = Setup::new().await;
    let mut c = conn(&setup).await;
    let tx: &mut PgConnection = &mut c;

    let (r, extra) = recipient::new(
        tx,
        Type::Mailbox,
        &v(&[
            ("Name", s("User")),
            ("PrimarySmtpAddress", s("user@contoso.test")),
        ]),
    )
    .await
    .unwrap();
    assert_eq!(
        (r.primary_smtp_address.as_str(), extra.len()),
        ("user@contoso.test", 0)
    );
    // A new primary address keeps the old one as a proxy.
    let ch = recipient::set(
        tx,
        Type::Mailbox,
        &id("User"),
        &v(&[("PrimarySmtpAddress", s("u@contoso.test"))]),
    )
    .await
    .unwrap();
    assert_eq!(ch.after.1, ["user@contoso.test"]);
    // Found by any of its addresses.
    assert_eq!(
        recipient::get(tx, Type::Mailbox, Some(&id("user@contoso.test")), false)
            .await
            .unwrap()
            .len(),
        1
    );
    let (p, e) =
        param(recipient::set(tx, Type::Mailbox, &id("User"), &v(&[("Name", s(""))])).await);
    assert_eq!(p, Some("Name"), "{e}");
    let (p, e) = param(
        recipient::set(
            tx,
            Type::Mailbox,
            &id("User"),
            &v(&[("PrimarySmtpAddress", s("nobody"))]),
        )
        .await,
    );
    assert_eq!(p, Some("PrimarySmtpAddress"), "{e}");
    let (p, e) = param(
        recipient::set(
            tx,
            Type::Mailbox,
            &id("User"),
            &v(&[("EmailAddresses", l(&["x@", "SMTP:u@contoso.test"]))]),
        )
        .await,
    );
    assert_eq!(p, Some("EmailAddresses"), "{e}");
    // A contact's parameter is not a mailbox's.
    let (p, _) = param(
        recipient::set(
            tx,
            Type::Mailbox,
            &id("User"),
            &v(&[("ExternalEmailAddress", s("x@y.example"))]),
        )
        .await,
    );
    assert_eq!(p, Some("ExternalEmailAddress"));

    let (r, _) = recipient::new(
        tx,
        Type::MailContact,
        &v(&[
            ("Name", s("Partner")),
            ("ExternalEmailAddress", s("SMTP:p@fabrikam.example")),
        ]),
    )
    .await
    .unwrap();
    assert_eq!(
        r.external_email_address.as_deref(),
        Some("p@fabrikam.example")
    );
    assert_eq!(r.primary_smtp_address, "p@fabrikam.example");
    // A mailbox is not a contact.
    assert!(matches!(
        recipient::remove(tx, Type::MailContact, &id("User")).await,
        Err(OpError::NotFound(_))
    ));
    recipient::remove(tx, Type::MailContact, &id("Partner"))
        .await
        .unwrap();
    recipient::remove(tx, Type::Mailbox, &id("User"))
        .await
        .unwrap();
}

#[tokio::test]
async fn ad_permissions_add_get_remove_and_cross_forest() {
    let setup = Setup::new().await;
    let mut c = conn(&setup).await;
    let tx: &mut PgConnection = &mut c;
    send_connector::new(
        tx,
        SERVER,
        &v(&[("Name", s("X")), ("AddressSpaces", l(&["x.example"]))]),
        None,
    )
    .await
    .unwrap();
    let x = permission::connector(tx, SERVER, &id("X")).await.unwrap();
    assert!(x.is_send);
    let req = AddADPermission {
        connector: x.clone(),
        user: "Externally Secured Servers".into(),
        rights: permission::rights_of(&["ms-Exch-SMTP-Send-XShadow".into()]).unwrap(),
        deny: true,
    };
    let added = permission::add(tx, &req).await.unwrap();
    assert_eq!(
        added[0].principal,
        "MS Exchange\\Externally Secured Servers"
    );
    let acl = permission::get(tx, &x, Some("Externally Secured Servers"))
        .await
        .unwrap();
    assert!(
        acl.iter()
            .any(|e| e.deny && e.extended_right == "ms-Exch-SMTP-Send-XShadow"),
        "{acl:?}"
    );
    permission::remove(tx, &req).await.unwrap();
    let (p, e) = param(permission::remove(tx, &req).await);
    assert_eq!(p, Some("ExtendedRights"), "{e}");
    assert!(e.ends_with("doesn't exist."), "{e}");
    let (p, _) = param(permission::rights_of(&[]));
    assert_eq!(p, Some("ExtendedRights"));
    // A bare name is the local server's receive connector.
    let rc = permission::connector(tx, SERVER, &id(&format!("Default {SERVER}")))
        .await
        .unwrap();
    assert!(!rc.is_send);
    let (p, _) = param(permission::connector(tx, SERVER, &id("Nope")).await);
    assert_eq!(p, Some("Identity"));

    let (sc, acl) = permission::enable_cross_forest(tx, "X", "CONTOSO\\Forest2")
        .await
        .unwrap();
    assert_eq!(sc.name, "X");
    let granted: Vec<_> = acl
        .iter()
        .map(|e| ExtendedRight::parse(&e.extended_right).unwrap())
        .collect();
    assert_eq!(granted, permission::CROSS_FOREST_GRANTS);
}
