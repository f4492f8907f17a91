//! Messages put straight into the queue through `queue::accept` (the path DATA's end takes),
//! for tests about what the queue operations see rather than about SMTP.

use std::net::IpAddr;

use hubgate::transport::queue::store::Disposition;
use hubgate::transport::queue::{self, Envelope, EnvelopeRecipient, Spool};
use uuid::Uuid;

use super::{SERVER, Setup};

/// What one directly accepted message carries.
pub struct Held<'a> {
    pub from: &'a str,
    pub recipients: Vec<String>,
    pub subject: Option<&'a str>,
    pub header: Vec<u8>,
    pub body: Vec<u8>,
}

impl<'a> Held<'a> {
    /// A relayed "offer" from `from` to `recipients`, with its From and Subject headers.
    pub fn offer(from: &'a str, recipients: &[&str]) -> Held<'a> {
        Held {
            from,
            recipients: recipients.iter().map(|r| r.to_string()).collect(),
            subject: Some("offer"),
            header: format!("From: <{from}>\r\nSubject: offer\r\n\r\n").into_bytes(),
            body: b"Body.\r\n".to_vec(),
        }
    }

    /// A message without headers whose body is `body_len` bytes, to `recipients`.
    pub fn sized(
        from: &'a str,
        recipients: Vec<String>,
        subject: Option<&'a str>,
        body_len: usize,
    ) -> Held<'a> {
        Held {
            from,
            recipients,
            subject,
            header: b"\r\n".to_vec(),
            body: vec![b'x'; body_len],
        }
    }

    /// Its envelope as message `id`, from 192.0.2.10 through the Default connector.
    pub fn envelope(&self, id: Uuid) -> Envelope {
        Envelope {
            id,
            server: SERVER.into(),
            from: self.from.into(),
            recipients: self
                .recipients
                .iter()
                .map(|address| EnvelopeRecipient {
                    address: address.clone(),
                    orcpt: None,
                    notify: None,
                    disposition: Disposition::Relay,
                })
                .collect(),
            source_ip: "192.0.2.10".parse::<IpAddr>().unwrap(),
            receive_connector: "HUB1\\Default HUB1".into(),
            helo: "client.example".into(),
            auth_user: None,
            internet_message_id: Some(format!("<{id}@example.org>")),
            subject: self.subject.map(String::from),
            env_id: None,
            ret: None,
            body_type: None,
            smtp_utf8: false,
            shadow: None,
        }
    }

    /// Accepted on `setup`'s server from 192.0.2.10 through its Default connector.
    pub async fn accept(self, setup: &Setup) -> Uuid {
        let id = Uuid::new_v4();
        let env = self.envelope(id);
        let spool = Spool::open(setup.data_dir.path()).unwrap();
        queue::accept(&setup.pool, &spool, &env, self.header, self.body)
            .await
            .unwrap();
        id
    }
}
