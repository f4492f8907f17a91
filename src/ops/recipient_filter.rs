//! Get-/Set-RecipientFilterConfig (the Recipient Filter agent, organisation-wide) and hubgate's
//! valid recipients of relay domains: Add-, Remove-, Get- and Import-ValidRecipient.

use sqlx::PgConnection;

use super::OpError;
use super::org_config;
use super::props::{Export, Kind, Object, Values};
use crate::field;
use crate::org::recipient_filter::{RecipientFilterConfig, parse_address};

type C = RecipientFilterConfig;

pub static CONFIG: Object<C> = Object {
    props: &[
        field!(C, "Enabled", Kind::Bool, enabled).export(Export::Always),
        field!(C, "ExternalMailEnabled", Kind::Bool, external_mail_enabled).export(Export::Always),
        field!(C, "InternalMailEnabled", Kind::Bool, internal_mail_enabled).export(Export::Always),
        field!(
            C,
            "RecipientValidationEnabled",
            Kind::Bool,
            recipient_validation_enabled
        )
        .export(Export::Always),
        field!(C, "BlockListEnabled", Kind::Bool, block_list_enabled).export(Export::Always),
        field!(C, "BlockedRecipients", Kind::List, blocked_recipients).export(Export::Always),
        // hubgate's (Exchange validated relay domains only from AD LDS, through EdgeSync): how
        // a relay domain without an imported list learns its recipients from its next hop.
        field!(
            C,
            "RecipientCalloutEnabled",
            Kind::Bool,
            recipient_callout_enabled
        )
        .export(Export::Always),
        field!(
            C,
            "RecipientCalloutTimeout",
            Kind::TimeSpan,
            recipient_callout_timeout
        )
        .range(1, 120)
        .export(Export::Always),
        field!(
            C,
            "RecipientCalloutValidCacheTimeout",
            Kind::TimeSpan,
            recipient_callout_valid_cache_timeout
        )
        .range(1, 7776000)
        .export(Export::Always),
        field!(
            C,
            "RecipientCalloutUnknownCacheTimeout",
            Kind::TimeSpan,
            recipient_callout_unknown_cache_timeout
        )
        .range(1, 7776000)
        .export(Export::Always),
    ],
    new_extra: &[],
    export_cmdlet: "Set-RecipientFilterConfig",
    export_first: &[],
    base: C::clone,
    noun: "Recipient filter configuration",
    name: |_| String::new(),
    unsupported_new: &[],
    unsupported_set: &["Instance"],
    tabs: &[
        (
            "Blocked Recipients",
            &[
                "Enabled",
                "ExternalMailEnabled",
                "InternalMailEnabled",
                "BlockListEnabled",
                "BlockedRecipients",
            ],
        ),
        (
            "Recipient Validation",
            &[
                "RecipientValidationEnabled",
                "RecipientCalloutEnabled",
                "RecipientCalloutTimeout",
                "RecipientCalloutValidCacheTimeout",
                "RecipientCalloutUnknownCacheTimeout",
            ],
        ),
    ],
};

pub async fn get_config(tx: &mut PgConnection) -> Result<C, OpError> {
    org_config::get(tx).await
}

pub async fn set_config(
    tx: &mut PgConnection,
    values: &Values,
) -> Result<super::Change<C>, OpError> {
    org_config::set(tx, &CONFIG, values, |after| {
        // Stored as typed, compared without case: one spelling per address.
        let mut seen = std::collections::HashSet::new();
        after
            .blocked_recipients
            .retain(|a| seen.insert(a.trim().to_ascii_lowercase()));
        for a in &mut after.blocked_recipients {
            *a = a.trim().to_string();
        }
        CONFIG.validate(after)
    })
    .await
}

/// One imported valid recipient.
#[derive(Clone, Debug, PartialEq, Eq, sqlx::FromRow)]
pub struct ValidRecipient {
    pub address: String,
    pub domain: String,
    pub added: time::OffsetDateTime,
}

/// The largest file Import-ValidRecipient reads, and the most addresses it takes at once.
pub const MAX_IMPORT_BYTES: u64 = 32 * 1024 * 1024;
pub const MAX_IMPORT_ROWS: usize = 500_000;

fn address(s: &str) -> Result<(String, String), OpError> {
    parse_address(s).map_err(|m| OpError::invalid("Address", m))
}

/// Add-ValidRecipient: already listed is not an error (the list is a set).
pub async fn add(tx: &mut PgConnection, a: &str) -> Result<ValidRecipient, OpError> {
    let (address, domain) = address(a)?;
    Ok(sqlx::query_as(
        "INSERT INTO valid_recipient (address, domain) VALUES ($1, $2)
         ON CONFLICT (address) DO UPDATE SET domain = EXCLUDED.domain
         RETURNING address, domain, added",
    )
    .bind(&address)
    .bind(&domain)
    .fetch_one(&mut *tx)
    .await?)
}

pub async fn remove(tx: &mut PgConnection, a: &str) -> Result<ValidRecipient, OpError> {
    let (address, _) = address(a)?;
    sqlx::query_as(
        "DELETE FROM valid_recipient WHERE address = $1 RETURNING address, domain, added",
    )
    .bind(&address)
    .fetch_optional(&mut *tx)
    .await?
    .ok_or(OpError::NotFound(address))
}

/// Get-ValidRecipient: every entry, those of -Domain, or the one -Address names.
pub async fn get(
    tx: &mut PgConnection,
    address: Option<&str>,
    domain: Option<&str>,
) -> Result<Vec<ValidRecipient>, OpError> {
    let address = address.map(|a| a.trim().to_ascii_lowercase());
    let domain = domain.map(|d| d.trim().to_ascii_lowercase());
    let rows: Vec<ValidRecipient> = sqlx::query_as(
        "SELECT address, domain, added FROM valid_recipient
         WHERE ($1::text IS NULL OR address = $1) AND ($2::text IS NULL OR domain = $2)
         ORDER BY domain, address",
    )
    .bind(&address)
    .bind(&domain)
    .fetch_all(&mut *tx)
    .await?;
    if let Some(a) = address
        && rows.is_empty()
    {
        return Err(OpError::NotFound(a));
    }
    Ok(rows)
}

/// The addresses of a CSV file with an `Address` column (other columns ignored; a leading
/// `#TYPE` line, as Export-Csv writes, skipped). Any bad line refuses the whole file, naming it.
pub fn parse_csv(text: &str) -> Result<Vec<(String, String)>, OpError> {
    let bad = |line: usize, why: String| OpError::invalid("Path", format!("Line {line}: {why}"));
    // Export-Csv on Windows may start the file with a byte order mark, before its #TYPE line.
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut lines = text.lines().enumerate().map(|(i, l)| (i + 1, l));
    let (header_line, header) = loop {
        match lines.next() {
            None => {
                return Err(OpError::invalid(
                    "Path",
                    "The file is empty: expected a header line with an Address column.",
                ));
            }
            Some((_, l)) if l.trim().is_empty() || l.starts_with("#TYPE") => continue,
            Some(h) => break h,
        }
    };
    let columns = split_csv_line(header).map_err(|e| bad(header_line, e))?;
    let col = columns
        .iter()
        .position(|c| c.trim().eq_ignore_ascii_case("Address"))
        .ok_or_else(|| bad(header_line, "the header has no Address column.".into()))?;
    let mut out = Vec::new();
    for (n, l) in lines {
        if l.trim().is_empty() {
            continue;
        }
        if out.len() >= MAX_IMPORT_ROWS {
            return Err(bad(
                n,
                format!("more than {MAX_IMPORT_ROWS} addresses in one import."),
            ));
        }
        let fields = split_csv_line(l).map_err(|e| bad(n, e))?;
        let value = fields
            .get(col)
            .ok_or_else(|| bad(n, "the line has no Address field.".into()))?;
        out.push(parse_address(value).map_err(|e| bad(n, e))?);
    }
    Ok(out)
}

/// One CSV record on one line (RFC 4180 quoting; a quoted field may not span lines).
fn split_csv_line(line: &str) -> Result<Vec<String>, String> {
    let mut fields = Vec::new();
    let mut cur = String::new();
    let mut chars = line.trim_end_matches('\r').chars().peekable();
    let mut quoted = false;
    let mut at_start = true;
    while let Some(c) = chars.next() {
        match c {
            '"' if quoted => {
                if chars.peek() == Some(&'"') {
                    chars.next();
                    cur.push('"');
                } else {
                    quoted = false;
                }
            }
            '"' if at_start => {
                quoted = true;
                at_start = false;
            }
            ',' if !quoted => {
                fields.push(std::mem::take(&mut cur));
                at_start = true;
            }
            c => {
                cur.push(c);
                at_start = false;
            }
        }
    }
    if quoted {
        return Err("a quoted field is not closed.".into());
    }
    fields.push(cur);
    Ok(fields)
}

/// Refuses a file over MAX_IMPORT_BYTES before it is read (the shell) or kept (the console);
/// `name` is the path or the uploaded file's name.
pub fn check_import_size(name: &str, size: u64) -> Result<(), OpError> {
    if size > MAX_IMPORT_BYTES {
        return Err(OpError::invalid(
            "Path",
            format!("\"{name}\" is {size} bytes; at most {MAX_IMPORT_BYTES} are imported at once."),
        ));
    }
    Ok(())
}

/// A file's bytes as the text `import` reads: UTF-8 (with or without a byte order mark), or
/// refused naming the line of the first byte that is not.
pub fn decode(bytes: &[u8]) -> Result<&str, OpError> {
    std::str::from_utf8(bytes).map_err(|e| {
        let line = bytes[..e.valid_up_to()]
            .iter()
            .filter(|b| **b == b'\n')
            .count()
            + 1;
        OpError::invalid(
            "Path",
            format!("Line {line}: the file is not UTF-8 text (save it as UTF-8 CSV)."),
        )
    })
}

/// Import-ValidRecipient on a file's contents, as the shell reads them from -Path and the
/// console from an upload: the size and the encoding checked, then `import`.
pub async fn import_file(tx: &mut PgConnection, name: &str, bytes: &[u8]) -> Result<u64, OpError> {
    check_import_size(name, u64::try_from(bytes.len()).unwrap_or(u64::MAX))?;
    import(tx, decode(bytes)?).await
}

/// One domain's imported valid recipients: how many, and the first few by address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DomainRecipients {
    pub domain: String,
    pub count: i64,
    pub first: Vec<ValidRecipient>,
}

/// What a page can show of lists that may hold hundreds of thousands of addresses: how many
/// domains have a list, and the first `max_domains` of them with their first `first` addresses.
pub async fn by_domain(
    tx: &mut PgConnection,
    max_domains: i64,
    first: i64,
) -> Result<(i64, Vec<DomainRecipients>), OpError> {
    let (domains,): (i64,) = sqlx::query_as("SELECT count(DISTINCT domain) FROM valid_recipient")
        .fetch_one(&mut *tx)
        .await?;
    let counts: Vec<(String, i64)> = sqlx::query_as(
        "SELECT domain, count(*) FROM valid_recipient GROUP BY domain ORDER BY domain LIMIT $1",
    )
    .bind(max_domains)
    .fetch_all(&mut *tx)
    .await?;
    let names: Vec<&str> = counts.iter().map(|(d, _)| d.as_str()).collect();
    let rows: Vec<ValidRecipient> = sqlx::query_as(
        "SELECT v.address, v.domain, v.added FROM unnest($1::text[]) AS d(domain)
         CROSS JOIN LATERAL (
            SELECT address, domain, added FROM valid_recipient
            WHERE domain = d.domain ORDER BY address LIMIT $2) v
         ORDER BY v.domain, v.address",
    )
    .bind(&names)
    .bind(first)
    .fetch_all(&mut *tx)
    .await?;
    let lists = counts
        .into_iter()
        .map(|(domain, count)| DomainRecipients {
            first: rows
                .iter()
                .filter(|r| r.domain == domain)
                .cloned()
                .collect(),
            domain,
            count,
        })
        .collect();
    Ok((domains, lists))
}

/// Import-ValidRecipient: every address of the file, or none.
pub async fn import(tx: &mut PgConnection, text: &str) -> Result<u64, OpError> {
    let rows = parse_csv(text)?;
    let (addresses, domains): (Vec<String>, Vec<String>) = rows.into_iter().unzip();
    let done = sqlx::query(
        "INSERT INTO valid_recipient (address, domain)
         SELECT * FROM unnest($1::text[], $2::text[])
         ON CONFLICT (address) DO NOTHING",
    )
    .bind(&addresses)
    .bind(&domains)
    .execute(&mut *tx)
    .await?;
    Ok(done.rows_affected())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_files_parse_or_name_the_bad_line() {
        let ok = parse_csv(
            "\u{feff}#TYPE Deserialized\n\"Name\",\"Address\"\n\"Bob, Jr\",\"Bob@Primary.Example\"\n\nx,alice@primary.example\n",
        )
        .unwrap();
        assert_eq!(
            ok,
            vec![
                ("bob@primary.example".into(), "primary.example".into()),
                ("alice@primary.example".into(), "primary.example".into())
            ]
        );
        let e = parse_csv("Address\na@primary.example\nnot an address\n").unwrap_err();
        assert!(e.to_string().starts_with("Line 3: "), "{e}");
        assert!(
            parse_csv("Name\nbob\n")
                .unwrap_err()
                .to_string()
                .contains("Address column")
        );
        assert!(parse_csv("Address\n\"a@b.example\n").is_err());
        assert!(parse_csv("").is_err());
    }

    #[test]
    fn a_file_that_is_not_utf8_names_its_line() {
        assert_eq!(
            decode(b"Address\na@b.example\n").unwrap(),
            "Address\na@b.example\n"
        );
        let e = decode(b"Address\na@b.example\n\xe9@b.example\n").unwrap_err();
        assert!(e.to_string().starts_with("Line 3: "), "{e}");
        assert_eq!(e.param(), Some("Path"));
        assert!(check_import_size("x.csv", MAX_IMPORT_BYTES).is_ok());
        assert!(check_import_size("x.csv", MAX_IMPORT_BYTES + 1).is_err());
    }
}
