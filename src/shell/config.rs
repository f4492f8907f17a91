//! The configuration cmdlets: bound parameters become an operation's request (`ops`), and its
//! result becomes objects, -WhatIf lines and warnings. No Exchange rule is decided here.

use sqlx::PgConnection;
use uuid::Uuid;

use super::bind::{Arg, Bound, Param, Ty};
use super::cmdlets::{Cmdlet, Op};
use super::{Obj, Shell, ShellError, queue, unenforced};
use crate::ops::permission::{self, AddADPermission};
use crate::ops::props::{Object, Value, Values};
use crate::ops::recipient;
use crate::ops::{
    Change, Identity, accepted_domain, receive_connector, send_connector, sender_filter, transport,
};
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
pub(super) fn values(b: &Bound, params: &[Param]) -> Values {
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
    b.identity(
        cmdlet,
        |s| Ok(Identity::Name(s.to_string())),
        |o| key(o).map(|(id, shown)| Identity::Id { id, shown }),
    )
}

/// The one object a Set- or Remove- acts on.
fn target(
    b: &Bound,
    cmdlet: &str,
    key: impl Fn(&Obj) -> Option<(Uuid, String)>,
) -> Result<Identity, ShellError> {
    identity(b, cmdlet, key)?.ok_or_else(|| wrong_input(cmdlet))
}

/// How the -Identity of a cmdlet recognises a piped object of its type: (id, shown).
macro_rules! key {
    ($f:ident, $p:pat => $e:expr) => {
        fn $f(o: &Obj) -> Option<(Uuid, String)> {
            match o {
                $p => Some($e),
                _ => None,
            }
        }
    };
}
key!(ad_key, Obj::AcceptedDomain(d) => (d.id, d.id.to_string()));
key!(sc_key, Obj::SendConnector(c) => (c.id, c.name.clone()));
key!(rc_key, Obj::ReceiveConnector(c) => (c.id, c.identity()));
key!(ts_key, Obj::TransportServer(s) => (Uuid::nil(), s.name.clone()));
key!(recipient_key, Obj::Recipient(r, _) => (r.id, r.name.clone()));

/// -WhatIf's line for `verb` ("Creating") done to `x`.
fn did<T>(b: &Bound, text: &mut String, verb: &str, o: &Object<T>, x: &T) {
    whatif(b, text, format!("{verb} {} \"{}\"", o.noun, (o.name)(x)));
}

/// A New- or Set-: its -WhatIf line, then its warnings.
fn changed<T: Clone>(
    b: &Bound,
    text: &mut String,
    verb: &str,
    o: &Object<T>,
    ch: &Change<T>,
    obj: impl Fn(T) -> Obj,
) {
    let shown = if verb == "Creating" {
        &ch.after
    } else {
        &ch.before
    };
    did(b, text, verb, o, shown);
    warn(text, b, ch, obj);
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
            did(b, text, "Creating", &accepted_domain::OBJECT, &d);
            vec![Obj::AcceptedDomain(d)]
        }
        Op::SetAcceptedDomain => {
            let ch = accepted_domain::set(tx, &target(b, name, ad_key)?, &vals()).await?;
            did(b, text, "Setting", &accepted_domain::OBJECT, &ch.before);
            vec![]
        }
        Op::RemoveAcceptedDomain => {
            let d = accepted_domain::remove(tx, &target(b, name, ad_key)?).await?;
            did(b, text, "Removing", &accepted_domain::OBJECT, &d);
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
            changed(
                b,
                text,
                "Creating",
                &send_connector::OBJECT,
                &ch,
                Obj::SendConnector,
            );
            vec![Obj::SendConnector(ch.after)]
        }
        Op::SetSendConnector => {
            let key = key_for_credential(sh, b).await?;
            let id = target(b, name, sc_key)?;
            let ch = send_connector::set(tx, &id, &vals(), key.as_ref()).await?;
            changed(
                b,
                text,
                "Setting",
                &send_connector::OBJECT,
                &ch,
                Obj::SendConnector,
            );
            vec![]
        }
        Op::RemoveSendConnector => {
            let c = send_connector::remove(tx, &target(b, name, sc_key)?).await?;
            did(b, text, "Removing", &send_connector::OBJECT, &c);
            vec![]
        }
        Op::GetReceiveConnector => {
            let id = identity(b, name, rc_key)?;
            let all = receive_connector::get(tx, &sh.server, id.as_ref(), true).await?;
            let on = receive_connector::on_server(all, b.str("Server").as_deref());
            objects(on, Obj::ReceiveConnector)
        }
        Op::NewReceiveConnector => {
            let ch = receive_connector::new(tx, &sh.server, &vals()).await?;
            // A preset (-Partner turns DomainSecureEnabled on by itself) warns too: that is when
            // an admin most needs to hear it.
            changed(
                b,
                text,
                "Creating",
                &receive_connector::OBJECT,
                &ch,
                Obj::ReceiveConnector,
            );
            vec![Obj::ReceiveConnector(ch.after)]
        }
        Op::SetReceiveConnector => {
            let id = target(b, name, rc_key)?;
            let ch = receive_connector::set(tx, &sh.server, &id, &vals()).await?;
            changed(
                b,
                text,
                "Setting",
                &receive_connector::OBJECT,
                &ch,
                Obj::ReceiveConnector,
            );
            vec![]
        }
        Op::RemoveReceiveConnector => {
            let c = receive_connector::remove(tx, &sh.server, &target(b, name, rc_key)?).await?;
            did(b, text, "Removing", &receive_connector::OBJECT, &c);
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
            changed(
                b,
                text,
                "Setting",
                &transport::SERVER,
                &ch,
                Obj::TransportServer,
            );
            vec![]
        }
        Op::GetTransportConfig => vec![Obj::TransportConfig(transport::get_config(tx).await?)],
        Op::SetTransportConfig => {
            let ch = transport::set_config(tx, &vals()).await?;
            whatif(b, text, "Setting Transport configuration".into());
            warn(text, b, &ch, Obj::TransportConfig);
            vec![]
        }
        Op::GetSenderFilterConfig => {
            vec![Obj::SenderFilterConfig(
                sender_filter::get_config(tx).await?,
            )]
        }
        Op::SetSenderFilterConfig => {
            let ch = sender_filter::set_config(tx, &vals()).await?;
            whatif(b, text, "Setting Sender filter configuration".into());
            warn(text, b, &ch, Obj::SenderFilterConfig);
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
                // Send-XShadow gates shadow redundancy; the other send rights are not read yet.
                if req.connector.is_send
                    && req
                        .rights
                        .iter()
                        .any(|r| *r != rights::ExtendedRight::SendXShadow)
                {
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
            let sealed = b.str("EncryptedPassword");
            let (user, password) = match (b.str("UserName"), b.str("Password")) {
                (Some(u), None) if let Some(s) = sealed => {
                    let p = super::restore::open_credential(sh, &u, &s).await?;
                    (u, p)
                }
                (_, _) if sealed.is_some() => {
                    return Err(ShellError::Parse(
                        "Get-Credential -EncryptedPassword needs -UserName, and no -Password."
                            .into(),
                    ));
                }
                (Some(u), Some(p)) => (u, p),
                (u, _) => sh.read_credential(u)?,
            };
            vec![Obj::Credential { user, password }]
        }
        Op::NewUser => super::restore::new_user(sh, tx, b).await?,
        Op::GetRecipient(t) => {
            let id = identity(b, name, recipient_key)?;
            objects(recipient::get(tx, t, id.as_ref(), true).await?, |(r, e)| {
                Obj::Recipient(r, e)
            })
        }
        Op::NewRecipient(t) => {
            let (r, extra) = recipient::new(tx, t, &vals()).await?;
            let o = (r, extra);
            did(b, text, "Creating", t.object(), &o);
            vec![Obj::Recipient(o.0, o.1)]
        }
        Op::SetRecipient(t) => {
            let ch = recipient::set(tx, t, &target(b, name, recipient_key)?, &vals()).await?;
            did(b, text, "Setting", t.object(), &ch.before);
            vec![]
        }
        Op::RemoveRecipient(t) => {
            let o = recipient::remove(tx, t, &target(b, name, recipient_key)?).await?;
            did(b, text, "Removing", t.object(), &o);
            vec![]
        }
        Op::Queue(_) => match queue::find(name) {
            Some(q) => queue::run(sh, tx, q, b, text).await?,
            None => return Err(ShellError::UnknownCmdlet(name.to_string())),
        },
        Op::Certificate(_) => match super::certificate::find(name) {
            Some(c) => super::certificate::run(sh, c, b, text)?,
            None => return Err(ShellError::UnknownCmdlet(name.to_string())),
        },
        Op::IpList(_) => match super::ip_list::find(name) {
            Some(c) => super::ip_list::run(tx, c, b, text).await?,
            None => return Err(ShellError::UnknownCmdlet(name.to_string())),
        },
        Op::GetRecipientFilterConfig => vec![Obj::RecipientFilterConfig(
            crate::ops::recipient_filter::get_config(tx).await?,
        )],
        Op::SetRecipientFilterConfig => {
            let ch = crate::ops::recipient_filter::set_config(tx, &vals()).await?;
            whatif(b, text, "Setting Recipient filter configuration".into());
            warn(text, b, &ch, Obj::RecipientFilterConfig);
            vec![]
        }
        Op::ValidRecipient(_) => match super::recipient_filter::find(name) {
            Some(c) => super::recipient_filter::run(tx, c, b, text).await?,
            None => return Err(ShellError::UnknownCmdlet(name.to_string())),
        },
        Op::IpBlockList(op) => super::ip_block_list::run(tx, op, c, b, text).await?,
        Op::FormatList
        | Op::FormatTable
        | Op::ExportCmdlet
        | Op::SelectObject
        | Op::SortObject
        | Op::WhereObject => vec![],
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
