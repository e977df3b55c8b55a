//! `sluice serve`: open the ledger, start the writer, the proxy and the API, and shut down
//! gracefully (stop accepting, finish in-flight exchanges, flush the ledger).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use serde_json::json;
use sluice_admin::prometheus::Metrics;
use sluice_admin::settings::SettingDefaults;
use sluice_admin::{AdminState, AuthSettings};
use sluice_core::clock::now_us;
use sluice_core::egress::EgressPolicy;
use sluice_core::hops::{Hop, OwnAddresses};
use sluice_health::passive::HealthBoard;
use sluice_health::{Validator, ValidatorConfig};
use sluice_proxy::service::{not_found_router, MakeConnService};
use sluice_proxy::{Proxy, ProxyConfig};
use sluice_store::event_log::DEFAULT_RING;
use sluice_store::{EventLog, Ledger, LedgerConfig, SessionLimits, Severity, Source};
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::cli::ServeArgs;
use crate::connections::ConnectionLimits;
use crate::proxy_threads;

/// Installs the metrics recorder and records the process id (`sluice bench load` finds the
/// process it measures by it).
fn install_metrics() -> anyhow::Result<Metrics> {
    let metrics = Metrics::install().context("installing the metrics recorder")?;
    metrics::gauge!("sluice_process_pid").set(f64::from(std::process::id()));
    Ok(metrics)
}

/// Resolves when the process is asked to stop (Ctrl-C or SIGTERM).
async fn stop_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("installing the SIGTERM handler");
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

async fn bind(addr: SocketAddr) -> anyhow::Result<(TcpListener, SocketAddr)> {
    let l = TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding {addr}"))?;
    let local = l.local_addr()?;
    Ok((l, local))
}

/// A duration in whole microseconds, the ledger's unit.
fn micros(d: Duration) -> i64 {
    i64::try_from(d.as_micros()).unwrap_or(i64::MAX)
}

/// Runs the gateway until a stop signal.
pub async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let metrics = install_metrics()?;
    let store = args.ledger.open_with_secrets(&args.secrets).await?;
    // Other nodes' configuration changes reach this node's caches (PostgreSQL only).
    store.follow_other_nodes();
    let node_id = args.ledger.node_id()?;
    let project = store.ensure_default_project().await?;
    if let Some(password) = sluice_admin::accounts::bootstrap_admin(&store, project.id).await? {
        // Shown this once, on standard error beside the log; only its hash is stored.
        eprintln!(
            "\nsluice: first start. Sign in as \"{}\" with this one-time password, then choose \
             your own:\n\n    {password}\n",
            sluice_admin::accounts::FIRST_ADMIN
        );
    }
    let closed = store.close_interrupted(&node_id, now_us()).await?;
    if closed > 0 {
        tracing::warn!(
            requests = closed,
            "closed requests left pending by the previous run as interrupted"
        );
    }

    let (events, _events_writer) = EventLog::start(store.clone(), DEFAULT_RING).await?;
    let (ledger, writer) = Ledger::start_with_events(
        store.clone(),
        LedgerConfig {
            node_id: node_id.clone(),
            max_batch: args.ledger_max_batch.max(1),
            completion_delay: Duration::from_millis(args.ledger_completion_delay_ms),
        },
        Some(events.clone()),
    )?;
    let passive =
        (args.passive_health_failures > 0).then(|| HealthBoard::new(args.passive_health_failures));
    let tls = sluice_proxy::upstream::tls_config(args.extra_ca_file.as_deref())?;
    let egress = Arc::new(match args.egress_allow_private {
        true => EgressPolicy::open(),
        false => EgressPolicy::allowing(&args.egress_allow)
            .map_err(|e| anyhow::anyhow!("--egress-allow: {e}"))?,
    });
    let validator = Validator::new(ValidatorConfig {
        egress: egress.clone(),
        ..ValidatorConfig::default()
    });
    let proxy = Proxy::new(
        store.clone(),
        ledger.clone(),
        ProxyConfig {
            connect_timeout: Duration::from_millis(args.connect_timeout_ms),
            response_timeout: Duration::from_millis(args.response_timeout_ms),
            idle_timeout: Duration::from_millis(args.idle_timeout_ms),
            health: passive.as_ref().map(|(board, _)| board.clone()),
            events: Some(events.clone()),
            hop: Hop::new(&node_id),
            auth_failures: args.source_auth_failures,
            auth_failure_window: args.source_auth_window,
            egress,
            ..ProxyConfig::default()
        },
        tls,
    );

    let (stop_tx, stop_rx) = watch::channel(false);
    let leading = store.follow_leadership(stop_rx.clone());
    let catalog = crate::catalog::start(
        &args.catalog,
        args.extra_ca_file.as_deref(),
        &store,
        &args.ledger.data_dir,
        node_id.clone(),
        Some(events.clone()),
        leading.clone(),
    )
    .await?;

    let certificate = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => Some(crate::tls::Certificate::load(cert, key)?),
        _ => None,
    };
    let tls = certificate.as_ref().map(|c| c.acceptor()).transpose()?;
    let scheme = if tls.is_some() { "https" } else { "http" };

    let (listener, local) = bind(args.listen).await?;
    let public_url = args
        .public_url
        .clone()
        .unwrap_or_else(|| format!("{scheme}://{local}"))
        .trim_end_matches('/')
        .to_string();
    let admin = sluice_admin::router(AdminState {
        store: store.clone(),
        public_url: public_url.clone().into(),
        own_addresses: Arc::new(OwnAddresses::new(vec![local], &public_url)),
        default_project: project.id,
        metrics,
        validator: validator.clone(),
        events: events.clone(),
        setting_defaults: SettingDefaults {
            health_interval: args.health_interval,
            stale_threshold_days: args.stale_threshold_days,
            event_retention_days: args.event_retention_days,
        },
        catalog: catalog.clone(),
        auth: AuthSettings {
            session_limits: SessionLimits {
                idle_us: micros(args.session_idle_timeout),
                absolute_us: micros(args.session_max_age),
            },
            secure_cookie: public_url.starts_with("https://"),
            public_metrics: args.public_metrics,
        },
        throttle: Default::default(),
    });

    // The API and UI are served beside the proxy, or on an address of their own.
    let (fallback, admin_apart) = match args.admin_listen {
        Some(addr) => (not_found_router(), Some((bind(addr).await?, admin))),
        None => (admin, None),
    };
    let limits = ConnectionLimits {
        header_read: args.header_read_timeout,
        keep_alive: args.keep_alive_timeout,
        max_connections: args.max_connections,
    };
    let threads = proxy_threads::spawn(
        listener,
        proxy.service(fallback),
        args.proxy_threads,
        limits,
        tls.clone(),
        stop_rx.clone(),
    )?;
    let mut servers = vec![threads.served];
    let mut releases = vec![threads.release];
    println!("listening: {scheme}://{local}");
    if let Some(((admin_listener, admin_local), admin)) = admin_apart {
        let admin = proxy_threads::spawn(
            admin_listener,
            MakeConnService::router_only(admin),
            1,
            limits,
            tls.clone(),
            stop_rx.clone(),
        )?;
        servers.push(admin.served);
        releases.push(admin.release);
        println!("admin listening: {scheme}://{admin_local}");
    }
    let reloads = certificate
        .map(|c| c.watch(events.clone(), stop_rx.clone()))
        .transpose()?;
    let jobs = crate::jobs::spawn(
        &args, &store, &events, leading, catalog, validator, passive, &stop_rx,
    );
    events.emit(
        Severity::Info,
        Source::System,
        None,
        "sluice started",
        json!({ "listen": local.to_string(), "version": env!("CARGO_PKG_VERSION") }),
    );
    drop(proxy);

    stop_signal().await;
    events.emit(
        Severity::Info,
        Source::System,
        None,
        "sluice stopping: finishing in-flight exchanges",
        json!({}),
    );
    events.close();
    let _ = stop_tx.send(true);
    let grace = Duration::from_secs(args.shutdown_grace_secs);
    for s in servers {
        match tokio::time::timeout(grace, s).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(e))) => tracing::error!(error = %e, "server failed"),
            Ok(Err(e)) => tracing::error!(error = %e, "server task failed"),
            Err(_) => tracing::warn!("in-flight exchanges outlived the shutdown grace period"),
        }
    }
    for job in jobs.into_iter().chain(reloads) {
        let _ = job.await;
    }
    drop(ledger);
    if tokio::time::timeout(grace, writer).await.is_err() {
        tracing::error!("the ledger writer did not drain in time");
    }
    events.flush().await;
    store.close().await;
    drop(releases);
    tracing::info!("stopped");
    Ok(())
}
