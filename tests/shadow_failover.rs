//! What shadow redundancy is for: org2 accepts a batch from org1 and is lost before it delivers
//! it onward (killed with SIGKILL while its own next hop is down). org1 still has the shadow
//! copies: it resubmits them when the heartbeats fail, at once when org2 comes back with a new
//! queue database, and discards them when org2 comes back with its own and delivers its queue.
//! Each test counts what reached the final server, and how much of it twice.

mod common;

use std::net::SocketAddr;

use common::mail::*;
use common::pair::*;
use common::peers::{Sink, SinkOptions};
use common::*;

const BATCH: usize = 4;
const ORG2B: (&str, &str) = ("HUBORG2B", "huborg2b.org2.test");

fn subjects() -> Vec<String> {
    (0..BATCH).map(|i| format!("batch {i}")).collect()
}

/// Sends the batch through org1 and waits until org2 holds all of it (its next hop is down)
/// and org1 holds a shadow copy of each.
async fn hand_over(org1: &Gateway, org2: &Gateway) {
    for s in subjects() {
        send_to_org2(org1, &s);
    }
    until(
        60,
        "the batch on org2, shadowed on org1",
        &[org1, org2],
        || async {
            shadow_copies(org1).await == BATCH as i64 && org2.message_count().await == BATCH as i64
        },
    )
    .await;
}

/// The final server got every message of the batch; returns how many it got twice.
async fn all_delivered(org1: &Gateway, last: &Sink, nodes: &[&Gateway]) -> usize {
    until(90, "every message at the final server", nodes, || async {
        let mut got = final_subjects(last);
        got.dedup();
        got == subjects()
    })
    .await;
    until(60, "org1's copies discarded", nodes, || async {
        shadow_copies(org1).await == 0 && org1.message_count().await == 0
    })
    .await;
    duplicates(&final_subjects(last))
}

#[tokio::test]
async fn a_lost_primary_s_batch_goes_out_through_the_second_smart_host() {
    let final_addr = addr("127.0.0.92", peer_port());
    let mut last = Sink::down(final_addr, SinkOptions::default());
    let port = gateway_port();
    let mut org2a = org2(1, ORG2, port, final_addr, SHADOWING)
        .await
        .start()
        .await;
    let org2b = org2(2, ORG2B, port, final_addr, SHADOWING)
        .await
        .start()
        .await;
    // Two failed heartbeats 2 s apart and org1 takes the copies back.
    let org1 = org1_shadowing(2, &[org2a.setup.ip, org2b.setup.ip], port).await;
    hand_over(&org1, &org2a).await;
    assert_eq!(
        org2b.message_count().await,
        0,
        "the first smart host took it all"
    );

    org2a.kill();
    last.restart();
    until(60, "org1's heartbeats to org2a fail", &[&org1], || async {
        heartbeat_failures(&org1).await >= 1
    })
    .await;
    let twice = all_delivered(&org1, &last, &[&org1, &org2b]).await;
    // org2a never comes back, so nothing it held reaches the final server a second time.
    assert_eq!(twice, 0, "duplicates: {:?}", final_subjects(&last));
    assert!(tracking_has(&org1, &["RESUBMIT", "ShadowHeartbeatFailure"]));
    let log = send_log(&org1);
    assert!(
        log.contains(&format!("{}:{port}", org2b.setup.ip)),
        "the copies left through org2b: {log}"
    );
}

#[tokio::test]
async fn a_primary_back_with_its_own_database_delivers_and_org1_sends_nothing_twice() {
    let final_addr = addr("127.0.0.93", peer_port());
    let mut last = Sink::down(final_addr, SinkOptions::default());
    let port = gateway_port();
    let mut org2 = org2(1, ORG2, port, final_addr, SHADOWING)
        .await
        .start()
        .await;
    // Fifteen heartbeats (30 s) before org1 would give up: org2 is back well before.
    let org1 = org1_shadowing(15, &[org2.setup.ip], port).await;
    hand_over(&org1, &org2).await;

    org2.kill();
    until(60, "org1's heartbeats to org2 fail", &[&org1], || async {
        heartbeat_failures(&org1).await >= 1
    })
    .await;
    org2.spawn().await;
    last.restart();
    retry_now(&org2).await;
    let twice = all_delivered(&org1, &last, &[&org1, &org2]).await;
    assert_eq!(twice, 0, "duplicates: {:?}", final_subjects(&last));
    assert!(
        !tracking_has(&org1, &["RESUBMIT"]),
        "org1 resubmitted what org2 still had"
    );
}

#[tokio::test]
async fn a_primary_back_with_a_new_database_gets_the_copies_again_at_once() {
    let final_addr = addr("127.0.0.94", peer_port());
    let mut last = Sink::down(final_addr, SinkOptions::default());
    let port = gateway_port();
    let mut old = org2(1, ORG2, port, final_addr, SHADOWING)
        .await
        .start()
        .await;
    let org1 = org1_shadowing(15, &[old.setup.ip], port).await;
    hand_over(&org1, &old).await;

    // org2's disk is lost: the same node comes back on the same address with an empty queue
    // database (a new queue-database id) and a new spool.
    old.kill();
    last.restart();
    let new = org2(1, ORG2, port, final_addr, SHADOWING)
        .await
        .start()
        .await;
    listening(SocketAddr::from((new.setup.ip, port))).await;
    let twice = all_delivered(&org1, &last, &[&org1, &new]).await;
    assert_eq!(twice, 0, "duplicates: {:?}", final_subjects(&last));
    assert!(tracking_has(&org1, &["RESUBMIT", "ShadowStateChange"]));
    assert!(
        !tracking_has(&org1, &["RESUBMIT", "ShadowHeartbeatFailure"]),
        "the new id, not the failed heartbeats, sent the copies again"
    );
}
