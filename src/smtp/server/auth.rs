//! AUTH PLAIN and LOGIN against hubgate's accounts (argon2id).

use super::identity::Identity;
use super::session::{Next, Session};
use crate::org::Account;
use crate::org::account::EXCHANGE_SERVERS;
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
        match self.verify(&user, &password).await {
            Some(account) => {
                self.identity = Identity::authenticated(&account, &self.acl);
                let name = account.name.clone();
                self.log_event('*', &name, "authenticated");
                self.log_permissions();
                self.reply(Reply::new(235, "2.7.0", "Authentication successful"));
                Next::Continue
            }
            None => {
                self.logon_failures += 1;
                self.reply_tarpit(Reply::new(535, "5.7.3", "Authentication unsuccessful"))
                    .await;
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
        }
    }

    /// Checks the password. Whether the account may submit is MAIL's question (550 5.7.1).
    async fn verify(&mut self, user: &str, password: &str) -> Option<Account> {
        let account = self.gw.directory.account(user).await.ok().flatten()?;
        let pw = password.to_string();
        let acc = account.clone();
        let ok = tokio::task::spawn_blocking(move || acc.verify(&pw))
            .await
            .unwrap_or(false);
        if !ok {
            return None;
        }
        // Without BasicAuth only gateways (ExchangeServer authentication) may log on.
        if !self.basic_auth_offered() && !account.is_member(EXCHANGE_SERVERS) {
            return None;
        }
        Some(account)
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
