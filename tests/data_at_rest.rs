//! What the gateway writes to disk is readable by hubgate's user alone, whatever umask it was
//! started with; with HUBGATE_MAIL_GROUP the Maildirs are shared read-only with that group.

mod common;

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use common::mail::*;
use common::*;

/// The gateway under `umask 000`, with a data directory it has to create itself.
struct Permissive {
    child: Child,
    data_dir: PathBuf,
    smtp: std::net::SocketAddr,
}

impl Permissive {
    async fn start(setup: &Setup, mail_group: Option<&str>) -> Permissive {
        let data_dir = setup.data_dir.path().join("data");
        let mut cmd = Command::new("sh");
        cmd.arg("-c")
            .arg("umask 000; exec \"$0\" serve")
            .arg(env!("CARGO_BIN_EXE_hubgate"));
        serve_env(&mut cmd, setup, &data_dir)
            .env_remove("HUBGATE_MAIL_GROUP")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        if let Some(group) = mail_group {
            cmd.env("HUBGATE_MAIL_GROUP", group);
        }
        let mut child = cmd.spawn().expect("spawn hubgate");
        wait_ready(&mut child).await;
        Permissive {
            child,
            data_dir,
            smtp: setup.smtp(),
        }
    }

    fn send(&self, to: &str, body: &str) {
        let (ok, out) = swaks(&[
            "--server",
            &self.smtp.to_string(),
            "--from",
            SENDER,
            "--to",
            to,
            "--body",
            body,
        ]);
        assert!(ok, "swaks failed: {out}");
    }

    /// One message delivered to a local Maildir, one waiting in the spool for a domain with no
    /// route; both leave files behind (Maildir, spool, tracking log, certificate).
    async fn leave_mail_on_disk(&self) {
        self.send("administrator@contoso.test", "private matters");
        // Larger than a body kept in its message row, so that it is a spool file.
        self.send("someone@nowhere.example", &"private matters\n".repeat(1000));
        let maildir = self
            .data_dir
            .join("mailboxes/administrator@contoso.test/new");
        let spool = self.data_dir.join("spool");
        within(
            30,
            "a delivered message and a queued one on disk",
            || async { count(&maildir) == 1 && count(&spool) >= 1 },
        )
        .await;
    }
}

impl Drop for Permissive {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Files in `dir` (`spool/` also holds `free/`, removed bodies' files kept for reuse).
fn count(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .map(|d| d.filter(|e| e.as_ref().unwrap().path().is_file()).count())
        .unwrap_or(0)
}

/// Every directory and file under `root`, `root` included.
fn walk(root: &Path) -> Vec<(PathBuf, std::fs::Metadata)> {
    let mut out = vec![(root.to_path_buf(), std::fs::metadata(root).unwrap())];
    let mut i = 0;
    while i < out.len() {
        if out[i].1.is_dir() {
            for entry in std::fs::read_dir(&out[i].0).unwrap() {
                let path = entry.unwrap().path();
                let meta = std::fs::symlink_metadata(&path).unwrap();
                out.push((path, meta));
            }
        }
        i += 1;
    }
    out
}

fn mode(meta: &std::fs::Metadata) -> u32 {
    meta.mode() & 0o7777
}

#[tokio::test]
async fn everything_under_the_data_dir_is_private_under_a_permissive_umask() {
    let setup = setup().await;
    let gw = Permissive::start(&setup, None).await;
    gw.leave_mail_on_disk().await;
    let entries = walk(&gw.data_dir);
    let mut wrong = Vec::new();
    for (path, meta) in &entries {
        let want = if meta.is_dir() { 0o700 } else { 0o600 };
        if mode(meta) != want {
            wrong.push(format!("{:o} {}", mode(meta), path.display()));
        }
    }
    assert!(
        wrong.is_empty(),
        "not private (want 0700 dirs, 0600 files):\n{}",
        wrong.join("\n")
    );
    for sub in ["spool", "mailboxes", "logs", "certs"] {
        assert!(
            entries
                .iter()
                .any(|(p, _)| p.starts_with(gw.data_dir.join(sub))),
            "the test left nothing in {sub}"
        );
    }
}

#[tokio::test]
async fn a_mail_group_reads_the_maildirs_and_nothing_else() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: giving files to another group needs root");
        return;
    }
    // Debian's `mail` group; any group other than hubgate's own shows the point.
    let group = "mail";
    let gid = std::fs::read_to_string("/etc/group")
        .unwrap()
        .lines()
        .find_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            (f.first() == Some(&group)).then(|| f[2].parse::<u32>().unwrap())
        })
        .expect("a `mail` group");
    let setup = setup().await;
    let gw = Permissive::start(&setup, Some(group)).await;
    gw.leave_mail_on_disk().await;
    let mailboxes = gw.data_dir.join("mailboxes");
    let mut wrong = Vec::new();
    for (path, meta) in walk(&gw.data_dir) {
        let (want_mode, want_gid) = if path == gw.data_dir {
            (0o710, Some(gid))
        } else if path.starts_with(&mailboxes) {
            (if meta.is_dir() { 0o2750 } else { 0o640 }, Some(gid))
        } else {
            (if meta.is_dir() { 0o700 } else { 0o600 }, None)
        };
        if mode(&meta) != want_mode || want_gid.is_some_and(|g| meta.gid() != g) {
            wrong.push(format!(
                "{:o} gid {} {}",
                mode(&meta),
                meta.gid(),
                path.display()
            ));
        }
    }
    assert!(wrong.is_empty(), "unexpected modes:\n{}", wrong.join("\n"));
}

#[tokio::test]
async fn an_unknown_mail_group_stops_the_start_with_a_clear_error() {
    let setup = Setup::new().await;
    let (status, _, stderr) = run_to_exit(
        serve_command(&setup, setup.data_dir.path())
            .env("HUBGATE_MAIL_GROUP", "no-such-group-here"),
        "hubgate kept running with an unknown HUBGATE_MAIL_GROUP",
    );
    assert!(!status.success());
    assert!(
        stderr.contains("HUBGATE_MAIL_GROUP=no-such-group-here"),
        "{stderr}"
    );
}
