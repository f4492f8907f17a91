//! The Exchange-format logs under Set-TransportServer's log settings, with real mail through
//! `hubgate serve`: MaxFileSize starts new files, MaxDirectorySize removes the oldest, MaxAge
//! removes old ones, and the readers (Get-MessageTrackingLog, the Protocol Logs page's search)
//! still read across the files. And the process's own log: stdout, JSON on request.

mod common;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, SystemTime};

use common::console::sign_in;
use common::mail::*;
use common::*;
use hubgate::logs::protocol::LogKind;
use hubgate::logs::read::{self, ProtocolQuery};

/// The log's files in `dir` with their sizes.
fn files(dir: &Path, prefix: &str) -> Vec<(String, u64)> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut v: Vec<(String, u64)> = entries
        .map(|e| e.unwrap())
        .map(|e| {
            (
                e.file_name().to_string_lossy().into_owned(),
                e.metadata().unwrap().len(),
            )
        })
        .filter(|(n, _)| n.starts_with(prefix) && n.ends_with(".LOG"))
        .collect();
    v.sort();
    v
}

fn receive_dir(data_dir: &Path) -> PathBuf {
    read::protocol_dir(data_dir, LogKind::Receive)
}

/// Writes a log file that looks `age` old.
fn old_file(dir: &Path, name: &str, age: Duration) {
    std::fs::create_dir_all(dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, "#Software: Microsoft Exchange Server\r\n").unwrap();
    let f = std::fs::File::options().write(true).open(&path).unwrap();
    f.set_modified(SystemTime::now() - age).unwrap();
}

fn sessions(data_dir: &Path) -> usize {
    read::protocol_sessions(
        data_dir,
        &ProtocolQuery {
            kind: LogKind::Receive,
            connector: None,
            remote: None,
            start: None,
            end: None,
            skip: 0,
            max_sessions: 1000,
            max_lines_per_session: 1000,
        },
    )
    .unwrap()
    .sessions
    .len()
}

#[tokio::test]
async fn small_max_file_size_rotates_and_max_directory_size_keeps_the_newest_under_the_cap() {
    let s = setup().await;
    configure(
        &s,
        &[
            "Set-ReceiveConnector 'Default HUB1' -ProtocolLoggingLevel Verbose",
            // Receive: about one session per file, at most 6 KB in all.
            "Set-TransportServer HUB1 -ReceiveProtocolLogMaxFileSize 2KB -ReceiveProtocolLogMaxDirectorySize 6KB",
            // Tracking: several files, nothing removed.
            "Set-TransportServer HUB1 -MessageTrackingLogMaxFileSize 1KB",
        ],
    )
    .await;
    let gw = s.start().await;
    let dir = receive_dir(&gw.data_dir());
    let mut seen_most = 0;
    for i in 0..8 {
        send(&gw, &["sender@contoso.test"], &format!("rotation {i}"));
        let now = files(&dir, "RECV");
        seen_most = seen_most.max(now.len());
        let total: u64 = now.iter().map(|(_, n)| n).sum();
        assert!(total <= 6 * 1024, "{total} bytes in {now:?}");
        assert!(now.iter().all(|(_, n)| *n <= 2048), "{now:?}");
    }
    let left = files(&dir, "RECV");
    assert!(seen_most >= 3, "MaxFileSize made only {seen_most} files");
    // The oldest went: the first file of the day is gone, the newest stays.
    assert!(!left.iter().any(|(n, _)| n.ends_with("-1.LOG")), "{left:?}");
    // The Protocol Logs search reads the sessions of every file left (the pruned ones are gone).
    let read_back = sessions(&gw.data_dir());
    assert!((2..8).contains(&read_back), "{read_back}");

    // Tracking rotated into several files, and Get-MessageTrackingLog reads across all of them.
    within(20, "eight deliveries tracked", || async {
        let log = hubgate::logs::tracking::search(
            &gw.data_dir(),
            &hubgate::logs::tracking::TrackingQuery {
                event_id: Some("DELIVER".into()),
                ..Default::default()
            },
        )
        .unwrap();
        log.len() == 8
    })
    .await;
    let tracking = files(&hubgate::logs::tracking::dir(&gw.data_dir()), "MSGTRK");
    assert!(tracking.len() >= 8, "{tracking:?}");
    let out = run(
        &gw,
        "Get-MessageTrackingLog -EventId RECEIVE -ResultSize Unlimited",
    )
    .await;
    assert_eq!(out.matches("RECEIVE").count(), 8, "{out}");
}

#[tokio::test]
async fn max_age_removes_files_last_written_before_it() {
    let s = setup().await;
    configure(
        &s,
        &[
            "Set-ReceiveConnector 'Default HUB1' -ProtocolLoggingLevel Verbose",
            "Set-TransportServer HUB1 -ReceiveProtocolLogMaxAge 2.00:00:00 -ReceiveProtocolLogMaxDirectorySize unlimited -ReceiveProtocolLogMaxFileSize 1KB -MessageTrackingLogMaxAge 2.00:00:00",
        ],
    )
    .await;
    let data = s.data_dir.path().to_path_buf();
    let dir = receive_dir(&data);
    let day = Duration::from_secs(86400);
    old_file(&dir, "RECV20200101-1.LOG", day * 3);
    old_file(&dir, "RECV20200102-1.LOG", day);
    let tracking_dir = hubgate::logs::tracking::dir(&data);
    old_file(&tracking_dir, "MSGTRK20200101-1.LOG", day * 40);
    let gw = s.start().await;
    send(&gw, &["sender@contoso.test"], "age");
    // Starting a new file prunes: the file older than two days goes, the younger one stays.
    within(20, "the three-day-old receive log removed", || async {
        !dir.join("RECV20200101-1.LOG").exists()
    })
    .await;
    assert!(dir.join("RECV20200102-1.LOG").exists());
    within(20, "the forty-day-old tracking log removed", || async {
        !tracking_dir.join("MSGTRK20200101-1.LOG").exists()
    })
    .await;
    // Exchange's 00:00:00: no removal by age.
    run(
        &gw,
        "Set-TransportServer HUB1 -ReceiveProtocolLogMaxAge 00:00:00",
    )
    .await;
    let out = run(
        &gw,
        "Get-TransportServer HUB1 | Format-List ReceiveProtocolLogMaxAge",
    )
    .await;
    assert!(out.contains("00:00:00"), "{out}");
}

#[tokio::test]
async fn the_log_settings_show_exchanges_defaults_and_refuse_a_file_larger_than_its_directory() {
    let s = Setup::new().await;
    let mut sh = hubgate::shell::Shell::new(s.pool.clone(), &s.fqdn);
    let out = sh
        .run_line("Get-TransportServer HUB1 | Format-List")
        .await
        .unwrap();
    for (name, value) in [
        ("ReceiveProtocolLogMaxAge", "30.00:00:00"),
        (
            "ReceiveProtocolLogMaxDirectorySize",
            "250 MB (262,144,000 bytes)",
        ),
        ("ReceiveProtocolLogMaxFileSize", "10 MB (10,485,760 bytes)"),
        ("SendProtocolLogMaxAge", "30.00:00:00"),
        (
            "SendProtocolLogMaxDirectorySize",
            "250 MB (262,144,000 bytes)",
        ),
        ("SendProtocolLogMaxFileSize", "10 MB (10,485,760 bytes)"),
        ("MessageTrackingLogMaxAge", "30.00:00:00"),
        (
            "MessageTrackingLogMaxDirectorySize",
            "1 GB (1,073,741,824 bytes)",
        ),
        ("MessageTrackingLogMaxFileSize", "10 MB (10,485,760 bytes)"),
    ] {
        let line = out
            .lines()
            .find(|l| l.split(':').next().unwrap().trim() == name)
            .unwrap_or_else(|| panic!("{name} missing from {out}"));
        assert!(line.ends_with(value), "{line}");
    }
    let before = sh
        .run_line("Get-TransportServer HUB1 | Format-List")
        .await
        .unwrap();
    let err = sh
        .run_line("Set-TransportServer HUB1 -MessageTrackingLogMaxFileSize 2GB")
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("MessageTrackingLogMaxFileSize (2 GB (2,147,483,648 bytes)) cannot be greater than MessageTrackingLogMaxDirectorySize (1 GB (1,073,741,824 bytes))."),
        "{err}"
    );
    let err = sh
        .run_line("Set-TransportServer HUB1 -ReceiveProtocolLogMaxFileSize 10")
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("ReceiveProtocolLogMaxFileSize"), "{err}");
    let after = sh
        .run_line("Get-TransportServer HUB1 | Format-List")
        .await
        .unwrap();
    assert_eq!(before, after);
}

#[tokio::test]
async fn the_gateway_logs_to_stdout_as_json_when_asked() {
    let s = Setup::new().await;
    let logs = tempfile::tempdir().unwrap();
    let out_path = logs.path().join("stdout");
    let err_path = logs.path().join("stderr");
    let mut child = serve_command(&s, s.data_dir.path())
        .env("HUBGATE_LOG", "info")
        .env("HUBGATE_LOG_FORMAT", "json")
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&err_path).unwrap())
        .spawn()
        .expect("spawn hubgate");
    wait_ready_logging(&mut child, Some(std::fs::File::create(&out_path).unwrap())).await;
    let console = https::Client::new(
        std::net::SocketAddr::from((s.ip, s.console_port)),
        s.data_dir.path(),
        &s.fqdn,
    );
    sign_in(&console, "Administrator", "not the password")
        .await
        .expect_err("a wrong password");
    let found = holds_within(20, || async {
        std::fs::read_to_string(&out_path)
            .unwrap_or_default()
            .contains("sign-in failed")
    })
    .await;
    let _ = child.kill();
    let _ = child.wait();
    let stdout = std::fs::read_to_string(&out_path).unwrap();
    assert!(found, "{stdout}");
    let line = stdout
        .lines()
        .find(|l| l.contains("sign-in failed"))
        .unwrap();
    let v: serde_json::Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
    assert_eq!(v["level"], "WARN", "{line}");
    assert!(
        v["fields"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("sign-in failed")),
        "{line}"
    );
    let stderr = std::fs::read_to_string(&err_path).unwrap();
    assert!(!stderr.contains("sign-in failed"), "{stderr}");
}

#[test]
fn an_unknown_log_format_stops_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_hubgate"));
    cmd.args(["serve"])
        .env("HUBGATE_DATA_DIR", dir.path())
        .env("HUBGATE_LOG_FORMAT", "xml");
    let (status, _, err) = run_to_exit(&mut cmd, "hubgate started with HUBGATE_LOG_FORMAT=xml");
    assert!(!status.success());
    assert!(
        err.contains("HUBGATE_LOG_FORMAT: 'xml' is not a log format; use text or json"),
        "{err}"
    );
}
