//! Shadow redundancy between two organisations' gateways, as ../shared/seeds/000 tells it:
//! org1's HUBORG1 hands mail for org2.test to org2's HUBORG2, which relays it to a final
//! server. Each node has its own database, spool and 127.x address; the final server is a real
//! aiosmtpd. Configured with the article's cmdlets.

mod common;

use std::net::SocketAddr;

use common::mail::*;
use common::pair::*;
use common::peers::Sink;
use common::*;

#[tokio::test]
async fn the_articles_three_attempts() {
    let final_addr = addr("127.0.0.91", peer_port());
    let mut last = Sink::start(final_addr);
    let port = gateway_port();
    let org1 = org1(12).await.start().await;
    let org2 = org2(
        1,
        ORG2,
        port,
        final_addr,
        &[(ANONYMOUS, "ms-Exch-SMTP-Accept-XShadow")],
    )
    .await
    .start()
    .await;
    let primary = SocketAddr::from((org2.setup.ip, port));
    listening(primary).await;

    // Attempt 1: Send-XShadow and Accept-XShadow both for ANONYMOUS LOGON. org1 is anonymous,
    // so it may send XSHADOW; on an ExternalAuthoritative connector org2 sees an Externally
    // Secured session, which lacks Accept-XShadow.
    to_org2(&org1, &[org2.setup.ip], port, ANONYMOUS).await;
    applied(&org1, "attempt 1").await;
    applied(&org2, "attempt 1").await;
    send_to_org2(&org1, "attempt 1");
    until(60, "attempt 1 delivered", &[&org1, &org2], || async {
        final_subjects(&last) == ["attempt 1"]
    })
    .await;
    let log = send_log(&org1);
    assert!(log.contains(">,XSHADOW "), "{log}");
    assert!(log.contains("<,550 5.7.1 Not authorized"), "{log}");
    assert_eq!(shadow_copies(&org1).await, 0);
    let xshadows = log.matches(">,XSHADOW ").count();
    let sessions = log.matches(",+,,").count();

    // Attempt 2: both connectors made again, the rights for Externally Secured Servers. org1's
    // session is still anonymous, so it has no Send-XShadow: no XSHADOW at all.
    sh(
        &org1,
        &format!("Remove-SendConnector '{TO_ORG2}' -Confirm:$false"),
    )
    .await;
    sh(
        &org2,
        &format!("Remove-ReceiveConnector '{FROM_ORG1}' -Confirm:$false"),
    )
    .await;
    sh(&org2, &from_org1(ORG2.0, org2.setup.ip, port)).await;
    sh(&org2, &format!("Get-ReceiveConnector '{FROM_ORG1}' | Add-ADPermission -User '{EXTERNALLY_SECURED}' -ExtendedRights ms-Exch-SMTP-Accept-XShadow")).await;
    listening(primary).await;
    to_org2(&org1, &[org2.setup.ip], port, EXTERNALLY_SECURED).await;
    applied(&org1, "attempt 2").await;
    applied(&org2, "attempt 2").await;
    send_to_org2(&org1, "attempt 2");
    until(60, "attempt 2 delivered", &[&org1, &org2], || async {
        final_subjects(&last) == ["attempt 1", "attempt 2"]
    })
    .await;
    let log = send_log(&org1);
    assert!(
        log.matches(",+,,").count() > sessions,
        "attempt 2's session is logged"
    );
    assert_eq!(log.matches(">,XSHADOW ").count(), xshadows, "{log}");
    assert_eq!(shadow_copies(&org1).await, 0);

    // Attempt 3: org1 authenticates as Externally Secured. XSHADOW is accepted; with the final
    // server down org2 holds the message and org1 keeps its shadow copy in a Shadow Redundancy
    // queue for huborg2.org2.test, until org2 has delivered it and XQDISCARD says so.
    last.stop();
    sh(
        &org1,
        &format!("Set-SendConnector '{TO_ORG2}' -SmartHostAuthMechanism ExternalAuthoritative"),
    )
    .await;
    // Reference §1.2: the primary keeps a message's XSHADOW= id (and so ever reports it done)
    // only for a session with the organisation-headers right, which Externally Secured Servers
    // lack (§2.2). The article does not show its receive-side commands; this grant is the one
    // the rule needs. Without it org1's copy would wait for a discard that never comes.
    sh(&org2, &format!("Get-ReceiveConnector '{FROM_ORG1}' | Add-ADPermission -User '{EXTERNALLY_SECURED}' -ExtendedRights ms-Exch-Accept-Headers-Organization")).await;
    applied(&org1, "attempt 3").await;
    applied(&org2, "attempt 3").await;
    send_to_org2(&org1, "attempt 3");
    until(60, "a shadow copy on org1", &[&org1, &org2], || async {
        shadow_copies(&org1).await == 1
    })
    .await;
    // A scraper sees the copy too (hubgate_shadow_queue_length), and sees it go below.
    until(
        60,
        "org1's /metrics to count the copy",
        &[&org1, &org2],
        || async { org1.metric("hubgate_shadow_queue_length").await == Some(1.0) },
    )
    .await;
    let queues = sh(
        &org1,
        "Get-Queue | Format-List DeliveryType,NextHopDomain,MessageCount",
    )
    .await;
    assert!(
        queues.contains("ShadowRedundancy") && queues.contains(ORG2.1),
        "{queues}"
    );
    let log = send_log(&org1);
    let after = log
        .split(">,XSHADOW ")
        .nth(xshadows + 1)
        .expect("a new XSHADOW");
    assert!(after.contains("XSHADOW="), "{after}");
    assert_eq!(
        org2.message_count().await,
        1,
        "org2 holds it for the final server"
    );
    last.restart();
    retry_now(&org2).await;
    until(
        60,
        "attempt 3 delivered by org2",
        &[&org1, &org2],
        || async { final_subjects(&last).len() == 3 },
    )
    .await;
    until(60, "org1's copy discarded", &[&org1, &org2], || async {
        shadow_copies(&org1).await == 0 && org1.message_count().await == 0
    })
    .await;
    until(
        60,
        "org1's /metrics to drop the copy",
        &[&org1, &org2],
        || async { org1.metric("hubgate_shadow_queue_length").await == Some(0.0) },
    )
    .await;
    let log = send_log(&org1);
    assert!(log.contains(">,XQDISCARD 50"), "{log}");
    assert_eq!(
        final_subjects(&last),
        ["attempt 1", "attempt 2", "attempt 3"]
    );
}
