//! Parameter binding: a command's words against a cmdlet's parameter table, as PowerShell binds
//! them (exact names, unambiguous prefixes, switches, positions, pipeline input to -Identity).

use super::parse::{self, Element};
use super::{Obj, ShellError, Val};

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Ty {
    Switch,
    Bool,
    Str,
    List,
    /// A whole number; `unlimited` gives None where the parameter allows it.
    Int,
    /// A TimeSpan, held in whole seconds.
    Span,
    /// A ByteQuantifiedSize; `unlimited` gives None.
    Bytes,
    Cred,
    Enum(&'static [&'static str]),
    EnumList(&'static [&'static str]),
    /// An object from the pipeline or a variable, or a name.
    Identity,
    /// A real Exchange parameter hubgate does not implement.
    Unsupported,
}

impl Ty {
    fn type_name(self) -> &'static str {
        match self {
            Ty::Switch => "System.Management.Automation.SwitchParameter",
            Ty::Bool => "System.Boolean",
            Ty::Str | Ty::Identity => "System.String",
            Ty::List => "Microsoft.Exchange.Data.MultiValuedProperty",
            Ty::Int => "Microsoft.Exchange.Data.Unlimited[System.Int32]",
            Ty::Span => "Microsoft.Exchange.Data.EnhancedTimeSpan",
            Ty::Bytes => "Microsoft.Exchange.Data.ByteQuantifiedSize",
            Ty::Cred => "System.Management.Automation.PSCredential",
            Ty::Enum(_) | Ty::EnumList(_) => "System.Enum",
            Ty::Unsupported => "System.Object",
        }
    }
}

#[derive(Clone, Copy, Debug)]
pub struct Param {
    pub name: &'static str,
    pub ty: Ty,
    pub mandatory: bool,
    pub position: Option<u8>,
}

pub const fn p(name: &'static str, ty: Ty) -> Param {
    Param {
        name,
        ty,
        mandatory: false,
        position: None,
    }
}
/// A mandatory parameter.
pub const fn m(name: &'static str, ty: Ty) -> Param {
    Param {
        name,
        ty,
        mandatory: true,
        position: None,
    }
}
/// A parameter that also binds from position `pos`.
pub const fn at(param: Param, pos: u8) -> Param {
    Param {
        position: Some(pos),
        ..param
    }
}

/// Every cmdlet takes these.
pub const COMMON: &[Param] = &[
    p("WhatIf", Ty::Switch),
    p("Confirm", Ty::Switch),
    p("Verbose", Ty::Switch),
    p("ErrorAction", Ty::Str),
    p("DomainController", Ty::Unsupported),
];

// A handful of these live for one statement; boxing the objects would buy nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug)]
pub enum Arg {
    Bool(bool),
    Str(String),
    List(Vec<String>),
    Int(Option<i64>),
    Span(i64),
    Bytes(Option<i64>),
    Cred(String, String),
    Obj(Obj),
    Null,
}

#[derive(Debug, Default)]
pub struct Bound {
    pub args: Vec<(&'static str, Arg)>,
}

impl Bound {
    pub fn get(&self, name: &str) -> Option<&Arg> {
        self.args
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, a)| a)
    }
    pub fn has(&self, name: &str) -> bool {
        self.get(name).is_some()
    }
    pub fn switch(&self, name: &str) -> bool {
        matches!(self.get(name), Some(Arg::Bool(true)))
    }
    pub fn str(&self, name: &str) -> Option<String> {
        match self.get(name) {
            Some(Arg::Str(s)) => Some(s.clone()),
            _ => None,
        }
    }

    /// -Identity, as text `text` parses or as an object piped in that `piped` takes for one of
    /// the cmdlet's own; any other object is the wrong pipeline input for `cmdlet`.
    pub fn identity<T>(
        &self,
        cmdlet: &str,
        text: impl FnOnce(&str) -> Result<T, ShellError>,
        piped: impl FnOnce(&Obj) -> Option<T>,
    ) -> Result<Option<T>, ShellError> {
        let wrong = || ShellError::BadPipelineInput(cmdlet.to_string());
        match self.get("Identity") {
            None => Ok(None),
            Some(Arg::Str(s)) => text(s).map(Some),
            Some(Arg::Obj(o)) => piped(o).map(Some).ok_or_else(wrong),
            Some(_) => Err(wrong()),
        }
    }

    /// `identity` for a cmdlet that cannot act without one (Remove-).
    pub fn required_identity<T>(
        &self,
        cmdlet: &str,
        text: impl FnOnce(&str) -> Result<T, ShellError>,
        piped: impl FnOnce(&Obj) -> Option<T>,
    ) -> Result<T, ShellError> {
        self.identity(cmdlet, text, piped)?
            .ok_or_else(|| ShellError::Op(crate::ops::OpError::MissingMandatory(vec!["Identity"])))
    }
}

fn resolve<'a>(params: &'a [&'a Param], name: &str) -> Result<&'a Param, ShellError> {
    if let Some(p) = params.iter().find(|p| p.name.eq_ignore_ascii_case(name)) {
        return Ok(p);
    }
    let lower = name.to_ascii_lowercase();
    let hits: Vec<&&Param> = params
        .iter()
        .filter(|p| p.name.to_ascii_lowercase().starts_with(&lower))
        .collect();
    match hits.len() {
        0 => Err(ShellError::UnknownParameter(name.to_string())),
        1 => Ok(hits[0]),
        _ => Err(ShellError::AmbiguousParameter {
            name: name.to_string(),
            matches: hits
                .iter()
                .map(|p| format!("-{}", p.name))
                .collect::<Vec<_>>()
                .join(" "),
        }),
    }
}

/// Binds `elements` to `cmdlet`'s parameters; `input` is the pipeline object, bound to -Identity.
pub fn bind(
    cmdlet: &str,
    own: &[Param],
    elements: &[Element],
    input: Option<&Obj>,
    eval: &dyn Fn(&parse::Value) -> Result<Val, ShellError>,
) -> Result<Bound, ShellError> {
    let params: Vec<&Param> = own.iter().chain(COMMON.iter()).collect();
    let mut raw: Vec<(&Param, Option<Val>)> = Vec::new();
    let mut positional: Vec<&parse::Value> = Vec::new();
    let mut i = 0;
    while i < elements.len() {
        match &elements[i] {
            Element::Param { name, attached } => {
                let param = resolve(&params, name)?;
                if param.ty == Ty::Unsupported {
                    return Err(ShellError::Unsupported {
                        cmdlet: cmdlet.to_string(),
                        param: param.name.to_string(),
                    });
                }
                if raw.iter().any(|(p, _)| p.name == param.name) {
                    return Err(ShellError::DuplicateParameter(param.name.to_string()));
                }
                let value = match (attached, param.ty) {
                    (Some(v), _) => Some(eval(v)?),
                    (None, Ty::Switch) => None,
                    (None, ty) => match elements.get(i + 1) {
                        Some(Element::Value(v)) => {
                            i += 1;
                            Some(eval(v)?)
                        }
                        _ => {
                            return Err(ShellError::MissingArgument {
                                name: param.name.to_string(),
                                ty: ty.type_name(),
                            });
                        }
                    },
                };
                raw.push((param, value));
            }
            Element::Value(v) => positional.push(v),
        }
        i += 1;
    }
    let mut by_position: Vec<&Param> = params
        .iter()
        .filter(|p| p.position.is_some())
        .copied()
        .collect();
    by_position.sort_by_key(|p| p.position);
    let named: Vec<&str> = raw.iter().map(|(r, _)| r.name).collect();
    let mut free = by_position.into_iter().filter(|p| !named.contains(&p.name));
    for v in positional {
        let Some(param) = free.next() else {
            let text = match v {
                parse::Value::Str(s, _) => s.clone(),
                other => format!("{other:?}"),
            };
            return Err(ShellError::ExtraPositional(text));
        };
        raw.push((param, Some(eval(v)?)));
    }
    if let Some(obj) = input {
        match params.iter().find(|p| p.ty == Ty::Identity) {
            Some(idp) if !raw.iter().any(|(r, _)| r.name == idp.name) => {
                raw.push((idp, Some(Val::Obj(obj.clone()))))
            }
            _ => return Err(ShellError::BadPipelineInput(cmdlet.to_string())),
        }
    }
    let missing: Vec<&str> = params
        .iter()
        .filter(|p| p.mandatory && !raw.iter().any(|(r, _)| r.name == p.name))
        .map(|p| p.name)
        .collect();
    if !missing.is_empty() {
        return Err(ShellError::MissingMandatory(missing.join(", ")));
    }
    let mut bound = Bound::default();
    for (param, value) in raw {
        bound.args.push((param.name, convert(param, value)?));
    }
    Ok(bound)
}

fn text_of(v: &Val) -> String {
    match v {
        Val::Str(s) => s.clone(),
        Val::Bool(b) => if *b { "True" } else { "False" }.into(),
        Val::Null => String::new(),
        Val::List(items) => items.iter().map(text_of).collect::<Vec<_>>().join(", "),
        Val::Obj(o) => super::format::identity(o),
    }
}

fn items(v: Val) -> Vec<Val> {
    match v {
        Val::List(items) => items,
        Val::Null => vec![],
        other => vec![other],
    }
}

fn convert(param: &Param, value: Option<Val>) -> Result<Arg, ShellError> {
    let bad = |value: &Val, hint: String| ShellError::BadValue {
        param: param.name.to_string(),
        value: text_of(value),
        ty: param.ty.type_name(),
        hint,
    };
    let Some(value) = value else {
        return Ok(Arg::Bool(true));
    };
    if matches!(value, Val::Null) && !matches!(param.ty, Ty::List | Ty::EnumList(_)) {
        return Ok(Arg::Null);
    }
    let enum_match = |allowed: &'static [&'static str], v: &Val| -> Result<String, ShellError> {
        let t = text_of(v);
        allowed
            .iter()
            .find(|a| a.eq_ignore_ascii_case(t.trim()))
            .map(|a| a.to_string())
            .ok_or_else(|| {
                bad(
                    v,
                    format!(
                        "Specify one of the following values and try again: {}.",
                        allowed.join(", ")
                    ),
                )
            })
    };
    Ok(match param.ty {
        Ty::Switch | Ty::Bool => match &value {
            Val::Bool(b) => Arg::Bool(*b),
            Val::Str(s) if s.eq_ignore_ascii_case("true") || s == "1" => Arg::Bool(true),
            Val::Str(s) if s.eq_ignore_ascii_case("false") || s == "0" => Arg::Bool(false),
            v => return Err(bad(v, "Use $true or $false.".into())),
        },
        Ty::Str => match &value {
            Val::List(_) | Val::Obj(_) => {
                return Err(bad(&value, "A single value is expected.".into()));
            }
            v => Arg::Str(text_of(v)),
        },
        Ty::List => Arg::List(
            items(value)
                .iter()
                .map(text_of)
                .filter(|s| !s.is_empty())
                .collect(),
        ),
        Ty::Int => {
            let t = text_of(&value);
            if t.eq_ignore_ascii_case("unlimited") {
                Arg::Int(None)
            } else {
                Arg::Int(Some(t.trim().parse().map_err(|_| {
                    bad(&value, "Specify a whole number or unlimited.".into())
                })?))
            }
        }
        Ty::Span => Arg::Span(timespan(&text_of(&value)).map_err(|e| bad(&value, e.to_string()))?),
        Ty::Bytes => {
            Arg::Bytes(byte_quantity(&text_of(&value)).map_err(|e| bad(&value, e.to_string()))?)
        }
        Ty::Cred => match &value {
            Val::Obj(Obj::Credential { user, password }) => {
                Arg::Cred(user.clone(), password.clone())
            }
            v => return Err(bad(v, "Use a credential from Get-Credential.".into())),
        },
        Ty::Enum(allowed) => Arg::Str(enum_match(allowed, &value)?),
        Ty::EnumList(allowed) => Arg::List(
            items(value)
                .iter()
                .map(|v| enum_match(allowed, v))
                .collect::<Result<_, _>>()?,
        ),
        Ty::Identity => match value {
            Val::Obj(o) => Arg::Obj(o),
            Val::List(mut l) if l.len() == 1 => match l.remove(0) {
                Val::Obj(o) => Arg::Obj(o),
                v => Arg::Str(text_of(&v)),
            },
            Val::List(_) => return Err(bad(&value, "A single identity is expected.".into())),
            v => Arg::Str(text_of(&v)),
        },
        Ty::Unsupported => Arg::Null,
    })
}

/// .NET's TimeSpan.MaxValue (10675199.02:48:05.4775807) in whole seconds. Exchange refuses a
/// longer TimeSpan, and keeping to it leaves room for every later deadline computed from one.
pub const MAX_TIMESPAN_SECS: i64 = 922_337_203_685;

/// Why a TimeSpan or ByteQuantifiedSize argument was refused; the text is the hint shown after
/// "Cannot convert value ...".
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum QuantityError {
    #[error("Specify a TimeSpan as d.hh:mm:ss, hh:mm:ss or hh:mm (e.g. 3.00:00:00, 64:00:00).")]
    SpanFormat,
    #[error("The TimeSpan is too long: the longest is 10675199.02:48:05.")]
    SpanTooLong,
    #[error("Specify a size such as 10MB, \"25 MB\", 512KB, a number of bytes, or unlimited.")]
    BytesFormat,
    #[error("The size is too large: the largest is 8388607TB (9,223,372,036,854,775,807 bytes).")]
    BytesTooLarge,
}

fn all_digits(t: &str) -> bool {
    !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit())
}

/// `d.hh:mm:ss`, `hh:mm:ss`, `hh:mm`, with optional fractional seconds (dropped): whole seconds.
/// Every step is checked: a day count that would wrap (`144115188075855872.01:00:00`) is refused,
/// never taken modulo 2^64.
pub fn timespan(text: &str) -> Result<i64, QuantityError> {
    use QuantityError::{SpanFormat, SpanTooLong};
    let number = |t: &str| -> Result<i64, QuantityError> {
        if !all_digits(t) {
            return Err(SpanFormat);
        }
        // Only digits remain, so the one way to fail is a value past i64.
        t.parse().map_err(|_| SpanTooLong)
    };
    let s = text.trim();
    let (days, clock) = match s.split_once('.') {
        Some((d, rest)) if rest.contains(':') && !d.contains(':') => (Some(d), rest),
        _ => (None, s),
    };
    let parts: Vec<&str> = clock.split(':').collect();
    if !(2..=3).contains(&parts.len()) {
        return Err(SpanFormat);
    }
    let seconds = match parts.get(2) {
        Some(p) => {
            let (whole, fraction) = p.split_once('.').unwrap_or((p, "0"));
            if !all_digits(fraction) || fraction.len() > 7 {
                return Err(SpanFormat);
            }
            number(whole)?
        }
        None => 0,
    };
    let d = days.map(number).transpose()?;
    let h = number(parts[0])?;
    let m = number(parts[1])?;
    if m >= 60 || seconds >= 60 || (d.is_some() && h > 23) {
        return Err(SpanFormat);
    }
    d.unwrap_or(0)
        .checked_mul(86_400)
        .and_then(|t| t.checked_add(h.checked_mul(3_600)?))
        .and_then(|t| t.checked_add(m * 60 + seconds))
        .filter(|t| *t <= MAX_TIMESPAN_SECS)
        .ok_or(SpanTooLong)
}

/// `10MB`, `"25 MB"`, `512KB`, `65536`, `1.5GB`, `10 MB (10,485,760 bytes)` as Exchange prints
/// it, or `unlimited` (None). Decimals are exact (no floating point, so no `NaN` or `inf`), and
/// a value past what an i64 holds is refused rather than saturated.
pub fn byte_quantity(text: &str) -> Result<Option<i64>, QuantityError> {
    use QuantityError::{BytesFormat, BytesTooLarge};
    let t = text.trim();
    if t.eq_ignore_ascii_case("unlimited") {
        return Ok(None);
    }
    let t = t.split(" (").next().unwrap_or(t).replace(',', "");
    let upper = t.to_ascii_uppercase();
    const UNITS: [(&str, u128); 5] = [
        ("TB", 1 << 40),
        ("GB", 1 << 30),
        ("MB", 1 << 20),
        ("KB", 1 << 10),
        ("B", 1),
    ];
    let (number, unit) = UNITS
        .iter()
        .find_map(|(u, m)| upper.strip_suffix(u).map(|n| (n.trim(), *m)))
        .unwrap_or((upper.as_str(), 1));
    let (whole, fraction) = number.split_once('.').unwrap_or((number, "0"));
    if !all_digits(whole) || !all_digits(fraction) {
        return Err(BytesFormat);
    }
    let whole: u128 = whole.parse().map_err(|_| BytesTooLarge)?;
    // Digits past the 20th change the result by far less than a byte; dropping them keeps
    // 10^digits * unit inside u128.
    let fraction = &fraction[..fraction.len().min(20)];
    let scale = 10u128.pow(fraction.len() as u32);
    let fraction: u128 = fraction.parse().map_err(|_| BytesFormat)?;
    let fraction_bytes = (fraction * unit + scale / 2) / scale;
    whole
        .checked_mul(unit)
        .and_then(|b| b.checked_add(fraction_bytes))
        .and_then(|b| i64::try_from(b).ok())
        .map(Some)
        .ok_or(BytesTooLarge)
}

#[cfg(test)]
mod tests {
    use super::*;

    const PARAMS: &[Param] = &[
        at(m("Name", Ty::Str), 0),
        p("SmartHosts", Ty::List),
        p(
            "SmartHostAuthMechanism",
            Ty::Enum(&["None", "BasicAuth", "BasicAuthRequireTLS"]),
        ),
        p("RequireTLS", Ty::Bool),
        p("Port", Ty::Int),
        p("MaxMessageSize", Ty::Bytes),
        p("MessageExpirationTimeout", Ty::Span),
        p("genericMTA", Ty::Switch),
        p("LinkedReceiveConnector", Ty::Unsupported),
    ];

    fn run(line: &str) -> Result<Bound, ShellError> {
        let st = parse::parse_line(line)?.remove(0);
        let parse::Body::Pipeline(c) = st.body else {
            panic!()
        };
        let eval = |v: &parse::Value| -> Result<Val, ShellError> {
            Ok(match v {
                parse::Value::Str(s, _) => Val::Str(s.clone()),
                parse::Value::Bool(b) => Val::Bool(*b),
                parse::Value::Null => Val::Null,
                parse::Value::Var(n) => return Err(ShellError::UnsetVariable(n.clone())),
                parse::Value::List(l) => Val::List(
                    l.iter()
                        .map(|x| match x {
                            parse::Value::Str(s, _) => Val::Str(s.clone()),
                            _ => Val::Null,
                        })
                        .collect(),
                ),
            })
        };
        bind("New-SendConnector", PARAMS, &c[0].elements, None, &eval)
    }

    #[test]
    fn binds_names_prefixes_positions_and_types() {
        let b = run("x X -smarthosts a, b -requiretls $True -Port 587 -MaxMessageSize 25MB -MessageExp 3.00:00:00 -genericMTA -SmartHostAuth basicauthrequiretls").unwrap();
        assert_eq!(b.str("Name").as_deref(), Some("X"));
        assert!(matches!(b.get("SmartHosts"), Some(Arg::List(l)) if l == &["a", "b"]));
        assert!(matches!(b.get("RequireTLS"), Some(Arg::Bool(true))));
        assert!(matches!(b.get("Port"), Some(Arg::Int(Some(587)))));
        assert!(matches!(
            b.get("MaxMessageSize"),
            Some(Arg::Bytes(Some(26214400)))
        ));
        assert!(matches!(
            b.get("MessageExpirationTimeout"),
            Some(Arg::Span(259200))
        ));
        assert!(b.switch("genericMTA"));
        assert_eq!(
            b.str("SmartHostAuthMechanism").as_deref(),
            Some("BasicAuthRequireTLS")
        );
        let b = run("x -Name:Y -genericMTA:$false -WhatIf -Confirm:$false").unwrap();
        assert!(!b.switch("genericMTA"));
        assert!(b.switch("WhatIf"));
        assert!(!b.switch("Confirm"));
    }

    #[test]
    fn binding_errors() {
        let cases = [
            (
                "x -Name a -Bogus 1",
                "A parameter cannot be found that matches parameter name 'Bogus'.",
            ),
            (
                "x -Name a -Smart b",
                "parameter name 'Smart' is ambiguous. Possible matches include: -SmartHosts -SmartHostAuthMechanism.",
            ),
            ("x -Port 25", "missing mandatory parameters: Name."),
            (
                "x -Name a -Port",
                "Missing an argument for parameter 'Port'.",
            ),
            (
                "x a b",
                "A positional parameter cannot be found that accepts argument 'b'.",
            ),
            ("x -Name a -Name b", "specified more than once"),
            (
                "x a -SmartHostAuthMechanism Kerberos",
                "Cannot convert value \"Kerberos\"",
            ),
            (
                "x a -SmartHostAuthMechanism Kerberos",
                "None, BasicAuth, BasicAuthRequireTLS.",
            ),
            ("x a -RequireTLS maybe", "Use $true or $false."),
            ("x a -MessageExpirationTimeout 3days", "d.hh:mm:ss"),
            ("x a -MaxMessageSize lots", "10MB"),
            ("x a -Port many", "whole number"),
            (
                "x a -LinkedReceiveConnector r",
                "The parameter 'LinkedReceiveConnector' of New-SendConnector is an Exchange parameter that hubgate does not support",
            ),
            ("x a -DomainController dc1", "'DomainController'"),
            ("x a -SmartHosts $nope", "'$nope' cannot be retrieved"),
        ];
        for (line, want) in cases {
            let e = run(line).unwrap_err().to_string();
            assert!(e.contains(want), "{line}: {e}");
        }
    }

    #[test]
    fn timespans() {
        use QuantityError::{SpanFormat, SpanTooLong};
        let cases = [
            ("3.00:00:00", Ok(3 * 86400)),
            ("64:00:00", Ok(64 * 3600)),
            ("00:05:00", Ok(300)),
            ("1.12:30:15", Ok(86400 + 12 * 3600 + 30 * 60 + 15)),
            ("00:00:05.500", Ok(5)),
            ("10:30", Ok(10 * 3600 + 30 * 60)),
            ("10675199.02:48:05", Ok(MAX_TIMESPAN_SECS)),
            ("10675199.02:48:05.4775807", Ok(MAX_TIMESPAN_SECS)),
            ("5", Err(SpanFormat)),
            ("1.25:00:00", Err(SpanFormat)),
            ("00:61:00", Err(SpanFormat)),
            ("abc", Err(SpanFormat)),
            ("-1.00:00:00", Err(SpanFormat)),
            ("+1:00:00", Err(SpanFormat)),
            ("00:00:05.", Err(SpanFormat)),
            ("00:00:05.x", Err(SpanFormat)),
            ("00:00:05.12345678", Err(SpanFormat)),
            // 2^57 days is 2^64 * 675 seconds: it used to wrap to exactly one hour.
            ("144115188075855872.01:00:00", Err(SpanTooLong)),
            ("10675199.02:48:06", Err(SpanTooLong)),
            ("10675200.00:00:00", Err(SpanTooLong)),
            ("106751991167301.00:00:00", Err(SpanTooLong)),
            ("99999999999999999999.00:00:00", Err(SpanTooLong)),
            ("256204778801522:00:00", Err(SpanTooLong)),
            ("2562047788015216:00:00", Err(SpanTooLong)),
            ("99999999999999999999:00", Err(SpanTooLong)),
            ("00:00:99999999999999999999", Err(SpanTooLong)),
        ];
        for (t, want) in cases {
            assert_eq!(timespan(t), want, "{t}");
        }
    }

    #[test]
    fn byte_quantities() {
        use QuantityError::{BytesFormat, BytesTooLarge};
        let cases = [
            ("10MB", Ok(Some(10 * 1024 * 1024))),
            ("25 MB", Ok(Some(25 * 1024 * 1024))),
            ("512KB", Ok(Some(512 * 1024))),
            ("65536", Ok(Some(65536))),
            ("1.5GB", Ok(Some(1536 * 1024 * 1024))),
            ("0.5KB", Ok(Some(512))),
            ("100B", Ok(Some(100))),
            ("unlimited", Ok(None)),
            ("10 MB (10,485,760 bytes)", Ok(Some(10485760))),
            ("8388607TB", Ok(Some(8388607 << 40))),
            ("9223372036854775807", Ok(Some(i64::MAX))),
            ("ten", Err(BytesFormat)),
            ("-5MB", Err(BytesFormat)),
            ("NaN", Err(BytesFormat)),
            ("inf", Err(BytesFormat)),
            ("1e3", Err(BytesFormat)),
            ("1.MB", Err(BytesFormat)),
            (".5MB", Err(BytesFormat)),
            ("MB", Err(BytesFormat)),
            ("10000000000000000TB", Err(BytesTooLarge)),
            ("8388608TB", Err(BytesTooLarge)),
            ("8388607.9999999999999TB", Err(BytesTooLarge)),
            ("9223372036854775808", Err(BytesTooLarge)),
            (
                "9999999999999999999999999999999999999999999B",
                Err(BytesTooLarge),
            ),
            ("99999999999999999999999999999.5GB", Err(BytesTooLarge)),
        ];
        for (t, want) in cases {
            assert_eq!(byte_quantity(t), want, "{t}");
        }
    }

    #[test]
    fn an_overflowing_value_names_the_parameter_and_the_limit() {
        let e = run("x a -MessageExpirationTimeout 144115188075855872.01:00:00")
            .unwrap_err()
            .to_string();
        assert!(e.contains("parameter 'MessageExpirationTimeout'"), "{e}");
        assert!(e.contains("\"144115188075855872.01:00:00\""), "{e}");
        assert!(e.contains("longest is 10675199.02:48:05"), "{e}");
        let e = run("x a -MaxMessageSize 10000000000000000TB")
            .unwrap_err()
            .to_string();
        assert!(e.contains("parameter 'MaxMessageSize'"), "{e}");
        assert!(e.contains("largest is 8388607TB"), "{e}");
    }
}
