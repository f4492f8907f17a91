//! The certificates section of a server's page: this node's certificates with their names,
//! issuer and expiry, a warning 30 days before one expires, and ACME's last failure.

use time::{Duration, OffsetDateTime};

use super::view::{Row, Table};
use crate::console::state::ConsoleState;
use crate::ops::certificate;

/// How long before its expiry a certificate is flagged.
const WARN_BEFORE: Duration = Duration::days(30);

/// The table for `server`'s page, when it is the node this console runs on (certificates are
/// files of each node, read where they are).
pub fn table(st: &ConsoleState, server: &str, href: &str) -> Option<Table> {
    if !server.eq_ignore_ascii_case(&st.server) {
        return None;
    }
    let dir = st.data_dir.as_deref()?;
    let now = OffsetDateTime::now_utc();
    let (rows, mut caption) = match certificate::list(dir) {
        Ok(certs) => (
            certs
                .iter()
                .map(|c| Row {
                    href: href.to_string(),
                    selected: false,
                    cells: vec![
                        c.info.subject.clone(),
                        c.info.domains.join(", "),
                        c.info.issuer.clone(),
                        c.services.to_string(),
                        expiry(c.info.not_after, now),
                    ],
                })
                .collect(),
            format!("Certificates of {server}"),
        ),
        Err(e) => (vec![], format!("Certificates of {server}: {e}")),
    };
    if let Ok((acme, status)) = certificate::acme_config(dir)
        && acme.enabled
        && let Some(err) = status.last_error
    {
        caption.push_str(&format!(" (ACME: the last attempt failed: {err})"));
    }
    Some(Table {
        id: "certificates",
        caption,
        columns: vec!["Subject", "Names", "Issuer", "Services", "Expires"],
        rows,
    })
}

fn expiry(not_after: OffsetDateTime, now: OffsetDateTime) -> String {
    let shown = crate::shell::format::datetime(not_after);
    if not_after < now {
        format!("{shown} (Warning: expired)")
    } else if not_after - now <= WARN_BEFORE {
        let days = (not_after - now).whole_days();
        format!("{shown} (Warning: expires in {days} days)")
    } else {
        shown
    }
}
