//! This node as the *primary* (reference §1.2, §1.3): the queue database id it answers XSHADOW
//! with, the checks on what a shadow server sends (XSHADOW's context, MAIL's XSHADOW= id,
//! XQDISCARD's count), and the discard events the shadow servers collect.
//!
//! The events are queued by the database itself (the trigger of migration 0009), when a message
//! that carries a shadow id leaves the queue: delivered, relayed, failed or removed, whichever
//! code path deletes its row. Here they are only handed out and aged.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use sqlx::PgPool;
use tokio::sync::watch;
use uuid::Uuid;

use crate::org::Org;

/// The longest XSHADOW context and XSHADOW= id a shadow server may send (reference §1.2).
pub const MAX_ARGUMENT: usize = 255;

/// The most discard ids one XQDISCARD reply carries, whatever the client asks for: the top of
/// Exchange's ShadowRedundancyMaxDiscardIdsPerSmtpCommand range. It bounds the reply's size.
pub const MAX_DISCARD_PAGE: i64 = 1000;

/// The slowest and fastest pace of the auto-discard sweep.
const SWEEP_MAX: Duration = Duration::from_secs(60);
const SWEEP_MIN: Duration = Duration::from_secs(1);

#[derive(Debug, thiserror::Error)]
pub enum ShadowError {
    #[error("queue database: {0}")]
    Db(#[from] sqlx::Error),
    /// The row was neither there nor insertable, time after time (it is never deleted, so only
    /// a database that is being rebuilt under us could do this).
    #[error("queue database: no queue database id for server {0}")]
    NoDatabaseId(String),
}

/// Why an XSHADOW or XQDISCARD argument was refused; each has its own reply.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum ArgumentError {
    #[error("the argument is missing")]
    Missing,
    #[error("the argument is not valid")]
    Invalid,
}

/// The XSHADOW argument: the shadow server's context, standard Base64 of at most 255 characters.
/// It is kept as sent: it is only ever compared with itself.
pub fn parse_context(arg: Option<&str>) -> Result<&str, ArgumentError> {
    let arg = arg
        .filter(|a| !a.is_empty())
        .ok_or(ArgumentError::Missing)?;
    if arg.len() > MAX_ARGUMENT || STANDARD.decode(arg).is_err() {
        return Err(ArgumentError::Invalid);
    }
    Ok(arg)
}

/// The XQDISCARD argument: a positive decimal count, capped at [`MAX_DISCARD_PAGE`]. A count
/// too large for any integer type is still a positive count, so it gets the cap too.
pub fn parse_discard_count(arg: Option<&str>) -> Result<i64, ArgumentError> {
    let arg = arg
        .filter(|a| !a.is_empty())
        .ok_or(ArgumentError::Missing)?;
    if !arg.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ArgumentError::Invalid);
    }
    match arg.parse::<u64>() {
        Ok(0) => Err(ArgumentError::Invalid),
        Ok(n) => Ok(i64::try_from(n).map_or(MAX_DISCARD_PAGE, |n| n.min(MAX_DISCARD_PAGE))),
        // Only digits, not all of them zeros (leading zeros parse): the value overflowed.
        Err(_) if arg.bytes().any(|b| b != b'0') => Ok(MAX_DISCARD_PAGE),
        Err(_) => Err(ArgumentError::Invalid),
    }
}

/// A MAIL `XSHADOW=` value the primary keeps: a GUID in its hyphenated ("D") form, which the
/// shadow server sends and will look for in XQDISCARD replies. Anything else is ignored and the
/// message is accepted without a shadow (Exchange drops an unparsable id the same way).
pub fn valid_shadow_message_id(id: &str) -> bool {
    id.len() <= MAX_ARGUMENT && id.len() == 36 && Uuid::try_parse(id).is_ok()
}

/// The XSHADOW reply's text: standard Base64 of the id's 16 bytes (24 characters).
pub fn dbid_text(id: Uuid) -> String {
    STANDARD.encode(id.as_bytes())
}

/// This node's queue database id, created on first use. It lives in the queue database, so it
/// stays across restarts and is new with a new database: what shadow servers watch for.
pub async fn queue_database_id(pool: &PgPool, server: &str) -> Result<Uuid, ShadowError> {
    // Two sessions may ask first at once: the loser's insert does nothing and its next read
    // finds the winner's row.
    for _ in 0..3 {
        let found: Option<(Uuid,)> =
            sqlx::query_as("SELECT dbid FROM queue_database WHERE server = $1")
                .bind(server)
                .fetch_optional(pool)
                .await?;
        if let Some((id,)) = found {
            return Ok(id);
        }
        let inserted: Option<(Uuid,)> = sqlx::query_as(
            "INSERT INTO queue_database (server) VALUES ($1)
             ON CONFLICT (server) DO NOTHING RETURNING dbid",
        )
        .bind(server)
        .fetch_optional(pool)
        .await?;
        if let Some((id,)) = inserted {
            return Ok(id);
        }
    }
    Err(ShadowError::NoDatabaseId(server.to_string()))
}

/// Takes up to `max` discard events queued for the shadow server `context`, oldest first, and
/// deletes them in the same statement: an event is handed out once. Returns the shadow message
/// ids. Two sessions of one shadow server asking at once get disjoint events.
pub async fn take_discard_events(
    pool: &PgPool,
    server: &str,
    context: &str,
    max: i64,
) -> Result<Vec<String>, ShadowError> {
    let mut taken: Vec<(i64, String)> = sqlx::query_as(
        "DELETE FROM shadow_discard WHERE id IN (
             SELECT id FROM shadow_discard WHERE server = $1 AND context = $2
             ORDER BY id LIMIT $3 FOR UPDATE SKIP LOCKED)
         RETURNING id, shadow_message_id",
    )
    .bind(server)
    .bind(context)
    .bind(max.clamp(0, MAX_DISCARD_PAGE))
    .fetch_all(pool)
    .await?;
    // RETURNING follows no order.
    taken.sort_unstable_by_key(|(id, _)| *id);
    Ok(taken.into_iter().map(|(_, m)| m).collect())
}

/// Drops the discard events older than `max_age_secs` (TransportConfig
/// ShadowMessageAutoDiscardInterval): a shadow server that has not asked for that long has
/// resubmitted or gone. Returns how many went.
pub async fn prune_discard_events(
    pool: &PgPool,
    server: &str,
    max_age_secs: i64,
) -> Result<u64, ShadowError> {
    let done = sqlx::query(
        "DELETE FROM shadow_discard
         WHERE server = $1 AND created_at < now() - $2::bigint * interval '1 second'",
    )
    .bind(server)
    .bind(max_age_secs.max(0))
    .execute(pool)
    .await?;
    Ok(done.rows_affected())
}

/// How often the sweep runs for an interval: a quarter of it, between one second and a minute,
/// so an event outlives its interval by at most a quarter of it (or a minute).
fn sweep_period(interval_secs: i64) -> Duration {
    let quarter = Duration::from_secs(u64::try_from(interval_secs / 4).unwrap_or(0));
    quarter.clamp(SWEEP_MIN, SWEEP_MAX)
}

/// The auto-discard sweep, for the life of the gateway. A change of the interval (Set-
/// TransportConfig) takes effect at once.
pub async fn auto_discard(pool: PgPool, server: String, mut org: watch::Receiver<Arc<Org>>) {
    loop {
        let interval = org.borrow().config.shadow_message_auto_discard_interval;
        match prune_discard_events(&pool, &server, interval).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(
                "dropped {n} shadow discard events older than ShadowMessageAutoDiscardInterval"
            ),
            Err(e) => tracing::warn!("dropping old shadow discard events: {e}"),
        }
        tokio::select! {
            _ = tokio::time::sleep(sweep_period(interval)) => {}
            changed = org.changed() => {
                if changed.is_err() {
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contexts() {
        let good = STANDARD.encode(format!("{}@HUB1@", Uuid::nil()));
        assert_eq!(parse_context(Some(&good)), Ok(good.as_str()));
        assert_eq!(parse_context(None), Err(ArgumentError::Missing));
        assert_eq!(parse_context(Some("")), Err(ArgumentError::Missing));
        for bad in ["not base64!", "abc", "YWJj=", "YW Jj"] {
            assert_eq!(
                parse_context(Some(bad)),
                Err(ArgumentError::Invalid),
                "{bad}"
            );
        }
        let long = STANDARD.encode(vec![b'a'; 192]);
        assert_eq!(long.len(), 256);
        assert_eq!(parse_context(Some(&long)), Err(ArgumentError::Invalid));
        let at_limit = STANDARD.encode(vec![b'a'; 189]);
        assert_eq!(at_limit.len(), 252);
        assert!(parse_context(Some(&at_limit)).is_ok());
    }

    #[test]
    fn discard_counts() {
        assert_eq!(parse_discard_count(Some("50")), Ok(50));
        assert_eq!(parse_discard_count(Some("0050")), Ok(50));
        assert_eq!(parse_discard_count(Some("1000")), Ok(1000));
        assert_eq!(parse_discard_count(Some("1001")), Ok(1000));
        assert_eq!(
            parse_discard_count(Some("99999999999999999999999999")),
            Ok(1000)
        );
        assert_eq!(parse_discard_count(None), Err(ArgumentError::Missing));
        for bad in ["0", "000", "-1", "+5", "5x", "1.5", "٣"] {
            assert_eq!(
                parse_discard_count(Some(bad)),
                Err(ArgumentError::Invalid),
                "{bad}"
            );
        }
        assert_eq!(
            parse_discard_count(Some(&"0".repeat(40))),
            Err(ArgumentError::Invalid)
        );
    }

    #[test]
    fn shadow_message_ids() {
        assert!(valid_shadow_message_id(
            "0e8a4c1e-3b1a-4d6c-9f0e-5a2b7c9d1e3f"
        ));
        assert!(valid_shadow_message_id(
            "0E8A4C1E-3B1A-4D6C-9F0E-5A2B7C9D1E3F"
        ));
        for bad in [
            "",
            "0e8a4c1e3b1a4d6c9f0e5a2b7c9d1e3f",
            "{0e8a4c1e-3b1a-4d6c-9f0e-5a2b7c9d1e3f}",
            "0e8a4c1e-3b1a-4d6c-9f0e-5a2b7c9d1e3g",
            "Srv01.Example",
        ] {
            assert!(!valid_shadow_message_id(bad), "{bad}");
        }
        assert!(!valid_shadow_message_id(&"a".repeat(300)));
    }

    #[test]
    fn dbid_is_24_base64_characters() {
        let text = dbid_text(Uuid::from_u128(0xab_cdef));
        assert_eq!(text.len(), 24);
        assert_eq!(STANDARD.decode(&text).unwrap().len(), 16);
    }

    #[test]
    fn sweep_pace() {
        assert_eq!(sweep_period(172_800), SWEEP_MAX);
        assert_eq!(sweep_period(5), SWEEP_MIN);
        assert_eq!(sweep_period(40), Duration::from_secs(10));
        assert_eq!(sweep_period(-3), SWEEP_MIN);
    }
}
