use super::*;
use mail_parser::{MessageParser, MimeHeaders};
use time::macros::datetime;

const ORIGINAL: &[u8] = b"From: Alice <alice@contoso.com>\r\nTo: bob@fabrikam.com\r\nSubject: Quarterly report\r\nMessage-ID: <abc@contoso.com>\r\n\r\nThe body line that RET=HDRS leaves out.\r\n";

fn reporter() -> Reporter {
    Reporter {
        fqdn: "hub01.contoso.com".into(),
        postmaster: "postmaster@contoso.com".into(),
        max_returned_size: DEFAULT_MAX_RETURNED_SIZE,
    }
}

fn original<'a>(ret: Option<&'a str>, env_id: Option<&'a str>) -> Original<'a> {
    Original {
        sender: "alice@contoso.com",
        env_id,
        ret,
        arrival_date: datetime!(2024-03-01 08:00:00 UTC),
        content: ORIGINAL,
    }
}

fn not_found(addr: &str) -> RecipientOutcome {
    RecipientOutcome {
        address: addr.into(),
        orcpt: None,
        notify: None,
        reply: Reply::new(550, "5.1.1", "RESOLVER.ADR.RecipNotFound; not found"),
        remote_mta: None,
    }
}

fn text(d: &Dsn) -> String {
    String::from_utf8(d.message.clone()).unwrap()
}

const NOW: OffsetDateTime = datetime!(2024-03-01 12:00:00 UTC);

#[test]
fn ndr_is_a_delivery_status_report_with_exchange_wording() {
    let rejected = RecipientOutcome {
        address: "carol@fabrikam.com".into(),
        orcpt: Some("rfc822;Carol@Fabrikam.com".into()),
        notify: Some("FAILURE".into()),
        reply: Reply::new(
            550,
            "5.1.1",
            "<carol@fabrikam.com>: Recipient address rejected",
        ),
        remote_mta: Some("mx.fabrikam.com".into()),
    };
    let dsn = build_ndr(
        &reporter(),
        &original(None, Some("QQ+1")),
        &[not_found("bob@contoso.com"), rejected],
        NOW,
    )
    .expect("an NDR");
    assert_eq!(dsn.envelope_to, "alice@contoso.com");
    let raw = text(&dsn);
    let msg = MessageParser::default().parse(&dsn.message).unwrap();
    let ct = msg.content_type().unwrap();
    assert_eq!(
        (ct.ctype(), ct.subtype()),
        ("multipart", Some("report")),
        "{raw}"
    );
    assert_eq!(ct.attribute("report-type"), Some("delivery-status"));
    assert_eq!(msg.subject(), Some("Undeliverable: Quarterly report"));
    assert_eq!(
        msg.from().unwrap().first().unwrap().address(),
        Some("postmaster@contoso.com")
    );
    assert_eq!(
        msg.header_raw("Auto-Submitted").map(str::trim),
        Some("auto-replied")
    );
    assert_eq!(
        msg.header_raw("In-Reply-To").map(str::trim),
        Some("<abc@contoso.com>")
    );

    let parts = msg.root_part().sub_parts().unwrap();
    assert_eq!(parts.len(), 3);
    let human = msg.part(parts[0]).unwrap().text_contents().unwrap();
    for line in [
        "Delivery has failed to these recipients or groups:\r\n\r\nbob@contoso.com\r\n",
        "The following organization rejected your message: mx.fabrikam.com.\r\n",
        "Diagnostic information for administrators:\r\n\r\nGenerating server: hub01.contoso.com\r\n",
        "\r\nbob@contoso.com\r\n#550 5.1.1 RESOLVER.ADR.RecipNotFound; not found ##\r\n",
        "\r\ncarol@fabrikam.com\r\nmx.fabrikam.com #550 5.1.1 <carol@fabrikam.com>: Recipient address rejected ##\r\n",
        "Original message headers:\r\n\r\nFrom: Alice <alice@contoso.com>\r\n",
    ] {
        assert!(human.contains(line), "missing {line:?} in\n{human}");
    }

    let status_part = msg.part(parts[1]).unwrap();
    let sct = status_part.content_type().unwrap();
    assert_eq!(
        (sct.ctype(), sct.subtype()),
        ("message", Some("delivery-status"))
    );
    let status = std::str::from_utf8(status_part.contents()).unwrap();
    assert!(
        status.starts_with(
            "Original-Envelope-Id: QQ+1\r\nReporting-MTA: dns;hub01.contoso.com\r\n\
             Arrival-Date: Fri, 01 Mar 2024 08:00:00 +0000\r\n\r\n"
        ),
        "{status}"
    );
    assert!(status.contains(
        "\r\nFinal-Recipient: rfc822;bob@contoso.com\r\nAction: failed\r\nStatus: 5.1.1\r\n\
         Diagnostic-Code: smtp;550 5.1.1 RESOLVER.ADR.RecipNotFound; not found\r\n"
    ));
    assert!(status.contains(
        "\r\nOriginal-Recipient: rfc822;Carol@Fabrikam.com\r\nFinal-Recipient: rfc822;carol@fabrikam.com\r\n\
         Action: failed\r\nStatus: 5.1.1\r\nRemote-MTA: dns;mx.fabrikam.com\r\n\
         Diagnostic-Code: smtp;550 5.1.1 <carol@fabrikam.com>: Recipient address rejected\r\n"
    ));
    assert!(!status.contains("Will-Retry-Until"));

    let returned = msg.part(parts[2]).unwrap();
    let rct = returned.content_type().unwrap();
    assert_eq!((rct.ctype(), rct.subtype()), ("message", Some("rfc822")));
    let inner = returned.message().expect("the original, parsed");
    assert_eq!(inner.subject(), Some("Quarterly report"));
    assert!(raw.contains("The body line that RET=HDRS leaves out."));
}

#[test]
fn ret_hdrs_returns_only_the_header() {
    let dsn = build_ndr(
        &reporter(),
        &original(Some("HDRS"), None),
        &[not_found("bob@contoso.com")],
        NOW,
    )
    .unwrap();
    let msg = MessageParser::default().parse(&dsn.message).unwrap();
    let parts = msg.root_part().sub_parts().unwrap();
    let third = msg.part(parts[2]).unwrap();
    let ct = third.content_type().unwrap();
    assert_eq!((ct.ctype(), ct.subtype()), ("text", Some("rfc822-headers")));
    assert!(!text(&dsn).contains("The body line"));
    assert!(
        std::str::from_utf8(third.contents())
            .unwrap()
            .contains("Subject: Quarterly report")
    );
    assert!(!text(&dsn).contains("Original-Envelope-Id"));
}

#[test]
fn what_comes_back() {
    // (case, kind, RET, cap, want)
    let cases = [
        (
            "NDR default",
            DsnKind::Failure,
            None,
            u64::MAX,
            Returned::Full,
        ),
        (
            "NDR default over the cap",
            DsnKind::Failure,
            None,
            10,
            Returned::Headers,
        ),
        (
            "NDR HDRS",
            DsnKind::Failure,
            Some("HDRS"),
            u64::MAX,
            Returned::Headers,
        ),
        (
            "NDR full",
            DsnKind::Failure,
            Some("full"),
            u64::MAX,
            Returned::Full,
        ),
        (
            "FULL over the cap",
            DsnKind::Failure,
            Some("FULL"),
            10,
            Returned::Headers,
        ),
        (
            "delay default",
            DsnKind::Delay,
            None,
            u64::MAX,
            Returned::Headers,
        ),
        (
            "delay FULL",
            DsnKind::Delay,
            Some("FULL"),
            u64::MAX,
            Returned::Full,
        ),
    ];
    for (case, kind, ret, cap, want) in cases {
        assert_eq!(returned(&original(ret, None), kind, cap), want, "{case}");
    }
}

#[test]
fn notify_rules() {
    // (NOTIFY as stored, kind, want)
    let cases = [
        (None, DsnKind::Failure, true),
        (None, DsnKind::Delay, true),
        (Some("NEVER"), DsnKind::Failure, false),
        (Some("NEVER"), DsnKind::Delay, false),
        (Some("SUCCESS,FAILURE,DELAY"), DsnKind::Delay, true),
        (Some("FAILURE"), DsnKind::Failure, true),
        (Some("FAILURE"), DsnKind::Delay, false),
        (Some("SUCCESS"), DsnKind::Failure, false),
        (Some("success, delay"), DsnKind::Delay, true),
    ];
    for (notify, kind, want) in cases {
        assert_eq!(should_notify(notify, kind), want, "{notify:?} {kind:?}");
    }
}

#[test]
fn notify_never_yields_no_dsn() {
    let mut r = not_found("bob@contoso.com");
    r.notify = Some("NEVER".into());
    assert!(build_ndr(&reporter(), &original(None, None), &[r.clone()], NOW).is_none());
    r.notify = Some("FAILURE".into());
    let until = NOW + time::Duration::days(1);
    let delay = build_delay(&reporter(), &original(None, None), &[r.clone()], until, NOW);
    assert!(delay.is_none(), "FAILURE only: no delay DSN");
    // Only the recipients who asked are listed.
    let mut quiet = not_found("quiet@contoso.com");
    quiet.notify = Some("NEVER".into());
    let dsn = build_ndr(&reporter(), &original(None, None), &[r, quiet], NOW).unwrap();
    assert!(!text(&dsn).contains("quiet@contoso.com"));
}

#[test]
fn null_sender_gets_nothing() {
    for sender in ["", "<>", " "] {
        let mut o = original(None, None);
        o.sender = sender;
        let r = [not_found("bob@contoso.com")];
        assert!(build_ndr(&reporter(), &o, &r, NOW).is_none(), "{sender:?}");
        let until = NOW + time::Duration::days(1);
        assert!(build_delay(&reporter(), &o, &r, until, NOW).is_none());
    }
}

#[test]
fn delay_dsn_wording_and_status() {
    let r = RecipientOutcome {
        address: "bob@cryer.co.uk".into(),
        orcpt: None,
        notify: Some("DELAY,FAILURE".into()),
        reply: Reply::new(
            451,
            "4.4.0",
            "Primary target IP address responded with: \"421 4.2.1 Unable to connect.\"",
        ),
        remote_mta: Some("mail.cryer.co.uk".into()),
    };
    let until = NOW + time::Duration::minutes(24 * 60 + 19 * 60 + 53);
    let dsn = build_delay(&reporter(), &original(None, None), &[r], until, NOW).unwrap();
    let msg = MessageParser::default().parse(&dsn.message).unwrap();
    assert_eq!(msg.subject(), Some("Delivery delayed: Quarterly report"));
    let parts = msg.root_part().sub_parts().unwrap();
    let human = msg.part(parts[0]).unwrap().text_contents().unwrap();
    let want = "Delivery is delayed to these recipients or groups:\r\n\r\n\
                bob@cryer.co.uk\r\n\r\n\
                Subject: Quarterly report\r\n\r\n\
                This message hasn't been delivered yet. Delivery will continue to be attempted.\r\n\r\n\
                The server will keep trying to deliver this message for the next 1 day, 19 hours and 53 minutes. \
                You'll be notified if the message can't be delivered by that time.\r\n\r\n\
                Diagnostic information for administrators:\r\n\r\n\
                Generating server: hub01.contoso.com\r\n\r\n\
                bob@cryer.co.uk\r\n\
                mail.cryer.co.uk #451 4.4.0 Primary target IP address responded with: \"421 4.2.1 Unable to connect.\" ##\r\n";
    assert!(human.starts_with(want), "got:\n{human}");
    let status = std::str::from_utf8(msg.part(parts[1]).unwrap().contents()).unwrap();
    assert!(status.contains(
        "Final-Recipient: rfc822;bob@cryer.co.uk\r\nAction: delayed\r\nStatus: 4.4.0\r\n\
         Remote-MTA: dns;mail.cryer.co.uk\r\n"
    ));
    assert!(status.contains("Will-Retry-Until: Sun, 03 Mar 2024 07:53:00 +0000\r\n"));
    let third = msg.part(parts[2]).unwrap().content_type().unwrap();
    assert_eq!(third.subtype(), Some("rfc822-headers"));
    assert!(!text(&dsn).contains("The body line"));
}

#[test]
fn remaining_time_sentence() {
    let m = |d: u64, h: u64, min: u64| Duration::from_secs(((d * 24 + h) * 60 + min) * 60);
    let cases = [
        (m(1, 19, 53), "1 day, 19 hours and 53 minutes"),
        (m(2, 1, 1), "2 days, 1 hour and 1 minute"),
        (m(0, 4, 0), "0 days, 4 hours and 0 minutes"),
        (
            m(5, 0, 0) + Duration::from_secs(59),
            "5 days, 0 hours and 0 minutes",
        ),
    ];
    for (d, want) in cases {
        assert_eq!(remaining_time(d), want);
    }
}

#[test]
fn hostile_values_cannot_add_header_lines() {
    let mut r = not_found("bob@contoso.com");
    r.remote_mta = Some("mx.evil\r\nX-Injected: 1".into());
    r.reply = Reply::new(550, "5.0.0", "no\r\nX-Injected: 2");
    let mut o = original(None, Some("id\r\nX-Injected: 3"));
    o.sender = "alice@contoso.com\r\nBcc: x@y";
    let dsn = build_ndr(&reporter(), &o, &[r], NOW).unwrap();
    let raw = text(&dsn);
    assert!(!raw.contains("\r\nX-Injected"), "{raw}");
    assert!(!raw.contains("\r\nBcc"), "{raw}");
}

#[test]
fn utf8_subject_and_address() {
    let content = "Subject: Grüße\r\n\r\nx\r\n".as_bytes();
    let o = Original {
        content,
        ..original(None, None)
    };
    let dsn = build_ndr(&reporter(), &o, &[not_found("jürgen@contoso.com")], NOW).unwrap();
    let msg = MessageParser::default().parse(&dsn.message).unwrap();
    assert_eq!(msg.subject(), Some("Undeliverable: Grüße"));
    let parts = msg.root_part().sub_parts().unwrap();
    let human = msg.part(parts[0]).unwrap().text_contents().unwrap();
    assert!(
        human.contains("jürgen@contoso.com\r\n#550 5.1.1"),
        "{human}"
    );
    let status = msg.part(parts[1]).unwrap();
    assert_eq!(
        status.content_type().unwrap().subtype(),
        Some("global-delivery-status")
    );
    assert!(
        std::str::from_utf8(status.contents())
            .unwrap()
            .contains("Final-Recipient: utf-8;jürgen@contoso.com\r\n")
    );
}
