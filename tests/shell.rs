//! The management shell: errors in PowerShell's manner, the seed articles' lines pasted as
//! printed, their effect on a running gateway over SMTP, and render round trips.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use hubgate::org::bootstrap::{self, FirstStart};
use hubgate::shell::Shell;

fn shell(setup: &Setup) -> Shell {
    Shell::new(setup.pool.clone(), FQDN)
}

/// Runs `hubgate shell` with args, stdin text and the given server FQDN: (ok, stdout, stderr).
fn run_cli(setup: &Setup, fqdn: &str, args: &[&str], stdin: &str) -> (bool, String, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_hubgate"))
        .arg("shell")
        .args(args)
        .env("DATABASE_URL", &setup.db_url)
        .env("HUBGATE_DATA_DIR", setup.data_dir.path())
        .env("HUBGATE_SERVER_NAME", fqdn)
        .env("HUBGATE_LOG", "warn")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn hubgate shell");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

async fn count(setup: &Setup, q: &str) -> i64 {
    let (n,): (i64,) = sqlx::query_as(q).fetch_one(&setup.pool).await.unwrap();
    n
}

#[tokio::test]
async fn errors_are_precise_and_a_failing_line_changes_nothing() {
    let setup = Setup::new().await;
    let mut sh = shell(&setup);
    let cases = [
        (
            "Get-MailboxDatabase",
            "The term 'Get-MailboxDatabase' is not recognized as the name of a cmdlet",
        ),
        (
            "Get-SendConnector -Bogus 1",
            "A parameter cannot be found that matches parameter name 'Bogus'.",
        ),
        (
            "New-AcceptedDomain -Name X",
            "missing mandatory parameters: DomainName.",
        ),
        (
            "New-AcceptedDomain X -DomainName x.test -DomainType Relay",
            "Authoritative, InternalRelay, ExternalRelay",
        ),
        (
            "Get-ReceiveConnector 'HUB1\\Nope'",
            "object 'HUB1\\Nope' couldn't be found",
        ),
        (
            "Set-ReceiveConnector 'HUB1\\*' -Enabled $false",
            "'HUB1\\*' matches multiple entries",
        ),
        (
            "New-SendConnector X -AddressSpaces a.test -LinkedReceiveConnector r",
            "'LinkedReceiveConnector' of New-SendConnector is an Exchange parameter that hubgate does not support",
        ),
        (
            "Set-ReceiveConnector 'Default HUB1' -MaxRecipientsPerMessage 600000",
            "between 1 and 512000",
        ),
        (
            "Set-TransportServer -MessageExpirationTimeout 91.00:00:00",
            "between 00:00:05 and 90.00:00:00",
        ),
        ("Set-ReceiveConnector 'Default HUB1' -Ma 5", "ambiguous"),
        (
            "New-ReceiveConnector X -RemoteIPRanges <IP address of Fourth Coffee Hub Transport server>",
            "placeholder",
        ),
        (
            "Get-SendConnector | Set-ReceiveConnector -Enabled $false",
            "",
        ),
    ];
    for (line, want) in cases {
        let e = sh.run_line(line).await.map(|_| ()).err();
        if want.is_empty() {
            continue;
        }
        let e = e
            .unwrap_or_else(|| panic!("{line} should fail"))
            .to_string();
        assert!(e.contains(want), "{line}: {e}");
    }

    // Line 2 fails: line 1 stays applied, nothing of line 2 is, line 3 never runs.
    let script = "New-AcceptedDomain One -DomainName one.test\n\
                  Get-ReceiveConnector | Set-ReceiveConnector -Banner '220 x' -MaxHopCount 999\n\
                  New-AcceptedDomain Three -DomainName three.test\n";
    let mut out = Vec::new();
    let (line, e) = sh.run_script(script, &mut out).await.unwrap_err();
    assert_eq!(line, 2);
    assert!(e.to_string().contains("MaxHopCount"), "{e}");
    assert_eq!(
        count(
            &setup,
            "SELECT count(*) FROM accepted_domain WHERE name = 'One'"
        )
        .await,
        1
    );
    assert_eq!(
        count(
            &setup,
            "SELECT count(*) FROM accepted_domain WHERE name = 'Three'"
        )
        .await,
        0
    );
    assert_eq!(
        count(
            &setup,
            "SELECT count(*) FROM receive_connector WHERE banner IS NOT NULL"
        )
        .await,
        0
    );

    // -WhatIf reports and changes nothing.
    let out = sh
        .run_line("Remove-AcceptedDomain One -WhatIf")
        .await
        .unwrap();
    assert!(
        out.contains("What if: Removing Accepted Domain \"One\""),
        "{out}"
    );
    assert_eq!(
        count(
            &setup,
            "SELECT count(*) FROM accepted_domain WHERE name = 'One'"
        )
        .await,
        1
    );
}

#[tokio::test]
async fn output_follows_exchange_views() {
    let setup = Setup::new().await;
    let mut sh = shell(&setup);
    let t = sh.run_line("Get-ReceiveConnector").await.unwrap();
    assert!(t.contains("Identity"), "{t}");
    assert!(t.contains("HUB1\\Default HUB1"), "{t}");
    assert!(t.contains("Bindings") && t.contains("Enabled"), "{t}");
    let t = sh.run_line("Get-AcceptedDomain").await.unwrap();
    assert!(
        t.contains("Name")
            && t.contains("DomainName")
            && t.contains("DomainType")
            && t.contains("Default"),
        "{t}"
    );
    assert!(
        t.contains("contoso.test") && t.contains("Authoritative") && t.contains("True"),
        "{t}"
    );
    let t = sh
        .run_line("Get-TransportServer HUB1 | fl MessageExpirationTimeout, MessageRetryInterval, DelayNotificationTimeout")
        .await
        .unwrap();
    assert!(t.contains("MessageExpirationTimeout : 2.00:00:00"), "{t}");
    assert!(t.contains("MessageRetryInterval     : 00:01:00"), "{t}");
    assert!(t.contains("DelayNotificationTimeout : 04:00:00"), "{t}");
    let t = sh
        .run_line("Get-ReceiveConnector 'Default HUB1' | Format-List MaxMessageSize")
        .await
        .unwrap();
    assert!(
        t.contains("MaxMessageSize : 10 MB (10,485,760 bytes)"),
        "{t}"
    );
    sh.run_line("Set-TransportServer HUB1 -MessageExpirationTimeout 3.00:00:00 -DelayNotificationTimeout 64:00:00").await.unwrap();
    let t = sh
        .run_line(
            "Get-TransportServer | ft Name, MessageExpirationTimeout, DelayNotificationTimeout",
        )
        .await
        .unwrap();
    assert!(t.contains("3.00:00:00") && t.contains("2.16:00:00"), "{t}");
    sh.run_line("$c = Get-ReceiveConnector 'Default HUB1'")
        .await
        .unwrap();
    let t = sh
        .run_line("$c | fl Identity")
        .await
        .err()
        .map(|e| e.to_string());
    assert!(
        t.is_some(),
        "piping a variable is not supported and says so"
    );
    let t = sh.run_line("Set-ReceiveConnector $c -MaxMessageSize \"25 MB\"; Get-ReceiveConnector $c | fl MaxMessageSize").await.unwrap();
    assert!(t.contains("25 MB (26,214,400 bytes)"), "{t}");
}

const CRED_STDIN: &str = "CONTOSO\\FourthCoffee\nP@ssw0rd-1\nCONTOSO\\FourthCoffee\nP@ssw0rd-1\n";

/// The seeds' lines as printed; only the `<IP address ...>` placeholder is replaced (by
/// 127.0.0.3 for the Exchange 2007 forest, 127.0.0.4 for the Exchange 2003 one: one server's
/// receive connectors need their own Bindings + RemoteIPRanges), and the article's alternatives
/// are separated by removing the connector again.
/// Seed 000 gives its Add-ADPermission lines only in prose; they are written out here.
const SEED_SCRIPT: &str = r#"
$mycred = get-credential
New-SendConnector -Name "Cross-Forest" -Usage Internal  -AddressSpaces FourthCoffee.com -SmartHosts Hub1.FourthCoffee.Com, Hub2.FourthCoffee.com -SmartHostAuthMechanism BasicAuthRequireTLS -AuthenticationCredential $mycred -SourceTransportServers HubA.Contoso.com, HubB.Contoso.com -DNSRoutingEnabled $False
Enable-CrossForestConnector -Connector "Cross-Forest" -user "ANONYMOUS LOGON"
Remove-SendConnector "Cross-Forest" -Confirm:$false
New-SendConnector -Name "Cross-Forest" -Usage Internal  -AddressSpaces FourthCoffee.com -SmartHosts Hub1.FourthCoffee.Com, Hub2.FourthCoffee.com -SmartHostAuthMechanism BasicAuth -AuthenticationCredential $mycred -SourceTransportServers HubA.Contoso.com, HubB.Contoso.com -requireTLS $True -DNSRoutingEnabled $False
Remove-SendConnector "Cross-Forest" -Confirm:$false
New-SendConnector -Name "Cross-Forest" -Usage Internal  -AddressSpaces FourthCoffee.com -SmartHosts Hub1.FourthCoffee.Com, Hub2.FourthCoffee.com -SmartHostAuthMechanism ExternalAuthoritative -SourceTransportServers HubA.Contoso.com, HubB.Contoso.com -DNSRoutingEnabled $False
New-ReceiveConnector -Name "Cross-Forest" -Server HubA -PermissionGroups ExchangeServers -RemoteIPRanges 127.0.0.3 -AuthMechanism ExternalAuthoritative -Bindings 0.0.0.0:25
$mycred = get-credential
New-SendConnector -Name "Legacy Forest" -SmartHostAuthMechanism BasicAuth -AuthenticationCredential $mycred -AddressSpaces FourthCoffee.com -SmartHosts Bridgehead1.FourthCoffee.Com, Bridgehead2.FourthCoffee.com -SourceTransportServers HubA.Contoso.com, HubB.Contoso.com -RequireTLS $True -DNSRoutingEnabled $False
Enable-CrossForestConnector -Connector "Legacy Forest" -user "ANONYMOUS LOGON" -genericMTA
New-ReceiveConnector -Name "Legacy Forest" -Usage Internal -Server HubA -PermissionGroups ExchangeServers -RemoteIPRanges 127.0.0.4 -AuthMechanism ExternalAuthoritative -Bindings 0.0.0.0:25
# Seed 000: Send-XShadow and Accept-XShadow by Add-ADPermission, then protocol logging.
Get-SendConnector "Cross-Forest" | Add-ADPermission -User "NT AUTHORITY\ANONYMOUS LOGON" -ExtendedRights ms-Exch-SMTP-Send-XSHADOW
Get-ReceiveConnector "HubA\Cross-Forest" | Add-ADPermission -User "MS Exchange\Externally Secured Servers" -ExtendedRights ms-Exch-SMTP-Accept-XSHADOW
Set-ReceiveConnector "HubA\Cross-Forest" -ProtocolLoggingLevel Verbose
"#;

/// A gateway running as HubA (the articles' server), on ports of our choosing.
struct HubA {
    child: Child,
}

impl Drop for HubA {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_hub_a(setup: &Setup) -> HubA {
    let mut child = Command::new(env!("CARGO_BIN_EXE_hubgate"))
        .arg("serve")
        .env("HUBGATE_DATA_DIR", setup.data_dir.path())
        .env("HUBGATE_SERVER_NAME", "huba.contoso.com")
        .env("DATABASE_URL", &setup.db_url)
        .env(
            "HUBGATE_CONSOLE_BIND",
            format!("{}:{}", gateway_ip(), gateway_port()),
        )
        .env("HUBGATE_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn hubgate");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        assert!(Instant::now() < deadline, "hubgate did not become ready");
        match lines.next() {
            Some(Ok(l)) if l.starts_with("hubgate ready") => break,
            Some(Ok(_)) => continue,
            _ => panic!("hubgate exited before it was ready"),
        }
    }
    std::thread::spawn(move || for _ in lines {});
    HubA { child }
}

/// EHLO, MAIL and RCPT from `local`; returns the RCPT reply.
async fn rcpt_from(addr: SocketAddr, local: &str, rcpt: &str) -> String {
    let mut c = Raw::connect_from(addr, Some(local)).await;
    let banner = c.reply().await;
    assert!(banner.starts_with("220 "), "{banner}");
    let r = c.cmd("EHLO org2.example").await;
    assert!(r.starts_with("250"), "{r}");
    let r = c.cmd("MAIL FROM:<user1@fourthcoffee.com>").await;
    assert!(r.starts_with("250"), "{r}");
    let r = c.cmd(&format!("RCPT TO:<{rcpt}>")).await;
    let _ = c.cmd("QUIT").await;
    r
}

async fn banner_of(addr: SocketAddr) -> String {
    let mut c = Raw::connect(addr).await;
    c.reply().await
}

#[tokio::test]
async fn seed_lines_run_as_printed_and_behave_over_smtp() {
    let setup = Setup::new().await;
    let ip = gateway_ip();
    let default_port = gateway_port();
    let client_port = gateway_port();
    bootstrap::ensure_server(
        &setup.pool,
        &FirstStart {
            server_name: "HUBA",
            fqdn: "huba.contoso.com",
            default_bindings: Some(vec![format!("{ip}:{default_port}")]),
            client_bindings: Some(vec![format!("{ip}:{client_port}")]),
            admin_password: Some(ADMIN_PASSWORD),
        },
    )
    .await
    .unwrap();
    setup
        .sql("UPDATE receive_connector SET tarpit_interval = 0")
        .await;

    // The placeholder as printed is refused with a clear error and exit code.
    let (ok, _, err) = run_cli(
        &setup,
        "huba.contoso.com",
        &[
            "-c",
            r#"New-ReceiveConnector -Name "Cross-Forest" -Server HubA -PermissionGroups ExchangeServers -RemoteIPRanges <IP address of Fourth Coffee Hub Transport server> -AuthMechanism ExternalAuthoritative -Bindings 0.0.0.0:25"#,
        ],
        "",
    );
    assert!(!ok);
    assert!(
        err.contains("<IP address of Fourth Coffee Hub Transport server> is a placeholder"),
        "{err}"
    );

    let script = setup.data_dir.path().join("seed.ps1");
    std::fs::write(&script, SEED_SCRIPT).unwrap();
    let (ok, out, err) = run_cli(
        &setup,
        "huba.contoso.com",
        &["-f", script.to_str().unwrap()],
        CRED_STDIN,
    );
    assert!(ok, "stdout: {out}\nstderr: {err}");

    // The objects are what the article describes.
    let (auth, user, pw, dns, hosts, sources): (String, Option<String>, Option<String>, bool, Vec<String>, Vec<String>) =
        sqlx::query_as("SELECT smart_host_auth_mechanism, auth_username, auth_password, dns_routing_enabled, smart_hosts, source_transport_servers FROM send_connector WHERE name = 'Legacy Forest'")
            .fetch_one(&setup.pool)
            .await
            .unwrap();
    assert_eq!(auth, "BasicAuth");
    assert_eq!(user.as_deref(), Some("CONTOSO\\FourthCoffee"));
    // Sealed with the organisation key the shell made in the data directory.
    let pw = pw.unwrap();
    assert!(pw.starts_with("hgv1:") && !pw.contains("P@ssw0rd"), "{pw}");
    assert!(!dns);
    assert_eq!(
        hosts,
        [
            "Bridgehead1.FourthCoffee.Com",
            "Bridgehead2.FourthCoffee.com"
        ]
    );
    assert_eq!(sources, ["HubA.Contoso.com", "HubB.Contoso.com"]);
    let (ok, out, err) = run_cli(
        &setup,
        "huba.contoso.com",
        &[
            "-c",
            "Get-SendConnector 'Legacy Forest' | Get-ADPermission -User 'ANONYMOUS LOGON' | ft User, ExtendedRights",
        ],
        "",
    );
    assert!(ok, "{err}");
    for right in [
        "ms-Exch-Send-Headers-Routing",
        "ms-Exch-Send-Headers-Forest",
        "ms-Exch-Send-Headers-Organization",
        "ms-Exch-SMTP-Send-Exch50",
    ] {
        assert!(out.contains(right), "{right} missing:\n{out}");
    }
    assert!(out.contains("NT AUTHORITY\\ANONYMOUS LOGON"), "{out}");
    assert_eq!(
        count(&setup, "SELECT count(*) FROM connector_permission p JOIN send_connector s ON s.id = p.connector_id WHERE s.name = 'Cross-Forest' AND p.extended_right = 'ms-Exch-SMTP-Send-XShadow' AND p.principal = 'NT AUTHORITY\\ANONYMOUS LOGON'").await,
        1
    );
    let (ok, out, err) = run_cli(
        &setup,
        "huba.contoso.com",
        &["-c", "Get-ReceiveConnector -Server HubA"],
        "",
    );
    assert!(ok, "{err}");
    assert!(
        out.contains("HUBA\\Cross-Forest") && out.contains("{0.0.0.0:25}"),
        "{out}"
    );

    // Move the pasted connectors off port 25 to a port on this process's gateway address, drop the
    // duplicate from the 2003 procedure, and start HubA.
    let xf_port = gateway_port();
    let (ok, _, err) = run_cli(
        &setup,
        "huba.contoso.com",
        &[
            "-c",
            &format!(
                "Set-ReceiveConnector 'HubA\\Cross-Forest' -Bindings {ip}:{xf_port} -TarpitInterval 00:00:00; Remove-ReceiveConnector 'Legacy Forest' -Confirm:$false"
            ),
        ],
        "",
    );
    assert!(ok, "{err}");
    let _hub = start_hub_a(&setup);
    let xf = SocketAddr::from((ip, xf_port));
    let default = SocketAddr::from((ip, default_port));

    // Externally Secured sessions from the remote IP may relay; anonymous ones may not.
    let r = rcpt_from(xf, "127.0.0.3", "administrator@fabrikam.example").await;
    assert!(r.starts_with("250 2.1.5"), "{r}");
    let r = rcpt_from(default, "127.0.0.3", "administrator@fabrikam.example").await;
    assert!(r.starts_with("550 5.7.1 Unable to relay"), "{r}");

    // A new accepted domain reaches the running gateway.
    let (ok, _, err) = run_cli(
        &setup,
        "huba.contoso.com",
        &[
            "-c",
            "New-AcceptedDomain -Name Org2 -DomainName org2.example -DomainType ExternalRelay",
        ],
        "",
    );
    assert!(ok, "{err}");
    let gw_wait = || async {
        rcpt_from(default, "127.0.0.5", "administrator@org2.example")
            .await
            .starts_with("250")
    };
    eventually("the new accepted domain", gw_wait).await;

    // And a banner set in the shell is live on the next connection.
    let (ok, _, err) = run_cli(
        &setup,
        "huba.contoso.com",
        &[
            "-c",
            "Set-ReceiveConnector 'Default HUBA' -Banner '220 Shell-set banner'",
        ],
        "",
    );
    assert!(ok, "{err}");
    eventually("the new banner", || async {
        banner_of(default).await.trim_end() == "220 Shell-set banner"
    })
    .await;
}

/// Creates an object on one organisation, renders it, runs the rendering on a fresh one and
/// compares what `get` prints in full on both.
async fn round_trip(create: &[&str], get: &str) {
    let a = Setup::new().await;
    let mut sa = shell(&a);
    for l in create {
        sa.run_line(l).await.unwrap_or_else(|e| panic!("{l}: {e}"));
    }
    let rendered = sa
        .run_line(&format!("{get} | Export-Cmdlet"))
        .await
        .unwrap();
    assert!(
        rendered.starts_with("New-") || rendered.starts_with('$') || rendered.starts_with("Set-"),
        "{rendered}"
    );
    let b = Setup::new().await;
    let mut sb = shell(&b);
    let mut out = Vec::new();
    sb.run_script(&rendered, &mut out)
        .await
        .unwrap_or_else(|(n, e)| panic!("line {n} of\n{rendered}\n{e}"));
    let full = format!("{get} | fl");
    let want = sa.run_line(&full).await.unwrap();
    let got = sb.run_line(&full).await.unwrap();
    assert_eq!(want, got, "rendered:\n{rendered}");
}

#[tokio::test]
async fn round_trip_accepted_domain() {
    round_trip(
        &["New-AcceptedDomain -Name 'Backup MX' -DomainName backup.example -DomainType ExternalRelay -MessageExpirationTimeout 3.00:00:00 -DelayNotificationTimeout 64:00:00",
          "Set-AcceptedDomain 'Backup MX' -AddressBookEnabled $true"],
        "Get-AcceptedDomain 'Backup MX'",
    )
    .await;
}

#[tokio::test]
async fn round_trip_send_connector() {
    // The export leaves the password out: Get-Credential asks for it when the script runs.
    let a = Setup::new().await;
    let mut sa = shell(&a).with_data_dir(a.data_dir.path().to_path_buf());
    for l in [
        "$c = Get-Credential -UserName 'CONTOSO\\relay' -Password 'it''s secret'",
        "New-SendConnector -Name 'To Org2' -Usage Partner -AddressSpaces 'org2.example;5', '*.org2.example' -SmartHosts 10.0.0.1, hub.org2.example -SmartHostAuthMechanism BasicAuthRequireTLS -AuthenticationCredential $c -Port 2525 -MaxMessageSize 25MB -ForceHELO $true -Fqdn out.contoso.test -ProtocolLoggingLevel Verbose -MessageExpirationTimeout 1.00:00:00 -Comment 'Org2 hubs' -ConnectionInactivityTimeOut 00:05:00 -Enabled $false",
    ] {
        sa.run_line(l).await.unwrap_or_else(|e| panic!("{l}: {e}"));
    }
    let get = "Get-SendConnector 'To Org2'";
    let rendered = sa
        .run_line(&format!("{get} | Export-Cmdlet"))
        .await
        .unwrap();
    assert!(!rendered.contains("secret"), "{rendered}");
    assert!(
        rendered.contains("= Get-Credential -UserName 'CONTOSO\\relay'\n"),
        "{rendered}"
    );
    let b = Setup::new().await;
    let password: hubgate::shell::CredentialSource =
        Box::new(std::io::Cursor::new(b"it's secret\n".to_vec()));
    let mut sb = shell(&b)
        .with_data_dir(b.data_dir.path().to_path_buf())
        .with_credential_source(password);
    let mut out = Vec::new();
    sb.run_script(&rendered, &mut out)
        .await
        .unwrap_or_else(|(n, e)| panic!("line {n} of\n{rendered}\n{e}"));
    let full = format!("{get} | fl");
    assert_eq!(
        sa.run_line(&full).await.unwrap(),
        sb.run_line(&full).await.unwrap(),
        "rendered:\n{rendered}"
    );
}

#[tokio::test]
async fn round_trip_receive_connector() {
    round_trip(
        &["New-ReceiveConnector -Name 'From Org1' -Usage Internal -RemoteIPRanges 10.1.0.0/16, 192.168.5.7 -Bindings 127.0.0.1:2526 -Banner '220 hello' -MaxMessageSize 20MB -MaxRecipientsPerMessage 1000 -MaxInboundConnection unlimited -ConnectionTimeout 00:20:00 -MaxHopCount 40 -ProtocolLoggingLevel Verbose -RequireTLS $true -TarpitInterval 00:00:00 -SizeEnabled Disabled -ChunkingEnabled $false",
          "Set-ReceiveConnector 'HUB1\\From Org1' -PermissionGroups AnonymousUsers, ExchangeServers -AuthMechanism Tls, ExternalAuthoritative"],
        "Get-ReceiveConnector 'HUB1\\From Org1'",
    )
    .await;
}

#[tokio::test]
async fn round_trip_recipients() {
    round_trip(
        &["New-Mailbox -Name 'User One' -PrimarySmtpAddress user1@contoso.test -EmailAddresses 'SMTP:user1@contoso.test', 'smtp:u1@contoso.test'"],
        "Get-Mailbox 'User One'",
    )
    .await;
    round_trip(
        &["New-MailContact -Name 'Partner' -ExternalEmailAddress partner@fabrikam.example",
          "Set-MailContact Partner -EmailAddresses 'SMTP:partner@fabrikam.example', 'partner@contoso.test'"],
        "Get-MailContact Partner",
    )
    .await;
}

#[tokio::test]
async fn round_trip_transport_server_and_config() {
    round_trip(
        &["Set-TransportServer HUB1 -MessageExpirationTimeout 3.00:00:00 -DelayNotificationTimeout 64:00:00 -TransientFailureRetryCount 10 -MaxOutboundConnections unlimited -MaxPerDomainOutboundConnections 50 -ExternalDNSServers 10.0.0.53"],
        "Get-TransportServer HUB1",
    )
    .await;
    round_trip(
        &["Set-TransportConfig -ShadowRedundancyEnabled $false -ShadowHeartbeatRetryCount 3 -MaxReceiveSize 20MB -MaxSendSize unlimited -TLSReceiveDomainSecureList org2.example"],
        "Get-TransportConfig",
    )
    .await;
}

#[tokio::test]
async fn round_trip_ad_permission() {
    let a = Setup::new().await;
    let mut sa = shell(&a);
    sa.run_line("New-SendConnector X -AddressSpaces x.example")
        .await
        .unwrap();
    sa.run_line("Get-SendConnector X | Add-ADPermission -User 'MS Exchange\\Externally Secured Servers' -ExtendedRights ms-Exch-SMTP-Send-XShadow -Deny").await.unwrap();
    let rendered = sa
        .run_line("Get-ADPermission X -User 'Externally Secured Servers' | Export-Cmdlet")
        .await
        .unwrap();
    assert!(rendered.contains("Add-ADPermission -Identity 'X' -User 'MS Exchange\\Externally Secured Servers' -ExtendedRights 'ms-Exch-SMTP-Send-XShadow' -Deny"), "{rendered}");
    let b = Setup::new().await;
    let mut sb = shell(&b);
    sb.run_line("New-SendConnector X -AddressSpaces x.example")
        .await
        .unwrap();
    let mut out = Vec::new();
    sb.run_script(&rendered, &mut out)
        .await
        .map_err(|(_, e)| e.to_string())
        .unwrap();
    let get = "Get-ADPermission X | ft User, ExtendedRights, Deny";
    assert_eq!(
        sa.run_line(get).await.unwrap(),
        sb.run_line(get).await.unwrap()
    );
    // Removing it again restores the default ACL.
    sb.run_line("Remove-ADPermission X -User 'MS Exchange\\Externally Secured Servers' -ExtendedRights ms-Exch-SMTP-Send-XShadow -Deny").await.unwrap();
    assert!(!sb.run_line(get).await.unwrap().contains("True"));
}

#[tokio::test]
async fn a_second_accepted_domain_for_the_same_domain_names_the_domain() {
    let setup = Setup::new().await;
    let mut sh = shell(&setup);
    let err = sh
        .run_line("New-AcceptedDomain -Name Again -DomainName contoso.test")
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("The domain \"contoso.test\" is already an accepted domain."),
        "{err}"
    );
}

/// A TimeSpan or size too large to hold is refused by name; it used to wrap (2^57 days is exactly
/// 0 seconds modulo 2^64, so the line below set one hour) or saturate, and pass the range check.
#[tokio::test]
async fn overflowing_timespans_and_sizes_are_refused_and_change_nothing() {
    let setup = Setup::new().await;
    let snapshot = || async {
        let (ts, rc): (String, String) = sqlx::query_as(
            "SELECT (SELECT json_agg(t)::text FROM transport_server t),
                    (SELECT json_agg(r)::text FROM receive_connector r)",
        )
        .fetch_one(&setup.pool)
        .await
        .unwrap();
        ts + &rc
    };
    let before = snapshot().await;
    let cases = [
        (
            "Set-TransportServer HUB1 -MessageExpirationTimeout 144115188075855872.01:00:00",
            "parameter 'MessageExpirationTimeout'",
            "longest is 10675199.02:48:05",
        ),
        (
            "Set-TransportServer HUB1 -DelayNotificationTimeout 99999999999999999999:00:00",
            "parameter 'DelayNotificationTimeout'",
            "longest is 10675199.02:48:05",
        ),
        (
            "Set-ReceiveConnector 'Default HUB1' -MaxMessageSize 10000000000000000TB",
            "parameter 'MaxMessageSize'",
            "largest is 8388607TB",
        ),
        (
            "Set-ReceiveConnector 'Default HUB1' -MaxHeaderSize 99999999999999999999.5GB",
            "parameter 'MaxHeaderSize'",
            "largest is 8388607TB",
        ),
    ];
    for (line, param, limit) in cases {
        let (ok, out, err) = run_cli(&setup, FQDN, &["-c", line], "");
        assert!(!ok, "{line} was accepted: {out}");
        assert!(err.contains(param) && err.contains(limit), "{line}: {err}");
        assert_eq!(snapshot().await, before, "{line} changed the configuration");
    }
}
