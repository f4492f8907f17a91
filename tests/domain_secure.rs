//! DomainSecureEnabled is stored but not enforced (no mutual TLS yet): the shell says so whenever
//! it is set to $true and wherever it is shown as True, never silently.

mod common;

use std::process::Command;

use common::*;
use hubgate::shell::Shell;

const WARNING: &str = "WARNING: DomainSecureEnabled is saved but not enforced";
const SHOWN: &str = "True (not enforced: hubgate does not implement domain-secure mutual TLS yet)";

async fn run(sh: &mut Shell, line: &str) -> String {
    sh.run_line(line)
        .await
        .unwrap_or_else(|e| panic!("{line}: {e}"))
}

/// The value Format-List shows for one property.
fn shown(out: &str, property: &str) -> String {
    out.lines()
        .find_map(|l| l.strip_prefix(property))
        .and_then(|rest| rest.trim_start().strip_prefix(':'))
        .unwrap_or_else(|| panic!("no {property} in {out:?}"))
        .trim()
        .to_string()
}

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
    assert!(out.starts_with(WARNING), "{out}");
    let out = run(
        &mut sh,
        "Get-ReceiveConnector 'From Fabrikam' | Format-List DomainSecureEnabled",
    )
    .await;
    assert_eq!(shown(&out, "DomainSecureEnabled"), SHOWN);

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
    assert!(out.starts_with(WARNING), "{out}");
    let out = run(&mut sh, "Get-ReceiveConnector 'From Fabrikam' | fl").await;
    assert_eq!(shown(&out, "DomainSecureEnabled"), SHOWN);

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
    assert!(out.starts_with(WARNING), "{out}");
    let out = run(&mut sh, "Get-SendConnector Fabrikam | Format-List").await;
    assert_eq!(shown(&out, "DomainSecureEnabled"), SHOWN);

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
    assert!(stdout.starts_with(WARNING), "{stdout}");
}
