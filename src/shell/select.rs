//! Select-Object and Sort-Object: pipeline stages that reorder or cut the objects any cmdlet
//! returns, comparing the values Format-List shows by their type.

use std::cmp::Ordering;

use time::OffsetDateTime;

use super::bind::{Arg, Bound};
use super::{Obj, ShellError, format, queue};

/// A property value as Sort-Object compares it.
#[derive(Debug, PartialEq)]
enum Key {
    Empty,
    Num(f64),
    Date(OffsetDateTime),
    Text(String),
}

impl Key {
    fn of(text: &str) -> Key {
        let t = text.trim();
        if t.is_empty() {
            return Key::Empty;
        }
        if let Ok(n) = t.parse::<f64>()
            && n.is_finite()
        {
            return Key::Num(n);
        }
        // A ByteQuantifiedSize prints as "1.5 KB (1,536 bytes)": the byte count orders it.
        if let Some(inner) = t
            .strip_suffix(" bytes)")
            .and_then(|s| s.rsplit_once('(').map(|(_, n)| n.replace(',', "")))
            && let Ok(n) = inner.parse::<f64>()
        {
            return Key::Num(n);
        }
        if let Some(d) = queue::parse_datetime(t) {
            return Key::Date(d);
        }
        Key::Text(t.to_lowercase())
    }

    fn rank(&self) -> u8 {
        match self {
            Key::Empty => 0,
            Key::Num(_) => 1,
            Key::Date(_) => 2,
            Key::Text(_) => 3,
        }
    }

    fn cmp(&self, other: &Key) -> Ordering {
        match (self, other) {
            (Key::Num(a), Key::Num(b)) => a.total_cmp(b),
            (Key::Date(a), Key::Date(b)) => a.cmp(b),
            (Key::Text(a), Key::Text(b)) => natural(a, b),
            _ => self.rank().cmp(&other.rank()),
        }
    }
}

/// Text order with digit runs compared as numbers, so identities (`HUB1\3\9`, `HUB1\3\10`)
/// sort by their numbers.
fn natural(a: &str, b: &str) -> Ordering {
    fn chunks(s: &str) -> Vec<(bool, &str)> {
        let mut out = Vec::new();
        let mut start = 0;
        let bytes = s.as_bytes();
        for i in 1..=bytes.len() {
            if i == bytes.len() || bytes[i].is_ascii_digit() != bytes[start].is_ascii_digit() {
                out.push((bytes[start].is_ascii_digit(), &s[start..i]));
                start = i;
            }
        }
        out
    }
    let (xs, ys) = (chunks(a), chunks(b));
    for ((xd, x), (yd, y)) in xs.iter().zip(&ys) {
        let o = if *xd && *yd {
            let (x, y) = (x.trim_start_matches('0'), y.trim_start_matches('0'));
            x.len().cmp(&y.len()).then_with(|| x.cmp(y))
        } else {
            x.cmp(y)
        };
        if o.is_ne() {
            return o;
        }
    }
    xs.len().cmp(&ys.len()).then_with(|| a.cmp(b))
}

fn count(b: &Bound, name: &str) -> Result<Option<usize>, ShellError> {
    match b.get(name) {
        Some(Arg::Int(Some(n))) => {
            usize::try_from(*n)
                .map(Some)
                .map_err(|_| ShellError::BadValue {
                    param: name.to_string(),
                    value: n.to_string(),
                    ty: "System.Int32",
                    hint: "The argument cannot be negative: specify 0 or a larger number.".into(),
                })
        }
        Some(Arg::Int(None)) => Err(ShellError::BadValue {
            param: name.to_string(),
            value: "Unlimited".into(),
            ty: "System.Int32",
            hint: "Specify a whole number.".into(),
        }),
        _ => Ok(None),
    }
}

/// Select-Object -First N / -Last N (both: the first N, then the last N of the rest).
pub fn select(objs: Vec<Obj>, b: &Bound) -> Result<Vec<Obj>, ShellError> {
    let first = count(b, "First")?;
    let last = count(b, "Last")?;
    let mut objs = objs;
    if let Some(n) = first {
        objs.truncate(n);
    }
    if let Some(n) = last {
        let skip = objs.len().saturating_sub(n);
        objs.drain(..skip);
    }
    Ok(objs)
}

/// Sort-Object Property[,Property…] [-Descending]: stable, by typed value.
pub fn sort(objs: Vec<Obj>, b: &Bound) -> Result<Vec<Obj>, ShellError> {
    let props = match b.get("Property") {
        Some(Arg::List(l)) if !l.is_empty() => l.clone(),
        // PowerShell sorts by the objects' default key; the identity is the one all objects have.
        _ => vec!["Identity".to_string()],
    };
    let Some(first) = objs.first() else {
        return Ok(objs);
    };
    let names: Vec<&'static str> = format::raw_properties(first)
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    let mut wanted = Vec::new();
    for p in &props {
        match names.iter().find(|n| n.eq_ignore_ascii_case(p)) {
            Some(n) => wanted.push(*n),
            None => {
                return Err(ShellError::Parse(format!(
                    "Sort-Object: the objects have no property '{p}'. Valid properties are: {}.",
                    names.join(", ")
                )));
            }
        }
    }
    let descending = b.switch("Descending");
    let mut keyed: Vec<(Vec<Key>, Obj)> = objs
        .into_iter()
        .map(|o| {
            let ps = format::raw_properties(&o);
            let keys = wanted
                .iter()
                .map(|w| {
                    ps.iter()
                        .find(|(n, _)| n == w)
                        .map(|(_, v)| Key::of(v))
                        .unwrap_or(Key::Empty)
                })
                .collect();
            (keys, o)
        })
        .collect();
    keyed.sort_by(|(a, _), (b, _)| {
        let o = a
            .iter()
            .zip(b)
            .map(|(x, y)| x.cmp(y))
            .find(|o| o.is_ne())
            .unwrap_or(Ordering::Equal);
        if descending { o.reverse() } else { o }
    });
    Ok(keyed.into_iter().map(|(_, o)| o).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_compare_by_type() {
        assert_eq!(Key::of("10").cmp(&Key::of("9")), Ordering::Greater);
        assert_eq!(
            Key::of("1.5 KB (1,536 bytes)").cmp(&Key::of("900 B (900 bytes)")),
            Ordering::Greater
        );
        assert_eq!(
            Key::of("12/5/2019 1:00:00 AM").cmp(&Key::of("1/25/2020 12:03:58 AM")),
            Ordering::Less
        );
        assert_eq!(Key::of("abc").cmp(&Key::of("ABD")), Ordering::Less);
        assert_eq!(Key::of("ABC").cmp(&Key::of("abc")), Ordering::Equal);
        assert_eq!(Key::of("").cmp(&Key::of("a")), Ordering::Less);
        assert_eq!(
            Key::of("HUB1\\3\\9").cmp(&Key::of("HUB1\\3\\10")),
            Ordering::Less
        );
        assert_eq!(
            Key::of("HUB1\\10").cmp(&Key::of("hub1\\9")),
            Ordering::Greater
        );
        assert_eq!(Key::of("a2b").cmp(&Key::of("a2")), Ordering::Greater);
    }
}
