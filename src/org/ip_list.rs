//! The Connection Filtering agent's IP Allow List and IP Block List: entries, the range forms
//! Exchange takes (one address, `a.b.c.d-e.f.g.h`, CIDR; IPv4 or IPv6), and the decision a
//! session asks for, as a pure function of the entries, the source and the time.

use std::net::IpAddr;

use ipnet::IpNet;
use sqlx::PgPool;
use time::OffsetDateTime;

use super::OrgError;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IpList {
    Allow,
    Block,
}

impl IpList {
    pub fn as_str(self) -> &'static str {
        match self {
            IpList::Allow => "Allow",
            IpList::Block => "Block",
        }
    }
}

/// One entry: an inclusive range of one address family.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IpListEntry {
    pub id: i64,
    pub list: IpList,
    /// As Get-IP*ListEntry shows it: the address, `low-high`, or the CIDR as typed (normalised).
    pub ip_range: String,
    pub low: IpAddr,
    pub high: IpAddr,
    /// None: never expires (Exchange shows DateTime.MaxValue).
    pub expiration_time: Option<OffsetDateTime>,
    pub comment: Option<String>,
}

/// The result of looking a source up in both lists.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Listed {
    /// On the IP Allow List (which wins over the block list): the other checks are bypassed.
    Allowed(i64),
    /// On the IP Block List only: refused at RCPT.
    Blocked(i64),
    None,
}

/// The same numbers for both families: IPv4-mapped IPv6 sources compare as IPv4.
fn key(ip: IpAddr) -> (bool, u128) {
    match ip {
        IpAddr::V4(v) => (false, u32::from(v) as u128),
        IpAddr::V6(v) => match v.to_ipv4_mapped() {
            Some(v4) => (false, u32::from(v4) as u128),
            None => (true, u128::from(v)),
        },
    }
}

impl IpListEntry {
    /// An entry whose ExpirationTime has passed is ignored (Exchange's HasExpired).
    pub fn has_expired(&self, now: OffsetDateTime) -> bool {
        self.expiration_time.is_some_and(|t| t <= now)
    }

    pub fn covers(&self, ip: IpAddr) -> bool {
        let (fam, n) = key(ip);
        let (lf, lo) = key(self.low);
        let (_, hi) = key(self.high);
        fam == lf && lo <= n && n <= hi
    }

    pub async fn load_all(pool: &PgPool) -> Result<Vec<IpListEntry>, OrgError> {
        let rows: Vec<Row> = sqlx::query_as(
            "SELECT id, list, ip_range, low, high, expiration_time, comment
             FROM ip_list_entry ORDER BY id",
        )
        .fetch_all(pool)
        .await?;
        rows.into_iter().map(Row::entry).collect()
    }
}

#[derive(sqlx::FromRow)]
pub struct Row {
    pub id: i64,
    pub list: String,
    pub ip_range: String,
    pub low: String,
    pub high: String,
    pub expiration_time: Option<OffsetDateTime>,
    pub comment: Option<String>,
}

impl Row {
    pub fn entry(self) -> Result<IpListEntry, OrgError> {
        let bad = |what: &str| OrgError::Invalid(format!("ip_list_entry {}: bad {what}", self.id));
        Ok(IpListEntry {
            id: self.id,
            list: match self.list.as_str() {
                "Allow" => IpList::Allow,
                "Block" => IpList::Block,
                _ => return Err(bad("list")),
            },
            low: self.low.parse().map_err(|_| bad("low"))?,
            high: self.high.parse().map_err(|_| bad("high"))?,
            ip_range: self.ip_range,
            expiration_time: self.expiration_time,
            comment: self.comment,
        })
    }
}

/// Looks `ip` up in both lists at `now`: an unexpired allow entry wins over any block entry.
pub fn lookup(entries: &[IpListEntry], ip: IpAddr, now: OffsetDateTime) -> Listed {
    let live = |list| {
        entries
            .iter()
            .find(move |e| e.list == list && !e.has_expired(now) && e.covers(ip))
    };
    if let Some(e) = live(IpList::Allow) {
        return Listed::Allowed(e.id);
    }
    if let Some(e) = live(IpList::Block) {
        return Listed::Blocked(e.id);
    }
    Listed::None
}

/// -IPAddress: one address.
pub fn parse_address(s: &str) -> Result<(String, IpAddr, IpAddr), String> {
    let ip: IpAddr = s
        .trim()
        .parse()
        .map_err(|_| format!("\"{s}\" is not a valid IP address."))?;
    Ok((ip.to_string(), ip, ip))
}

/// -IPRange: `a.b.c.d-e.f.g.h` (low first, one family), a CIDR, or one address.
pub fn parse_range(s: &str) -> Result<(String, IpAddr, IpAddr), String> {
    let s = s.trim();
    if let Some((a, b)) = s.split_once('-') {
        let bad = || format!("\"{s}\" is not a valid IP range: expected a.b.c.d-e.f.g.h.");
        let lo: IpAddr = a.trim().parse().map_err(|_| bad())?;
        let hi: IpAddr = b.trim().parse().map_err(|_| bad())?;
        if lo.is_ipv4() != hi.is_ipv4() {
            return Err(format!(
                "The IP range \"{s}\" mixes IPv4 and IPv6 addresses."
            ));
        }
        if key(lo) > key(hi) {
            return Err(format!(
                "The IP range \"{s}\" is reversed: its start address must not be greater than its end address."
            ));
        }
        return Ok((format!("{lo}-{hi}"), lo, hi));
    }
    if s.contains('/') {
        let net: IpNet = s
            .parse()
            .map_err(|_| format!("\"{s}\" is not a valid CIDR range (a.b.c.d/n)."))?;
        // Exchange keeps the address as typed (192.168.0.1/24) and covers the whole network.
        return Ok((s.to_string(), net.network(), net.broadcast()));
    }
    parse_address(s).map_err(|_| format!("\"{s}\" is not a valid IP range."))
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    fn entry(id: i64, list: IpList, range: &str, exp: Option<OffsetDateTime>) -> IpListEntry {
        let (ip_range, low, high) = parse_range(range).unwrap();
        IpListEntry {
            id,
            list,
            ip_range,
            low,
            high,
            expiration_time: exp,
            comment: None,
        }
    }

    #[test]
    fn ranges_parse_and_cover() {
        let e = entry(1, IpList::Block, "127.0.0.0/29", None);
        assert!(e.covers("127.0.0.7".parse().unwrap()));
        assert!(!e.covers("127.0.0.8".parse().unwrap()));
        assert!(e.covers("::ffff:127.0.0.3".parse().unwrap()));
        let r = entry(2, IpList::Block, "10.0.0.5-10.0.1.2", None);
        assert!(r.covers("10.0.0.200".parse().unwrap()));
        assert!(!r.covers("10.0.1.3".parse().unwrap()));
        let v6 = entry(3, IpList::Block, "2001:db8::/32", None);
        assert!(v6.covers("2001:db8:1::1".parse().unwrap()));
        assert!(!v6.covers("10.0.0.1".parse().unwrap()));
        assert!(
            parse_range("10.0.0.9-10.0.0.1")
                .unwrap_err()
                .contains("reversed")
        );
        assert!(parse_range("10.0.0.0/33").is_err());
        assert!(parse_range("10.0.0.1-::1").unwrap_err().contains("mixes"));
        assert!(parse_address("10.0.0.0/8").is_err());
    }

    #[test]
    fn allow_wins_and_expired_entries_are_ignored() {
        let at = datetime!(2026-12-02 14:00 UTC);
        let ip: IpAddr = "127.0.0.5".parse().unwrap();
        let block = entry(1, IpList::Block, "127.0.0.0/24", None);
        let allow = entry(2, IpList::Allow, "127.0.0.5", Some(at));
        let both = [block.clone(), allow];
        // Before the allow entry expires it wins; at its expiration time the block applies.
        assert_eq!(
            lookup(&both, ip, datetime!(2026-12-02 13:59:59 UTC)),
            Listed::Allowed(2)
        );
        assert_eq!(lookup(&both, ip, at), Listed::Blocked(1));
        let temporary = [entry(3, IpList::Block, "127.0.0.5", Some(at))];
        assert_eq!(
            lookup(&temporary, ip, datetime!(2026-12-02 13:00 UTC)),
            Listed::Blocked(3)
        );
        assert_eq!(lookup(&temporary, ip, at), Listed::None);
        assert_eq!(
            lookup(&[block], "127.0.1.5".parse().unwrap(), at),
            Listed::None
        );
    }
}
