//! A property table's entries as form inputs, and a posted form back into an operation's values.
//! The type of each entry picks its input: text, checkbox, a select for an enumeration, a
//! textarea (one value a line) for a list, checkboxes for a set of flags; TimeSpans are written
//! `d.hh:mm:ss` and sizes `10MB` or `unlimited`, as the shell takes them.

use std::collections::HashMap;

use super::FormData;
use super::view::{FieldView, Opt};
use crate::ops::OpError;
use crate::ops::props::{Kind, Object, Prop, Value, Values, Verb, display};
use crate::shell::bind::{byte_quantity, timespan};
use crate::shell::parse::format_timespan;

/// Messages by field name; `""` holds one that names no field on the page.
#[derive(Debug, Default)]
pub struct Errors(pub HashMap<String, String>);

impl Errors {
    pub fn one(name: &str, message: impl Into<String>) -> Errors {
        let mut e = Errors::default();
        e.0.insert(name.to_string(), message.into());
        e
    }
    /// An operation's error beside the field it names, when that field is on the page.
    pub fn from_op(e: &OpError, on_page: &[FieldView]) -> Errors {
        let field = e
            .param()
            .filter(|p| on_page.iter().any(|f| f.name.eq_ignore_ascii_case(p)))
            .map(|p| {
                on_page
                    .iter()
                    .find(|f| f.name.eq_ignore_ascii_case(p))
                    .map(|f| f.name.clone())
                    .unwrap_or_else(|| p.to_string())
            });
        Errors::one(field.as_deref().unwrap_or(""), e.to_string())
    }
    pub fn general(&self) -> Option<String> {
        self.0.get("").cloned()
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    pub fn apply(&self, fields: &mut [FieldView]) {
        for f in fields {
            f.error = self.0.get(&f.name).cloned();
        }
    }
}

/// The text an input shows for a value, which reads back as the same value.
pub fn input_text(kind: Kind, v: &Value) -> String {
    match (kind, v) {
        (_, Value::Null) => String::new(),
        (_, Value::List(l)) => l.join("\n"),
        (_, Value::Span(s)) => format_timespan(*s),
        (_, Value::Unlimited) => "unlimited".into(),
        (_, v) => display(kind, v),
    }
}

fn hint(kind: Kind) -> &'static str {
    match kind {
        Kind::List => "One value per line.",
        Kind::TimeSpan => "d.hh:mm:ss",
        Kind::ByteSize => "For example 10MB, 512KB or unlimited.",
        Kind::Unlimited => "A number or unlimited.",
        _ => "",
    }
}

fn options(allowed: &[&str], chosen: &[String]) -> Vec<Opt> {
    allowed
        .iter()
        .map(|a| Opt {
            value: a.to_string(),
            selected: chosen.iter().any(|c| c.eq_ignore_ascii_case(a)),
        })
        .collect()
}

fn editable<T>(p: &Prop<T>) -> bool {
    p.set.is_some() && p.on_set != Verb::No && !matches!(p.kind, Kind::Credential | Kind::Identity)
}

/// One property as an input showing `v` (or what `form` posted, after a refusal).
pub fn field<T>(p: &Prop<T>, v: &Value, form: Option<&FormData>) -> FieldView {
    let mut f = FieldView {
        name: p.name.into(),
        label: p.name.into(),
        input: "text",
        value: input_text(p.kind, v),
        checked: false,
        options: vec![],
        error: None,
        hint: hint(p.kind).into(),
        required: false,
        group: None,
    };
    if !editable(p) {
        f.input = "readonly";
        f.value = display(p.kind, v);
        f.hint = String::new();
        return f;
    }
    let posted = form.and_then(|d| d.one(p.name));
    match p.kind {
        Kind::Bool => {
            f.input = "checkbox";
            f.checked = match form {
                Some(d) => d.one(p.name).is_some(),
                None => *v == Value::Bool(true),
            };
        }
        Kind::Enum(allowed) => {
            f.input = "select";
            let chosen = posted.map(str::to_string).unwrap_or(f.value.clone());
            f.options = options(allowed, &[chosen]);
        }
        Kind::Flags(allowed) => {
            f.input = "flags";
            let chosen = match (form, v) {
                (Some(d), _) => d.all(p.name),
                (None, Value::List(l)) => l.clone(),
                _ => vec![],
            };
            f.options = options(allowed, &chosen);
        }
        Kind::List => {
            f.input = "textarea";
            if let Some(t) = posted {
                f.value = t.to_string();
            }
        }
        _ => {
            if let Some(t) = posted {
                f.value = t.to_string();
            }
        }
    }
    f
}

/// The inputs of one tab of `o`'s Properties dialog.
pub fn tab_fields<T>(o: &Object<T>, t: &T, tab: &str, form: Option<&FormData>) -> Vec<FieldView> {
    let names = o
        .tabs
        .iter()
        .find(|(n, _)| *n == tab)
        .map(|(_, names)| *names)
        .unwrap_or(&[]);
    names
        .iter()
        .filter_map(|n| o.prop(n))
        .map(|p| {
            let v = p.get.map(|g| g(t)).unwrap_or(Value::Null);
            let mut f = field(p, &v, form);
            if let Some(l) = super::labels::label(o.noun, p.name) {
                f.label = l.into();
            }
            not_enforced(&mut f);
            f
        })
        .collect()
}

/// A stored-but-ignored property says so beside its input, as the shell says so in its views
/// and warnings: an admin must not believe it acts.
fn not_enforced(f: &mut FieldView) {
    if let Some(reason) = crate::shell::unenforced::field_caveat(&f.name) {
        f.hint = format!("Saved but not enforced: {reason}.");
    }
}

/// A posted text as a value of `kind`; the message says what was wrong.
pub fn parse(kind: Kind, text: &str) -> Result<Value, String> {
    let t = text.trim();
    Ok(match kind {
        Kind::List => Value::List(
            text.lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .map(str::to_string)
                .collect(),
        ),
        Kind::Int => Value::Int(whole(t)?),
        Kind::Unlimited if t.eq_ignore_ascii_case("unlimited") => Value::Unlimited,
        Kind::Unlimited => Value::Int(whole(t)?),
        Kind::TimeSpan if t.is_empty() => Value::Null,
        Kind::TimeSpan => Value::Span(timespan(t).map_err(|e| e.to_string())?),
        Kind::ByteSize => match byte_quantity(t).map_err(|e| e.to_string())? {
            Some(n) => Value::Bytes(n),
            None => Value::Unlimited,
        },
        Kind::Bool => Value::Bool(!t.is_empty()),
        _ => Value::Str(t.to_string()),
    })
}

/// A whole number, refused when it has a fraction, a sign it cannot have or too many digits.
pub fn whole(t: &str) -> Result<i64, String> {
    let digits = t.strip_prefix('-').unwrap_or(t);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("'{t}' is not a whole number."));
    }
    t.parse()
        .map_err(|_| format!("'{t}' is too large a number."))
}

/// The values a tab's form changes: only the inputs whose posted value differs from the
/// object's, so saving an untouched tab changes nothing. Every input is checked before any
/// value is returned.
pub fn tab_values<T>(o: &Object<T>, t: &T, tab: &str, form: &FormData) -> Result<Values, Errors> {
    let mut values = Values::default();
    let mut errors = Errors::default();
    let names = o
        .tabs
        .iter()
        .find(|(n, _)| *n == tab)
        .map(|(_, names)| *names)
        .unwrap_or(&[]);
    for p in names.iter().filter_map(|n| o.prop(n)) {
        if !editable(p) {
            continue;
        }
        let current = p.get.map(|g| g(t)).unwrap_or(Value::Null);
        let new = match p.kind {
            Kind::Bool => Value::Bool(form.one(p.name).is_some()),
            Kind::Flags(_) => Value::List(form.all(p.name)),
            _ => {
                let Some(text) = form.one(p.name) else {
                    continue;
                };
                if text.trim() == input_text(p.kind, &current).trim() {
                    continue;
                }
                match parse(p.kind, text) {
                    Ok(v) => v,
                    Err(m) => {
                        errors.0.insert(p.name.into(), m);
                        continue;
                    }
                }
            }
        };
        if new != current {
            values.0.push((p.name, new));
        }
    }
    if errors.is_empty() {
        Ok(values)
    } else {
        Err(errors)
    }
}

/// The inputs of a New form: the verb's parameters (switches aside), empty, mandatory ones
/// marked; a boolean is a choice of True, False or the default.
pub fn new_fields(
    params: &[(&'static str, Kind, bool, bool)],
    defaults: &[(&str, String)],
    form: Option<&FormData>,
) -> Vec<FieldView> {
    params
        .iter()
        .filter(|(_, k, _, _)| !matches!(k, Kind::Switch | Kind::Credential))
        .map(|(name, kind, mandatory, _)| {
            let default = defaults
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.clone())
                .unwrap_or_default();
            let posted = form.and_then(|d| d.one(name)).map(str::to_string);
            let value = posted.unwrap_or(default);
            let (input, options) = match kind {
                Kind::Bool => (
                    "select",
                    options(&["", "True", "False"], std::slice::from_ref(&value)),
                ),
                Kind::Enum(a) => {
                    let mut all = vec![""];
                    all.extend_from_slice(a);
                    ("select", options(&all, std::slice::from_ref(&value)))
                }
                Kind::Flags(a) => (
                    "flags",
                    options(a, &form.map(|d| d.all(name)).unwrap_or_default()),
                ),
                Kind::List => ("textarea", vec![]),
                _ => ("text", vec![]),
            };
            let mut f = FieldView {
                name: name.to_string(),
                label: name.to_string(),
                input,
                value,
                checked: false,
                options,
                error: None,
                hint: hint(*kind).into(),
                required: *mandatory,
                group: None,
            };
            not_enforced(&mut f);
            f
        })
        .collect()
}

/// The values a New form gives: every input filled in.
pub fn new_values(
    params: &[(&'static str, Kind, bool, bool)],
    form: &FormData,
) -> Result<Values, Errors> {
    let mut values = Values::default();
    let mut errors = Errors::default();
    for (name, kind, _, _) in params {
        let v = match kind {
            Kind::Switch | Kind::Credential => continue,
            Kind::Flags(_) => {
                let l = form.all(name);
                if l.is_empty() {
                    continue;
                }
                Value::List(l)
            }
            Kind::Bool => match form.one(name) {
                Some("True") => Value::Bool(true),
                Some("False") => Value::Bool(false),
                _ => continue,
            },
            _ => {
                let text = form.one(name).unwrap_or("");
                if text.trim().is_empty() {
                    continue;
                }
                match parse(*kind, text) {
                    Ok(v) => v,
                    Err(m) => {
                        errors.0.insert(name.to_string(), m);
                        continue;
                    }
                }
            }
        };
        values.0.push((name, v));
    }
    if errors.is_empty() {
        Ok(values)
    } else {
        Err(errors)
    }
}
