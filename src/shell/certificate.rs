//! Get-, Import- and Enable-ExchangeCertificate over `ops::certificate`: this node's
//! certificates, as files of its data directory.

use super::bind::{Arg, Bound, Param, Ty, at, m, p};
use super::{Obj, Shell, ShellError};
use crate::ops::OpError;
use crate::ops::certificate as ops;
use crate::tls::info::Services;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    Get,
    Import,
    Enable,
    GetAcme,
    SetAcme,
}

pub struct Cmdlet {
    pub name: &'static str,
    pub op: Op,
    pub params: &'static [Param],
}

const ID: Param = at(p("Identity", Ty::Identity), 0);
const SERVER: Param = p("Server", Ty::Str);
/// Exchange's names; hubgate serves the two it has and refuses the others with a reason.
const SERVICES: &[&str] = &["None", "IIS", "SMTP", "IMAP", "POP", "UM", "Federation"];

pub const CMDLETS: &[Cmdlet] = &[
    Cmdlet {
        name: "Get-ExchangeCertificate",
        op: Op::Get,
        params: &[
            ID,
            p("Thumbprint", Ty::Str),
            p("DomainName", Ty::List),
            SERVER,
        ],
    },
    Cmdlet {
        name: "Import-ExchangeCertificate",
        op: Op::Import,
        // -KeyPath is hubgate's: a PEM key kept in a file of its own.
        params: &[
            at(m("Path", Ty::Str), 0),
            p("KeyPath", Ty::Str),
            SERVER,
            p("Password", Ty::Unsupported),
            p("FileData", Ty::Unsupported),
            p("PrivateKeyExportable", Ty::Unsupported),
        ],
    },
    Cmdlet {
        name: "Enable-ExchangeCertificate",
        op: Op::Enable,
        params: &[
            ID,
            p("Thumbprint", Ty::Str),
            m("Services", Ty::EnumList(SERVICES)),
            SERVER,
            p("Force", Ty::Switch),
            p("DoNotRequireSsl", Ty::Unsupported),
        ],
    },
    // hubgate's own: Exchange had no ACME client.
    Cmdlet {
        name: "Get-AcmeConfig",
        op: Op::GetAcme,
        params: &[SERVER],
    },
    Cmdlet {
        name: "Set-AcmeConfig",
        op: Op::SetAcme,
        params: &[
            p("Enabled", Ty::Bool),
            p("DirectoryUrl", Ty::Str),
            p("Contact", Ty::List),
            p("Domains", Ty::List),
            SERVER,
        ],
    },
];

pub fn find(name: &str) -> Option<&'static Cmdlet> {
    CMDLETS.iter().find(|c| c.name.eq_ignore_ascii_case(name))
}

fn data_dir(sh: &Shell) -> Result<std::path::PathBuf, ShellError> {
    sh.data_dir.clone().ok_or_else(|| {
        ShellError::Parse(
            "The shell doesn't know the gateway's data directory (HUBGATE_DATA_DIR), where this server's certificates are.".into(),
        )
    })
}

/// Certificates are each node's own: a shell changes those of the node it runs on.
fn this_server(sh: &Shell, b: &Bound, name: &str) -> Result<(), ShellError> {
    if let Some(other) = b.str("Server") {
        let short = crate::org::bootstrap::server_name_from_fqdn(&other);
        if !short.eq_ignore_ascii_case(&sh.server) {
            return Err(ShellError::Parse(format!(
                "The certificates of \"{other}\" are on that server; run {name} there."
            )));
        }
    }
    Ok(())
}

/// The thumbprint from -Thumbprint, -Identity (text or a certificate object), if any.
fn thumbprint(b: &Bound) -> Option<String> {
    b.str("Thumbprint").or_else(|| match b.get("Identity") {
        Some(Arg::Obj(Obj::ExchangeCertificate(c))) => Some(c.info.thumbprint.clone()),
        Some(Arg::Str(s)) => Some(s.clone()),
        _ => None,
    })
}

fn services(b: &Bound) -> Result<Services, ShellError> {
    let words = match b.get("Services") {
        Some(Arg::List(l)) => l.clone(),
        _ => vec![],
    };
    Services::parse(&words.join(",")).map_err(|word| {
        OpError::invalid(
            "Services",
            format!("hubgate serves certificates for SMTP (STARTTLS) and IIS (the console) only; it has no {word} service."),
        )
        .into()
    })
}

pub fn run(sh: &Shell, c: &Cmdlet, b: &Bound, text: &mut String) -> Result<Vec<Obj>, ShellError> {
    this_server(sh, b, c.name)?;
    let dir = data_dir(sh)?;
    match c.op {
        Op::Get => {
            let mut certs = match thumbprint(b) {
                Some(t) => vec![ops::get(&dir, &t)?],
                None => ops::list(&dir)?,
            };
            if let Some(Arg::List(names)) = b.get("DomainName") {
                certs.retain(|c| names.iter().any(|n| c.info.covers(n)));
            }
            Ok(certs.into_iter().map(Obj::ExchangeCertificate).collect())
        }
        Op::Import => {
            let path = b.str("Path").unwrap_or_default();
            let key = b.str("KeyPath");
            if super::queue::whatif(b, text, format!("Importing certificate from \"{path}\"")) {
                return Ok(vec![]);
            }
            let cert = ops::import(
                &dir,
                std::path::Path::new(&path),
                key.as_deref().map(std::path::Path::new),
            )?;
            Ok(vec![Obj::ExchangeCertificate(cert)])
        }
        Op::Enable => {
            let t =
                thumbprint(b).ok_or_else(|| ShellError::MissingMandatory("Thumbprint".into()))?;
            let wanted = services(b)?;
            if super::queue::whatif(
                b,
                text,
                format!("Enabling certificate \"{t}\" for the services \"{wanted}\""),
            ) {
                // Still refuse what the real run would refuse.
                ops::get(&dir, &t)?;
                return Ok(vec![]);
            }
            ops::enable(&dir, &t, wanted)?;
            Ok(vec![])
        }
        Op::GetAcme => {
            let (s, status) = ops::acme_config(&dir)?;
            Ok(vec![Obj::AcmeConfig(s, status)])
        }
        Op::SetAcme => {
            let list = |n: &str| match b.get(n) {
                Some(Arg::List(l)) => Some(l.clone()),
                _ => None,
            };
            let enabled = match b.get("Enabled") {
                Some(Arg::Bool(v)) => Some(*v),
                _ => None,
            };
            if super::queue::whatif(b, text, "Setting the ACME configuration".into()) {
                return Ok(vec![]);
            }
            ops::set_acme_config(
                &dir,
                enabled,
                b.str("DirectoryUrl").as_deref(),
                list("Contact"),
                list("Domains"),
            )?;
            Ok(vec![])
        }
    }
}
