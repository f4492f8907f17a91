//! Delivery status notifications: NDRs and delay DSNs as RFC 3464 multipart/report messages,
//! worded as Exchange 2010 words them (reference §7).
//!
//! A DSN has three parts (RFC 3462/6522): the text for people, with Exchange's "Diagnostic
//! information for administrators" block; the machine-readable message/delivery-status; and the
//! original message (message/rfc822) or only its header (text/rfc822-headers), per RET.
//!
//! Who gets one (RFC 3461): only recipients whose NOTIFY asks for this kind, and never the null
//! sender. A DSN is sent from the null sender, so a DSN about a DSN is never generated and a DSN
//! that fails is dropped rather than looped.
//!
//! Values from envelopes, peers and the original message end up in header fields here, so every
//! such value has CR and LF removed. Pure: builds bytes, never queues or sends them.

use std::time::Duration;

use base64::Engine;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc2822;
use uuid::Uuid;

use crate::smtp::proto::Reply;
use crate::transport::headers;

/// Originals above this size come back as headers only unless the caller picks another cap:
/// Exchange's default MaxSendSize, so a returned message is never larger than one we would send.
pub const DEFAULT_MAX_RETURNED_SIZE: u64 = 10 * 1024 * 1024;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DsnKind {
    /// An NDR: delivery failed for good.
    Failure,
    /// Delivery is late but still being attempted.
    Delay,
}

impl DsnKind {
    fn notify_keyword(self) -> &'static str {
        match self {
            DsnKind::Failure => "FAILURE",
            DsnKind::Delay => "DELAY",
        }
    }

    fn action(self) -> &'static str {
        match self {
            DsnKind::Failure => "failed",
            DsnKind::Delay => "delayed",
        }
    }
}

/// Does a recipient's NOTIFY (as `message_recipient.notify` stores it: `SUCCESS,FAILURE,DELAY`
/// or `NEVER`) ask for a DSN of `kind`? Without NOTIFY, RFC 3461 §5.1 leaves it to the MTA;
/// Exchange sends both failures and delays, and so does hubgate.
pub fn should_notify(notify: Option<&str>, kind: DsnKind) -> bool {
    match notify {
        None => true,
        Some(list) => list
            .split(',')
            .any(|k| k.trim().eq_ignore_ascii_case(kind.notify_keyword())),
    }
}

/// Is `sender` the null reverse-path? Nothing is ever sent back to it.
pub fn is_null_sender(sender: &str) -> bool {
    let s = sender.trim();
    s.is_empty() || s == "<>"
}

/// The server issuing DSNs.
#[derive(Clone, Debug)]
pub struct Reporter {
    /// Reporting-MTA and "Generating server".
    pub fqdn: String,
    /// The DSN's From: Exchange uses postmaster@<default accepted domain>.
    pub postmaster: String,
    /// Larger originals are returned as headers only, whatever RET says.
    pub max_returned_size: u64,
}

/// The message a DSN reports on, with its envelope.
#[derive(Clone, Debug)]
pub struct Original<'a> {
    /// MAIL FROM; empty for the null sender.
    pub sender: &'a str,
    /// ENVID, xtext-decoded as the queue stores it.
    pub env_id: Option<&'a str>,
    /// RET as stored: `FULL`, `HDRS` or none.
    pub ret: Option<&'a str>,
    pub arrival_date: OffsetDateTime,
    /// The whole message as spooled (CRLF lines).
    pub content: &'a [u8],
}

/// One recipient's outcome.
#[derive(Clone, Debug)]
pub struct RecipientOutcome {
    pub address: String,
    /// ORCPT as stored: `rfc822;addr`, xtext-decoded.
    pub orcpt: Option<String>,
    /// NOTIFY as stored.
    pub notify: Option<String>,
    /// The final error (NDR) or the last error so far (delay).
    pub reply: Reply,
    /// The host that gave `reply`, when it came from a remote server.
    pub remote_mta: Option<String>,
}

/// A DSN ready to queue: always sent from the null sender to `envelope_to`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Dsn {
    pub envelope_to: String,
    pub message: Vec<u8>,
}

/// What the third part carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Returned {
    Full,
    Headers,
}

/// The NDR for `recipients`, or None when nobody is to be told.
pub fn build_ndr(
    reporter: &Reporter,
    original: &Original,
    recipients: &[RecipientOutcome],
    now: OffsetDateTime,
) -> Option<Dsn> {
    build(reporter, original, recipients, DsnKind::Failure, None, now)
}

/// The delay DSN for `recipients`, who will be tried until `will_retry_until` (the message's
/// expiry), or None when nobody is to be told.
pub fn build_delay(
    reporter: &Reporter,
    original: &Original,
    recipients: &[RecipientOutcome],
    will_retry_until: OffsetDateTime,
    now: OffsetDateTime,
) -> Option<Dsn> {
    build(
        reporter,
        original,
        recipients,
        DsnKind::Delay,
        Some(will_retry_until),
        now,
    )
}

fn build(
    reporter: &Reporter,
    original: &Original,
    recipients: &[RecipientOutcome],
    kind: DsnKind,
    will_retry_until: Option<OffsetDateTime>,
    now: OffsetDateTime,
) -> Option<Dsn> {
    if is_null_sender(original.sender) {
        return None;
    }
    let told: Vec<&RecipientOutcome> = recipients
        .iter()
        .filter(|r| should_notify(r.notify.as_deref(), kind))
        .collect();
    if told.is_empty() {
        return None;
    }
    let (header, _) = headers::split(original.content);
    let subject = headers::value(header, "Subject").unwrap_or_default();
    let text = match (kind, will_retry_until) {
        (DsnKind::Delay, Some(until)) => delay_text(reporter, &told, &subject, until - now),
        _ => ndr_text(reporter, &told),
    };
    let text = format!("{text}Original message headers:\r\n\r\n")
        .into_bytes()
        .into_iter()
        .chain(header.iter().copied())
        .collect::<Vec<u8>>();
    let status = delivery_status(reporter, original, &told, kind, will_retry_until);
    let boundary = format!("hubgate-{}", Uuid::new_v4().simple());
    let mut out = top_header(reporter, original, kind, &subject, header, &boundary, now);
    push_part(&mut out, &boundary, &text_part(&text));
    push_part(&mut out, &boundary, &status);
    push_part(
        &mut out,
        &boundary,
        &returned_part(
            original,
            returned(original, kind, reporter.max_returned_size),
        ),
    );
    out.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    Some(Dsn {
        envelope_to: clean(original.sender.trim_matches(['<', '>'])),
        message: out,
    })
}

fn top_header(
    reporter: &Reporter,
    original: &Original,
    kind: DsnKind,
    subject: &str,
    original_header: &[u8],
    boundary: &str,
    now: OffsetDateTime,
) -> Vec<u8> {
    let prefix = match kind {
        DsnKind::Failure => "Undeliverable: ",
        DsnKind::Delay => "Delivery delayed: ",
    };
    let mut h = String::new();
    h.push_str(&format!("From: {}\r\n", clean(&reporter.postmaster)));
    h.push_str(&format!(
        "To: {}\r\n",
        clean(original.sender.trim_matches(['<', '>']))
    ));
    h.push_str(&format!("Date: {}\r\n", rfc2822(now)));
    h.push_str(&format!(
        "Subject: {}\r\n",
        encode_header_text(&format!("{prefix}{subject}"))
    ));
    h.push_str(&format!(
        "Message-ID: <{}@{}>\r\n",
        Uuid::new_v4().simple(),
        clean(&reporter.fqdn)
    ));
    if let Some(id) = headers::value(original_header, "Message-ID") {
        h.push_str(&format!("In-Reply-To: {}\r\n", clean(&id)));
    }
    // RFC 3834: marks the DSN as machine-generated so that responders do not answer it.
    h.push_str("Auto-Submitted: auto-replied\r\n");
    h.push_str("Content-Language: en-US\r\n");
    h.push_str("MIME-Version: 1.0\r\n");
    h.push_str(&format!(
        "Content-Type: multipart/report; report-type=delivery-status;\r\n\tboundary=\"{boundary}\"\r\n\r\n"
    ));
    h.into_bytes()
}

/// The people's part of an NDR (reference §7).
fn ndr_text(reporter: &Reporter, recipients: &[&RecipientOutcome]) -> String {
    let mut t = String::from("Delivery has failed to these recipients or groups:\r\n\r\n");
    for r in recipients {
        t.push_str(&format!("{}\r\n", clean(&r.address)));
        if let Some(why) = explanation(r) {
            t.push_str(&format!("{why}\r\n"));
        }
        t.push_str("\r\n");
    }
    t.push_str(&admin_block(reporter, recipients));
    t
}

/// The people's part of a delay DSN (reference §7, Exchange 2010's wording).
fn delay_text(
    reporter: &Reporter,
    recipients: &[&RecipientOutcome],
    subject: &str,
    remaining: time::Duration,
) -> String {
    let mut t = String::from("Delivery is delayed to these recipients or groups:\r\n\r\n");
    for r in recipients {
        t.push_str(&format!("{}\r\n", clean(&r.address)));
    }
    t.push_str(&format!("\r\nSubject: {}\r\n\r\n", clean(subject)));
    t.push_str(
        "This message hasn't been delivered yet. Delivery will continue to be attempted.\r\n\r\n",
    );
    let remaining = Duration::from_secs(u64::try_from(remaining.whole_seconds()).unwrap_or(0));
    t.push_str(&format!(
        "The server will keep trying to deliver this message for the next {}. \
         You'll be notified if the message can't be delivered by that time.\r\n\r\n",
        remaining_time(remaining)
    ));
    t.push_str(&admin_block(reporter, recipients));
    t
}

/// "N days, H hours and M minutes", whole minutes, each unit singular when it is 1.
pub fn remaining_time(d: Duration) -> String {
    let minutes = d.as_secs() / 60;
    let unit = |n: u64, one: &str| {
        if n == 1 {
            format!("1 {one}")
        } else {
            format!("{n} {one}s")
        }
    };
    format!(
        "{}, {} and {}",
        unit(minutes / (24 * 60), "day"),
        unit(minutes / 60 % 24, "hour"),
        unit(minutes % 60, "minute")
    )
}

/// "Diagnostic information for administrators": Exchange's `#<reply> ##` line per recipient,
/// led by the remote host when a remote server gave the reply.
fn admin_block(reporter: &Reporter, recipients: &[&RecipientOutcome]) -> String {
    let mut t = format!(
        "Diagnostic information for administrators:\r\n\r\nGenerating server: {}\r\n\r\n",
        clean(&reporter.fqdn)
    );
    for r in recipients {
        let host = r
            .remote_mta
            .as_deref()
            .map(|h| format!("{} ", clean(h)))
            .unwrap_or_default();
        t.push_str(&format!(
            "{}\r\n{host}#{} ##\r\n\r\n",
            clean(&r.address),
            clean(&r.reply.one_line())
        ));
    }
    t
}

/// A line for people under the address, where Exchange has one we know (**INFERRED** wording
/// from Exchange 2007/2010 NDRs; others get only the diagnostic block).
fn explanation(r: &RecipientOutcome) -> Option<String> {
    if let Some(host) = &r.remote_mta {
        return Some(format!(
            "The following organization rejected your message: {}.",
            clean(host)
        ));
    }
    match r.reply.enhanced.as_deref() {
        Some("5.1.1") => Some(
            "The e-mail address you entered couldn't be found. Please check the recipient's \
             e-mail address and try to resend the message. If the problem continues, please \
             contact your helpdesk."
                .into(),
        ),
        _ => None,
    }
}

/// The message/delivery-status part (RFC 3464 §2.2, §2.3), header included.
fn delivery_status(
    reporter: &Reporter,
    original: &Original,
    recipients: &[&RecipientOutcome],
    kind: DsnKind,
    will_retry_until: Option<OffsetDateTime>,
) -> Vec<u8> {
    let mut f = String::new();
    if let Some(envid) = original.env_id {
        f.push_str(&format!("Original-Envelope-Id: {}\r\n", clean(envid)));
    }
    f.push_str(&format!("Reporting-MTA: dns;{}\r\n", clean(&reporter.fqdn)));
    f.push_str(&format!(
        "Arrival-Date: {}\r\n",
        rfc2822(original.arrival_date)
    ));
    for r in recipients {
        f.push_str("\r\n");
        if let Some(orcpt) = &r.orcpt {
            f.push_str(&format!("Original-Recipient: {}\r\n", typed_address(orcpt)));
        }
        f.push_str(&format!(
            "Final-Recipient: {}\r\n",
            typed_address(&format!("rfc822;{}", r.address))
        ));
        f.push_str(&format!("Action: {}\r\n", kind.action()));
        f.push_str(&format!("Status: {}\r\n", status_code(&r.reply)));
        if let Some(host) = &r.remote_mta {
            f.push_str(&format!("Remote-MTA: dns;{}\r\n", clean(host)));
        }
        f.push_str(&format!(
            "Diagnostic-Code: smtp;{}\r\n",
            clean(&r.reply.one_line())
        ));
        if let Some(until) = will_retry_until {
            f.push_str(&format!("Will-Retry-Until: {}\r\n", rfc2822(until)));
        }
    }
    // RFC 6533: UTF-8 addresses need the global form of the report.
    let ctype = if f.is_ascii() {
        "message/delivery-status"
    } else {
        "message/global-delivery-status"
    };
    let cte = if f.is_ascii() { "7bit" } else { "8bit" };
    format!("Content-Type: {ctype}\r\nContent-Transfer-Encoding: {cte}\r\n\r\n{f}").into_bytes()
}

/// `type;address` with the type as given, or `utf-8` (RFC 6533) when an rfc822 address is not ASCII.
fn typed_address(typed: &str) -> String {
    let typed = clean(typed);
    let (kind, addr) = typed.split_once(';').unwrap_or(("rfc822", &typed));
    let kind = if kind.eq_ignore_ascii_case("rfc822") && !addr.is_ascii() {
        "utf-8"
    } else {
        kind
    };
    format!("{kind};{addr}")
}

/// The enhanced code as given (4.4.7 stays 4.4.7 under a 550, as Exchange has it), else the class.
fn status_code(reply: &Reply) -> String {
    reply
        .enhanced
        .clone()
        .unwrap_or_else(|| format!("{}.0.0", reply.code / 100))
}

/// RET=HDRS returns headers; RET=FULL and an NDR without RET return the whole message when it
/// fits under the cap; a delay without RET returns headers (the sender still has a copy coming).
fn returned(original: &Original, kind: DsnKind, cap: u64) -> Returned {
    let ret = original.ret.map(|r| r.trim().to_ascii_uppercase());
    let wants_full = match ret.as_deref() {
        Some("HDRS") => false,
        Some("FULL") => true,
        _ => kind == DsnKind::Failure,
    };
    if wants_full && original.content.len() as u64 <= cap {
        Returned::Full
    } else {
        Returned::Headers
    }
}

fn returned_part(original: &Original, what: Returned) -> Vec<u8> {
    let (header, _) = headers::split(original.content);
    let (ctype, content) = match what {
        Returned::Full => ("message/rfc822", original.content),
        Returned::Headers => ("text/rfc822-headers", header),
    };
    let cte = if content.is_ascii() { "7bit" } else { "8bit" };
    let mut part =
        format!("Content-Type: {ctype}\r\nContent-Transfer-Encoding: {cte}\r\n\r\n").into_bytes();
    part.extend_from_slice(content);
    part
}

/// The text part: plain ASCII goes as is, anything else in base64 so no 8BITMIME is needed.
fn text_part(text: &[u8]) -> Vec<u8> {
    if text.is_ascii() {
        let mut p = b"Content-Type: text/plain; charset=us-ascii\r\nContent-Transfer-Encoding: 7bit\r\n\r\n".to_vec();
        p.extend_from_slice(text);
        return p;
    }
    let mut p =
        b"Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\n"
            .to_vec();
    let encoded = base64::engine::general_purpose::STANDARD.encode(text);
    for line in encoded.as_bytes().chunks(76) {
        p.extend_from_slice(line);
        p.extend_from_slice(b"\r\n");
    }
    p
}

/// The CRLF in front of a boundary belongs to the boundary (RFC 2046 §5.1.1), so one more is
/// written after each part: otherwise its last line would lose its line end.
fn push_part(out: &mut Vec<u8>, boundary: &str, part: &[u8]) {
    out.extend_from_slice(format!("--{boundary}\r\n").as_bytes());
    out.extend_from_slice(part);
    if !part.ends_with(b"\r\n") {
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

/// RFC 2047 B-encoding for non-ASCII header text (a raw UTF-8 subject from an SMTPUTF8 message),
/// in words short enough to keep header lines under 78 characters.
fn encode_header_text(s: &str) -> String {
    let s = clean(s);
    if s.is_ascii() {
        return s;
    }
    let mut words = Vec::new();
    let mut chunk = String::new();
    for c in s.chars() {
        if chunk.len() + c.len_utf8() > 45 {
            words.push(std::mem::take(&mut chunk));
        }
        chunk.push(c);
    }
    words.push(chunk);
    words
        .iter()
        .map(|w| {
            format!(
                "=?utf-8?B?{}?=",
                base64::engine::general_purpose::STANDARD.encode(w)
            )
        })
        .collect::<Vec<_>>()
        .join("\r\n ")
}

/// Removes line breaks from values that come from envelopes, peers or the original message.
fn clean(s: &str) -> String {
    s.replace(['\r', '\n'], " ")
}

fn rfc2822(t: OffsetDateTime) -> String {
    t.format(&Rfc2822).unwrap_or_default()
}

#[cfg(test)]
mod tests;
