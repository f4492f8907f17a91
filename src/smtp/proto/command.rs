//! Parsing of one SMTP command line into a [`Command`].

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};

use super::params::{MailParams, RcptParams, parse_u64};
use super::reply::Reply;

/// RFC 5321 4.5.3.1.3 limits a path to 256 octets; we apply it to the mailbox.
pub const MAX_ADDRESS_LEN: usize = 256;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Helo(String),
    Ehlo(String),
    Mail {
        /// `""` is the null reverse path `<>`.
        from: String,
        params: MailParams,
    },
    Rcpt {
        to: String,
        params: RcptParams,
    },
    Data,
    Bdat {
        size: u64,
        last: bool,
    },
    Rset,
    Noop,
    Quit,
    Help,
    StartTls,
    Auth {
        /// Upper-cased.
        mechanism: String,
        /// Raw base64 as sent; `"="` is an empty initial response (RFC 4954).
        initial: Option<String>,
    },
    Vrfy(String),
    Expn(String),
    XShadow(Option<String>),
    XQDiscard(Option<String>),
}

/// A command the server must refuse; [`ProtoError::reply`] gives the exact
/// Exchange 2010 wording.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProtoError {
    UnrecognizedCommand,
    HeloRequiresDomain,
    InvalidDomain,
    InvalidSender,
    InvalidRecipient,
    /// Unknown, duplicated or malformed ESMTP parameter (its keyword as sent).
    UnrecognizedParameter(String),
    InvalidArguments,
    LineTooLong,
}

impl ProtoError {
    pub fn reply(&self) -> Reply {
        match self {
            ProtoError::UnrecognizedCommand => Reply::new(500, "5.3.3", "Unrecognized command"),
            ProtoError::HeloRequiresDomain => {
                Reply::new(501, "5.0.0", "HELO requires domain address")
            }
            ProtoError::InvalidDomain => Reply::new(501, "5.5.4", "Invalid domain name"),
            ProtoError::InvalidSender => Reply::new(501, "5.1.7", "Invalid address"),
            ProtoError::InvalidRecipient => Reply::new(501, "5.1.3", "Invalid address"),
            ProtoError::UnrecognizedParameter(_) => {
                Reply::new(501, "5.5.4", "Unrecognized parameter")
            }
            ProtoError::InvalidArguments => Reply::new(501, "5.5.4", "Invalid arguments"),
            ProtoError::LineTooLong => Reply::new(500, "5.5.2", "Line too long"),
        }
    }
}

impl fmt::Display for ProtoError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProtoError::UnrecognizedParameter(name) => {
                write!(f, "{} ({name:?})", self.reply().one_line())
            }
            _ => f.write_str(&self.reply().one_line()),
        }
    }
}

impl std::error::Error for ProtoError {}

fn is_blank(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

fn trim_blank(mut s: &[u8]) -> &[u8] {
    while let [first, rest @ ..] = s
        && is_blank(*first)
    {
        s = rest;
    }
    while let [rest @ .., last] = s
        && is_blank(*last)
    {
        s = rest;
    }
    s
}

/// Parses one command line, given without its CRLF/LF.
pub fn parse_command(line: &[u8]) -> Result<Command, ProtoError> {
    // Control characters never belong in a command; a stray CR in particular
    // is how injection and smuggling payloads hide inside "one" line.
    if line.iter().any(|&b| (b < 0x20 && b != b'\t') || b == 0x7f) {
        return Err(ProtoError::UnrecognizedCommand);
    }
    let line = trim_blank(line);
    let split = line.iter().position(|&b| is_blank(b)).unwrap_or(line.len());
    let (verb, rest) = line.split_at(split);
    let rest = trim_blank(rest);
    if !verb.iter().all(u8::is_ascii_alphabetic) {
        return Err(ProtoError::UnrecognizedCommand);
    }
    let verb = String::from_utf8_lossy(verb).to_ascii_uppercase();
    let text = |err: ProtoError| std::str::from_utf8(rest).map_err(|_| err);
    let no_args = |cmd: Command| {
        if rest.is_empty() {
            Ok(cmd)
        } else {
            Err(ProtoError::InvalidArguments)
        }
    };
    match verb.as_str() {
        "HELO" | "EHLO" => {
            let arg = text(ProtoError::InvalidDomain)?;
            if arg.is_empty() {
                return Err(ProtoError::HeloRequiresDomain);
            }
            if !is_helo_domain(arg) {
                return Err(ProtoError::InvalidDomain);
            }
            Ok(if verb == "HELO" {
                Command::Helo(arg.to_string())
            } else {
                Command::Ehlo(arg.to_string())
            })
        }
        "MAIL" => {
            let arg = text(ProtoError::InvalidSender)?;
            let (path, params) = split_path_arg(arg, "FROM:").ok_or(ProtoError::InvalidSender)?;
            let from = if path.is_empty() {
                String::new()
            } else {
                mailbox(path).ok_or(ProtoError::InvalidSender)?
            };
            let params = MailParams::parse(params)?;
            Ok(Command::Mail { from, params })
        }
        "RCPT" => {
            let arg = text(ProtoError::InvalidRecipient)?;
            let (path, params) = split_path_arg(arg, "TO:").ok_or(ProtoError::InvalidRecipient)?;
            // RFC 5321 4.1.1.3: every server must accept the bare "<Postmaster>".
            let to = if path.eq_ignore_ascii_case("postmaster") {
                path.to_string()
            } else {
                mailbox(path).ok_or(ProtoError::InvalidRecipient)?
            };
            let params = RcptParams::parse(params)?;
            Ok(Command::Rcpt { to, params })
        }
        "DATA" => no_args(Command::Data),
        "RSET" => no_args(Command::Rset),
        "QUIT" => no_args(Command::Quit),
        "STARTTLS" => no_args(Command::StartTls),
        "NOOP" => Ok(Command::Noop),
        "HELP" => Ok(Command::Help),
        "BDAT" => {
            let arg = text(ProtoError::InvalidArguments)?;
            let mut words = arg.split([' ', '\t']).filter(|w| !w.is_empty());
            let size = words
                .next()
                .and_then(parse_u64)
                .ok_or(ProtoError::InvalidArguments)?;
            let last = match words.next() {
                None => false,
                Some(w) if w.eq_ignore_ascii_case("LAST") => true,
                Some(_) => return Err(ProtoError::InvalidArguments),
            };
            if words.next().is_some() {
                return Err(ProtoError::InvalidArguments);
            }
            Ok(Command::Bdat { size, last })
        }
        "AUTH" => {
            let arg = text(ProtoError::InvalidArguments)?;
            let mut words = arg.split([' ', '\t']).filter(|w| !w.is_empty());
            let mechanism = words
                .next()
                .filter(|m| {
                    m.len() <= 20
                        && m.bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
                })
                .ok_or(ProtoError::InvalidArguments)?
                .to_ascii_uppercase();
            let initial = words.next().map(str::to_string);
            if words.next().is_some() {
                return Err(ProtoError::InvalidArguments);
            }
            Ok(Command::Auth { mechanism, initial })
        }
        "VRFY" | "EXPN" => {
            let arg = text(ProtoError::InvalidArguments)?;
            if arg.is_empty() {
                return Err(ProtoError::InvalidArguments);
            }
            Ok(if verb == "VRFY" {
                Command::Vrfy(arg.to_string())
            } else {
                Command::Expn(arg.to_string())
            })
        }
        "XSHADOW" | "XQDISCARD" => {
            let arg = text(ProtoError::InvalidArguments)?;
            let arg = (!arg.is_empty()).then(|| arg.to_string());
            Ok(if verb == "XSHADOW" {
                Command::XShadow(arg)
            } else {
                Command::XQDiscard(arg)
            })
        }
        _ => Err(ProtoError::UnrecognizedCommand),
    }
}

/// Splits `FROM:<path> params` into the text between the angle brackets and
/// the parameter string. Clients commonly put a space after the colon.
fn split_path_arg<'a>(arg: &'a str, keyword: &str) -> Option<(&'a str, &'a str)> {
    let head = arg.get(..keyword.len())?;
    if !head.eq_ignore_ascii_case(keyword) {
        return None;
    }
    let after = arg[keyword.len()..].trim_start_matches([' ', '\t']);
    let inner = after.strip_prefix('<')?;
    // A quoted local part may legitimately contain '>'.
    let mut in_quote = false;
    let mut escaped = false;
    let mut end = None;
    for (i, c) in inner.char_indices() {
        if escaped {
            escaped = false;
        } else if in_quote && c == '\\' {
            escaped = true;
        } else if c == '"' {
            in_quote = !in_quote;
        } else if c == '>' && !in_quote {
            end = Some(i);
            break;
        }
    }
    let end = end?;
    let tail = &inner[end + 1..];
    if !tail.is_empty() && !tail.starts_with([' ', '\t']) {
        return None;
    }
    Some((&inner[..end], tail))
}

/// Validates a path's content (not empty) and returns the mailbox without any
/// source route.
fn mailbox(path: &str) -> Option<String> {
    let mailbox = strip_source_route(path)?;
    if mailbox.len() > MAX_ADDRESS_LEN {
        return None;
    }
    let local_end = local_part_len(mailbox)?;
    let domain = mailbox[local_end..].strip_prefix('@')?;
    (is_domain(domain) || is_address_literal(domain)).then(|| mailbox.to_string())
}

/// RFC 5321 says the obsolete `@a,@b:` route must be accepted and ignored.
fn strip_source_route(path: &str) -> Option<&str> {
    if !path.starts_with('@') {
        return Some(path);
    }
    let mut depth = 0u32;
    let colon = path.char_indices().find_map(|(i, c)| {
        match c {
            '[' => depth += 1,
            ']' => depth = depth.saturating_sub(1),
            ':' if depth == 0 => return Some(i),
            _ => {}
        }
        None
    })?;
    let route_ok = path[..colon].split(',').all(|hop| {
        hop.strip_prefix('@')
            .is_some_and(|d| is_domain(d) || is_address_literal(d))
    });
    route_ok.then(|| &path[colon + 1..])
}

fn is_atext(c: char) -> bool {
    c.is_ascii_alphanumeric() || "!#$%&'*+-/=?^_`{|}~".contains(c) || !c.is_ascii()
}

/// Length in bytes of a leading dot-atom or quoted-string local part.
fn local_part_len(s: &str) -> Option<usize> {
    if let Some(quoted) = s.strip_prefix('"') {
        let mut escaped = false;
        for (i, c) in quoted.char_indices() {
            if escaped {
                if !(' '..='~').contains(&c) {
                    return None;
                }
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                return Some(i + 2);
            } else if !(c == ' ' || c == '!' || ('#'..='~').contains(&c) || !c.is_ascii()) {
                return None;
            }
        }
        return None;
    }
    let end = s
        .find(|c: char| !is_atext(c) && c != '.')
        .unwrap_or(s.len());
    let atom = &s[..end];
    (!atom.is_empty() && atom.split('.').all(|a| !a.is_empty())).then_some(end)
}

/// Dot-separated LDH labels; U-labels are let through for SMTPUTF8.
fn is_domain(d: &str) -> bool {
    !d.is_empty()
        && d.len() <= 255
        && d.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || !c.is_ascii())
        })
}

fn is_address_literal(d: &str) -> bool {
    let Some(inner) = d.strip_prefix('[').and_then(|d| d.strip_suffix(']')) else {
        return false;
    };
    match inner.get(..5) {
        Some(tag) if tag.eq_ignore_ascii_case("IPv6:") => inner[5..].parse::<Ipv6Addr>().is_ok(),
        _ => inner.parse::<Ipv4Addr>().is_ok(),
    }
}

/// HELO names are judged more leniently than mail domains: real clients send
/// NetBIOS-style names with underscores, or a trailing dot.
fn is_helo_domain(d: &str) -> bool {
    if is_address_literal(d) {
        return true;
    }
    let d = d.strip_suffix('.').unwrap_or(d);
    !d.is_empty()
        && d.len() <= 255
        && d.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || !c.is_ascii())
        })
}

#[cfg(test)]
mod tests {
    use super::super::params::{Body, Notify};
    use super::*;

    fn ok(line: &str) -> Command {
        parse_command(line.as_bytes()).unwrap_or_else(|e| panic!("{line:?}: {e}"))
    }

    fn mail(from: &str) -> Command {
        Command::Mail {
            from: from.into(),
            params: MailParams::default(),
        }
    }

    fn rcpt(to: &str) -> Command {
        Command::Rcpt {
            to: to.into(),
            params: RcptParams::default(),
        }
    }

    #[test]
    fn valid_commands() {
        let cases: Vec<(&str, Command)> = vec![
            (
                "HELO mx.example.com",
                Command::Helo("mx.example.com".into()),
            ),
            ("helo [10.1.2.3]", Command::Helo("[10.1.2.3]".into())),
            ("EHLO client", Command::Ehlo("client".into())),
            (
                "ehlo MY_PC.corp.local.",
                Command::Ehlo("MY_PC.corp.local.".into()),
            ),
            (
                "EhLo [IPv6:2001:db8::1]",
                Command::Ehlo("[IPv6:2001:db8::1]".into()),
            ),
            (
                "EHLO mx.example.com  ",
                Command::Ehlo("mx.example.com".into()),
            ),
            (
                "EHLO bücher.example",
                Command::Ehlo("bücher.example".into()),
            ),
            ("MAIL FROM:<a@example.com>", mail("a@example.com")),
            ("mail from:<a@example.com>", mail("a@example.com")),
            ("MAIL FROM: <a@example.com>", mail("a@example.com")),
            ("MAIL FROM:<>", mail("")),
            ("MAIL FROM:<> ", mail("")),
            (
                "MAIL FROM:<@relay1.example,@relay2.example:joe@example.com>",
                mail("joe@example.com"),
            ),
            (
                "MAIL FROM:<\"john doe\"@example.com>",
                mail("\"john doe\"@example.com"),
            ),
            (
                "MAIL FROM:<\"a>b\\\"c\"@example.com>",
                mail("\"a>b\\\"c\"@example.com"),
            ),
            ("MAIL FROM:<user@[192.0.2.1]>", mail("user@[192.0.2.1]")),
            ("MAIL FROM:<user@[IPv6:::1]>", mail("user@[IPv6:::1]")),
            (
                "MAIL FROM:<first.last+tag@sub.example.co.uk>",
                mail("first.last+tag@sub.example.co.uk"),
            ),
            (
                "MAIL FROM:<!#$%&'*+-/=?^_`{|}~@example.com>",
                mail("!#$%&'*+-/=?^_`{|}~@example.com"),
            ),
            ("MAIL FROM:<用户@例子.广告>", mail("用户@例子.广告")),
            ("RCPT TO:<b@example.com>", rcpt("b@example.com")),
            ("rcpt to: <b@example.com>", rcpt("b@example.com")),
            ("RCPT TO:<postmaster>", rcpt("postmaster")),
            ("RCPT TO:<PostMaster>", rcpt("PostMaster")),
            (
                "RCPT TO:<@hop.example:b@example.com>",
                rcpt("b@example.com"),
            ),
            ("DATA", Command::Data),
            ("data ", Command::Data),
            (
                "BDAT 1000",
                Command::Bdat {
                    size: 1000,
                    last: false,
                },
            ),
            (
                "BDAT 0 LAST",
                Command::Bdat {
                    size: 0,
                    last: true,
                },
            ),
            (
                "bdat 12 last",
                Command::Bdat {
                    size: 12,
                    last: true,
                },
            ),
            ("RSET", Command::Rset),
            ("NOOP", Command::Noop),
            ("NOOP anything at all", Command::Noop),
            ("QUIT", Command::Quit),
            ("HELP", Command::Help),
            ("HELP MAIL", Command::Help),
            ("STARTTLS", Command::StartTls),
            ("starttls", Command::StartTls),
            (
                "AUTH LOGIN",
                Command::Auth {
                    mechanism: "LOGIN".into(),
                    initial: None,
                },
            ),
            (
                "auth plain AHVzZXIAcGFzcw==",
                Command::Auth {
                    mechanism: "PLAIN".into(),
                    initial: Some("AHVzZXIAcGFzcw==".into()),
                },
            ),
            (
                "AUTH PLAIN =",
                Command::Auth {
                    mechanism: "PLAIN".into(),
                    initial: Some("=".into()),
                },
            ),
            (
                "AUTH gssapi",
                Command::Auth {
                    mechanism: "GSSAPI".into(),
                    initial: None,
                },
            ),
            ("VRFY john", Command::Vrfy("john".into())),
            ("EXPN staff list", Command::Expn("staff list".into())),
            ("XSHADOW", Command::XShadow(None)),
            (
                "XSHADOW hub2.example.com",
                Command::XShadow(Some("hub2.example.com".into())),
            ),
            ("XQDISCARD", Command::XQDiscard(None)),
            ("XQDISCARD 100", Command::XQDiscard(Some("100".into()))),
        ];
        for (line, want) in cases {
            assert_eq!(ok(line), want, "{line:?}");
        }
    }

    #[test]
    fn commands_with_params() {
        assert_eq!(
            ok("MAIL FROM:<a@b.example> SIZE=2048 BODY=8BITMIME"),
            Command::Mail {
                from: "a@b.example".into(),
                params: MailParams {
                    size: Some(2048),
                    body: Some(Body::EightBitMime),
                    ..MailParams::default()
                }
            }
        );
        assert_eq!(
            ok("RCPT TO:<c@d.example> NOTIFY=FAILURE,DELAY ORCPT=rfc822;c+40d.example"),
            Command::Rcpt {
                to: "c@d.example".into(),
                params: RcptParams {
                    notify: Some(vec![Notify::Failure, Notify::Delay]),
                    orcpt: Some(("rfc822".into(), "c@d.example".into())),
                }
            }
        );
    }

    #[test]
    fn errors() {
        use ProtoError::*;
        let long_local = format!("MAIL FROM:<{}@example.com>", "a".repeat(245));
        let max_local = format!("MAIL FROM:<{}@example.com>", "a".repeat(244));
        assert!(parse_command(max_local.as_bytes()).is_ok());
        let long_rcpt = format!("RCPT TO:<{}@example.com>", "a".repeat(245));
        let cases: Vec<(&[u8], ProtoError)> = vec![
            (b"", UnrecognizedCommand),
            (b"   ", UnrecognizedCommand),
            (b"FOO", UnrecognizedCommand),
            (b"MAILFROM:<a@b.c>", UnrecognizedCommand),
            (b"GET / HTTP/1.1", UnrecognizedCommand),
            (b"\xff\xfe HELO", UnrecognizedCommand),
            (b"H\xc3\xa9LO x", UnrecognizedCommand),
            (b"NOOP\rRSET", UnrecognizedCommand),
            (b"MAIL FROM:<a@b.c>\x00", UnrecognizedCommand),
            (b"HELO", HeloRequiresDomain),
            (b"EHLO", HeloRequiresDomain),
            (b"EHLO   ", HeloRequiresDomain),
            (b"EHLO a..b", InvalidDomain),
            (b"EHLO two words", InvalidDomain),
            (b"EHLO host!", InvalidDomain),
            (b"HELO [1.2.3]", InvalidDomain),
            (b"HELO [IPv6:zz]", InvalidDomain),
            (b"HELO \xff", InvalidDomain),
            (b"MAIL", InvalidSender),
            (b"MAIL TO:<a@b.c>", InvalidSender),
            (b"MAIL FROM:a@b.c", InvalidSender),
            (b"MAIL FROM:<a@b.c", InvalidSender),
            (b"MAIL FROM:<a@b.c>SIZE=1", InvalidSender),
            (b"MAIL FROM:<a>", InvalidSender),
            (b"MAIL FROM:<@b.c>", InvalidSender),
            (b"MAIL FROM:<a@>", InvalidSender),
            (b"MAIL FROM:<a@b..c>", InvalidSender),
            (b"MAIL FROM:<a@-b.c>", InvalidSender),
            (b"MAIL FROM:<a@b.c.>", InvalidSender),
            (b"MAIL FROM:<.a@b.c>", InvalidSender),
            (b"MAIL FROM:<a.@b.c>", InvalidSender),
            (b"MAIL FROM:<a..b@b.c>", InvalidSender),
            (b"MAIL FROM:<a b@b.c>", InvalidSender),
            (b"MAIL FROM:<a@b@c.d>", InvalidSender),
            (b"MAIL FROM:<\"unterminated@b.c>", InvalidSender),
            (b"MAIL FROM:<a@[300.1.1.1]>", InvalidSender),
            (b"MAIL FROM:<a@[example.com]>", InvalidSender),
            (b"MAIL FROM:<@bad_hop:a@b.c>", InvalidSender),
            (b"MAIL FROM:<postmaster>", InvalidSender),
            (b"MAIL FROM:<a@b.c\xff>", InvalidSender),
            (long_local.as_bytes(), InvalidSender),
            (b"RCPT", InvalidRecipient),
            (b"RCPT TO:<>", InvalidRecipient),
            (b"RCPT FROM:<a@b.c>", InvalidRecipient),
            (b"RCPT TO:b@c.d", InvalidRecipient),
            (b"RCPT TO:<b>", InvalidRecipient),
            (
                b"RCPT TO:<postmaster> NOTIFY=NEVER,DELAY",
                UnrecognizedParameter("NOTIFY".into()),
            ),
            (long_rcpt.as_bytes(), InvalidRecipient),
            (
                b"MAIL FROM:<a@b.c> FOO=BAR",
                UnrecognizedParameter("FOO".into()),
            ),
            (
                b"MAIL FROM:<a@b.c> SIZE=1 SIZE=2",
                UnrecognizedParameter("SIZE".into()),
            ),
            (
                b"RCPT TO:<a@b.c> NOTIFY=SOMETIMES",
                UnrecognizedParameter("NOTIFY".into()),
            ),
            (
                b"RCPT TO:<a@b.c> BODY=8BITMIME",
                UnrecognizedParameter("BODY".into()),
            ),
            (b"BDAT", InvalidArguments),
            (b"BDAT x", InvalidArguments),
            (b"BDAT -1", InvalidArguments),
            (b"BDAT +1", InvalidArguments),
            (b"BDAT 99999999999999999999", InvalidArguments),
            (b"BDAT 10 FIRST", InvalidArguments),
            (b"BDAT 10 LAST junk", InvalidArguments),
            (b"DATA now", InvalidArguments),
            (b"RSET all", InvalidArguments),
            (b"QUIT please", InvalidArguments),
            (b"STARTTLS x", InvalidArguments),
            (b"AUTH", InvalidArguments),
            (b"AUTH PLAIN a b", InvalidArguments),
            (b"AUTH P!AIN", InvalidArguments),
            (b"VRFY", InvalidArguments),
            (b"EXPN", InvalidArguments),
        ];
        for (line, want) in cases {
            assert_eq!(
                parse_command(line),
                Err(want),
                "{:?}",
                String::from_utf8_lossy(line)
            );
        }
    }

    #[test]
    fn error_replies() {
        use ProtoError::*;
        let cases = [
            (UnrecognizedCommand, "500 5.3.3 Unrecognized command\r\n"),
            (
                HeloRequiresDomain,
                "501 5.0.0 HELO requires domain address\r\n",
            ),
            (InvalidDomain, "501 5.5.4 Invalid domain name\r\n"),
            (InvalidSender, "501 5.1.7 Invalid address\r\n"),
            (InvalidRecipient, "501 5.1.3 Invalid address\r\n"),
            (
                UnrecognizedParameter("X".into()),
                "501 5.5.4 Unrecognized parameter\r\n",
            ),
            (InvalidArguments, "501 5.5.4 Invalid arguments\r\n"),
            (LineTooLong, "500 5.5.2 Line too long\r\n"),
        ];
        for (err, wire) in cases {
            assert_eq!(err.reply().to_wire(), wire);
        }
        assert_eq!(
            UnrecognizedParameter("FOO".into()).to_string(),
            "501 5.5.4 Unrecognized parameter (\"FOO\")"
        );
    }
}
