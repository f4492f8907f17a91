//! The Connection Filtering agent's IP Block List providers (DNSBLs), as a session applies them.
//!
//! The look-ups start once per session, when the first transaction opens (after AUTH, so a
//! session the providers leave alone, by InternalMailEnabled or a bypass, costs no query), one A query per enabled provider, all at once, each
//! bounded by QUERY_TIMEOUT; RCPT waits only for what is left of that bound. The verdict is the
//! first listing in Priority order. A provider that times out or fails does not refuse anyone
//! (it fails open) and is logged. As in Exchange the refusal comes at RCPT, after the IP Allow
//! List (which bypasses it) and the IP Block List (which refuses first), and a recipient in
//! BypassedRecipients is not refused.
//!
//! Answers are cached by the resolver the gateway keeps (positive and negative, each for its TTL,
//! at most CACHE_SIZE entries), so a busy source costs one query per provider per TTL.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use hickory_resolver::TokioResolver;
use hickory_resolver::config::ResolveHosts;
use hickory_resolver::net::{DnsError, NetError};
use hickory_resolver::proto::rr::{Name, RData, RecordType};
use tokio::task::JoinHandle;

use super::Gateway;
use super::agent_log::AgentDecision;
use super::connection_filter::AGENT;
use super::session::Session;
use crate::org::Org;
use crate::org::ip_block_list::{IpBlockListProvider, query_name};
use crate::smtp::client::Resolver;
use crate::smtp::proto::Reply;

/// How long one provider may take to answer.
pub const QUERY_TIMEOUT: Duration = Duration::from_secs(2);

/// The resolver's cache bound (names, positive and negative).
const CACHE_SIZE: u64 = 10_000;

/// The A records of one answer a verdict keeps.
const MAX_ANSWERS: usize = 16;

/// What every session shares: the resolver, and with it the answers' cache. It is rebuilt
/// (and its cache dropped) only when ExternalDNSServers changes.
#[derive(Default)]
pub struct Dnsbl {
    resolver: Mutex<Option<(Vec<String>, TokioResolver)>>,
}

impl Dnsbl {
    /// The TransportServer's ExternalDNSServers, or the system's when there are none, as every
    /// resolver of the gateway is set up (`Resolver::configured`), with this agent's own bound
    /// per query, one attempt and a larger cache.
    fn resolver(&self, servers: &[String]) -> Result<TokioResolver, String> {
        let mut held = self.resolver.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((key, r)) = held.as_ref()
            && key.as_slice() == servers
        {
            return Ok(r.clone());
        }
        let r = Resolver::configured(servers, |opts| {
            opts.timeout = QUERY_TIMEOUT;
            opts.attempts = 1;
            opts.cache_size = CACHE_SIZE;
            opts.use_hosts_file = ResolveHosts::Never;
        })
        .map_err(|e| e.to_string())?
        .hickory()
        .clone();
        *held = Some((servers.to_vec(), r.clone()));
        Ok(r)
    }
}

/// A provider that listed the source.
#[derive(Clone, Debug)]
pub struct Hit {
    pub provider: IpBlockListProvider,
    pub answers: Vec<Ipv4Addr>,
}

/// The providers' verdict on one source.
#[derive(Clone, Debug, Default)]
pub struct Verdict {
    pub hit: Option<Hit>,
    /// Providers that did not answer in time or failed: (name, why), not applied.
    pub failures: Vec<(String, String)>,
}

/// A session's look-up: running, or its verdict (logged once).
pub enum State {
    Pending(JoinHandle<Verdict>, Instant),
    Done(Verdict),
}

/// One provider's A records for `ip`: empty when the source is not listed.
async fn ask(
    resolver: &TokioResolver,
    ip: IpAddr,
    p: &IpBlockListProvider,
) -> Result<Vec<Ipv4Addr>, String> {
    let name = Name::from_ascii(format!("{}.", query_name(ip, &p.lookup_domain)))
        .map_err(|e| format!("bad query name: {e}"))?;
    match tokio::time::timeout(QUERY_TIMEOUT, resolver.lookup(name, RecordType::A)).await {
        Err(_) => Err(format!("no answer within {} s", QUERY_TIMEOUT.as_secs())),
        Ok(Ok(lookup)) => Ok(lookup
            .answers()
            .iter()
            .filter_map(|r| match &r.data {
                RData::A(a) => Some(a.0),
                _ => None,
            })
            // A list answers with one or a few codes; a hostile zone's hundreds are not kept.
            .take(MAX_ANSWERS)
            .collect()),
        // NXDOMAIN (or no A record): not listed, and cached for the zone's negative TTL.
        Ok(Err(NetError::Dns(DnsError::NoRecordsFound(_)))) => Ok(vec![]),
        Ok(Err(e)) => Err(e.to_string()),
    }
}

/// Starts the look-ups of `ip` with the enabled providers; None when there is nothing to ask.
fn start(gw: &Gateway, org: &Org, ip: IpAddr) -> Option<JoinHandle<Verdict>> {
    let providers: Vec<IpBlockListProvider> = org
        .ip_block_lists
        .providers
        .iter()
        .filter(|p| p.enabled)
        .cloned()
        .collect();
    if providers.is_empty() {
        return None;
    }
    let resolver = match gw.dnsbl.resolver(&org.server.external_dns_servers) {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!("IP Block List providers not asked: {e}");
            return None;
        }
    };
    Some(tokio::spawn(async move {
        let answers =
            futures_util::future::join_all(providers.iter().map(|p| ask(&resolver, ip, p))).await;
        let mut verdict = Verdict::default();
        // Providers are in Priority order: the first listing decides.
        for (p, answer) in providers.into_iter().zip(answers) {
            match answer {
                Ok(a) if verdict.hit.is_none() && p.matches(&a) => {
                    verdict.hit = Some(Hit {
                        provider: p,
                        answers: a,
                    })
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(
                        "IP Block List provider '{}' ({}) failed for {ip}: {e}; not applied",
                        p.name,
                        p.lookup_domain
                    );
                    verdict.failures.push((p.name, e));
                }
            }
        }
        verdict
    }))
}

impl Session {
    /// Starts this session's look-ups, once, unless the providers leave it alone.
    pub fn dnsbl_start(&mut self) {
        if self.dnsbl.is_some()
            || !self.agent_applies(self.org.ip_block_lists.providers_config.scope())
        {
            return;
        }
        // The IP Block List refuses this source first: no need to ask anyone.
        if matches!(
            self.ip_listed(time::OffsetDateTime::now_utc()),
            crate::org::ip_list::Listed::Blocked(_)
        ) && self.agent_applies(self.org.ip_block_lists.config.scope())
        {
            self.dnsbl = Some(State::Done(Verdict::default()));
            return;
        }
        self.dnsbl = Some(match start(&self.gw, &self.org, self.remote.ip()) {
            Some(h) => State::Pending(h, Instant::now() + QUERY_TIMEOUT),
            None => State::Done(Verdict::default()),
        });
    }

    /// The verdict, waiting at most for what is left of the look-ups' bound; failures are
    /// written to the protocol log when it arrives.
    async fn dnsbl_verdict(&mut self) -> Verdict {
        if self.dnsbl.is_none() {
            self.dnsbl_start();
        }
        let verdict = match self.dnsbl.take() {
            Some(State::Done(v)) => v,
            Some(State::Pending(mut h, deadline)) => {
                // A little past the per-query bound, for a loaded scheduler; the task itself
                // ends by then, and is stopped if it has not.
                let left =
                    deadline.saturating_duration_since(Instant::now()) + Duration::from_millis(500);
                let v = match tokio::time::timeout(left, &mut h).await {
                    Ok(Ok(v)) => v,
                    Ok(Err(e)) => Verdict {
                        hit: None,
                        failures: vec![("*".into(), format!("look-up task failed: {e}"))],
                    },
                    Err(_) => {
                        h.abort();
                        Verdict {
                            hit: None,
                            failures: vec![("*".into(), "no verdict in time".into())],
                        }
                    }
                };
                for (name, why) in &v.failures {
                    self.log_event(
                        '*',
                        &format!("IP Block List provider '{name}' failed: {why}; not applied"),
                        AGENT,
                    );
                }
                v
            }
            None => Verdict::default(),
        };
        self.dnsbl = Some(State::Done(verdict.clone()));
        verdict
    }

    /// The refusal for a RCPT from a source a provider lists, logged to the protocol and
    /// tracking logs; None when the source may go on.
    pub async fn dnsbl_filter(&mut self, to: &str) -> Option<Reply> {
        let config = &self.org.ip_block_lists.providers_config;
        if !self.agent_applies(config.scope()) || config.bypasses(to) {
            return None;
        }
        let hit = self.dnsbl_verdict().await.hit?;
        let ip = self.remote.ip();
        let p = &hit.provider;
        let reply = Reply::new(550, "5.7.1", p.rejection());
        let answers: Vec<String> = hit.answers.iter().map(|a| a.to_string()).collect();
        let reason = format!(
            "Rejected by IP Block List provider '{}' ({} answered {}): {ip}",
            p.name,
            p.lookup_domain,
            answers.join(",")
        );
        self.record_agent_decision(
            &reason,
            None,
            &AgentDecision {
                agent: AGENT,
                event_id: "FAIL",
                reply: &reply,
                reason: Some(&reason),
                recipients: &[to],
            },
        );
        Some(reply)
    }
}
