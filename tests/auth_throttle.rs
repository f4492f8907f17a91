//! AUTH against hostile clients: credentials kept out of the protocol log, failures throttled
//! per source and per (account, source) across connections, no account enumeration by timing,
//! and a bounded number of argon2 verifications.

mod common;

use std::net::IpAddr;
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use common::*;
use hubgate::org::Account;
use hubgate::smtp::server::auth_throttle::{AuthThrottle, Policy, Thresholds, Verdict};

fn plain(user: &str, password: &str) -> String {
    B64.encode(format!("\0{user}\0{password}"))
}

/// Basic authentication without TLS on the Default connector, so that raw sockets can AUTH,
/// and protocol logging on.
async fn auth_setup() -> Setup {
    let setup = Setup::new().await;
    setup
        .sql(
            "UPDATE receive_connector SET auth_mechanism = '{Tls,BasicAuth}', \
             protocol_logging_level = 'Verbose', max_protocol_errors = 50",
        )
        .await;
    Account::create(&setup.pool, "partner", "Partner-pw-1", &[])
        .await
        .unwrap();
    setup
}

/// Waits until `n` sessions have ended in the protocol log.
async fn sessions_logged(gw: &Gateway, n: usize) -> String {
    let mut log = String::new();
    eventually("the sessions' ends in the protocol log", || {
        log = receive_log(gw);
        let ended = log.lines().filter(|l| l.contains(",-,")).count();
        async move { ended >= n }
    })
    .await;
    log
}

async fn hello(gw: &Gateway, from: &str) -> Raw {
    let mut c = Raw::connect_from(gw.smtp(), Some(from)).await;
    assert!(c.reply().await.starts_with("220 "));
    assert!(c.cmd("EHLO client.example").await.starts_with("250-"));
    c
}

/// One AUTH PLAIN on its own connection (so MaxLogonFailures never closes it first).
async fn auth_once(gw: &Gateway, from: &str, user: &str, password: &str) -> String {
    let mut c = hello(gw, from).await;
    let r = c
        .cmd(&format!("AUTH PLAIN {}", plain(user, password)))
        .await;
    c.cmd("QUIT").await;
    r
}

/// Wrong passwords from `from` (the account for try i given by `user`) until a 454 refusal;
/// exactly `refuse_after` of them must have failed first. Returns every reply.
async fn guess_until_refused(
    gw: &Gateway,
    from: &str,
    refuse_after: usize,
    user: impl Fn(usize) -> String,
) -> Vec<String> {
    let mut replies = Vec::new();
    // Bounded: the lockout must come well before this many tries.
    for i in 0..refuse_after + 4 {
        let r = auth_once(gw, from, &user(i), "guess").await;
        let refused = r.starts_with("454 ");
        replies.push(r);
        if refused {
            break;
        }
    }
    let failures = replies.iter().filter(|r| r.starts_with("535 ")).count();
    assert_eq!(failures, refuse_after, "{replies:?}");
    replies
}

#[tokio::test]
async fn auth_arguments_never_reach_the_protocol_log() {
    let gw = auth_setup().await.start().await;
    let secrets = [
        "Wrong-Secret-1",
        "Login-Secret-2",
        "Mech-Secret-3",
        "Partner-pw-1",
    ];
    let b64 = |s: &str| B64.encode(s);

    // Responses pipelined behind an AUTH that is refused before its exchange begins arrive as
    // commands.
    let mut c = Raw::connect(gw.smtp()).await;
    c.reply().await;
    c.send(
        format!(
            "AUTH LOGIN\r\n{}\r\n{}\r\n",
            b64("partner"),
            b64("Login-Secret-2")
        )
        .as_bytes(),
    )
    .await;
    assert_eq!(c.reply().await, "503 5.5.2 Send hello first\r\n");
    assert!(c.reply().await.starts_with("500 "));
    assert!(c.reply().await.starts_with("500 "));
    c.cmd("EHLO client.example").await;
    // AUTH lines that fail to parse: a third word, a control character.
    let r = c
        .cmd(&format!(
            "AUTH PLAIN {} extra",
            plain("partner", "Wrong-Secret-1")
        ))
        .await;
    assert!(r.starts_with("501 "), "{r}");
    let r = c
        .cmd(&format!(
            "AUTH PLAIN\x01{}",
            plain("partner", "Wrong-Secret-1")
        ))
        .await;
    assert!(r.starts_with("500 "), "{r}");
    // A secret where the mechanism belongs parses, and is refused as a mechanism.
    let mech = B64.encode("Mech-Secret-3").replace('=', "");
    assert_eq!(
        c.cmd(&format!("AUTH {mech}")).await,
        "504 5.7.4 Unrecognized authentication type\r\n"
    );
    // A whole LOGIN exchange with a wrong password, then PLAIN with the right one.
    assert_eq!(c.cmd("AUTH LOGIN").await, "334 VXNlcm5hbWU6\r\n");
    assert_eq!(c.cmd(&b64("partner")).await, "334 UGFzc3dvcmQ6\r\n");
    assert_eq!(
        c.cmd(&b64("Wrong-Secret-1")).await,
        "535 5.7.3 Authentication unsuccessful\r\n"
    );
    assert_eq!(
        c.cmd(&format!("AUTH PLAIN {}", plain("partner", "Partner-pw-1")))
            .await,
        "235 2.7.0 Authentication successful\r\n"
    );
    c.cmd("QUIT").await;

    let log = sessions_logged(&gw, 1).await;
    let lower = log.to_lowercase();
    for s in secrets {
        for form in [s.to_string(), b64(s), plain("partner", s)] {
            let stem = form.trim_end_matches('=').to_lowercase();
            assert!(
                !lower.contains(&stem),
                "{form:?} ({s}) is in the log:\n{log}"
            );
        }
    }
    assert!(
        !lower.contains(&mech.to_lowercase()),
        "the mechanism-shaped secret is in the log:\n{log}"
    );
    assert!(
        log.contains("AUTH PLAIN <authentication response>"),
        "{log}"
    );
    assert!(log.contains(",<,AUTH LOGIN,"), "{log}");
}

#[tokio::test]
async fn a_failing_source_is_refused_while_the_account_works_from_elsewhere() {
    let gw = auth_setup().await.start().await;
    let attacker = "127.0.0.21";
    let refuse_after = Policy::default().pair.refuse_after as usize;
    let replies = guess_until_refused(&gw, attacker, refuse_after, |_| "partner".into()).await;
    assert_eq!(
        replies.last().unwrap(),
        "454 4.7.0 Temporary authentication failure\r\n",
        "{replies:?}"
    );
    // Locked: even the right password is not looked at from there ...
    assert_eq!(
        auth_once(&gw, attacker, "partner", "Partner-pw-1").await,
        "454 4.7.0 Temporary authentication failure\r\n"
    );
    // ... while the partner's real server, elsewhere, logs on as always.
    assert_eq!(
        auth_once(&gw, "127.0.0.22", "partner", "Partner-pw-1").await,
        "235 2.7.0 Authentication successful\r\n"
    );

    // The failures were slowed down before they were refused, across connections.
    let log = sessions_logged(&gw, replies.len() + 2).await;
    let events: Vec<&str> = log
        .lines()
        .filter(|l| l.contains(&format!(",{attacker}:")))
        .filter_map(|l| {
            if l.contains("AUTH throttled for") {
                Some("throttled")
            } else if l.contains("AUTH refused for") {
                Some("refused")
            } else {
                None
            }
        })
        .collect();
    let first_refused = events.iter().position(|e| *e == "refused");
    let first_throttled = events.iter().position(|e| *e == "throttled");
    assert!(
        matches!((first_throttled, first_refused), (Some(t), Some(r)) if t < r),
        "{events:?}\n{log}"
    );
    assert!(
        !log.lines()
            .any(|l| l.contains(",127.0.0.22:") && l.contains("AUTH throttled")),
        "the other source was throttled:\n{log}"
    );
}

#[tokio::test]
async fn guessing_many_accounts_from_one_source_refuses_that_source_only() {
    let gw = auth_setup().await.start().await;
    let attacker = "127.0.0.23";
    let refuse_after = Policy::default().source.refuse_after as usize;
    let replies = guess_until_refused(&gw, attacker, refuse_after, |i| format!("user{i}")).await;
    assert!(replies.last().unwrap().starts_with("454 4.7.0 "));
    assert!(
        auth_once(&gw, attacker, "partner", "Partner-pw-1")
            .await
            .starts_with("454 4.7.0 ")
    );
    assert!(
        auth_once(&gw, "127.0.0.24", "partner", "Partner-pw-1")
            .await
            .starts_with("235 ")
    );
}

/// Times one refused AUTH PLAIN, connection set up beforehand.
async fn timed_refusal(gw: &Gateway, from: &str, user: &str) -> Duration {
    let mut c = hello(gw, from).await;
    let line = format!("AUTH PLAIN {}", plain(user, "not-the-password"));
    let t = Instant::now();
    let r = c.cmd(&line).await;
    let took = t.elapsed();
    assert!(r.starts_with("535 "), "{r}");
    c.cmd("QUIT").await;
    took
}

#[tokio::test]
async fn an_unknown_account_takes_as_long_to_refuse_as_a_wrong_password() {
    let gw = auth_setup().await.start().await;
    let mut known = Vec::new();
    let mut unknown = Vec::new();
    // Each try from its own source, so that no throttling delay mixes in.
    for i in 0..4 {
        known.push(timed_refusal(&gw, &format!("127.0.0.{}", 40 + 2 * i), "partner").await);
        unknown.push(timed_refusal(&gw, &format!("127.0.0.{}", 41 + 2 * i), "nobody-here").await);
    }
    // The fastest of each: load on a shared machine only ever adds time.
    let known = *known.iter().min().unwrap();
    let unknown = *unknown.iter().min().unwrap();
    assert!(
        unknown * 3 >= known,
        "an unknown account was refused in {unknown:?}, a wrong password in {known:?}"
    );
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn policy() -> Policy {
    Policy {
        source: Thresholds {
            slow_after: 5,
            refuse_after: 10,
        },
        pair: Thresholds {
            slow_after: 2,
            refuse_after: 4,
        },
        first_delay: Duration::from_secs(1),
        max_delay: Duration::from_secs(8),
        first_lockout: Duration::from_secs(60),
        max_lockout: Duration::from_secs(600),
        forget_after: Duration::from_secs(3600),
        max_entries: 100,
        max_verifications: 1,
        per_source_attempts: 1,
        verification_wait: Duration::from_millis(200),
    }
}

#[test]
fn lockouts_grow_with_each_failure_after_them_and_are_forgotten_at_last() {
    let t = AuthThrottle::new(policy());
    let src = ip("192.0.2.7");
    let t0 = Instant::now();
    let at = |s: u64| t0 + Duration::from_secs(s);
    assert_eq!(t.check_at(src, "Partner", at(0)), Verdict::Proceed);
    t.failed_at(src, "partner", at(0));
    t.failed_at(src, "PARTNER", at(1));
    assert_eq!(
        t.check_at(src, "partner", at(2)),
        Verdict::Delay(Duration::from_secs(1))
    );
    t.failed_at(src, "partner", at(2));
    assert_eq!(
        t.check_at(src, "partner", at(3)),
        Verdict::Delay(Duration::from_secs(2))
    );
    t.failed_at(src, "partner", at(3));
    assert_eq!(
        t.check_at(src, "partner", at(4)),
        Verdict::Refuse(Duration::from_secs(59))
    );
    // Another account from the same source, and the same account from elsewhere, go on.
    assert_eq!(t.check_at(src, "other", at(4)), Verdict::Proceed);
    assert_eq!(
        t.check_at(ip("192.0.2.8"), "partner", at(4)),
        Verdict::Proceed
    );
    // After the lockout, the next failure locks for twice as long.
    assert_eq!(
        t.check_at(src, "partner", at(64)),
        Verdict::Delay(Duration::from_secs(4))
    );
    t.failed_at(src, "partner", at(64));
    assert_eq!(
        t.check_at(src, "partner", at(65)),
        Verdict::Refuse(Duration::from_secs(119))
    );
    // A success elsewhere does not clear it; a long quiet time does.
    t.succeeded(ip("192.0.2.8"), "partner");
    assert!(matches!(
        t.check_at(src, "partner", at(66)),
        Verdict::Refuse(_)
    ));
    assert_eq!(t.check_at(src, "partner", at(64 + 3601)), Verdict::Proceed);
}

#[test]
fn the_source_is_refused_for_guesses_spread_over_many_accounts() {
    let t = AuthThrottle::new(policy());
    let src = ip("2001:db8:5:6::1");
    let t0 = Instant::now();
    for i in 0..10 {
        // Every address of the /64 counts as the same source.
        let from = ip(&format!("2001:db8:5:6::{:x}", i + 1));
        t.failed_at(from, &format!("user{i}"), t0);
    }
    assert!(matches!(t.check_at(src, "partner", t0), Verdict::Refuse(_)));
    assert_eq!(
        t.check_at(ip("2001:db8:5:7::1"), "partner", t0),
        Verdict::Proceed
    );
}

#[test]
fn the_state_stays_bounded_under_a_flood_of_sources() {
    let t = AuthThrottle::new(policy());
    let t0 = Instant::now();
    for i in 0..5000u32 {
        let from = IpAddr::from(std::net::Ipv4Addr::from(0x0a00_0000 + i));
        t.failed_at(from, &format!("user{i}"), t0);
    }
    let (sources, pairs, _) = t.len();
    assert!(
        sources <= 100 && pairs <= 100,
        "{sources} sources, {pairs} pairs"
    );
}

#[tokio::test]
async fn verifications_beyond_the_bound_wait_and_then_fail_temporarily() {
    let t = AuthThrottle::new(policy());
    let held = t.verification_slot().await.expect("a free slot");
    let started = Instant::now();
    assert!(t.verification_slot().await.is_none());
    assert!(started.elapsed() >= Duration::from_millis(200));
    drop(held);
    assert!(t.verification_slot().await.is_some());
}

#[tokio::test]
async fn a_source_has_its_attempts_checked_one_after_another() {
    let t = AuthThrottle::new(policy());
    let first = t.source_turn(ip("192.0.2.9")).await.expect("a turn");
    // Another source is not held up ...
    let other = t
        .source_turn(ip("192.0.2.10"))
        .await
        .expect("another source's turn");
    // ... while the same source waits, and gives up after the bound.
    assert!(t.source_turn(ip("192.0.2.9")).await.is_none());
    drop(first);
    let again = t
        .source_turn(ip("192.0.2.9"))
        .await
        .expect("a turn once free");
    drop((again, other));
    assert_eq!(t.len(), (0, 0, 0), "idle sources are not kept");
}
