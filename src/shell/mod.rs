//! The management shell: Exchange Management Shell lines, run against the organisation.
//!
//! `parse` turns a line into statements, `bind` matches a command's words to a cmdlet's
//! parameters, `cmdlets` runs them over `org`, `format` prints objects as Exchange does and
//! `render` writes an object back as the New-* line that creates it.

pub mod backup;
pub mod bind;
pub mod certificate;
pub mod cmdlets;
pub mod config;
pub mod format;
pub mod interactive;
pub mod ip_block_list;
pub mod ip_list;
pub mod parse;
pub mod queue;
mod queue_action;
pub mod recipient_filter;
pub mod render;
pub mod restore;
pub mod select;
pub mod unenforced;
pub mod where_object;

use std::collections::HashMap;
use std::io::BufRead;
use std::path::PathBuf;

use sqlx::PgPool;

use crate::org::{self, OrgError};
use crate::transport::queue::ops::{self, QueueError};

#[derive(Debug, thiserror::Error)]
pub enum ShellError {
    #[error("{0}")]
    Parse(String),
    #[error(
        "The term '{0}' is not recognized as the name of a cmdlet, function, script file, or operable program. Check the spelling of the name, or if a path was included, verify that the path is correct and try again."
    )]
    UnknownCmdlet(String),
    #[error("A parameter cannot be found that matches parameter name '{0}'.")]
    UnknownParameter(String),
    #[error(
        "Parameter cannot be processed because the parameter name '{name}' is ambiguous. Possible matches include: {matches}."
    )]
    AmbiguousParameter { name: String, matches: String },
    #[error("A positional parameter cannot be found that accepts argument '{0}'.")]
    ExtraPositional(String),
    #[error("Cannot bind parameter because parameter '{0}' is specified more than once.")]
    DuplicateParameter(String),
    #[error(
        "Missing an argument for parameter '{name}'. Specify a parameter of type '{ty}' and try again."
    )]
    MissingArgument { name: String, ty: &'static str },
    #[error("Cannot process command because of one or more missing mandatory parameters: {0}.")]
    MissingMandatory(String),
    #[error(
        "Cannot bind parameter '{param}'. Cannot convert value \"{value}\" to type {ty}. {hint}"
    )]
    BadValue {
        param: String,
        value: String,
        ty: &'static str,
        hint: String,
    },
    #[error(
        "The parameter '{param}' of {cmdlet} is an Exchange parameter that hubgate does not support; nothing was changed."
    )]
    Unsupported { cmdlet: String, param: String },
    #[error("The variable '${0}' cannot be retrieved because it has not been set.")]
    UnsetVariable(String),
    #[error("The operation couldn't be performed because object '{0}' couldn't be found.")]
    NotFound(String),
    #[error("The operation couldn't be performed because '{0}' matches multiple entries.")]
    Ambiguous(String),
    #[error("The input object cannot be bound to any parameters of {0}.")]
    BadPipelineInput(String),
    #[error("{0}")]
    Org(#[from] OrgError),
    #[error("{0}")]
    Op(#[from] crate::ops::OpError),
    #[error("{0}")]
    Queue(#[from] QueueError),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
}

/// An object a cmdlet returns.
#[derive(Clone, Debug)]
pub enum Obj {
    AcceptedDomain(org::AcceptedDomain),
    SendConnector(org::SendConnector),
    ReceiveConnector(org::ReceiveConnector),
    TransportServer(org::TransportServer),
    TransportConfig(org::TransportConfig),
    /// One ACL entry, with the identity of its connector.
    AdPermission(String, org::Permission),
    /// A recipient and its proxy addresses other than the primary one.
    Recipient(org::Recipient, Vec<String>),
    Credential {
        user: String,
        password: String,
    },
    Queue(ops::QueueInfo),
    Message(ops::MessageInfo),
    /// Export-Message's output: the message as it will be sent, for AssembleMessage.
    ExportedMessage {
        identity: String,
        bytes: Vec<u8>,
    },
    TrackingEntry(crate::logs::tracking::TrackingEntry),
    ExchangeCertificate(crate::ops::certificate::Certificate),
    AcmeConfig(crate::tls::acme::AcmeSettings, crate::tls::acme::AcmeStatus),
    IpListEntry(crate::org::ip_list::IpListEntry),
    SenderFilterConfig(crate::org::sender_filter::SenderFilterConfig),
    RecipientFilterConfig(crate::org::recipient_filter::RecipientFilterConfig),
    ValidRecipient(crate::ops::recipient_filter::ValidRecipient),
    IpBlockListProvider(crate::org::ip_block_list::IpBlockListProvider),
    IpBlockListProvidersConfig(crate::org::ip_block_list::ProvidersConfig),
    IpBlockListConfig(crate::org::ip_block_list::BlockListConfig),
}

/// A value at run time: what a variable holds and what a parameter receives.
// A handful of these live for one statement; boxing the objects would buy nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug)]
pub enum Val {
    Str(String),
    Bool(bool),
    Null,
    List(Vec<Val>),
    Obj(Obj),
}

/// Where Get-Credential reads when stdin is not a terminal.
pub type CredentialSource = Box<dyn BufRead + Send>;

pub struct Shell {
    pub pool: PgPool,
    /// The local server's short name (`HUB1`), the default for `-Server` and name-only identities.
    pub server: String,
    pub fqdn: String,
    /// The gateway's data directory (spool, logs), for Export-Message and the tracking log.
    pub data_dir: Option<PathBuf>,
    /// WARNING lines of the last line run, for the error stream (`take_warnings`).
    pub warnings: Vec<String>,
    /// Running a backup script (`hubgate restore`): see `restore`.
    pub restore: bool,
    vars: HashMap<String, Val>,
    credentials: Option<CredentialSource>,
    /// Loaded when a credential is first stored (`org::org_key::prepare`).
    organization_key: Option<org::org_key::OrganizationKey>,
}

impl Shell {
    pub fn new(pool: PgPool, fqdn: &str) -> Shell {
        Shell {
            pool,
            server: org::bootstrap::server_name_from_fqdn(fqdn),
            fqdn: fqdn.to_string(),
            data_dir: None,
            warnings: Vec::new(),
            restore: false,
            vars: HashMap::new(),
            credentials: None,
            organization_key: None,
        }
    }

    pub fn with_data_dir(mut self, dir: PathBuf) -> Shell {
        self.data_dir = Some(dir);
        self
    }

    /// Get-Credential reads user and password lines from here instead of prompting.
    pub fn with_credential_source(mut self, src: CredentialSource) -> Shell {
        self.credentials = Some(src);
        self
    }

    /// The organisation key, for sealing a credential: from the environment or the data
    /// directory, made there when the organisation has none yet.
    pub async fn organization_key(&mut self) -> Result<org::org_key::OrganizationKey, ShellError> {
        if let Some(k) = &self.organization_key {
            return Ok(k.clone());
        }
        let key = org::org_key::prepare(&self.pool, self.data_dir.as_deref())
            .await
            .map_err(OrgError::from)?;
        self.organization_key = Some(key.clone());
        Ok(key)
    }

    /// The warnings raised since the last call, as PowerShell's warning stream shows them.
    pub fn take_warnings(&mut self) -> Vec<String> {
        std::mem::take(&mut self.warnings)
            .into_iter()
            .map(|w| format!("WARNING: {w}"))
            .collect()
    }

    /// Runs one line; returns what it prints. Each statement runs in its own transaction, so a
    /// failing statement changes nothing.
    pub async fn run_line(&mut self, line: &str) -> Result<String, ShellError> {
        let mut out = String::new();
        for st in parse::parse_line(line)? {
            out.push_str(&self.run_statement(st).await?);
        }
        Ok(out)
    }

    /// Runs a script and stops at the first failing line, reporting its number.
    pub async fn run_script(
        &mut self,
        script: &str,
        out: &mut dyn std::io::Write,
    ) -> Result<(), (usize, ShellError)> {
        for (n, line) in parse::logical_lines(script) {
            let text = self.run_line(&line).await.map_err(|e| (n, e))?;
            out.write_all(text.as_bytes()).map_err(|e| (n, e.into()))?;
        }
        Ok(())
    }

    async fn run_statement(&mut self, st: parse::Statement) -> Result<String, ShellError> {
        let (val, text) = match st.body {
            parse::Body::Value(v) => {
                let v = self.eval(&v)?;
                let text = if st.assign.is_none() {
                    format::value_text(&v)
                } else {
                    String::new()
                };
                (v, text)
            }
            parse::Body::Pipeline(cmds) => {
                let mut tx = self.pool.begin().await?;
                let r = cmdlets::run_pipeline(self, &mut tx, &cmds).await;
                match &r {
                    Ok(o) if !o.whatif => tx.commit().await?,
                    _ => tx.rollback().await?,
                }
                let r = r?;
                let text = if st.assign.is_none() {
                    let mut t = r.text;
                    t.push_str(&format::default_view(&r.objects));
                    t
                } else {
                    r.text
                };
                let val = match r.objects.len() {
                    0 => Val::Null,
                    1 => Val::Obj(
                        r.objects
                            .into_iter()
                            .next()
                            .unwrap_or_else(|| unreachable!()),
                    ),
                    _ => Val::List(r.objects.into_iter().map(Val::Obj).collect()),
                };
                (val, text)
            }
        };
        if let Some(name) = st.assign {
            self.vars.insert(name.to_ascii_lowercase(), val);
        }
        Ok(text)
    }

    pub fn eval(&self, v: &parse::Value) -> Result<Val, ShellError> {
        Ok(match v {
            parse::Value::Str(s, _) => Val::Str(s.clone()),
            parse::Value::Bool(b) => Val::Bool(*b),
            parse::Value::Null => Val::Null,
            parse::Value::Var(name) => self
                .vars
                .get(&name.to_ascii_lowercase())
                .cloned()
                .ok_or_else(|| ShellError::UnsetVariable(name.clone()))?,
            parse::Value::List(items) => Val::List(
                items
                    .iter()
                    .map(|i| self.eval(i))
                    .collect::<Result<_, _>>()?,
            ),
        })
    }

    /// Reads a credential: from the configured source, from a terminal prompt, or from stdin.
    pub fn read_credential(
        &mut self,
        user: Option<String>,
    ) -> Result<(String, String), ShellError> {
        use std::io::IsTerminal;
        let eof = || {
            ShellError::Parse(
                "Get-Credential: no user name and password were given (stdin ended).".into(),
            )
        };
        let read_line = |src: &mut dyn BufRead| -> Result<String, ShellError> {
            let mut l = String::new();
            if src.read_line(&mut l)? == 0 {
                return Err(eof());
            }
            Ok(l.trim_end_matches(['\r', '\n']).to_string())
        };
        if let Some(src) = self.credentials.as_mut() {
            let user = match user {
                Some(u) => u,
                None => read_line(src.as_mut())?,
            };
            let pw = read_line(src.as_mut())?;
            return Ok((user, pw));
        }
        let stdin = std::io::stdin();
        if stdin.is_terminal() {
            let user = match user {
                Some(u) => u,
                None => interactive::prompt("User name: ")?,
            };
            let pw = interactive::prompt_password("Password: ")?;
            return Ok((user, pw));
        }
        let mut lock = stdin.lock();
        let user = match user {
            Some(u) => u,
            None => read_line(&mut lock)?,
        };
        let pw = read_line(&mut lock)?;
        Ok((user, pw))
    }
}
