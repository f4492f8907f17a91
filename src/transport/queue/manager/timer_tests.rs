//! The timers under a `ManualClock`: retry schedule, delay DSN, expiry and the per-domain and
//! per-connector overrides, as the manager's pure transitions decide them. No database, no
//! sleeping: the clock moves when the test says so.

use super::dispatch::{fail_connection, plan_dispatch};
use super::timers::{Due, defer, scan_message, timeouts_for};
use super::*;
use crate::org::{AcceptedDomain, DomainType, SendConnector};
use crate::transport::clock::{Clock, ManualClock};
use crate::transport::routing::NextHop;

const SEC: Duration = Duration::from_secs(1);

fn t0() -> OffsetDateTime {
    time::macros::datetime!(2026-01-05 08:00 UTC)
}

fn server() -> TransportServer {
    TransportServer::with_defaults("HUB1", "hub1.contoso.test")
}

fn contoso() -> Vec<AcceptedDomain> {
    vec![AcceptedDomain::new(
        "contoso",
        "contoso.test",
        DomainType::Authoritative,
    )]
}

fn route(c: &SendConnector) -> Route {
    Route {
        connector_id: c.id,
        connector_name: c.name.clone(),
        next_hop: NextHop::SmartHosts {
            hosts: vec!["127.0.0.70".into()],
            port: 25,
        },
        address_space: "SMTP:*;1".into(),
    }
}

fn queue(kind: DeliveryType, route: Option<Route>) -> Queue {
    Queue {
        key: NextHopKey {
            delivery_type: kind,
            next_hop_domain: "127.0.0.70".into(),
            connector_id: route.as_ref().map(|r| r.connector_id),
        },
        route,
        suspended: false,
        status: QueueStatus::Ready,
        last_error: None,
        last_retry: None,
        next_retry: None,
        failures: 0,
        connections: 0,
        ready: VecDeque::new(),
        pending: HashSet::new(),
        release: None,
    }
}

fn rcpt(ordinal: i32, address: &str, queue: Option<i64>, timeouts: EffectiveTimeouts) -> Rcpt {
    Rcpt {
        ordinal,
        address: address.into(),
        route_address: None,
        orcpt: None,
        notify: None,
        queue,
        state: RState::Ready,
        retry_count: 0,
        last_error: None,
        next_retry: None,
        delay_notified: false,
        remove_with_ndr: None,
        timeouts: Some(timeouts),
        remote_mta: None,
        dsn_failures: 0,
        dsn_due: None,
        final_reply: None,
        submit_failures: 0,
    }
}

fn message(from: &str, received_at: OffsetDateTime, rcpts: Vec<Rcpt>) -> Msg {
    let mut env_rcpts = Vec::new();
    for r in &rcpts {
        env_rcpts.push(EnvelopeRecipient {
            address: r.address.clone(),
            orcpt: None,
            notify: None,
            disposition: Disposition::Relay,
        });
    }
    let env = Envelope {
        id: Uuid::now_v7(),
        server: "HUB1".into(),
        from: from.into(),
        recipients: env_rcpts,
        source_ip: IpAddr::from([127, 0, 0, 1]),
        receive_connector: "HUB1\\Default HUB1".into(),
        helo: "test".into(),
        auth_user: None,
        internet_message_id: None,
        subject: None,
        env_id: None,
        ret: None,
        body_type: None,
        smtp_utf8: false,
        shadow: None,
    };
    let mut meta = Submitted::accepted(&env, 1, 100);
    meta.received_at = received_at;
    Msg {
        meta,
        suspended: false,
        crashes: 0,
        rcpts,
    }
}

/// The server's own timeouts for a recipient no domain or connector overrides.
fn plain(server: &TransportServer) -> EffectiveTimeouts {
    timeouts_for(server, &[], &[], None, "r@fabrikam.test")
}

fn scan(
    m: &mut Msg,
    queues: &mut HashMap<i64, Queue>,
    s: &TransportServer,
    now: OffsetDateTime,
) -> Due {
    scan_message(m.meta.id, m, queues, s, &contoso(), now)
}

fn failed_reply(d: &Due) -> Vec<(i32, String)> {
    d.expired
        .iter()
        .map(|(o, outcome)| match outcome {
            Outcome::Failed { reply } => (*o, reply.one_line()),
            other => panic!("expiry is a failure, not {other:?}"),
        })
        .collect()
}

#[test]
fn a_deferred_recipient_is_retried_after_message_retry_interval() {
    let clock = ManualClock::new(t0());
    let mut s = server();
    s.message_retry_interval = 600;
    s.transient_failure_retry_interval = 60;
    let mut queues = HashMap::from([(1, queue(DeliveryType::SmartHostConnectorDelivery, None))]);
    let mut m = message(
        "a@fabrikam.test",
        clock.now(),
        vec![rcpt(0, "r@fabrikam.test", Some(1), plain(&s))],
    );
    m.rcpts[0].state = RState::InFlight;
    defer(&mut m.rcpts[0], &s, clock.now());
    assert_eq!(m.rcpts[0].state, RState::Retry);
    assert_eq!(m.rcpts[0].retry_count, 1);
    assert_eq!(m.rcpts[0].next_retry, Some(t0() + Duration::from_secs(600)));

    clock.advance(Duration::from_secs(599));
    scan(&mut m, &mut queues, &s, clock.now());
    assert_eq!(
        m.rcpts[0].state,
        RState::Retry,
        "not before MessageRetryInterval"
    );
    assert!(queues[&1].ready.is_empty());

    clock.advance(SEC);
    scan(&mut m, &mut queues, &s, clock.now());
    assert_eq!(
        m.rcpts[0].state,
        RState::Ready,
        "due at MessageRetryInterval"
    );
    assert_eq!(queues[&1].ready, [m.meta.id]);
}

#[test]
fn connection_failures_retry_transient_then_outbound_interval_and_hold_the_queue() {
    let clock = ManualClock::new(t0());
    let mut s = server();
    s.transient_failure_retry_count = 2;
    s.transient_failure_retry_interval = 300;
    s.outbound_connection_failure_retry_interval = 900;
    s.message_retry_interval = 60;
    let c = SendConnector::new("Out", &["*"], "HUB1");
    let mut st = State::default();
    st.queues.insert(
        7,
        queue(DeliveryType::SmartHostConnectorDelivery, Some(route(&c))),
    );
    let mut ids = Vec::new();
    for _ in 0..3 {
        let m = message(
            "a@contoso.test",
            clock.now(),
            vec![rcpt(0, "r@fabrikam.test", Some(7), plain(&s))],
        );
        ids.push(m.meta.id);
        st.queues.get_mut(&7).unwrap().push(m.meta.id);
        st.messages.insert(m.meta.id, m);
    }
    let reply = Reply::new(451, "4.4.0", "connection refused");
    for n in 1..=4u32 {
        let (_, starts) = plan_dispatch(&mut st, &s, clock.now());
        let want = if n == 1 { 3 } else { 1 };
        assert_eq!(
            starts.len(),
            want,
            "try {n}: one connection per message at first, one while in Retry"
        );
        assert!(matches!(starts[0].1, Target::Smtp(_)));
        // The agent took the first message and could not connect; its connections end.
        let taken = ids[0];
        st.messages.get_mut(&taken).unwrap().rcpts[0].state = RState::InFlight;
        st.queues
            .get_mut(&7)
            .unwrap()
            .ready
            .retain(|id| *id != taken);
        st.queues.get_mut(&7).unwrap().pending.remove(&taken);
        fail_connection(
            &mut st,
            7,
            &[(taken, vec![0])],
            &s,
            &reply,
            &Attempt::default(),
            clock.now(),
        );
        let q = st.queues.get_mut(&7).unwrap();
        q.connections = 0;
        st.outbound = 0;
        let interval = Duration::from_secs(if n <= 2 { 300 } else { 900 });
        let next = clock.now() + interval;
        let q = &st.queues[&7];
        assert_eq!(q.next_retry, Some(next), "try {n}");
        assert_eq!(q.shown_status(), QueueStatus::Retry);
        for id in &ids {
            let r = &st.messages[id].rcpts[0];
            assert_eq!(
                (r.next_retry, r.retry_count),
                (Some(next), n as i32),
                "try {n}"
            );
            assert_eq!(
                r.last_error.as_deref(),
                Some("451 4.4.0 connection refused")
            );
        }
        clock.advance(interval - SEC);
        let (_, starts) = plan_dispatch(&mut st, &s, clock.now());
        assert!(
            starts.is_empty(),
            "try {n}: no connection before the queue's NextRetryTime"
        );
        clock.advance(SEC);
    }
}

#[test]
fn delay_dsn_at_delay_notification_timeout_by_the_senders_flag() {
    for (internal_on, external_on) in [(true, false), (false, true)] {
        let clock = ManualClock::new(t0());
        let mut s = server();
        s.delay_notification_timeout = 4 * 3600;
        s.internal_delay_dsn_enabled = internal_on;
        s.external_delay_dsn_enabled = external_on;
        let mut queues =
            HashMap::from([(1, queue(DeliveryType::SmartHostConnectorDelivery, None))]);
        let t = plain(&s);
        let mut internal = message(
            "a@contoso.test",
            clock.now(),
            vec![rcpt(0, "r@fabrikam.test", Some(1), t)],
        );
        let mut external = message(
            "b@northwind.test",
            clock.now(),
            vec![rcpt(0, "r@fabrikam.test", Some(1), t)],
        );
        clock.advance(Duration::from_secs(4 * 3600) - SEC);
        for m in [&mut internal, &mut external] {
            assert!(
                scan(m, &mut queues, &s, clock.now()).delayed.is_empty(),
                "not before the timeout"
            );
        }
        clock.advance(SEC);
        let i = scan(&mut internal, &mut queues, &s, clock.now());
        let e = scan(&mut external, &mut queues, &s, clock.now());
        let flags =
            format!("InternalDelayDsnEnabled {internal_on}, ExternalDelayDsnEnabled {external_on}");
        assert_eq!(
            i.delayed.len(),
            usize::from(internal_on),
            "internal sender, {flags}"
        );
        assert_eq!(
            e.delayed.len(),
            usize::from(external_on),
            "external sender, {flags}"
        );
        let sent = if internal_on { &i } else { &e };
        assert_eq!(
            sent.until,
            t0() + Duration::from_secs(2 * 86400),
            "tried until it expires"
        );
        assert_eq!(sent.writes.len(), 1, "delay_notified is written");
        // One delay DSN per recipient.
        clock.advance(Duration::from_secs(3600));
        for m in [&mut internal, &mut external] {
            assert!(
                scan(m, &mut queues, &s, clock.now()).delayed.is_empty(),
                "{flags}: only once"
            );
        }
    }
}

#[test]
fn expiry_at_message_expiration_timeout_fails_the_recipient_for_an_ndr() {
    let clock = ManualClock::new(t0());
    let mut s = server();
    s.message_expiration_timeout = 2 * 86400;
    let mut queues = HashMap::from([
        (1, queue(DeliveryType::SmartHostConnectorDelivery, None)),
        (2, queue(DeliveryType::Unreachable, None)),
    ]);
    let t = plain(&s);
    let mut m = message(
        "a@contoso.test",
        clock.now(),
        vec![
            rcpt(0, "r@fabrikam.test", Some(1), t),
            rcpt(1, "s@nowhere.test", Some(2), t),
        ],
    );
    m.rcpts[0].state = RState::Retry;
    m.rcpts[0].next_retry = Some(t0() + Duration::from_secs(3 * 86400));
    clock.advance(Duration::from_secs(2 * 86400) - SEC);
    assert!(
        scan(&mut m, &mut queues, &s, clock.now())
            .expired
            .is_empty()
    );
    clock.advance(SEC);
    let due = scan(&mut m, &mut queues, &s, clock.now());
    assert_eq!(
        failed_reply(&due),
        [
            (0, "550 4.4.7 QUEUE.Expired; message expired".to_string()),
            (
                1,
                "550 5.4.4 ROUTING.NoNextHop; unable to route".to_string()
            ),
        ]
    );
}

#[test]
fn accepted_domain_and_send_connector_override_expiry_and_delay() {
    let clock = ManualClock::new(t0());
    let s = server();
    let mut domains = contoso();
    domains[0].delay_notification_timeout = Some(600);
    domains[0].message_expiration_timeout = Some(7200);
    let mut short = SendConnector::new("Short", &["fabrikam.test"], "HUB1");
    short.delay_notification_timeout = Some(1800);
    short.message_expiration_timeout = Some(3600);
    let other = SendConnector::new("Other", &["*"], "HUB1");
    let connectors = [short.clone(), other.clone()];
    let mut queues = HashMap::from([(1, queue(DeliveryType::SmartHostConnectorDelivery, None))]);
    let to_domain = timeouts_for(&s, &domains, &connectors, None, "u@contoso.test");
    let via_short = timeouts_for(
        &s,
        &domains,
        &connectors,
        Some(&route(&short)),
        "x@fabrikam.test",
    );
    let via_other = timeouts_for(
        &s,
        &domains,
        &connectors,
        Some(&route(&other)),
        "y@other.test",
    );
    let mut m = message(
        "a@northwind.test",
        clock.now(),
        vec![
            rcpt(0, "u@contoso.test", Some(1), to_domain),
            rcpt(1, "x@fabrikam.test", Some(1), via_short),
            rcpt(2, "y@other.test", Some(1), via_other),
        ],
    );
    let mut step = |to: u64, delayed: &[i32], expired: &[i32]| {
        let at = t0() + Duration::from_secs(to);
        clock.advance((at - clock.now()).unsigned_abs());
        let due = scan_message(m.meta.id, &mut m, &mut queues, &s, &domains, clock.now());
        assert_eq!(due.delayed, delayed, "delay DSNs at +{to}s");
        let got: Vec<i32> = due.expired.iter().map(|(o, _)| *o).collect();
        assert_eq!(got, expired, "expired at +{to}s");
        for o in expired {
            m.rcpts[*o as usize].state = RState::Done;
        }
    };
    step(599, &[], &[]);
    step(600, &[0], &[]);
    step(1799, &[], &[]);
    step(1800, &[1], &[]);
    step(3599, &[], &[]);
    step(3600, &[], &[1]);
    step(7199, &[], &[]);
    step(7200, &[], &[0]);
    step(4 * 3600 - 1, &[], &[]);
    step(4 * 3600, &[2], &[]);
    step(2 * 86400 - 1, &[], &[]);
    step(2 * 86400, &[], &[2]);
}

/// A delivery agent that delivers whatever its lane hands it, and tells the test.
struct Deliverer(mpsc::UnboundedSender<(&'static str, Uuid)>);

impl Deliver for Deliverer {
    fn run(self: Arc<Self>, target: Target, lane: Box<dyn Lane>) -> BoxFuture<'static, ()> {
        Box::pin(async move {
            let kind = match target {
                Target::Mailbox => "mailbox",
                Target::Smtp(_) => "smtp",
            };
            while let Some(job) = lane.next_job() {
                let _ = self.0.send((kind, job.message));
                let results = job.all(|| Outcome::Delivered {
                    reply: Reply::new(250, "2.0.0", "OK"),
                });
                lane.delivered(Delivered {
                    job,
                    results,
                    attempt: Attempt::default(),
                })
                .await;
            }
        })
    }
}

/// A manager on `clock` whose database is never reached (nothing here needs it): its writes
/// come out on the returned channel.
fn manager(
    clock: Arc<ManualClock>,
    agents: Arc<dyn Deliver>,
    server: TransportServer,
    spool_dir: &std::path::Path,
) -> (QueueManager, mpsc::UnboundedReceiver<Write>) {
    let org = Org {
        server,
        config: crate::org::TransportConfig::with_defaults(),
        accepted_domains: contoso(),
        receive_connectors: Vec::new(),
        send_connectors: Vec::new(),
        permissions: Vec::new(),
        ip_lists: Vec::new(),
        sender_filter: Default::default(),
        recipient_filter: Default::default(),
        ip_block_lists: Default::default(),
        valid_recipients: Default::default(),
        local_fqdns: Vec::new(),
    };
    let (wtx, wrx) = mpsc::unbounded_channel();
    let (stx, _srx) = mpsc::unbounded_channel();
    let inner = Inner {
        pool: PgPool::connect_lazy("postgres://127.0.0.1:1/unused").unwrap(),
        spool: Spool::open(spool_dir).unwrap(),
        org: watch::channel(Arc::new(org)).1,
        server: "HUB1".into(),
        fqdn: "hub1.contoso.test".into(),
        tracking: TrackingLog::disabled(),
        agents,
        clock,
        state: Mutex::new(State::default()),
        wake: Notify::new(),
        writes: wtx,
        submissions: stx,
        acks: Default::default(),
        stats: Default::default(),
        stopping: Default::default(),
    };
    (
        QueueManager {
            inner: Arc::new(inner),
        },
        wrx,
    )
}

#[tokio::test]
async fn the_scheduler_retries_when_the_managers_clock_reaches_the_retry_time() {
    let clock = ManualClock::new(t0());
    let (tx, mut delivered) = mpsc::unbounded_channel();
    let dir = tempfile::tempdir().unwrap();
    let mut s = server();
    s.message_retry_interval = 60;
    let (qm, mut writes) = manager(
        clock.clone(),
        Arc::new(Deliverer(tx)),
        s.clone(),
        dir.path(),
    );
    let mut m = message(
        "a@contoso.test",
        clock.now(),
        vec![rcpt(0, "u@contoso.test", Some(1), plain(&s))],
    );
    let id = m.meta.id;
    defer(&mut m.rcpts[0], &s, clock.now());
    {
        let mut st = qm.state();
        st.queues.insert(1, queue(DeliveryType::MapiDelivery, None));
        st.messages.insert(id, m);
    }
    // The manager's time stands still: however often it runs, the retry is not due.
    qm.tick(true).await;
    qm.tick(true).await;
    assert!(
        delivered.try_recv().is_err(),
        "delivered before its retry time"
    );

    let scheduler = tokio::spawn(scheduler(qm.clone()));
    // A current-thread runtime: yielding lets the scheduler reach its sleep on the clock first.
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    assert!(
        delivered.try_recv().is_err(),
        "delivered before its retry time"
    );
    // The scheduler's sleep is the manager's clock: moving it runs the timers, which make the
    // recipient ready and start an agent, all without real time passing (a scheduler sleeping
    // on the real clock would not wake within these yields).
    clock.advance(Duration::from_secs(60));
    let mut got = None;
    for _ in 0..10_000 {
        if let Ok(d) = delivered.try_recv() {
            got = Some(d);
            break;
        }
        tokio::task::yield_now().await;
    }
    assert_eq!(got, Some(("mailbox", id)));
    let deleted = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(w) = writes.recv().await {
            if matches!(w, Write::Delete(d) if d == id) {
                return true;
            }
        }
        false
    })
    .await;
    assert_eq!(deleted, Ok(true), "the delivered message is deleted");
    scheduler.abort();
}

#[tokio::test]
async fn a_delayed_ack_waits_for_every_recipient_and_a_dropped_wait_leaves_nothing() {
    let clock = ManualClock::new(t0());
    let (tx, _delivered) = mpsc::unbounded_channel();
    let dir = tempfile::tempdir().unwrap();
    let s = server();
    let (qm, _writes) = manager(
        clock.clone(),
        Arc::new(Deliverer(tx)),
        s.clone(),
        dir.path(),
    );
    let m = message(
        "a@contoso.test",
        clock.now(),
        vec![
            rcpt(0, "u@fabrikam.test", Some(1), plain(&s)),
            rcpt(1, "v@fabrikam.test", Some(1), plain(&s)),
        ],
    );
    let id = m.meta.id;
    // A session that stops waiting (its client left) takes its entry with it.
    drop(qm.watch_next_hop(id));
    assert!(qm.inner.acks.lock().unwrap().is_empty());

    let mut waiter = qm.watch_next_hop(id);
    let job = Job::new(qm.give_back(), &m.meta, Vec::new());
    qm.state().messages.insert(id, m);
    let ok = || Outcome::Delivered {
        reply: Reply::new(250, "2.0.0", "OK"),
    };
    let later = Outcome::Deferred {
        reply: Reply::new(451, "4.4.0", "later"),
    };
    qm.finish(&job, vec![(0, ok()), (1, later)], &Attempt::default())
        .await;
    let pending = tokio::time::timeout(Duration::from_millis(50), waiter.reached()).await;
    assert!(
        pending.is_err(),
        "released while a recipient waits for a retry"
    );

    let job = Job::new(qm.give_back(), &qm.state().messages[&id].meta, Vec::new());
    qm.finish(&job, vec![(1, ok())], &Attempt::default()).await;
    let done = tokio::time::timeout(Duration::from_secs(5), waiter.reached()).await;
    assert!(
        done.is_ok(),
        "not released once every recipient was delivered"
    );
    drop(waiter);
    assert!(qm.inner.acks.lock().unwrap().is_empty());
}

#[test]
fn shadow_copies_are_left_alone_by_every_timer() {
    let s = server();
    let mut queues = HashMap::from([(1, queue(DeliveryType::ShadowRedundancy, None))]);
    let mut copy = rcpt(0, "r@fabrikam.test", Some(1), plain(&s));
    copy.state = RState::Shadow;
    let mut waiting = rcpt(1, "q@fabrikam.test", None, plain(&s));
    waiting.state = RState::Retry;
    let mut m = message("a@fabrikam.test", t0(), vec![copy, waiting]);
    // Long past expiry and the delay DSN: only the recipient still waiting here is touched.
    let due = scan(&mut m, &mut queues, &s, t0() + 30 * 24 * 3600 * SEC);
    assert_eq!(
        due.expired.iter().map(|(o, _)| *o).collect::<Vec<_>>(),
        vec![1]
    );
    assert!(!due.delayed.contains(&0));
    assert_eq!(m.rcpts[0].state, RState::Shadow);
}

#[test]
fn a_discard_that_beats_the_copy_is_kept_for_it_and_only_for_its_primary() {
    let s = server();
    let mut st = State::default();
    let mut r = rcpt(0, "r@fabrikam.test", Some(1), plain(&s));
    r.state = RState::InFlight;
    let m = message("a@contoso.test", t0(), vec![r]);
    let id = m.meta.id;
    st.messages.insert(id, m);
    let primary = shadow::shadow_key("hub.org2.test", Uuid::nil());
    let other = shadow::shadow_key("hub.org3.test", Uuid::nil());
    let stranger = Uuid::new_v4().to_string();
    shadow::note_early_discards(&mut st, &primary, &[id.to_string(), stranger], t0());
    // Only a message of ours is kept: ids never given cannot grow the map.
    assert_eq!(st.early_discards.len(), 1);
    assert!(!shadow::take_early_discard(&mut st, id, &other));
    assert!(shadow::take_early_discard(&mut st, id, &primary));
    assert!(
        !shadow::take_early_discard(&mut st, id, &primary),
        "used up"
    );
    // Kept for a bounded time, and not past the message's life here.
    shadow::note_early_discards(&mut st, &primary, &[id.to_string()], t0());
    shadow::note_early_discards(&mut st, &other, &[], t0() + 11 * 60 * SEC);
    assert!(st.early_discards.is_empty());
    shadow::note_early_discards(&mut st, &primary, &[id.to_string()], t0());
    st.messages.remove(&id);
    shadow::note_early_discards(&mut st, &other, &[], t0());
    assert!(st.early_discards.is_empty());
}

#[test]
fn a_release_rate_starts_one_connection_per_interval_and_ends_when_the_queue_empties() {
    let clock = ManualClock::new(t0());
    let s = server();
    let c = SendConnector::new("Out", &["*"], "HUB1");
    let mut st = State::default();
    let mut q = queue(DeliveryType::SmartHostConnectorDelivery, Some(route(&c)));
    let rate = crate::transport::queue::ops::rate::ReleaseRate::new(6).unwrap();
    q.release = Some(Release::new(rate));
    st.queues.insert(7, q);
    let mut ids = Vec::new();
    for _ in 0..3 {
        let m = message(
            "a@contoso.test",
            clock.now(),
            vec![rcpt(0, "r@fabrikam.test", Some(7), plain(&s))],
        );
        ids.push(m.meta.id);
        st.queues.get_mut(&7).unwrap().push(m.meta.id);
        st.messages.insert(m.meta.id, m);
    }
    let mut written = Vec::new();
    for (n, id) in ids.iter().enumerate() {
        let (_, starts) = plan_dispatch(&mut st, &s, clock.now());
        assert_eq!(starts.len(), 1, "message {n}: one connection at a time");
        // The agent takes one message (the bucket's token) and its connection ends.
        let q = st.queues.get_mut(&7).unwrap();
        q.release.as_mut().unwrap().took(clock.now());
        q.ready.retain(|m| m != id);
        q.pending.remove(id);
        q.connections = 0;
        st.outbound = 0;
        st.messages.get_mut(id).unwrap().rcpts[0].state = RState::Done;
        clock.advance(Duration::from_secs(9));
        let (writes, starts) = plan_dispatch(&mut st, &s, clock.now());
        assert!(starts.is_empty(), "message {n}: nothing before 60 s / 6");
        assert_eq!(st.queues[&7].release.is_none(), n == 2, "message {n}");
        written.extend(writes);
        clock.advance(SEC);
    }
    // Empty once the last message left: the release is over, and the row says so.
    assert!(written.iter().any(|w| matches!(
        w,
        Write::Admin(AdminRow::QueueReleaseRate { id: 7, rate: None })
    )));
}
