//! Every settable property of every object's table round-trips: set it through the shell, read it
//! with Format-List, re-create the object from Export-Cmdlet on an empty organisation, and the
//! Format-List there is the same. A property added to a table is covered here without a line of
//! test; one whose export or view is missing fails here.

mod common;

use common::*;
use hubgate::ops::props::{Kind, Object, Verb};
use hubgate::ops::recipient::{CONTACT, MAILBOX};
use hubgate::ops::{accepted_domain, receive_connector, send_connector, transport};
use hubgate::shell::bind::{byte_quantity, timespan};
use hubgate::shell::parse::format_timespan;
use hubgate::shell::{CredentialSource, Shell};

const PASSWORD: &str = "Pr0be-secret";

/// One object type under test.
struct Case<T: 'static> {
    object: &'static Object<T>,
    /// The lines that create the object `{tag}` (none for an object that always exists).
    create: &'static [&'static str],
    get: &'static str,
    set: &'static str,
    /// The identity, with `{tag}`; empty for the organisation's one object.
    identity: &'static str,
    /// Arguments a property needs beside it (DNSRoutingEnabled $false needs smart hosts).
    companions: &'static [(&'static str, &'static str)],
}

fn rows(fl: &str) -> Vec<(String, String)> {
    fl.lines()
        .filter_map(|l| l.split_once(" : "))
        .map(|(n, v)| (n.trim().to_string(), v.to_string()))
        .collect()
}

fn row(fl: &str, name: &str) -> Option<String> {
    rows(fl).into_iter().find(|(n, _)| n == name).map(|(_, v)| {
        // The caveat of a stored-but-unenforced value is not part of it.
        v.split(" (not enforced:").next().unwrap_or("").to_string()
    })
}

/// Values to try, in order, for a property now showing `current`; the first the shell accepts
/// is kept. `tag` keeps values unique between objects.
fn candidates(name: &str, kind: Kind, current: Option<&str>, tag: &str) -> Vec<String> {
    let cur = current.unwrap_or("");
    match kind {
        Kind::Bool => vec![if cur == "True" { "$false" } else { "$true" }.into()],
        Kind::Enum(vals) | Kind::Flags(vals) => vals
            .iter()
            .filter(|v| **v != cur)
            .map(|v| v.to_string())
            .collect(),
        Kind::Int | Kind::Unlimited => {
            let mut out: Vec<String> = match cur.parse::<i64>() {
                Ok(n) => vec![(n + 1).to_string(), (n - 1).to_string()],
                Err(_) => vec!["100".into(), "5".into()],
            };
            if kind == Kind::Unlimited {
                out.push("unlimited".into());
            }
            out
        }
        Kind::TimeSpan => {
            let mut out = vec![];
            if let Ok(n) = timespan(cur) {
                out.extend([n + 60, n - 60, n * 2].map(format_timespan));
            }
            out.extend(["00:10:00", "1.00:00:00"].map(String::from));
            out
        }
        Kind::ByteSize => {
            let mut out = vec![];
            if let Ok(Some(n)) = byte_quantity(cur) {
                out.extend([n + (1 << 20), n - (1 << 20)].map(|n| n.to_string()));
            }
            out.extend(["20MB", "unlimited"].map(String::from));
            out
        }
        Kind::List => [
            "'127.0.0.1:2598'",
            "'10.9.0.0/16'",
            "'{tag}.other.example'",
            "'10.0.0.53'",
            "'{tag}-alias@contoso.test'",
        ]
        .iter()
        .map(|c| c.replace("{tag}", tag))
        .collect(),
        Kind::Str if name == "Name" => vec![format!("'{tag}x'")],
        Kind::Str => [
            "'220 probe banner'",
            "'{tag}.probe.contoso.test'",
            "'{tag}-new@contoso.test'",
        ]
        .iter()
        .map(|c| c.replace("{tag}", tag))
        .collect(),
        Kind::Credential => vec!["$cred".into()],
        Kind::Identity | Kind::Switch => vec![],
    }
}

fn arg(identity: &str) -> String {
    if identity.is_empty() {
        String::new()
    } else {
        format!(" '{}'", identity.replace('\'', "''"))
    }
}

async fn run(sh: &mut Shell, line: &str) -> String {
    sh.run_line(line)
        .await
        .unwrap_or_else(|e| panic!("{line}: {e}"))
}

/// Each settable property of `case` on its own object (or, for an object that always exists,
/// one after the other): set, view, export, re-create on `b`, view again.
async fn check<T>(case: Case<T>, failures: &mut Vec<String>) {
    let a = Setup::new().await;
    let b = Setup::new().await;
    let mut sa = Shell::new(a.pool.clone(), FQDN).with_data_dir(a.data_dir.path().to_path_buf());
    run(
        &mut sa,
        &format!("$cred = Get-Credential -UserName probe -Password '{PASSWORD}'"),
    )
    .await;
    let settable = case.object.props.iter().filter(|p| {
        p.set.is_some() && p.on_set != Verb::No && !matches!(p.kind, Kind::Identity | Kind::Switch)
    });
    for (i, p) in settable.enumerate() {
        let tag = format!("p{i}");
        for l in case.create {
            // {n}: a number of this property's own (connectors of one server need their own
            // Bindings + RemoteIPRanges).
            let line = l
                .replace("{tag}", &tag)
                .replace("{n}", &(2600 + i).to_string());
            run(&mut sa, &line).await;
        }
        let mut identity = case.identity.replace("{tag}", &tag);
        let view = |id: &str| format!("{} {} | fl", case.get, arg(id));
        let before = row(&run(&mut sa, &view(&identity)).await, p.name);
        let companion = case
            .companions
            .iter()
            .find(|(n, _)| *n == p.name)
            .map(|(_, c)| format!(" {c}"))
            .unwrap_or_default();
        let mut accepted = None;
        for value in candidates(p.name, p.kind, before.as_deref(), &tag) {
            let line = format!(
                "{}{} -{} {value}{companion}",
                case.set,
                arg(&identity),
                p.name
            );
            if sa.run_line(&line).await.is_ok() {
                accepted = Some(value);
                break;
            }
        }
        let Some(value) = accepted else {
            failures.push(format!("{}: no value was accepted", p.name));
            continue;
        };
        if p.name == "Name" {
            identity = identity.replace(&tag, &format!("{tag}x"));
        }
        let want = run(&mut sa, &view(&identity)).await;
        if p.get.is_some() && row(&want, p.name) == before {
            failures.push(format!("{}: {value} did not change {before:?}", p.name));
            continue;
        }
        let script = run(
            &mut sa,
            &format!("{} {} | Export-Cmdlet", case.get, arg(&identity)),
        )
        .await;
        let password: CredentialSource =
            Box::new(std::io::Cursor::new(format!("{PASSWORD}\n").into_bytes()));
        let mut sb = Shell::new(b.pool.clone(), FQDN)
            .with_data_dir(b.data_dir.path().to_path_buf())
            .with_credential_source(password);
        let mut out = Vec::new();
        if let Err((n, e)) = sb.run_script(&script, &mut out).await {
            failures.push(format!("{}: line {n} of\n{script}failed: {e}", p.name));
            continue;
        }
        let got = run(&mut sb, &view(&identity)).await;
        if got != want {
            failures.push(format!(
                "{} = {value}: the re-created object differs\nexport:\n{script}want:{want}got:{got}",
                p.name
            ));
        }
    }
}

#[tokio::test]
async fn every_settable_property_round_trips_through_view_and_export() {
    let mut failures = vec![];
    check(
        Case {
            object: &accepted_domain::OBJECT,
            create: &["New-AcceptedDomain {tag} -DomainName {tag}.example"],
            get: "Get-AcceptedDomain",
            set: "Set-AcceptedDomain",
            identity: "{tag}",
            companions: &[],
        },
        &mut failures,
    )
    .await;
    check(
        Case {
            object: &send_connector::OBJECT,
            create: &["New-SendConnector {tag} -AddressSpaces {tag}.example -Usage Partner"],
            get: "Get-SendConnector",
            set: "Set-SendConnector",
            identity: "{tag}",
            companions: &[("DNSRoutingEnabled", "-SmartHosts relay.example")],
        },
        &mut failures,
    )
    .await;
    check(
        Case {
            object: &receive_connector::OBJECT,
            create: &[
                "New-ReceiveConnector {tag} -Bindings 127.0.0.1:{n} -RemoteIPRanges 10.8.0.0/16",
            ],
            get: "Get-ReceiveConnector",
            set: "Set-ReceiveConnector",
            identity: "HUB1\\{tag}",
            companions: &[],
        },
        &mut failures,
    )
    .await;
    check(
        Case {
            object: &transport::SERVER,
            create: &[],
            get: "Get-TransportServer",
            set: "Set-TransportServer",
            identity: SERVER,
            companions: &[],
        },
        &mut failures,
    )
    .await;
    check(
        Case {
            object: &transport::CONFIG,
            create: &[],
            get: "Get-TransportConfig",
            set: "Set-TransportConfig",
            identity: "",
            companions: &[],
        },
        &mut failures,
    )
    .await;
    check(
        Case {
            object: &MAILBOX,
            create: &["New-Mailbox {tag} -PrimarySmtpAddress {tag}@contoso.test"],
            get: "Get-Mailbox",
            set: "Set-Mailbox",
            identity: "{tag}",
            companions: &[],
        },
        &mut failures,
    )
    .await;
    check(
        Case {
            object: &CONTACT,
            create: &["New-MailContact {tag} -ExternalEmailAddress {tag}@fabrikam.example"],
            get: "Get-MailContact",
            set: "Set-MailContact",
            identity: "{tag}",
            companions: &[],
        },
        &mut failures,
    )
    .await;
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

/// New-only properties (a send connector's Usage) round-trip through the line that creates it.
#[tokio::test]
async fn properties_set_on_new_only_round_trip_too() {
    let usage = send_connector::OBJECT.prop("Usage").unwrap();
    assert!(usage.on_set == Verb::No && usage.on_new != Verb::No);
    let a = Setup::new().await;
    let mut sa = Shell::new(a.pool.clone(), FQDN);
    run(
        &mut sa,
        "New-SendConnector S -AddressSpaces s.example -Internal",
    )
    .await;
    let script = run(&mut sa, "Get-SendConnector S | Export-Cmdlet").await;
    assert!(script.contains(" -Usage Internal"), "{script}");
    let b = Setup::new().await;
    let mut sb = Shell::new(b.pool.clone(), FQDN);
    sb.run_script(&script, &mut Vec::new())
        .await
        .map_err(|(_, e)| e.to_string())
        .unwrap();
    assert_eq!(
        run(&mut sa, "Get-SendConnector S | fl").await,
        run(&mut sb, "Get-SendConnector S | fl").await
    );
}

/// The lines Export-Cmdlet writes, argument for argument.
#[tokio::test]
async fn exported_lines_open_with_what_the_object_is() {
    let a = Setup::new().await;
    let mut sh = Shell::new(a.pool.clone(), FQDN);
    run(
        &mut sh,
        "New-ReceiveConnector P -Bindings 127.0.0.1:2599 -RemoteIPRanges 10.8.0.0/16 -Banner '220 x' -MaxHopCount 40",
    )
    .await;
    assert_eq!(
        run(&mut sh, "Get-ReceiveConnector P | Export-Cmdlet").await,
        "New-ReceiveConnector -Name 'P' -Server 'HUB1' -Bindings '127.0.0.1:2599' -RemoteIPRanges '10.8.0.0/16' -Fqdn 'hub1.contoso.test' -AuthMechanism Tls,Integrated,BasicAuth,BasicAuthRequireTLS,ExchangeServer -PermissionGroups ExchangeUsers,ExchangeServers,ExchangeLegacyServers -Banner '220 x' -MaxHopCount 40\n"
    );
    run(
        &mut sh,
        "New-MailContact C -ExternalEmailAddress c@fabrikam.example -EmailAddresses 'SMTP:c@fabrikam.example', 'c@contoso.test'",
    )
    .await;
    assert_eq!(
        run(&mut sh, "Get-MailContact C | Export-Cmdlet").await,
        "New-MailContact -Name 'C' -ExternalEmailAddress 'c@fabrikam.example' -EmailAddresses 'SMTP:c@fabrikam.example','smtp:c@contoso.test'\n"
    );
    run(
        &mut sh,
        "New-AcceptedDomain R -DomainName r.example -DomainType InternalRelay -MessageExpirationTimeout 1.00:00:00",
    )
    .await;
    assert_eq!(
        run(&mut sh, "Get-AcceptedDomain R | Export-Cmdlet").await,
        "New-AcceptedDomain -Name 'R' -DomainName 'r.example' -DomainType InternalRelay -MessageExpirationTimeout 1.00:00:00\n"
    );
}
