//! The operations layer: one typed request per Exchange configuration verb, below both faces.
//!
//! The shell (`shell::cmdlets`) and the console call these; neither holds an Exchange rule.
//! Each operation runs in the caller's transaction (the shell keeps one per line, and rolls it
//! back for -WhatIf) and fails with an [`OpError`] that names the parameter at fault, so a form
//! can show the message beside its field. Usage presets, required parameters, defaults and the
//! checks across objects live here (and in `org`'s `validate`), and nowhere above.
//!
//! Each object's properties are described once, in its table (`props`, and one file per object).

pub mod accepted_domain;
pub mod antispam;
pub mod certificate;
pub mod field;
pub mod filter;
pub mod ip_block_list;
pub mod ip_list;
pub mod org_config;
pub mod permission;
pub mod props;
pub mod receive_connector;
pub mod recipient;
pub mod recipient_filter;
pub mod send_connector;
pub mod sender_filter;
pub mod transport;
pub mod wildcard;

use uuid::Uuid;

use crate::org::OrgError;

#[derive(Debug, thiserror::Error)]
pub enum OpError {
    /// A value refused; `param` names the parameter when one is at fault.
    #[error("{message}")]
    Invalid {
        param: Option<&'static str>,
        message: String,
    },
    #[error("The operation couldn't be performed because object '{0}' couldn't be found.")]
    NotFound(String),
    #[error("The operation couldn't be performed because '{0}' matches multiple entries.")]
    Ambiguous(String),
    #[error(
        "Cannot process command because of one or more missing mandatory parameters: {}.",
        .0.join(", ")
    )]
    MissingMandatory(Vec<&'static str>),
    #[error("The {kind} \"{name}\" already exists.")]
    Duplicate { kind: &'static str, name: String },
    #[error("{0}")]
    Org(OrgError),
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
}

impl OpError {
    /// The parameter a form shows this error beside, when there is one.
    pub fn param(&self) -> Option<&'static str> {
        match self {
            OpError::Invalid { param, .. } => *param,
            OpError::NotFound(_) | OpError::Ambiguous(_) => Some("Identity"),
            OpError::MissingMandatory(l) => l.first().copied(),
            OpError::Duplicate { .. } => Some("Name"),
            _ => None,
        }
    }

    pub fn invalid(param: &'static str, message: impl Into<String>) -> OpError {
        OpError::Invalid {
            param: Some(param),
            message: message.into(),
        }
    }
}

impl From<OrgError> for OpError {
    fn from(e: OrgError) -> OpError {
        match e {
            OrgError::Invalid(message) => OpError::Invalid {
                param: None,
                message,
            },
            OrgError::Param { param, message } => OpError::Invalid {
                param: Some(param),
                message,
            },
            OrgError::Duplicate { kind, name } => OpError::Duplicate { kind, name },
            OrgError::Db(e) => OpError::Db(e),
            e => OpError::Org(e),
        }
    }
}

/// How a request names the object it acts on.
#[derive(Clone, Debug)]
pub enum Identity {
    /// A name (or another identity the object answers to); `*` and `?` are wildcards where the
    /// verb allows several objects.
    Name(String),
    /// An object already in hand (from a pipeline); `shown` is what a miss reports.
    Id { id: Uuid, shown: String },
}

impl From<&str> for Identity {
    fn from(s: &str) -> Identity {
        Identity::Name(s.to_string())
    }
}

/// A change an operation made: the object before and after, for warnings and -WhatIf.
#[derive(Clone, Debug)]
pub struct Change<T> {
    pub before: T,
    pub after: T,
}

/// PowerShell-style wildcard match (`*`, `?`), case-insensitive.
pub fn glob(pattern: &str, text: &str) -> bool {
    fn go(p: &[char], t: &[char]) -> bool {
        match (p.first(), t.first()) {
            (None, None) => true,
            (Some('*'), _) => go(&p[1..], t) || (!t.is_empty() && go(p, &t[1..])),
            (Some('?'), Some(_)) => go(&p[1..], &t[1..]),
            (Some(a), Some(b)) => a.eq_ignore_ascii_case(b) && go(&p[1..], &t[1..]),
            _ => false,
        }
    }
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    go(&p, &t)
}

/// Picks the objects a name matches (through `names`); wildcards only where `many` is.
pub fn pick<T>(
    all: Vec<T>,
    id: &str,
    many: bool,
    names: impl Fn(&T, &dyn Fn(&str) -> bool) -> bool,
) -> Result<Vec<T>, OpError> {
    let wild = id.contains('*') || id.contains('?');
    let hits: Vec<T> = all
        .into_iter()
        .filter(|o| {
            names(o, &|s: &str| {
                if wild {
                    glob(id, s)
                } else {
                    s.eq_ignore_ascii_case(id.trim())
                }
            })
        })
        .collect();
    if hits.is_empty() {
        return Err(OpError::NotFound(id.to_string()));
    }
    if hits.len() > 1 && !many {
        return Err(OpError::Ambiguous(id.to_string()));
    }
    Ok(hits)
}

/// Resolves an identity over `all`: by id for an object in hand, by name otherwise; no identity
/// is every object.
pub fn resolve<T>(
    all: Vec<T>,
    identity: Option<&Identity>,
    many: bool,
    id_of: impl Fn(&T) -> Uuid,
    names: impl Fn(&T, &dyn Fn(&str) -> bool) -> bool,
) -> Result<Vec<T>, OpError> {
    match identity {
        None => Ok(all),
        Some(Identity::Id { id, shown }) => pick(all, shown, false, |o, _| id_of(o) == *id),
        Some(Identity::Name(s)) => pick(all, s, many, names),
    }
}

/// Exactly one object.
pub fn one<T>(mut v: Vec<T>) -> T {
    // `pick` without `many` returns one object or an error.
    v.swap_remove(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards() {
        assert!(glob("*Forest", "Cross-Forest"));
        assert!(glob("hub1\\def*", "HUB1\\Default HUB1"));
        assert!(!glob("Cross", "Cross-Forest"));
    }
}
