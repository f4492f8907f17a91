//! Client side: reading the server's replies.

use std::fmt;

use super::reply::Reply;

pub const DEFAULT_MAX_LINE: usize = 4096;
pub const DEFAULT_MAX_LINES: usize = 100;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResponseError {
    LineTooLong,
    TooManyLines,
    /// The offending line, lossily decoded.
    Malformed(String),
}

impl fmt::Display for ResponseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ResponseError::LineTooLong => f.write_str("SMTP reply line too long"),
            ResponseError::TooManyLines => f.write_str("SMTP reply has too many lines"),
            ResponseError::Malformed(line) => write!(f, "malformed SMTP reply line {line:?}"),
        }
    }
}

impl std::error::Error for ResponseError {}

/// Accumulates bytes from the server and yields whole (possibly multi-line)
/// replies. Errors are sticky: the stream cannot be resynchronised, so the
/// connection has to be dropped.
#[derive(Debug)]
pub struct ResponseReader {
    buf: Vec<u8>,
    start: usize,
    code: Option<u16>,
    lines: Vec<String>,
    max_line: usize,
    max_lines: usize,
    failed: Option<ResponseError>,
}

impl Default for ResponseReader {
    fn default() -> Self {
        Self::new()
    }
}

impl ResponseReader {
    pub fn new() -> Self {
        Self::with_limits(DEFAULT_MAX_LINE, DEFAULT_MAX_LINES)
    }

    /// `max_line` counts the line ending.
    pub fn with_limits(max_line: usize, max_lines: usize) -> Self {
        ResponseReader {
            buf: Vec::new(),
            start: 0,
            code: None,
            lines: Vec::new(),
            max_line,
            max_lines: max_lines.max(1),
            failed: None,
        }
    }

    pub fn push(&mut self, bytes: &[u8]) {
        if self.failed.is_some() {
            return;
        }
        self.buf.drain(..self.start);
        self.start = 0;
        self.buf.extend_from_slice(bytes);
    }

    /// Unread bytes after the last complete reply; after a STARTTLS reply any
    /// such bytes were injected before the handshake and must not be trusted.
    pub fn has_buffered(&self) -> bool {
        self.start < self.buf.len() || !self.lines.is_empty()
    }

    pub fn next_reply(&mut self) -> Result<Option<Reply>, ResponseError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        let result = self.next_reply_inner();
        if let Err(e) = &result {
            self.failed = Some(e.clone());
            self.buf = Vec::new();
            self.start = 0;
        }
        result
    }

    fn next_reply_inner(&mut self) -> Result<Option<Reply>, ResponseError> {
        loop {
            let pending = &self.buf[self.start..];
            let Some(lf) = pending.iter().position(|&b| b == b'\n') else {
                if pending.len() >= self.max_line {
                    return Err(ResponseError::LineTooLong);
                }
                return Ok(None);
            };
            if lf + 1 > self.max_line {
                return Err(ResponseError::LineTooLong);
            }
            let raw = &pending[..lf];
            let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
            let malformed = || ResponseError::Malformed(String::from_utf8_lossy(raw).into_owned());
            let (code, last, text) = parse_line(raw).ok_or_else(malformed)?;
            if self.code.is_some_and(|c| c != code) {
                return Err(malformed());
            }
            self.start += lf + 1;
            if self.lines.len() >= self.max_lines {
                return Err(ResponseError::TooManyLines);
            }
            self.code = Some(code);
            self.lines.push(text);
            if last {
                self.code = None;
                return Ok(Some(build_reply(code, std::mem::take(&mut self.lines))));
            }
        }
    }
}

fn parse_line(raw: &[u8]) -> Option<(u16, bool, String)> {
    let digits = raw.get(..3)?;
    if !digits.iter().all(u8::is_ascii_digit) || !(b'2'..=b'5').contains(&digits[0]) {
        return None;
    }
    let code = digits
        .iter()
        .fold(0u16, |acc, d| acc * 10 + u16::from(d - b'0'));
    let last = match raw.get(3) {
        None | Some(b' ') => true,
        Some(b'-') => false,
        Some(_) => return None,
    };
    let text = raw.get(4..).unwrap_or_default();
    Some((code, last, String::from_utf8_lossy(text).into_owned()))
}

/// If `text` starts with an RFC 3463 status code (`class.subject.detail`),
/// returns it and the remaining text.
fn split_enhanced(text: &str) -> Option<(&str, &str)> {
    let end = text.find(' ').unwrap_or(text.len());
    let code = &text[..end];
    let mut parts = code.split('.');
    let class = parts.next()?;
    let subject = parts.next()?;
    let detail = parts.next()?;
    let num = |p: &str| (1..=3).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_digit());
    let ok =
        matches!(class, "2" | "4" | "5") && num(subject) && num(detail) && parts.next().is_none();
    ok.then(|| (code, text[end..].strip_prefix(' ').unwrap_or("")))
}

fn build_reply(code: u16, mut lines: Vec<String>) -> Reply {
    let enhanced = lines
        .first()
        .and_then(|l| split_enhanced(l))
        .map(|(e, _)| e.to_string());
    if let Some(e) = &enhanced {
        for line in &mut lines {
            if let Some((c, rest)) = split_enhanced(line)
                && c == e
            {
                *line = rest.to_string();
            }
        }
    }
    Reply {
        code,
        enhanced,
        lines,
    }
}

/// The extensions an EHLO reply advertises, as (KEYWORD, arguments). The first
/// line is the greeting; lines that do not start with a valid keyword (such
/// as the obsolete `AUTH=LOGIN`) are skipped.
pub fn parse_ehlo_keywords(reply: &Reply) -> Vec<(String, String)> {
    reply
        .lines
        .iter()
        .skip(1)
        .filter_map(|line| {
            let line = line.trim();
            let (kw, args) = line.split_once(' ').unwrap_or((line, ""));
            let valid = kw.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric())
                && kw.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
            valid.then(|| (kw.to_ascii_uppercase(), args.trim().to_string()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_all(input: &[u8], chunk: usize) -> Result<Vec<Reply>, ResponseError> {
        let mut r = ResponseReader::new();
        let mut out = Vec::new();
        for piece in input.chunks(chunk) {
            r.push(piece);
            while let Some(reply) = r.next_reply()? {
                out.push(reply);
            }
        }
        Ok(out)
    }

    fn reply(code: u16, enhanced: Option<&str>, lines: &[&str]) -> Reply {
        Reply {
            code,
            enhanced: enhanced.map(str::to_string),
            lines: lines.iter().map(|l| l.to_string()).collect(),
        }
    }

    #[test]
    fn replies() {
        let input = b"220 mx.example ESMTP ready\r\n\
            250-mx.example Hello [192.0.2.1]\r\n250-SIZE 36700160\r\n250-PIPELINING\r\n250 AUTH LOGIN PLAIN\r\n\
            250 2.1.0 Sender OK\r\n\
            550-5.7.1 first\r\n550-5.7.1 second\r\n550 5.7.1 third\r\n\
            354 Start mail input; end with <CRLF>.<CRLF>\n\
            250\r\n\
            451 4.7.0\r\n\
            250 2.6.0x not a code\r\n\
            250 1.2.3 not a class\r\n\
            421-4.3.2 a\r\n421 b\r\n";
        let want = vec![
            reply(220, None, &["mx.example ESMTP ready"]),
            reply(
                250,
                None,
                &[
                    "mx.example Hello [192.0.2.1]",
                    "SIZE 36700160",
                    "PIPELINING",
                    "AUTH LOGIN PLAIN",
                ],
            ),
            reply(250, Some("2.1.0"), &["Sender OK"]),
            reply(550, Some("5.7.1"), &["first", "second", "third"]),
            reply(354, None, &["Start mail input; end with <CRLF>.<CRLF>"]),
            reply(250, None, &[""]),
            reply(451, Some("4.7.0"), &[""]),
            reply(250, None, &["2.6.0x not a code"]),
            reply(250, None, &["1.2.3 not a class"]),
            reply(421, Some("4.3.2"), &["a", "b"]),
        ];
        for chunk in [1, 2, 5, 64, 4096] {
            assert_eq!(read_all(input, chunk).unwrap(), want, "chunk {chunk}");
        }
    }

    #[test]
    fn round_trips_server_replies() {
        let replies = [
            Reply::new(250, "2.1.5", "Recipient OK"),
            Reply::multi(250, vec!["host".into(), "8BITMIME".into()]),
            Reply::new(334, "", "VXNlcm5hbWU6"),
        ];
        for r in replies {
            assert_eq!(read_all(r.to_wire().as_bytes(), 3).unwrap(), vec![r]);
        }
    }

    #[test]
    fn errors() {
        let cases: &[(&[u8], ResponseError)] = &[
            (b"hello\r\n", ResponseError::Malformed("hello".into())),
            (b"25\r\n", ResponseError::Malformed("25".into())),
            (b"2500 x\r\n", ResponseError::Malformed("2500 x".into())),
            (b"650 x\r\n", ResponseError::Malformed("650 x".into())),
            (
                b"250-a\r\n251 b\r\n",
                ResponseError::Malformed("251 b".into()),
            ),
            (b"25a ok\r\n", ResponseError::Malformed("25a ok".into())),
        ];
        for (input, want) in cases {
            assert_eq!(read_all(input, 1).unwrap_err(), *want, "{input:?}");
        }

        let mut r = ResponseReader::with_limits(16, 3);
        r.push(&[b'2'; 15]);
        assert_eq!(r.next_reply(), Ok(None));
        r.push(b"2");
        assert_eq!(r.next_reply(), Err(ResponseError::LineTooLong));
        // Sticky, and nothing more is buffered.
        r.push(b"\r\n250 ok\r\n");
        assert_eq!(r.next_reply(), Err(ResponseError::LineTooLong));
        assert!(r.buf.is_empty());

        let mut r = ResponseReader::with_limits(16, 3);
        r.push(b"250-a\r\n250-b\r\n250-c\r\n250 d\r\n");
        assert_eq!(r.next_reply(), Err(ResponseError::TooManyLines));
        let mut r = ResponseReader::with_limits(16, 3);
        r.push(b"250-a\r\n250-b\r\n250 c\r\n");
        assert_eq!(r.next_reply().unwrap().unwrap().lines.len(), 3);
    }

    #[test]
    fn buffered_after_reply() {
        let mut r = ResponseReader::new();
        r.push(b"220 2.0.0 Ready to start TLS\r\n250 injected\r\n");
        assert_eq!(r.next_reply().unwrap().unwrap().code, 220);
        assert!(r.has_buffered());
        let mut r = ResponseReader::new();
        r.push(b"220 2.0.0 Ready to start TLS\r\n");
        r.next_reply().unwrap();
        assert!(!r.has_buffered());
    }

    #[test]
    fn ehlo_keywords() {
        let r = Reply::multi(
            250,
            vec![
                "mx.example Hello [192.0.2.1]".into(),
                "SIZE 36700160".into(),
                "pipelining".into(),
                "AUTH  GSSAPI NTLM LOGIN ".into(),
                "AUTH=LOGIN".into(),
                "X-EXPS GSSAPI NTLM".into(),
                "".into(),
                "8BITMIME".into(),
            ],
        );
        let got = parse_ehlo_keywords(&r);
        let want: Vec<(String, String)> = [
            ("SIZE", "36700160"),
            ("PIPELINING", ""),
            ("AUTH", "GSSAPI NTLM LOGIN"),
            ("X-EXPS", "GSSAPI NTLM"),
            ("8BITMIME", ""),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        assert_eq!(got, want);
        assert!(parse_ehlo_keywords(&Reply::new(250, "", "only greeting")).is_empty());
    }
}
