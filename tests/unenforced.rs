//! Parameters that hubgate stores but does not act on (src/shell/unenforced.rs): New-/Set- warn
//! when a command gives one a value that asks for the missing behaviour, Format-List shows the
//! value with its caveat, and a value hubgate honours says nothing.

mod common;

use std::process::Command;

use common::*;
use hubgate::shell::Shell;

async fn run(sh: &mut Shell, line: &str) -> String {
    sh.run_line(line)
        .await
        .unwrap_or_else(|e| panic!("{line}: {e}"))
}

fn warning(param: &str) -> String {
    format!("WARNING: {param} is saved but not enforced: ")
}

fn warned(out: &str) -> Vec<&str> {
    out.lines()
        .filter_map(|l| l.strip_prefix("WARNING: "))
        .filter_map(|l| l.split_once(" is saved but not enforced: "))
        .map(|(p, _)| p)
        .collect()
}

#[tokio::test]
async fn transport_server_settings_without_effect_warn_and_show_it() {
    let setup = Setup::new().await;
    let mut sh = Shell::new(setup.pool.clone(), FQDN);

    let out = run(
        &mut sh,
        "Set-TransportServer HUB1 -QueueMaxIdleTime 00:10:00 -MaxConcurrentMailboxSubmissions 5 -IntraOrgConnectorProtocolLoggingLevel Verbose -MessageRetryInterval 00:02:00",
    )
    .await;
    assert_eq!(
        warned(&out),
        [
            "MaxConcurrentMailboxSubmissions",
            "QueueMaxIdleTime",
            "IntraOrgConnectorProtocolLoggingLevel"
        ],
        "{out}"
    );
    let fl = run(&mut sh, "Get-TransportServer HUB1 | Format-List").await;
    assert_eq!(
        shown(&fl, "QueueMaxIdleTime"),
        "00:10:00 (not enforced: hubgate does not delete idle delivery queues yet)"
    );
    assert!(
        shown(&fl, "IntraOrgConnectorProtocolLoggingLevel").starts_with("Verbose (not enforced: "),
        "{fl}"
    );
    assert_eq!(shown(&fl, "MessageRetryInterval"), "00:02:00");

    // Back to Exchange's default, which hubgate's behaviour matches: silent, and shown plain.
    let out = run(
        &mut sh,
        "Set-TransportServer HUB1 -QueueMaxIdleTime 00:03:00",
    )
    .await;
    assert!(!out.contains("WARNING"), "{out}");
    let fl = run(&mut sh, "Get-TransportServer HUB1 | fl QueueMaxIdleTime").await;
    assert_eq!(shown(&fl, "QueueMaxIdleTime"), "00:03:00");

    // A command that does not touch a stored caveat does not repeat it.
    let out = run(&mut sh, "Set-TransportServer HUB1 -PoisonThreshold 3").await;
    assert!(!out.contains("WARNING"), "{out}");
}

#[tokio::test]
async fn organisation_limits_and_shadow_settings_warn_and_show_it() {
    let setup = Setup::new().await;
    let mut sh = Shell::new(setup.pool.clone(), FQDN);

    // The organisation's default limits are shown with their caveat from the start: an admin
    // reading "10 MB" must not believe it is checked.
    let fl = run(&mut sh, "Get-TransportConfig | Format-List").await;
    assert!(
        shown(&fl, "MaxReceiveSize")
            .contains("(not enforced: hubgate does not check the organization's size limits yet"),
        "{fl}"
    );
    // The shadow settings are enforced (the receive side, the gate, heartbeats): shown plain.
    assert_eq!(shown(&fl, "ShadowRedundancyEnabled"), "True", "{fl}");
    assert_eq!(shown(&fl, "ShadowHeartbeatRetryCount"), "12");

    let out = run(
        &mut sh,
        "Set-TransportConfig -ShadowHeartbeatRetryCount 3 -MaxRecipientEnvelopeLimit unlimited -MaxSendSize 20MB -GenerateCopyOfDSNFor 5.4.8",
    )
    .await;
    assert_eq!(
        warned(&out),
        ["MaxSendSize", "GenerateCopyOfDSNFor"],
        "{out}"
    );
    let fl = run(&mut sh, "Get-TransportConfig | fl").await;
    assert_eq!(shown(&fl, "MaxRecipientEnvelopeLimit"), "Unlimited");
    assert_eq!(shown(&fl, "ShadowHeartbeatRetryCount"), "3");

    // Turning shadow redundancy off matches what hubgate does: nothing to say.
    let out = run(
        &mut sh,
        "Set-TransportConfig -ShadowRedundancyEnabled $false -GenerateCopyOfDSNFor $null",
    )
    .await;
    assert!(!out.contains("WARNING"), "{out}");
    let fl = run(&mut sh, "Get-TransportConfig | fl").await;
    assert_eq!(shown(&fl, "ShadowRedundancyEnabled"), "False");
}

#[tokio::test]
async fn connector_settings_without_effect_warn_and_show_it() {
    let setup = Setup::new().await;
    let mut sh = Shell::new(setup.pool.clone(), FQDN);

    // The Client preset brings Integrated authentication, which hubgate does not offer.
    let out = run(
        &mut sh,
        "New-ReceiveConnector -Name Clients -Usage Client -RemoteIPRanges 10.3.0.0/16",
    )
    .await;
    assert!(out.starts_with(&warning("AuthMechanism")), "{out}");
    let fl = run(&mut sh, "Get-ReceiveConnector 'HUB1\\Clients' | fl").await;
    assert!(
        shown(&fl, "AuthMechanism").starts_with(
            "Tls, Integrated, BasicAuth, BasicAuthRequireTLS (not enforced: hubgate offers no Integrated"
        ),
        "{fl}"
    );
    let out = run(
        &mut sh,
        "Set-ReceiveConnector 'HUB1\\Clients' -AuthMechanism Tls, BasicAuth, BasicAuthRequireTLS -MaxAcknowledgementDelay 00:00:00",
    )
    .await;
    assert!(!out.contains("WARNING"), "{out}");
    let fl = run(&mut sh, "Get-ReceiveConnector 'HUB1\\Clients' | fl").await;
    assert_eq!(
        shown(&fl, "AuthMechanism"),
        "Tls, BasicAuth, BasicAuthRequireTLS"
    );
    assert_eq!(shown(&fl, "MaxAcknowledgementDelay"), "00:00:00");

    let out = run(
        &mut sh,
        "Set-ReceiveConnector 'HUB1\\Clients' -EnableAuthGSSAPI $true -MaxAcknowledgementDelay 00:00:10",
    )
    .await;
    // MaxAcknowledgementDelay is enforced (delayed acknowledgement): no warning.
    assert_eq!(warned(&out), ["EnableAuthGSSAPI"], "{out}");

    let out = run(
        &mut sh,
        "New-SendConnector -Name Partner -AddressSpaces partner.test -ErrorPolicies DowngradeAuthFailures",
    )
    .await;
    assert!(out.starts_with(&warning("ErrorPolicies")), "{out}");
    let fl = run(&mut sh, "Get-SendConnector Partner | fl ErrorPolicies").await;
    assert!(
        shown(&fl, "ErrorPolicies").starts_with("DowngradeAuthFailures (not enforced: "),
        "{fl}"
    );
    // DowngradeDnsFailures is enforced: silent and plain.
    let out = run(
        &mut sh,
        "Set-SendConnector Partner -ErrorPolicies DowngradeDnsFailures",
    )
    .await;
    assert!(!out.contains("WARNING"), "{out}");
    let fl = run(&mut sh, "Get-SendConnector Partner | fl ErrorPolicies").await;
    assert_eq!(shown(&fl, "ErrorPolicies"), "DowngradeDnsFailures");

    let out = run(
        &mut sh,
        "Set-SendConnector Partner -DNSRoutingEnabled $false -SmartHosts 127.0.0.83 -SmartHostAuthMechanism ExchangeServer",
    )
    .await;
    assert_eq!(warned(&out), ["SmartHostAuthMechanism"], "{out}");
    let fl = run(
        &mut sh,
        "Get-SendConnector Partner | fl SmartHostAuthMechanism",
    )
    .await;
    assert!(
        shown(&fl, "SmartHostAuthMechanism").starts_with("ExchangeServer (not enforced: "),
        "{fl}"
    );
}

#[tokio::test]
async fn send_connector_permissions_warn_but_receive_connector_ones_do_not() {
    let setup = Setup::new().await;
    let mut sh = Shell::new(setup.pool.clone(), FQDN);
    run(&mut sh, "New-SendConnector -Name X -AddressSpaces x.test").await;
    let out = run(
        &mut sh,
        "Get-SendConnector X | Add-ADPermission -User 'NT AUTHORITY\\ANONYMOUS LOGON' -ExtendedRights ms-Exch-SMTP-Send-XShadow, ms-Exch-Send-Headers-Organization",
    )
    .await;
    assert_eq!(
        out.matches("WARNING: A send connector's ExtendedRights is saved but not enforced: ")
            .count(),
        1,
        "{out}"
    );
    let out = run(
        &mut sh,
        "Get-ReceiveConnector 'Default HUB1' | Add-ADPermission -User 'NT AUTHORITY\\ANONYMOUS LOGON' -ExtendedRights ms-Exch-SMTP-Accept-Any-Recipient",
    )
    .await;
    assert!(!out.contains("WARNING"), "{out}");
}

// DomainSecureEnabled (no mutual TLS yet): warned whenever it is set to $true, shown as not
// enforced wherever it is True, never silently.
const DOMAIN_SECURE_WARNING: &str = "WARNING: DomainSecureEnabled is saved but not enforced";
const DOMAIN_SECURE_SHOWN: &str =
    "True (not enforced: hubgate does not implement domain-secure mutual TLS yet)";

#[tokio::test]
async fn receive_connector_warns_when_set_and_shows_it_is_not_enforced() {
    let setup = Setup::new().await;
    let mut sh = Shell::new(setup.pool.clone(), FQDN);

    // -Partner turns DomainSecureEnabled on by itself.
    let out = run(
        &mut sh,
        "New-ReceiveConnector -Name 'From Fabrikam' -Usage Partner -Bindings 127.0.0.1:2526 -RemoteIPRanges 10.1.0.0/16",
    )
    .await;
    assert!(out.starts_with(DOMAIN_SECURE_WARNING), "{out}");
    let out = run(
        &mut sh,
        "Get-ReceiveConnector 'From Fabrikam' | Format-List DomainSecureEnabled",
    )
    .await;
    assert_eq!(shown(&out, "DomainSecureEnabled"), DOMAIN_SECURE_SHOWN);

    let out = run(
        &mut sh,
        "Set-ReceiveConnector 'From Fabrikam' -DomainSecureEnabled $false",
    )
    .await;
    assert!(!out.contains("WARNING"), "{out}");
    let out = run(&mut sh, "Get-ReceiveConnector 'From Fabrikam' | fl").await;
    assert_eq!(shown(&out, "DomainSecureEnabled"), "False");

    let out = run(
        &mut sh,
        "Set-ReceiveConnector 'From Fabrikam' -DomainSecureEnabled $true",
    )
    .await;
    assert!(out.starts_with(DOMAIN_SECURE_WARNING), "{out}");
    let out = run(&mut sh, "Get-ReceiveConnector 'From Fabrikam' | fl").await;
    assert_eq!(shown(&out, "DomainSecureEnabled"), DOMAIN_SECURE_SHOWN);

    // A connector created without it says nothing.
    let out = run(
        &mut sh,
        "New-ReceiveConnector -Name Plain -Usage Custom -Bindings 127.0.0.1:2527 -RemoteIPRanges 10.2.0.0/16",
    )
    .await;
    assert!(!out.contains("WARNING"), "{out}");
}

#[tokio::test]
async fn send_connector_and_the_domain_secure_lists_warn_too() {
    let setup = Setup::new().await;
    let mut sh = Shell::new(setup.pool.clone(), FQDN);
    let out = run(
        &mut sh,
        "New-SendConnector -Name Fabrikam -AddressSpaces fabrikam.test -DomainSecureEnabled $true",
    )
    .await;
    assert!(out.starts_with(DOMAIN_SECURE_WARNING), "{out}");
    let out = run(&mut sh, "Get-SendConnector Fabrikam | Format-List").await;
    assert_eq!(shown(&out, "DomainSecureEnabled"), DOMAIN_SECURE_SHOWN);

    let out = run(
        &mut sh,
        "New-SendConnector -Name Northwind -AddressSpaces northwind.test",
    )
    .await;
    assert!(!out.contains("WARNING"), "{out}");

    let out = run(
        &mut sh,
        "Set-TransportConfig -TLSReceiveDomainSecureList fabrikam.test",
    )
    .await;
    assert!(
        out.starts_with(
            "WARNING: TLSReceiveDomainSecureList is saved but not enforced: hubgate does not implement domain-secure mutual TLS yet."
        ),
        "{out}"
    );

    // The command-line shell prints the warning too.
    let out = Command::new(env!("CARGO_BIN_EXE_hubgate"))
        .args([
            "shell",
            "-c",
            "Set-SendConnector Northwind -DomainSecureEnabled $true",
        ])
        .env("DATABASE_URL", &setup.db_url)
        .env("HUBGATE_DATA_DIR", setup.data_dir.path())
        .env("HUBGATE_SERVER_NAME", FQDN)
        .env("HUBGATE_LOG", "warn")
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.starts_with(DOMAIN_SECURE_WARNING), "{stdout}");
}
