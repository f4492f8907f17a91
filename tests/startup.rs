//! Start-up: a node that can listen on nothing fails its start with the reason on stderr; a
//! node that can listen on some bindings starts, and Get-ReceiveConnector shows the others'
//! errors on their connectors until the address frees up.

mod common;

use std::net::{SocketAddr, TcpListener};
use std::time::{Duration, Instant};

use common::*;
use hubgate::shell::Shell;

// Addresses only this file uses, so the fixed ports cannot collide with other tests.
const DEFAULT_BINDING: &str = "127.0.0.212:2525";
const CLIENT_BINDING: &str = "127.0.0.213:2587";
const DISABLED_DEFAULT: &str = "127.0.0.214:2525";
const DISABLED_CLIENT: &str = "127.0.0.214:2587";
// The partial-failure test has its own pair: tests in this file run in parallel.
const PARTIAL_DEFAULT: &str = "127.0.0.215:2525";
const PARTIAL_CLIENT: &str = "127.0.0.216:2587";

async fn bind_connectors(setup: &Setup, default: &str, client: &str) {
    setup
        .sql(&format!(
            "UPDATE receive_connector SET bindings = '{{{default}}}' WHERE name = 'Default HUB1'"
        ))
        .await;
    setup
        .sql(&format!(
            "UPDATE receive_connector SET bindings = '{{{client}}}' WHERE name = 'Client HUB1'"
        ))
        .await;
}

/// Another process holding the address.
fn occupy(addr: &str) -> TcpListener {
    TcpListener::bind(addr).unwrap_or_else(|e| panic!("occupying {addr}: {e}"))
}

/// Runs `hubgate serve` to its end (bounded): (exit code, stdout, stderr).
fn serve_until_exit(setup: &Setup) -> (Option<i32>, String, String) {
    let (status, out, err) = run_to_exit(
        &mut serve_command(setup, setup.data_dir.path()),
        "hubgate kept running with nothing to listen on",
    );
    (status.code(), out, err)
}

async fn binding_errors(setup: &Setup, connector: &str) -> String {
    let mut sh = Shell::new(setup.pool.clone(), FQDN);
    let out = sh
        .run_line(&format!(
            "Get-ReceiveConnector '{connector}' | Format-List BindingErrors"
        ))
        .await
        .unwrap();
    out.trim()
        .strip_prefix("BindingErrors :")
        .unwrap_or_else(|| panic!("no BindingErrors in {out:?}"))
        .trim()
        .to_string()
}

#[tokio::test]
async fn a_node_that_can_listen_on_nothing_fails_its_start() {
    let setup = Setup::new().await;
    bind_connectors(&setup, DEFAULT_BINDING, CLIENT_BINDING).await;
    let _default = occupy(DEFAULT_BINDING);
    let _client = occupy(CLIENT_BINDING);

    let (code, out, err) = serve_until_exit(&setup);
    assert_eq!(code, Some(1), "stdout: {out}\nstderr: {err}");
    assert!(!out.contains("hubgate ready"), "{out}");
    assert!(
        err.contains("hubgate: no receive connector of HUB1 could listen"),
        "{err}"
    );
    for addr in [DEFAULT_BINDING, CLIENT_BINDING] {
        assert!(
            err.contains(&format!("{addr}: Address already in use")),
            "{addr} missing from {err}"
        );
    }
    // The reasons stay visible on the connectors for the administrator.
    assert_eq!(
        binding_errors(&setup, "Default HUB1").await,
        format!("{{{DEFAULT_BINDING}: Address already in use (os error 98)}}")
    );
    assert_eq!(
        binding_errors(&setup, "Client HUB1").await,
        format!("{{{CLIENT_BINDING}: Address already in use (os error 98)}}")
    );
}

#[tokio::test]
async fn a_node_with_every_receive_connector_disabled_fails_its_start() {
    let setup = Setup::new().await;
    bind_connectors(&setup, DISABLED_DEFAULT, DISABLED_CLIENT).await;
    setup
        .sql("UPDATE receive_connector SET enabled = false")
        .await;
    let (code, out, err) = serve_until_exit(&setup);
    assert_eq!(code, Some(1), "stdout: {out}\nstderr: {err}");
    assert!(
        err.contains("no receive connector of HUB1 is enabled"),
        "{err}"
    );
}

#[tokio::test]
async fn a_partial_binding_failure_shows_on_its_connector_until_the_address_frees_up() {
    let setup = Setup::new().await;
    bind_connectors(&setup, PARTIAL_DEFAULT, PARTIAL_CLIENT).await;
    let held = occupy(PARTIAL_CLIENT);
    let gw = setup.start().await;

    // The connector that could bind works.
    let default: SocketAddr = PARTIAL_DEFAULT.parse().unwrap();
    let mut c = Raw::connect(default).await;
    assert!(c.reply().await.starts_with("220 "));
    c.cmd("QUIT").await;

    assert_eq!(
        binding_errors(&gw.setup, "Client HUB1").await,
        format!("{{{PARTIAL_CLIENT}: Address already in use (os error 98)}}")
    );
    assert_eq!(binding_errors(&gw.setup, "Default HUB1").await, "{}");

    // The other process goes away: the node takes the address over by itself.
    drop(held);
    let client: SocketAddr = PARTIAL_CLIENT.parse().unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if binding_errors(&gw.setup, "Client HUB1").await == "{}"
            && std::net::TcpStream::connect(client).is_ok()
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the freed binding was not taken over within 120 s"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let mut c = Raw::connect(client).await;
    assert!(c.reply().await.starts_with("220 "));
}
