//! `-Filter` pushed down into SQL for Get-Message and the message actions: a condition on the
//! message row that every message the filter can match satisfies. The exact filter still runs
//! over the rows read, so the condition only has to be implied by the filter, never equal to
//! it; what cannot be expressed safely is left out (true), never guessed.
//!
//! Strings are compared as the filter compares them: case-insensitively, `$null` read as "" by
//! -like. The SQL folds only ASCII letters (`translate`, the same in every locale) and lets any
//! row with a non-ASCII character through, where Unicode case rules could differ.

use crate::ops::filter::{CmpOp, Filter, Lit};

use super::page::Value;

/// The message columns a filter's properties read; other properties are per queue entry.
const COLUMNS: &[(&str, &str)] = &[
    ("FromAddress", "m.from_address"),
    ("Subject", "m.subject"),
    ("InternetMessageId", "m.internet_message_id"),
    ("SourceIP", "m.source_ip"),
    ("MessageSourceName", "m.receive_connector"),
];

const UPPER: &str = "ABCDEFGHIJKLMNOPQRSTUVWXYZ";
const LOWER: &str = "abcdefghijklmnopqrstuvwxyz";

#[derive(Clone, Debug, PartialEq)]
enum Cond {
    False,
    And(Box<Cond>, Box<Cond>),
    Or(Box<Cond>, Box<Cond>),
    /// The column, ASCII-folded, LIKE the pattern (already folded and escaped).
    Like(&'static str, String),
    /// The column, ASCII-folded, equal to the text (already folded).
    Eq(&'static str, String),
    /// m.size compared with an integer.
    Size(&'static str, i64),
}

/// A SQL condition implied by a message filter.
#[derive(Clone, Debug, PartialEq)]
pub struct Prefilter(Cond);

impl Prefilter {
    /// None when nothing of the filter can be pushed down.
    pub fn of_message_filter(f: &Filter) -> Option<Prefilter> {
        cond(f).map(Prefilter)
    }

    /// The whole filter as a condition, when every comparison in it is one on a message column
    /// that `leaf` renders: then, on a message whose compared columns are all ASCII, the
    /// condition holds exactly when the filter matches (see `non_ascii_rows`). None otherwise.
    pub fn exact(f: &Filter) -> Option<Prefilter> {
        exact_cond(f).map(Prefilter)
    }

    /// A condition true for a message with a non-ASCII character in a column this condition
    /// compares: where the condition lets a row through that the filter may still refuse.
    pub(crate) fn non_ascii_rows(&self) -> String {
        let mut columns = Vec::new();
        columns_of(&self.0, &mut columns);
        if columns.is_empty() {
            return "false".into();
        }
        let tests: Vec<String> = columns.iter().map(|c| non_ascii(c)).collect();
        format!("({})", tests.join(" OR "))
    }

    /// The condition with its parameters numbered from `$first`.
    pub(crate) fn sql(&self, first: usize) -> (String, Vec<Value>) {
        let mut values = Vec::new();
        let sql = render(&self.0, first, &mut values);
        (sql, values)
    }
}

fn cond(f: &Filter) -> Option<Cond> {
    match f {
        Filter::Const(false) => Some(Cond::False),
        Filter::Const(true) | Filter::Not(_) => None,
        Filter::And(a, b) => match (cond(a), cond(b)) {
            (Some(a), Some(b)) => Some(Cond::And(Box::new(a), Box::new(b))),
            (one, None) | (None, one) => one,
        },
        Filter::Or(a, b) => Some(Cond::Or(Box::new(cond(a)?), Box::new(cond(b)?))),
        Filter::Cmp {
            property,
            op,
            value,
            ..
        } => leaf(property, *op, value),
    }
}

/// `cond`, but None as soon as any part of the filter is left out.
fn exact_cond(f: &Filter) -> Option<Cond> {
    match f {
        Filter::Const(false) => Some(Cond::False),
        Filter::Const(true) | Filter::Not(_) => None,
        Filter::And(a, b) => Some(Cond::And(
            Box::new(exact_cond(a)?),
            Box::new(exact_cond(b)?),
        )),
        Filter::Or(a, b) => Some(Cond::Or(Box::new(exact_cond(a)?), Box::new(exact_cond(b)?))),
        Filter::Cmp {
            property,
            op,
            value,
            ..
        } => leaf(property, *op, value),
    }
}

fn columns_of(c: &Cond, out: &mut Vec<&'static str>) {
    match c {
        Cond::And(a, b) | Cond::Or(a, b) => {
            columns_of(a, out);
            columns_of(b, out);
        }
        Cond::Like(col, _) | Cond::Eq(col, _) => {
            if !out.contains(col) {
                out.push(col);
            }
        }
        Cond::False | Cond::Size(..) => {}
    }
}

fn leaf(property: &str, op: CmpOp, value: &Lit) -> Option<Cond> {
    if property.eq_ignore_ascii_case("Size") {
        return size(op, value);
    }
    let (_, column) = COLUMNS
        .iter()
        .find(|(p, _)| p.eq_ignore_ascii_case(property))?;
    let Lit::Str(text) = value else {
        return None;
    };
    if !text.is_ascii() {
        return None;
    }
    let folded = text.to_ascii_lowercase();
    match op {
        CmpOp::Like => Some(Cond::Like(column, like_pattern(&folded)?)),
        CmpOp::Eq => Some(Cond::Eq(column, folded)),
        _ => None,
    }
}

/// `Size -gt 1000` and the like, on whole bytes: the literal rounded so the integer comparison
/// keeps exactly the same sizes.
fn size(op: CmpOp, value: &Lit) -> Option<Cond> {
    let Lit::Num(n) = *value else {
        return None;
    };
    // Beyond i64 (or NaN) nothing is pushed down.
    if !(n.is_finite() && n.abs() < 9.0e18) {
        return None;
    }
    let (floor, ceil) = (n.floor() as i64, n.ceil() as i64);
    Some(match op {
        CmpOp::Gt => Cond::Size(">", floor),
        CmpOp::Ge => Cond::Size(">=", ceil),
        CmpOp::Lt => Cond::Size("<", ceil),
        CmpOp::Le => Cond::Size("<=", floor),
        CmpOp::Eq if floor == ceil => Cond::Size("=", floor),
        CmpOp::Eq => Cond::False,
        _ => return None,
    })
}

/// PowerShell's wildcard as a LIKE pattern (escape `\`): `*` and `?` only; a set `[..]` or a
/// backtick escape is not pushed down.
fn like_pattern(pat: &str) -> Option<String> {
    let mut out = String::with_capacity(pat.len() + 4);
    for c in pat.chars() {
        match c {
            '*' => out.push('%'),
            '?' => out.push('_'),
            '[' | '`' => return None,
            '%' | '_' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            c => out.push(c),
        }
    }
    Some(out)
}

fn render(c: &Cond, first: usize, values: &mut Vec<Value>) -> String {
    let mut param = |v: Value| {
        values.push(v);
        format!("${}", first + values.len() - 1)
    };
    match c {
        Cond::False => "false".into(),
        Cond::And(a, b) => {
            let a = render(a, first, values);
            let b = render(b, first, values);
            format!("({a} AND {b})")
        }
        Cond::Or(a, b) => {
            let a = render(a, first, values);
            let b = render(b, first, values);
            format!("({a} OR {b})")
        }
        Cond::Like(col, pat) => {
            let p = param(Value::Text(pat.clone()));
            format!(
                "(translate(coalesce({col}, ''), '{UPPER}', '{LOWER}') LIKE {p} OR {})",
                non_ascii(col)
            )
        }
        Cond::Eq(col, text) => {
            let p = param(Value::Text(text.clone()));
            format!(
                "(translate({col}, '{UPPER}', '{LOWER}') = {p} OR {})",
                non_ascii(col)
            )
        }
        Cond::Size(op, n) => {
            let p = param(Value::Int(*n));
            format!("m.size {op} {p}")
        }
    }
}

/// True for a value with a character outside ASCII (more bytes than characters in UTF-8).
fn non_ascii(col: &str) -> String {
    format!("coalesce(octet_length({col}) <> char_length({col}), false)")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pre(text: &str) -> Option<String> {
        let f = Filter::parse(text).unwrap();
        Prefilter::of_message_filter(&f).map(|p| p.sql(4).0)
    }

    #[test]
    fn what_is_pushed_down_and_what_is_left_to_the_exact_filter() {
        let like = pre("FromAddress -like '*@Spam.example'").unwrap();
        assert!(
            like.contains("m.from_address") && like.contains("LIKE $4"),
            "{like}"
        );
        let f = Filter::parse("FromAddress -like '*@Spam.example'").unwrap();
        let (_, values) = Prefilter::of_message_filter(&f).unwrap().sql(4);
        assert_eq!(values, [Value::Text("%@spam.example".into())]);
        // Only the pushable half of an -and; an -or needs both halves; -not and per-entry
        // properties are never pushed down.
        let and = pre("Subject -eq 'x' -and Status -eq 'Retry'").unwrap();
        assert!(and.contains("m.subject") && !and.contains("Retry"), "{and}");
        assert_eq!(pre("Subject -eq 'x' -or Status -eq 'Retry'"), None);
        assert_eq!(pre("-not (Subject -eq 'x')"), None);
        assert_eq!(pre("Subject -ne 'x'"), None);
        assert_eq!(pre("Subject -like 'a[bc]*'"), None);
        assert_eq!(pre("Subject -like 'caf\u{e9}'"), None);
        assert_eq!(pre("Subject -eq $null"), None);
        let or = pre("FromAddress -eq 'a@b' -or Size -gt 1.5").unwrap();
        assert!(or.contains(" OR m.size > $5"), "{or}");
    }

    #[test]
    fn like_patterns_escape_sql_wildcards() {
        assert_eq!(like_pattern("a%b_c\\d*?").unwrap(), "a\\%b\\_c\\\\d%_");
        assert_eq!(like_pattern("x`*"), None);
    }

    #[test]
    fn size_bounds_keep_exactly_the_same_whole_sizes() {
        let n = |f: f64| Lit::Num(f);
        assert_eq!(size(CmpOp::Gt, &n(1.5)), Some(Cond::Size(">", 1)));
        assert_eq!(size(CmpOp::Ge, &n(1.5)), Some(Cond::Size(">=", 2)));
        assert_eq!(size(CmpOp::Lt, &n(1.5)), Some(Cond::Size("<", 2)));
        assert_eq!(size(CmpOp::Le, &n(1.5)), Some(Cond::Size("<=", 1)));
        assert_eq!(size(CmpOp::Eq, &n(1.5)), Some(Cond::False));
        assert_eq!(size(CmpOp::Eq, &n(2.0)), Some(Cond::Size("=", 2)));
        assert_eq!(size(CmpOp::Gt, &n(f64::NAN)), None);
        assert_eq!(size(CmpOp::Gt, &n(1e300)), None);
        assert_eq!(size(CmpOp::Ne, &n(2.0)), None);
    }
}
