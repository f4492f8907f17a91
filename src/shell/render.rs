//! Writes objects back as the cmdlets that create them: the console's wizard Completion pages,
//! Export-Cmdlet and `hubgate backup` (`backup.rs`) all use this. Running the output on an empty
//! organisation re-creates an identical object.

use super::Obj;
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
        Obj::IpListEntry(e) => ip_list_entry(e),
        Obj::SenderFilterConfig(c) => crate::ops::sender_filter::CONFIG.export(c),
        Obj::RecipientFilterConfig(c) => crate::ops::recipient_filter::CONFIG.export(c),
        Obj::ValidRecipient(v) => format!("Add-ValidRecipient -Address {}\n", q(&v.address)),
        Obj::IpBlockListProvider(p) => crate::ops::ip_block_list::PROVIDER.export(p),
        Obj::IpBlockListProvidersConfig(c) => crate::ops::ip_block_list::PROVIDERS_CONFIG.export(c),
        Obj::IpBlockListConfig(c) => crate::ops::ip_block_list::BLOCK_LIST_CONFIG.export(c),
    }
}

fn ip_list_entry(e: &crate::org::ip_list::IpListEntry) -> String {
    let noun = match e.list {
        crate::org::ip_list::IpList::Allow => "IPAllowListEntry",
        crate::org::ip_list::IpList::Block => "IPBlockListEntry",
    };
    let mut out = format!("Add-{noun} -IPRange {}", q(&e.ip_range));
    if let Some(t) = e.expiration_time {
        out.push_str(&format!(
            " -ExpirationTime {}",
            q(&super::format::datetime(t))
        ));
    }
    if let Some(c) = &e.comment {
        out.push_str(&format!(" -Comment {}", q(c)));
    }
    out.push('\n');
    out
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
