//! A remote delivery queue's connection: find the next hop (MX or smart hosts), connect with
//! failover, then send the queue's messages over that one connection until the queue is empty
//! or the connector's SmtpMaxMessagesPerConnection is reached.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::Agents;
use crate::logs::protocol::{LogKind, ProtocolLog};
use crate::org::org_key::{self, KeyError, OrganizationKey};
use crate::org::{Org, SendConnector};
use crate::smtp::client::{
    Client, ClientConfig, ClientError, Credentials, DnsError, OutboundEnvelope, OutboundRecipient,
    Resolver, SendLog, Target, TlsPolicy, TrustStore,
};
use crate::smtp::proto::Reply;
use crate::transport::queue::manager::{
    Attempt, ConnectionFailed, Delivered, Job, Lane, Outcome, Primary, body_lost_reply,
};
use crate::transport::routing::{self, NextHop, Route};
use crate::transport::shadow::{discard, gate};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// What every remote delivery shares: the trust store, the resolvers and the SmtpSend log.
pub struct Context {
    /// Follows `certs/trusted/` while running; each connection takes the roots of its moment.
    trust: TrustStore,
    /// Keyed by the ExternalDNSServers list; the empty key is the system resolver.
    resolvers: Mutex<HashMap<Vec<String>, Arc<Resolver>>>,
    /// One for the process: concurrent sessions must append to the same day's file, not race to
    /// open their own.
    send_log: ProtocolLog,
    /// Opens the smart-host passwords; checked (or made) at start by `org_key::prepare`.
    key: Result<OrganizationKey, KeyError>,
}

impl Context {
    pub fn new(data_dir: &Path) -> Context {
        let key = OrganizationKey::load(Some(data_dir)).and_then(|k| {
            k.ok_or_else(|| KeyError::Missing {
                path: org_key::key_path(data_dir),
            })
        });
        Context {
            trust: TrustStore::load(data_dir),
            resolvers: Mutex::new(HashMap::new()),
            send_log: ProtocolLog::new(data_dir, LogKind::Send),
            key,
        }
    }

    /// The system resolver, or the TransportServer's ExternalDNSServers when the connector
    /// says UseExternalDNSServersEnabled (and some are set).
    fn resolver(&self, external: Option<&[String]>) -> Result<Arc<Resolver>, ClientError> {
        let key: Vec<String> = external.map(|s| s.to_vec()).unwrap_or_default();
        let mut cache = self.resolvers.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(r) = cache.get(&key) {
            return Ok(r.clone());
        }
        let r = Resolver::configured(&key, |_| {})?;
        let r = Arc::new(r);
        cache.insert(key, r.clone());
        Ok(r)
    }
}

/// Runs one connection for the queue behind `lane`.
pub(super) async fn run(agents: &Agents, lane: &dyn Lane, route: Route) {
    // Work first, connection second: a connection with nothing to send would only EHLO and
    // QUIT (the recipients may all be waiting for their retry time, or taken by another task).
    let Some(first) = lane.next_job() else {
        return;
    };
    let mut org = agents.org();
    // A queue routed with configuration fresher than the watched snapshot (a resubmit right
    // after New-SendConnector) may name a connector the snapshot does not have yet.
    if !org
        .send_connectors
        .iter()
        .any(|c| c.id == route.connector_id)
        && let Some(fresh) = agents.reload_org().await
    {
        org = fresh;
    }
    let Some(connector) = org
        .send_connectors
        .iter()
        .find(|c| c.id == route.connector_id)
        .cloned()
    else {
        // The connector was deleted or disabled since routing: an administrator resubmits.
        let reply = Reply::new(
            451,
            "4.4.0",
            "The send connector of this queue no longer exists",
        );
        failed(lane, reply, Attempt::default(), vec![first]);
        return;
    };
    let external = (connector.use_external_dns_servers_enabled
        && !org.server.external_dns_servers.is_empty())
    .then_some(org.server.external_dns_servers.as_slice());
    let port = match &route.next_hop {
        NextHop::SmartHosts { port, .. } => *port,
        NextHop::Dns { .. } => u16::try_from(connector.port).unwrap_or(25),
    };
    let targets = match resolve(agents, &org, &route, external, port).await {
        Ok(t) => t,
        Err(e) => {
            let downgrade = connector.error_policies == "DowngradeDnsFailures";
            if e.is_permanent() && !downgrade {
                fail_queue(lane, first, &e.reply()).await;
            } else {
                failed(lane, e.reply(), Attempt::default(), vec![first]);
            }
            return;
        }
    };
    let auth = match smart_host_credentials(&agents.smtp, &connector, &route.next_hop) {
        Ok(a) => a,
        Err(e) => {
            tracing::error!("send connector \"{}\": {e}", connector.name);
            failed(lane, e.reply(), Attempt::default(), Vec::new());
            return;
        }
    };
    // A lane without a manager behind it cannot keep shadow copies, so it does not ask for them.
    let book = lane.shadow_book();
    let shadow_context = book
        .as_ref()
        .and_then(|_| gate::shadow_context(&org, &connector));
    let mut last: Option<(ClientError, Attempt)> = None;
    let mut client = None;
    'hosts: for t in &targets {
        let cfg = client_config(
            &agents.smtp,
            &agents.fqdn,
            &connector,
            &t.host,
            auth.clone(),
        );
        for ip in &t.addrs {
            let addr = SocketAddr::new(*ip, port);
            match Client::connect_shadowing(addr, &t.host, &cfg, shadow_context.as_deref()).await {
                Ok(c) => {
                    client = Some(c);
                    break 'hosts;
                }
                Err(e) => {
                    tracing::info!("{} ({addr}): {e}", t.host);
                    let attempt = Attempt {
                        host: Some(t.host.clone()),
                        ip: Some(*ip),
                        tls_version: None,
                    };
                    last = Some((e, attempt));
                }
            }
        }
    }
    let Some(mut client) = client else {
        let (reply, attempt) = match last {
            Some((e, a)) => (e.reply(), a),
            None => (
                Reply::new(451, "4.4.0", "No address to connect to for this next hop"),
                Attempt::default(),
            ),
        };
        failed(lane, reply, attempt, vec![first]);
        return;
    };
    lane.connected();
    let attempt = Attempt {
        host: Some(client.host().to_string()),
        ip: Some(client.remote().ip()),
        tls_version: client.tls_version().map(str::to_string),
    };
    let primary = client
        .shadow_dbid()
        .map(|dbid| {
            Arc::new(Primary {
                fqdn: client.peer_name().to_string(),
                connector_id: connector.id,
                host: client.host().to_string(),
                port,
                dbid: dbid.to_string(),
            })
        })
        .filter(|p| book.as_ref().is_some_and(|b| b.trusted(&p.key())));
    if let (Some(p), Some(book)) = (&primary, &book) {
        book.contact(p).await;
    }
    let max = connector.smtp_max_messages_per_connection.max(1) as usize;
    let mut next = Some(first);
    for _ in 0..max {
        let Some(job) = next.take().or_else(|| lane.next_job()) else {
            break;
        };
        let (results, usable) = send_one(agents, &mut client, &job, primary.as_ref()).await;
        lane.delivered(Delivered {
            job,
            results,
            attempt: attempt.clone(),
        })
        .await;
        if !usable || !client.is_usable() {
            break;
        }
    }
    if let (Some(p), Some(book)) = (&primary, &book)
        && client.is_usable()
        && let Err(e) = discard::query(&mut client, book.as_ref(), &p.key()).await
    {
        tracing::info!("{}: {e}", p.fqdn);
    }
    client.quit().await;
}

/// A session to a shadow queue's primary for its heartbeat: the connector's port, TLS and
/// authentication, and XSHADOW when the gate allows it (the caller checks that it was accepted).
pub(crate) async fn heartbeat_session(
    agents: &Agents,
    connector_id: uuid::Uuid,
    host: &str,
    port: u16,
) -> Result<Client, ClientError> {
    let org = agents.org();
    let connector = org
        .send_connectors
        .iter()
        .find(|c| c.id == connector_id)
        .cloned()
        .ok_or_else(|| ClientError::Config("the shadow queue's send connector is gone".into()))?;
    // The credential goes to the connector's own smart hosts only, never to an MX host.
    let own_smart_host = !connector.dns_routing_enabled
        && connector
            .smart_hosts
            .iter()
            .any(|h| h.trim_matches(['[', ']']).eq_ignore_ascii_case(host));
    let hop = if own_smart_host {
        NextHop::SmartHosts {
            hosts: vec![host.to_string()],
            port,
        }
    } else {
        NextHop::Dns {
            domain: host.to_string(),
        }
    };
    let auth = smart_host_credentials(&agents.smtp, &connector, &hop)?;
    let cfg = client_config(&agents.smtp, &agents.fqdn, &connector, host, auth);
    let context = gate::shadow_context(&org, &connector)
        .ok_or_else(|| ClientError::Config("the send connector may not shadow".into()))?;
    let external = (connector.use_external_dns_servers_enabled
        && !org.server.external_dns_servers.is_empty())
    .then_some(org.server.external_dns_servers.as_slice());
    let resolver = agents.smtp.resolver(external)?;
    let addrs = resolver
        .host_addrs(host)
        .await
        .map_err(|e| ClientError::Config(e.to_string()))?;
    let mut last = ClientError::Config(format!("{host} has no address"));
    for ip in addrs {
        match Client::connect_shadowing(SocketAddr::new(ip, port), host, &cfg, Some(&context)).await
        {
            Ok(c) => return Ok(c),
            Err(e) => last = e,
        }
    }
    Err(last)
}

/// Sends one job; returns the outcomes and whether the connection can carry another message.
async fn send_one(
    agents: &Agents,
    client: &mut Client,
    job: &Job,
    primary: Option<&Arc<Primary>>,
) -> (Vec<(i32, Outcome)>, bool) {
    let body = match agents.spool.body(job.message).await {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            tracing::error!("the body of {} is missing from the spool", job.message);
            let reply = body_lost_reply();
            return (
                job.all(|| Outcome::Failed {
                    reply: reply.clone(),
                }),
                true,
            );
        }
        Err(e) => {
            tracing::error!("reading {}: {e}", job.message);
            let reply = Reply::new(451, "4.3.0", "The queued message could not be read");
            return (deferred_all(job, &reply), true);
        }
    };
    let recipients: Vec<OutboundRecipient> = job
        .recipients
        .iter()
        .map(|r| OutboundRecipient {
            address: r.address.clone(),
            notify: r.notify.clone(),
            orcpt: r.orcpt.clone(),
        })
        .collect();
    let log_id = job.message.to_string();
    let env = OutboundEnvelope {
        from: &job.from,
        recipients: &recipients,
        size: body.len() as u64,
        body_8bit: job.body_8bit,
        smtp_utf8: job.smtp_utf8,
        env_id: job.env_id.as_deref(),
        ret: job.ret.as_deref(),
        log_id: Some(&log_id),
    };
    let sent = match primary {
        Some(_) => {
            let shadow_id = job.message.hyphenated().to_string();
            client.send_shadowed(&env, &body, &shadow_id).await
        }
        None => client.send(&env, &body).await,
    };
    match sent {
        Ok(replies) => {
            let results = job
                .recipients
                .iter()
                .zip(replies)
                .map(|(r, reply)| {
                    let outcome = match (classify(reply), primary) {
                        (Outcome::Delivered { reply }, Some(p)) => Outcome::Shadowed {
                            reply,
                            primary: p.clone(),
                        },
                        (o, _) => o,
                    };
                    (r.ordinal, outcome)
                })
                .collect();
            (results, true)
        }
        Err(e) => {
            tracing::info!("sending {} to {}: {e}", job.message, client.host());
            (deferred_all(job, &e.reply()), false)
        }
    }
}

fn classify(reply: Reply) -> Outcome {
    match reply.code {
        200..=299 => Outcome::Delivered { reply },
        500..=599 => Outcome::Failed { reply },
        _ => Outcome::Deferred { reply },
    }
}

fn deferred_all(job: &Job, reply: &Reply) -> Vec<(i32, Outcome)> {
    job.all(|| Outcome::Deferred {
        reply: reply.clone(),
    })
}

/// A permanent DNS answer (no such domain) fails every message waiting in the queue.
async fn fail_queue(lane: &dyn Lane, first: Job, reply: &Reply) {
    let bound = 100_000;
    let mut next = Some(first);
    for _ in 0..bound {
        let Some(job) = next.take().or_else(|| lane.next_job()) else {
            break;
        };
        let results = job.all(|| Outcome::Failed {
            reply: reply.clone(),
        });
        lane.delivered(Delivered {
            job,
            results,
            attempt: Attempt::default(),
        })
        .await;
    }
}

/// No host could be reached (or the connector is unusable): the queue retries later.
fn failed(lane: &dyn Lane, reply: Reply, attempt: Attempt, jobs: Vec<Job>) {
    lane.connection_failed(ConnectionFailed {
        reply,
        attempt,
        jobs,
    });
}

/// The hosts to connect to on `port`. An MX list drops this server and every MX host behind it
/// (RFC 5321 §5.1); smart hosts are the administrator's explicit choice and are used as given.
async fn resolve(
    agents: &Agents,
    org: &Org,
    route: &Route,
    external: Option<&[String]>,
    port: u16,
) -> Result<Vec<Target>, DnsError> {
    let resolver = agents
        .smtp
        .resolver(external)
        .map_err(|e| DnsError::Transient {
            domain: String::new(),
            detail: e.to_string(),
        })?;
    match &route.next_hop {
        NextHop::Dns { domain } => {
            resolver
                .mx_targets_except(domain, &routing::myself(&agents.fqdn, org, port))
                .await
        }
        NextHop::SmartHosts { hosts, .. } => {
            // Smart hosts in the order given; one that does not resolve is skipped.
            let mut out = Vec::new();
            let mut last = None;
            for h in hosts {
                match resolver.host_addrs(h).await {
                    Ok(addrs) => out.push(Target {
                        host: h.trim_matches(['[', ']']).to_string(),
                        addrs,
                    }),
                    Err(e) => last = Some(e),
                }
            }
            match (out.is_empty(), last) {
                (true, Some(e)) => Err(e),
                _ => Ok(out),
            }
        }
    }
}

/// The connector's credential, for its own smart hosts only: an MX is whoever the recipient's
/// domain names, and must never see a partner's password. BasicAuthRequireTLS never goes out
/// without TLS: a connector stored with IgnoreSTARTTLS as well (which the shell refuses) is a
/// configuration error, not a reason to send the password in clear.
fn smart_host_credentials(
    ctx: &Context,
    c: &SendConnector,
    hop: &NextHop,
) -> Result<Option<Credentials>, ClientError> {
    let basic = matches!(
        c.smart_host_auth_mechanism.as_str(),
        "BasicAuth" | "BasicAuthRequireTLS"
    );
    if !basic || !matches!(hop, NextHop::SmartHosts { .. }) {
        return Ok(None);
    }
    if c.smart_host_auth_mechanism == "BasicAuthRequireTLS" && c.ignore_starttls {
        return Err(ClientError::Config(
            "SmartHostAuthMechanism BasicAuthRequireTLS with IgnoreSTARTTLS $true would send the \
             credential without TLS"
                .into(),
        ));
    }
    let Some(username) = &c.auth_username else {
        return Ok(None);
    };
    let key = ctx
        .key
        .as_ref()
        .map_err(|e| ClientError::Config(e.to_string()))?;
    let password = c
        .password(Some(key))
        .map_err(|e| ClientError::Config(e.to_string()))?;
    Ok(password.map(|password| Credentials {
        username: username.clone(),
        password,
    }))
}

/// The connector's settings as the client needs them for `host`; `fqdn` is the server's, the
/// EHLO name when the connector sets none.
fn client_config(
    ctx: &Context,
    fqdn: &str,
    c: &SendConnector,
    host: &str,
    auth: Option<Credentials>,
) -> ClientConfig {
    let validated = c.smart_host_auth_mechanism == "BasicAuthRequireTLS"
        || matches!(
            c.tls_auth_level.as_deref(),
            Some("CertificateValidation" | "DomainValidation")
        );
    let tls = if c.ignore_starttls {
        TlsPolicy::Never
    } else if validated {
        TlsPolicy::RequiredValidated {
            name: match (c.tls_auth_level.as_deref(), &c.tls_domain) {
                (Some("DomainValidation"), Some(d)) => d.clone(),
                _ => host.to_string(),
            },
        }
    } else if c.require_tls {
        TlsPolicy::Required
    } else {
        TlsPolicy::Opportunistic
    };
    let log = c
        .protocol_logging_level
        .eq_ignore_ascii_case("Verbose")
        .then(|| SendLog::new(ctx.send_log.clone(), c.name.clone()));
    ClientConfig {
        helo_name: c.fqdn.clone().unwrap_or_else(|| fqdn.to_string()),
        force_helo: c.force_helo,
        tls,
        auth,
        timeout: Duration::from_secs(c.connection_inactivity_timeout.max(1) as u64),
        connect_timeout: CONNECT_TIMEOUT,
        trust: ctx.trust.current(),
        log,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_verbose_connectors_log_their_sessions() {
        let dir = tempfile::tempdir().unwrap();
        let ctx = Context::new(dir.path());
        let mut c = SendConnector::new("Internet Mail", &["*"], "HUB1");
        let cfg = client_config(&ctx, "hub1.contoso.test", &c, "mx.fabrikam.test", None);
        assert!(cfg.log.is_none());
        c.protocol_logging_level = "Verbose".into();
        let cfg = client_config(&ctx, "hub1.contoso.test", &c, "mx.fabrikam.test", None);
        let shown = format!("{:?}", cfg.log.expect("Verbose logs"));
        assert!(shown.contains("\"Internet Mail\""), "{shown}");
    }
}
