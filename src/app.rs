//! Builds every service from the settings, runs them, and shuts them down in order.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::sync::watch;

use crate::config::{ServeSettings, split_default_bindings};
use crate::db::Database;
use crate::logs::protocol::{LogKind, ProtocolLog};
use crate::logs::tracking::TrackingLog;
use crate::org::Org;
use crate::org::bootstrap::{self, FirstStart};
use crate::smtp::server::Gateway;
use crate::smtp::server::backend::{PgDirectory, PgIntake, PgValidatingDirectory};
use crate::smtp::server::limits::ConnectionLimits;
use crate::smtp::server::listener::Listeners;
use crate::transport::clock::SystemClock;
use crate::transport::delivery::Agents;
use crate::transport::queue::{QueueManager, Spool, manager};
use crate::transport::stats::{MinuteWriter, Writer};

pub async fn serve(settings: ServeSettings) -> anyhow::Result<()> {
    crate::tls::install_crypto_provider();
    let common = &settings.common;
    crate::fsmode::init()?;
    crate::fsmode::data_dir(&common.data_dir)
        .with_context(|| format!("creating the data directory {}", common.data_dir.display()))?;
    let fqdn = common.fqdn();
    let server_name = bootstrap::server_name_from_fqdn(&fqdn);

    let db = Database::open(common).await?;
    let pool = db.pool.clone();
    // A node without the organisation's key stops here, before it changes anything.
    let org_key = crate::org::org_key::prepare(&pool, Some(&common.data_dir))
        .await
        .context("the organization key")?;
    let (default_bindings, client_bindings) = match &settings.default_bindings {
        Some(s) => {
            let (d, c) = split_default_bindings(s);
            (
                Some(d).filter(|v| !v.is_empty()),
                Some(c).filter(|v| !v.is_empty()),
            )
        }
        None => (None, None),
    };
    let created = bootstrap::ensure_server(
        &pool,
        &FirstStart {
            server_name: &server_name,
            fqdn: &fqdn,
            default_bindings,
            client_bindings,
            admin_password: settings.admin_password.as_deref().filter(|p| !p.is_empty()),
        },
    )
    .await
    .context("creating this server's configuration")?;
    if let Some(pw) = created.and_then(|c| c.generated_password) {
        println!("Administrator password (shown once): {pw}");
    }

    let tls = crate::tls::store::CertStore::open(&common.data_dir, &fqdn)
        .context("loading or creating the TLS certificate")?;
    let acme = crate::tls::acme::spawn(common.data_dir.clone(), tls.clone());

    // Before the spool is touched: a second process under the same name would reap the other's
    // bodies in flight, or report its queued messages as lost.
    let claim = manager::claim(&pool, &db.url, &server_name).await;
    let claim = match claim {
        Ok(c) => c,
        Err(e) => {
            db.close().await;
            return Err(e.into());
        }
    };
    let spool = Spool::open(&common.data_dir)
        .context("opening the spool")?
        .with_database(pool.clone());
    let orphans = spool.recover(&pool).await.context("recovering the spool")?;
    if orphans > 0 {
        tracing::info!("removed {orphans} spool files that were never acknowledged");
    }

    let org = Org::load(&pool, &server_name).await?;
    crate::logs::retention::apply(&org.server);
    // The sockets are opened before the queue starts: a node that can listen on nothing is not a
    // gateway, and must fail its start before it delivers anything.
    let mut listeners = Listeners::default();
    listeners.open(&org);
    record_binding_errors(&pool, &server_name, &listeners).await;
    if listeners.bound().is_empty() {
        let reason = not_listening(&server_name, &listeners);
        db.close().await;
        anyhow::bail!("{reason}");
    }
    let (org_tx, org_rx) = watch::channel(Arc::new(org));
    let tracking = {
        let s = &org_rx.borrow().server;
        TrackingLog::new(
            &common.data_dir,
            s.message_tracking_log_enabled,
            s.message_tracking_log_subject_logging_enabled,
        )
    };
    let agents = Agents::new(
        &common.data_dir,
        &fqdn,
        spool.clone(),
        org_rx.clone(),
        pool.clone(),
    );
    let queue = QueueManager::start(
        pool.clone(),
        spool.clone(),
        org_rx.clone(),
        manager::Settings {
            server_name: server_name.clone(),
            fqdn: fqdn.clone(),
            clock: SystemClock::shared(),
        },
        tracking.clone(),
        agents.clone(),
        Some(claim),
    )
    .await
    .context("loading the queues")?;
    tokio::spawn(crate::transport::shadow::heartbeat::run(
        queue.clone(),
        agents,
    ));
    let stats = stats_writer(&queue, &pool, &server_name, &org_rx);
    let antispam_counts = Arc::new(crate::transport::antispam_stats::Writer {
        counts: tracking.agent_counts().clone(),
        pool: pool.clone(),
        server: server_name.clone(),
        org: org_rx.clone(),
    });
    let metrics = match start_metrics(&settings, &queue).await {
        Ok(m) => m,
        Err(e) => {
            listeners.close_all();
            db.close().await;
            return Err(e.into());
        }
    };
    let limits = ConnectionLimits::default();
    let (drain_control, drain) = crate::smtp::server::drain::DrainControl::new();
    let pressure = crate::transport::pressure::Pressure::for_database(&db.url)
        .context("the database probe's connection")?;
    pressure.set_unbound(unbound(&org_rx.borrow(), &listeners));
    let live = crate::console::state::Live {
        stats: queue.stats().clone(),
        connections: limits.clone(),
        pressure: pressure.clone(),
        queues: queue.clone(),
        antispam: tracking.agent_counts().clone(),
    };
    let gw = Arc::new(Gateway {
        directory: Arc::new(PgValidatingDirectory {
            directory: PgDirectory(pool.clone()),
            callouts: crate::transport::recipient_callout::Callouts::load(pool.clone())
                .await
                .context("loading the recipient callout results")?,
        }),
        intake: Arc::new(PgIntake {
            pool: pool.clone(),
            queue: queue.clone(),
            committer: crate::transport::queue::Committer::start(pool.clone()),
        }),
        org: org_rx.clone(),
        tls: Some(tls.clone()),
        spool: spool.clone(),
        receive_log: ProtocolLog::new(&common.data_dir, LogKind::Receive),
        limits,
        auth_throttle: Default::default(),
        tracking,
        drain,
        pressure: pressure.clone(),
        dnsbl: Default::default(),
    });

    // Made now, so that the first AUTH for an unknown account takes no longer than any other.
    tokio::task::spawn_blocking(|| {
        crate::org::account::dummy_hash();
    });

    // Listening before the ready line, so that whoever waits for it can use the console at once.
    let console =
        match start_console(&settings, &pool, &server_name, &fqdn, &tls, org_key, live).await {
            Ok(c) => c,
            Err(e) => {
                listeners.close_all();
                db.close().await;
                return Err(e);
            }
        };
    // Before the ready line: a SIGTERM from whoever waited for it must drain, not kill.
    let mut shutdown = crate::stop::signals().context("installing the SIGTERM handler")?;
    listeners.start(&gw);
    let mut bound = listeners.bound();
    bound.sort();
    let failed: String = listeners
        .failed()
        .iter()
        .map(|(a, e)| format!("; cannot listen on {a}: {e}"))
        .collect();
    println!(
        "hubgate ready: server {server_name} ({fqdn}), SMTP on {}{failed}",
        bound
            .iter()
            .map(|a| a.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    );

    let auto_discard = tokio::spawn(crate::transport::shadow::primary::auto_discard(
        pool.clone(),
        server_name.clone(),
        org_rx.clone(),
    ));
    let stats_task = tokio::spawn(stats.clone().run());
    let antispam_task = tokio::spawn(antispam_counts.clone().run());
    let log_pruner = tokio::spawn(prune_logs(common.data_dir.clone()));
    let monitor = {
        let q = queue.clone();
        tokio::spawn(crate::transport::pressure::monitor(
            pressure.clone(),
            pool.clone(),
            spool.dir().to_path_buf(),
            Arc::new(move || q.queue_length()),
            org_rx.clone(),
        ))
    };
    let reload = tokio::spawn(watch_config(
        db.url.clone(),
        pool.clone(),
        server_name.clone(),
        org_tx,
    ));

    let mut org_changes = org_rx.clone();
    // A binding that failed (address in use) is tried again now and then: the other process may
    // go away, and the admin should not need a restart to get the connector back.
    let mut retry_bindings = tokio::time::interval(BINDING_RETRY);
    retry_bindings.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let org = tokio::select! {
            _ = &mut shutdown => break,
            changed = org_changes.changed() => {
                if changed.is_err() { break; }
                org_changes.borrow().clone()
            }
            _ = retry_bindings.tick(), if !listeners.failed().is_empty() => org_changes.borrow().clone(),
        };
        crate::logs::retention::apply(&org.server);
        if listeners.reconcile(&gw, &org) {
            record_binding_errors(&pool, &server_name, &listeners).await;
        }
        pressure.set_unbound(unbound(&org, &listeners));
    }
    tracing::info!("shutting down");
    listeners.close_all();
    reload.abort();
    monitor.abort();
    auto_discard.abort();
    log_pruner.abort();
    console.abort();
    if let Some(m) = metrics {
        m.abort();
    }
    acme.abort();
    crate::stop::drain(
        &drain_control,
        &listeners.sessions,
        &queue,
        Duration::from_secs(settings.drain_timeout),
    )
    .await;
    drop(gw);
    // What was counted since the last minute's write, into this minute's row: a restart within
    // the minute adds to it.
    stats_task.abort();
    stats.flush(time::OffsetDateTime::now_utc()).await;
    antispam_task.abort();
    antispam_counts.flush(time::OffsetDateTime::now_utc()).await;
    db.close().await;
    Ok(())
}

/// The writer of the dashboard's per-minute counts for this node.
fn stats_writer(
    queue: &QueueManager,
    pool: &sqlx::PgPool,
    server: &str,
    org: &watch::Receiver<Arc<Org>>,
) -> Arc<Writer> {
    let q = queue.clone();
    Arc::new(Writer {
        stats: queue.stats().clone(),
        pool: pool.clone(),
        server: server.to_string(),
        org: org.clone(),
        queue_length: Arc::new(move || q.queue_length()),
    })
}

/// /metrics as the operator chose (HUBGATE_METRICS_ALLOW, HUBGATE_METRICS_BIND), its queue
/// lengths read from the queue manager at each scrape.
async fn start_metrics(
    settings: &ServeSettings,
    queue: &QueueManager,
) -> Result<Option<tokio::task::JoinHandle<()>>, crate::monitor::MetricsError> {
    let task =
        crate::monitor::http::start(&settings.metrics_allow, settings.metrics_bind.as_deref())
            .await?;
    if let Some(exporter) = crate::monitor::exporter() {
        let q = queue.clone();
        exporter.set_queue_source(move || q.queue_lengths());
    }
    Ok(task)
}

/// The console on its address, over HTTPS from the same certificate store as STARTTLS (followed
/// while running); the store itself follows new certificates, so the sender is dropped.
async fn start_console(
    settings: &ServeSettings,
    pool: &sqlx::PgPool,
    server_name: &str,
    fqdn: &str,
    tls: &Arc<crate::tls::store::CertStore>,
    org_key: crate::org::org_key::OrganizationKey,
    live: crate::console::state::Live,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let https = tls
        .https_config()
        .context("building the console's TLS configuration")?;
    let (_swap, source) = watch::channel(https);
    let console = crate::console::ConsoleSettings {
        bind: settings.console_bind.clone(),
        plain_http: settings.console_plain_http,
        idle_timeout: Duration::from_secs(settings.console_idle_timeout.max(1)),
        static_dir: settings
            .console_static_dir
            .clone()
            .unwrap_or_else(crate::console::default_static_dir),
    };
    let state = crate::console::ConsoleState {
        pool: pool.clone(),
        server: server_name.to_string(),
        fqdn: fqdn.to_string(),
        https: !console.plain_http,
        idle_timeout: console.idle_timeout,
        logon_throttle: crate::console::logon::throttle(),
        org_key: Some(Arc::new(org_key)),
        data_dir: Some(settings.common.data_dir.clone()),
        live: Some(live),
    };
    Ok(crate::console::spawn(&console, state, Some(source)).await?)
}

/// How often the logs are pruned besides when they start a new file: an idle log's old files
/// still go once they pass MaxAge.
const LOG_PRUNE_INTERVAL: Duration = Duration::from_secs(600);

async fn prune_logs(data_dir: std::path::PathBuf) {
    let mut tick = tokio::time::interval(LOG_PRUNE_INTERVAL);
    loop {
        tick.tick().await;
        let dir = data_dir.clone();
        let _ = tokio::task::spawn_blocking(move || crate::logs::retention::prune_all(&dir)).await;
    }
}

/// How often bindings that could not be opened are tried again.
const BINDING_RETRY: Duration = Duration::from_secs(30);

/// Keeps what Get-ReceiveConnector shows in step with the sockets; a database hiccup here only
/// costs the display, so it is logged, not fatal.
async fn record_binding_errors(pool: &sqlx::PgPool, server: &str, listeners: &Listeners) {
    if let Err(e) =
        crate::org::receive_connector::record_binding_errors(pool, server, &listeners.failed())
            .await
    {
        tracing::warn!("recording the receive connectors' binding errors: {e}");
    }
}

/// The enabled receive connectors' bindings that do not listen, as `/readyz` names them.
fn unbound(org: &Org, listeners: &Listeners) -> Vec<String> {
    listeners
        .failed()
        .iter()
        .map(|(addr, e)| {
            let names: Vec<&str> = org
                .receive_connectors
                .iter()
                .filter(|c| c.enabled && c.parsed_bindings().iter().any(|b| b.0 == *addr))
                .map(|c| c.name.as_str())
                .collect();
            format!(
                "receive connector {}: cannot listen on {addr}: {e}",
                names.join(", ")
            )
        })
        .collect()
}

/// Why a node with no open socket does not start.
fn not_listening(server: &str, listeners: &Listeners) -> String {
    let failed = listeners.failed();
    if failed.is_empty() {
        return format!(
            "no receive connector of {server} is enabled, so there is nothing to listen on; enable one with Set-ReceiveConnector -Enabled $true"
        );
    }
    let reasons = failed
        .iter()
        .map(|(a, e)| format!("{a}: {e}"))
        .collect::<Vec<_>>()
        .join("; ");
    format!("no receive connector of {server} could listen ({reasons})")
}

/// Reloads the organisation whenever a configuration table changes (LISTEN/NOTIFY).
async fn watch_config(
    url: String,
    pool: sqlx::PgPool,
    server: String,
    tx: watch::Sender<Arc<Org>>,
) {
    loop {
        let mut listener = match sqlx::postgres::PgListener::connect(&url).await {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!("configuration listener: {e}");
                tokio::time::sleep(Duration::from_secs(2)).await;
                continue;
            }
        };
        if let Err(e) = listener.listen("hubgate_config").await {
            tracing::warn!("LISTEN hubgate_config: {e}");
            tokio::time::sleep(Duration::from_secs(2)).await;
            continue;
        }
        // Changes made while we were not listening are picked up by this reload.
        let mut owed = reload(&pool, &server, &tx, Changed::ALL).await;
        // Ok(None): the connection was lost (the database restarted), and with it whatever was
        // notified meanwhile; connecting again above reloads once more.
        while let Ok(Some(first)) = listener.try_recv().await {
            // Coalesce a burst of notifications (one script) into one reload, with whatever a
            // failed reload still owes.
            let mut changed = owed.and(Changed::of(first.payload()));
            while let Some(n) = listener.next_buffered() {
                changed = changed.and(Changed::of(n.payload()));
            }
            owed = reload(&pool, &server, &tx, changed).await;
        }
    }
}

/// What a burst of notifications changed: the payload is the table's name.
#[derive(Clone, Copy)]
struct Changed {
    config: bool,
    valid_recipients: bool,
}

impl Changed {
    const ALL: Changed = Changed {
        config: true,
        valid_recipients: true,
    };
    const NONE: Changed = Changed {
        config: false,
        valid_recipients: false,
    };

    fn of(table: &str) -> Changed {
        let list = table == "valid_recipient";
        Changed {
            config: !list,
            valid_recipients: list,
        }
    }

    fn and(self, other: Changed) -> Changed {
        Changed {
            config: self.config || other.config,
            valid_recipients: self.valid_recipients || other.valid_recipients,
        }
    }
}

/// A new snapshot: the imported valid recipients (possibly a large list) are read only when
/// they changed, the rest only when it did. What is still owed when it fails.
async fn reload(
    pool: &sqlx::PgPool,
    server: &str,
    tx: &watch::Sender<Arc<Org>>,
    changed: Changed,
) -> Changed {
    let current = tx.borrow().clone();
    let loaded = match (changed.config, changed.valid_recipients) {
        (true, true) => Org::load(pool, server).await,
        (true, false) => current.reloaded(pool).await,
        (false, _) => current.with_recipients_reloaded(pool).await,
    };
    match loaded {
        Ok(org) => {
            tx.send_replace(Arc::new(org));
            Changed::NONE
        }
        Err(e) => {
            tracing::error!("reloading the configuration: {e}");
            changed
        }
    }
}
