//! One mail transaction on an established connection: MAIL, RCPT, DATA with per-recipient
//! outcomes (RFC 5321 §3.3), pipelined when the server offers it (RFC 2920), with SIZE
//! (RFC 1870), BODY=8BITMIME (RFC 6152), SMTPUTF8 (RFC 6531) and DSN parameters (RFC 3461).
//!
//! Reads untrusted input (replies) through `Conn`. Addresses and parameter values are checked
//! before they are written so that nothing from a queued message can inject a command line.

use super::ClientError;
use super::conn::Conn;
use super::session::{Extensions, OutboundEnvelope, OutboundRecipient};
use crate::logs::protocol::event;
use crate::smtp::proto::{Reply, xtext_encode};

/// The body is stuffed and written in pieces of this size, so a large message never needs a
/// second full copy in memory.
const BODY_CHUNK: usize = 64 * 1024;

/// RCPT commands per pipelined write; see `envelope_pipelined`.
const PIPELINE_GROUP: usize = 100;

/// Runs one transaction; see `Client::send` for the contract.
pub(super) async fn send(
    conn: &mut Conn,
    ext: &Extensions,
    env: &OutboundEnvelope<'_>,
    message: &[u8],
    shadow_id: Option<&str>,
) -> Result<Vec<Reply>, ClientError> {
    let n = env.recipients.len();
    if let Some(reply) = refuse_locally(env, ext) {
        return Ok(vec![reply; n]);
    }
    let mut outcomes: Vec<Option<Reply>> = env
        .recipients
        .iter()
        .map(|r| {
            (!is_valid_address(&r.address))
                .then(|| Reply::new(550, "5.1.3", "Invalid recipient address"))
        })
        .collect();
    let to_send: Vec<usize> = (0..n).filter(|&i| outcomes[i].is_none()).collect();
    if to_send.is_empty() {
        return Ok(finish(outcomes));
    }
    // Exchange's `<id>;<recipients>,sending message`, the counterpart of the receive side's
    // `receiving message`. Exchange also writes the message's arrival time in between, which the
    // client is not told.
    let shown = match env.log_id {
        Some(id) => format!("{id};{n}"),
        None => n.to_string(),
    };
    conn.log_event(event::INFORMATION, &shown, "sending message");
    let mail = mail_command(env, ext, shadow_id);
    let rcpts: Vec<String> = to_send
        .iter()
        .map(|&i| rcpt_command(&env.recipients[i], ext))
        .collect();
    let replies = if ext.pipelining {
        envelope_pipelined(conn, &mail, &rcpts).await?
    } else {
        envelope_lockstep(conn, &mail, &rcpts).await?
    };

    if !is_2xx(&replies.mail) {
        for &i in &to_send {
            outcomes[i] = Some(replies.mail.clone());
        }
        abandon(conn, replies.data.as_ref()).await;
        return Ok(finish(outcomes));
    }
    let mut accepted = Vec::new();
    for (&i, reply) in to_send.iter().zip(replies.rcpts) {
        if is_2xx(&reply) {
            accepted.push(i);
        } else {
            outcomes[i] = Some(reply);
        }
    }
    let data = match replies.data {
        Some(data) if !accepted.is_empty() => data,
        data => {
            abandon(conn, data.as_ref()).await;
            return Ok(finish(outcomes));
        }
    };
    let final_reply = if data.code == 354 {
        write_body(conn, message).await?;
        conn.read_reply().await?
    } else {
        abandon(conn, None).await;
        data
    };
    for i in accepted {
        outcomes[i] = Some(final_reply.clone());
    }
    Ok(finish(outcomes))
}

/// Refusals decided from the EHLO answer alone, before anything is sent.
fn refuse_locally(env: &OutboundEnvelope<'_>, ext: &Extensions) -> Option<Reply> {
    if env.smtp_utf8 && !ext.smtputf8 {
        return Some(Reply::new(
            550,
            "5.6.7",
            "The message needs SMTPUTF8 but the remote server does not support it",
        ));
    }
    if ext.size.is_some_and(|max| max > 0 && env.size > max) {
        return Some(Reply::new(
            552,
            "5.3.4",
            "Message size exceeds fixed maximum message size",
        ));
    }
    if !env.from.is_empty() && !is_valid_address(env.from) {
        return Some(Reply::new(550, "5.1.7", "Invalid sender address"));
    }
    None
}

fn finish(outcomes: Vec<Option<Reply>>) -> Vec<Reply> {
    outcomes
        .into_iter()
        .map(|o| o.expect("every recipient has an outcome"))
        .collect()
}

fn is_2xx(r: &Reply) -> bool {
    (200..300).contains(&r.code)
}

/// Anything that could end the command line or the `<...>` early is refused, as are other
/// controls; the address itself was checked when the message was received.
fn is_valid_address(a: &str) -> bool {
    !a.is_empty() && a.len() <= 512 && !a.chars().any(|c| c.is_control() || c == '<' || c == '>')
}

/// A keyword-list value (NOTIFY, RET) may only hold letters and commas.
fn is_keyword_list(v: &str) -> bool {
    !v.is_empty() && v.bytes().all(|b| b.is_ascii_alphanumeric() || b == b',')
}

/// The MAIL line; `shadow_id` (the shadow message id, in a shadowed session) goes after SIZE and
/// before BODY, in Exchange's parameter order (reference §1.2).
pub(super) fn mail_command(
    env: &OutboundEnvelope<'_>,
    ext: &Extensions,
    shadow_id: Option<&str>,
) -> String {
    let mut line = format!("MAIL FROM:<{}>", env.from);
    if ext.size.is_some() {
        line.push_str(&format!(" SIZE={}", env.size));
    }
    if let Some(id) = shadow_id.filter(|id| !id.is_empty()) {
        line.push_str(&format!(" XSHADOW={}", xtext_encode(id)));
    }
    if env.body_8bit && ext.eight_bit_mime {
        line.push_str(" BODY=8BITMIME");
    }
    if env.smtp_utf8 && ext.smtputf8 {
        line.push_str(" SMTPUTF8");
    }
    if ext.dsn {
        if let Some(ret) = env.ret.filter(|r| is_keyword_list(r)) {
            line.push_str(&format!(" RET={}", ret.to_ascii_uppercase()));
        }
        if let Some(envid) = env.env_id.filter(|e| !e.is_empty()) {
            line.push_str(&format!(" ENVID={}", xtext_encode(envid)));
        }
    }
    line.push_str("\r\n");
    line
}

pub(super) fn rcpt_command(rcpt: &OutboundRecipient, ext: &Extensions) -> String {
    let mut line = format!("RCPT TO:<{}>", rcpt.address);
    if ext.dsn {
        if let Some(notify) = rcpt.notify.as_deref().filter(|n| is_keyword_list(n)) {
            line.push_str(&format!(" NOTIFY={}", notify.to_ascii_uppercase()));
        }
        if let Some(orcpt) = rcpt.orcpt.as_deref().and_then(orcpt_param) {
            line.push_str(&format!(" ORCPT={orcpt}"));
        }
    }
    line.push_str("\r\n");
    line
}

/// `rfc822;bob@example` (decoded, as the receive side stores it) or a bare address, which is
/// taken as rfc822. The address part is xtext-encoded on the way out.
fn orcpt_param(orcpt: &str) -> Option<String> {
    let (kind, addr) = match orcpt.split_once(';') {
        Some((kind, addr)) => (kind, addr),
        None => ("rfc822", orcpt),
    };
    let kind_ok = !kind.is_empty() && kind.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
    (kind_ok && !addr.is_empty()).then(|| format!("{kind};{}", xtext_encode(addr)))
}

struct EnvelopeReplies {
    mail: Reply,
    /// One per RCPT sent; empty when MAIL was refused in lock-step mode.
    rcpts: Vec<Reply>,
    /// None when DATA was not sent.
    data: Option<Reply>,
}

/// MAIL, the RCPTs and DATA written in groups, each group's replies read before the next one is
/// written (RFC 2920 §3.1 allows DATA as the last command of a group). With thousands of
/// recipients in one write, the server's unread replies could fill both sockets' buffers while we
/// are still writing, and each side would wait for the other until the timeout.
async fn envelope_pipelined(
    conn: &mut Conn,
    mail: &str,
    rcpts: &[String],
) -> Result<EnvelopeReplies, ClientError> {
    let groups = rcpts.len().div_ceil(PIPELINE_GROUP).max(1);
    let mut mail_reply = None;
    let mut rcpt_replies = Vec::with_capacity(rcpts.len());
    let mut data = None;
    for (g, group) in rcpts.chunks(PIPELINE_GROUP).enumerate() {
        let first = g == 0;
        let last = g + 1 == groups;
        let mut batch = String::with_capacity(
            mail.len() + group.iter().map(String::len).sum::<usize>() + "DATA\r\n".len(),
        );
        if first {
            batch.push_str(mail);
        }
        for r in group {
            batch.push_str(r);
        }
        if last {
            batch.push_str("DATA\r\n");
        }
        conn.write_commands(&batch).await?;
        if first {
            mail_reply = Some(conn.read_reply().await?);
        }
        for _ in group {
            rcpt_replies.push(conn.read_reply().await?);
        }
        if last {
            data = Some(conn.read_reply().await?);
        }
    }
    let mail = mail_reply
        .ok_or_else(|| ClientError::Protocol("a transaction without recipients".into()))?;
    Ok(EnvelopeReplies {
        mail,
        rcpts: rcpt_replies,
        data,
    })
}

async fn envelope_lockstep(
    conn: &mut Conn,
    mail: &str,
    rcpts: &[String],
) -> Result<EnvelopeReplies, ClientError> {
    let mail = conn.command(mail).await?;
    if !is_2xx(&mail) {
        return Ok(EnvelopeReplies {
            mail,
            rcpts: Vec::new(),
            data: None,
        });
    }
    let mut rcpt_replies = Vec::with_capacity(rcpts.len());
    for r in rcpts {
        rcpt_replies.push(conn.command(r).await?);
    }
    let data = if rcpt_replies.iter().any(is_2xx) {
        Some(conn.command("DATA\r\n").await?)
    } else {
        None
    };
    Ok(EnvelopeReplies {
        mail,
        rcpts: rcpt_replies,
        data,
    })
}

/// Ends a transaction that will not deliver. A server that answered a pipelined DATA with 354
/// although nothing was accepted is waiting for a message; an empty one ends that state
/// (RFC 2920 §3.1). Failures only make the connection unusable: the outcomes are already known.
async fn abandon(conn: &mut Conn, data: Option<&Reply>) {
    if data.is_some_and(|d| d.code == 354) && conn.command(".\r\n").await.is_err() {
        return;
    }
    if let Ok(r) = conn.command("RSET\r\n").await
        && !is_2xx(&r)
    {
        conn.mark_broken();
    }
}

async fn write_body(conn: &mut Conn, message: &[u8]) -> Result<(), ClientError> {
    let mut stuffer = DotStuffer::default();
    let mut out = Vec::with_capacity(BODY_CHUNK + BODY_CHUNK / 16);
    let mut chunks = message.chunks(BODY_CHUNK).peekable();
    loop {
        out.clear();
        if let Some(chunk) = chunks.next() {
            stuffer.push(chunk, &mut out);
        }
        // The terminator goes with the last piece: a small message is one write.
        if chunks.peek().is_none() {
            stuffer.finish(&mut out);
            return conn.write(&out).await;
        }
        conn.write(&out).await?;
    }
}

/// RFC 5321 §4.5.2 transparency across chunk boundaries. A dot is doubled after a bare CR or LF
/// as well as after CRLF: whichever of those a downstream server takes as a line end, it cannot
/// see a premature end of data (SMTP smuggling).
#[derive(Debug)]
pub(super) struct DotStuffer {
    line_start: bool,
    last: Option<u8>,
    prev: Option<u8>,
}

impl Default for DotStuffer {
    fn default() -> Self {
        DotStuffer {
            line_start: true,
            last: None,
            prev: None,
        }
    }
}

impl DotStuffer {
    pub(super) fn push(&mut self, bytes: &[u8], out: &mut Vec<u8>) {
        // Only dots need a look: the bytes between them are copied as they are.
        let mut copied = 0;
        for dot in memchr::memchr_iter(b'.', bytes) {
            let line_start = match dot.checked_sub(1) {
                Some(before) => matches!(bytes[before], b'\r' | b'\n'),
                None => self.line_start,
            };
            if line_start {
                out.extend_from_slice(&bytes[copied..dot]);
                out.push(b'.');
                copied = dot;
            }
        }
        out.extend_from_slice(&bytes[copied..]);
        if let Some((&last, before)) = bytes.split_last() {
            self.line_start = last == b'\r' || last == b'\n';
            self.prev = before.last().copied().or(self.last);
            self.last = Some(last);
        }
    }

    /// The terminator, preceded by a CRLF when the message does not end with one.
    pub(super) fn finish(&mut self, out: &mut Vec<u8>) {
        let ends_with_crlf = self.prev == Some(b'\r') && self.last == Some(b'\n');
        if self.last.is_some() && !ends_with_crlf {
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b".\r\n");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stuff(message: &[u8], chunk: usize) -> Vec<u8> {
        let mut s = DotStuffer::default();
        let mut out = Vec::new();
        for piece in message.chunks(chunk.max(1)) {
            s.push(piece, &mut out);
        }
        s.finish(&mut out);
        out
    }

    /// Pseudo-random bodies in random pieces: the dot-stuffer that copies the runs between
    /// dots writes what doubling dots one byte at a time writes.
    #[test]
    fn stuffing_runs_matches_byte_by_byte() {
        fn bytewise(message: &[u8]) -> Vec<u8> {
            let mut out = Vec::new();
            let (mut line_start, mut last, mut prev) = (true, None, None);
            for &b in message {
                if b == b'.' && line_start {
                    out.push(b'.');
                }
                out.push(b);
                line_start = b == b'\r' || b == b'\n';
                prev = last;
                last = Some(b);
            }
            if last.is_some() && !(prev == Some(b'\r') && last == Some(b'\n')) {
                out.extend_from_slice(b"\r\n");
            }
            out.extend_from_slice(b".\r\n");
            out
        }
        let mut next = crate::smtp::proto::xorshift(0x9e37_79b9_7f4a_7c15);
        for _ in 0..3000 {
            let message: Vec<u8> = (0..next() % 120)
                .map(|_| b"a..\r\n"[(next() % 5) as usize])
                .collect();
            let chunk = 1 + (next() % 17) as usize;
            assert_eq!(stuff(&message, chunk), bytewise(&message), "{message:?}");
        }
    }

    #[test]
    fn dot_stuffing() {
        let cases: &[(&[u8], &[u8])] = &[
            (b"", b".\r\n"),
            (b"a\r\n", b"a\r\n.\r\n"),
            (b"a", b"a\r\n.\r\n"),
            (b".\r\n", b"..\r\n.\r\n"),
            (b"a\r\n.b\r\n..c\r\n", b"a\r\n..b\r\n...c\r\n.\r\n"),
            (b"a.b\r\n", b"a.b\r\n.\r\n"),
            // Smuggling shapes: bare LF or CR before a dot.
            (b"a\n.\r\nb\r\n", b"a\n..\r\nb\r\n.\r\n"),
            (b"a\r.\r\nb\r\n", b"a\r..\r\nb\r\n.\r\n"),
            (b"a\r\n\r\n", b"a\r\n\r\n.\r\n"),
            (b"a\n", b"a\n\r\n.\r\n"),
        ];
        for (input, want) in cases {
            for chunk in [1, 2, 3, 1000] {
                assert_eq!(
                    stuff(input, chunk),
                    *want,
                    "input {:?} chunk {chunk}",
                    String::from_utf8_lossy(input)
                );
            }
        }
    }

    fn ext(dsn: bool) -> Extensions {
        Extensions {
            pipelining: true,
            size: Some(1000),
            eight_bit_mime: true,
            smtputf8: true,
            dsn,
            ..Extensions::default()
        }
    }

    fn rcpt(address: &str, notify: Option<&str>, orcpt: Option<&str>) -> OutboundRecipient {
        OutboundRecipient {
            address: address.into(),
            notify: notify.map(str::to_string),
            orcpt: orcpt.map(str::to_string),
        }
    }

    #[test]
    fn mail_parameters() {
        let rcpts = [rcpt("b@example", None, None)];
        let env = OutboundEnvelope {
            from: "a@example",
            recipients: &rcpts,
            size: 120,
            body_8bit: true,
            smtp_utf8: false,
            env_id: Some("Q+1 x"),
            ret: Some("hdrs"),
            log_id: None,
        };
        let cases = [
            (
                ext(true),
                "MAIL FROM:<a@example> SIZE=120 BODY=8BITMIME RET=HDRS ENVID=Q+2B1+20x\r\n",
            ),
            (
                ext(false),
                "MAIL FROM:<a@example> SIZE=120 BODY=8BITMIME\r\n",
            ),
            (Extensions::default(), "MAIL FROM:<a@example>\r\n"),
        ];
        for (ext, want) in cases {
            assert_eq!(mail_command(&env, &ext, None), want, "{ext:?}");
        }
        let utf8 = OutboundEnvelope {
            from: "",
            smtp_utf8: true,
            body_8bit: false,
            ret: Some("FULL\r\nRSET"),
            env_id: None,
            ..env
        };
        assert_eq!(
            mail_command(&utf8, &ext(true), None),
            "MAIL FROM:<> SIZE=120 SMTPUTF8\r\n"
        );
        assert_eq!(
            mail_command(
                &env,
                &ext(true),
                Some("0e8a4c1e-3b1a-4d6c-9f0e-5a2b7c9d1e3f")
            ),
            "MAIL FROM:<a@example> SIZE=120 XSHADOW=0e8a4c1e-3b1a-4d6c-9f0e-5a2b7c9d1e3f \
             BODY=8BITMIME RET=HDRS ENVID=Q+2B1+20x\r\n"
        );
    }

    #[test]
    fn rcpt_parameters() {
        let cases = [
            (
                rcpt(
                    "b@example",
                    Some("success,failure"),
                    Some("rfc822;B+x@example"),
                ),
                true,
                "RCPT TO:<b@example> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;B+2Bx@example\r\n",
            ),
            (
                rcpt("b@example", Some("NEVER"), Some("c=d@example")),
                true,
                "RCPT TO:<b@example> NOTIFY=NEVER ORCPT=rfc822;c+3Dd@example\r\n",
            ),
            (
                rcpt("b@example", Some("FAILURE"), Some("rfc822;c@example")),
                false,
                "RCPT TO:<b@example>\r\n",
            ),
            (
                rcpt("b@example", Some("FAILURE SMUGGLED"), Some(";x")),
                true,
                "RCPT TO:<b@example>\r\n",
            ),
        ];
        for (r, dsn, want) in cases {
            assert_eq!(rcpt_command(&r, &ext(dsn)), want, "{r:?}");
        }
    }

    #[test]
    fn local_refusals() {
        let rcpts = [rcpt("b@example", None, None)];
        let env = OutboundEnvelope {
            from: "a@example",
            recipients: &rcpts,
            size: 1001,
            body_8bit: false,
            smtp_utf8: false,
            env_id: None,
            ret: None,
            log_id: None,
        };
        let code = |env: &OutboundEnvelope<'_>, ext: &Extensions| {
            refuse_locally(env, ext).map(|r| r.one_line())
        };
        assert_eq!(
            code(&env, &ext(false)).as_deref(),
            Some("552 5.3.4 Message size exceeds fixed maximum message size")
        );
        let unlimited = Extensions {
            size: Some(0),
            ..ext(false)
        };
        assert_eq!(code(&env, &unlimited), None);
        let no_utf8 = Extensions {
            smtputf8: false,
            size: None,
            ..ext(false)
        };
        let utf8 = OutboundEnvelope {
            smtp_utf8: true,
            ..env
        };
        assert!(code(&utf8, &no_utf8).unwrap().starts_with("550 5.6.7 "));
        let bad_from = OutboundEnvelope {
            from: "a@example>\r\nRSET",
            size: 1,
            ..env
        };
        assert!(
            code(&bad_from, &ext(false))
                .unwrap()
                .starts_with("550 5.1.7 ")
        );
    }

    #[test]
    fn addresses_that_could_inject_commands_are_refused() {
        for good in ["a@example", "\"a b\"@example", "ü@example"] {
            assert!(is_valid_address(good), "{good}");
        }
        for bad in [
            "",
            "a@example>",
            "a@example\r\nRSET",
            "a\0@example",
            "<a@example",
        ] {
            assert!(!is_valid_address(bad), "{bad:?}");
        }
    }
}
