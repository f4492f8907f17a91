//! Get-Message's paging: `-ResultSize`, `-SortOrder` and `-BookmarkObject`/`-IncludeBookmark`,
//! done in SQL (ORDER BY, a keyset after the bookmark, LIMIT) so a page costs its own size, not
//! the queue's.

use time::OffsetDateTime;

use super::{MessageInfo, QueueError};

/// Exchange's default `-ResultSize` for Get-Message and Get-Queue.
pub const DEFAULT_RESULT_SIZE: u32 = 1000;

/// A message property Get-Message can sort on, with its column.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SortKey {
    Identity,
    FromAddress,
    Size,
    DateReceived,
    Subject,
    SourceIP,
    InternetMessageId,
    MessageSourceName,
}

const KEYS: &[(SortKey, &str)] = &[
    (SortKey::Identity, "Identity"),
    (SortKey::FromAddress, "FromAddress"),
    (SortKey::Size, "Size"),
    (SortKey::DateReceived, "DateReceived"),
    (SortKey::Subject, "Subject"),
    (SortKey::SourceIP, "SourceIP"),
    (SortKey::InternetMessageId, "InternetMessageId"),
    (SortKey::MessageSourceName, "MessageSourceName"),
];

impl SortKey {
    /// The SQL expression the key orders by; text compares case-insensitively, as PowerShell's.
    fn column(self) -> &'static str {
        match self {
            SortKey::Identity => "m.internal_id",
            SortKey::FromAddress => "lower(m.from_address)",
            SortKey::Size => "m.size",
            SortKey::DateReceived => "m.received_at",
            SortKey::Subject => "lower(coalesce(m.subject, ''))",
            SortKey::SourceIP => "lower(m.source_ip)",
            SortKey::InternetMessageId => "lower(coalesce(m.internet_message_id, ''))",
            SortKey::MessageSourceName => "lower(m.receive_connector)",
        }
    }

    /// The bookmark's value for this key, as a parameter; `$n` is its placeholder.
    fn value(self, m: &MessageInfo, n: usize) -> (String, Value) {
        let text = |s: &str| (format!("lower(${n})"), Value::Text(s.to_string()));
        match self {
            SortKey::Identity => (format!("${n}"), Value::Int(m.identity.internal_id)),
            SortKey::FromAddress => text(&m.from_address),
            SortKey::Size => (format!("${n}"), Value::Int(m.size)),
            SortKey::DateReceived => (format!("${n}"), Value::Time(m.date_received)),
            SortKey::Subject => text(m.subject.as_deref().unwrap_or("")),
            SortKey::SourceIP => text(&m.source_ip),
            SortKey::InternetMessageId => text(m.internet_message_id.as_deref().unwrap_or("")),
            SortKey::MessageSourceName => text(&m.message_source_name),
        }
    }
}

/// A parameter of the paging query.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Value {
    Int(i64),
    Text(String),
    Time(OffsetDateTime),
}

/// `-SortOrder +Prop,-Prop`: each property with `+` (ascending, the default) or `-`.
pub fn parse_sort_order(items: &[String]) -> Result<Vec<(SortKey, bool)>, QueueError> {
    let mut out: Vec<(SortKey, bool)> = Vec::new();
    for item in items.iter().flat_map(|i| i.split(',')) {
        let t = item.trim();
        if t.is_empty() {
            continue;
        }
        let (descending, name) = match t.as_bytes()[0] {
            b'-' => (true, t[1..].trim()),
            b'+' => (false, t[1..].trim()),
            _ => (false, t),
        };
        let key = KEYS
            .iter()
            .find(|(_, n)| n.eq_ignore_ascii_case(name))
            .map(|(k, _)| *k)
            .ok_or_else(|| QueueError::BadSortOrder {
                property: name.to_string(),
                valid: KEYS.iter().map(|(_, n)| *n).collect::<Vec<_>>().join(", "),
            })?;
        if out.iter().any(|(k, _)| *k == key) {
            return Err(QueueError::BadSortOrder {
                property: format!("{name} (given twice)"),
                valid: KEYS.iter().map(|(_, n)| *n).collect::<Vec<_>>().join(", "),
            });
        }
        out.push((key, descending));
    }
    Ok(out)
}

/// One page of Get-Message.
#[derive(Clone, Debug, Default)]
pub struct Page {
    /// At most this many messages; None is Unlimited.
    pub limit: Option<u32>,
    /// The sort keys, `true` for descending; the identity always ends the order, so it is total.
    pub order: Vec<(SortKey, bool)>,
    /// Start after (or, with `include_bookmark`, at) this message in that order.
    pub bookmark: Option<MessageInfo>,
    pub include_bookmark: bool,
    /// What of a -Filter the query can test itself (the exact filter runs on what it reads).
    pub prefilter: Option<super::pushdown::Prefilter>,
    /// Skip this many messages first (the console's page number; the shell pages by bookmark).
    pub offset: u32,
    /// Leave each recipient's attempt history out (what a filtered action or a long listing that
    /// is cut afterwards never shows).
    pub skip_attempts: bool,
}

/// The SQL pieces of a page: the ORDER BY list, the keyset condition and its parameters.
pub(crate) struct PageSql {
    pub order_by: String,
    pub after: Option<String>,
    pub values: Vec<Value>,
}

impl Page {
    fn keys(&self) -> Vec<(SortKey, bool)> {
        let mut keys = self.order.clone();
        if !keys.iter().any(|(k, _)| *k == SortKey::Identity) {
            keys.push((SortKey::Identity, false));
        }
        keys
    }

    /// `first_param` is the number of the first free `$n`.
    pub(crate) fn sql(&self, first_param: usize) -> PageSql {
        let keys = self.keys();
        let order_by = keys
            .iter()
            .map(|(k, d)| format!("{} {}", k.column(), if *d { "DESC" } else { "ASC" }))
            .collect::<Vec<_>>()
            .join(", ");
        let Some(b) = &self.bookmark else {
            return PageSql {
                order_by,
                after: None,
                values: vec![],
            };
        };
        let mut values = Vec::new();
        let mut placeholders = Vec::new();
        for (i, (k, _)) in keys.iter().enumerate() {
            let (ph, v) = k.value(b, first_param + i);
            placeholders.push(ph);
            values.push(v);
        }
        // Keys all in one direction: one row comparison, which PostgreSQL reads as a start
        // position in an index on those keys (the Queue Viewer's Next link deep in a backlog).
        if keys.iter().all(|(_, d)| *d == keys[0].1) {
            let op = match (keys[0].1, self.include_bookmark) {
                (false, false) => ">",
                (false, true) => ">=",
                (true, false) => "<",
                (true, true) => "<=",
            };
            let columns: Vec<&str> = keys.iter().map(|(k, _)| k.column()).collect();
            return PageSql {
                order_by,
                after: Some(format!(
                    "(({}) {op} ({}))",
                    columns.join(", "),
                    placeholders.join(", ")
                )),
                values,
            };
        }
        // Lexicographic "after": equal on the first i keys and past the bookmark on key i.
        let mut alternatives = Vec::new();
        for i in 0..keys.len() {
            let mut terms: Vec<String> = (0..i)
                .map(|j| format!("{} = {}", keys[j].0.column(), placeholders[j]))
                .collect();
            let op = if keys[i].1 { "<" } else { ">" };
            terms.push(format!("{} {op} {}", keys[i].0.column(), placeholders[i]));
            alternatives.push(format!("({})", terms.join(" AND ")));
        }
        if self.include_bookmark {
            let same: Vec<String> = (0..keys.len())
                .map(|j| format!("{} = {}", keys[j].0.column(), placeholders[j]))
                .collect();
            alternatives.push(format!("({})", same.join(" AND ")));
        }
        PageSql {
            order_by,
            after: Some(format!("({})", alternatives.join(" OR "))),
            values,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sort_orders() {
        let s = |v: &[&str]| parse_sort_order(&v.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        assert_eq!(
            s(&["+DateReceived", "-size"]).unwrap(),
            vec![(SortKey::DateReceived, false), (SortKey::Size, true)]
        );
        assert_eq!(
            s(&["FromAddress,-Identity"]).unwrap(),
            vec![(SortKey::FromAddress, false), (SortKey::Identity, true)]
        );
        let e = s(&["-Colour"]).unwrap_err().to_string();
        assert!(e.contains("'Colour'") && e.contains("DateReceived"), "{e}");
        assert!(s(&["Size", "-Size"]).is_err());
    }
}
