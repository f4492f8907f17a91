//! The server's Limits tab as the EMC draws it: retry intervals in minutes and seconds, expiry in
//! days, the delay notice in hours, with the EMC's ranges; each converted to the TimeSpan
//! property it sets. Fractional, signed or overflowing input is refused beside its field.

use super::FormData;
use super::fields::{self, Errors};
use super::view::FieldView;
use crate::ops::props::{Kind, Value, Values};
use crate::ops::transport::SERVER;
use crate::org::TransportServer;
use crate::shell::parse::format_timespan;

struct Limit {
    group: Option<&'static str>,
    prop: &'static str,
    label: &'static str,
    /// Seconds per unit; 0 for a plain count.
    unit: i64,
    min: i64,
    max: i64,
}

const LIMITS: &[Limit] = &[
    Limit {
        group: Some("Retries"),
        prop: "OutboundConnectionFailureRetryInterval",
        label: "Outbound connection failure retry interval (minutes):",
        unit: 60,
        min: 1,
        max: 28800,
    },
    Limit {
        group: None,
        prop: "TransientFailureRetryInterval",
        label: "Transient failure retry interval (seconds):",
        unit: 1,
        min: 1,
        max: 43200,
    },
    Limit {
        group: None,
        prop: "TransientFailureRetryCount",
        label: "Transient failure retry attempts:",
        unit: 0,
        min: 0,
        max: 15,
    },
    Limit {
        group: Some("Message expiration"),
        prop: "MessageExpirationTimeout",
        label: "Maximum time since submission (days):",
        unit: 86400,
        min: 1,
        max: 90,
    },
    Limit {
        group: Some("Notifications"),
        prop: "DelayNotificationTimeout",
        label: "Notify sender when message is delayed more than (hours):",
        unit: 3600,
        min: 1,
        max: 720,
    },
];

/// The outbound connection limits, a number or unlimited (1 to 2147483647).
const CONNECTIONS: &[(&str, &str)] = &[
    (
        "MaxOutboundConnections",
        "Maximum concurrent outbound connections:",
    ),
    (
        "MaxPerDomainOutboundConnections",
        "Maximum concurrent outbound connections per domain:",
    ),
];

fn current(s: &TransportServer, prop: &str) -> Value {
    SERVER
        .prop(prop)
        .and_then(|p| p.get)
        .map(|g| g(s))
        .unwrap_or(Value::Null)
}

/// What the input shows: the value in the field's unit, or the exact TimeSpan when it is not a
/// whole number of units (set from the shell), so that an untouched field saves unchanged.
fn shown(l: &Limit, v: &Value) -> String {
    match v {
        Value::Span(s) if l.unit > 0 && s % l.unit == 0 => (s / l.unit).to_string(),
        Value::Span(s) => format_timespan(*s),
        Value::Int(n) => n.to_string(),
        _ => String::new(),
    }
}

pub fn fields(s: &TransportServer, form: Option<&FormData>) -> Vec<FieldView> {
    let mut out: Vec<FieldView> = LIMITS
        .iter()
        .map(|l| {
            let value = form
                .and_then(|f| f.one(l.prop))
                .map(str::to_string)
                .unwrap_or_else(|| shown(l, &current(s, l.prop)));
            FieldView {
                name: l.prop.into(),
                label: l.label.into(),
                input: "text",
                value,
                checked: false,
                options: vec![],
                error: None,
                hint: format!("{} to {}", l.min, l.max),
                required: false,
                group: l.group,
            }
        })
        .collect();
    for (i, (prop, label)) in CONNECTIONS.iter().enumerate() {
        let value = form
            .and_then(|f| f.one(prop))
            .map(str::to_string)
            .unwrap_or_else(|| fields::input_text(Kind::Unlimited, &current(s, prop)));
        out.push(FieldView {
            name: prop.to_string(),
            label: label.to_string(),
            input: "text",
            value,
            checked: false,
            options: vec![],
            error: None,
            hint: "1 to 2147483647, or unlimited".into(),
            required: false,
            group: (i == 0).then_some("Connections"),
        });
    }
    out
}

fn parse(l: &Limit, text: &str) -> Result<Value, String> {
    let t = text.trim();
    let what = match l.unit {
        60 => "minutes",
        1 => "seconds",
        86400 => "days",
        3600 => "hours",
        _ => "attempts",
    };
    let refuse = || {
        format!(
            "Enter a whole number of {what} from {} to {}.",
            l.min, l.max
        )
    };
    if t.is_empty() || t.len() > 9 || !t.bytes().all(|b| b.is_ascii_digit()) {
        return Err(refuse());
    }
    let n: i64 = t.parse().map_err(|_| refuse())?;
    if !(l.min..=l.max).contains(&n) {
        return Err(refuse());
    }
    if l.unit == 0 {
        return Ok(Value::Int(n));
    }
    n.checked_mul(l.unit).map(Value::Span).ok_or_else(refuse)
}

/// The values the Limits form changes.
pub fn values(s: &TransportServer, form: &FormData) -> Result<Values, Errors> {
    let mut values = Values::default();
    let mut errors = Errors::default();
    for l in LIMITS {
        let Some(text) = form.one(l.prop) else {
            continue;
        };
        let now = current(s, l.prop);
        if text.trim() == shown(l, &now) {
            continue;
        }
        match parse(l, text) {
            Ok(v) if v == now => {}
            Ok(v) => values.0.push((l.prop, v)),
            Err(m) => {
                errors.0.insert(l.prop.into(), m);
            }
        }
    }
    for (prop, _) in CONNECTIONS {
        let Some(text) = form.one(prop) else {
            continue;
        };
        let now = current(s, prop);
        match fields::parse(Kind::Unlimited, text) {
            Ok(v) if v == now => {}
            Ok(v) => values.0.push((prop, v)),
            Err(m) => {
                errors.0.insert(prop.to_string(), m);
            }
        }
    }
    if errors.is_empty() {
        Ok(values)
    } else {
        Err(errors)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_convert_and_fractions_are_refused() {
        let days = &LIMITS[3];
        assert_eq!(parse(days, "3"), Ok(Value::Span(3 * 86400)));
        for bad in ["3.5", "-1", "0", "91", "99999999999999999999", "", "1e3"] {
            assert!(parse(days, bad).is_err(), "{bad}");
        }
        assert_eq!(shown(days, &Value::Span(90061)), "1.01:01:01");
        assert_eq!(parse(&LIMITS[2], "15"), Ok(Value::Int(15)));
    }
}
