//! A small HTTPS client for the console tests: raw requests with exactly the headers a test
//! chooses (a forged Origin, a stolen cookie), from a chosen source address, trusting only the
//! gateway's own certificate. One request per connection; every step has a timeout.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

const TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug)]
pub struct Response {
    pub status: u16,
    /// Lower-cased names, in order.
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn all(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// A cookie this response sets: its value.
    pub fn set_cookie(&self, name: &str) -> Option<String> {
        self.all("set-cookie").into_iter().find_map(|c| {
            let (k, rest) = c.split_once('=')?;
            (k == name).then(|| rest.split(';').next().unwrap_or("").to_string())
        })
    }

    /// The value of a hidden `<input name=... value=...>` in the body.
    pub fn hidden(&self, name: &str) -> Option<String> {
        let at = self.body.find(&format!("name=\"{name}\""))?;
        let tag_start = self.body[..at].rfind('<')?;
        let tag_end = at + self.body[at..].find('>')?;
        let tag = &self.body[tag_start..tag_end];
        let v = tag.split("value=\"").nth(1)?;
        Some(v.split('"').next()?.to_string())
    }
}

pub struct Client {
    pub addr: SocketAddr,
    config: Arc<rustls::ClientConfig>,
    /// Bind the connection to this local address (another 127.x source).
    pub source: Option<std::net::IpAddr>,
}

impl Client {
    /// Trusts the certificate the gateway made in `data_dir` for `fqdn`.
    pub fn new(addr: SocketAddr, data_dir: &Path, fqdn: &str) -> Client {
        let pem = std::fs::read(data_dir.join(format!("certs/{fqdn}.crt")))
            .expect("the gateway's certificate");
        Client::trusting(addr, &pem)
    }

    /// Trusts only the certificates in `pem` (a CA, or the server's own).
    pub fn trusting(addr: SocketAddr, pem: &[u8]) -> Client {
        let mut roots = rustls::RootCertStore::empty();
        for c in rustls_pemfile::certs(&mut &pem[..]) {
            roots.add(c.unwrap()).unwrap();
        }
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
        Client {
            addr,
            config: Arc::new(config),
            source: None,
        }
    }

    pub fn with_source(&self, source: &str) -> Client {
        Client {
            addr: self.addr,
            config: self.config.clone(),
            source: Some(source.parse().unwrap()),
        }
    }

    /// `https://<addr>`: what a browser on this address sends as Origin.
    pub fn origin(&self) -> String {
        format!("https://{}", self.addr)
    }

    pub async fn get(&self, path: &str, headers: &[(&str, &str)]) -> Response {
        self.request("GET", path, headers, None).await
    }

    /// A form post (urlencoded `fields`).
    pub async fn post_form(
        &self,
        path: &str,
        headers: &[(&str, &str)],
        fields: &[(&str, &str)],
    ) -> Response {
        let body: String = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(fields)
            .finish();
        self.request("POST", path, headers, Some(body)).await
    }

    /// A multipart/form-data post, as a browser sends a form with a file: `parts` are (name,
    /// file name for a file part, content), in order.
    pub async fn post_multipart(
        &self,
        path: &str,
        headers: &[(&str, &str)],
        parts: &[(&str, Option<&str>, &[u8])],
    ) -> Response {
        let boundary = "----hubgateTestBoundary7MA4YWxkTrZu0gW";
        let mut body = Vec::new();
        for (name, file, content) in parts {
            body.extend_from_slice(format!("--{boundary}\r\n").as_bytes());
            match file {
                Some(f) => body.extend_from_slice(
                    format!(
                        "Content-Disposition: form-data; name=\"{name}\"; filename=\"{f}\"\r\nContent-Type: text/csv\r\n\r\n"
                    )
                    .as_bytes(),
                ),
                None => body.extend_from_slice(
                    format!("Content-Disposition: form-data; name=\"{name}\"\r\n\r\n").as_bytes(),
                ),
            }
            body.extend_from_slice(content);
            body.extend_from_slice(b"\r\n");
        }
        body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
        let content_type = format!("multipart/form-data; boundary={boundary}");
        self.send("POST", path, headers, Some((&content_type, &body)))
            .await
            .unwrap_or_else(|e| panic!("POST {path}: {e}"))
    }

    pub async fn request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<String>,
    ) -> Response {
        self.try_request(method, path, headers, body)
            .await
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"))
    }

    /// As `request`, with a failed connection or handshake as an error.
    pub async fn try_request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<String>,
    ) -> Result<Response, String> {
        let form = body
            .as_ref()
            .map(|b| ("application/x-www-form-urlencoded", b.as_bytes()));
        self.send(method, path, headers, form).await
    }

    /// One request with a body of this content type, if any.
    async fn send(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<(&str, &[u8])>,
    ) -> Result<Response, String> {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        if let Some(s) = self.source {
            socket.bind(SocketAddr::new(s, 0)).unwrap();
        }
        let tcp = tokio::time::timeout(TIMEOUT, socket.connect(self.addr))
            .await
            .map_err(|_| "connect timeout".to_string())?
            .map_err(|e| format!("connect to the console: {e}"))?;
        let connector = tokio_rustls::TlsConnector::from(self.config.clone());
        let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
        let mut tls = tokio::time::timeout(TIMEOUT, connector.connect(name, tcp))
            .await
            .map_err(|_| "handshake timeout".to_string())?
            .map_err(|e| format!("TLS handshake with the console: {e}"))?;
        let mut req = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n",
            self.addr
        );
        for (k, v) in headers {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        if let Some((content_type, b)) = body {
            req.push_str(&format!("Content-Type: {content_type}\r\n"));
            req.push_str(&format!("Content-Length: {}\r\n", b.len()));
        }
        req.push_str("\r\n");
        let mut req = req.into_bytes();
        if let Some((_, b)) = body {
            req.extend_from_slice(b);
        }
        tokio::time::timeout(TIMEOUT, tls.write_all(&req))
            .await
            .map_err(|_| "write timeout".to_string())?
            .map_err(|e| format!("write: {e}"))?;
        let mut raw = Vec::new();
        // The server may close without close_notify; what arrived is the response.
        let _ = tokio::time::timeout(TIMEOUT, tls.read_to_end(&mut raw))
            .await
            .map_err(|_| "response timeout".to_string())?;
        Ok(parse(&raw))
    }
}

fn parse(raw: &[u8]) -> Response {
    let text = String::from_utf8_lossy(raw);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no HTTP response: {text:?}"));
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line: {head:?}"));
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let chunked = headers
        .iter()
        .any(|(k, v)| k == "transfer-encoding" && v.eq_ignore_ascii_case("chunked"));
    let body = if chunked {
        dechunk(body)
    } else {
        body.to_string()
    };
    Response {
        status,
        headers,
        body,
    }
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    for _ in 0..100_000 {
        let Some((size, rest)) = s.split_once("\r\n") else {
            break;
        };
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        s = rest[n..].trim_start_matches("\r\n");
    }
    out
}
