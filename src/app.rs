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
use crate::smtp::server::backend::{PgDirectory, PgIntake};
use crate::smtp::server::limits::ConnectionLimits;
use crate::smtp::server::listener::Listeners;
use crate::transport::queue::{QueueManager, Spool, manager};

pub async fn serve(settings: ServeSettings) -> anyhow::Result<()> {
    crate::tls::install_crypto_provider();
    let common = &settings.common;
    std::fs::create_dir_all(&common.data_dir)
        .with_context(|| format!("creating the data directory {}", common.data_dir.display()))?;
    let fqdn = common.fqdn();
    let server_name = bootstrap::server_name_from_fqdn(&fqdn);

    let db = Database::open(common).await?;
    let pool = db.pool.clone();
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

    let tls_material = crate::tls::load_or_create(&common.data_dir, &fqdn)
        .context("loading or creating the TLS certificate")?;
    let tls = crate::tls::server_config(&tls_material).context("building the TLS configuration")?;

    let spool = Spool::open(&common.data_dir).context("opening the spool")?;
    let orphans = spool.recover(&pool).await.context("recovering the spool")?;
    if orphans > 0 {
        tracing::info!("removed {orphans} spool files that were never acknowledged");
    }

    let org = Org::load(&pool, &server_name).await?;
    let (org_tx, org_rx) = watch::channel(Arc::new(org));
    let tracking = {
        let s = &org_rx.borrow().server;
        TrackingLog::new(
            &common.data_dir,
            s.message_tracking_log_enabled,
            s.message_tracking_log_subject_logging_enabled,
        )
    };
    let queue = QueueManager::start(
        pool.clone(),
        spool.clone(),
        org_rx.clone(),
        manager::Settings {
            server_name: server_name.clone(),
            fqdn: fqdn.clone(),
            data_dir: common.data_dir.clone(),
        },
        tracking.clone(),
        Some(db.url.clone()),
    )
    .await
    .context("loading the queues")?;
    let gw = Arc::new(Gateway {
        directory: Arc::new(PgDirectory(pool.clone())),
        intake: Arc::new(PgIntake {
            pool: pool.clone(),
            queue,
        }),
        org: org_rx.clone(),
        tls: Some(tls),
        spool,
        receive_log: ProtocolLog::new(&common.data_dir, LogKind::Receive),
        limits: ConnectionLimits::default(),
        tracking,
    });

    let mut listeners = Listeners::default();
    listeners.reconcile(&gw, &org_rx.borrow().clone());
    let mut bound = listeners.bound();
    bound.sort();
    println!(
        "hubgate ready: server {server_name} ({fqdn}), SMTP on {}",
        bound
            .iter()
            .map(|a| a.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    );

    let console = crate::console::spawn(&settings.console_bind, pool.clone()).await?;
    let reload = tokio::spawn(watch_config(
        db.url.clone(),
        pool.clone(),
        server_name.clone(),
        org_tx,
    ));

    let mut org_changes = org_rx.clone();
    let shutdown = shutdown_signal();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            changed = org_changes.changed() => {
                if changed.is_err() { break; }
                let org = org_changes.borrow().clone();
                listeners.reconcile(&gw, &org);
            }
        }
    }
    tracing::info!("shutting down");
    listeners.close_all();
    reload.abort();
    console.abort();
    // Sessions in a transaction have not had their 250, so cutting them loses nothing; still,
    // give them a moment to finish.
    for _ in 0..100 {
        if listeners.sessions.load(std::sync::atomic::Ordering::SeqCst) == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop(gw);
    db.close().await;
    Ok(())
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
        reload(&pool, &server, &tx).await;
        while listener.recv().await.is_ok() {
            // Coalesce a burst of notifications (one script) into one reload.
            while listener.next_buffered().is_some() {}
            reload(&pool, &server, &tx).await;
        }
    }
}

async fn reload(pool: &sqlx::PgPool, server: &str, tx: &watch::Sender<Arc<Org>>) {
    match Org::load(pool, server).await {
        Ok(org) => {
            tx.send_replace(Arc::new(org));
        }
        Err(e) => tracing::error!("reloading the configuration: {e}"),
    }
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
