//! Property tables: one per object type, the one place an Exchange property is described.
//!
//! An entry says what the property is called, its type, how to read it (a typed [`Value`], from
//! which the Format-List text and the Export-Cmdlet argument follow), how to write it, on which
//! verbs it is a parameter and whether Export-Cmdlet writes it. The shell binds its parameters,
//! prints its views and writes its exports from these tables; the console builds its property
//! pages from them. Adding a property to an object is one entry here.

use super::OpError;
use crate::org::org_key::OrganizationKey;

/// A property value as an operation takes it and a table reads it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Value {
    /// No value: an unset optional string or TimeSpan (`$null`).
    Null,
    Bool(bool),
    Str(String),
    List(Vec<String>),
    Int(i64),
    /// A TimeSpan in whole seconds.
    Span(i64),
    /// A ByteQuantifiedSize in bytes.
    Bytes(i64),
    /// `unlimited`, for the Unlimited[] and ByteQuantifiedSize properties that allow it.
    Unlimited,
    Cred {
        user: String,
        password: String,
    },
}

/// A property's Exchange type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Str,
    Bool,
    /// One of these values, stored with this spelling.
    Enum(&'static [&'static str]),
    List,
    /// A set of these values (AuthMechanism, PermissionGroups); empty reads `None`.
    Flags(&'static [&'static str]),
    Int,
    /// An Int that may be `unlimited`.
    Unlimited,
    TimeSpan,
    ByteSize,
    Credential,
    /// An object's identity: read only.
    Identity,
    /// A verb's switch (`-Internet`), never a property.
    Switch,
}

/// When Export-Cmdlet writes a property into the line that re-creates the object.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Export {
    Never,
    Always,
    /// When the value differs from the object the bare New-* line makes.
    IfChanged,
    /// A credential: its user name, through a variable that Get-Credential fills when the
    /// script runs; the password is never written.
    Credential,
}

/// Which verbs take a property as a parameter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verb {
    No,
    Optional,
    Mandatory,
    /// Mandatory, and also bound from the first positional argument.
    First,
}

/// What a setter may need besides the value.
#[derive(Default)]
pub struct Ctx<'a> {
    /// The organisation key, to seal a credential.
    pub key: Option<&'a OrganizationKey>,
}

pub type Getter<T> = fn(&T) -> Value;
pub type Setter<T> = fn(&mut T, Value, &Ctx) -> Result<(), OpError>;

pub struct Prop<T: 'static> {
    /// Exchange's name, as Format-List shows it and the cmdlets take it.
    pub name: &'static str,
    pub kind: Kind,
    /// None: a write-only parameter (MakeDefault).
    pub get: Option<Getter<T>>,
    /// None: read only.
    pub set: Option<Setter<T>>,
    pub on_new: Verb,
    pub on_set: Verb,
    pub export: Export,
    /// The allowed values of a number, size or TimeSpan (in seconds), inclusive; `unlimited`
    /// and `$null` are outside any range.
    pub range: Option<(i64, i64)>,
}

impl<T> Prop<T> {
    /// A read-only property.
    pub const fn read(name: &'static str, kind: Kind, get: Getter<T>) -> Prop<T> {
        Prop {
            name,
            kind,
            get: Some(get),
            set: None,
            on_new: Verb::No,
            on_set: Verb::No,
            export: Export::Never,
            range: None,
        }
    }
    /// A property set on New and Set, exported when it differs from the default.
    pub const fn rw(name: &'static str, kind: Kind, get: Getter<T>, set: Setter<T>) -> Prop<T> {
        Prop {
            name,
            kind,
            get: Some(get),
            set: Some(set),
            on_new: Verb::Optional,
            on_set: Verb::Optional,
            export: Export::IfChanged,
            range: None,
        }
    }
    pub const fn new_as(self, v: Verb) -> Self {
        Prop { on_new: v, ..self }
    }
    pub const fn set_as(self, v: Verb) -> Self {
        Prop { on_set: v, ..self }
    }
    pub const fn export(self, e: Export) -> Self {
        Prop { export: e, ..self }
    }
    pub const fn range(self, min: i64, max: i64) -> Self {
        Prop {
            range: Some((min, max)),
            ..self
        }
    }
    /// A parameter that is not a property (MakeDefault): written, never read.
    pub const fn write_only(name: &'static str, kind: Kind, set: Setter<T>) -> Prop<T> {
        Prop {
            name,
            kind,
            get: None,
            set: Some(set),
            on_new: Verb::No,
            on_set: Verb::Optional,
            export: Export::Never,
            range: None,
        }
    }
}

/// An object type: its table and what its verbs add around it.
pub struct Object<T: 'static> {
    pub props: &'static [Prop<T>],
    /// What New- takes besides properties (a usage's switches, the server), bound after the
    /// first parameter.
    pub new_extra: &'static [(&'static str, Kind)],
    /// The cmdlet Export-Cmdlet writes, and the object it compares with for `IfChanged`.
    pub export_cmdlet: &'static str,
    /// The properties that open the exported line, in this order (the ones that say what the
    /// object is); the others follow in the table's order.
    pub export_first: &'static [&'static str],
    pub base: fn(&T) -> T,
    /// What Exchange calls one of these in its messages ("Send connector").
    pub noun: &'static str,
    /// The object's identity as messages show it; a credential's variable is named after it.
    pub name: fn(&T) -> String,
    /// Exchange parameters hubgate refuses, per verb (New, Set).
    pub unsupported_new: &'static [&'static str],
    pub unsupported_set: &'static [&'static str],
    /// The tabs of the console's Properties dialog, as the EMC names them, with the properties
    /// each one shows in this order; the shell ignores them.
    pub tabs: &'static [Tab],
}

/// A Properties tab: its EMC name and the properties on it.
pub type Tab = (&'static str, &'static [&'static str]);

impl<T> Object<T> {
    pub fn prop(&self, name: &str) -> Option<&'static Prop<T>> {
        self.props
            .iter()
            .find(|p| p.name.eq_ignore_ascii_case(name))
    }

    /// Format-List's rows, in the table's order.
    pub fn rows(&self, o: &T) -> Vec<(&'static str, String)> {
        self.props
            .iter()
            .filter_map(|p| p.get.map(|g| (p.name, display(p.kind, &g(o)))))
            .collect()
    }

    /// Applies `values` in the table's order: each setter checks its own value. A name that is
    /// neither a settable property of this verb nor one of its extras is refused.
    pub fn apply(&self, o: &mut T, values: &Values, new: bool, ctx: &Ctx) -> Result<(), OpError> {
        for (name, _) in &values.0 {
            let settable = self.prop(name).is_some_and(|p| {
                p.set.is_some() && if new { p.on_new } else { p.on_set } != Verb::No
            });
            let extra = new
                && self
                    .new_extra
                    .iter()
                    .any(|(n, _)| n.eq_ignore_ascii_case(name));
            if !settable && !extra {
                return Err(OpError::invalid(
                    name,
                    format!("A parameter cannot be found that matches parameter name '{name}'."),
                ));
            }
        }
        for p in self.props {
            if let (Some(set), Some(v)) = (p.set, values.get(p.name)) {
                set(o, v.clone(), ctx)?;
            }
        }
        Ok(())
    }

    /// Checks every value against its table entry: a number, size or TimeSpan within its range,
    /// an enumeration's value one of its values. Rules across properties are the model's
    /// (`validate` in `org`).
    pub fn validate(&self, o: &T) -> Result<(), OpError> {
        use crate::org::{check_one_of, check_range, check_span};
        for p in self.props {
            let Some(get) = p.get else { continue };
            match (p.kind, get(o), p.range) {
                (_, Value::Span(v), Some((min, max))) => check_span(p.name, v, min, max)?,
                (_, Value::Int(v) | Value::Bytes(v), Some((min, max))) => {
                    check_range(p.name, v, min, max)?
                }
                (Kind::Enum(allowed), Value::Str(v), _) => check_one_of(p.name, &v, allowed)?,
                _ => {}
            }
        }
        Ok(())
    }

    /// The lines that re-create `o`: the cmdlet with every property the table exports.
    pub fn export(&self, o: &T) -> String {
        let base = (self.base)(o);
        let mut before = String::new();
        let mut line = self.export_cmdlet.to_string();
        let head = self.export_first.iter().filter_map(|n| self.prop(n));
        let rest = self
            .props
            .iter()
            .filter(|p| !self.export_first.contains(&p.name));
        for p in head.chain(rest) {
            let Some(get) = p.get else { continue };
            let v = get(o);
            let text = match p.export {
                Export::Never => None,
                Export::Always => Some(script(p.kind, &v)),
                Export::IfChanged => (v != get(&base)).then(|| script(p.kind, &v)),
                Export::Credential => match &v {
                    Value::Str(user) => {
                        let var = credential_variable(&(self.name)(o));
                        before.push_str(&format!(
                            "# The password of {} is not exported: Get-Credential asks for it.\n{var} = Get-Credential -UserName {}\n",
                            quote(&(self.name)(o)),
                            quote(user),
                        ));
                        Some(var)
                    }
                    _ => None,
                },
            };
            match text {
                Some(t) if t.is_empty() => line.push_str(&format!(" -{}", p.name)),
                Some(t) => line.push_str(&format!(" -{} {t}", p.name)),
                None => {}
            }
        }
        format!("{before}{line}\n")
    }

    /// Every parameter of New- (`new`) or Set-, in the table's order, the extras after the
    /// first: (name, kind, mandatory, positional).
    pub fn params(&self, new: bool) -> Vec<(&'static str, Kind, bool, bool)> {
        let mut out = vec![];
        for p in self.props {
            let verb = if new { p.on_new } else { p.on_set };
            if p.set.is_none() || verb == Verb::No {
                continue;
            }
            out.push((
                p.name,
                p.kind,
                matches!(verb, Verb::Mandatory | Verb::First),
                verb == Verb::First,
            ));
            if new && out.len() == 1 {
                out.extend(self.new_extra.iter().map(|(n, k)| (*n, *k, false, false)));
            }
        }
        out
    }
}

/// The variable an exported credential is kept in.
fn credential_variable(name: &str) -> String {
    let clean: String = name.chars().filter(|c| c.is_ascii_alphanumeric()).collect();
    format!("$cred{clean}")
}

/// The values an operation sets, by property name.
#[derive(Clone, Debug, Default)]
pub struct Values(pub Vec<(&'static str, Value)>);

impl Values {
    pub fn get(&self, name: &str) -> Option<&Value> {
        self.0
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    }
    pub fn has(&self, name: &str) -> bool {
        self.get(name).is_some()
    }
    /// These values with `name` set to `v` (replacing a value given before).
    pub fn with(mut self, name: &'static str, v: Value) -> Values {
        self.0.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
        self.0.push((name, v));
        self
    }
    pub fn str(&self, name: &str) -> Option<String> {
        match self.get(name) {
            Some(Value::Str(s)) => Some(s.clone()),
            _ => None,
        }
    }
}

fn multi(v: &[String]) -> String {
    format!("{{{}}}", v.join(", "))
}

/// The Format-List text of a value.
pub fn display(kind: Kind, v: &Value) -> String {
    use crate::shell::parse::{format_bytes, format_timespan};
    match (kind, v) {
        (_, Value::Null) => String::new(),
        (_, Value::Bool(b)) => if *b { "True" } else { "False" }.into(),
        (Kind::Flags(_), Value::List(l)) if l.is_empty() => "None".into(),
        (Kind::Flags(_), Value::List(l)) => l.join(", "),
        (_, Value::List(l)) => multi(l),
        (Kind::ByteSize, Value::Unlimited) => format_bytes(None),
        (_, Value::Unlimited) => "Unlimited".into(),
        (_, Value::Bytes(n)) => format_bytes(Some(*n)),
        (_, Value::Span(s)) => format_timespan(*s),
        (_, Value::Int(n)) => n.to_string(),
        (_, Value::Str(s)) => s.clone(),
        (_, Value::Cred { user, .. }) => user.clone(),
    }
}

pub fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// The argument text that sets a value in a script line.
pub fn script(kind: Kind, v: &Value) -> String {
    use crate::shell::parse::format_timespan;
    match (kind, v) {
        (_, Value::Null) => "$null".into(),
        // A switch is written by its name alone.
        (Kind::Switch, Value::Bool(_)) => String::new(),
        (_, Value::Bool(b)) => if *b { "$true" } else { "$false" }.into(),
        (Kind::Flags(_), Value::List(l)) if l.is_empty() => "None".into(),
        (Kind::Flags(_), Value::List(l)) => l.join(","),
        (_, Value::List(l)) if l.is_empty() => "$null".into(),
        (_, Value::List(l)) => l.iter().map(|s| quote(s)).collect::<Vec<_>>().join(","),
        (_, Value::Unlimited) => "unlimited".into(),
        (_, Value::Bytes(n)) | (_, Value::Int(n)) => n.to_string(),
        (_, Value::Span(s)) => format_timespan(*s),
        (Kind::Enum(_), Value::Str(s)) => s.clone(),
        (_, Value::Str(s)) => quote(s),
        (_, Value::Cred { user, .. }) => quote(user),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::transport;
    use crate::ops::{accepted_domain, permission, receive_connector, recipient, send_connector};

    #[test]
    fn values_read_and_write_as_exchange_prints_them() {
        let cases = [
            (Kind::Bool, Value::Bool(true), "True", "$true"),
            (Kind::Str, Value::Str("it's".into()), "it's", "'it''s'"),
            (Kind::Enum(&["A"]), Value::Str("A".into()), "A", "A"),
            (Kind::List, Value::List(vec![]), "{}", "$null"),
            (
                Kind::List,
                Value::List(vec!["a".into(), "b".into()]),
                "{a, b}",
                "'a','b'",
            ),
            (Kind::Flags(&["X"]), Value::List(vec![]), "None", "None"),
            (
                Kind::Flags(&["X"]),
                Value::List(vec!["X".into(), "Y".into()]),
                "X, Y",
                "X,Y",
            ),
            (Kind::Unlimited, Value::Unlimited, "Unlimited", "unlimited"),
            (Kind::Int, Value::Int(5), "5", "5"),
            (
                Kind::TimeSpan,
                Value::Span(90061),
                "1.01:01:01",
                "1.01:01:01",
            ),
            (Kind::TimeSpan, Value::Null, "", "$null"),
            (
                Kind::ByteSize,
                Value::Bytes(10 << 20),
                "10 MB (10,485,760 bytes)",
                "10485760",
            ),
            (Kind::ByteSize, Value::Unlimited, "Unlimited", "unlimited"),
            (Kind::Switch, Value::Bool(true), "True", ""),
        ];
        for (kind, v, shown, written) in cases {
            assert_eq!(display(kind, &v), shown, "{v:?}");
            assert_eq!(script(kind, &v), written, "{v:?}");
        }
    }

    fn check<T>(o: &Object<T>) {
        let mut seen = std::collections::HashSet::new();
        for p in o.props {
            assert!(seen.insert(p.name.to_ascii_lowercase()), "{}", p.name);
            // What Export-Cmdlet writes, it must be able to read; what a verb takes, it must
            // be able to write.
            assert!(p.export == Export::Never || p.get.is_some(), "{}", p.name);
            assert!(
                (p.on_new == Verb::No && p.on_set == Verb::No) || p.set.is_some(),
                "{}",
                p.name
            );
        }
        for n in o.unsupported_new.iter().chain(o.unsupported_set) {
            assert!(o.prop(n).is_none(), "{n} is both supported and not");
        }
        // A tab shows properties of the table, each on one tab at most.
        let mut shown = std::collections::HashSet::new();
        for (tab, names) in o.tabs {
            for n in *names {
                assert!(o.prop(n).is_some(), "{tab}: {n} is not a property");
                assert!(shown.insert(*n), "{n} is on two tabs");
            }
        }
    }

    #[test]
    fn every_table_is_consistent() {
        check(&accepted_domain::OBJECT);
        check(&send_connector::OBJECT);
        check(&receive_connector::OBJECT);
        check(&transport::SERVER);
        check(&transport::CONFIG);
        check(&recipient::MAILBOX);
        check(&recipient::CONTACT);
        check(&permission::OBJECT);
        check(&crate::ops::sender_filter::CONFIG);
        check(&crate::ops::ip_block_list::PROVIDER);
        check(&crate::ops::ip_block_list::PROVIDERS_CONFIG);
        check(&crate::ops::ip_block_list::BLOCK_LIST_CONFIG);
    }

    /// Each range's ends are accepted and one past either end is refused, naming the property.
    fn ranges_hold<T: Clone>(o: &Object<T>, base: &T) {
        for p in o.props {
            let (Some((min, max)), Some(set)) = (p.range, p.set) else {
                continue;
            };
            let val = |n| match p.kind {
                Kind::TimeSpan => Value::Span(n),
                Kind::ByteSize => Value::Bytes(n),
                _ => Value::Int(n),
            };
            let ctx = Ctx::default();
            for n in [min, max] {
                let mut x = base.clone();
                set(&mut x, val(n), &ctx).unwrap();
                o.validate(&x)
                    .unwrap_or_else(|e| panic!("{} = {n}: {e}", p.name));
            }
            for n in [min - 1, max + 1] {
                let mut x = base.clone();
                let e = set(&mut x, val(n), &ctx)
                    .and_then(|_| o.validate(&x))
                    .expect_err(p.name);
                assert_eq!(e.param(), Some(p.name), "{e}");
            }
        }
    }

    #[test]
    fn every_range_is_enforced_by_name() {
        use crate::org::{
            AcceptedDomain, DomainType, ReceiveConnector, SendConnector, TransportConfig,
            TransportServer,
        };
        ranges_hold(
            &accepted_domain::OBJECT,
            &AcceptedDomain::new("a", "a.example", DomainType::Authoritative),
        );
        ranges_hold(
            &send_connector::OBJECT,
            &SendConnector::new("s", &["*"], "H"),
        );
        ranges_hold(
            &receive_connector::OBJECT,
            &ReceiveConnector::new("H", "r", "h"),
        );
        ranges_hold(
            &transport::SERVER,
            &TransportServer::with_defaults("H", "h"),
        );
        ranges_hold(&transport::CONFIG, &TransportConfig::with_defaults());
        let sc = SendConnector::new("s", &["*"], "H");
        let mut bad = sc.clone();
        bad.error_policies = "Sometimes".into();
        let e = send_connector::OBJECT.validate(&bad).unwrap_err();
        assert_eq!(e.param(), Some("ErrorPolicies"));
    }

    #[test]
    fn a_refused_value_names_its_parameter() {
        let mut d = crate::org::AcceptedDomain::new(
            "a",
            "a.example",
            crate::org::DomainType::Authoritative,
        );
        let e = accepted_domain::OBJECT
            .apply(
                &mut d,
                &Values::default().with("AddressBookEnabled", Value::Int(1)),
                false,
                &Ctx::default(),
            )
            .unwrap_err();
        assert_eq!(e.param(), Some("AddressBookEnabled"));
        let e = transport::SERVER
            .apply(
                &mut crate::org::TransportServer::with_defaults("H", "h"),
                &Values::default().with("PoisonThreshold", Value::Int(1 << 40)),
                false,
                &Ctx::default(),
            )
            .unwrap_err();
        assert_eq!(e.param(), Some("PoisonThreshold"));
        assert!(e.to_string().contains("out of range"), "{e}");
    }
}
