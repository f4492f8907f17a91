//! Writes objects back as the cmdlets that create them: the console's wizard Completion pages
//! and configuration export both use this. Running the output on an empty organisation
//! re-creates an identical object.

use sqlx::PgConnection;

use super::{Obj, ShellError};
use crate::ops::props::quote as q;
use crate::ops::{
    accepted_domain, permission, receive_connector, recipient, send_connector, transport,
};
use crate::org::{
    AcceptedDomain, ReceiveConnector, Recipient, SendConnector, TransportConfig, TransportServer,
};

/// The cmdlet (or, for a credential, the lines) that creates `o`.
pub fn new_cmdlet(o: &Obj) -> String {
    match o {
        Obj::AcceptedDomain(d) => accepted_domain(d),
        Obj::SendConnector(c) => send_connector(c),
        Obj::ReceiveConnector(c) => receive_connector(c),
        Obj::TransportServer(s) => transport_server(s),
        Obj::TransportConfig(c) => transport_config(c),
        Obj::AdPermission(id, p) => permission::OBJECT.export(&(id.clone(), p.clone())),
        Obj::Recipient(r, extra) => recipient(r, extra),
        // The password is never printed: Get-Credential asks for it when the line runs.
        Obj::Credential { user, .. } => format!("Get-Credential -UserName {}\n", q(user)),
        // Queues and messages are state, not configuration: nothing creates them from a line.
        Obj::Queue(_)
        | Obj::Message(_)
        | Obj::ExportedMessage { .. }
        | Obj::TrackingEntry(_)
        | Obj::ExchangeCertificate(_)
        | Obj::AcmeConfig(..) => String::new(),
    }
}

fn accepted_domain(d: &AcceptedDomain) -> String {
    let mut out = accepted_domain::OBJECT.export(d);
    if d.is_default {
        out.push_str(&format!(
            "Set-AcceptedDomain {} -MakeDefault $true\n",
            q(&d.name)
        ));
    }
    out
}

fn send_connector(c: &SendConnector) -> String {
    send_connector::OBJECT.export(c)
}

fn receive_connector(c: &ReceiveConnector) -> String {
    receive_connector::OBJECT.export(c)
}

fn transport_server(s: &TransportServer) -> String {
    transport::SERVER.export(s)
}

fn transport_config(c: &TransportConfig) -> String {
    transport::CONFIG.export(c)
}

fn recipient(r: &Recipient, extra: &[String]) -> String {
    recipient::Type::of(r)
        .object()
        .export(&(r.clone(), extra.to_vec()))
}

/// The whole organisation as a script: objects first, then the ACL entries added by hand.
pub async fn organisation_script(conn: &mut PgConnection) -> Result<String, ShellError> {
    let mut out = String::from("# hubgate organisation export\n");
    for d in AcceptedDomain::load_all_in(conn).await? {
        out.push_str(&accepted_domain(&d));
    }
    for (r, extra) in Recipient::load_all(conn).await? {
        out.push_str(&recipient(&r, &extra));
    }
    out.push_str(&transport_config(&TransportConfig::load_in(conn).await?));
    for s in TransportServer::load_all(conn).await? {
        out.push_str(&transport_server(&s));
    }
    let mut connectors: Vec<(uuid::Uuid, String)> = vec![];
    for c in SendConnector::load_all_in(conn).await? {
        out.push_str(&send_connector(&c));
        connectors.push((c.id, c.name.clone()));
    }
    for c in ReceiveConnector::load_all(conn).await? {
        out.push_str(&receive_connector(&c));
        connectors.push((c.id, c.identity()));
    }
    for (id, identity) in connectors {
        for p in crate::org::rights::load_acl(conn, id).await? {
            if p.permission_group.is_none() {
                out.push_str(&new_cmdlet(&Obj::AdPermission(identity.clone(), p)));
            }
        }
    }
    Ok(out)
}
