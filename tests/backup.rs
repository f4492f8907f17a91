//! `hubgate backup` and `hubgate restore`: the configuration as a script of shell lines, run
//! again on an empty database; secrets only when asked, and then sealed with the organisation
//! key.

mod common;

use std::path::Path;
use std::process::{Command, ExitStatus, Stdio};

use common::mail::*;
use common::peers::{Sink, SinkOptions};
use common::*;
use hubgate::shell::Shell;

const PASSWORD: &str = "S3cret-Relay-pw";
const USER_PASSWORD: &str = "Us3r-Pa55word-xyz";

/// `hubgate <args>` on the database `url` with the data directory `dir`, `stdin` as its input.
fn hubgate(url: &str, dir: &Path, args: &[&str], stdin: &str) -> (ExitStatus, String, String) {
    let input = dir.join(format!(".stdin-{}", uuid::Uuid::new_v4().simple()));
    std::fs::write(&input, stdin).unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_hubgate"));
    cmd.args(args)
        .env("DATABASE_URL", url)
        .env("HUBGATE_SERVER_NAME", FQDN)
        .env("HUBGATE_DATA_DIR", dir)
        .env("HUBGATE_ADMIN_PASSWORD", ADMIN_PASSWORD)
        .env("HUBGATE_LOG", "warn")
        .env_remove("HUBGATE_ORGANIZATION_KEY")
        .env_remove("HUBGATE_DEFAULT_BINDINGS")
        .stdin(Stdio::from(std::fs::File::open(&input).unwrap()));
    let r = run_to_exit(&mut cmd, &format!("hubgate {args:?} did not finish"));
    let _ = std::fs::remove_file(&input);
    r
}

/// A backup of `url`, as a string (through `-o`, the way an operator keeps one).
fn backup(url: &str, dir: &Path, secrets: bool) -> String {
    let file = dir.join(format!("backup-{}.ps1", uuid::Uuid::new_v4().simple()));
    let f = file.to_str().unwrap();
    let mut args = vec!["backup", "-o", f];
    if secrets {
        args.push("--include-secrets");
    }
    let (status, _, err) = hubgate(url, dir, &args, "");
    assert!(status.success(), "backup failed: {err}");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&file).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "the backup file is private");
    std::fs::read_to_string(&file).unwrap()
}

fn write_script(dir: &Path, text: &str) -> String {
    let file = dir.join(format!("script-{}.ps1", uuid::Uuid::new_v4().simple()));
    std::fs::write(&file, text).unwrap();
    file.to_str().unwrap().to_string()
}

async fn run(sh: &mut Shell, line: &str) -> String {
    sh.run_line(line)
        .await
        .unwrap_or_else(|e| panic!("{line}: {e}"))
}

/// An organisation with one of everything a backup carries, the smart host at `smart_host`.
async fn configured(smart_host: (&str, u16)) -> Setup {
    let s = setup().await;
    let mut sh = Shell::new(s.pool.clone(), FQDN).with_data_dir(s.data_dir.path().to_path_buf());
    let (host, port) = smart_host;
    for line in [
        "New-AcceptedDomain -Name Fabrikam -DomainName fabrikam.test -DomainType InternalRelay"
            .to_string(),
        "New-AcceptedDomain -Name Tailspin -DomainName tailspin.test -DomainType Authoritative"
            .to_string(),
        "Set-AcceptedDomain Tailspin -MakeDefault $true".to_string(),
        "New-MailContact -Name Partner -ExternalEmailAddress someone@partner.example".to_string(),
        "New-Mailbox -Name 'O''Brien' -PrimarySmtpAddress obrien@contoso.test".to_string(),
        format!("$cred = Get-Credential -UserName relay -Password {PASSWORD}"),
        format!(
            "New-SendConnector -Name Partner -AddressSpaces 'partner.example' -DNSRoutingEnabled $false -SmartHosts '{host}' -Port {port} -SmartHostAuthMechanism BasicAuth -AuthenticationCredential $cred"
        ),
        "New-SendConnector -Name Internet -Internet -AddressSpaces '*' -MaxMessageSize 20MB"
            .to_string(),
        format!(
            "New-ReceiveConnector -Name Partners -Usage Partner -Bindings '{}:{}' -RemoteIPRanges 10.1.0.0/16 -MaxRecipientsPerMessage 50",
            s.ip,
            s.another_port()
        ),
        "Get-ReceiveConnector Partners | Add-ADPermission -User 'NT AUTHORITY\\ANONYMOUS LOGON' -ExtendedRights ms-Exch-SMTP-Accept-Any-Recipient".to_string(),
        "Set-ReceiveConnector 'Client HUB1' -MaxMessageSize 15MB -Banner '220 Welcome'".to_string(),
        "Set-TransportServer HUB1 -MessageRetryInterval 00:05:00 -PoisonThreshold 4".to_string(),
        "Set-TransportConfig -MaxRecipientEnvelopeLimit 2000".to_string(),
        "Add-IPAllowListEntry -IPAddress 192.0.2.7 -Comment 'O''Brien''s backup MX'".to_string(),
        "Add-IPBlockListEntry -IPRange 198.51.100.0/24 -ExpirationTime '12/31/2099 23:59'"
            .to_string(),
        "Set-RecipientFilterConfig -BlockListEnabled $true -BlockedRecipients trap@tailspin.test"
            .to_string(),
        "Add-ValidRecipient someone@fabrikam.test".to_string(),
    ] {
        run(&mut sh, &line).await;
    }
    hubgate::org::account::Account::create(
        &s.pool,
        "smtp-user",
        USER_PASSWORD,
        &["Partner Servers"],
    )
    .await
    .unwrap();
    s
}

/// Backup, restore on an empty database, backup again: the same script, byte for byte; and
/// without --include-secrets the script holds no secret, so a restore asks for the smart-host
/// password.
#[tokio::test]
async fn a_restored_backup_backs_up_identically() {
    let a = configured(("127.0.0.172", free_port())).await;
    let script = backup(&a.db_url, a.data_dir.path(), false);
    for line in [
        "New-SendConnector -Name 'Partner'",
        "New-ReceiveConnector -Name 'Partners'",
        "Add-ADPermission",
        "New-MailContact -Name 'Partner'",
        "New-Mailbox -Name 'O''Brien'",
        "New-User -Name 'smtp-user' -MemberOf 'Partner Servers'",
        "New-User -Name 'Administrator' -MemberOf 'Organization Management'",
        "Set-TransportServer -Identity 'HUB1'",
        "Set-TransportConfig",
        "Set-AcceptedDomain 'Tailspin' -MakeDefault $true",
        "Add-IPAllowListEntry -IPRange '192.0.2.7' -Comment 'O''Brien''s backup MX'",
        "Add-IPBlockListEntry -IPRange '198.51.100.0/24' -ExpirationTime '12/31/2099 11:59:00 PM'",
        "-BlockedRecipients 'trap@tailspin.test'",
        "Add-ValidRecipient -Address 'someone@fabrikam.test'",
    ] {
        assert!(script.contains(line), "no {line:?} in:\n{script}");
    }
    for secret in [
        PASSWORD,
        USER_PASSWORD,
        "hgv1:",
        "$argon2",
        "EncryptedPassword",
    ] {
        assert!(!script.contains(secret), "{secret:?} in:\n{script}");
    }

    let url = fresh_database().await;
    let dir = tempfile::tempdir().unwrap();
    let file = write_script(dir.path(), &script);
    // Get-Credential reads the smart-host password from stdin when it is not a terminal.
    let (status, out, err) = hubgate(
        &url,
        dir.path(),
        &["restore", &file],
        &format!("{PASSWORD}\n"),
    );
    assert!(status.success(), "restore failed:\n{out}\n{err}");
    assert!(
        err.contains("User \"smtp-user\" has no password"),
        "the account without its hash is named: {err}"
    );
    let again = backup(&url, dir.path(), false);
    assert_eq!(
        again, script,
        "the restored organisation backs up differently"
    );

    // The password asked for went where the credential is kept: sealed, and it opens.
    let pool = sqlx::PgPool::connect(&url).await.unwrap();
    let c = hubgate::org::SendConnector::load_all(&pool)
        .await
        .unwrap()
        .into_iter()
        .find(|c| c.name == "Partner")
        .unwrap();
    let key = hubgate::org::org_key::OrganizationKey::load(Some(dir.path()))
        .unwrap()
        .unwrap();
    assert_eq!(c.password(Some(&key)).unwrap().as_deref(), Some(PASSWORD));

    // A second restore of the same script changes nothing.
    let (status, _, err) = hubgate(
        &url,
        dir.path(),
        &["restore", &file],
        &format!("{PASSWORD}\n"),
    );
    assert!(status.success(), "second restore failed: {err}");
    assert_eq!(backup(&url, dir.path(), false), script);
}

/// With --include-secrets, a node given the same organisation key restores the smart-host
/// password (the restored connector authenticates to a smart host that requires it) and the
/// accounts' passwords; a node with another key cannot open them.
#[tokio::test]
async fn secrets_travel_sealed_and_restore_with_the_same_key() {
    let port = free_port();
    let smart_host = Sink::with(
        addr("127.0.0.171", port),
        SinkOptions {
            auth: Some(format!("relay:{PASSWORD}")),
            ..Default::default()
        },
    );
    let a = configured(("127.0.0.171", port)).await;
    let script = backup(&a.db_url, a.data_dir.path(), true);
    for secret in [PASSWORD, USER_PASSWORD, "$argon2"] {
        assert!(!script.contains(secret), "{secret:?} in:\n{script}");
    }
    assert!(
        script.contains("Get-Credential -UserName 'relay' -EncryptedPassword 'hgv1:"),
        "{script}"
    );
    assert!(!script.contains("Get-Credential asks"), "{script}");

    // Another key: the sealed values do not open, and the restore stops at the first one.
    let other = tempfile::tempdir().unwrap();
    let url = fresh_database().await;
    let file = write_script(other.path(), &script);
    let (status, _, err) = hubgate(&url, other.path(), &["restore", &file], "");
    assert!(!status.success());
    assert!(err.contains("cannot be decrypted"), "{err}");

    // The same key: a gateway on the restored database delivers through the smart host.
    let mut b = Setup::new().await;
    std::fs::copy(
        a.data_dir.path().join("organization.key"),
        b.data_dir.path().join("organization.key"),
    )
    .unwrap();
    let file = write_script(b.data_dir.path(), &script);
    let (status, out, err) = hubgate(&b.db_url, b.data_dir.path(), &["restore", &file], "");
    assert!(status.success(), "restore failed:\n{out}\n{err}");
    // Sealing takes a fresh nonce each time; apart from that, the same script again.
    let unsealed = |t: &str| {
        t.split('\'')
            .map(|part| {
                if part.starts_with("hgv1:") {
                    "SEALED"
                } else {
                    part
                }
            })
            .collect::<Vec<_>>()
            .join("'")
    };
    let again = backup(&b.db_url, b.data_dir.path(), true);
    assert_ne!(again, script);
    assert_eq!(unsealed(&again), unsealed(&script));
    // The restored Default connector listens where the backed-up one did.
    b.smtp_port = a.smtp_port;
    b.client_port = a.client_port;
    let user = hubgate::org::account::Account::find(&b.pool, "smtp-user")
        .await
        .unwrap()
        .unwrap();
    assert!(
        user.verify(USER_PASSWORD),
        "the account's password came back"
    );
    drop(a);
    let gw = b.start().await;
    send(&gw, &["a@partner.example"], "restored credential");
    within(60, "the smart host took the message with AUTH", || async {
        !smart_host.received().is_empty()
    })
    .await;
    assert_eq!(smart_host.received()[0].auth.as_deref(), Some("relay"));
}

/// A failing line is reported with its number, and nothing after it runs.
#[tokio::test]
async fn a_bad_line_stops_the_restore_with_its_number() {
    let url = fresh_database().await;
    let dir = tempfile::tempdir().unwrap();
    let file = write_script(
        dir.path(),
        "# a comment\nNew-AcceptedDomain -Name One -DomainName one.test -DomainType Authoritative\nNew-AcceptedDomain -Name Two -DomainType Bogus\nNew-AcceptedDomain -Name Three -DomainName three.test -DomainType Authoritative\n",
    );
    let (status, _, err) = hubgate(&url, dir.path(), &["restore", &file], "");
    assert!(!status.success());
    assert!(err.contains(&format!("{file}:3: ")), "{err}");
    let pool = sqlx::PgPool::connect(&url).await.unwrap();
    let names: Vec<String> = sqlx::query_scalar("SELECT name FROM accepted_domain ORDER BY name")
        .fetch_all(&pool)
        .await
        .unwrap();
    assert!(names.contains(&"One".to_string()), "{names:?}");
    assert!(!names.contains(&"Three".to_string()), "{names:?}");
}

/// Another server's lines, and a certificate this node does not hold, are skipped with a
/// warning on this node and applied on the node that has them; ACME's settings come back.
#[tokio::test]
async fn other_servers_and_absent_certificates_are_skipped_with_a_warning() {
    let a = Setup::new().await;
    let mut tx = a.pool.begin().await.unwrap();
    hubgate::org::TransportServer::create(&mut tx, "HUB2", "hub2.contoso.test")
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let dir = a.data_dir.path();
    let (_, leaves) = private_ca(&[FQDN]);
    let (cert, key) = &leaves[0];
    std::fs::write(dir.join("mine.crt"), cert).unwrap();
    std::fs::write(dir.join("mine.key"), key).unwrap();
    let mut sh = Shell::new(a.pool.clone(), FQDN).with_data_dir(dir.to_path_buf());
    for line in [
        "Set-TransportServer HUB2 -PoisonThreshold 5".to_string(),
        "New-ReceiveConnector -Name Relay -Server HUB2 -Usage Custom -Bindings '0.0.0.0:2526' -RemoteIPRanges 10.9.0.0/16".to_string(),
        "Add-ADPermission 'HUB2\\Relay' -User 'NT AUTHORITY\\ANONYMOUS LOGON' -ExtendedRights ms-Exch-SMTP-Accept-Any-Recipient".to_string(),
        format!(
            "Import-ExchangeCertificate -Path {} -KeyPath {}",
            dir.join("mine.crt").display(),
            dir.join("mine.key").display()
        ),
        "Set-AcmeConfig -Contact 'postmaster@contoso.test' -Domains 'mail.contoso.test'".to_string(),
    ] {
        run(&mut sh, &line).await;
    }
    let thumbprint = hubgate::ops::certificate::list(dir).unwrap()[0]
        .info
        .thumbprint
        .clone();
    run(
        &mut sh,
        &format!("Enable-ExchangeCertificate -Thumbprint {thumbprint} -Services SMTP,IIS"),
    )
    .await;
    let script = backup(&a.db_url, dir, false);
    for line in [
        "Set-TransportServer -Identity 'HUB2'".to_string(),
        "New-ReceiveConnector -Name 'Relay' -Server 'HUB2'".to_string(),
        "Add-ADPermission -Identity 'HUB2\\Relay'".to_string(),
        format!("Enable-ExchangeCertificate -Thumbprint {thumbprint} -Services SMTP,IIS"),
        "Set-AcmeConfig -Enabled $false".to_string(),
    ] {
        assert!(script.contains(&line), "no {line:?} in:\n{script}");
    }

    // A new node: no HUB2, no certificate. The rest is restored, and the warnings say why.
    let url = fresh_database().await;
    let other = tempfile::tempdir().unwrap();
    let file = write_script(other.path(), &script);
    let (status, _, err) = hubgate(&url, other.path(), &["restore", &file], "");
    assert!(status.success(), "{err}");
    assert!(
        err.contains("Server \"HUB2\" is not in this organization yet"),
        "{err}"
    );
    assert!(
        err.contains(&format!(
            "Certificate {thumbprint} is not in this node's data directory"
        )),
        "{err}"
    );
    let (acme, _) = hubgate::ops::certificate::acme_config(other.path()).unwrap();
    assert_eq!(acme.contact, vec!["postmaster@contoso.test"]);
    assert_eq!(acme.domains, vec!["mail.contoso.test"]);
    let pool = sqlx::PgPool::connect(&url).await.unwrap();
    let servers: Vec<String> = sqlx::query_scalar("SELECT name FROM transport_server")
        .fetch_all(&pool)
        .await
        .unwrap();
    assert_eq!(servers, vec!["HUB1"]);

    // Where HUB2 and the certificate are, the same script applies them.
    let (status, _, err) = hubgate(&a.db_url, dir, &["restore", &file], "");
    assert!(status.success(), "{err}");
    assert!(
        !err.contains("skipped") && !err.contains("not in this node"),
        "{err}"
    );
    assert_eq!(backup(&a.db_url, dir, false), script);
}

/// New-User, the line a backup writes for an account: bad input is refused and changes nothing;
/// outside a restore an existing user is a duplicate; a sealed value opens only for its name.
#[tokio::test]
async fn new_user_refuses_bad_input() {
    let s = Setup::new().await;
    let mut sh = Shell::new(s.pool.clone(), FQDN).with_data_dir(s.data_dir.path().to_path_buf());
    let count = |pool: sqlx::PgPool| async move {
        sqlx::query_scalar::<_, i64>("SELECT count(*) FROM account")
            .fetch_one(&pool)
            .await
            .unwrap()
    };
    let before = count(s.pool.clone()).await;
    for (line, says) in [
        ("New-User -Name ' '", "must not be empty"),
        ("New-User -Name u1 -Password ''", "must not be empty"),
        (
            "New-User -Name u1 -Password a -EncryptedPassword b",
            "not both",
        ),
        ("New-User -Name Administrator -Password x", "already exists"),
        (
            "New-User -Name u1 -EncryptedPassword 'hgv1:AAAA'",
            "cannot be decrypted",
        ),
        (
            "Get-Credential -UserName relay -EncryptedPassword 'x' -Password y",
            "-EncryptedPassword",
        ),
    ] {
        let e = sh.run_line(line).await.unwrap_err().to_string();
        assert!(e.contains(says), "{line}: {e}");
    }
    assert_eq!(count(s.pool.clone()).await, before);

    // A sealed hash made for one name does not open as another's.
    let key = sh.organization_key().await.unwrap();
    let hash = hubgate::org::account::hash_password(USER_PASSWORD).unwrap();
    let sealed = key
        .seal(&hubgate::shell::backup::account_purpose("u1"), &hash)
        .unwrap();
    let e = sh
        .run_line(&format!("New-User -Name u2 -EncryptedPassword '{sealed}'"))
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("cannot be decrypted"), "{e}");
    run(
        &mut sh,
        &format!("New-User -Name u1 -MemberOf 'Partner Servers' -EncryptedPassword '{sealed}'"),
    )
    .await;
    let u1 = hubgate::org::account::Account::find(&s.pool, "u1")
        .await
        .unwrap()
        .unwrap();
    assert!(u1.verify(USER_PASSWORD) && u1.is_member("Partner Servers"));
}

/// An IP list entry whose ExpirationTime passed between the backup and the restore is skipped
/// with a warning (the operation would refuse it, and it would do nothing); the others restore.
#[tokio::test]
async fn an_ip_list_entry_expired_since_the_backup_is_skipped() {
    let url = fresh_database().await;
    let dir = tempfile::tempdir().unwrap();
    let file = write_script(
        dir.path(),
        "Add-IPBlockListEntry -IPRange '198.51.100.0/24' -ExpirationTime '1/1/2020 10:00:00 AM'\n\
         Add-IPAllowListEntry -IPRange '192.0.2.7'\n",
    );
    let (status, out, err) = hubgate(&url, dir.path(), &["restore", &file], "");
    assert!(status.success(), "restore failed:\n{out}\n{err}");
    assert!(
        err.contains("198.51.100.0/24 expired at 1/1/2020 10:00:00 AM"),
        "{err}"
    );
    let pool = sqlx::PgPool::connect(&url).await.unwrap();
    let mut sh = Shell::new(pool, FQDN);
    assert_eq!(run(&mut sh, "Get-IPBlockListEntry").await.trim(), "");
    assert!(
        run(&mut sh, "Get-IPAllowListEntry")
            .await
            .contains("192.0.2.7")
    );
}
