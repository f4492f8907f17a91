use super::*;
use time::macros::datetime;

struct Rec(Vec<(&'static str, FValue)>);

impl Record for Rec {
    fn property_names(&self) -> Vec<&'static str> {
        self.0.iter().map(|(n, _)| *n).collect()
    }
    fn property(&self, name: &str) -> Option<FValue> {
        self.0
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
    }
}

fn queue() -> Rec {
    Rec(vec![
        ("NextHopDomain", FValue::Str("contoso.com".into())),
        ("Status", FValue::Str("Retry".into())),
        ("MessageCount", FValue::Num(3.0)),
        ("LastError", FValue::Null),
        (
            "DateReceived",
            FValue::Date(datetime!(2019-01-25 10:05 UTC)),
        ),
        ("Age", FValue::Span(Duration::minutes(90))),
        ("IsTls", FValue::Bool(true)),
        ("FromAddress", FValue::Str("bob@spam.example".into())),
    ])
}

#[test]
fn evaluates() {
    let r = queue();
    let cases: &[(&str, bool)] = &[
        (r#"NextHopDomain -eq "contoso.com""#, true),
        (r#"nexthopdomain -EQ 'CONTOSO.COM'"#, true),
        (r#"NextHopDomain -ne "contoso.com""#, false),
        (r#"FromAddress -like "*@spam.example""#, true),
        (r#"FromAddress -like "*@SPAM.example""#, true),
        (r#"FromAddress -notlike "*@spam.example""#, false),
        (r#"FromAddress -like "b?b@*""#, true),
        (r#"FromAddress -like "[a-c]ob@*""#, true),
        (r#"FromAddress -like "[xyz]ob@*""#, false),
        (r#"FromAddress -like "bob""#, false),
        ("MessageCount -gt 1", true),
        ("MessageCount -gt 3", false),
        ("MessageCount -ge 3", true),
        ("MessageCount -lt 3", false),
        ("MessageCount -le 3", true),
        ("MessageCount -eq '3'", true),
        ("MessageCount -gt 1kb", false),
        ("LastError -eq $null", true),
        ("LastError -ne $null", false),
        ("NextHopDomain -eq $null", false),
        ("IsTls -eq $true", true),
        ("IsTls -eq $false", false),
        (r#"DateReceived -gt "1/25/2019 10:00 AM""#, true),
        (r#"DateReceived -lt "2019-01-25T10:00:00Z""#, false),
        (r#"DateReceived -eq "2019-01-25 10:05""#, true),
        ("Age -gt 01:00:00", true),
        ("Age -gt '0.02:00'", false),
        // Precedence: -not > comparison > -and > -or.
        (
            "Status -eq Retry -or MessageCount -gt 5 -and IsTls -eq $false",
            true,
        ),
        (
            "(Status -eq Retry -or MessageCount -gt 5) -and IsTls -eq $false",
            false,
        ),
        ("-not Status -eq Ready", true),
        ("-not (Status -eq Retry) -or MessageCount -eq 3", true),
        ("!(Status -eq Retry)", false),
        ("Status -eq Retry -and -not MessageCount -gt 5", true),
        ("$true", true),
        ("$false -or Status -eq 'retry'", true),
    ];
    for (text, want) in cases {
        let f = Filter::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"));
        assert_eq!(f.matches(&r), Ok(*want), "{text}");
    }
}

#[test]
fn where_object_form() {
    let r = queue();
    for (text, want) in [
        ("$_.MessageCount -gt 1", true),
        (
            "$_.status -eq 'Ready' -or $_.NextHopDomain -like '*.com'",
            true,
        ),
    ] {
        let f = Filter::parse_where(text).unwrap_or_else(|e| panic!("{text}: {e}"));
        assert_eq!(f.matches(&r), Ok(want), "{text}");
    }
    assert!(matches!(
        Filter::parse_where("MessageCount -gt 1"),
        Err(FilterError::Syntax { pos: 0, .. })
    ));
    assert!(matches!(
        Filter::parse_where("$x.MessageCount -gt 1"),
        Err(FilterError::Syntax { pos: 0, .. })
    ));
}

#[test]
fn parse_errors() {
    let cases: &[(&str, FilterError)] = &[
        ("", FilterError::Empty),
        ("   ", FilterError::Empty),
        (
            "Status -equals Retry",
            FilterError::BadOperator {
                pos: 7,
                op: "equals".into(),
            },
        ),
        (
            "Status -eq Retry -xor Size -gt 1",
            FilterError::BadOperator {
                pos: 17,
                op: "xor".into(),
            },
        ),
        (
            "-contains x",
            FilterError::BadOperator {
                pos: 0,
                op: "contains".into(),
            },
        ),
    ];
    for (text, want) in cases {
        assert_eq!(Filter::parse(text).as_ref(), Err(want), "{text}");
    }
    // Syntax errors: where, and what they say.
    let syntax: &[(&str, usize, &str)] = &[
        ("Status -eq 'Retry", 11, "closing quote"),
        ("Status -eq", 10, "value is missing"),
        ("Status", 6, "operator is missing"),
        ("Status Retry", 7, "comparison operator"),
        ("(Status -eq Retry", 17, "missing closing ')'"),
        ("Status -eq Retry)", 16, "unexpected ')'"),
        ("Status -eq Retry Size", 17, "join conditions"),
        ("Status -eq Retry -and", 21, "property name is missing"),
        ("'Status' -eq Retry", 0, "expected a property name"),
        ("Status -eq $foo", 11, "$foo can't be used"),
        ("Status -eq (x)", 11, "expected a value"),
        ("$ -eq 1", 0, "not followed by a variable"),
    ];
    for (text, pos, what) in syntax {
        match Filter::parse(text) {
            Err(FilterError::Syntax { pos: p, what: w }) => {
                assert_eq!(p, *pos, "{text}: {w}");
                assert!(w.contains(what), "{text}: {w}");
            }
            other => panic!("{text}: {other:?}"),
        }
    }
}

#[test]
fn evaluation_errors() {
    let r = queue();
    let f = Filter::parse("Sttus -eq Retry").unwrap();
    let e = f.check(&r.property_names()).unwrap_err();
    assert!(matches!(e, FilterError::UnknownProperty { pos: 0, .. }));
    let text = e.to_string();
    assert!(text.contains("\"Sttus\""), "{text}");
    assert!(
        text.contains("NextHopDomain, Status, MessageCount"),
        "{text}"
    );
    assert!(matches!(
        f.matches(&r),
        Err(FilterError::UnknownProperty { .. })
    ));
    let cases: &[(&str, usize)] = &[
        ("MessageCount -gt lots", 17),
        ("Status -eq Retry -and DateReceived -gt 'yesterday'", 39),
        ("Age -lt 5", 8),
    ];
    for (text, pos) in cases {
        match Filter::parse(text).unwrap().matches(&r) {
            Err(FilterError::BadValue { pos: p, .. }) => assert_eq!(p, *pos, "{text}"),
            other => panic!("{text}: {other:?}"),
        }
    }
}

#[test]
fn wildcards_and_timespans() {
    for (p, t, want) in [
        ("*", "", true),
        ("a*b*c", "axxbyyc", true),
        ("a*b*c", "axxbyy", false),
        ("*.example", "x.example", true),
        ("a`*", "a*", true),
        ("a`*", "ab", false),
        ("[0-9]x", "5x", true),
    ] {
        assert_eq!(wildcard(p, t), want, "{p} {t}");
    }
    assert_eq!(parse_timespan("01:30"), Some(Duration::minutes(90)));
    assert_eq!(parse_timespan("1.00:00:05"), Some(Duration::seconds(86405)));
    assert_eq!(parse_timespan("25:00"), None);
    assert_eq!(parse_timespan("x"), None);
}

#[test]
fn messages_count_from_one() {
    let e = Filter::parse("Status -equals Retry")
        .unwrap_err()
        .to_string();
    assert!(e.contains("at position 8: '-equals'"), "{e}");
}

#[test]
fn values_checked_against_the_schema_before_any_row() {
    const SCHEMA: &[(&str, Kind)] = &[
        ("Status", Kind::Enum(&["Ready", "Retry"])),
        ("MessageCount", Kind::Num),
        ("DateReceived", Kind::Date),
        ("Age", Kind::Span),
        ("Subject", Kind::Str),
    ];
    for ok in [
        "Status -eq 'retry' -and MessageCount -gt 1kb",
        "Status -like 'Re*'",
        "DateReceived -lt '1/25/2019 10:00 AM' -or Age -gt 01:00:00",
        "Subject -eq 42 -and Status -ne $null",
    ] {
        assert_eq!(
            Filter::parse(ok).unwrap().check_schema(SCHEMA),
            Ok(()),
            "{ok}"
        );
    }
    let cases: &[(&str, usize, &str)] = &[
        ("Status -eq Retyr", 11, "valid values are: Ready, Retry"),
        ("MessageCount -ge ten", 17, "not a number"),
        ("Subject -eq x -or DateReceived -gt soon", 35, "not a date"),
        ("Age -lt 3", 8, "not a TimeSpan"),
    ];
    for (text, pos, why) in cases {
        match Filter::parse(text).unwrap().check_schema(SCHEMA) {
            Err(FilterError::BadValue { pos: p, why: w, .. }) => {
                assert_eq!(p, *pos, "{text}");
                assert!(w.contains(why), "{text}: {w}");
            }
            other => panic!("{text}: {other:?}"),
        }
    }
    assert!(matches!(
        Filter::parse("Size -gt 1").unwrap().check_schema(SCHEMA),
        Err(FilterError::UnknownProperty { pos: 0, .. })
    ));
}
