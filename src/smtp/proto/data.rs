//! The DATA phase: finding the end of the message and undoing dot-stuffing
//! (RFC 5321 4.1.1.4, 4.5.2), and the content policy that DATA and BDAT share.

use super::reply::Reply;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// After CRLF, or at the very start of the data.
    LineStart,
    /// A '.' at line start, not yet known to be stuffing or the terminator.
    Dot,
    /// ".\r" at line start.
    DotCr,
    Mid,
    /// Inside a line, right after a CR.
    Cr,
    Done,
}

/// Policy facts about a received message.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DataOutcome {
    /// Message bytes after dot-unstuffing (terminator excluded).
    pub size: u64,
    pub too_large: bool,
    pub header_too_large: bool,
    pub bare_lf: bool,
    pub bare_cr: bool,
    pub nul: bool,
}

impl DataOutcome {
    /// The Exchange reply refusing the message, if it must be refused.
    pub fn rejection(&self) -> Option<Reply> {
        if self.too_large {
            Some(Reply::new(
                552,
                "5.3.4",
                "Message size exceeds fixed maximum message size",
            ))
        } else if self.header_too_large {
            Some(Reply::new(
                552,
                "5.3.4",
                "Header size exceeds fixed maximum size",
            ))
        } else if self.bare_lf {
            Some(Reply::new(
                554,
                "5.6.0",
                "Invalid message content, contains bare linefeeds",
            ))
        } else if self.bare_cr {
            Some(Reply::new(
                554,
                "5.6.0",
                "Invalid message content, contains bare carriage returns",
            ))
        } else if self.nul {
            // Some downstream parsers stop at NUL, which makes it a smuggling tool.
            Some(Reply::new(
                554,
                "5.6.0",
                "Invalid message content, contains NUL characters",
            ))
        } else {
            None
        }
    }
}

/// Measures the header section: everything before the first empty line. A
/// line ends at LF; an empty line is one holding nothing or a lone CR, so a
/// bare-LF message cannot hide an oversized header behind a missed boundary.
#[derive(Debug, Clone, Default)]
struct HeaderScan {
    /// Bytes of complete header lines.
    len: u64,
    line: u64,
    line_is_cr: bool,
    done: bool,
}

impl HeaderScan {
    fn feed(&mut self, b: u8) {
        if self.done {
            return;
        }
        if b == b'\n' {
            if self.line == 0 || (self.line == 1 && self.line_is_cr) {
                self.done = true;
            } else {
                self.len = self.len.saturating_add(self.line + 1);
                self.line = 0;
            }
        } else {
            self.line_is_cr = self.line == 0 && b == b'\r';
            self.line = self.line.saturating_add(1);
        }
    }

    fn len(&self) -> u64 {
        if self.done || (self.line == 1 && self.line_is_cr) {
            // A lone CR may be the start of the empty line that ends the
            // header; counting it early would reject a header of exactly the
            // maximum size.
            self.len
        } else {
            self.len.saturating_add(self.line)
        }
    }
}

/// Length of a message's header section (bytes before the first empty line,
/// or the whole message without one), measured as [`DataReader`] does.
pub fn header_section_len(msg: &[u8]) -> usize {
    let mut scan = HeaderScan::default();
    for &b in msg {
        scan.feed(b);
        if scan.done {
            break;
        }
    }
    scan.len() as usize
}

/// The content policy every message passes however it arrived (DATA after unstuffing, or the
/// raw octets of BDAT chunks): the size and header-size limits, and no bare CR, bare LF or NUL.
/// One policy for both, so neither command is a way around it.
#[derive(Debug, Clone)]
pub struct ContentCheck {
    max_size: u64,
    max_header_size: u64,
    header: HeaderScan,
    after_cr: bool,
    outcome: DataOutcome,
}

impl ContentCheck {
    pub fn new(max_size: u64, max_header_size: u64) -> Self {
        ContentCheck {
            max_size,
            max_header_size,
            header: HeaderScan::default(),
            after_cr: false,
            outcome: DataOutcome::default(),
        }
    }

    pub fn feed(&mut self, mut bytes: &[u8]) {
        while let Some((&b, rest)) = bytes.split_first() {
            let run = self.plain_run(bytes);
            if run > 0 {
                self.plain(&bytes[..run]);
                bytes = &bytes[run..];
            } else {
                self.byte(b);
                bytes = rest;
            }
        }
    }

    /// How many leading bytes of `bytes` [`ContentCheck::plain`] may take at once: past the
    /// header section, up to the next CR or LF (the only bytes whose meaning depends on their
    /// neighbours). Zero when they must go one at a time.
    fn plain_run(&self, bytes: &[u8]) -> usize {
        if !self.header.done {
            return 0;
        }
        memchr::memchr2(b'\r', b'\n', bytes).unwrap_or(bytes.len())
    }

    /// Bytes holding no CR and no LF, past the header section: what [`ContentCheck::byte`]
    /// would conclude from each, at once. A message body is mostly such runs.
    fn plain(&mut self, run: &[u8]) {
        let out = &mut self.outcome;
        out.size = out.size.saturating_add(run.len() as u64);
        if out.size > self.max_size {
            out.too_large = true;
        }
        out.bare_cr |= self.after_cr;
        out.nul |= memchr::memchr(0, run).is_some();
        self.after_cr = false;
    }

    fn byte(&mut self, b: u8) {
        let out = &mut self.outcome;
        out.size = out.size.saturating_add(1);
        if out.size > self.max_size {
            out.too_large = true;
        }
        if !self.header.done {
            self.header.feed(b);
            if self.header.len() > self.max_header_size {
                out.header_too_large = true;
            }
        }
        match b {
            b'\n' => out.bare_lf |= !self.after_cr,
            _ => out.bare_cr |= self.after_cr,
        }
        out.nul |= b == 0;
        self.after_cr = b == b'\r';
    }

    /// Past a size limit the message is going to be refused: its bytes need not be kept.
    pub fn over_limit(&self) -> bool {
        self.outcome.too_large || self.outcome.header_too_large
    }

    /// The facts so far, as if the message ended here (a CR at the very end is a bare one).
    pub fn outcome(&self) -> DataOutcome {
        let mut out = self.outcome;
        out.bare_cr |= self.after_cr;
        out
    }
}

/// Streaming reader for the bytes following a `354` reply.
#[derive(Debug, Clone)]
pub struct DataReader {
    state: State,
    check: ContentCheck,
}

impl DataReader {
    pub fn new(max_size: u64, max_header_size: u64) -> Self {
        DataReader {
            state: State::LineStart,
            check: ContentCheck::new(max_size, max_header_size),
        }
    }

    /// Consumes `input`, appending unstuffed message bytes to `body`. Returns
    /// how many bytes of `input` belonged to the message (terminator included)
    /// once `CRLF.CRLF` has been seen; the rest are pipelined commands. After
    /// that, further calls consume nothing.
    pub fn feed(&mut self, input: &[u8], body: &mut Vec<u8>) -> Option<usize> {
        if self.state == State::Done {
            return Some(0);
        }
        let mut i = 0;
        while let Some(&b) = input.get(i) {
            // Inside a line, a run up to the next CR or LF can neither end the message nor be
            // stuffing: it is taken whole.
            let run = match self.state {
                State::Mid => self.check.plain_run(&input[i..]),
                _ => 0,
            };
            if run > 0 {
                self.plain(&input[i..i + run], body);
                i += run;
                continue;
            }
            self.step(b, body);
            i += 1;
            if self.state == State::Done {
                return Some(i);
            }
        }
        None
    }

    /// A run [`ContentCheck::plain_run`] allowed, kept as [`DataReader::emit`] keeps each byte:
    /// the bytes within the size limit, none once a limit is passed.
    fn plain(&mut self, run: &[u8], body: &mut Vec<u8>) {
        let before = self.check.outcome.size;
        let header_ok = !self.check.outcome.header_too_large;
        self.check.plain(run);
        if header_ok {
            let room = self.check.max_size.saturating_sub(before);
            let keep = usize::try_from(room).unwrap_or(usize::MAX).min(run.len());
            body.extend_from_slice(&run[..keep]);
        }
    }

    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    pub fn outcome(&self) -> DataOutcome {
        self.check.outcome()
    }

    fn emit(&mut self, b: u8, body: &mut Vec<u8>) {
        self.check.byte(b);
        // Past a limit the message is going to be refused: keep scanning for
        // its end, but stop holding on to its bytes.
        if !self.check.over_limit() {
            body.push(b);
        }
    }

    /// Content byte in the middle of a line; only here can CR and LF pair up
    /// into a line end. The policy (bare CR/LF) is judged by [`ContentCheck`] on
    /// the unstuffed bytes, which is equivalent: only a dot after CRLF is removed.
    fn mid(&mut self, b: u8, body: &mut Vec<u8>) {
        self.state = if b == b'\r' { State::Cr } else { State::Mid };
        self.emit(b, body);
    }

    fn step(&mut self, b: u8, body: &mut Vec<u8>) {
        match self.state {
            State::LineStart => {
                if b == b'.' {
                    self.state = State::Dot;
                } else {
                    self.mid(b, body);
                }
            }
            // The leading dot is stuffing unless this turns out to be the
            // terminator, so it is never emitted.
            State::Dot => {
                if b == b'\r' {
                    self.state = State::DotCr;
                } else {
                    self.mid(b, body);
                }
            }
            State::DotCr => {
                if b == b'\n' {
                    self.state = State::Done;
                } else {
                    self.emit(b'\r', body);
                    self.mid(b, body);
                }
            }
            State::Mid => self.mid(b, body),
            State::Cr => {
                if b == b'\n' {
                    self.emit(b, body);
                    self.state = State::LineStart;
                } else {
                    self.mid(b, body);
                }
            }
            State::Done => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BIG: u64 = 1 << 20;

    /// Feeds whole and byte by byte, checks both agree, and returns
    /// (consumed, body, outcome).
    fn run(input: &[u8], max: u64, max_hdr: u64) -> (Option<usize>, Vec<u8>, DataOutcome) {
        let mut whole = DataReader::new(max, max_hdr);
        let mut body = Vec::new();
        let consumed = whole.feed(input, &mut body);

        let mut bytewise = DataReader::new(max, max_hdr);
        let mut body2 = Vec::new();
        let mut consumed2 = None;
        for (i, b) in input.iter().enumerate() {
            match bytewise.feed(std::slice::from_ref(b), &mut body2) {
                Some(1) => {
                    consumed2 = Some(i + 1);
                    break;
                }
                Some(n) => panic!("consumed {n} of one byte"),
                None => {}
            }
        }
        assert_eq!(consumed, consumed2, "{input:?}");
        assert_eq!(body, body2);
        assert_eq!(whole.outcome(), bytewise.outcome());
        assert_eq!(whole.is_done(), consumed.is_some());
        (consumed, body, whole.outcome())
    }

    #[test]
    fn terminator_and_unstuffing() {
        let cases: &[(&[u8], Option<&[u8]>)] = &[
            (b".\r\n", Some(b"")),
            (b"\r\n.\r\n", Some(b"\r\n")),
            (
                b"Subject: x\r\n\r\nhi\r\n.\r\n",
                Some(b"Subject: x\r\n\r\nhi\r\n"),
            ),
            (b"..x\r\n.\r\n", Some(b".x\r\n")),
            (b"...\r\n.\r\n", Some(b"..\r\n")),
            (b"..\r\n.\r\n", Some(b".\r\n")),
            (b"a\r\n..b\r\n.c\r\n.\r\n", Some(b"a\r\n.b\r\nc\r\n")),
            (b"a.\r\n.\r\n", Some(b"a.\r\n")),
            (b"a\r\n. \r\n.\r\n", Some(b"a\r\n \r\n")),
            (b"a\r\n", None),
            (b"a\r\n.", None),
            (b"a\r\n.\r", None),
            (b"", None),
        ];
        for (input, want) in cases {
            let (consumed, body, out) = run(input, BIG, BIG);
            match want {
                Some(w) => {
                    assert_eq!(consumed, Some(input.len()), "{input:?}");
                    assert_eq!(&body, w, "{input:?}");
                    assert_eq!(out.size, w.len() as u64);
                    assert_eq!(out.rejection(), None);
                }
                None => assert_eq!(consumed, None, "{input:?}"),
            }
        }
    }

    #[test]
    fn smuggling_sequences_do_not_end_data() {
        // (sequence inside a body, sets bare_lf, sets bare_cr)
        let cases: &[(&[u8], bool, bool)] = &[
            (b"\n.\r\n", true, false),
            (b"\r\n.\n", true, false),
            (b"\n.\n", true, false),
            (b"\r.\r\n", false, true),
            (b"\r.\r", false, true),
            (b"\n\r\n.\r", true, true),
            (b"\r\n.\rX", false, true),
        ];
        for &(seq, lf, cr) in cases {
            let mut input = b"Subject: t\r\n\r\nbefore".to_vec();
            input.extend_from_slice(seq);
            input.extend_from_slice(b"MAIL FROM:<evil@example.com>\r\n");
            // Not terminated by the smuggled sequence...
            let (consumed, _, _) = run(&input, BIG, BIG);
            assert_eq!(consumed, None, "{seq:?}");
            // ...only by the real one.
            input.extend_from_slice(b"\r\n.\r\n");
            let (consumed, body, out) = run(&input, BIG, BIG);
            assert_eq!(consumed, Some(input.len()), "{seq:?}");
            assert_eq!((out.bare_lf, out.bare_cr), (lf, cr), "{seq:?}");
            assert!(body.ends_with(b"MAIL FROM:<evil@example.com>\r\n\r\n"));
            let text = out.rejection().unwrap().to_wire();
            assert!(
                text.starts_with("554 5.6.0 Invalid message content, contains bare "),
                "{text}"
            );
        }
        let (_, _, out) = run(b"a\nb\r\n.\r\n", BIG, BIG);
        assert_eq!(
            out.rejection().unwrap().to_wire(),
            "554 5.6.0 Invalid message content, contains bare linefeeds\r\n"
        );
        let (_, _, out) = run(b"a\rb\r\n.\r\n", BIG, BIG);
        assert_eq!(
            out.rejection().unwrap().to_wire(),
            "554 5.6.0 Invalid message content, contains bare carriage returns\r\n"
        );
    }

    #[test]
    fn pipelined_bytes_are_left_unconsumed() {
        let input = b"hi\r\n.\r\nQUIT\r\n";
        let (consumed, body, _) = run(input, BIG, BIG);
        assert_eq!(consumed, Some(7));
        assert_eq!(&input[7..], b"QUIT\r\n");
        assert_eq!(body, b"hi\r\n");

        let mut r = DataReader::new(BIG, BIG);
        let mut body = Vec::new();
        assert_eq!(r.feed(b"hi\r\n.", &mut body), None);
        assert_eq!(r.feed(b"\r\nRSET\r\n", &mut body), Some(2));
        assert_eq!(r.feed(b"more", &mut body), Some(0));
        assert_eq!(body, b"hi\r\n");
    }

    #[test]
    fn size_limit() {
        let msg = b"Subject: s\r\n\r\n0123456789\r\n.\r\n";
        let size = msg.len() as u64 - 3;
        let (_, body, out) = run(msg, size, BIG);
        assert!(!out.too_large);
        assert_eq!(body.len() as u64, size);

        let (consumed, body, out) = run(msg, size - 1, BIG);
        assert_eq!(consumed, Some(msg.len()));
        assert!(out.too_large);
        assert_eq!(out.size, size);
        assert!((body.len() as u64) < size);
        assert_eq!(
            out.rejection().unwrap().to_wire(),
            "552 5.3.4 Message size exceeds fixed maximum message size\r\n"
        );

        // Memory stays bounded however much is sent.
        let mut r = DataReader::new(100, BIG);
        let mut body = Vec::new();
        for _ in 0..1000 {
            assert_eq!(r.feed(&[b'x'; 1000], &mut body), None);
        }
        assert_eq!(r.feed(b"\r\n.\r\n", &mut body), Some(5));
        assert_eq!(body.len(), 100);
        assert_eq!(r.outcome().size, 1_000_002);
    }

    #[test]
    fn header_limit() {
        let msg = b"A: 1\r\nB: 2\r\n\r\nbody body body body\r\n.\r\n";
        let (_, _, out) = run(msg, BIG, 12);
        assert!(!out.header_too_large);
        let (consumed, body, out) = run(msg, BIG, 11);
        assert_eq!(consumed, Some(msg.len()));
        assert!(out.header_too_large);
        assert!(body.len() <= 11);
        assert_eq!(
            out.rejection().unwrap().to_wire(),
            "552 5.3.4 Header size exceeds fixed maximum size\r\n"
        );
        // Without an empty line the whole message is header.
        let (_, _, out) = run(b"A: 1\r\nB: 2\r\n.\r\n", BIG, 11);
        assert!(out.header_too_large);
        // Size wins over header, header over bare LF.
        let (_, _, out) = run(b"A: 1\nB: 2 is long\r\n.\r\n", 5, 3);
        assert!(out.too_large && out.header_too_large && out.bare_lf);
        assert!(out.rejection().unwrap().one_line().contains("Message size"));
        let (_, _, out) = run(b"A: 1\nB: 2 is long\r\n.\r\n", BIG, 3);
        assert!(out.rejection().unwrap().one_line().contains("Header size"));
    }

    #[test]
    fn header_section_lengths() {
        let cases: &[(&[u8], usize)] = &[
            (b"", 0),
            (b"\r\nbody", 0),
            (b"\nbody", 0),
            (b"A: 1\r\n\r\nbody", 6),
            (b"A: 1\r\nB: 2\r\n\r\n", 12),
            (b"A: 1\n\nbody", 5),
            (b"A: 1\r\n \r\nbody", 9 + 4),
            (b"A: 1\r\nB: 2\r\n", 12),
            (b"A: 1", 4),
            (b"A: 1\r\n\r", 6),
            (b"A: 1\r\n\rx", 8),
        ];
        for &(msg, want) in cases {
            assert_eq!(header_section_len(msg), want, "{msg:?}");
        }
        // The streaming reader measures the same way: a header of exactly the
        // limit passes, one byte less of allowance fails.
        for &(msg, _) in cases {
            let mut input = msg.to_vec();
            input.extend_from_slice(b"\r\n.\r\n");
            let (_, body, _) = run(&input, BIG, BIG);
            let len = header_section_len(&body) as u64;
            let (_, _, out) = run(&input, BIG, len);
            assert!(!out.header_too_large, "{msg:?}");
            if len > 0 {
                let (_, _, out) = run(&input, BIG, len - 1);
                assert!(out.header_too_large, "{msg:?}");
            }
        }
    }

    #[test]
    fn nul_bytes_are_refused() {
        for seq in [&b"\r\n\x00.\r\n"[..], b"\r\n.\x00\r\n", b"a\x00b"] {
            let mut input = b"Subject: t\r\n\r\nbefore".to_vec();
            input.extend_from_slice(seq);
            input.extend_from_slice(b"\r\n.\r\n");
            let (consumed, _, out) = run(&input, BIG, BIG);
            assert_eq!(consumed, Some(input.len()), "{seq:?}");
            assert!(out.nul && !out.bare_cr && !out.bare_lf, "{seq:?}");
            assert_eq!(
                out.rejection().unwrap().to_wire(),
                "554 5.6.0 Invalid message content, contains NUL characters\r\n"
            );
        }
    }

    /// BDAT content is judged by the same policy as unstuffed DATA content.
    #[test]
    fn content_check_matches_data_reader() {
        let cases: &[&[u8]] = &[
            b"Subject: x\r\n\r\nhi\r\n",
            b"Subject: x\rX-MS-Exchange-Organization-SCL: -1\r\n\r\nhi\r\n",
            b"Subject: x\r\n\r\nh\ni\r\n",
            b"a\x00\r\n",
            b"a\r\n\r\r\n",
        ];
        for &msg in cases {
            let mut data = msg.to_vec();
            data.extend_from_slice(b".\r\n");
            let (_, _, from_data) = run(&data, BIG, 12);
            let mut check = ContentCheck::new(BIG, 12);
            for piece in msg.chunks(3) {
                check.feed(piece);
            }
            assert_eq!(check.outcome(), from_data, "{msg:?}");
        }
        // A chunked message may end in a CR, which no line end follows.
        let mut check = ContentCheck::new(BIG, BIG);
        check.feed(b"Subject: x\r\n\r\nhi\r");
        assert!(check.outcome().bare_cr);
        check.feed(b"\n");
        assert_eq!(check.outcome().rejection(), None);
    }

    /// Pseudo-random messages over the bytes that matter (dots, CR, LF, NUL, a header's colon),
    /// in random pieces: the run-at-once paths conclude what one byte at a time does.
    #[test]
    fn runs_at_once_match_byte_by_byte() {
        let alphabet = b"ab.:\r\n\0";
        let mut next = super::super::xorshift(0x2545_f491_4f6c_dd1d);
        for _ in 0..3000 {
            let len = (next() % 200) as usize;
            let mut input: Vec<u8> = (0..len)
                .map(|_| alphabet[(next() % alphabet.len() as u64) as usize])
                .collect();
            if next().is_multiple_of(2) {
                input.extend_from_slice(b"\r\n.\r\n");
            }
            let (max, max_hdr) = (next() % 220, next() % 60);

            let mut reference = DataReader::new(max, max_hdr);
            let mut want = Vec::new();
            let mut want_end = None;
            for (i, &b) in input.iter().enumerate() {
                reference.step(b, &mut want);
                if reference.is_done() {
                    want_end = Some(i + 1);
                    break;
                }
            }
            let mut check = ContentCheck::new(max, max_hdr);
            for &b in &input {
                check.byte(b);
            }

            let mut reader = DataReader::new(max, max_hdr);
            let mut body = Vec::new();
            let mut fed = 0;
            let mut end = None;
            let mut content = ContentCheck::new(max, max_hdr);
            while fed < input.len() && end.is_none() {
                let piece = 1 + (next() % 40) as usize;
                let piece = &input[fed..(fed + piece).min(input.len())];
                end = reader.feed(piece, &mut body).map(|n| fed + n);
                fed += piece.len();
            }
            for piece in input.chunks(1 + (next() % 30) as usize) {
                content.feed(piece);
            }
            assert_eq!(end, want_end, "{input:?}");
            assert_eq!(body, want, "{input:?}");
            assert_eq!(reader.outcome(), reference.outcome(), "{input:?}");
            assert_eq!(content.outcome(), check.outcome(), "{input:?}");
        }
    }
}
