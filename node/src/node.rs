//! Assembling a node: dev directory or config file → engine + agency data + router, and serving.
//!
//! This is the glue `main` and the tests share; it holds no logic of its own beyond choosing
//! paths and settings.

use crate::api::{self, ApiConfig, AppState};
use crate::clock::Clock;
use crate::config::Config;
use crate::datastore::AgencyData;
use crate::dev::{self, DevSetup};
use crate::engine::{Engine, EngineConfig};
use crate::metrics::Metrics;
use anyhow::Context as _;
use std::sync::Arc;
use std::time::Duration;
use xinyi_ledger::{Genesis, OrgId};

/// A running node's parts.
#[derive(Clone)]
pub struct Node {
    /// API state (engine, data, settings).
    pub state: AppState,
}

impl Node {
    /// The HTTP router.
    pub fn router(&self) -> axum::Router {
        api::router(self.state.clone())
    }

    /// A node over an opened engine and data store.
    pub fn from_parts(engine: Engine, data: AgencyData, cfg: ApiConfig) -> Node {
        Node {
            state: AppState::new(engine, data, cfg),
        }
    }

    /// Opens a dev node in `dir`, creating the sample consortium on first start.
    pub fn open_dev(
        dir: &std::path::Path,
        api_cfg: ApiConfig,
        engine_cfg: EngineConfig,
    ) -> anyhow::Result<(Node, DevSetup)> {
        let setup = dev::prepare(dir)?;
        let clock = Arc::new(
            Clock::adjustable(setup.paths.clock.clone())
                .with_context(|| format!("reading {}", setup.paths.clock.display()))?,
        );
        let metrics = Arc::new(Metrics::default());
        let engine = Engine::open(
            &setup.paths.ledger,
            &setup.genesis,
            OrgId::new(dev::AGENCY)?,
            setup.node_key.clone(),
            clock,
            metrics,
            engine_cfg,
        )?;
        let data = AgencyData::open(&setup.paths.agency)?;
        dev::seed(&setup, &engine, &data)?;
        let cfg = ApiConfig {
            dev: true,
            firm_keys: Some(crate::firmkeys::FirmKeys::load(
                &setup.paths.firm_tag_key(),
            )?),
            ..api_cfg
        };
        Ok((
            Node {
                state: AppState::new(engine, data, cfg),
            },
            setup,
        ))
    }

    /// Opens a node from a configuration.
    pub fn open_config(cfg: &Config) -> anyhow::Result<Node> {
        let genesis = Genesis::from_json(
            &std::fs::read(&cfg.genesis)
                .with_context(|| format!("reading genesis {}", cfg.genesis.display()))?,
        )
        .with_context(|| format!("genesis {}", cfg.genesis.display()))?;
        let key = dev::read_key(&cfg.key_file)?;
        let org = OrgId::new(&cfg.org)?;
        std::fs::create_dir_all(&cfg.data_dir)
            .with_context(|| format!("creating {}", cfg.data_dir.display()))?;
        let engine = Engine::open(
            &cfg.data_dir.join("ledger"),
            &genesis,
            org,
            key,
            Arc::new(Clock::system()),
            Arc::new(Metrics::default()),
            EngineConfig {
                mempool_capacity: cfg.mempool_capacity,
                ..EngineConfig::default()
            },
        )?;
        let data = AgencyData::open(&cfg.data_dir.join("agency-data"))?;
        let node = Node {
            state: AppState::new(engine, data, api_config(cfg, None)?),
        };
        node.start_services(cfg)?;
        Ok(node)
    }

    /// Starts what a configured node runs beside its API: checkpoint submission to witnesses,
    /// anchoring, and, on the member holding the agency data (no `[query] data_node`),
    /// post-loan monitoring. Must run inside a tokio runtime.
    pub fn start_services(&self, cfg: &Config) -> anyhow::Result<()> {
        self.start_firm_key_sync();
        self.start_audit_services(
            cfg.witness.clone().unwrap_or_default(),
            cfg.anchor
                .clone()
                .unwrap_or_default()
                .with_data_dir(&cfg.data_dir),
        )?;
        if cfg.query.is_none() {
            self.start_data_services(
                &cfg.data_dir.join("monitor"),
                dev::read_key(&cfg.key_file)?,
                cfg.monitor.clone().unwrap_or_default(),
            )?;
        }
        Ok(())
    }

    /// Follows firm-key rotations (`crate::firmkeys`): once now, then every 500 ms, the keys of
    /// epochs the ledger approved are read from their files and checked against the approved
    /// ids. Nothing to do on a node without firm keys. Must run inside a tokio runtime.
    pub fn start_firm_key_sync(&self) {
        if let Some(keys) = &self.state.cfg.firm_keys {
            crate::firmkeys::sync_once(&self.state.engine, keys, &self.state.data);
            crate::firmkeys::spawn_sync(
                self.state.engine.clone(),
                keys.clone(),
                self.state.data.clone(),
                Duration::from_millis(500),
            );
        }
    }

    /// Starts what runs on the node holding the agency data: the erasure loop
    /// (`crate::erasure`, after one catch-up pass now) and post-loan monitoring
    /// (`crate::monitor`) with its store in `dir` — alerts are signed with `key` (this node's),
    /// released through `GET /v1/banks/{org}/alerts` and webhooks. Must run inside a tokio
    /// runtime.
    pub fn start_data_services(
        &self,
        dir: &std::path::Path,
        key: xinyi_ledger::KeyPair,
        cfg: crate::monitor::MonitorConfig,
    ) -> anyhow::Result<()> {
        let (engine, data) = (self.state.engine.clone(), self.state.data.clone());
        let pass = crate::erasure::catch_up(&engine, &data)?;
        if pass.applied > 0 {
            tracing::info!("applied {} committed erasures at start-up", pass.applied);
        }
        crate::erasure::spawn(engine, data, std::time::Duration::from_millis(500));
        let m = crate::monitor::Monitor::open(
            dir,
            self.state.engine.clone(),
            self.state.data.clone(),
            key,
            cfg,
        )?;
        m.spawn();
        let _ = self.state.monitor.set(m);
        Ok(())
    }

    /// Starts checkpoint submission to witnesses and anchoring (each a no-op when its
    /// configuration names no target). Must run inside a tokio runtime. Fails only for an
    /// unusable EVM anchoring key or contract address.
    pub fn start_audit_services(
        &self,
        witness: crate::witness_client::WitnessConfig,
        anchor: crate::anchor::AnchorConfig,
    ) -> Result<(), crate::anchor_evm::EvmError> {
        crate::witness_client::spawn(
            self.state.engine.clone(),
            self.state.cosigs.clone(),
            witness,
        );
        crate::anchor::spawn(self.state.engine.clone(), anchor)
    }
}

/// The API settings a configuration file gives; `net` is the consortium as this node sees it
/// (cluster mode only).
pub fn api_config(
    cfg: &Config,
    net: Option<crate::cluster::SharedNetView>,
) -> anyhow::Result<ApiConfig> {
    Ok(ApiConfig {
        dev: false,
        rate_limit_per_sec: cfg.rate_limit_per_sec,
        request_timeout: Duration::from_millis(cfg.request_timeout_ms),
        data_node: cfg.query.as_ref().map(|q| q.data_node.clone()),
        net,
        firm_keys: cfg.firm_keys()?,
    })
}

/// Binds `cfg.http` and serves `router` there (over TLS with `tls`) until Ctrl-C / SIGTERM.
pub async fn serve_config(
    cfg: &Config,
    router: axum::Router,
    tls: Option<Arc<rustls::ServerConfig>>,
) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(cfg.http)
        .await
        .with_context(|| format!("listening on {}", cfg.http))?;
    tracing::info!(
        "xinyi node {} serving on {}://{}",
        cfg.org,
        if tls.is_some() { "https" } else { "http" },
        listener.local_addr()?
    );
    serve_with(listener, router, tls).await
}

/// Serves `router` on `listener` over plain HTTP until Ctrl-C / SIGTERM.
pub async fn serve(listener: tokio::net::TcpListener, router: axum::Router) -> anyhow::Result<()> {
    serve_with(listener, router, None).await
}

/// Serves `router` on `listener` until Ctrl-C / SIGTERM: over TLS with `tls` (see
/// [`crate::tls::TlsListener`]), plain HTTP without. The router, its middleware and the
/// graceful shutdown are the same either way; handlers see the client's address in both.
pub async fn serve_with(
    listener: tokio::net::TcpListener,
    router: axum::Router,
    tls: Option<Arc<rustls::ServerConfig>>,
) -> anyhow::Result<()> {
    use axum::serve::ListenerExt as _;
    let app = router.into_make_service_with_connect_info::<std::net::SocketAddr>();
    match tls {
        None => {
            axum::serve(listener, app)
                .with_graceful_shutdown(shutdown_signal())
                .await
        }
        Some(cfg) => {
            // `tap_io` only to get axum's `ConnectInfo<SocketAddr>` for a custom listener.
            let listener = crate::tls::TlsListener::new(listener, cfg)?.tap_io(|_| {});
            axum::serve(listener, app)
                .with_graceful_shutdown(shutdown_signal())
                .await
        }
    }
    .context("HTTP server")?;
    Ok(())
}

/// Resolves on Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(t) => t,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {},
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}
