//! Decoding of SASL PLAIN (RFC 4616) and LOGIN exchanges.

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

/// "Username:" — the LOGIN mechanism's first challenge.
pub const LOGIN_USERNAME_CHALLENGE: &str = "VXNlcm5hbWU6";
/// "Password:" — the LOGIN mechanism's second challenge.
pub const LOGIN_PASSWORD_CHALLENGE: &str = "UGFzc3dvcmQ6";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SaslError {
    Base64,
    Utf8,
    /// Decoded fine but not shaped as the mechanism requires.
    Malformed,
}

impl fmt::Display for SaslError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SaslError::Base64 => "invalid base64 in SASL response",
            SaslError::Utf8 => "SASL response is not UTF-8",
            SaslError::Malformed => "malformed SASL response",
        })
    }
}

impl std::error::Error for SaslError {}

/// A client answering a challenge with `*` aborts the exchange (RFC 4954).
pub fn is_cancel(line: &str) -> bool {
    line.trim() == "*"
}

fn decode_bytes(b64: &str) -> Result<Vec<u8>, SaslError> {
    let b64 = b64.trim();
    // RFC 4954: a lone "=" is an empty initial response.
    if b64 == "=" {
        return Ok(Vec::new());
    }
    STANDARD.decode(b64).map_err(|_| SaslError::Base64)
}

/// Decodes a PLAIN response into (authzid, authcid, password); authzid is
/// `""` when the client did not ask to act as someone else.
pub fn decode_plain(b64: &str) -> Result<(String, String, String), SaslError> {
    let raw = decode_bytes(b64)?;
    let text = String::from_utf8(raw).map_err(|_| SaslError::Utf8)?;
    let mut parts = text.split('\0');
    let (Some(authzid), Some(authcid), Some(password), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(SaslError::Malformed);
    };
    if authcid.is_empty() || password.is_empty() {
        return Err(SaslError::Malformed);
    }
    Ok((
        authzid.to_string(),
        authcid.to_string(),
        password.to_string(),
    ))
}

/// Decodes one LOGIN answer (user name or password).
pub fn decode_base64_text(b64: &str) -> Result<String, SaslError> {
    String::from_utf8(decode_bytes(b64)?).map_err(|_| SaslError::Utf8)
}

pub fn encode_base64_text(text: &str) -> String {
    STANDARD.encode(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn login_challenges() {
        assert_eq!(
            decode_base64_text(LOGIN_USERNAME_CHALLENGE).unwrap(),
            "Username:"
        );
        assert_eq!(
            decode_base64_text(LOGIN_PASSWORD_CHALLENGE).unwrap(),
            "Password:"
        );
        assert_eq!(encode_base64_text("Username:"), LOGIN_USERNAME_CHALLENGE);
        assert_eq!(encode_base64_text("Password:"), LOGIN_PASSWORD_CHALLENGE);
    }

    #[test]
    fn base64_text() {
        let cases: &[(&str, Result<&str, SaslError>)] = &[
            ("dXNlcg==", Ok("user")),
            (" dXNlcg== ", Ok("user")),
            ("=", Ok("")),
            ("", Ok("")),
            ("w6k=", Ok("é")),
            ("dXNlcg", Err(SaslError::Base64)),
            ("dXNlcg=", Err(SaslError::Base64)),
            ("!!!!", Err(SaslError::Base64)),
            ("/w==", Err(SaslError::Utf8)),
        ];
        for (input, want) in cases {
            assert_eq!(
                decode_base64_text(input).as_deref(),
                want.as_deref(),
                "{input:?}"
            );
        }
        for s in ["", "a", "user@example.com", "pässwörd"] {
            assert_eq!(decode_base64_text(&encode_base64_text(s)).unwrap(), s);
        }
    }

    #[test]
    fn plain() {
        let enc = |s: &[u8]| STANDARD.encode(s);
        let ok = |z: &str, c: &str, p: &str| Ok((z.to_string(), c.to_string(), p.to_string()));
        let cases = [
            (enc(b"\0user\0secret"), ok("", "user", "secret")),
            (enc(b"admin\0user\0secret"), ok("admin", "user", "secret")),
            (enc("\0üser\0sécret".as_bytes()), ok("", "üser", "sécret")),
            (enc(b"user\0secret"), Err(SaslError::Malformed)),
            (enc(b"\0\0secret"), Err(SaslError::Malformed)),
            (enc(b"\0user\0"), Err(SaslError::Malformed)),
            (enc(b"\0user\0pw\0x"), Err(SaslError::Malformed)),
            (enc(b"\0user\0\xff"), Err(SaslError::Utf8)),
            ("=".to_string(), Err(SaslError::Malformed)),
            ("***".to_string(), Err(SaslError::Base64)),
        ];
        for (input, want) in cases {
            assert_eq!(decode_plain(&input), want, "{input:?}");
        }
    }

    #[test]
    fn cancel() {
        for (line, want) in [
            ("*", true),
            (" * ", true),
            ("**", false),
            ("", false),
            ("Kg==", false),
        ] {
            assert_eq!(is_cancel(line), want, "{line:?}");
        }
    }
}
