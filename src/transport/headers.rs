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

/// Header fields, each with its continuation lines, as raw byte ranges of the header section.
pub fn fields(header: &[u8]) -> Vec<&[u8]> {
    let mut out: Vec<&[u8]> = Vec::new();
    let mut start: Option<usize> = None;
    let mut i = 0;
    while i < header.len() {
        let end = header[i..]
            .iter()
            .position(|&b| b == b'\n')
            .map(|p| i + p + 1)
            .unwrap_or(header.len());
        let line = &header[i..end];
        let continuation = matches!(line.first(), Some(b' ') | Some(b'\t'));
        if !continuation {
            if let Some(s) = start {
                out.push(&header[s..i]);
            }
            start = if line == b"\r\n" || line == b"\n" {
                None
            } else {
                Some(i)
            };
        }
        i = end;
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
                .replace("\r\n", "")
                .replace('\n', "")
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
}
