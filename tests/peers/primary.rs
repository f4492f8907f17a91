//! The scripted shadow-redundancy primary (tests/peers/primary.py) as the shadow-side tests
//! drive it: started on a 127.0.0.x address, restarted with other behaviour, read back.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const PYTHON: &str = "/usr/bin/python3";
pub const PRIMARY_NAME: &str = "hub.org2.test";

/// The scripted primary: killed on drop; what it saw stays readable.
pub struct Primary {
    addr: SocketAddr,
    out: tempfile::TempDir,
    args: Vec<String>,
    child: Option<Child>,
}

impl Primary {
    pub fn start(addr: SocketAddr, args: &[&str]) -> Primary {
        let mut p = Primary {
            addr,
            out: tempfile::tempdir().unwrap(),
            args: args.iter().map(|a| a.to_string()).collect(),
            child: None,
        };
        p.spawn();
        p
    }

    fn spawn(&mut self) {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/peers/primary.py");
        let mut child = Command::new(PYTHON)
            .arg(script)
            .arg(self.addr.ip().to_string())
            .arg(self.addr.port().to_string())
            .arg(self.out.path())
            .arg("--name")
            .arg(PRIMARY_NAME)
            .args(&self.args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the scripted primary");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            let ready = matches!(lines.next(), Some(Ok(l)) if l.starts_with("READY"));
            let _ = tx.send(ready);
            for _ in lines {}
        });
        let ready = rx.recv_timeout(Duration::from_secs(20)).unwrap_or(false);
        assert!(ready, "the scripted primary on {} did not start", self.addr);
        self.child = Some(child);
    }

    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts it again on the same address with other arguments (the same output directory).
    pub fn restart_with(&mut self, args: &[&str]) {
        self.stop();
        self.args = args.iter().map(|a| a.to_string()).collect();
        self.spawn();
    }

    /// XQDISCARD may return what --hold kept back.
    pub fn release(&self) {
        std::fs::write(self.out.path().join("release"), b"").unwrap();
    }

    /// Every command line received, as `<session> <line>`.
    pub fn log(&self) -> Vec<String> {
        std::fs::read_to_string(self.out.path().join("log.txt"))
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }

    /// The lines of the log whose command starts with `verb`.
    pub fn commands(&self, verb: &str) -> Vec<String> {
        self.log()
            .into_iter()
            .filter(|l| {
                l.split_once(' ')
                    .is_some_and(|(_, c)| c.to_ascii_uppercase().starts_with(verb))
            })
            .collect()
    }

    pub fn received(&self) -> Vec<serde_json::Value> {
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
}

impl Drop for Primary {
    fn drop(&mut self) {
        self.stop();
    }
}
