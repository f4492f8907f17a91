//! SMTP replies as sent by the server (and parsed back by the client side).

use std::fmt;

/// One SMTP reply: a three-digit code, an optional RFC 3463 enhanced status
/// code, and one or more text lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub code: u16,
    pub enhanced: Option<String>,
    pub lines: Vec<String>,
}

impl Reply {
    /// A single-line reply; `enhanced` may be `""` for replies that carry no
    /// enhanced status code (greeting, 334 challenges, ...).
    pub fn new(code: u16, enhanced: &str, text: impl Into<String>) -> Self {
        Reply {
            code,
            enhanced: (!enhanced.is_empty()).then(|| enhanced.to_string()),
            lines: vec![text.into()],
        }
    }

    /// A multi-line reply without enhanced code, as EHLO answers are.
    pub fn multi(code: u16, lines: Vec<String>) -> Self {
        Reply {
            code,
            enhanced: None,
            lines,
        }
    }

    /// 2xx and 3xx both mean the client may go on.
    pub fn is_positive(&self) -> bool {
        (200..400).contains(&self.code)
    }

    /// The reply as written on the wire, every line ending in CRLF.
    pub fn to_wire(&self) -> String {
        let mut out = String::new();
        let last = self.lines.len().saturating_sub(1);
        if self.lines.is_empty() {
            self.push_line(&mut out, ' ', "");
        }
        for (i, line) in self.lines.iter().enumerate() {
            self.push_line(&mut out, if i == last { ' ' } else { '-' }, line);
        }
        out
    }

    fn push_line(&self, out: &mut String, sep: char, text: &str) {
        out.push_str(&format!("{:03}", self.code));
        let mut rest = String::new();
        if let Some(e) = &self.enhanced {
            rest.push_str(e);
        }
        if !text.is_empty() {
            if !rest.is_empty() {
                rest.push(' ');
            }
            rest.push_str(text);
        }
        if !rest.is_empty() || sep == '-' {
            out.push(sep);
        }
        // Text can come from configuration or from a peer (e.g. a client's
        // HELO name echoed back): a raw CR or LF here would let it forge
        // extra reply lines.
        out.extend(
            rest.chars()
                .map(|c| if c == '\r' || c == '\n' { ' ' } else { c }),
        );
        out.push_str("\r\n");
    }

    /// The whole reply on one line, for logs and error messages.
    pub fn one_line(&self) -> String {
        let mut parts = vec![format!("{:03}", self.code)];
        if let Some(e) = &self.enhanced {
            parts.push(e.clone());
        }
        parts.extend(self.lines.iter().filter(|l| !l.is_empty()).cloned());
        parts.join(" ")
    }
}

impl fmt::Display for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.one_line())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_forms() {
        let cases: Vec<(Reply, &str)> = vec![
            (
                Reply::new(250, "2.1.0", "Sender OK"),
                "250 2.1.0 Sender OK\r\n",
            ),
            (
                Reply::new(220, "", "mx.example Microsoft ESMTP MAIL Service ready"),
                "220 mx.example Microsoft ESMTP MAIL Service ready\r\n",
            ),
            (Reply::new(334, "", ""), "334\r\n"),
            (
                Reply::multi(
                    250,
                    vec![
                        "mx.example Hello [10.0.0.1]".into(),
                        "SIZE 1000".into(),
                        "PIPELINING".into(),
                    ],
                ),
                "250-mx.example Hello [10.0.0.1]\r\n250-SIZE 1000\r\n250 PIPELINING\r\n",
            ),
            (
                Reply {
                    code: 550,
                    enhanced: Some("5.7.1".into()),
                    lines: vec!["a".into(), "b".into()],
                },
                "550-5.7.1 a\r\n550 5.7.1 b\r\n",
            ),
            (
                Reply::new(250, "", "x\r\n250 injected"),
                "250 x  250 injected\r\n",
            ),
            (Reply::multi(250, vec![]), "250\r\n"),
        ];
        for (reply, wire) in cases {
            assert_eq!(reply.to_wire(), wire, "{reply:?}");
        }
    }

    #[test]
    fn one_line_and_display() {
        let r = Reply::multi(250, vec!["host Hello".into(), "SIZE 5".into()]);
        assert_eq!(r.one_line(), "250 host Hello SIZE 5");
        let r = Reply::new(501, "5.1.7", "Invalid address");
        assert_eq!(r.to_string(), "501 5.1.7 Invalid address");
    }

    #[test]
    fn positive() {
        for (code, pos) in [
            (220, true),
            (250, true),
            (334, true),
            (354, true),
            (421, false),
            (550, false),
        ] {
            assert_eq!(Reply::new(code, "", "x").is_positive(), pos, "{code}");
        }
    }
}
