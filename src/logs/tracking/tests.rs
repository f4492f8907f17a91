use super::*;
use crate::logs::retention::DEFAULT_MAX_FILE_SIZE;
use std::fs;
use std::sync::Mutex;
use time::macros::datetime;

struct TestLog {
    dir: PathBuf,
    log: TrackingLog,
    now: Arc<Mutex<OffsetDateTime>>,
}

impl TestLog {
    fn new(tag: &str, subject_logging: bool, max_file_size: u64) -> TestLog {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let dir = std::env::temp_dir().join(format!(
            "hubgate-msgtrk-{tag}-{}-{nanos}",
            std::process::id()
        ));
        let now = Arc::new(Mutex::new(datetime!(2010-11-05 14:22:03.125 UTC)));
        let clock_now = now.clone();
        let clock: Clock = Arc::new(move || *clock_now.lock().unwrap());
        let log = TrackingLog::with_settings(&dir, subject_logging, max_file_size, clock);
        TestLog { dir, log, now }
    }

    fn set_time(&self, t: OffsetDateTime) {
        *self.now.lock().unwrap() = t;
    }

    fn files(&self) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir(&self.dir))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        names
    }

    fn read(&self, name: &str) -> String {
        fs::read_to_string(dir(&self.dir).join(name)).unwrap()
    }

    fn search(&self, q: &TrackingQuery) -> Vec<TrackingEntry> {
        search(&self.dir, q).unwrap()
    }

    fn all(&self) -> Vec<TrackingEntry> {
        self.search(&TrackingQuery::default())
    }
}

impl Drop for TestLog {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.dir);
    }
}

const RCPTS: &[&str] = &["alice@contoso.com", "Bob@Fabrikam.com"];
const STATUS: &[&str] = &["250 2.1.5 Recipient OK", "250 2.1.5 Recipient OK"];

fn receive(id: i64) -> TrackingEvent<'static> {
    TrackingEvent {
        event_id: "RECEIVE",
        source: "SMTP",
        client_ip: Some("::ffff:192.0.2.7".parse().unwrap()),
        client_hostname: Some("mail.fabrikam.com"),
        server_ip: Some("10.0.0.6".parse().unwrap()),
        server_hostname: Some("HUB01"),
        source_context: Some("08CD2A4B1E9C44F3;2010-11-05T14:22:03.000Z;0"),
        connector_id: Some(r"HUB01\Default HUB01"),
        internal_message_id: id,
        message_id: Some("<4CD4123B.9020807@fabrikam.com>"),
        recipients: RCPTS,
        recipient_status: &[],
        total_bytes: 4096,
        related_recipient_address: None,
        reference: None,
        subject: Some("Quarterly report"),
        sender: "carol@fabrikam.com",
        return_path: "carol@fabrikam.com",
        message_info: Some("2010-11-05T14:22:02.900Z;SRV=HUB01"),
        directionality: Some("Incoming"),
    }
}

#[test]
fn writes_exchange_header_and_columns() {
    let t = TestLog::new("header", true, DEFAULT_MAX_FILE_SIZE);
    t.log.record(&receive(7));
    let expected = "#Software: Microsoft Exchange Server\r\n\
        #Version: 14.0.0.0\r\n\
        #Log-type: Message Tracking Log\r\n\
        #Date: 2010-11-05T14:22:03.125Z\r\n\
        #Fields: date-time,client-ip,client-hostname,server-ip,server-hostname,source-context,connector-id,source,event-id,internal-message-id,message-id,recipient-address,recipient-status,total-bytes,recipient-count,related-recipient-address,reference,message-subject,sender-address,return-path,message-info,directionality,tenant-id,original-client-ip,original-server-ip,custom-data\r\n\
        2010-11-05T14:22:03.125Z,192.0.2.7,mail.fabrikam.com,10.0.0.6,HUB01,08CD2A4B1E9C44F3;2010-11-05T14:22:03.000Z;0,HUB01\\Default HUB01,SMTP,RECEIVE,7,<4CD4123B.9020807@fabrikam.com>,alice@contoso.com;Bob@Fabrikam.com,,4096,2,,,Quarterly report,carol@fabrikam.com,carol@fabrikam.com,2010-11-05T14:22:02.900Z;SRV=HUB01,Incoming,,,,\r\n";
    assert_eq!(t.files(), ["MSGTRK20101105-1.LOG"]);
    assert_eq!(t.read("MSGTRK20101105-1.LOG"), expected);
}

#[test]
fn search_returns_what_was_written() {
    let t = TestLog::new("roundtrip", true, DEFAULT_MAX_FILE_SIZE);
    t.log.record(&receive(7));
    t.set_time(datetime!(2010-11-05 14:22:04.500 UTC));
    t.log.record(&TrackingEvent {
        event_id: "SEND",
        source: "SMTP",
        server_ip: Some("192.0.2.50".parse().unwrap()),
        server_hostname: Some("mx.contoso.com"),
        connector_id: Some("Internet"),
        recipient_status: STATUS,
        reference: Some("<ref@x>"),
        directionality: None,
        ..receive(7)
    });
    let found = t.all();
    assert_eq!(found.len(), 2);
    assert_eq!(
        found[0],
        TrackingEntry {
            timestamp: datetime!(2010-11-05 14:22:03.125 UTC),
            client_ip: Some("192.0.2.7".into()),
            client_hostname: Some("mail.fabrikam.com".into()),
            server_ip: Some("10.0.0.6".into()),
            server_hostname: Some("HUB01".into()),
            source_context: Some("08CD2A4B1E9C44F3;2010-11-05T14:22:03.000Z;0".into()),
            connector_id: Some(r"HUB01\Default HUB01".into()),
            source: "SMTP".into(),
            event_id: "RECEIVE".into(),
            internal_message_id: 7,
            message_id: Some("<4CD4123B.9020807@fabrikam.com>".into()),
            recipients: vec!["alice@contoso.com".into(), "Bob@Fabrikam.com".into()],
            recipient_status: vec![],
            total_bytes: 4096,
            recipient_count: 2,
            related_recipient_address: None,
            reference: None,
            message_subject: Some("Quarterly report".into()),
            sender: "carol@fabrikam.com".into(),
            return_path: "carol@fabrikam.com".into(),
            message_info: Some("2010-11-05T14:22:02.900Z;SRV=HUB01".into()),
            directionality: Some("Incoming".into()),
        }
    );
    assert_eq!(found[1].event_id, "SEND");
    assert_eq!(found[1].timestamp, datetime!(2010-11-05 14:22:04.500 UTC));
    assert_eq!(found[1].recipient_status, STATUS);
    assert_eq!(found[1].reference.as_deref(), Some("<ref@x>"));
    assert_eq!(found[1].directionality, None);
}

#[test]
fn subjects_with_commas_quotes_and_line_breaks_survive() {
    let t = TestLog::new("quote", true, DEFAULT_MAX_FILE_SIZE);
    let subject = "Re: \"Budget\", Q3, final\r\nsecond line, ünïcödé";
    t.log.record(&TrackingEvent {
        subject: Some(subject),
        ..receive(1)
    });
    t.log.record(&receive(2));
    let text = t.read("MSGTRK20101105-1.LOG");
    assert!(text.contains(
        ",\"Re: \"\"Budget\"\", Q3, final\r\nsecond line, ünïcödé\",carol@fabrikam.com,"
    ));
    let found = t.all();
    assert_eq!(found.len(), 2);
    assert_eq!(found[0].message_subject.as_deref(), Some(subject));
    assert_eq!(found[0].sender, "carol@fabrikam.com");
    assert_eq!(found[1].internal_message_id, 2);
}

#[test]
fn subject_logging_off_leaves_the_subject_out() {
    let t = TestLog::new("nosubject", false, DEFAULT_MAX_FILE_SIZE);
    t.log.record(&receive(1));
    assert!(!t.read("MSGTRK20101105-1.LOG").contains("Quarterly"));
    assert_eq!(t.all()[0].message_subject, None);
}

#[test]
fn disabled_logs_write_nothing() {
    let data = std::env::temp_dir().join(format!("hubgate-msgtrk-off-{}", std::process::id()));
    let log = TrackingLog::new(&data, false, true);
    assert!(!log.is_enabled());
    log.record(&receive(1));
    TrackingLog::disabled().record(&receive(1));
    assert!(!dir(&data).exists());
    assert!(search(&data, &TrackingQuery::default()).unwrap().is_empty());
}

#[test]
fn rotates_by_size_and_day_and_searches_in_date_order() {
    // Smaller than the header: every event starts a new file.
    let t = TestLog::new("rotate", true, 1);
    t.set_time(datetime!(2010-11-05 23:59:00 UTC));
    for id in 1..=12 {
        t.log.record(&receive(id));
    }
    t.set_time(datetime!(2010-11-06 00:00:01 UTC));
    t.log.record(&receive(13));
    let files = t.files();
    // Enough files that `-10` must sort after `-9`.
    assert_eq!(files.len(), 13, "{files:?}");
    assert_eq!(files.last().unwrap(), "MSGTRK20101106-1.LOG");
    for name in &files {
        assert!(
            t.read(name)
                .starts_with("#Software: Microsoft Exchange Server\r\n")
        );
    }
    let ids: Vec<i64> = t.all().iter().map(|e| e.internal_message_id).collect();
    assert_eq!(ids, (1..=13).collect::<Vec<_>>());
}

#[test]
fn filters_match_case_insensitively() {
    let t = TestLog::new("filters", true, DEFAULT_MAX_FILE_SIZE);
    t.log.record(&receive(1));
    t.set_time(datetime!(2010-11-05 15:00:00 UTC));
    t.log.record(&TrackingEvent {
        event_id: "DELIVER",
        source: "STOREDRIVER",
        recipients: &["dave@contoso.com"],
        message_id: Some("<other@fabrikam.com>"),
        sender: "erin@fabrikam.com",
        ..receive(2)
    });
    t.set_time(datetime!(2010-11-05 16:00:00 UTC));
    t.log.record(&TrackingEvent {
        event_id: "FAIL",
        ..receive(3)
    });
    let ids = |q: TrackingQuery| -> Vec<i64> {
        t.search(&q).iter().map(|e| e.internal_message_id).collect()
    };
    assert_eq!(ids(TrackingQuery::default()), [1, 2, 3]);
    let q = |f: fn(&mut TrackingQuery)| {
        let mut q = TrackingQuery::default();
        f(&mut q);
        q
    };
    assert_eq!(ids(q(|q| q.sender = Some("ERIN@fabrikam.COM".into()))), [2]);
    assert_eq!(
        ids(q(
            |q| q.recipients = vec!["nobody@x".into(), "bob@fabrikam.com".into()]
        )),
        [1, 3]
    );
    assert_eq!(ids(q(|q| q.event_id = Some("deliver".into()))), [2]);
    assert_eq!(
        ids(q(|q| q.message_id = Some("OTHER@fabrikam.com".into()))),
        [2]
    );
    assert_eq!(
        ids(q(|q| q.message_id = Some("<other@fabrikam.com>".into()))),
        [2]
    );
    assert_eq!(ids(q(|q| q.internal_message_id = Some(3))), [3]);
    assert_eq!(
        ids(q(|q| q.start = Some(datetime!(2010-11-05 15:00:00 UTC)))),
        [2, 3]
    );
    assert_eq!(
        ids(q(|q| q.end = Some(datetime!(2010-11-05 16:00:00 UTC)))),
        [1, 2]
    );
    assert_eq!(ids(q(|q| q.result_size = Some(2))), [1, 2]);
    assert_eq!(
        ids(q(|q| {
            q.sender = Some("carol@fabrikam.com".into());
            q.event_id = Some("FAIL".into());
        })),
        [3]
    );
}

#[test]
fn result_size_defaults_to_exchanges_thousand() {
    let t = TestLog::new("limit", true, DEFAULT_MAX_FILE_SIZE);
    for id in 0..1005 {
        t.log.record(&receive(id));
    }
    assert_eq!(t.all().len(), DEFAULT_RESULT_SIZE);
    let all = t.search(&TrackingQuery {
        result_size: Some(usize::MAX),
        ..TrackingQuery::default()
    });
    assert_eq!(all.len(), 1005);
}

#[test]
fn skips_foreign_and_unfinished_lines_and_follows_the_fields_header() {
    let t = TestLog::new("foreign", true, DEFAULT_MAX_FILE_SIZE);
    t.log.record(&receive(1));
    let d = dir(&t.dir);
    // An older file with only some columns, in another order; then garbage; then a line
    // still being written (no line break yet).
    fs::write(
        d.join("MSGTRK20101104-1.LOG"),
        "#Fields: event-id,date-time,sender-address,recipient-address\r\n\
         DELIVER,2010-11-04T08:00:00.000Z,old@x.test,a@y.test;b@y.test\r\n\
         not,a,date\r\n\
         DELIVER,2010-11-04T09:00:00.000Z,partial@x.test,",
    )
    .unwrap();
    let found = t.all();
    assert_eq!(found.len(), 2);
    assert_eq!(found[0].sender, "old@x.test");
    assert_eq!(found[0].recipients, ["a@y.test", "b@y.test"]);
    assert_eq!(found[1].internal_message_id, 1);
}

#[test]
fn parses_rfc_4180_records() {
    assert_eq!(
        parse_record("a,,\"b,c\",\"d\"\"e\""),
        ["a", "", "b,c", "d\"e"]
    );
    assert_eq!(parse_record(""), [""]);
    assert_eq!(file_sort_key("MSGTRK20101105-10.LOG"), Some((20101105, 10)));
    assert_eq!(file_sort_key("MSGTRKM20101105-1.LOG"), None);
    assert_eq!(file_sort_key("RECV20101105-1.LOG"), None);
}

#[test]
fn pages_hold_only_their_entries_and_say_when_more_follow() {
    let t = TestLog::new("page", true, DEFAULT_MAX_FILE_SIZE);
    for id in 1..=5 {
        t.log.record(&receive(id));
    }
    let ids = |skip, take| {
        let p = search_page(&t.dir, &TrackingQuery::default(), skip, take).unwrap();
        let ids: Vec<i64> = p.entries.iter().map(|e| e.internal_message_id).collect();
        (ids, p.more)
    };
    assert_eq!(ids(0, 2), (vec![1, 2], true));
    assert_eq!(ids(2, 2), (vec![3, 4], true));
    assert_eq!(ids(4, 2), (vec![5], false));
    assert_eq!(ids(3, 2), (vec![4, 5], false));
    assert_eq!(ids(9, 2), (vec![], false));
}
