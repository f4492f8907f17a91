//! Add-, Remove- and Get-IPAllowListEntry / -IPBlockListEntry: the Connection Filtering agent's
//! lists, organisation-wide. Identity is the entry's integer, as Exchange shows it.

use std::net::IpAddr;

use sqlx::PgConnection;
use time::OffsetDateTime;

use super::OpError;
use crate::org::ip_list::{self, IpList, IpListEntry, Row};

/// Add-IP*ListEntry's parameters: exactly one of -IPAddress and -IPRange.
#[derive(Clone, Debug, Default)]
pub struct AddEntry {
    pub ip_address: Option<String>,
    pub ip_range: Option<String>,
    pub expiration_time: Option<OffsetDateTime>,
    pub comment: Option<String>,
}

/// The longest Comment kept: a configuration row, not a document.
const MAX_COMMENT: usize = 1024;

pub async fn add(
    tx: &mut PgConnection,
    list: IpList,
    req: &AddEntry,
    now: OffsetDateTime,
) -> Result<IpListEntry, OpError> {
    let (ip_range, low, high) = match (&req.ip_address, &req.ip_range) {
        (Some(a), None) => {
            ip_list::parse_address(a).map_err(|m| OpError::invalid("IPAddress", m))?
        }
        (None, Some(r)) => ip_list::parse_range(r).map_err(|m| OpError::invalid("IPRange", m))?,
        (None, None) => return Err(OpError::MissingMandatory(vec!["IPAddress"])),
        (Some(_), Some(_)) => {
            return Err(OpError::invalid(
                "IPRange",
                "Parameter set cannot be resolved using the specified named parameters: use -IPAddress or -IPRange, not both.",
            ));
        }
    };
    if let Some(t) = req.expiration_time
        && t <= now
    {
        return Err(OpError::invalid(
            "ExpirationTime",
            "The ExpirationTime must be in the future.",
        ));
    }
    if req.comment.as_ref().is_some_and(|c| c.len() > MAX_COMMENT) {
        return Err(OpError::invalid(
            "Comment",
            format!("The Comment is longer than {MAX_COMMENT} characters."),
        ));
    }
    let row: Row = sqlx::query_as(
        "INSERT INTO ip_list_entry (list, ip_range, low, high, expiration_time, comment)
         VALUES ($1, $2, $3, $4, $5, $6)
         RETURNING id, list, ip_range, low, high, expiration_time, comment",
    )
    .bind(list.as_str())
    .bind(&ip_range)
    .bind(low.to_string())
    .bind(high.to_string())
    .bind(req.expiration_time)
    .bind(&req.comment)
    .fetch_one(&mut *tx)
    .await?;
    Ok(row.entry()?)
}

/// The integer an -Identity names.
pub fn identity(s: &str) -> Result<i64, OpError> {
    s.trim()
        .parse::<i64>()
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| {
            OpError::invalid(
                "Identity",
                format!("\"{s}\" is not a valid IP list entry identity: it is a positive integer."),
            )
        })
}

pub async fn remove(tx: &mut PgConnection, list: IpList, id: i64) -> Result<IpListEntry, OpError> {
    let row: Option<Row> = sqlx::query_as(
        "DELETE FROM ip_list_entry WHERE list = $1 AND id = $2
         RETURNING id, list, ip_range, low, high, expiration_time, comment",
    )
    .bind(list.as_str())
    .bind(id)
    .fetch_optional(&mut *tx)
    .await?;
    match row {
        Some(r) => Ok(r.entry()?),
        None => Err(OpError::NotFound(id.to_string())),
    }
}

/// Get-IP*ListEntry: every entry, the one -Identity names, or those covering -IPAddress.
pub async fn get(
    tx: &mut PgConnection,
    list: IpList,
    id: Option<i64>,
    covering: Option<IpAddr>,
) -> Result<Vec<IpListEntry>, OpError> {
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT id, list, ip_range, low, high, expiration_time, comment FROM ip_list_entry
         WHERE list = $1 AND ($2::bigint IS NULL OR id = $2) ORDER BY id",
    )
    .bind(list.as_str())
    .bind(id)
    .fetch_all(&mut *tx)
    .await?;
    let mut out = Vec::with_capacity(rows.len());
    for r in rows {
        let e = r.entry()?;
        if covering.is_none_or(|ip| e.covers(ip)) {
            out.push(e);
        }
    }
    if let Some(id) = id
        && out.is_empty()
    {
        return Err(OpError::NotFound(id.to_string()));
    }
    Ok(out)
}
