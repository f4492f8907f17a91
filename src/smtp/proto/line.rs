//! Splits the command-phase byte stream into lines, with bounded memory.

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Line {
    /// One line without its CRLF or bare LF.
    Complete(Vec<u8>),
    /// A line longer than the limit; its bytes were dropped.
    TooLong,
}

#[derive(Debug)]
pub struct LineReader {
    buf: Vec<u8>,
    /// Bytes of `buf` before this offset were already handed out; they are
    /// dropped on the next push rather than shifted after every line.
    start: usize,
    /// How far past `start` we already know there is no LF, so that a line
    /// arriving in many small pieces is not rescanned from its beginning.
    scanned: usize,
    max_len: usize,
    /// Inside an overlong line whose LF has not arrived yet; `buf` is empty.
    discarding: bool,
    /// That overlong line has ended and must be reported before anything else.
    too_long_pending: bool,
}

impl LineReader {
    /// `max_len` is the longest accepted line counting its line ending, like
    /// RFC 5321's 512-octet command limit.
    pub fn new(max_len: usize) -> Self {
        LineReader {
            buf: Vec::new(),
            start: 0,
            scanned: 0,
            max_len: max_len.max(1),
            discarding: false,
            too_long_pending: false,
        }
    }

    pub fn push(&mut self, mut bytes: &[u8]) {
        if self.discarding {
            match bytes.iter().position(|&b| b == b'\n') {
                None => return,
                Some(lf) => {
                    self.discarding = false;
                    self.too_long_pending = true;
                    bytes = &bytes[lf + 1..];
                }
            }
        }
        if self.start > 0 {
            self.buf.drain(..self.start);
            self.scanned -= self.start;
            self.start = 0;
        }
        self.buf.extend_from_slice(bytes);
        // Lines before the overlong one stay queued; only a buffer holding
        // nothing but an unterminated overlong line can be dropped right away.
        if self.buf.len() >= self.max_len && !self.buf.contains(&b'\n') {
            self.start_discarding();
        }
    }

    fn start_discarding(&mut self) {
        self.buf.clear();
        self.buf.shrink_to(self.max_len);
        self.start = 0;
        self.scanned = 0;
        self.discarding = true;
    }

    pub fn next_line(&mut self) -> Option<Line> {
        if self.too_long_pending {
            self.too_long_pending = false;
            return Some(Line::TooLong);
        }
        let pending = &self.buf[self.scanned..];
        let Some(lf) = pending.iter().position(|&b| b == b'\n') else {
            self.scanned = self.buf.len();
            if self.buf.len() - self.start >= self.max_len {
                self.start_discarding();
            }
            return None;
        };
        let end = self.scanned + lf;
        let line_start = self.start;
        self.start = end + 1;
        self.scanned = self.start;
        if end + 1 - line_start > self.max_len {
            return Some(Line::TooLong);
        }
        let content_end = if end > line_start && self.buf[end - 1] == b'\r' {
            end - 1
        } else {
            end
        };
        Some(Line::Complete(self.buf[line_start..content_end].to_vec()))
    }

    /// Hands over everything not yet returned as a line, e.g. message bytes
    /// pipelined behind BDAT, or bytes a client sent right after STARTTLS
    /// that must be thrown away rather than trusted inside the TLS session.
    pub fn take_buffered(&mut self) -> Vec<u8> {
        let rest = self.buf.split_off(self.start);
        self.buf.clear();
        self.start = 0;
        self.scanned = 0;
        self.discarding = false;
        self.too_long_pending = false;
        rest
    }

    pub fn has_buffered(&self) -> bool {
        self.start < self.buf.len() || self.discarding || self.too_long_pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn complete(s: &str) -> Line {
        Line::Complete(s.as_bytes().to_vec())
    }

    fn drain(r: &mut LineReader) -> Vec<Line> {
        std::iter::from_fn(|| r.next_line()).collect()
    }

    /// Feeds `input` in pieces of `chunk` bytes, draining after every push as
    /// the server does, and checks the memory bound along the way.
    fn run(max: usize, input: &[u8], chunk: usize) -> Vec<Line> {
        let mut r = LineReader::new(max);
        let mut out = Vec::new();
        for piece in input.chunks(chunk) {
            r.push(piece);
            assert!(
                r.buf.len() - r.start <= max + piece.len(),
                "buffer {} > {} + {}",
                r.buf.len() - r.start,
                max,
                piece.len()
            );
            assert!(r.buf.len() <= max + piece.len());
            out.extend(drain(&mut r));
            assert!(r.buf.len() - r.start < max);
        }
        out
    }

    #[test]
    fn splits_lines() {
        let long = "x".repeat(30);
        let exact = "y".repeat(14); // 14 + CRLF = 16 = max
        let input = format!(
            "EHLO a\r\nNOOP\nRSET\r\n\r\n{long}\r\nQUIT\r\n{exact}\r\nbare\rcr\n{long}\nlast"
        );
        let want = vec![
            complete("EHLO a"),
            complete("NOOP"),
            complete("RSET"),
            complete(""),
            Line::TooLong,
            complete("QUIT"),
            complete(&exact),
            complete("bare\rcr"),
            Line::TooLong,
        ];
        for chunk in [1, 2, 3, 7, 16, 17, 1000] {
            assert_eq!(run(16, input.as_bytes(), chunk), want, "chunk {chunk}");
        }
    }

    #[test]
    fn length_limit_counts_line_ending() {
        for (line, too_long) in [
            ("aaaaaaa\r\n", true), // 9 bytes
            ("aaaaaa\r\n", false), // 8
            ("aaaaaaa\n", false),  // 8
            ("aaaaaaaa\n", true),  // 9
        ] {
            let got = run(8, line.as_bytes(), 1);
            assert_eq!(got.len(), 1);
            assert_eq!(got[0] == Line::TooLong, too_long, "{line:?}");
        }
    }

    #[test]
    fn overlong_line_is_bounded_and_reported_once() {
        let mut r = LineReader::new(512);
        let junk = vec![b'A'; 4096];
        for _ in 0..1000 {
            r.push(&junk);
            assert!(r.buf.len() <= 512 + junk.len());
            assert_eq!(r.next_line(), None);
            assert!(r.buf.capacity() <= 512 + 2 * junk.len());
        }
        assert!(r.has_buffered());
        r.push(b"AAAA\r\nQUIT\r\n");
        assert_eq!(drain(&mut r), vec![Line::TooLong, complete("QUIT")]);
        assert!(!r.has_buffered());
    }

    #[test]
    fn lines_before_an_overlong_line_survive() {
        let mut r = LineReader::new(10);
        let mut input = b"NOOP\r\n".to_vec();
        input.extend(vec![b'z'; 50]);
        r.push(&input);
        assert_eq!(r.next_line(), Some(complete("NOOP")));
        assert_eq!(r.next_line(), None);
        assert!(r.buf.is_empty());
        r.push(b"zz\nRSET\n");
        assert_eq!(drain(&mut r), vec![Line::TooLong, complete("RSET")]);
    }

    #[test]
    fn take_buffered_returns_unconsumed_bytes() {
        let mut r = LineReader::new(512);
        r.push(b"BDAT 5 LAST\r\nhello");
        assert_eq!(r.next_line(), Some(complete("BDAT 5 LAST")));
        assert!(r.has_buffered());
        assert_eq!(r.take_buffered(), b"hello");
        assert!(!r.has_buffered());
        assert_eq!(r.next_line(), None);

        // A whole BDAT chunk with no LF may exceed the limit: it must still be
        // there for take_buffered when it came in the same read.
        let mut big = b"BDAT 2000 LAST\r\n".to_vec();
        big.extend(vec![b'm'; 2000]);
        r.push(&big);
        assert_eq!(r.next_line(), Some(complete("BDAT 2000 LAST")));
        assert_eq!(r.take_buffered().len(), 2000);

        r.push(b"STARTTLS\r\nMAIL FROM:<x@y.z>\r\n");
        assert_eq!(r.next_line(), Some(complete("STARTTLS")));
        assert!(r.has_buffered());
        r.take_buffered();
        assert!(!r.has_buffered());
        r.push(b"EHLO again\r\n");
        assert_eq!(r.next_line(), Some(complete("EHLO again")));
    }
}
