//! XQDISCARD at the end of a shadowed session (reference §1.2): asked while this node holds
//! copies for the primary, again while a reply came back full; each id the primary names ends
//! the copies of that message. A reply that breaks the contract (an empty or over-long id)
//! means the primary's word cannot be trusted: its copies are resubmitted, nothing is lost.

use crate::smtp::client::{Client, ClientError, Discards};
use crate::transport::queue::manager::ShadowBook;
use crate::transport::routing::NextHopKey;

/// Ids asked for per command: Exchange's ShadowRedundancyMaxDiscardIdsPerSmtpCommand default.
pub const MAX_DISCARD_IDS: u32 = 50;

/// Upper bound on pages per session, so a primary that keeps answering full pages of ids it
/// never got cannot hold the session forever.
const MAX_PAGES: usize = 1000;

#[derive(Debug, thiserror::Error)]
pub enum DiscardError {
    #[error("XQDISCARD failed: {0}")]
    Client(#[from] ClientError),
    #[error("the primary broke the XQDISCARD contract: {0}")]
    Violation(String),
}

/// Runs the XQDISCARD pages for the primary of `key` on `client` (a session that the primary
/// accepted XSHADOW in).
pub async fn query(
    client: &mut Client,
    book: &dyn ShadowBook,
    key: &NextHopKey,
) -> Result<(), DiscardError> {
    for _ in 0..MAX_PAGES {
        if !book.holds(key) {
            return Ok(());
        }
        match client.xqdiscard(MAX_DISCARD_IDS).await? {
            Discards::Ids(ids) => {
                let full = ids.len() >= MAX_DISCARD_IDS as usize;
                let remain = book.discarded(key, &ids);
                if !full || !remain {
                    return Ok(());
                }
            }
            Discards::Violation(why) => {
                tracing::warn!(
                    "primary {}: {why}; its shadow copies are resubmitted",
                    key.next_hop_domain
                );
                book.violation(key);
                return Err(DiscardError::Violation(why));
            }
        }
    }
    Ok(())
}
