//! The configuration cmdlets: bound parameters become an operation's request (`ops`), and its
//! result becomes objects, -WhatIf lines and warnings. No Exchange rule is decided here.

use sqlx::PgConnection;
use uuid::Uuid;

use super::bind::{Arg, Bound, Param, Ty};
use super::cmdlets::{Cmdlet, Op};
use super::{Obj, Shell, ShellError, queue, unenforced};
use crate::ops::permission::{self, AddADPermission};
use crate::ops::props::{Value, Values};
use crate::ops::recipient;
use crate::ops::{Change, Identity, accepted_domain, receive_connector, send_connector, transport};
use crate::org::OrgError;
use crate::org::org_key::OrganizationKey;
use crate::org::rights;

fn wrong_input(cmdlet: &str) -> ShellError {
    ShellError::BadPipelineInput(cmdlet.to_string())
}

fn whatif(b: &Bound, text: &mut String, action: String) {
    if b.switch("WhatIf") {
        text.push_str(&format!("What if: {action}.\n"));
    }
}

/// A bound argument as an operation takes it.
fn value(a: &Arg) -> Value {
    match a {
        Arg::Bool(v) => Value::Bool(*v),
        Arg::Str(s) => Value::Str(s.clone()),
        Arg::List(l) => Value::List(l.clone()),
        Arg::Int(Some(n)) => Value::Int(*n),
        Arg::Int(None) | Arg::Bytes(None) => Value::Unlimited,
        Arg::Span(s) => Value::Span(*s),
        Arg::Bytes(Some(n)) => Value::Bytes(*n),
        Arg::Cred(user, password) => Value::Cred {
            user: user.clone(),
            password: password.clone(),
        },
        Arg::Obj(_) | Arg::Null => Value::Null,
    }
}

/// The values of the cmdlet's own parameters (not -Identity, not the common ones).
fn values(b: &Bound, params: &[Param]) -> Values {
    Values(
        params
            .iter()
            .filter(|p| p.ty != Ty::Identity && p.ty != Ty::Unsupported)
            .filter_map(|p| b.get(p.name).map(|a| (p.name, value(a))))
            .collect(),
    )
}

/// The -Identity argument; an object of another type than `key` accepts is refused.
fn identity(
    b: &Bound,
    cmdlet: &str,
    key: impl Fn(&Obj) -> Option<(Uuid, String)>,
) -> Result<Option<Identity>, ShellError> {
    match b.get("Identity") {
        None => Ok(None),
        Some(Arg::Str(s)) => Ok(Some(Identity::Name(s.clone()))),
        Some(Arg::Obj(o)) => match key(o) {
            Some((id, shown)) => Ok(Some(Identity::Id { id, shown })),
            None => Err(wrong_input(cmdlet)),
        },
        Some(_) => Err(wrong_input(cmdlet)),
    }
}

fn required(i: Option<Identity>, cmdlet: &str) -> Result<Identity, ShellError> {
    i.ok_or_else(|| wrong_input(cmdlet))
}

fn ad_key(o: &Obj) -> Option<(Uuid, String)> {
    match o {
        Obj::AcceptedDomain(d) => Some((d.id, d.id.to_string())),
        _ => None,
    }
}
fn sc_key(o: &Obj) -> Option<(Uuid, String)> {
    match o {
        Obj::SendConnector(c) => Some((c.id, c.name.clone())),
        _ => None,
    }
}
fn rc_key(o: &Obj) -> Option<(Uuid, String)> {
    match o {
        Obj::ReceiveConnector(c) => Some((c.id, c.identity())),
        _ => None,
    }
}
fn ts_key(o: &Obj) -> Option<(Uuid, String)> {
    match o {
        Obj::TransportServer(s) => Some((Uuid::nil(), s.name.clone())),
        _ => None,
    }
}
fn recipient_key(o: &Obj) -> Option<(Uuid, String)> {
    match o {
        Obj::Recipient(r, _) => Some((r.id, r.name.clone())),
        _ => None,
    }
}

/// The organisation key when this command stores a credential. Fetched before the statement
/// touches any connector row, since sealing passwords left in plaintext locks those rows.
async fn key_for_credential(
    sh: &mut Shell,
    b: &Bound,
) -> Result<Option<OrganizationKey>, ShellError> {
    match b.get("AuthenticationCredential") {
        // -WhatIf rolls the statement back: it must not make or check the real key either.
        Some(Arg::Cred(..)) if b.switch("WhatIf") => Ok(Some(
            OrganizationKey::generate("-WhatIf")
                .map_err(OrgError::from)?
                .0,
        )),
        Some(Arg::Cred(..)) => Ok(Some(sh.organization_key().await?)),
        _ => Ok(None),
    }
}

/// The warnings of one New-/Set-: what it gave a value hubgate stores but does not act on.
fn warn<T>(text: &mut String, b: &Bound, ch: &Change<T>, obj: impl Fn(T) -> Obj)
where
    T: Clone,
{
    unenforced::warn(text, b, &obj(ch.before.clone()), &obj(ch.after.clone()));
}

/// The ACL cmdlets' connector: an object from the pipeline, or a name.
async fn acl_connector(
    sh: &Shell,
    tx: &mut PgConnection,
    b: &Bound,
    cmdlet: &str,
) -> Result<permission::Connector, ShellError> {
    Ok(match b.get("Identity") {
        Some(Arg::Obj(Obj::SendConnector(c))) => permission::Connector {
            id: c.id,
            identity: c.name.clone(),
            is_send: true,
        },
        Some(Arg::Obj(Obj::ReceiveConnector(c))) => permission::Connector {
            id: c.id,
            identity: c.identity(),
            is_send: false,
        },
        Some(Arg::Str(s)) => {
            permission::connector(tx, &sh.server, &Identity::Name(s.clone())).await?
        }
        _ => return Err(wrong_input(cmdlet)),
    })
}

fn objects<T>(v: Vec<T>, obj: impl Fn(T) -> Obj) -> Vec<Obj> {
    v.into_iter().map(obj).collect()
}

fn acl_objects(c: &permission::Connector, acl: Vec<crate::org::Permission>) -> Vec<Obj> {
    objects(acl, |e| Obj::AdPermission(c.identity.clone(), e))
}

/// Runs one configuration cmdlet on bound parameters.
pub async fn run(
    sh: &mut Shell,
    tx: &mut PgConnection,
    c: &Cmdlet,
    b: &Bound,
    text: &mut String,
) -> Result<Vec<Obj>, ShellError> {
    let name = c.name;
    let vals = || values(b, &c.params);
    Ok(match c.op {
        Op::GetAcceptedDomain => {
            let id = identity(b, name, ad_key)?;
            objects(
                accepted_domain::get(tx, id.as_ref(), true).await?,
                Obj::AcceptedDomain,
            )
        }
        Op::NewAcceptedDomain => {
            let d = accepted_domain::new(tx, &vals()).await?;
            whatif(b, text, format!("Creating Accepted Domain \"{}\"", d.name));
            vec![Obj::AcceptedDomain(d)]
        }
        Op::SetAcceptedDomain => {
            let id = required(identity(b, name, ad_key)?, name)?;
            let ch = accepted_domain::set(tx, &id, &vals()).await?;
            whatif(
                b,
                text,
                format!("Setting Accepted Domain \"{}\"", ch.before.name),
            );
            vec![]
        }
        Op::RemoveAcceptedDomain => {
            let id = required(identity(b, name, ad_key)?, name)?;
            let d = accepted_domain::remove(tx, &id).await?;
            whatif(b, text, format!("Removing Accepted Domain \"{}\"", d.name));
            vec![]
        }
        Op::GetSendConnector => {
            let id = identity(b, name, sc_key)?;
            objects(
                send_connector::get(tx, id.as_ref(), true).await?,
                Obj::SendConnector,
            )
        }
        Op::NewSendConnector => {
            let key = key_for_credential(sh, b).await?;
            let ch = send_connector::new(tx, &sh.server, &vals(), key.as_ref()).await?;
            whatif(
                b,
                text,
                format!("Creating Send connector \"{}\"", ch.after.name),
            );
            warn(text, b, &ch, Obj::SendConnector);
            vec![Obj::SendConnector(ch.after)]
        }
        Op::SetSendConnector => {
            let key = key_for_credential(sh, b).await?;
            let id = required(identity(b, name, sc_key)?, name)?;
            let ch = send_connector::set(tx, &id, &vals(), key.as_ref()).await?;
            whatif(
                b,
                text,
                format!("Setting Send connector \"{}\"", ch.before.name),
            );
            warn(text, b, &ch, Obj::SendConnector);
            vec![]
        }
        Op::RemoveSendConnector => {
            let id = required(identity(b, name, sc_key)?, name)?;
            let c = send_connector::remove(tx, &id).await?;
            whatif(b, text, format!("Removing Send connector \"{}\"", c.name));
            vec![]
        }
        Op::GetReceiveConnector => {
            let id = identity(b, name, rc_key)?;
            let all = receive_connector::get(tx, &sh.server, id.as_ref(), true).await?;
            objects(
                receive_connector::on_server(all, b.str("Server").as_deref()),
                Obj::ReceiveConnector,
            )
        }
        Op::NewReceiveConnector => {
            let ch = receive_connector::new(tx, &sh.server, &vals()).await?;
            let shown = ch.after.identity();
            whatif(b, text, format!("Creating Receive connector \"{shown}\""));
            // A preset (-Partner turns DomainSecureEnabled on by itself) warns too: that is when
            // an admin most needs to hear it.
            warn(text, b, &ch, Obj::ReceiveConnector);
            vec![Obj::ReceiveConnector(ch.after)]
        }
        Op::SetReceiveConnector => {
            let id = required(identity(b, name, rc_key)?, name)?;
            let ch = receive_connector::set(tx, &sh.server, &id, &vals()).await?;
            let shown = ch.before.identity();
            whatif(b, text, format!("Setting Receive connector \"{shown}\""));
            warn(text, b, &ch, Obj::ReceiveConnector);
            vec![]
        }
        Op::RemoveReceiveConnector => {
            let id = required(identity(b, name, rc_key)?, name)?;
            let c = receive_connector::remove(tx, &sh.server, &id).await?;
            let shown = c.identity();
            whatif(b, text, format!("Removing Receive connector \"{shown}\""));
            vec![]
        }
        Op::GetTransportServer => {
            let id = identity(b, name, ts_key)?;
            objects(
                transport::get_servers(tx, id.as_ref(), true).await?,
                Obj::TransportServer,
            )
        }
        Op::SetTransportServer => {
            // Without -Identity: the server this shell runs on.
            let id = identity(b, name, ts_key)?.unwrap_or(Identity::Id {
                id: Uuid::nil(),
                shown: sh.server.clone(),
            });
            let ch = transport::set_server(tx, &id, &vals()).await?;
            whatif(
                b,
                text,
                format!("Setting Transport server \"{}\"", ch.before.name),
            );
            warn(text, b, &ch, Obj::TransportServer);
            vec![]
        }
        Op::GetTransportConfig => vec![Obj::TransportConfig(transport::get_config(tx).await?)],
        Op::SetTransportConfig => {
            let ch = transport::set_config(tx, &vals()).await?;
            whatif(b, text, "Setting Transport configuration".into());
            warn(text, b, &ch, Obj::TransportConfig);
            vec![]
        }
        Op::AddADPermission | Op::RemoveADPermission => {
            let connector = acl_connector(sh, tx, b, name).await?;
            let rights_given = match b.get("ExtendedRights") {
                Some(Arg::List(l)) => l.clone(),
                _ => vec![],
            };
            let req = AddADPermission {
                connector,
                user: b.str("User").unwrap_or_default(),
                rights: permission::rights_of(&rights_given)?,
                deny: b.switch("Deny"),
            };
            let user = rights::resolve_principal(&req.user);
            let on = &req.connector.identity;
            if c.op == Op::AddADPermission {
                if req.connector.is_send {
                    unenforced::warn_send_connector_permission(text);
                }
                for r in &req.rights {
                    whatif(
                        b,
                        text,
                        format!(
                            "Adding Active Directory permission \"{r}\" for \"{user}\" on \"{on}\""
                        ),
                    );
                }
                let added = permission::add(tx, &req).await?;
                acl_objects(&req.connector, added)
            } else {
                for r in &req.rights {
                    whatif(
                        b,
                        text,
                        format!(
                            "Removing Active Directory permission \"{r}\" for \"{user}\" on \"{on}\""
                        ),
                    );
                }
                permission::remove(tx, &req).await?;
                vec![]
            }
        }
        Op::GetADPermission => {
            let connector = acl_connector(sh, tx, b, name).await?;
            let acl = permission::get(tx, &connector, b.str("User").as_deref()).await?;
            acl_objects(&connector, acl)
        }
        Op::EnableCrossForestConnector => {
            let user = b.str("User").unwrap_or_default();
            let (sc, acl) =
                permission::enable_cross_forest(tx, &b.str("Connector").unwrap_or_default(), &user)
                    .await?;
            let user = rights::resolve_principal(&user);
            whatif(
                b,
                text,
                format!(
                    "Granting cross-forest send rights to \"{user}\" on \"{}\"",
                    sc.name
                ),
            );
            objects(acl, |e| Obj::AdPermission(sc.name.clone(), e))
        }
        Op::GetCredential => {
            let (user, password) = match (b.str("UserName"), b.str("Password")) {
                (Some(u), Some(p)) => (u, p),
                (u, _) => sh.read_credential(u)?,
            };
            vec![Obj::Credential { user, password }]
        }
        Op::GetRecipient(t) => {
            let id = identity(b, name, recipient_key)?;
            objects(recipient::get(tx, t, id.as_ref(), true).await?, |(r, e)| {
                Obj::Recipient(r, e)
            })
        }
        Op::NewRecipient(t) => {
            let (r, extra) = recipient::new(tx, t, &vals()).await?;
            whatif(
                b,
                text,
                format!("Creating {} \"{}\"", r.recipient_type, r.name),
            );
            vec![Obj::Recipient(r, extra)]
        }
        Op::SetRecipient(t) => {
            let id = required(identity(b, name, recipient_key)?, name)?;
            let ch = recipient::set(tx, t, &id, &vals()).await?;
            whatif(
                b,
                text,
                format!("Setting {} \"{}\"", t.name(), ch.before.0.name),
            );
            vec![]
        }
        Op::RemoveRecipient(t) => {
            let id = required(identity(b, name, recipient_key)?, name)?;
            let (r, _) = recipient::remove(tx, t, &id).await?;
            whatif(b, text, format!("Removing {} \"{}\"", t.name(), r.name));
            vec![]
        }
        Op::Queue(_) => match queue::find(name) {
            Some(q) => queue::run(sh, tx, q, b, text).await?,
            None => return Err(ShellError::UnknownCmdlet(name.to_string())),
        },
        Op::FormatList | Op::FormatTable | Op::ExportCmdlet => vec![],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments_become_values() {
        assert_eq!(value(&Arg::Int(None)), Value::Unlimited);
        assert_eq!(value(&Arg::Bytes(Some(5))), Value::Bytes(5));
        assert_eq!(value(&Arg::Span(60)), Value::Span(60));
    }
}
