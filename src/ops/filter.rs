//! Exchange's OPATH filter subset (`-Filter {…}`, `Where-Object {…}`): parsed once into a
//! [`Filter`], evaluated over any [`Record`] with PowerShell's comparison rules.
//!
//! It lives below the shell so the console's Queue Viewer can take the same filters.

use time::{Duration, OffsetDateTime};

pub use super::wildcard::wildcard;

/// A property value as a filter compares it.
#[derive(Clone, Debug, PartialEq)]
pub enum FValue {
    Str(String),
    Num(f64),
    Date(OffsetDateTime),
    Span(Duration),
    Bool(bool),
    Null,
}

/// What a filter is evaluated over: an object's properties by name.
pub trait Record {
    /// The property names, as the object shows them (for the unknown-property error).
    fn property_names(&self) -> Vec<&'static str>;
    /// The value of a property (name matched case-insensitively); `None` if it has none.
    fn property(&self, name: &str) -> Option<FValue>;
}

/// `pos` is the 0-based character offset in the filter text; the message shows it 1-based.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum FilterError {
    #[error("The filter is empty.")]
    Empty,
    #[error("Invalid filter syntax at position {}: {what}", .pos + 1)]
    Syntax { pos: usize, what: String },
    #[error(
        "Invalid filter syntax at position {}: '-{op}' is not a valid operator. Use -eq, -ne, -like, -notlike, -gt, -ge, -lt, -le, -and, -or or -not.",
        .pos + 1
    )]
    BadOperator { pos: usize, op: String },
    #[error(
        "Cannot bind parameter 'Filter' at position {}: \"{name}\" is not a recognized filterable property. Valid properties are: {valid}.",
        .pos + 1
    )]
    UnknownProperty {
        pos: usize,
        name: String,
        valid: String,
    },
    #[error(
        "Cannot bind parameter 'Filter' at position {}: the value \"{value}\" can't be compared with the property {property} ({why}).",
        .pos + 1
    )]
    BadValue {
        pos: usize,
        property: String,
        value: String,
        why: String,
    },
}

/// A property's type, for checking a filter's values before any row is read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Str,
    Num,
    Date,
    Span,
    /// A string with a fixed set of values (Status): -eq / -ne with any other is a mistake.
    Enum(&'static [&'static str]),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CmpOp {
    Eq,
    Ne,
    Like,
    NotLike,
    Gt,
    Ge,
    Lt,
    Le,
}

/// A literal as written: kept as text so it is converted to the property's type when compared,
/// as PowerShell converts the right operand to the left one's type.
#[derive(Clone, Debug, PartialEq)]
pub enum Lit {
    Str(String),
    Num(f64),
    Bool(bool),
    Null,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Filter {
    Cmp {
        property: String,
        /// Where the property is written (0-based, in characters), for errors at evaluation.
        pos: usize,
        op: CmpOp,
        value: Lit,
        value_pos: usize,
    },
    And(Box<Filter>, Box<Filter>),
    Or(Box<Filter>, Box<Filter>),
    Not(Box<Filter>),
    /// A bare `$true` / `$false`.
    Const(bool),
}

#[derive(Clone, Debug, PartialEq)]
enum Tok {
    Op(String),
    Word(String),
    Str(String),
    Num(f64),
    Var(String),
    LParen,
    RParen,
}

fn lex(text: &str) -> Result<Vec<(usize, Tok)>, FilterError> {
    let chars: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let start = i;
        match c {
            _ if c.is_whitespace() => i += 1,
            '(' => {
                out.push((start, Tok::LParen));
                i += 1
            }
            ')' => {
                out.push((start, Tok::RParen));
                i += 1
            }
            '!' => {
                out.push((start, Tok::Op("not".into())));
                i += 1
            }
            '"' | '\'' | '\u{201c}' | '\u{201d}' | '\u{2018}' | '\u{2019}' => {
                let double = matches!(c, '"' | '\u{201c}' | '\u{201d}');
                let closes = |q: char| {
                    if double {
                        matches!(q, '"' | '\u{201c}' | '\u{201d}')
                    } else {
                        matches!(q, '\'' | '\u{2018}' | '\u{2019}')
                    }
                };
                let mut s = String::new();
                i += 1;
                loop {
                    match chars.get(i) {
                        None => {
                            return Err(FilterError::Syntax {
                                pos: start,
                                what: "the string is missing its closing quote.".into(),
                            });
                        }
                        Some(&q) if closes(q) => {
                            // A doubled quote is one quote character.
                            if chars.get(i + 1).is_some_and(|n| closes(*n)) {
                                s.push(q);
                                i += 2;
                            } else {
                                i += 1;
                                break;
                            }
                        }
                        Some('`') if double && i + 1 < chars.len() => {
                            s.push(chars[i + 1]);
                            i += 2;
                        }
                        Some(&ch) => {
                            s.push(ch);
                            i += 1
                        }
                    }
                }
                out.push((start, Tok::Str(s)));
            }
            '-' | '\u{2013}' | '\u{2014}'
                if chars.get(i + 1).is_some_and(|n| n.is_alphabetic()) =>
            {
                i += 1;
                while i < chars.len() && chars[i].is_alphanumeric() {
                    i += 1;
                }
                let op: String = chars[start + 1..i].iter().collect();
                out.push((start, Tok::Op(op.to_ascii_lowercase())));
            }
            '$' => {
                i += 1;
                while i < chars.len()
                    && (chars[i].is_alphanumeric() || matches!(chars[i], '_' | '.'))
                {
                    i += 1;
                }
                let name: String = chars[start + 1..i].iter().collect();
                if name.is_empty() {
                    return Err(FilterError::Syntax {
                        pos: start,
                        what: "'$' is not followed by a variable name.".into(),
                    });
                }
                out.push((start, Tok::Var(name)));
            }
            _ => {
                while i < chars.len()
                    && !chars[i].is_whitespace()
                    && !matches!(chars[i], '(' | ')' | '"' | '\'')
                {
                    i += 1;
                }
                let w: String = chars[start..i].iter().collect();
                let num = w.strip_prefix('-').unwrap_or(&w);
                let tok = if num.starts_with(|d: char| d.is_ascii_digit()) {
                    match parse_number(&w) {
                        Some(n) => Tok::Num(n),
                        None => Tok::Word(w),
                    }
                } else {
                    Tok::Word(w)
                };
                out.push((start, tok));
            }
        }
    }
    Ok(out)
}

/// A PowerShell number: digits with an optional fraction and a KB/MB/GB suffix.
fn parse_number(w: &str) -> Option<f64> {
    let lower = w.to_ascii_lowercase();
    let (digits, mult) = [("kb", 1024.0), ("mb", 1048576.0), ("gb", 1073741824.0)]
        .iter()
        .find_map(|(s, m)| lower.strip_suffix(s).map(|d| (d.to_string(), *m)))
        .unwrap_or((lower.clone(), 1.0));
    let n: f64 = digits.parse().ok()?;
    n.is_finite().then_some(n * mult)
}

struct Parser {
    toks: Vec<(usize, Tok)>,
    pos: usize,
    end: usize,
    /// Where-Object writes `$_.Property`; -Filter writes `Property`.
    dollar_underscore: bool,
}

const COMPARISONS: &[(&str, CmpOp)] = &[
    ("eq", CmpOp::Eq),
    ("ne", CmpOp::Ne),
    ("like", CmpOp::Like),
    ("notlike", CmpOp::NotLike),
    ("gt", CmpOp::Gt),
    ("ge", CmpOp::Ge),
    ("lt", CmpOp::Lt),
    ("le", CmpOp::Le),
    // PowerShell's explicitly case-insensitive spellings.
    ("ieq", CmpOp::Eq),
    ("ine", CmpOp::Ne),
    ("ilike", CmpOp::Like),
    ("inotlike", CmpOp::NotLike),
];

impl Parser {
    fn peek(&self) -> Option<&(usize, Tok)> {
        self.toks.get(self.pos)
    }
    fn here(&self) -> usize {
        self.peek().map(|t| t.0).unwrap_or(self.end)
    }
    fn is_op(&self, name: &str) -> bool {
        matches!(self.peek(), Some((_, Tok::Op(o))) if o == name)
    }

    fn or(&mut self) -> Result<Filter, FilterError> {
        let mut left = self.and()?;
        while self.is_op("or") {
            self.pos += 1;
            left = Filter::Or(Box::new(left), Box::new(self.and()?));
        }
        Ok(left)
    }

    fn and(&mut self) -> Result<Filter, FilterError> {
        let mut left = self.unary()?;
        while self.is_op("and") {
            self.pos += 1;
            left = Filter::And(Box::new(left), Box::new(self.unary()?));
        }
        Ok(left)
    }

    fn unary(&mut self) -> Result<Filter, FilterError> {
        if self.is_op("not") {
            self.pos += 1;
            return Ok(Filter::Not(Box::new(self.unary()?)));
        }
        self.comparison()
    }

    fn comparison(&mut self) -> Result<Filter, FilterError> {
        let Some((pos, tok)) = self.peek().cloned() else {
            return Err(FilterError::Syntax {
                pos: self.end,
                what: "a property name is missing at the end of the filter.".into(),
            });
        };
        self.pos += 1;
        let property = match tok {
            Tok::LParen => {
                let inner = self.or()?;
                match self.peek() {
                    Some((_, Tok::RParen)) => {
                        self.pos += 1;
                        return Ok(inner);
                    }
                    _ => {
                        return Err(FilterError::Syntax {
                            pos: self.here(),
                            what: "missing closing ')'.".into(),
                        });
                    }
                }
            }
            Tok::Var(v) if v.eq_ignore_ascii_case("true") => return Ok(Filter::Const(true)),
            Tok::Var(v) if v.eq_ignore_ascii_case("false") => return Ok(Filter::Const(false)),
            Tok::Var(v) if self.dollar_underscore => match v.strip_prefix("_.") {
                Some(p) if !p.is_empty() && !p.contains('.') => p.to_string(),
                _ => {
                    return Err(FilterError::Syntax {
                        pos,
                        what: format!("expected $_.PropertyName, found ${v}."),
                    });
                }
            },
            Tok::Word(w)
                if !self.dollar_underscore
                    && w.chars().all(|c| c.is_alphanumeric() || c == '_') =>
            {
                w
            }
            Tok::Op(op) => return Err(FilterError::BadOperator { pos, op }),
            other => {
                return Err(FilterError::Syntax {
                    pos,
                    what: format!(
                        "expected {}, found {}.",
                        if self.dollar_underscore {
                            "$_.PropertyName"
                        } else {
                            "a property name"
                        },
                        describe(&other)
                    ),
                });
            }
        };
        let op = match self.peek().cloned() {
            Some((opos, Tok::Op(o))) => {
                self.pos += 1;
                match COMPARISONS.iter().find(|(n, _)| *n == o) {
                    Some((_, op)) => *op,
                    None => return Err(FilterError::BadOperator { pos: opos, op: o }),
                }
            }
            Some((opos, other)) => {
                return Err(FilterError::Syntax {
                    pos: opos,
                    what: format!(
                        "expected a comparison operator after {property}, found {}.",
                        describe(&other)
                    ),
                });
            }
            None => {
                return Err(FilterError::Syntax {
                    pos: self.end,
                    what: format!("a comparison operator is missing after {property}."),
                });
            }
        };
        let (value_pos, value) = match self.peek().cloned() {
            Some((vpos, t)) => {
                self.pos += 1;
                let v = match t {
                    Tok::Str(s) | Tok::Word(s) => Lit::Str(s),
                    Tok::Num(n) => Lit::Num(n),
                    Tok::Var(v) => match v.to_ascii_lowercase().as_str() {
                        "true" => Lit::Bool(true),
                        "false" => Lit::Bool(false),
                        "null" => Lit::Null,
                        _ => {
                            return Err(FilterError::Syntax {
                                pos: vpos,
                                what: format!(
                                    "the variable ${v} can't be used in a filter; write its value."
                                ),
                            });
                        }
                    },
                    other => {
                        return Err(FilterError::Syntax {
                            pos: vpos,
                            what: format!("expected a value, found {}.", describe(&other)),
                        });
                    }
                };
                (vpos, v)
            }
            None => {
                return Err(FilterError::Syntax {
                    pos: self.end,
                    what: "a value is missing at the end of the filter.".into(),
                });
            }
        };
        Ok(Filter::Cmp {
            property,
            pos,
            op,
            value,
            value_pos,
        })
    }
}

fn describe(t: &Tok) -> String {
    match t {
        Tok::Op(o) => format!("'-{o}'"),
        Tok::Word(w) => format!("'{w}'"),
        Tok::Str(s) => format!("the string \"{s}\""),
        Tok::Num(n) => format!("the number {n}"),
        Tok::Var(v) => format!("'${v}'"),
        Tok::LParen => "'('".into(),
        Tok::RParen => "')'".into(),
    }
}

impl Filter {
    /// Parses an OPATH filter (`-Filter`): properties are bare names.
    pub fn parse(text: &str) -> Result<Filter, FilterError> {
        parse(text, false)
    }

    /// Parses a Where-Object script block: properties are `$_.Name`.
    pub fn parse_where(text: &str) -> Result<Filter, FilterError> {
        parse(text, true)
    }

    /// Checks every property against the names a record type has, before anything runs.
    pub fn check(&self, names: &[&'static str]) -> Result<(), FilterError> {
        let schema: Vec<(&'static str, Kind)> = names.iter().map(|n| (*n, Kind::Str)).collect();
        self.check_schema(&schema)
    }

    /// Checks the properties and that each value converts to its property's type, so a bad
    /// value is refused even when no row would have been compared with it.
    pub fn check_schema(&self, schema: &[(&'static str, Kind)]) -> Result<(), FilterError> {
        match self {
            Filter::Cmp {
                property,
                pos,
                op,
                value,
                value_pos,
            } => {
                let Some((_, kind)) = schema
                    .iter()
                    .find(|(n, _)| n.eq_ignore_ascii_case(property))
                else {
                    return Err(FilterError::UnknownProperty {
                        pos: *pos,
                        name: property.clone(),
                        valid: schema
                            .iter()
                            .map(|(n, _)| *n)
                            .collect::<Vec<_>>()
                            .join(", "),
                    });
                };
                let bad = |why: String| FilterError::BadValue {
                    pos: *value_pos,
                    property: property.clone(),
                    value: lit_text(value),
                    why,
                };
                let probe = match kind {
                    Kind::Str => return Ok(()),
                    Kind::Num => FValue::Num(0.0),
                    Kind::Date => FValue::Date(OffsetDateTime::UNIX_EPOCH),
                    Kind::Span => FValue::Span(Duration::ZERO),
                    Kind::Enum(values) => {
                        if let (CmpOp::Eq | CmpOp::Ne, Lit::Str(v)) = (op, value)
                            && !values.iter().any(|x| x.eq_ignore_ascii_case(v))
                        {
                            return Err(bad(format!("valid values are: {}", values.join(", "))));
                        }
                        return Ok(());
                    }
                };
                compare(&probe, *op, value)
                    .map(|_| ())
                    .map_err(|w| bad(w.into()))
            }
            Filter::And(a, b) | Filter::Or(a, b) => {
                a.check_schema(schema)?;
                b.check_schema(schema)
            }
            Filter::Not(a) => a.check_schema(schema),
            Filter::Const(_) => Ok(()),
        }
    }

    pub fn matches(&self, r: &dyn Record) -> Result<bool, FilterError> {
        Ok(match self {
            Filter::Const(b) => *b,
            Filter::Not(a) => !a.matches(r)?,
            Filter::And(a, b) => a.matches(r)? && b.matches(r)?,
            Filter::Or(a, b) => a.matches(r)? || b.matches(r)?,
            Filter::Cmp {
                property,
                pos,
                op,
                value,
                value_pos,
            } => {
                if !r
                    .property_names()
                    .iter()
                    .any(|n| n.eq_ignore_ascii_case(property))
                {
                    return Err(FilterError::UnknownProperty {
                        pos: *pos,
                        name: property.clone(),
                        valid: r.property_names().join(", "),
                    });
                }
                let left = r.property(property).unwrap_or(FValue::Null);
                compare(&left, *op, value).map_err(|why| FilterError::BadValue {
                    pos: *value_pos,
                    property: property.clone(),
                    value: lit_text(value),
                    why: why.into(),
                })?
            }
        })
    }
}

fn parse(text: &str, dollar_underscore: bool) -> Result<Filter, FilterError> {
    let toks = lex(text)?;
    if toks.is_empty() {
        return Err(FilterError::Empty);
    }
    let mut p = Parser {
        toks,
        pos: 0,
        end: text.chars().count(),
        dollar_underscore,
    };
    let f = p.or()?;
    if let Some((pos, t)) = p.peek().cloned() {
        return Err(match t {
            Tok::Op(op) if !["and", "or", "not"].contains(&op.as_str()) => {
                FilterError::BadOperator { pos, op }
            }
            other => FilterError::Syntax {
                pos,
                what: format!(
                    "unexpected {}; join conditions with -and or -or.",
                    describe(&other)
                ),
            },
        });
    }
    Ok(f)
}

fn lit_text(l: &Lit) -> String {
    match l {
        Lit::Str(s) => s.clone(),
        Lit::Num(n) => n.to_string(),
        Lit::Bool(b) => format!("${b}"),
        Lit::Null => "$null".into(),
    }
}

/// A TimeSpan as PowerShell writes it: `[d.]hh:mm[:ss]`.
pub fn parse_timespan(s: &str) -> Option<Duration> {
    let s = s.trim();
    let (neg, s) = match s.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, s),
    };
    let (days, clock) = match s.split_once('.') {
        Some((d, c)) if c.contains(':') => (d.parse::<i64>().ok()?, c),
        _ => (0, s),
    };
    let parts: Vec<&str> = clock.split(':').collect();
    if !(2..=3).contains(&parts.len()) {
        return None;
    }
    let h: i64 = parts[0].parse().ok()?;
    let m: i64 = parts[1].parse().ok()?;
    let sec: f64 = match parts.get(2) {
        Some(x) => x.parse().ok()?,
        None => 0.0,
    };
    if h > 23 || m > 59 || !(0.0..60.0).contains(&sec) {
        return None;
    }
    let secs = days.checked_mul(86400)?.checked_add(h * 3600 + m * 60)?;
    let d = Duration::seconds(secs) + Duration::seconds_f64(sec);
    Some(if neg { -d } else { d })
}

/// Compares as PowerShell does: the right operand converted to the left one's type, strings
/// case-insensitively; `$null` equals only `$null` and orders below everything.
fn compare(left: &FValue, op: CmpOp, right: &Lit) -> Result<bool, &'static str> {
    use std::cmp::Ordering;
    if matches!(op, CmpOp::Like | CmpOp::NotLike) {
        let text = match left {
            FValue::Null => String::new(),
            other => value_text(other),
        };
        let pat = lit_text_plain(right);
        let m = wildcard(&pat.to_lowercase(), &text.to_lowercase());
        return Ok(m == (op == CmpOp::Like));
    }
    let ord: Option<Ordering> = match (left, right) {
        (FValue::Null, Lit::Null) => Some(Ordering::Equal),
        (FValue::Null, _) | (_, Lit::Null) => None,
        (FValue::Str(l), r) => Some(l.to_lowercase().cmp(&lit_text_plain(r).to_lowercase())),
        (FValue::Num(l), Lit::Num(r)) => l.partial_cmp(r),
        (FValue::Num(l), Lit::Str(s)) => {
            let r = parse_number(s.trim()).ok_or("it is not a number")?;
            l.partial_cmp(&r)
        }
        (FValue::Num(l), Lit::Bool(b)) => l.partial_cmp(&f64::from(u8::from(*b))),
        (FValue::Bool(l), r) => Some(l.cmp(&lit_truth(r))),
        (FValue::Date(l), Lit::Str(s)) => {
            let r = crate::shell::queue::parse_datetime(s).ok_or(
                "it is not a date; write one such as \"1/25/2019 10:00 AM\" or 2019-01-25T10:00:00Z",
            )?;
            Some(l.cmp(&r))
        }
        (FValue::Date(_), _) => return Err("it is not a date"),
        (FValue::Span(l), Lit::Str(s)) => {
            let r =
                parse_timespan(s).ok_or("it is not a TimeSpan; write one such as 1.02:30:00")?;
            Some(l.cmp(&r))
        }
        // PowerShell reads a bare number as ticks, which is more likely a mistake here.
        (FValue::Span(_), _) => return Err("it is not a TimeSpan; write one such as 1.02:30:00"),
    };
    Ok(match op {
        CmpOp::Eq => ord == Some(Ordering::Equal),
        CmpOp::Ne => ord != Some(Ordering::Equal),
        CmpOp::Gt => ord == Some(Ordering::Greater),
        CmpOp::Ge => matches!(ord, Some(Ordering::Greater | Ordering::Equal)),
        CmpOp::Lt => ord == Some(Ordering::Less),
        CmpOp::Le => matches!(ord, Some(Ordering::Less | Ordering::Equal)),
        CmpOp::Like | CmpOp::NotLike => unreachable!("handled above"),
    })
}

fn lit_truth(l: &Lit) -> bool {
    match l {
        Lit::Bool(b) => *b,
        Lit::Null => false,
        Lit::Num(n) => *n != 0.0,
        Lit::Str(s) => !s.is_empty() && !s.eq_ignore_ascii_case("false"),
    }
}

fn lit_text_plain(l: &Lit) -> String {
    match l {
        Lit::Str(s) => s.clone(),
        Lit::Num(n) => n.to_string(),
        Lit::Bool(b) => if *b { "True" } else { "False" }.into(),
        Lit::Null => String::new(),
    }
}

fn value_text(v: &FValue) -> String {
    match v {
        FValue::Str(s) => s.clone(),
        FValue::Num(n) => n.to_string(),
        FValue::Date(d) => crate::shell::format::datetime(*d),
        FValue::Span(d) => d.to_string(),
        FValue::Bool(b) => if *b { "True" } else { "False" }.into(),
        FValue::Null => String::new(),
    }
}

#[cfg(test)]
#[path = "filter_tests.rs"]
mod tests;
