//! ESMTP parameters of MAIL FROM and RCPT TO (SIZE, BODY, DSN, SMTPUTF8,
//! AUTH, and Exchange's XSHADOW).

use super::command::ProtoError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Body {
    SevenBit,
    EightBitMime,
    BinaryMime,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ret {
    Full,
    Hdrs,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Notify {
    Never,
    Success,
    Failure,
    Delay,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MailParams {
    pub size: Option<u64>,
    pub body: Option<Body>,
    pub ret: Option<Ret>,
    /// xtext-decoded.
    pub envid: Option<String>,
    pub smtputf8: bool,
    /// xtext-decoded; `"<>"` means the submitter is unknown.
    pub auth: Option<String>,
    /// xtext-decoded, case preserved.
    pub xshadow: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RcptParams {
    pub notify: Option<Vec<Notify>>,
    /// (addr-type as given, e.g. "rfc822"; xtext-decoded address).
    pub orcpt: Option<(String, String)>,
}

/// Splits `KEYWORD[=value]` tokens separated by spaces, checking the RFC 5321
/// esmtp-keyword / esmtp-value syntax (values may carry UTF-8, RFC 6531).
fn tokens(s: &str) -> impl Iterator<Item = Result<(String, Option<&str>), ProtoError>> {
    s.split([' ', '\t']).filter(|t| !t.is_empty()).map(|tok| {
        let (key, value) = match tok.split_once('=') {
            Some((k, v)) => (k, Some(v)),
            None => (tok, None),
        };
        let key_ok = key
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_alphanumeric())
            && key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
        let value_ok = value.is_none_or(|v| {
            !v.is_empty()
                && v.chars()
                    .all(|c| !c.is_ascii() || (('!'..='~').contains(&c) && c != '='))
        });
        if key_ok && value_ok {
            Ok((key.to_ascii_uppercase(), value))
        } else {
            Err(ProtoError::UnrecognizedParameter(key.to_string()))
        }
    })
}

fn set_once<T>(slot: &mut Option<T>, key: &str, value: Option<T>) -> Result<(), ProtoError> {
    match value {
        Some(v) if slot.is_none() => {
            *slot = Some(v);
            Ok(())
        }
        _ => Err(ProtoError::UnrecognizedParameter(key.to_string())),
    }
}

pub(super) fn parse_u64(v: &str) -> Option<u64> {
    // `u64::from_str` accepts a leading '+', which is not SMTP syntax.
    if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    v.parse().ok()
}

impl MailParams {
    /// Parses the parameters following `MAIL FROM:<...>`.
    pub fn parse(s: &str) -> Result<Self, ProtoError> {
        let mut p = MailParams::default();
        for tok in tokens(s) {
            let (key, value) = tok?;
            let bad = || ProtoError::UnrecognizedParameter(key.clone());
            match key.as_str() {
                "SIZE" => set_once(&mut p.size, &key, value.and_then(parse_u64))?,
                "BODY" => {
                    let body = value.and_then(|v| match v.to_ascii_uppercase().as_str() {
                        "7BIT" => Some(Body::SevenBit),
                        "8BITMIME" => Some(Body::EightBitMime),
                        "BINARYMIME" => Some(Body::BinaryMime),
                        _ => None,
                    });
                    set_once(&mut p.body, &key, body)?
                }
                "RET" => {
                    let ret = value.and_then(|v| match v.to_ascii_uppercase().as_str() {
                        "FULL" => Some(Ret::Full),
                        "HDRS" => Some(Ret::Hdrs),
                        _ => None,
                    });
                    set_once(&mut p.ret, &key, ret)?
                }
                "ENVID" => set_once(&mut p.envid, &key, value.and_then(xtext_decode))?,
                "AUTH" => set_once(&mut p.auth, &key, value.and_then(xtext_decode))?,
                "XSHADOW" => set_once(&mut p.xshadow, &key, value.and_then(xtext_decode))?,
                "SMTPUTF8" => {
                    if value.is_some() || p.smtputf8 {
                        return Err(bad());
                    }
                    p.smtputf8 = true;
                }
                _ => return Err(bad()),
            }
        }
        Ok(p)
    }
}

impl RcptParams {
    /// Parses the parameters following `RCPT TO:<...>`.
    pub fn parse(s: &str) -> Result<Self, ProtoError> {
        let mut p = RcptParams::default();
        for tok in tokens(s) {
            let (key, value) = tok?;
            match key.as_str() {
                "NOTIFY" => set_once(&mut p.notify, &key, value.and_then(parse_notify))?,
                "ORCPT" => set_once(&mut p.orcpt, &key, value.and_then(parse_orcpt))?,
                _ => return Err(ProtoError::UnrecognizedParameter(key)),
            }
        }
        Ok(p)
    }
}

fn parse_notify(v: &str) -> Option<Vec<Notify>> {
    let mut out = Vec::new();
    for item in v.split(',') {
        let n = match item.to_ascii_uppercase().as_str() {
            "NEVER" => Notify::Never,
            "SUCCESS" => Notify::Success,
            "FAILURE" => Notify::Failure,
            "DELAY" => Notify::Delay,
            _ => return None,
        };
        if out.contains(&n) {
            return None;
        }
        out.push(n);
    }
    // RFC 3461: NEVER cannot be combined with anything else.
    if out.len() > 1 && out.contains(&Notify::Never) {
        return None;
    }
    Some(out)
}

fn parse_orcpt(v: &str) -> Option<(String, String)> {
    let (kind, addr) = v.split_once(';')?;
    let kind_ok = !kind.is_empty() && kind.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
    let addr = xtext_decode(addr)?;
    (kind_ok && !addr.is_empty()).then(|| (kind.to_string(), addr))
}

/// Decodes RFC 3461 xtext (`+XX` hex escapes). Non-ASCII characters are taken
/// literally since SMTPUTF8 peers send them unescaped. `None` on bad syntax or
/// when the escapes do not form UTF-8.
pub fn xtext_decode(s: &str) -> Option<String> {
    let mut out = Vec::with_capacity(s.len());
    let bytes = s.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        match b {
            b'+' => {
                let hex = bytes.get(i + 1..i + 3)?;
                let hi = (hex[0] as char).to_digit(16)?;
                let lo = (hex[1] as char).to_digit(16)?;
                out.push((hi * 16 + lo) as u8);
                i += 3;
            }
            b'=' => return None,
            b'!'..=b'~' | 0x80.. => {
                out.push(b);
                i += 1;
            }
            _ => return None,
        }
    }
    String::from_utf8(out).ok()
}

/// Encodes as RFC 3461 xtext; everything outside printable ASCII (and `+`,
/// `=`) is escaped byte by byte, so the output is pure ASCII.
pub fn xtext_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for &b in s.as_bytes() {
        if (b'!'..=b'~').contains(&b) && b != b'+' && b != b'=' {
            out.push(b as char);
        } else {
            out.push_str(&format!("+{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unrec(name: &str) -> ProtoError {
        ProtoError::UnrecognizedParameter(name.to_string())
    }

    #[test]
    fn xtext() {
        let cases = [
            ("abc", Some("abc")),
            ("a+2Bb", Some("a+b")),
            ("a+2bb", Some("a+b")),
            ("+3D", Some("=")),
            ("<>", Some("<>")),
            ("a+20b", Some("a b")),
            ("+C3+A9", Some("é")),
            ("é", Some("é")),
            ("", Some("")),
            ("a=b", None),
            ("a b", None),
            ("a+2", None),
            ("a+", None),
            ("+ZZ", None),
            ("+FF", None),
            ("a\tb", None),
        ];
        for (input, want) in cases {
            assert_eq!(xtext_decode(input).as_deref(), want, "{input:?}");
        }
        for s in [
            "",
            "plain",
            "a+b=c",
            "with space",
            "tab\t",
            "üñí©ødé",
            "\u{0}\u{7f}~!",
        ] {
            let enc = xtext_encode(s);
            assert!(
                enc.bytes().all(|b| (b'!'..=b'~').contains(&b) && b != b'='),
                "{enc}"
            );
            assert_eq!(xtext_decode(&enc).as_deref(), Some(s));
        }
        assert_eq!(xtext_encode("a+b=c d"), "a+2Bb+3Dc+20d");
    }

    #[test]
    fn mail_params_valid() {
        let p = MailParams::parse(
            "size=1000 BODY=8bitmime RET=hdrs ENVID=QQ+2B1 SMTPUTF8 AUTH=<> XSHADOW=Srv01.Example",
        )
        .unwrap();
        assert_eq!(
            p,
            MailParams {
                size: Some(1000),
                body: Some(Body::EightBitMime),
                ret: Some(Ret::Hdrs),
                envid: Some("QQ+1".into()),
                smtputf8: true,
                auth: Some("<>".into()),
                xshadow: Some("Srv01.Example".into()),
            }
        );
        assert_eq!(MailParams::parse("").unwrap(), MailParams::default());
        assert_eq!(
            MailParams::parse("  BODY=7BIT  ").unwrap().body,
            Some(Body::SevenBit)
        );
        assert_eq!(
            MailParams::parse("BODY=BINARYMIME").unwrap().body,
            Some(Body::BinaryMime)
        );
        assert_eq!(MailParams::parse("RET=FULL").unwrap().ret, Some(Ret::Full));
        assert_eq!(
            MailParams::parse("AUTH=u+2Bx@example.com")
                .unwrap()
                .auth
                .as_deref(),
            Some("u+x@example.com")
        );
        assert_eq!(
            MailParams::parse("SIZE=18446744073709551615").unwrap().size,
            Some(u64::MAX)
        );
    }

    #[test]
    fn mail_params_invalid() {
        let cases = [
            ("FOO=1", "FOO"),
            ("SIZE", "SIZE"),
            ("SIZE=", "SIZE"),
            ("SIZE=abc", "SIZE"),
            ("SIZE=+5", "SIZE"),
            ("SIZE=-5", "SIZE"),
            ("SIZE=18446744073709551616", "SIZE"),
            ("SIZE=1 size=2", "SIZE"),
            ("BODY=9BIT", "BODY"),
            ("BODY=7BIT BODY=7BIT", "BODY"),
            ("RET=ALL", "RET"),
            ("ENVID=a=b", "ENVID"),
            ("ENVID=a+zz", "ENVID"),
            ("SMTPUTF8=yes", "SMTPUTF8"),
            ("SMTPUTF8 SMTPUTF8", "SMTPUTF8"),
            ("AUTH", "AUTH"),
            ("=x", ""),
            ("-X=1", "-X"),
            ("NOTIFY=NEVER", "NOTIFY"),
            ("SIZE=1\u{0}", "SIZE"),
        ];
        for (input, name) in cases {
            assert_eq!(MailParams::parse(input), Err(unrec(name)), "{input:?}");
        }
    }

    #[test]
    fn rcpt_params() {
        let p = RcptParams::parse("notify=success,Delay ORCPT=rfc822;Bob+2Bx@Example.com").unwrap();
        assert_eq!(p.notify, Some(vec![Notify::Success, Notify::Delay]));
        assert_eq!(p.orcpt, Some(("rfc822".into(), "Bob+x@Example.com".into())));
        assert_eq!(
            RcptParams::parse("NOTIFY=NEVER").unwrap().notify,
            Some(vec![Notify::Never])
        );
        assert_eq!(
            RcptParams::parse("NOTIFY=FAILURE").unwrap().notify,
            Some(vec![Notify::Failure])
        );
        assert_eq!(RcptParams::parse("").unwrap(), RcptParams::default());

        let bad = [
            ("NOTIFY=NEVER,SUCCESS", "NOTIFY"),
            ("NOTIFY=SUCCESS,SUCCESS", "NOTIFY"),
            ("NOTIFY=SUCCESS,", "NOTIFY"),
            ("NOTIFY=SOMETIMES", "NOTIFY"),
            ("NOTIFY", "NOTIFY"),
            ("NOTIFY=DELAY NOTIFY=DELAY", "NOTIFY"),
            ("ORCPT=rfc822", "ORCPT"),
            ("ORCPT=;a@b", "ORCPT"),
            ("ORCPT=rfc822;", "ORCPT"),
            ("ORCPT=rfc822;a+zz", "ORCPT"),
            ("ORCPT=rfc822;a@b ORCPT=rfc822;a@b", "ORCPT"),
            ("SIZE=1", "SIZE"),
            ("XFOO", "XFOO"),
        ];
        for (input, name) in bad {
            assert_eq!(RcptParams::parse(input), Err(unrec(name)), "{input:?}");
        }
    }
}
