//! Output as Exchange prints it: default table views, Format-List with Exchange's property names.

use time::OffsetDateTime;

use super::parse::format_bytes;
use super::{Obj, Val, unenforced};
use crate::ops::{
    accepted_domain, permission, receive_connector, recipient, send_connector, transport,
};
use crate::transport::queue::ops::{MessageInfo, QueueInfo, RecipientInfo};

fn multi(v: &[String]) -> String {
    format!("{{{}}}", v.join(", "))
}
fn b(v: bool) -> String {
    if v { "True" } else { "False" }.into()
}
fn opt(v: &Option<String>) -> String {
    v.clone().unwrap_or_default()
}

/// A DateTime as Exchange's shell prints it under en-US (`1/25/2019 12:03:58 AM`), in UTC:
/// the gateway's logs are in UTC too, so the two read side by side.
pub fn datetime(t: OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    let (h, ampm) = match t.hour() {
        0 => (12, "AM"),
        h @ 1..=11 => (h, "AM"),
        12 => (12, "PM"),
        h => (h - 12, "PM"),
    };
    format!(
        "{}/{}/{} {}:{:02}:{:02} {}",
        u8::from(t.month()),
        t.day(),
        t.year(),
        h,
        t.minute(),
        t.second(),
        ampm
    )
}
fn datetime_opt(t: Option<OffsetDateTime>) -> String {
    t.map(datetime).unwrap_or_default()
}

fn queue_properties(q: &QueueInfo) -> Vec<(&'static str, String)> {
    vec![
        ("Identity", q.identity.to_string()),
        ("DeliveryType", q.delivery_type.clone()),
        ("Status", q.status.to_string()),
        ("MessageCount", q.message_count.to_string()),
        ("NextHopDomain", q.next_hop_domain.clone()),
        (
            "NextHopConnector",
            q.next_hop_connector.unwrap_or_default().to_string(),
        ),
        ("LastError", opt(&q.last_error)),
        ("LastRetryTime", datetime_opt(q.last_retry_time)),
        ("NextRetryTime", datetime_opt(q.next_retry_time)),
        (
            "MessagesPerMinute",
            q.messages_per_minute
                .map(|r| r.to_string())
                .unwrap_or_default(),
        ),
    ]
}

/// One line per recipient, its delivery attempts indented under it.
fn recipients(rs: &[RecipientInfo]) -> String {
    let mut lines = Vec::new();
    for r in rs {
        let mut l = r.address.clone();
        if let Some(route) = &r.route_address {
            l.push_str(&format!(" (sent to {route})"));
        }
        l.push_str(&format!("; Status: {}", r.status));
        if let Some(ndr) = r.remove_with_ndr {
            l.push_str(if ndr {
                "; PendingRemove: with NDR"
            } else {
                "; PendingRemove: without NDR"
            });
        }
        l.push_str(&format!("; RetryCount: {}", r.retry_count));
        if let Some(e) = &r.last_error {
            l.push_str(&format!("; LastError: {e}"));
        }
        if let Some(t) = r.next_retry_time {
            l.push_str(&format!("; NextRetryTime: {}", datetime(t)));
        }
        lines.push(l);
        for a in &r.attempts {
            let mut l = format!("  {}", datetime(a.time));
            if let Some(h) = &a.next_hop {
                l.push_str(&format!("; NextHop: {h}"));
            }
            if let Some(ip) = &a.remote_ip {
                l.push_str(&format!("; IP: {ip}"));
            }
            if let Some(tls) = &a.tls_version {
                l.push_str(&format!("; TLS: {tls}"));
            }
            l.push_str(&format!("; Reply: {}", a.reply));
            lines.push(l);
        }
    }
    lines.join("\n")
}

fn certificate_properties(c: &crate::ops::certificate::Certificate) -> Vec<(&'static str, String)> {
    let now = OffsetDateTime::now_utc();
    vec![
        ("CertificateDomains", c.info.domains.join(", ")),
        ("HasPrivateKey", "True".into()),
        (
            "IsSelfSigned",
            if c.info.self_signed { "True" } else { "False" }.into(),
        ),
        ("Issuer", c.info.issuer.clone()),
        ("NotAfter", datetime(c.info.not_after)),
        ("NotBefore", datetime(c.info.not_before)),
        ("Services", c.services.to_string()),
        (
            "Status",
            if c.info.valid_at(now) {
                "Valid"
            } else {
                "DateInvalid"
            }
            .into(),
        ),
        ("Subject", c.info.subject.clone()),
        ("Thumbprint", c.info.thumbprint.clone()),
    ]
}

fn message_properties(m: &MessageInfo) -> Vec<(&'static str, String)> {
    vec![
        ("Identity", m.identity.to_string()),
        ("Subject", opt(&m.subject)),
        ("InternetMessageId", opt(&m.internet_message_id)),
        ("FromAddress", m.from_address.clone()),
        ("Status", m.status.to_string()),
        ("Size", format_bytes(Some(m.size))),
        ("MessageSourceName", m.message_source_name.clone()),
        ("SourceIP", m.source_ip.clone()),
        ("SCL", m.scl.map(|n| n.to_string()).unwrap_or_default()),
        ("DateReceived", datetime(m.date_received)),
        ("ExpirationTime", datetime(m.expiration_time)),
        ("LastError", opt(&m.last_error)),
        ("RetryCount", m.retry_count.to_string()),
        ("Queue", m.queue.to_string()),
        ("Recipients", recipients(&m.recipients)),
    ]
}

/// The identity Exchange shows for an object.
pub fn identity(o: &Obj) -> String {
    match o {
        Obj::AcceptedDomain(d) => d.name.clone(),
        Obj::SendConnector(c) => c.name.clone(),
        Obj::ReceiveConnector(c) => c.identity(),
        Obj::TransportServer(s) => s.name.clone(),
        Obj::TransportConfig(_) => "Transport Settings".into(),
        Obj::AdPermission(id, _) => id.clone(),
        Obj::Recipient(r, _) => r.name.clone(),
        Obj::Credential { user, .. } => user.clone(),
        Obj::Queue(q) => q.identity.to_string(),
        Obj::Message(m) => m.identity.to_string(),
        Obj::ExportedMessage { identity, .. } => identity.clone(),
        Obj::TrackingEntry(e) => e.internal_message_id.to_string(),
        Obj::ExchangeCertificate(c) => c.info.thumbprint.clone(),
        Obj::AcmeConfig(..) => "AcmeConfig".into(),
        Obj::IpListEntry(e) => e.id.to_string(),
        Obj::SenderFilterConfig(_) => "SenderFilterConfig".into(),
        Obj::RecipientFilterConfig(_) => "RecipientFilterConfig".into(),
        Obj::ValidRecipient(v) => v.address.clone(),
        Obj::IpBlockListProvider(p) => p.name.clone(),
        Obj::IpBlockListProvidersConfig(_) => "IPBlockListProvidersConfig".into(),
        Obj::IpBlockListConfig(_) => "IPBlockListConfig".into(),
    }
}

/// Every property, with Exchange's names, in Format-List order; a value that hubgate stores but
/// does not act on carries its caveat (`unenforced`).
pub fn properties(o: &Obj) -> Vec<(&'static str, String)> {
    raw_properties(o)
        .into_iter()
        .map(|(n, v)| (n, unenforced::shown(o, n, v)))
        .collect()
}

/// Every property as stored, without caveats.
pub fn raw_properties(o: &Obj) -> Vec<(&'static str, String)> {
    match o {
        Obj::AcceptedDomain(d) => accepted_domain::OBJECT.rows(d),
        Obj::SendConnector(c) => send_connector::OBJECT.rows(c),
        Obj::ReceiveConnector(c) => receive_connector::OBJECT.rows(c),
        Obj::TransportServer(s) => transport::SERVER.rows(s),
        Obj::TransportConfig(c) => transport::CONFIG.rows(c),
        Obj::AdPermission(id, p) => permission::OBJECT.rows(&(id.clone(), p.clone())),
        Obj::Recipient(r, extra) => recipient::Type::of(r)
            .object()
            .rows(&(r.clone(), extra.clone())),
        Obj::Credential { user, .. } => vec![
            ("UserName", user.clone()),
            ("Password", "System.Security.SecureString".into()),
        ],
        Obj::Queue(q) => queue_properties(q),
        Obj::Message(m) => message_properties(m),
        Obj::ExportedMessage { identity, bytes } => vec![
            ("Identity", identity.clone()),
            ("Size", format_bytes(Some(bytes.len() as i64))),
        ],
        Obj::TrackingEntry(e) => vec![
            ("Timestamp", datetime(e.timestamp)),
            ("ClientIp", opt(&e.client_ip)),
            ("ClientHostname", opt(&e.client_hostname)),
            ("ServerIp", opt(&e.server_ip)),
            ("ServerHostname", opt(&e.server_hostname)),
            ("SourceContext", opt(&e.source_context)),
            ("ConnectorId", opt(&e.connector_id)),
            ("Source", e.source.clone()),
            ("EventId", e.event_id.clone()),
            ("InternalMessageId", e.internal_message_id.to_string()),
            ("MessageId", opt(&e.message_id)),
            ("Recipients", multi(&e.recipients)),
            ("RecipientStatus", multi(&e.recipient_status)),
            ("TotalBytes", e.total_bytes.to_string()),
            ("RecipientCount", e.recipient_count.to_string()),
            ("RelatedRecipientAddress", opt(&e.related_recipient_address)),
            ("Reference", opt(&e.reference)),
            ("MessageSubject", opt(&e.message_subject)),
            ("Sender", e.sender.clone()),
            ("ReturnPath", e.return_path.clone()),
            ("MessageInfo", opt(&e.message_info)),
            ("Directionality", opt(&e.directionality)),
        ],
        Obj::ExchangeCertificate(c) => certificate_properties(c),
        Obj::IpListEntry(e) => super::ip_list::properties(e),
        Obj::SenderFilterConfig(c) => crate::ops::sender_filter::CONFIG.rows(c),
        Obj::RecipientFilterConfig(c) => crate::ops::recipient_filter::CONFIG.rows(c),
        Obj::ValidRecipient(v) => super::recipient_filter::properties(v),
        Obj::IpBlockListProvider(p) => crate::ops::ip_block_list::PROVIDER.rows(p),
        Obj::IpBlockListProvidersConfig(c) => crate::ops::ip_block_list::PROVIDERS_CONFIG.rows(c),
        Obj::IpBlockListConfig(c) => crate::ops::ip_block_list::BLOCK_LIST_CONFIG.rows(c),
        Obj::AcmeConfig(s, st) => vec![
            ("Enabled", if s.enabled { "True" } else { "False" }.into()),
            ("DirectoryUrl", s.directory_url.clone()),
            ("Contact", multi(&s.contact)),
            ("Domains", multi(&s.domains)),
            ("LastIssued", datetime_opt(st.last_issued)),
            ("LastError", opt(&st.last_error)),
            ("LastErrorTime", datetime_opt(st.last_error_time)),
        ],
    }
}

/// The columns Exchange's default table view shows; None means the default view is a list.
fn default_columns(o: &Obj) -> Option<&'static [&'static str]> {
    Some(match o {
        Obj::AcceptedDomain(_) => &["Name", "DomainName", "DomainType", "Default"],
        Obj::SendConnector(_) => &["Identity", "AddressSpaces", "Enabled"],
        Obj::ReceiveConnector(_) => &["Identity", "Bindings", "Enabled"],
        Obj::TransportServer(_) => &["Name", "Fqdn", "MessageExpirationTimeout"],
        Obj::AdPermission(..) => &["Identity", "User", "ExtendedRights", "Deny", "Inherited"],
        Obj::Recipient(..) => &["Name", "RecipientType", "PrimarySmtpAddress"],
        Obj::Credential { .. } => &["UserName", "Password"],
        Obj::Queue(_) => &[
            "Identity",
            "DeliveryType",
            "Status",
            "MessageCount",
            "NextHopDomain",
        ],
        Obj::Message(_) => &["Identity", "FromAddress", "Status", "Queue", "Subject"],
        Obj::ExportedMessage { .. } => &["Identity", "Size"],
        Obj::TrackingEntry(_) => &[
            "EventId",
            "Source",
            "Sender",
            "Recipients",
            "MessageSubject",
        ],
        Obj::ExchangeCertificate(_) => &["Thumbprint", "Services", "Subject"],
        Obj::IpListEntry(_) => &["Identity", "IPRange", "ExpirationTime", "Comment"],
        Obj::ValidRecipient(_) => &["Address", "Domain", "WhenCreated"],
        Obj::IpBlockListProvider(_) => &["Name", "LookupDomain", "Priority", "Enabled"],
        Obj::TransportConfig(_)
        | Obj::AcmeConfig(..)
        | Obj::SenderFilterConfig(_)
        | Obj::RecipientFilterConfig(_)
        | Obj::IpBlockListProvidersConfig(_)
        | Obj::IpBlockListConfig(_) => return None,
    })
}

pub fn default_view(objs: &[Obj]) -> String {
    match objs.first() {
        None => String::new(),
        Some(o) => match default_columns(o) {
            Some(_) => table(objs, &[]),
            None => list(objs, &[]),
        },
    }
}

fn wanted(name: &str, props: &[String]) -> bool {
    props.is_empty()
        || props.iter().any(|p| {
            p == "*" || p.eq_ignore_ascii_case(name) || {
                let pat = p.to_ascii_lowercase();
                pat.ends_with('*')
                    && name
                        .to_ascii_lowercase()
                        .starts_with(pat.trim_end_matches('*'))
            }
        })
}

/// Format-List: one `Name : value` block per object.
pub fn list(objs: &[Obj], props: &[String]) -> String {
    let mut out = String::new();
    for o in objs {
        let rows: Vec<(&str, String)> = properties(o)
            .into_iter()
            .filter(|(n, _)| wanted(n, props))
            .collect();
        let width = rows.iter().map(|(n, _)| n.len()).max().unwrap_or(0);
        out.push('\n');
        for (n, v) in rows {
            // A multi-line value (a message's recipients) continues under its first line.
            let mut lines = v.split('\n');
            out.push_str(&format!("{n:<width$} : {}\n", lines.next().unwrap_or("")));
            for l in lines {
                out.push_str(&format!("{:width$}   {l}\n", ""));
            }
        }
    }
    if !objs.is_empty() {
        out.push('\n');
    }
    out
}

/// Format-Table: the chosen columns, or the default view's.
pub fn table(objs: &[Obj], props: &[String]) -> String {
    let Some(first) = objs.first() else {
        return String::new();
    };
    let all = properties(first);
    let cols: Vec<&str> = if props.is_empty() {
        default_columns(first)
            .map(|c| c.to_vec())
            .unwrap_or_else(|| all.iter().map(|(n, _)| *n).collect())
    } else {
        all.iter()
            .map(|(n, _)| *n)
            .filter(|n| wanted(n, props))
            .collect()
    };
    let rows: Vec<Vec<String>> = objs
        .iter()
        .map(|o| {
            let ps = properties(o);
            cols.iter()
                .map(|c| {
                    ps.iter()
                        .find(|(n, _)| n == c)
                        .map(|(_, v)| v.split('\n').map(str::trim).collect::<Vec<_>>().join("; "))
                        .unwrap_or_default()
                })
                .collect()
        })
        .collect();
    let widths: Vec<usize> = cols
        .iter()
        .enumerate()
        .map(|(i, c)| {
            rows.iter()
                .map(|r| r[i].chars().count())
                .max()
                .unwrap_or(0)
                .max(c.len())
        })
        .collect();
    let line = |cells: Vec<String>| -> String {
        let mut s = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect::<Vec<_>>()
            .join(" ");
        s.truncate(s.trim_end().len());
        s.push('\n');
        s
    };
    let mut out = String::from("\n");
    out.push_str(&line(cols.iter().map(|c| c.to_string()).collect()));
    out.push_str(&line(cols.iter().map(|c| "-".repeat(c.len())).collect()));
    for r in rows {
        out.push_str(&line(r));
    }
    out.push('\n');
    out
}

/// A bare value typed at the prompt, printed as PowerShell echoes it.
pub fn value_text(v: &Val) -> String {
    match v {
        Val::Str(s) => format!("{s}\n"),
        Val::Bool(x) => format!("{}\n", b(*x)),
        Val::Null => String::new(),
        Val::List(items) => items.iter().map(value_text).collect(),
        Val::Obj(o) => default_view(std::slice::from_ref(o)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn datetimes_print_as_en_us() {
        let cases = [
            (datetime!(2019-01-25 00:03:58 UTC), "1/25/2019 12:03:58 AM"),
            (datetime!(2019-12-05 12:00:00 UTC), "12/5/2019 12:00:00 PM"),
            (datetime!(2019-12-05 23:59:09 UTC), "12/5/2019 11:59:09 PM"),
            (
                datetime!(2019-12-06 01:00:00 +02:00),
                "12/5/2019 11:00:00 PM",
            ),
        ];
        for (t, want) in cases {
            assert_eq!(datetime(t), want);
        }
    }
}
