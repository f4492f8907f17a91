//! HELO/EHLO: the greeting and the extension list in Exchange's order (reference §3.5).

use super::session::{Next, Session};
use crate::org::AuthMechanism;
use crate::smtp::proto::Reply;

impl Session {
    pub fn ehlo(&mut self, host: String, esmtp: bool) -> Next {
        if self.connector.require_ehlo_domain && !is_domain_or_literal(&host) {
            return self.protocol_error(Reply::new(501, "5.5.4", "Invalid domain name"));
        }
        self.tx = None;
        self.helo = Some(host);
        self.esmtp = esmtp;
        let greeting = format!("{} Hello [{}]", self.connector.fqdn, self.remote.ip());
        if !esmtp {
            self.reply(Reply::new(250, "", greeting));
            return Next::Continue;
        }
        let lines = self.ehlo_lines(greeting);
        self.reply(Reply::multi(250, lines));
        Next::Continue
    }

    fn ehlo_lines(&self, greeting: String) -> Vec<String> {
        let c = &self.connector;
        let mut lines = vec![greeting];
        match c.size_enabled.as_str() {
            "Enabled" => lines.push(format!("SIZE {}", c.max_message_size)),
            "EnabledWithoutValue" => lines.push("SIZE".into()),
            _ => {}
        }
        if c.pipelining_enabled {
            lines.push("PIPELINING".into());
        }
        if c.dsn_enabled {
            lines.push("DSN".into());
        }
        if c.enhanced_status_codes_enabled {
            lines.push("ENHANCEDSTATUSCODES".into());
        }
        if self.starttls_offered() {
            lines.push("STARTTLS".into());
        }
        if self.auth_offered() {
            lines.push("AUTH PLAIN LOGIN".into());
        }
        if c.eight_bit_mime_enabled {
            lines.push("8BITMIME".into());
        }
        if c.binary_mime_enabled && c.chunking_enabled {
            lines.push("BINARYMIME".into());
        }
        if c.chunking_enabled {
            lines.push("CHUNKING".into());
        }
        if c.smtp_utf8_enabled {
            lines.push("SMTPUTF8".into());
        }
        if c.orar_enabled {
            lines.push("XORAR".into());
        }
        // After XRDST, before XOORG (reference §3.5); hubgate offers neither of those.
        if self.xshadow_offered() {
            lines.push("XSHADOW".into());
        }
        lines
    }

    /// Basic authentication is offered when the connector has BasicAuth (after STARTTLS if it has
    /// BasicAuthRequireTLS); ExchangeServer authentication, between gateways, always needs TLS.
    pub fn auth_offered(&self) -> bool {
        self.basic_auth_offered() || self.exchange_auth_offered()
    }

    pub fn basic_auth_offered(&self) -> bool {
        self.identity.account.is_none()
            && self.connector.has_auth(AuthMechanism::BasicAuth)
            && (self.is_tls() || !self.connector.has_auth(AuthMechanism::BasicAuthRequireTls))
    }

    pub fn exchange_auth_offered(&self) -> bool {
        self.identity.account.is_none()
            && self.connector.has_auth(AuthMechanism::ExchangeServer)
            && self.is_tls()
    }
}

/// RequireEHLODomain: the HELO/EHLO argument must be a fully qualified domain name in RFC 5321's
/// letter-digit-hyphen syntax (a trailing dot allowed), or an address literal. The parser already
/// refused malformed literals and names that are not names at all; this refuses what it lets
/// through for real-world clients: single-label (NetBIOS) names, underscores, non-ASCII, and
/// bare IP addresses.
pub fn is_domain_or_literal(host: &str) -> bool {
    if host.starts_with('[') {
        return true;
    }
    let name = host.strip_suffix('.').unwrap_or(host);
    let labels: Vec<&str> = name.split('.').collect();
    name.len() <= 253
        && labels.len() >= 2
        && labels.iter().all(|l| {
            (1..=63).contains(&l.len())
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
        && labels
            .last()
            .is_some_and(|tld| !tld.bytes().all(|b| b.is_ascii_digit()))
}

#[cfg(test)]
mod tests {
    use super::is_domain_or_literal;

    #[test]
    fn ehlo_domains() {
        for ok in [
            "mx.example.com",
            "mx.example.com.",
            "a-b.c0.test",
            "[10.1.2.3]",
            "[IPv6:2001:db8::1]",
        ] {
            assert!(is_domain_or_literal(ok), "{ok}");
        }
        for bad in [
            "client",
            "MY_PC.corp.local",
            "10.1.2.3",
            "-a.example",
            "a-.example",
            "bücher.example",
            "a..b",
        ] {
            assert!(!is_domain_or_literal(bad), "{bad}");
        }
    }
}
