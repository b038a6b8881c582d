//! `sportsbook gateway`: a stateless gateway of a cluster (issue 15). The public HTTP API and
//! WebSocket stream, as `serve` has them, over a local read replica of the book that follows
//! the replicated journal on NATS, with commands forwarded to the book's leader
//! (`cluster::GatewayReplica`). Any number run at once; a client may use any of them.
//!
//! It prints one JSON line on standard output once it listens (`{"role": "gateway", "pid",
//! "node", "url"}`), logs on standard error, and stops cleanly on Ctrl-C or SIGTERM. The JWT
//! secret must be the same on every gateway (`SPORTSBOOK_JWT_SECRET` or
//! `SPORTSBOOK_JWT_SECRET_FILE`; it is never generated here, since a token from one gateway
//! must work on the others); `SPORTSBOOK_ADMIN_KEY` works on every gateway given it.
//!
//! With `--read-models postgres://...` (and `--read-models-schema`) the history, audit, report
//! and operator routes are served from the models `sportsbook projector --nats` writes, through
//! the same `ReadModels` as on `serve`: the store's checkpoint is polled
//! (`projector::watch_store`) and published to the readers, so the read-your-writes wait
//! (`X-Journal-Position` / `X-Min-Position`) holds across gateways.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{bail, Context};
use cluster::{GatewayReplica, GatewayReplicaOptions};
use gateway::{AppState, GatewayConfig, Metrics, Streams};

use crate::secrets::{self, env_value};
use crate::serve::{init_logging, LogFormat, ShutdownSignals, REVOKED_SESSIONS_FILE, SHUTDOWN_GRACE};

pub struct GatewayRoleOptions {
    pub nats: Vec<String>,
    pub listen: SocketAddr,
    /// The gateway's own state: its replica's snapshots and its logged-out sessions.
    pub data_dir: Option<PathBuf>,
    pub gateway_id: Option<String>,
    /// Replicas of the registry bucket, should this gateway make it.
    pub replicas: usize,
    /// Rate limits, as on `serve` (`None`: off).
    pub rate_limit_per_address: Option<gateway::RateLimit>,
    pub rate_limit_per_credential: Option<gateway::RateLimit>,
    /// Where the edge state lives (`--edge-state`): Redis, so that every gateway limits,
    /// throttles and revokes as one, or this process.
    pub edge_state: gateway::EdgeStateConfig,
    pub edge_state_timeout: std::time::Duration,
    /// The read models a `sportsbook projector --nats` writes (`--read-models`): the history,
    /// audit, report and operator routes are served from them. `None`: those routes answer 503
    /// (`projector_off`).
    pub read_models: Option<crate::projection::StoreArg>,
    /// Their PostgreSQL schema (`--read-models-schema`).
    pub read_models_schema: String,
    /// `--exclusion-register` with `--exclusion-register-file`, as on `serve`.
    pub exclusion_register: gateway::register::ExclusionRegisterConfig,
    pub log_format: LogFormat,
}

pub fn run(options: GatewayRoleOptions) -> anyhow::Result<()> {
    init_logging(options.log_format);
    let admin_key = secrets::admin_key(env_value(secrets::ADMIN_KEY_ENV))?;
    let (jwt_secret, source) = match (env_value(secrets::JWT_SECRET_ENV), env_value(secrets::JWT_SECRET_FILE_ENV)) {
        (None, None) => bail!(
            "a gateway needs the JWT secret every gateway shares: set {} or {} (a token issued by one gateway \
             must be accepted by the others)",
            secrets::JWT_SECRET_ENV,
            secrets::JWT_SECRET_FILE_ENV
        ),
        // A directory that is never read: one of the two is set, so nothing is generated.
        (from_env, file) => {
            secrets::jwt_secret(from_env, file.map(PathBuf::from), std::path::Path::new("/nonexistent"))?
        }
    };
    tracing::info!(%source, "JWT secret loaded");
    if let Some(dir) = &options.data_dir {
        crate::secure_data_dir(dir)?;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("gateway-http")
        .build()
        .context("starting the HTTP runtime")?;
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind(options.listen))
        .with_context(|| format!("listening on {}", options.listen))?;
    let address = listener.local_addr().context("the listen address")?;
    let url = format!("http://{address}");

    let mut config = GatewayConfig::new(jwt_secret);
    config.admin_key = admin_key;
    config.rate_limit_per_address = options.rate_limit_per_address;
    config.rate_limit_per_principal = options.rate_limit_per_credential;
    config.revoked_sessions_path = options.data_dir.as_ref().map(|dir| dir.join(REVOKED_SESSIONS_FILE));
    if matches!(options.edge_state, gateway::EdgeStateConfig::InProcess) {
        tracing::warn!(
            "edge state in this process: rate limits, login throttles, refresh tokens and logouts are this \
             gateway's own; use --edge-state redis://... so that every gateway shares them"
        );
    }
    config.edge_state = options.edge_state;
    config.edge_state_timeout = options.edge_state_timeout;
    crate::serve::log_exclusion_register(&options.exclusion_register);
    config.exclusion_register = options.exclusion_register;
    // No feed watchdog (the feed role runs it, once per cluster), a reply wait covering a
    // forward's retries through an election and the replica's catch-up, and the identity watch.
    let identity = config.for_replica(cluster::client::RETRY_FOR_DEFAULT);
    // History, audit, reports and the operator's bet and account routes read the models the
    // cluster's projector writes; without them those routes answer 503 `unavailable` saying
    // the projector is off. The store's checkpoint is polled (`projector::watch_store`) and
    // published to the readers, so the read-your-writes wait works as on `serve`.
    let (published, _watch) = match &options.read_models {
        Some(store) => {
            let store = match store {
                crate::projection::StoreArg::Postgres(url) => {
                    projector::ReadStore::Postgres { url: url.clone(), schema: options.read_models_schema.clone() }
                }
                crate::projection::StoreArg::Sqlite(Some(path)) => projector::ReadStore::Sqlite(path.clone()),
                crate::projection::StoreArg::Sqlite(None) => {
                    bail!("--read-models: a gateway has no data directory of models: give a postgres:// URL")
                }
            };
            let published = projector::Published::new();
            let watch = projector::watch_store(store.clone(), Arc::clone(&published))
                .context("starting the read models' checkpoint watch")?;
            config.read_models = Some(projector::ReadModels::new(store, Arc::clone(&published)));
            (Some(published), Some(watch))
        }
        None => {
            config.projector_off_warning = true;
            (None, None)
        }
    };
    let metrics = Metrics::new();
    let streams = Streams::new(&config, &metrics);

    let mut replica_options = GatewayReplicaOptions::new(options.nats);
    if let Some(id) = options.gateway_id {
        replica_options.gateway_id = id;
    }
    replica_options.url = Some(url.clone());
    replica_options.data_dir = options.data_dir.clone();
    replica_options.replicas = options.replicas;
    let gateway_id = replica_options.gateway_id.clone();
    // Blocking, outside the HTTP runtime: it recovers the replica and starts its own runtime.
    let replica = Arc::new(GatewayReplica::start(
        replica_options,
        vec![metrics.engine_hook(), streams.engine_hook(), identity.engine_hook()],
    )?);
    config.cluster = Some(Arc::new(cluster::ReplicaStatus::new(Arc::clone(&replica), published)));
    let engine = replica.engine().clone();

    let served = runtime.block_on(async {
        let mut signals = ShutdownSignals::install();
        let state = AppState::new(engine, config, metrics, streams)
            .await
            .map_err(|error| anyhow::anyhow!("starting the gateway: {}: {}", error.code, error.message))?;
        // The gateway id is letters, digits, '-' and '_' (validated), the URL an address.
        println!(r#"{{"role": "gateway", "pid": {}, "node": "{gateway_id}", "url": "{url}"}}"#, std::process::id());
        tracing::info!(%url, gateway = %gateway_id, "gateway listening");
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let mut server = tokio::spawn(gateway::serve(listener, state, async move {
            let _ = stopped.await;
        }));
        tokio::select! {
            signal = signals.recv() => {
                tracing::info!(signal, "stopping the gateway: it stops accepting and drains");
                let _ = stop.send(());
                if tokio::time::timeout(SHUTDOWN_GRACE, &mut server).await.is_err() {
                    server.abort();
                }
                Ok(())
            }
            finished = &mut server => match finished {
                Ok(Ok(())) => Err(anyhow::anyhow!("the gateway stopped by itself")),
                Ok(Err(error)) => Err(error).context("serving HTTP"),
                Err(join) => Err(anyhow::anyhow!("the gateway task failed: {join}")),
            },
        }
    });
    runtime.shutdown_timeout(SHUTDOWN_GRACE);
    replica.stop();
    tracing::info!("gateway stopped");
    served
}
