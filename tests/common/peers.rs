//! Real next hops for delivery tests: aiosmtpd sinks (tests/peers/sink.py) on 127.0.0.x.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Debian's python3-aiosmtpd is installed for the system interpreter, not for a pyenv one.
const PYTHON: &str = "/usr/bin/python3";

#[derive(Clone, Debug, serde::Deserialize)]
pub struct Received {
    pub mail_from: String,
    pub mail_options: Vec<String>,
    pub rcpt_tos: Vec<String>,
    pub rcpt_options: Vec<Vec<String>>,
    pub tls: bool,
    pub auth: Option<String>,
    pub data: String,
    /// The client's (ip, port): one port per connection.
    pub peer: (String, u16),
    /// When DATA began and ended at the sink (seconds since the epoch).
    pub started: f64,
    pub ended: f64,
}

/// Options for a sink.
#[derive(Default, Clone)]
pub struct SinkOptions {
    pub tls: Option<(PathBuf, PathBuf)>,
    pub require_tls: bool,
    pub auth: Option<String>,
    /// AUTH offered but not required.
    pub auth_optional: bool,
    pub refuse: Vec<String>,
    pub tempfail: Vec<String>,
    /// Seconds to wait before answering each DATA (a slow next hop).
    pub delay: Option<f64>,
    /// When not empty, the only recipients that exist: every other RCPT gets `550 5.1.1`
    /// (a primary that knows its mailboxes).
    pub only: Vec<String>,
}

/// An aiosmtpd server saving what it accepts; killed on drop.
pub struct Sink {
    pub addr: SocketAddr,
    out: tempfile::TempDir,
    child: Option<Child>,
    opts: SinkOptions,
}

impl Sink {
    pub fn start(addr: SocketAddr) -> Sink {
        Sink::with(addr, SinkOptions::default())
    }

    pub fn with(addr: SocketAddr, opts: SinkOptions) -> Sink {
        let mut s = Sink {
            addr,
            out: tempfile::tempdir().unwrap(),
            child: None,
            opts,
        };
        s.spawn();
        s
    }

    /// A sink that is not running yet (a next hop that is down until [`Sink::restart`]).
    pub fn down(addr: SocketAddr, opts: SinkOptions) -> Sink {
        Sink {
            addr,
            out: tempfile::tempdir().unwrap(),
            child: None,
            opts,
        }
    }

    fn spawn(&mut self) {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/peers/sink.py");
        let mut cmd = Command::new(PYTHON);
        cmd.arg(script)
            .arg(self.addr.ip().to_string())
            .arg(self.addr.port().to_string())
            .arg(self.out.path());
        if let Some((cert, key)) = &self.opts.tls {
            cmd.arg("--tls").arg(cert).arg(key);
        }
        if self.opts.require_tls {
            cmd.arg("--require-tls");
        }
        if let Some(a) = &self.opts.auth {
            cmd.arg("--auth").arg(a);
        }
        if self.opts.auth_optional {
            cmd.arg("--auth-optional");
        }
        for r in &self.opts.refuse {
            cmd.arg("--refuse").arg(r);
        }
        for r in &self.opts.tempfail {
            cmd.arg("--tempfail").arg(r);
        }
        if let Some(d) = self.opts.delay {
            cmd.arg("--delay").arg(d.to_string());
        }
        for r in &self.opts.only {
            cmd.arg("--only").arg(r);
        }
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start aiosmtpd sink");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            let ready = matches!(lines.next(), Some(Ok(l)) if l.starts_with("READY"));
            let _ = tx.send(ready);
            for _ in lines {}
        });
        let ready = rx.recv_timeout(Duration::from_secs(20)).unwrap_or(false);
        assert!(ready, "aiosmtpd sink on {} did not start", self.addr);
        self.child = Some(child);
    }

    /// Stops the server (the next hop goes down); what it received stays readable.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts it again on the same address.
    pub fn restart(&mut self) {
        self.stop();
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(self.addr).is_ok() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        self.spawn();
    }

    pub fn received(&self) -> Vec<Received> {
        let mut names: Vec<PathBuf> = std::fs::read_dir(self.out.path())
            .unwrap()
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "json"))
            .collect();
        names.sort();
        names
            .iter()
            .map(|p| serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap())
            .collect()
    }

    /// The most DATA phases that overlapped in time: a floor on concurrent connections.
    pub fn max_overlap(&self) -> usize {
        let got = self.received();
        got.iter()
            .map(|a| {
                got.iter()
                    .filter(|b| b.started <= a.started && a.started < b.ended)
                    .count()
            })
            .max()
            .unwrap_or(0)
    }

    /// Every recipient this sink accepted, over all messages.
    pub fn recipients(&self) -> Vec<String> {
        self.received()
            .into_iter()
            .flat_map(|r| r.rcpt_tos)
            .map(|r| r.to_lowercase())
            .collect()
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        self.stop();
    }
}
