//! AUTH failure throttling shared by every session of the process.
//!
//! Failures are counted per source address and per (account, source) pair, across connections:
//! past a threshold each attempt is delayed, further on the key is refused for a lockout that
//! grows with every failure after it. An account is never locked for every source, since anyone
//! on the Internet could then lock a partner out and stop the mail between two organisations.
//!
//! The number of argon2 verifications running at once is bounded as well: each one costs about
//! 19 MiB, so an AUTH flood must queue (briefly) instead of exhausting memory.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// When to slow down and when to refuse one kind of key.
#[derive(Clone, Copy, Debug)]
pub struct Thresholds {
    /// Failures answered at once; the next attempt waits `first_delay`, doubling from there.
    pub slow_after: u32,
    /// Failures after which the key is refused for `first_lockout`, doubling with each further one.
    pub refuse_after: u32,
}

#[derive(Clone, Debug)]
pub struct Policy {
    pub source: Thresholds,
    pub pair: Thresholds,
    pub first_delay: Duration,
    pub max_delay: Duration,
    pub first_lockout: Duration,
    pub max_lockout: Duration,
    /// A key without a failure for this long starts again from nothing.
    pub forget_after: Duration,
    /// Entries per map; a flood from many addresses or names cannot grow them further.
    pub max_entries: usize,
    /// argon2 verifications running at once.
    pub max_verifications: usize,
    /// AUTH attempts of one source checked at once: the rest wait their turn, so that the
    /// failure counts see every earlier outcome and parallel connections cannot guess ahead.
    pub per_source_attempts: usize,
    /// How long an attempt waits for a verification slot before a temporary failure.
    pub verification_wait: Duration,
}

impl Default for Policy {
    fn default() -> Policy {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        Policy {
            // A source may mistype a few accounts; guessing through many is what this stops.
            source: Thresholds {
                slow_after: 5,
                refuse_after: 10,
            },
            // One account from one source: a misconfigured partner fails the same way every
            // time, so a handful of tries tells all there is to know.
            pair: Thresholds {
                slow_after: 3,
                refuse_after: 6,
            },
            first_delay: Duration::from_millis(250),
            max_delay: Duration::from_secs(10),
            first_lockout: Duration::from_secs(60),
            max_lockout: Duration::from_secs(3600),
            forget_after: Duration::from_secs(2 * 3600),
            max_entries: 16_384,
            max_verifications: cores.clamp(2, 16),
            per_source_attempts: 2,
            verification_wait: Duration::from_secs(10),
        }
    }
}

/// What an AUTH attempt may do before its password is looked at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Proceed,
    /// Wait this long, then verify.
    Delay(Duration),
    /// Refused without verifying, for at least this long.
    Refuse(Duration),
}

/// The source as counted: IPv4 addresses one by one, IPv6 by /64, since one host commonly
/// holds a whole /64 and could otherwise start afresh with every address.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SourceKey(IpAddr);

impl SourceKey {
    pub fn of(ip: IpAddr) -> SourceKey {
        match ip {
            IpAddr::V4(_) => SourceKey(ip),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => SourceKey(IpAddr::V4(v4)),
                None => {
                    let bits = u128::from(v6) & !((1u128 << 64) - 1);
                    SourceKey(IpAddr::V6(bits.into()))
                }
            },
        }
    }
}

/// Account names are compared case-insensitively, as `Account::find` does; a client may send a
/// name of several KB, which is cut, since only the key's identity matters here.
fn account_key(name: &str) -> String {
    let lower = name.to_lowercase();
    match lower.char_indices().nth(256) {
        Some((end, _)) => lower[..end].to_string(),
        None => lower,
    }
}

#[derive(Clone, Copy, Debug)]
struct Entry {
    failures: u32,
    last_failure: Instant,
    locked_until: Option<Instant>,
}

impl Entry {
    fn locked_at(&self, now: Instant) -> bool {
        self.locked_until.is_some_and(|u| u > now)
    }

    /// Long quiet and not locked: the key starts again from nothing.
    fn is_stale(&self, now: Instant, p: &Policy) -> bool {
        !self.locked_at(now) && now.saturating_duration_since(self.last_failure) > p.forget_after
    }
}

struct Table<K> {
    entries: HashMap<K, Entry>,
}

impl<K: Eq + Hash + Clone> Table<K> {
    fn new() -> Table<K> {
        Table {
            entries: HashMap::new(),
        }
    }

    fn current(&mut self, key: &K, now: Instant, p: &Policy) -> Option<Entry> {
        let e = *self.entries.get(key)?;
        if e.is_stale(now, p) {
            self.entries.remove(key);
            return None;
        }
        Some(e)
    }

    fn verdict(&mut self, key: &K, now: Instant, p: &Policy, t: Thresholds) -> Verdict {
        let Some(e) = self.current(key, now, p) else {
            return Verdict::Proceed;
        };
        if let Some(until) = e.locked_until
            && until > now
        {
            return Verdict::Refuse(until - now);
        }
        if e.failures >= t.slow_after {
            let steps = e.failures - t.slow_after;
            return Verdict::Delay(doubled(p.first_delay, steps, p.max_delay));
        }
        Verdict::Proceed
    }

    fn fail(&mut self, key: K, now: Instant, p: &Policy, t: Thresholds) {
        if !self.entries.contains_key(&key) {
            self.make_room(now, p);
        }
        let e = self.entries.entry(key).or_insert(Entry {
            failures: 0,
            last_failure: now,
            locked_until: None,
        });
        if e.is_stale(now, p) {
            e.failures = 0;
            e.locked_until = None;
        }
        e.failures = e.failures.saturating_add(1);
        e.last_failure = now;
        if e.failures >= t.refuse_after {
            let steps = e.failures - t.refuse_after;
            e.locked_until = Some(now + doubled(p.first_lockout, steps, p.max_lockout));
        }
    }

    /// Keeps the table under `max_entries`: forgotten entries go first, then the quietest.
    fn make_room(&mut self, now: Instant, p: &Policy) {
        if self.entries.len() < p.max_entries {
            return;
        }
        self.entries.retain(|_, e| !e.is_stale(now, p));
        while self.entries.len() >= p.max_entries.max(1) {
            let oldest = self
                .entries
                .iter()
                .min_by_key(|(_, e)| (e.locked_at(now), e.last_failure))
                .map(|(k, _)| k.clone());
            match oldest {
                Some(k) => {
                    self.entries.remove(&k);
                }
                None => break,
            }
        }
    }
}

/// `first * 2^steps`, at most `max`, without overflowing for any `steps`.
fn doubled(first: Duration, steps: u32, max: Duration) -> Duration {
    let factor = 1u32.checked_shl(steps.min(31)).unwrap_or(u32::MAX);
    first.checked_mul(factor).unwrap_or(max).min(max)
}

struct State {
    sources: Table<SourceKey>,
    pairs: Table<(String, SourceKey)>,
    /// Sources with an attempt under way; an entry lives only while someone holds or awaits it.
    turns: HashMap<SourceKey, Arc<Semaphore>>,
}

/// A source's turn to have an AUTH attempt checked; gives it back when dropped.
pub struct SourceTurn {
    throttle: AuthThrottle,
    source: SourceKey,
    turns: Arc<Semaphore>,
    permit: Option<OwnedSemaphorePermit>,
}

impl Drop for SourceTurn {
    fn drop(&mut self) {
        let mut st = self.throttle.lock();
        self.permit.take();
        // Every holder and waiter has a clone, taken under this lock: two left means only the
        // map's and ours, so nobody else needs the entry.
        if Arc::strong_count(&self.turns) == 2 {
            st.turns.remove(&self.source);
        }
    }
}

/// Shared by all sessions (cheap to clone).
#[derive(Clone)]
pub struct AuthThrottle {
    policy: Arc<Policy>,
    state: Arc<Mutex<State>>,
    verifications: Arc<Semaphore>,
}

impl Default for AuthThrottle {
    fn default() -> AuthThrottle {
        AuthThrottle::new(Policy::default())
    }
}

impl std::fmt::Debug for AuthThrottle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthThrottle")
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

impl AuthThrottle {
    pub fn new(policy: Policy) -> AuthThrottle {
        let permits = policy.max_verifications.max(1);
        AuthThrottle {
            policy: Arc::new(policy),
            state: Arc::new(Mutex::new(State {
                sources: Table::new(),
                pairs: Table::new(),
                turns: HashMap::new(),
            })),
            verifications: Arc::new(Semaphore::new(permits)),
        }
    }

    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Asked before the password is verified; the stricter of the source's and the pair's
    /// verdicts wins.
    pub fn check(&self, source: IpAddr, account: &str) -> Verdict {
        self.check_at(source, account, Instant::now())
    }

    pub fn check_at(&self, source: IpAddr, account: &str, now: Instant) -> Verdict {
        let p = &*self.policy;
        let src = SourceKey::of(source);
        let mut st = self.lock();
        let a = st.sources.verdict(&src, now, p, p.source);
        let b = st
            .pairs
            .verdict(&(account_key(account), src), now, p, p.pair);
        stricter(a, b)
    }

    pub fn failed(&self, source: IpAddr, account: &str) {
        self.failed_at(source, account, Instant::now());
    }

    pub fn failed_at(&self, source: IpAddr, account: &str, now: Instant) {
        let p = &*self.policy;
        let src = SourceKey::of(source);
        let mut st = self.lock();
        st.sources.fail(src, now, p, p.source);
        st.pairs.fail((account_key(account), src), now, p, p.pair);
    }

    /// Clears the pair only: a source that owns one good account must not be able to wipe its
    /// guesses at the others by logging on in between.
    pub fn succeeded(&self, source: IpAddr, account: &str) {
        let src = SourceKey::of(source);
        self.lock()
            .pairs
            .entries
            .remove(&(account_key(account), src));
    }

    /// Entries held, (sources, pairs, sources with an attempt under way).
    pub fn len(&self) -> (usize, usize, usize) {
        let st = self.lock();
        (
            st.sources.entries.len(),
            st.pairs.entries.len(),
            st.turns.len(),
        )
    }

    pub fn is_empty(&self) -> bool {
        self.len() == (0, 0, 0)
    }

    /// Waits (at most `verification_wait`) until fewer than `per_source_attempts` attempts of
    /// this source are under way; `None` means a temporary failure.
    pub async fn source_turn(&self, source: IpAddr) -> Option<SourceTurn> {
        let key = SourceKey::of(source);
        let turns = {
            let mut st = self.lock();
            let per_source = self.policy.per_source_attempts.max(1);
            st.turns
                .entry(key)
                .or_insert_with(|| Arc::new(Semaphore::new(per_source)))
                .clone()
        };
        let mut turn = SourceTurn {
            throttle: self.clone(),
            source: key,
            turns: turns.clone(),
            permit: None,
        };
        let wait = self.policy.verification_wait;
        match tokio::time::timeout(wait, turns.acquire_owned()).await {
            Ok(Ok(permit)) => {
                turn.permit = Some(permit);
                Some(turn)
            }
            _ => None,
        }
    }

    /// A slot to run one argon2 verification in; `None` when none came free within
    /// `verification_wait` (the caller answers with a temporary failure).
    pub async fn verification_slot(&self) -> Option<OwnedSemaphorePermit> {
        let wait = self.policy.verification_wait;
        match tokio::time::timeout(wait, self.verifications.clone().acquire_owned()).await {
            Ok(Ok(permit)) => Some(permit),
            _ => None,
        }
    }
}

fn stricter(a: Verdict, b: Verdict) -> Verdict {
    use Verdict::*;
    match (a, b) {
        (Refuse(x), Refuse(y)) => Refuse(x.max(y)),
        (Refuse(x), _) | (_, Refuse(x)) => Refuse(x),
        (Delay(x), Delay(y)) => Delay(x.max(y)),
        (Delay(x), _) | (_, Delay(x)) => Delay(x),
        (Proceed, Proceed) => Proceed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn delays_double_and_stay_bounded() {
        let s = Duration::from_secs(1);
        assert_eq!(doubled(s, 0, Duration::from_secs(60)), s);
        assert_eq!(doubled(s, 3, Duration::from_secs(60)), 8 * s);
        assert_eq!(
            doubled(s, u32::MAX, Duration::from_secs(60)),
            Duration::from_secs(60)
        );
    }

    #[test]
    fn ipv6_sources_count_by_64() {
        assert_eq!(
            SourceKey::of(ip("2001:db8:1:2::5")),
            SourceKey::of(ip("2001:db8:1:2:ffff::1"))
        );
        assert_ne!(
            SourceKey::of(ip("2001:db8:1:2::5")),
            SourceKey::of(ip("2001:db8:1:3::5"))
        );
        assert_eq!(
            SourceKey::of(ip("::ffff:192.0.2.1")),
            SourceKey::of(ip("192.0.2.1"))
        );
    }
}
