//! AUTH PLAIN and LOGIN against hubgate's accounts (argon2id).

use std::time::Duration;

use tokio::sync::OwnedSemaphorePermit;

use super::auth_throttle::Verdict;
use super::identity::Identity;
use super::session::{Next, Session};
use crate::org::Account;
use crate::org::account::{self, EXCHANGE_SERVERS};
use crate::smtp::proto::{Line, Reply, sasl};

impl Session {
    pub async fn auth(&mut self, mechanism: &str, initial: Option<String>) -> Next {
        if self.helo.is_none() || !self.esmtp {
            return self.protocol_error(Reply::new(503, "5.5.2", "Send hello first"));
        }
        if self.identity.account.is_some() || self.tx.is_some() {
            return self.protocol_error(Reply::new(503, "5.5.1", "Bad sequence of commands"));
        }
        if !self.auth_offered() {
            if !self.is_tls()
                && (self
                    .connector
                    .has_auth(crate::org::AuthMechanism::BasicAuthRequireTls)
                    || self
                        .connector
                        .has_auth(crate::org::AuthMechanism::ExchangeServer))
                && self.gw.tls.is_some()
            {
                return self.protocol_error(Reply::new(
                    530,
                    "5.7.0",
                    "Must issue a STARTTLS command first",
                ));
            }
            return self.protocol_error(Reply::new(
                504,
                "5.7.4",
                "Unrecognized authentication type",
            ));
        }
        let creds = match mechanism {
            "PLAIN" => self.auth_plain(initial).await,
            "LOGIN" => self.auth_login(initial).await,
            _ => {
                return self.protocol_error(Reply::new(
                    504,
                    "5.7.4",
                    "Unrecognized authentication type",
                ));
            }
        };
        let (user, password) = match creds {
            Ok(c) => c,
            Err(AuthAbort::Closed) => return Next::Close,
            Err(AuthAbort::Reply(r)) => return self.protocol_error(r),
        };
        match self.throttled_verify(&user, &password).await {
            Checked::Accepted(account) => {
                self.identity = Identity::authenticated(&account, &self.acl);
                let name = account.name.clone();
                self.log_event('*', &name, "authenticated");
                self.log_permissions();
                self.reply(Reply::new(235, "2.7.0", "Authentication successful"));
                Next::Continue
            }
            Checked::Refused => {
                self.reply_tarpit(Reply::new(535, "5.7.3", "Authentication unsuccessful"))
                    .await;
                self.count_logon_failure()
            }
            Checked::Unavailable => {
                self.reply(temporary_failure());
                self.count_logon_failure()
            }
        }
    }

    fn count_logon_failure(&mut self) -> Next {
        self.logon_failures += 1;
        if self.logon_failures > self.connector.max_logon_failures as u32 {
            self.reply(Reply::new(
                421,
                "4.7.0",
                "Too many errors on this connection, closing transmission channel",
            ));
            return Next::Close;
        }
        Next::Continue
    }

    /// The gateway-wide throttle around `verify`: a throttled source or pair waits, a locked one
    /// is refused without its password being looked at, and every outcome is counted.
    async fn throttled_verify(&mut self, user: &str, password: &str) -> Checked {
        let throttle = self.gw.auth_throttle.clone();
        let source = self.remote.ip();
        // Held to the end, so that this source's next attempt sees this one's outcome.
        let Some(_turn) = throttle.source_turn(source).await else {
            self.log_event(
                '*',
                "",
                "AUTH refused: too many attempts in progress from this source",
            );
            return Checked::Unavailable;
        };
        match throttle.check(source, user) {
            Verdict::Proceed => {}
            Verdict::Delay(d) => {
                self.log_event('*', &format!("AUTH throttled for {}", span_text(d)), "");
                if !self.flush().await {
                    return Checked::Unavailable;
                }
                tokio::time::sleep(d).await;
            }
            Verdict::Refuse(left) => {
                self.log_event(
                    '*',
                    &format!(
                        "AUTH refused for {} after repeated failures",
                        span_text(left)
                    ),
                    "",
                );
                return Checked::Unavailable;
            }
        }
        let Some(slot) = throttle.verification_slot().await else {
            self.log_event('*', "", "AUTH refused: too many verifications in progress");
            return Checked::Unavailable;
        };
        match self.verify(user, password, slot).await {
            Ok(Some(account)) => {
                throttle.succeeded(source, user);
                Checked::Accepted(account)
            }
            Ok(None) => {
                throttle.failed(source, user);
                Checked::Refused
            }
            // Not the client's failure: nothing is counted against it.
            Err(()) => Checked::Unavailable,
        }
    }

    /// Checks the password; `Err` when it could not be checked. Whether the account may submit
    /// is MAIL's question (550 5.7.1).
    async fn verify(
        &mut self,
        user: &str,
        password: &str,
        slot: OwnedSemaphorePermit,
    ) -> Result<Option<Account>, ()> {
        let found = match self.gw.directory.account(user).await {
            Ok(found) => found,
            Err(e) => {
                tracing::warn!("AUTH: looking up the account: {e}");
                return Err(());
            }
        };
        let pw = password.to_string();
        let acc = found.clone();
        // The slot goes with the verification: a client that disconnects meanwhile does not
        // free it before argon2 is done.
        let ok = tokio::task::spawn_blocking(move || {
            let _slot = slot;
            account::verify_or_dummy(acc.as_ref(), &pw)
        })
        .await
        .map_err(|_| ())?;
        let Some(account) = found.filter(|_| ok) else {
            return Ok(None);
        };
        // Without BasicAuth only gateways (ExchangeServer authentication) may log on.
        if !self.basic_auth_offered() && !account.is_member(EXCHANGE_SERVERS) {
            return Ok(None);
        }
        Ok(Some(account))
    }

    async fn auth_plain(&mut self, initial: Option<String>) -> Result<(String, String), AuthAbort> {
        let response = match initial {
            Some(i) if i != "=" => i,
            Some(_) => String::new(),
            None => {
                self.reply(Reply::new(334, "", ""));
                self.read_auth_line().await?
            }
        };
        let (_authz, user, password) = sasl::decode_plain(&response).map_err(|_| {
            AuthAbort::Reply(Reply::new(
                501,
                "5.5.2",
                "Cannot decode the authentication response",
            ))
        })?;
        Ok((user, password))
    }

    async fn auth_login(&mut self, initial: Option<String>) -> Result<(String, String), AuthAbort> {
        let decode = |s: &str| {
            sasl::decode_base64_text(s).map_err(|_| {
                AuthAbort::Reply(Reply::new(
                    501,
                    "5.5.2",
                    "Cannot decode the authentication response",
                ))
            })
        };
        let user = match initial {
            Some(i) => decode(&i)?,
            None => {
                self.reply(Reply::new(334, "", "VXNlcm5hbWU6"));
                let l = self.read_auth_line().await?;
                decode(&l)?
            }
        };
        self.reply(Reply::new(334, "", "UGFzc3dvcmQ6"));
        let l = self.read_auth_line().await?;
        let password = decode(&l)?;
        Ok((user, password))
    }

    /// One SASL response line; `*` cancels the exchange (RFC 4954).
    async fn read_auth_line(&mut self) -> Result<String, AuthAbort> {
        if !self.flush().await {
            return Err(AuthAbort::Closed);
        }
        let mut buf = vec![0u8; 4096];
        loop {
            if let Some(line) = self.reader.next_line() {
                return match line {
                    Line::TooLong => Err(AuthAbort::Reply(Reply::new(
                        500,
                        "5.5.6",
                        "Authentication exchange line is too long",
                    ))),
                    Line::Complete(b) => {
                        let s = String::from_utf8_lossy(&b).trim().to_string();
                        if sasl::is_cancel(&s) {
                            Err(AuthAbort::Reply(Reply::new(
                                501,
                                "5.0.0",
                                "Authentication cancelled",
                            )))
                        } else {
                            Ok(s)
                        }
                    }
                };
            }
            match self.read_chunk(&mut buf).await {
                Some(n) => self.reader.push(&buf[..n]),
                None => return Err(AuthAbort::Closed),
            }
        }
    }
}

enum AuthAbort {
    Closed,
    Reply(Reply),
}

enum Checked {
    Accepted(Account),
    Refused,
    /// Locked out, or no verification slot: nothing was verified.
    Unavailable,
}

/// Exchange's answer when authentication cannot be completed now.
fn temporary_failure() -> Reply {
    Reply::new(454, "4.7.0", "Temporary authentication failure")
}

/// `0.00:01:05.250`: Exchange's span form, with milliseconds since the first delays are short.
pub(super) fn span_text(d: Duration) -> String {
    let s = d.as_secs();
    format!(
        "{}.{:02}:{:02}:{:02}.{:03}",
        s / 86400,
        (s / 3600) % 24,
        (s / 60) % 60,
        s % 60,
        d.subsec_millis()
    )
}

/// What the protocol log shows in place of anything that may carry a credential.
pub const HIDDEN: &str = "<authentication response>";

/// SASL mechanism names that are shown as they are; any other word after AUTH may be a secret
/// typed in the wrong place.
const MECHANISMS: &[&str] = &[
    "PLAIN",
    "LOGIN",
    "CRAM-MD5",
    "DIGEST-MD5",
    "GSSAPI",
    "NTLM",
    "XOAUTH2",
    "OAUTHBEARER",
    "SCRAM-SHA-1",
    "SCRAM-SHA-256",
    "EXTERNAL",
    "ANONYMOUS",
];

/// The protocol log's form of a command line that may carry credentials, `None` when the line
/// can be logged as it is. Applies whether or not the line parsed: an AUTH line that fails to
/// parse carries the same secrets, and so do SASL responses a client pipelined after an AUTH
/// that was refused before its exchange began (they then arrive as "commands").
pub fn masked_log_form(line: &[u8], parsed: bool) -> Option<String> {
    let start = line
        .iter()
        .position(|b| *b != b' ' && *b != b'\t')
        .unwrap_or(line.len());
    let line = &line[start..];
    if line.len() >= 4 && line[..4].eq_ignore_ascii_case(b"AUTH") {
        let rest = &line[4..];
        let mut shown = String::from("AUTH");
        let separated = rest.first().is_some_and(|b| *b == b' ' || *b == b'\t');
        let words: Vec<&[u8]> = rest
            .split(|b| *b == b' ' || *b == b'\t')
            .filter(|w| !w.is_empty())
            .collect();
        let mut hidden = &words[..];
        if separated
            && let Some(first) = words.first()
            && let Some(m) = MECHANISMS
                .iter()
                .find(|m| first.eq_ignore_ascii_case(m.as_bytes()))
        {
            shown.push(' ');
            shown.push_str(m);
            hidden = &words[1..];
        }
        if !hidden.is_empty() || (!separated && !rest.is_empty()) {
            shown.push(' ');
            shown.push_str(HIDDEN);
        }
        return Some(shown);
    }
    if !parsed && looks_like_sasl_response(line) {
        return Some(HIDDEN.to_string());
    }
    None
}

/// One word of base64 that is not a plain upper-case word: a misspelt command such as `HELLO`
/// stays readable, `dXNlcg==` does not.
fn looks_like_sasl_response(line: &[u8]) -> bool {
    let word = line
        .iter()
        .rposition(|b| *b != b' ' && *b != b'\t')
        .map_or(&line[..0], |end| &line[..=end]);
    !word.is_empty()
        && word
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'='))
        && !word.iter().all(u8::is_ascii_uppercase)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auth_arguments_are_masked_parsed_or_not() {
        let cases: &[(&[u8], bool, Option<&str>)] = &[
            (b"AUTH LOGIN", true, Some("AUTH LOGIN")),
            (
                b"auth plain AHVzZXIAcHc=",
                true,
                Some("AUTH PLAIN <authentication response>"),
            ),
            (
                b"AUTH PLAIN AHVzZXIAcHc= extra",
                false,
                Some("AUTH PLAIN <authentication response>"),
            ),
            (
                b"AUTH c2VjcmV0UGFzcw",
                true,
                Some("AUTH <authentication response>"),
            ),
            (
                b"AUTH\x00PLAIN AHVzZXIAcHc=",
                false,
                Some("AUTH <authentication response>"),
            ),
            (b"  AUTH", false, Some("AUTH")),
            (b"dXNlcg==", false, Some("<authentication response>")),
            (b"UGFzc3dvcmQx", false, Some("<authentication response>")),
            (b"HELLO", false, None),
            (b"GET / HTTP/1.1", false, None),
            (b"MAIL FROM:<a@example.org>", true, None),
        ];
        for (line, parsed, want) in cases {
            assert_eq!(
                masked_log_form(line, *parsed).as_deref(),
                *want,
                "{:?}",
                String::from_utf8_lossy(line)
            );
        }
    }
}
