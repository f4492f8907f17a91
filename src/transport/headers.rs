//! Header work at the end of DATA: hop counting, the header firewall, the Received header.

/// Splits a message into (header section incl. the blank line, body).
pub fn split(msg: &[u8]) -> (&[u8], &[u8]) {
    if msg.starts_with(b"\r\n") {
        return (&msg[..2], &msg[2..]);
    }
    match msg.windows(4).position(|w| w == b"\r\n\r\n") {
        Some(i) => msg.split_at(i + 4),
        None => (msg, &[]),
    }
}

/// Byte ranges of the lines of `header`, each with its line end. A line ends at CRLF, at a lone
/// CR or at a lone LF: whichever of those a next hop treats as a line end, a field it reads is a
/// field here, so `X-A: 1\rX-MS-Exchange-Organization-...` cannot pass the firewall as one field.
fn lines(header: &[u8]) -> impl Iterator<Item = (usize, usize)> + '_ {
    let mut i = 0;
    std::iter::from_fn(move || {
        if i >= header.len() {
            return None;
        }
        let start = i;
        let end = match header[i..].iter().position(|&b| b == b'\r' || b == b'\n') {
            None => header.len(),
            Some(p) if header[i + p] == b'\r' && header.get(i + p + 1) == Some(&b'\n') => i + p + 2,
            Some(p) => i + p + 1,
        };
        i = end;
        Some((start, end))
    })
}

/// Header fields, each with its continuation lines, as raw byte ranges of the header section.
pub fn fields(header: &[u8]) -> Vec<&[u8]> {
    let mut out: Vec<&[u8]> = Vec::new();
    let mut start: Option<usize> = None;
    for (i, end) in lines(header) {
        let line = &header[i..end];
        let continuation = matches!(line.first(), Some(b' ') | Some(b'\t'));
        if !continuation {
            if let Some(s) = start {
                out.push(&header[s..i]);
            }
            let empty = line.iter().all(|&b| b == b'\r' || b == b'\n');
            start = if empty { None } else { Some(i) };
        }
    }
    if let Some(s) = start {
        out.push(&header[s..]);
    }
    out
}

pub fn field_name(field: &[u8]) -> &[u8] {
    let end = field.iter().position(|&b| b == b':').unwrap_or(0);
    &field[..end]
}

fn name_is(field: &[u8], name: &str) -> bool {
    field_name(field).eq_ignore_ascii_case(name.as_bytes())
}

fn name_starts(field: &[u8], prefix: &str) -> bool {
    let n = field_name(field);
    n.len() >= prefix.len() && n[..prefix.len()].eq_ignore_ascii_case(prefix.as_bytes())
}

/// The unfolded value of the first field called `name`.
pub fn value(header: &[u8], name: &str) -> Option<String> {
    fields(header)
        .into_iter()
        .find(|f| name_is(f, name))
        .map(|f| {
            let raw = &f[field_name(f).len() + 1..];
            String::from_utf8_lossy(raw)
                .replace(['\r', '\n'], "")
                .trim()
                .to_string()
        })
}

/// Number of Received headers: Exchange's hop count.
pub fn hop_count(header: &[u8]) -> usize {
    fields(header)
        .iter()
        .filter(|f| name_is(f, "Received"))
        .count()
}

/// The host a Received field names after `by` (RFC 5321 4.4), lower-cased without a final dot.
fn received_by(field: &[u8]) -> Option<String> {
    let raw = &field[field_name(field).len() + 1..];
    let text = String::from_utf8_lossy(raw).replace(['\r', '\n'], " ");
    let clauses = text.split(';').next().unwrap_or_default();
    // Comments such as `(helo by x)` are not clauses.
    let mut depth = 0usize;
    let mut words = clauses.split_ascii_whitespace().filter(|w| {
        let outside = depth == 0 && !w.starts_with('(');
        for c in w.chars() {
            match c {
                '(' => depth = depth.saturating_add(1),
                ')' => depth = depth.saturating_sub(1),
                _ => {}
            }
        }
        outside
    });
    words.find(|w| w.eq_ignore_ascii_case("by"))?;
    let host = words.next()?;
    Some(host.trim_end_matches('.').to_ascii_lowercase())
}

/// Number of Received fields added by this organisation's own servers: those whose `by` host
/// `is_local` says belongs to the organisation. This is the count MaxLocalHopCount limits.
pub fn local_hop_count(header: &[u8], is_local: impl Fn(&str) -> bool) -> usize {
    fields(header)
        .iter()
        .filter(|f| name_is(f, "Received"))
        .filter_map(|f| received_by(f))
        .filter(|host| is_local(host))
        .count()
}

/// Which header groups the session's rights let through (ms-Exch-Accept-Headers-*).
pub struct Firewall {
    pub routing: bool,
    pub organization: bool,
    pub forest: bool,
}

/// Rebuilds the header section without the fields the session may not bring in.
pub fn apply_firewall(header: &[u8], fw: &Firewall) -> Vec<u8> {
    let mut out = Vec::with_capacity(header.len());
    for f in fields(header) {
        let drop = (!fw.routing && (name_is(f, "Received") || name_starts(f, "Resent-")))
            || (!fw.organization && name_starts(f, "X-MS-Exchange-Organization-"))
            || (!fw.forest && name_starts(f, "X-MS-Exchange-Forest-"));
        if !drop {
            out.extend_from_slice(f);
        }
    }
    if header.ends_with(b"\r\n\r\n") || header == b"\r\n" {
        out.extend_from_slice(b"\r\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const MSG: &[u8] = b"Received: from a\r\n by b\r\nReceived: from c\r\nSubject: hi\r\n there\r\nX-MS-Exchange-Organization-SCL: -1\r\n\r\nbody\r\n";

    #[test]
    fn counts_and_reads_fields() {
        let (h, b) = split(MSG);
        assert_eq!(b, b"body\r\n");
        assert_eq!(hop_count(h), 2);
        assert_eq!(value(h, "subject").unwrap(), "hi there");
        assert_eq!(fields(h).len(), 4);
    }

    #[test]
    fn firewall_strips_what_rights_do_not_allow() {
        let (h, _) = split(MSG);
        let out = apply_firewall(
            h,
            &Firewall {
                routing: false,
                organization: false,
                forest: false,
            },
        );
        assert_eq!(out, b"Subject: hi\r\n there\r\n\r\n");
        let kept = apply_firewall(
            h,
            &Firewall {
                routing: true,
                organization: true,
                forest: true,
            },
        );
        assert_eq!(kept, h);
    }

    #[test]
    fn message_without_body_separator() {
        let (h, b) = split(b"Subject: x\r\n");
        assert_eq!(h, b"Subject: x\r\n");
        assert!(b.is_empty());
        assert_eq!(hop_count(b"\r\n"), 0);
    }

    #[test]
    fn a_bare_cr_ends_a_field_as_the_next_hop_reads_it() {
        let h = b"Subject: hi\rX-MS-Exchange-Organization-SCL: -1\r\nX-A: 1\nX-MS-Exchange-Forest-B: 2\r\n\r\n";
        assert_eq!(fields(h).len(), 4);
        let out = apply_firewall(
            h,
            &Firewall {
                routing: false,
                organization: false,
                forest: false,
            },
        );
        assert_eq!(out, b"Subject: hi\rX-A: 1\n\r\n");
        assert_eq!(value(h, "Subject").unwrap(), "hi");
        // A continuation after a lone CR still belongs to its field.
        assert_eq!(fields(b"A: 1\r 2\r\nB: 3\r\n").len(), 2);
    }

    #[test]
    fn local_hops_are_received_fields_by_our_servers() {
        let h = b"Received: from x ([1.2.3.4]) by HUB1.contoso.test. ([10.0.0.1]) with ESMTP id 1;\r\n Mon, 1 Jan 2024 00:00:00 +0000\r\n\
Received: from (by hub1.contoso.test) mx.fabrikam.test by mx.fabrikam.test with SMTP;\r\n Mon, 1 Jan 2024 00:00:00 +0000\r\n\
Received: by hub2.contoso.test; Mon, 1 Jan 2024 00:00:00 +0000\r\n\
Received: from a\r\n\
X-Other: by hub1.contoso.test\r\n\r\n";
        let ours = |h: &str| h == "hub1.contoso.test" || h == "hub2.contoso.test";
        assert_eq!(local_hop_count(h, ours), 2);
        assert_eq!(hop_count(h), 4);
        assert_eq!(local_hop_count(h, |_| false), 0);
    }
}
