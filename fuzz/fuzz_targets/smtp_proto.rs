#![no_main]

use libfuzzer_sys::fuzz_target;

// Included by path so the fuzzer builds without the gateway's heavy
// dependency tree; the module promises to need only std and base64.
#[allow(dead_code, unused_imports)]
#[path = "../../src/smtp/proto/mod.rs"]
mod proto;

use proto::{DataReader, Line, LineReader, ResponseReader};

const MAX_LINE: usize = 64;

fn collect_lines(chunks: &[&[u8]]) -> (Vec<Line>, Vec<u8>) {
    let mut reader = LineReader::new(MAX_LINE);
    let mut out = Vec::new();
    for chunk in chunks {
        reader.push(chunk);
        out.extend(std::iter::from_fn(|| reader.next_line()));
    }
    (out, reader.take_buffered())
}

fn lines(data: &[u8], split: usize) {
    let (split_lines, split_rest) = collect_lines(&[&data[..split], &data[split..]]);
    let (whole_lines, whole_rest) = collect_lines(&[data]);
    // Where the reads happen to be cut must not change what is seen,
    // except that a long unterminated tail may already have been dropped.
    assert_eq!(split_lines, whole_lines);
    assert!(split_rest.len() < MAX_LINE || split_rest == whole_rest);
    assert!(!split_rest.contains(&b'\n') && !whole_rest.contains(&b'\n'));
    for line in whole_lines {
        if let Line::Complete(l) = line {
            assert!(l.len() < MAX_LINE);
            assert!(!l.contains(&b'\n'));
            if let Err(e) = proto::parse_command(&l) {
                let wire = e.reply().to_wire();
                assert!(wire.starts_with('5') && wire.ends_with("\r\n"));
                assert_eq!(wire.matches("\r\n").count(), 1);
            }
        }
    }
}

fn data(data: &[u8], split: usize) {
    let max_size = 256;
    let max_header = 64;
    let mut whole = DataReader::new(max_size, max_header);
    let mut body_whole = Vec::new();
    let consumed_whole = whole.feed(data, &mut body_whole);

    let mut parts = DataReader::new(max_size, max_header);
    let mut body_parts = Vec::new();
    let consumed_parts = match parts.feed(&data[..split], &mut body_parts) {
        Some(n) => Some(n),
        None => parts
            .feed(&data[split..], &mut body_parts)
            .map(|n| n + split),
    };
    assert_eq!(consumed_whole, consumed_parts);
    assert_eq!(body_whole, body_parts);
    assert_eq!(whole.outcome(), parts.outcome());
    assert!(body_whole.len() as u64 <= max_size);

    let out = whole.outcome();
    if let Some(n) = consumed_whole {
        assert!(data[..n].ends_with(b"\r\n.\r\n") || data[..n] == *b".\r\n");
        if !out.too_large && !out.header_too_large {
            assert_eq!(body_whole.len() as u64, out.size);
            let hdr = proto::header_section_len(&body_whole) as u64;
            assert!(hdr <= max_header);
        }
    } else {
        // Nothing before the end of the input may look like a terminator.
        assert!(!data.starts_with(b".\r\n"));
        assert!(!data.windows(5).any(|w| w == b"\r\n.\r\n"));
    }
    if out.bare_lf || out.bare_cr || out.too_large || out.header_too_large {
        assert!(out.rejection().is_some());
    }
}

fn responses(data: &[u8], split: usize) {
    let mut reader = ResponseReader::with_limits(128, 8);
    for chunk in [&data[..split], &data[split..]] {
        reader.push(chunk);
        while let Ok(Some(reply)) = reader.next_reply() {
            assert!((200..600).contains(&reply.code));
            assert!(!reply.lines.is_empty() && reply.lines.len() <= 8);
            let _ = proto::parse_ehlo_keywords(&reply);
            let _ = reply.to_wire();
        }
    }
}

fn text(s: &str) {
    let _ = proto::decode_plain(s);
    if let Ok(t) = proto::decode_base64_text(s) {
        assert_eq!(
            proto::decode_base64_text(&proto::encode_base64_text(&t)),
            Ok(t)
        );
    }
    let _ = proto::is_cancel(s);
    let _ = proto::xtext_decode(s);
    assert_eq!(
        proto::xtext_decode(&proto::xtext_encode(s)).as_deref(),
        Some(s)
    );
    let _ = proto::MailParams::parse(s);
    let _ = proto::RcptParams::parse(s);
}

fuzz_target!(|input: &[u8]| {
    let (split, data_bytes) = match input.split_first() {
        Some((&b, rest)) => ((b as usize).min(rest.len()), rest),
        None => (0, input),
    };
    lines(data_bytes, split);
    data(data_bytes, split);
    responses(data_bytes, split);
    text(&String::from_utf8_lossy(data_bytes));
});
