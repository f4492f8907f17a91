//! New Accepted Domain: seed 004's first step, every refusal, Cancel, and the shell line.

use crate::common::wizard::*;
use crate::common::*;
use crate::{count, signed_in};

#[tokio::test]
async fn new_accepted_domain_end_to_end() {
    let (console, b) = signed_in(Setup::new().await).await;
    let pool = console.setup.pool.clone();
    b.goto("/org/hub/accepted-domains").await;
    b.click("aside.actions a[href='/accepted-domains/new']")
        .await;
    assert_eq!(step(&b).await, "New Accepted Domain");
    let (pages, current) = steps(&b).await;
    assert_eq!(pages, ["New Accepted Domain", "Completion"]);
    assert_eq!(current, "New Accepted Domain");
    b.screenshot("wizard-accepted-domain-1-new").await;

    // Nothing typed: the operation's own words beside the field, nothing made.
    press(&b, "#new").await;
    assert!(
        error_beside(&b, "DomainName").await.contains("DomainName"),
        "{}",
        b.source().await
    );
    // A domain with an embedded wildcard, and a TimeSpan that is not one.
    b.fill("#in-Name", "Backup email for cryer.test").await;
    b.fill("#in-DomainName", "a.*.cryer.test").await;
    press(&b, "#new").await;
    let e = error_beside(&b, "DomainName").await;
    assert!(!e.is_empty(), "{}", b.source().await);
    assert_eq!(value(&b, "#in-Name").await, "Backup email for cryer.test");
    b.fill("#in-DomainName", "cryer.test").await;
    b.fill("#in-MessageExpirationTimeout", "three days").await;
    press(&b, "#new").await;
    assert!(
        !error_beside(&b, "MessageExpirationTimeout")
            .await
            .is_empty()
    );
    b.fill("#in-MessageExpirationTimeout", "91.00:00:00").await;
    press(&b, "#new").await;
    assert!(
        error_beside(&b, "MessageExpirationTimeout")
            .await
            .contains("MessageExpirationTimeout"),
        "{}",
        b.source().await
    );
    b.screenshot("wizard-accepted-domain-refused").await;
    assert_eq!(
        count(&pool, "accepted_domain", "Backup email for cryer.test").await,
        0
    );

    // Cancel makes nothing.
    b.click("#cancel").await;
    b.wait_for_path("the list", |p| p == "/org/hub/accepted-domains")
        .await;
    assert_eq!(
        count(&pool, "accepted_domain", "Backup email for cryer.test").await,
        0
    );

    // Seed 004: the External Relay domain, held 3 days.
    b.goto("/accepted-domains/new").await;
    b.fill("#in-Name", "Backup email for cryer.test").await;
    b.fill("#in-DomainName", "cryer.test").await;
    b.click("input[name=DomainType][value=ExternalRelay]").await;
    b.fill("#in-MessageExpirationTimeout", "3.00:00:00").await;
    press(&b, "#new").await;
    assert_eq!(step(&b).await, "Completion");
    b.screenshot("wizard-accepted-domain-2-completion").await;
    let line = cmdlet(&b).await;
    assert!(line.contains("New-AcceptedDomain"), "{line}");
    assert!(line.contains("-DomainType ExternalRelay"), "{line}");
    let (want, got) = rerun_on_empty_org(
        &pool,
        &line,
        "Get-AcceptedDomain 'Backup email for cryer.test'",
        None,
    )
    .await;
    assert_eq!(want, got);
    assert!(want.contains("3.00:00:00"), "{want}");

    // A second one with the same name is refused on the page, in the operation's words.
    b.click("#finish").await;
    b.wait_for_path("the list", |p| {
        p.starts_with("/org/hub/accepted-domains?selected=")
    })
    .await;
    b.goto("/accepted-domains/new").await;
    b.fill("#in-Name", "Backup email for cryer.test").await;
    b.fill("#in-DomainName", "other.test").await;
    press(&b, "#new").await;
    assert!(
        error_beside(&b, "Name").await.contains("already exists"),
        "{}",
        b.source().await
    );
    assert_eq!(
        count(&pool, "accepted_domain", "Backup email for cryer.test").await,
        1
    );
    b.close().await;
}
