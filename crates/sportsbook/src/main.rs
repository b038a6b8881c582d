//! The `sportsbook` command: `serve` runs the HTTP API over the engine on a data directory
//! (with `--demo`, a live simulated catalog); `admin` issues and lists operator keys offline;
//! `demo` runs a simulated match day through the engine alone; `verify` recovers a data
//! directory and checks it; `projector` keeps the read models; `book` runs one book process of
//! a cluster (leader or hot standby); `loadgen` drives a running
//! server (and the PostgreSQL baseline) with an open-loop workload.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use gateway::RateLimit;
use sportsbook::serve::{ConnectionOptions, LogFormat, ServeOptions};

#[derive(Parser)]
#[command(name = "sportsbook", version, about = "An exact, durable sportsbook engine")]
struct Cli {
    #[command(subcommand)]
    command: Commands,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormatArg {
    Text,
    Json,
}

#[derive(Clone, Copy, ValueEnum)]
enum RetentionArg {
    Off,
    Archive,
}

#[derive(Clone, Copy, ValueEnum)]
enum StaleArg {
    Suspend,
    Delay,
}

/// How deposits reach the book (`serve --payments`).
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum PaymentsArg {
    /// The sandbox completes every deposit at once (the default; the demo and README).
    Instant,
    /// Deposits stay pending until the provider's signed callback (the callback sandbox).
    Callbacks,
}

/// What the callback sandbox does with payouts (`serve --payment-sandbox-payouts`).
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum SandboxPayoutsArg {
    Pay,
    Fail,
    Hold,
}

#[derive(Subcommand)]
enum Commands {
    /// Serves the HTTP API over the book on a data directory until Ctrl-C or SIGTERM.
    ///
    /// Environment: SPORTSBOOK_ADMIN_KEY (a bootstrap operator key with every scope; must
    /// start with `sk_`), SPORTSBOOK_JWT_SECRET or SPORTSBOOK_JWT_SECRET_FILE (the token
    /// signing secret; generated once into DIR/jwt-secret when neither is set), RUST_LOG
    /// (log filter, default `info`), SPORTSBOOK_METRICS_KEY (a bearer token `/metrics`
    /// requires).
    Serve {
        /// Address to listen on; port 0 picks a free port (the address is printed).
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: SocketAddr,
        /// Data directory (journal, snapshots, the generated JWT secret); created if missing.
        #[arg(long)]
        data_dir: PathBuf,
        /// Seeds a catalog, a demo player and an operator key into an empty data directory,
        /// and runs a live simulation (prices, kick-offs, goals, results, new fixtures).
        #[arg(long)]
        demo: bool,
        /// Seed of the demo simulation (random when omitted).
        #[arg(long, requires = "demo")]
        seed: Option<u64>,
        /// Log lines as text or JSON, on standard error.
        #[arg(long, value_enum, default_value = "text")]
        log_format: LogFormatArg,
        /// An odds provider's source to follow, repeatable, primary first: NAME=ws+URL (the
        /// native JSON feed over WebSocket) or NAME=uof+AMQP_URL#EXCHANGE (UOF-style XML;
        /// amqp:// or amqps://, the virtual host as the URL's path; EXCHANGE must exist).
        #[arg(long = "feed-source")]
        feed_sources: Vec<sportsbook::feeds::FeedSource>,
        /// The UOF provider's HTTP API (recovery requests, market descriptions, fixtures) for
        /// every `uof+` source, e.g. https://api.betradar.com (certificate checked against the
        /// system's roots and --feed-ca) or http://127.0.0.1:8088 (env SPORTSBOOK_UOF_API_URL).
        /// Its access token is read from the environment only: SPORTSBOOK_UOF_ACCESS_TOKEN.
        #[arg(long)]
        uof_api_url: Option<String>,
        /// `node_id` of UOF recovery requests (env SPORTSBOOK_UOF_NODE_ID).
        #[arg(long)]
        uof_node_id: Option<u32>,
        /// A PEM file of CA certificates trusted for `amqps://` feed sources and an `https://`
        /// --uof-api-url besides the system's roots (env SPORTSBOOK_UOF_CA_FILE).
        #[arg(long)]
        feed_ca: Option<PathBuf>,
        /// What `uof+` sources consume, as the provider's SDKs bind: all, live, prematch, hi
        /// or lo (system messages always; env SPORTSBOOK_UOF_INTEREST; default all).
        #[arg(long)]
        uof_interest: Option<String>,
        /// Seconds of silence after which a provider's source is stale; with no fresh source
        /// left, its markets are suspended or delayed (`--feed-on-stale`).
        #[arg(long, default_value_t = 10)]
        feed_stale_after: u64,
        /// What a stale provider's markets do: `suspend` (bets refused) or `delay` (cached
        /// odds flagged `delayed`; bets wait out a delay).
        #[arg(long, value_enum, default_value = "suspend")]
        feed_on_stale: StaleArg,
        /// Requests per second one client address may sustain, `N/s` (burst 2N) or `off`.
        /// For benchmarks from one address (`sportsbook loadgen`); the default suits production.
        #[arg(long, value_parser = parse_rate_limit, default_value = "1000/s")]
        rate_limit_per_address: RateLimitArg,
        /// Requests per second one principal (player account or API key, however its token is
        /// spelled) may sustain, `N/s`
        /// (burst 2N) or `off`. For benchmarks that drive many bets through few players.
        #[arg(long, value_parser = parse_rate_limit, default_value = "100/s")]
        rate_limit_per_credential: RateLimitArg,
        /// HTTP connections open at once. At the cap the longest idle are closed; with every
        /// one busy a new one is answered 503. Keep it, plus the stream's 50,000 WebSocket
        /// connections at most, below `ulimit -n`.
        #[arg(long, default_value_t = gateway::CONNECTIONS_MAX, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
        connections_max: usize,
        /// Seconds a client has to send a complete request head (from connecting, or from the
        /// first byte of a request on a kept-alive connection).
        #[arg(long, default_value_t = gateway::HEADER_READ_TIMEOUT.as_secs(), value_parser = clap::value_parser!(u64).range(1..))]
        header_read_timeout: u64,
        /// Seconds a kept-alive connection may wait for its next request. Behind a load
        /// balancer, above the balancer's idle timeout.
        #[arg(long, default_value_t = gateway::KEEP_ALIVE_IDLE_TIMEOUT.as_secs(), value_parser = clap::value_parser!(u64).range(1..))]
        keep_alive_idle_timeout: u64,
        /// Serves `/metrics` on this address (e.g. a private interface) instead of the main
        /// listener. Without it, `/metrics` answers loopback clients only, or whoever sends
        /// SPORTSBOOK_METRICS_KEY as a bearer token when that is set.
        #[arg(long)]
        metrics_listen: Option<SocketAddr>,
        /// Seconds after which the operator's exchange-rate table (`PUT /v1/admin/fx-rates`) is
        /// stale: `/readyz` then warns `fx_rates_stale` (the node stays ready).
        #[arg(long, default_value_t = gateway::FX_RATES_AGE_MAX.as_secs())]
        fx_rates_age_max: u64,
        /// How long a settled or voided market, its settled bets and every transfer stay in the
        /// book (`5s`, `90m`, `12h`, `7d`): an unsettle or void after it is refused (409
        /// `resettlement_window_closed`), and they leave the book's memory and snapshots (the
        /// read models keep the history). Journaled when it changes, so replays agree.
        #[arg(long, default_value = "7d", value_parser = sportsbook::parse_window)]
        resettlement_window: u64,
        /// How long the book itself remembers a keyed write's reply (`30s` to `1d`; 10 minutes
        /// by default). Older retries are answered from the read models, which keep every first
        /// reply; keyed writes wait for the read models when they are more than half this window
        /// behind. Each key costs about 85 bytes in each book (the book, and the projector's
        /// follower book, which also writes the snapshots), so at 15,000 keyed bets/s the default
        /// window holds 9 million keys a book. Journaled when it changes, so replays agree.
        #[arg(long, default_value = "10m", value_parser = sportsbook::parse_idempotency_window)]
        idempotency_window: u64,
        /// A staff role's limit per manual balance adjustment, repeatable: `ROLE=AMOUNT` in the
        /// base currency (`support=50.00`), `ROLE=none` (may not adjust) or `ROLE=unlimited`.
        /// Above it an adjustment needs a second staff member's approval. Defaults: trader and
        /// settlement none, support 50.00, compliance 1000.00, admin unlimited. Journaled when
        /// they change, so replays agree.
        #[arg(long = "adjustment-limit", value_name = "ROLE=LIMIT")]
        adjustment_limits: Vec<String>,
        /// How deposits reach the book: `instant` (the sandbox completes them at once) or
        /// `callbacks` (they stay pending until the provider's signed callback on
        /// `POST /v1/payments/callbacks/sandbox`; the secret is `SPORTSBOOK_PAYMENT_SECRET`, at
        /// least 16 bytes). The callback sandbox completes deposits, fails those whose
        /// `payment_ref` starts `fail`, charges back those starting `chargeback`, and leaves
        /// those starting `delay` pending.
        #[arg(long, value_enum, default_value = "instant")]
        payments: PaymentsArg,
        /// Seconds a callback's `created_at` may be from now (replays outside it are refused).
        #[arg(long, default_value_t = 300)]
        payment_callback_window: u64,
        /// Milliseconds the callback sandbox waits before calling back.
        #[arg(long, default_value_t = 0)]
        payment_sandbox_delay_ms: u64,
        /// What the callback sandbox does with payouts: `pay`, `fail`, or `hold` (never answers).
        #[arg(long, value_enum, default_value = "pay")]
        payment_sandbox_payouts: SandboxPayoutsArg,
        /// Withdrawals above this amount of the base currency wait for a compliance or admin
        /// staff member's approval (`POST /v1/admin/payments/{id}/approve`); at or below it they
        /// are approved automatically. Default: no approval step.
        #[arg(long, value_name = "AMOUNT")]
        withdrawal_approval_above: Option<String>,
        /// A JSON file of KYC jurisdictions (countries, minimum age, a deposit cap until
        /// verified, re-verification above lifetime deposits, expiry; `docs/security.md`).
        /// Without it the sandbox verifies every player at registration. The KYC webhooks'
        /// secret is `SPORTSBOOK_KYC_SECRET` (at least 16 bytes).
        #[arg(long, value_name = "FILE")]
        kyc_jurisdictions: Option<std::path::PathBuf>,
        /// The national self-exclusion register asked at registration and login: `sandbox`
        /// (a GAMSTOP-like register in this process), `none`, or the URL of a GAMSTOP-like
        /// register (its API key in `SPORTSBOOK_EXCLUSION_REGISTER_KEY`). Unreachable: 503.
        #[arg(long, value_name = "sandbox|none|URL", default_value = "sandbox")]
        exclusion_register: String,
        /// The sandbox register's excluded persons: a JSON array of `{first_name, last_name,
        /// date_of_birth, email?, status?}`, read at every question. Default: nobody.
        #[arg(long, value_name = "FILE")]
        exclusion_register_file: Option<std::path::PathBuf>,
        /// A JSON file of AML and markers-of-harm rules (the body of
        /// `PUT /v1/admin/monitoring-rules`; `docs/compliance.md`), submitted at start when the
        /// book's differ. Without it the book keeps the rules it has (the defaults at first).
        #[arg(long, value_name = "FILE")]
        monitoring_rules: Option<std::path::PathBuf>,
        /// A reverse proxy or load balancer (an address or a CIDR range), repeatable: from it,
        /// `Forwarded` / `X-Forwarded-For` name the client for per-address limits and login
        /// throttles. From anyone else they are ignored.
        #[arg(long = "trusted-proxy", value_parser = gateway::parse_trusted_proxy)]
        trusted_proxies: Vec<gateway::IpNet>,
        /// Password hashes (registrations, logins) computed at once, each holding 19 MiB;
        /// beyond them and a bounded queue, 503 `overloaded`. Default: the cores, at most 16.
        #[arg(long)]
        password_hash_workers: Option<usize>,
        /// The in-process projector's read-model store: `sqlite` (DATA_DIR/projector/
        /// read-models.sqlite3), `sqlite:PATH`, a `postgres://` URL, or `off`.
        #[arg(long, value_parser = parse_projector_store, default_value = "sqlite")]
        projector: ProjectorArg,
        /// The PostgreSQL schema of the read models.
        #[arg(long, default_value = projector::POSTGRES_SCHEMA_DEFAULT)]
        projector_schema: String,
        /// What happens to journal segments recovery no longer needs (wholly below the oldest
        /// kept snapshot and the projector's checkpoint): `archive` compresses them into
        /// --journal-archive and removes them from the live journal (never deletes them);
        /// `off` keeps every segment live for ever.
        #[arg(long, value_enum, default_value = "archive")]
        journal_retention: RetentionArg,
        /// Where archived journal segments go. Default: DATA_DIR/archive. `verify`, `projector`
        /// and recovery read archives from there.
        #[arg(long)]
        journal_archive: Option<PathBuf>,
        /// Snapshots kept in DATA_DIR/snapshots (older ones are deleted: the journal, live and
        /// archived, rebuilds any of them). Retention never archives what the oldest kept one
        /// needs.
        #[arg(long, default_value_t = journal::snapshot::SNAPSHOTS_KEPT_MAX, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=journal::snapshot::SNAPSHOTS_KEEP_LIMIT as u64))]
        snapshots_keep: usize,
        /// A snapshot of the book every this many commands (0: only at shutdown). With the
        /// projector on, its follower book writes them (the engine keeps no second book for
        /// them); when four intervals pass without one, a catch-up thread writes one from the
        /// journal's files. Recovery replays the journal from the newest snapshot.
        #[arg(long, default_value_t = engine::EngineOptions::default().snapshot_every_commands)]
        snapshot_every: u64,
        /// Where the gateway keeps rate-limit buckets, login throttles, refresh tokens and
        /// logged-out sessions: `in-process` (the default; logged-out sessions also in
        /// DATA_DIR/revoked-sessions) or `redis://HOST[:PORT][/DB]`, shared by every gateway
        /// naming the same server and --edge-state-prefix, so that they limit, throttle and
        /// revoke as one (env SPORTSBOOK_EDGE_STATE). While Redis is away, limits and throttles
        /// fall back to this process's and player tokens answer 503 (`/readyz` warns
        /// `edge_state_unavailable`).
        #[arg(long)]
        edge_state: Option<String>,
        /// The prefix of every Redis key of --edge-state (several sportsbooks may share a
        /// server under different prefixes).
        #[arg(long, default_value = gateway::EDGE_KEY_PREFIX_DEFAULT)]
        edge_state_prefix: String,
        /// Milliseconds one call to a shared --edge-state may take before the gateway applies
        /// its failure policy (limits fall back, player tokens 503).
        #[arg(long, default_value_t = gateway::EDGE_STATE_TIMEOUT.as_millis() as u64, value_parser = clap::value_parser!(u64).range(1..=10_000))]
        edge_state_timeout_ms: u64,
    },
    /// Runs the feed simulator as an odds provider for servers to follow: the native JSON feed
    /// on WebSocket endpoints and/or UOF-style XML on AMQP exchanges (primary and backups carry
    /// the same messages). Until Ctrl-C or --duration.
    FeedSim {
        /// Provider name in the messages.
        #[arg(long, default_value = "sim")]
        provider: String,
        /// Serve the JSON feed on this WebSocket address (repeatable: primary, backup).
        #[arg(long)]
        websocket: Vec<std::net::SocketAddr>,
        /// Publish UOF-style XML to this broker ...
        #[arg(long)]
        amqp_url: Option<String>,
        /// ... on these exchanges (repeatable).
        #[arg(long, requires = "amqp_url")]
        exchange: Vec<String>,
        /// Serve the simulated provider's HTTP API here (UOF recovery requests, market
        /// descriptions, the producers list: live producer 1): a server following the exchanges recovers through it
        /// (`serve --uof-api-url http://ADDR`). Token: SPORTSBOOK_UOF_ACCESS_TOKEN (empty if unset).
        #[arg(long, requires = "amqp_url")]
        api_listen: Option<std::net::SocketAddr>,
        #[arg(long, default_value_t = 10)]
        fixtures: usize,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        #[arg(long, default_value_t = 100)]
        price_changes_per_second: u32,
        /// Wall-clock milliseconds of one simulated match minute.
        #[arg(long, default_value_t = 1_000)]
        minute_ms: u64,
        /// Chaos: probabilities of dropping, duplicating and reordering a message.
        #[arg(long, default_value_t = 0.0)]
        drop: f64,
        #[arg(long, default_value_t = 0.0)]
        duplicate: f64,
        #[arg(long, default_value_t = 0.0)]
        reorder: f64,
        /// Chaos: probability of holding a message back behind 2 to 20 later ones.
        #[arg(long, default_value_t = 0.0)]
        delay: f64,
        /// Stop after this many seconds.
        #[arg(long)]
        duration: Option<u64>,
        /// Stop the first endpoint (the primary) after this many seconds, to watch a server
        /// fail over to the second.
        #[arg(long)]
        stop_primary_after: Option<u64>,
    },
    /// An open-loop load generator against a running `serve` on this machine, and the
    /// PostgreSQL one-transaction-per-bet baseline with the same workload: percentiles,
    /// throughput, rejections and shed requests per phase, a JSON result and an SVG plot.
    Loadgen(loadgen::cli::Args),
    /// Failover time under load (issue 15): against the gateways of a `dev-cluster
    /// --restart-books`, keeps bets flowing, kill -9s the book leader --kills times (each time
    /// after the killed node is back and caught up), and reports the time to the first bet
    /// accepted after each kill (p50/p99/max); fails if an acknowledged bet is lost or a bet
    /// applied twice.
    BenchFailover(loadgen::failover::Args),
    /// Embedded against cluster, and the gateway scaling curve, in one run (issue 15): starts
    /// `serve`, offers it a steady load, stops it; starts `dev-cluster --gateways N
    /// --no-rate-limits` and offers the same load over its first 1, 2, ... N gateways. Prints
    /// accepted bets/s, p50/p99 and each cluster run against the embedded one.
    BenchCluster {
        /// Working directory (its `embedded/` and `cluster/` are emptied first; logs in `logs/`).
        #[arg(long)]
        data_dir: PathBuf,
        /// Bets per second offered in every run.
        #[arg(long, default_value_t = 1_000.0)]
        rate: f64,
        /// Seconds of each run.
        #[arg(long, default_value_t = 20.0)]
        duration: f64,
        /// The curve's last point (1 to 8 gateways).
        #[arg(long, default_value_t = 3)]
        gateways: usize,
        #[arg(long, default_value_t = 50)]
        players: usize,
        #[arg(long, default_value_t = 200)]
        markets: usize,
        /// Only the cluster's runs.
        #[arg(long)]
        no_embedded: bool,
        /// Write the result as JSON here.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Operator API keys, issued and listed directly on a data directory (the server must not
    /// be running on it).
    Admin {
        #[command(subcommand)]
        command: AdminCommands,
    },
    /// Seeds a catalog and players, runs a match day of bets, price moves, in-play delays and
    /// settlements through the engine, then proves the ledger balances and that recovery
    /// rebuilds the same book.
    Demo {
        /// Data directory (a fresh temporary one when omitted).
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// Bets to place.
        #[arg(long, default_value_t = 50_000)]
        bets: u64,
    },
    /// Recovers a data directory (latest snapshot plus journal) without writing to it, checks
    /// every invariant and prints the state digest; with read models, checks the book's
    /// running totals against their full history at their position. Exits non-zero on a
    /// corrupt journal or snapshot, or totals that differ (naming the account and both figures).
    Verify {
        #[arg(long)]
        data_dir: PathBuf,
        /// The journal's archive (default DATA_DIR/archive): the hash chain is recomputed from
        /// position 0 across archived and live segments.
        #[arg(long)]
        archive: Option<PathBuf>,
        /// The read models to check the book's running totals against: `sqlite`
        /// (DATA_DIR/projector/read-models.sqlite3, the default when it exists), `sqlite:PATH`,
        /// or a `postgres://` URL.
        #[arg(long, value_parser = sportsbook::projection::parse_store)]
        store: Option<sportsbook::projection::StoreArg>,
        /// The PostgreSQL schema of the models.
        #[arg(long, default_value = projector::POSTGRES_SCHEMA_DEFAULT)]
        schema: String,
    },
    /// The way forward after a corrupt journal (the server refuses to start and names the
    /// position): cuts the journal at a position after copying everything it cuts into
    /// DIR/journal-cut-POSITION-SECONDS. Back up the data directory first; the server must be
    /// stopped. If a snapshot covers the cut records nothing is lost and the journal continues
    /// at the snapshot's position; otherwise the operations in them are gone from the book.
    Repair {
        #[arg(long)]
        data_dir: PathBuf,
        /// The first journal position to cut (the corrupt record's, from the error message).
        #[arg(long)]
        truncate_at: u64,
    },
    /// Runs one book process of a cluster (issue 15): a hot standby that follows the journal on
    /// NATS JetStream and takes over as leader when the lease lapses, until Ctrl-C or SIGTERM.
    /// Prints `{"role": "book", "pid", "node", "url"}` on standard output once it listens.
    Book {
        /// NATS server URLs, comma-separated (`nats://127.0.0.1:4222,...`).
        #[arg(long, value_delimiter = ',', required = true)]
        nats: Vec<String>,
        /// This node's own directory (its snapshots); created if missing.
        #[arg(long)]
        data_dir: PathBuf,
        /// The leader's lease (`3s`, `2500ms`): a dead leader is replaced after about this
        /// long. Every node of a cluster must use the same.
        #[arg(long, default_value = "3s", value_parser = sportsbook::book_role::parse_lease)]
        lease: std::time::Duration,
        /// Address of `/healthz`, `/readyz` and `/metrics`; port 0 picks a free port.
        #[arg(long, default_value = "127.0.0.1:0")]
        listen: SocketAddr,
        /// The node's id in the cluster (letters, digits, '-', '_'); default `book-PID-RANDOM`.
        #[arg(long)]
        node_id: Option<String>,
        /// Replicas of the journal's stream and of the lease: 3 on a 3-node NATS cluster.
        #[arg(long, default_value_t = 3, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=5))]
        replicas: usize,
        /// A snapshot every this many commands, by the leader and by standbys alike.
        #[arg(long, default_value_t = 1_000_000)]
        snapshot_every: u64,
        /// Log lines as text or JSON, on standard error.
        #[arg(long, value_enum, default_value = "text")]
        log_format: LogFormatArg,
    },
    /// Runs a stateless gateway of a cluster (issue 15): the public API and WebSocket stream over
    /// a local read replica that follows the journal on NATS, commands forwarded to the book's
    /// leader. Needs the JWT secret all gateways share (SPORTSBOOK_JWT_SECRET or
    /// SPORTSBOOK_JWT_SECRET_FILE). Prints `{"role": "gateway", "pid", "node", "url"}` on
    /// standard output once it listens.
    Gateway {
        /// NATS server URLs, comma-separated (`nats://127.0.0.1:4222,...`).
        #[arg(long, value_delimiter = ',', required = true)]
        nats: Vec<String>,
        /// Address to listen on; port 0 picks a free port.
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: SocketAddr,
        /// The gateway's own state (its replica's snapshots, logged-out sessions); without it
        /// every start replays the whole journal.
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// The gateway's id in the registry (letters, digits, '-', '_'); default
        /// `gateway-PID-RANDOM`.
        #[arg(long)]
        gateway_id: Option<String>,
        /// Replicas of the registry bucket, should this gateway create it: 3 on 3 NATS nodes.
        #[arg(long, default_value_t = 3, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=5))]
        replicas: usize,
        /// Requests per second per client address (`off` for benchmarks).
        #[arg(long, value_parser = parse_rate_limit, default_value = "1000/s")]
        rate_limit_per_address: RateLimitArg,
        /// Requests per second per credential (`off` for benchmarks).
        #[arg(long, value_parser = parse_rate_limit, default_value = "100/s")]
        rate_limit_per_credential: RateLimitArg,
        /// Where rate-limit buckets, login throttles, refresh tokens and logged-out sessions
        /// live, as on `serve`: `redis://HOST[:PORT][/DB]` shared by every gateway (what a
        /// cluster needs: a logout on one gateway refused by all), or `in-process` (each gateway
        /// its own; env SPORTSBOOK_EDGE_STATE).
        #[arg(long)]
        edge_state: Option<String>,
        /// The prefix of every Redis key of --edge-state.
        #[arg(long, default_value = gateway::EDGE_KEY_PREFIX_DEFAULT)]
        edge_state_prefix: String,
        /// Milliseconds one call to a shared --edge-state may take.
        #[arg(long, default_value_t = gateway::EDGE_STATE_TIMEOUT.as_millis() as u64, value_parser = clap::value_parser!(u64).range(1..=10_000))]
        edge_state_timeout_ms: u64,
        /// The read models `sportsbook projector --nats` writes (`postgres://user@host:port/db`):
        /// history, audit, reports and the operator's bet and account routes are served from
        /// them. Without it those routes answer 503 (`projector_off`).
        #[arg(long, value_parser = sportsbook::projection::parse_store)]
        read_models: Option<sportsbook::projection::StoreArg>,
        /// The PostgreSQL schema of --read-models (the projector's --schema).
        #[arg(long, default_value = projector::POSTGRES_SCHEMA_DEFAULT)]
        read_models_schema: String,
        /// The national self-exclusion register asked at registration and login, as on
        /// `serve`: `sandbox`, `none`, or a GAMSTOP-like register's URL (its key in
        /// `SPORTSBOOK_EXCLUSION_REGISTER_KEY`).
        #[arg(long, value_name = "sandbox|none|URL", default_value = "sandbox")]
        exclusion_register: String,
        /// The sandbox register's excluded persons (a JSON file), as on `serve`; give every
        /// gateway the same file.
        #[arg(long, value_name = "FILE")]
        exclusion_register_file: Option<std::path::PathBuf>,
        /// Log lines as text or JSON, on standard error.
        #[arg(long, value_enum, default_value = "text")]
        log_format: LogFormatArg,
    },
    /// Runs the feed role of a cluster (issue 15): the providers' sources (`--feed-source`; the
    /// simulated provider when none is given) and the staleness watchdog, their commands
    /// forwarded to the book's leader over NATS as a gateway's are. One feed process is active
    /// per cluster (a lease in the cluster's key-value store); any other is a hot standby that
    /// takes over when the active one dies. Serves /healthz, /readyz, /metrics on --listen and
    /// prints `{"role": "feed", "pid", "node", "url"}` on standard output once it follows.
    Feed {
        /// NATS server URLs, comma-separated (`nats://127.0.0.1:4222,...`).
        #[arg(long, value_delimiter = ',', required = true)]
        nats: Vec<String>,
        /// Address of /healthz, /readyz and /metrics; port 0 picks a free port.
        #[arg(long, default_value = "127.0.0.1:8090")]
        listen: SocketAddr,
        /// The feed role's own state: UOF recovery points and names, the demo player's
        /// credentials, its replica's snapshots. Created if missing.
        #[arg(long)]
        data_dir: PathBuf,
        /// Its id in the registry (letters, digits, '-', '_'); default `feed-PID-RANDOM`.
        #[arg(long)]
        node_id: Option<String>,
        /// The feed lease (`3s`, `2500ms`): a dead active feed is replaced after at most this
        /// long. Every feed process of a cluster must use the same.
        #[arg(long, default_value = "3s", value_parser = sportsbook::book_role::parse_lease)]
        lease: std::time::Duration,
        /// Replicas of the lease and registry buckets, should this process create them.
        #[arg(long, default_value_t = 3, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=5))]
        replicas: usize,
        /// Seeds the demo (a funded demo player, the simulated catalog) into an empty book and
        /// runs the demo's live simulation while this process feeds, as `serve --demo` does.
        #[arg(long)]
        demo: bool,
        /// Seed of the simulated provider and the demo simulation (random when omitted).
        #[arg(long)]
        seed: Option<u64>,
        /// An odds provider's source, repeatable, primary first, as on `serve`: NAME=ws+URL or
        /// NAME=uof+AMQP_URL#EXCHANGE (EXCHANGE must exist). None: the simulated provider.
        #[arg(long = "feed-source")]
        feed_sources: Vec<sportsbook::feeds::FeedSource>,
        /// The UOF provider's HTTP API, as on `serve` (env SPORTSBOOK_UOF_API_URL; token from
        /// SPORTSBOOK_UOF_ACCESS_TOKEN).
        #[arg(long)]
        uof_api_url: Option<String>,
        /// `node_id` of UOF recovery requests (env SPORTSBOOK_UOF_NODE_ID).
        #[arg(long)]
        uof_node_id: Option<u32>,
        /// CA certificates for `amqps://` sources and an `https://` API (env SPORTSBOOK_UOF_CA_FILE).
        #[arg(long)]
        feed_ca: Option<PathBuf>,
        /// What `uof+` sources consume: all, live, prematch, hi or lo (env SPORTSBOOK_UOF_INTEREST).
        #[arg(long)]
        uof_interest: Option<String>,
        /// Seconds of silence after which a provider's source is stale.
        #[arg(long, default_value_t = 10)]
        feed_stale_after: u64,
        /// What a stale provider's markets do: `suspend` or `delay`.
        #[arg(long, value_enum, default_value = "suspend")]
        feed_on_stale: StaleArg,
        /// Log lines as text or JSON, on standard error.
        #[arg(long, value_enum, default_value = "text")]
        log_format: LogFormatArg,
    },
    /// Starts a whole cluster on this machine as child processes (issue 15): 3 nats-server
    /// nodes, a book leader and a hot standby, 2 gateways (edge state in Redis), and the feed
    /// role with the simulated provider and the demo's catalog. Progress on standard error;
    /// then one JSON line per process on standard output (`{"role", "pid", "url"?}`) and
    /// `ready`. The admin key and JWT secret are generated into DIR and kept; each child logs
    /// to DIR/logs/. Ctrl-C or SIGTERM stops the children in order.
    DevCluster {
        /// Where everything lives (NATS files, each process's directory, logs, secrets);
        /// created if missing, reused on the next start.
        #[arg(long)]
        data_dir: PathBuf,
        /// The gateways' shared edge state (keys prefixed per data directory).
        #[arg(long, default_value = sportsbook::dev_cluster::REDIS_DEFAULT)]
        redis: String,
        /// PostgreSQL of the projector's read models (schema derived from the data directory).
        #[arg(long, default_value = sportsbook::dev_cluster::POSTGRES_DEFAULT)]
        postgres: String,
        /// An odds provider's source for the feed role, repeatable, as on `serve`:
        /// NAME=uof+AMQP_URL#EXCHANGE binds to an EXCHANGE that exists, never declaring it.
        /// None: the simulated provider.
        #[arg(long = "feed-source", value_parser = parse_feed_source_text)]
        feed_sources: Vec<String>,
        /// Seed of the simulated provider and the demo simulation (random when omitted).
        #[arg(long)]
        seed: Option<u64>,
        /// Gateways to start (1 to 16), for the gateway scaling benchmark.
        #[arg(long, default_value_t = sportsbook::dev_cluster::GATEWAYS)]
        gateways: usize,
        /// Start a book node again (same node id and directory: it recovers and rejoins as a
        /// follower) when it exits on its own, e.g. when a failover benchmark kills the leader.
        #[arg(long)]
        restart_books: bool,
        /// The gateways' rate limits off, for benchmarks that send everything from one address.
        #[arg(long)]
        no_rate_limits: bool,
    },
    /// Projects a data directory's journal, or with --nats a cluster's replicated journal, into
    /// the read models (bets, statements, audit, report inputs, accounts), exactly once, and
    /// exits when caught up (or keeps following with --follow). Safe beside a running server,
    /// and safe to kill at any moment. With --nats --follow it prints `{"role": "projector",
    /// "pid"}` on standard output once following.
    Projector {
        /// The data directory whose file journal is projected (or --nats).
        #[arg(long, required_unless_present = "nats", conflicts_with = "nats")]
        data_dir: Option<PathBuf>,
        /// Follows the cluster's replicated journal on these NATS servers instead of a data
        /// directory's files (comma-separated `nats://127.0.0.1:4222,...`).
        #[arg(long, value_delimiter = ',')]
        nats: Vec<String>,
        /// With --nats: the journal's JetStream stream (what `sportsbook book` writes).
        #[arg(long, default_value = journal_nats::STREAM_DEFAULT, requires = "nats")]
        stream: String,
        /// With --nats: replicas the journal's stream has (3 on a 3-node NATS cluster).
        #[arg(long, default_value_t = 3, requires = "nats", value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=5))]
        replicas: usize,
        /// With --nats: a data directory whose `snapshots/` holds snapshots of the journal (a
        /// book node's on this machine): a resume replays its book from the newest at or before
        /// the store's checkpoint instead of from position 0.
        #[arg(long)]
        snapshots_from: Option<PathBuf>,
        /// With --nats --follow: address of `/healthz`, `/readyz` and `/metrics`; port 0
        /// picks a free port.
        #[arg(long)]
        listen: Option<SocketAddr>,
        /// `sqlite` (DATA_DIR/projector/read-models.sqlite3), `sqlite:PATH`, or a
        /// `postgres://user@host:port/db` URL.
        #[arg(long, value_parser = sportsbook::projection::parse_store, default_value = "sqlite")]
        store: sportsbook::projection::StoreArg,
        /// The PostgreSQL schema of the models (created if missing).
        #[arg(long, default_value = projector::POSTGRES_SCHEMA_DEFAULT)]
        schema: String,
        /// Empties the models and projects the whole journal again.
        #[arg(long)]
        rebuild: bool,
        /// Keeps following the journal after catching up, until killed.
        #[arg(long)]
        follow: bool,
        /// Rows one transaction collects before it commits.
        #[arg(long, default_value_t = projector::COMMIT_ROWS_DEFAULT)]
        commit_rows: usize,
        /// Prints the SHA-256 of the models' content at the end (equal models, equal digest).
        #[arg(long)]
        digest: bool,
        /// The journal's archive (default DATA_DIR/archive): records no longer in the live
        /// journal are read from there.
        #[arg(long)]
        journal_archive: Option<PathBuf>,
        /// Commits each transaction on this thread instead of on a writer thread while the
        /// next is decided (for comparing the two; the models are the same).
        #[arg(long)]
        no_pipeline: bool,
        /// Writes a changed bet and its legs whole, as at placement, instead of only the
        /// columns an accepted bet can change (for comparing the two; the models are the same).
        /// Only with --data-dir.
        #[arg(long)]
        whole_bet_rows: bool,
    },
}

#[derive(Subcommand)]
enum AdminCommands {
    /// Issues an operator API key and prints it once; only its hash is stored.
    CreateKey {
        #[arg(long)]
        data_dir: PathBuf,
        /// Scopes, comma separated: trading, settlement, feed, compliance, admin (or all).
        #[arg(long, value_delimiter = ',', required = true)]
        scope: Vec<String>,
        /// A name for the key, shown in listings and the audit trail.
        #[arg(long)]
        name: String,
    },
    /// Lists the operator API keys (ids, names, scopes; never the keys).
    ListKeys {
        #[arg(long)]
        data_dir: PathBuf,
    },
}

fn main() -> anyhow::Result<()> {
    let command = Cli::parse().command;
    if matches!(command, Commands::Book { .. } | Commands::Gateway { .. } | Commands::Feed { .. }) {
        // Started by `dev-cluster`: stop when it dies.
        sportsbook::dev_cluster::die_with_parent()?;
    }
    match command {
        Commands::Serve {
            listen,
            data_dir,
            demo,
            seed,
            log_format,
            feed_sources,
            uof_api_url,
            uof_node_id,
            feed_ca,
            uof_interest,
            feed_stale_after,
            feed_on_stale,
            rate_limit_per_address,
            rate_limit_per_credential,
            connections_max,
            header_read_timeout,
            keep_alive_idle_timeout,
            metrics_listen,
            fx_rates_age_max,
            resettlement_window,
            idempotency_window,
            adjustment_limits,
            payments,
            payment_callback_window,
            payment_sandbox_delay_ms,
            payment_sandbox_payouts,
            withdrawal_approval_above,
            kyc_jurisdictions,
            exclusion_register,
            exclusion_register_file,
            monitoring_rules,
            trusted_proxies,
            password_hash_workers,
            projector,
            projector_schema,
            journal_retention,
            journal_archive,
            snapshots_keep,
            snapshot_every,
            edge_state,
            edge_state_prefix,
            edge_state_timeout_ms,
        } => {
            let log_format = match log_format {
                LogFormatArg::Text => LogFormat::Text,
                LogFormatArg::Json => LogFormat::Json,
            };
            let feed_settings = feed_settings(feed_stale_after, feed_on_stale);
            sportsbook::serve::run(ServeOptions {
                listen,
                data_dir,
                demo,
                seed,
                log_format,
                feed_sources,
                feed_settings,
                uof: sportsbook::feeds::UofOptions::from_env(uof_api_url, uof_node_id, feed_ca, uof_interest)?,
                rate_limit_per_address: rate_limit_per_address.0,
                rate_limit_per_credential: rate_limit_per_credential.0,
                connections: ConnectionOptions {
                    connections_max,
                    header_read_timeout: std::time::Duration::from_secs(header_read_timeout),
                    keep_alive_idle_timeout: std::time::Duration::from_secs(keep_alive_idle_timeout),
                    metrics_listen,
                },
                fx_rates_age_max: std::time::Duration::from_secs(fx_rates_age_max),
                resettlement_window_ms: resettlement_window,
                idempotency_window_ms: idempotency_window,
                monitoring_rules,
                adjustment_limits,
                payments: sportsbook::serve::PaymentOptions {
                    callbacks: matches!(payments, PaymentsArg::Callbacks),
                    callback_window: std::time::Duration::from_secs(payment_callback_window.max(1)),
                    sandbox_delay: std::time::Duration::from_millis(payment_sandbox_delay_ms),
                    sandbox_payouts: match payment_sandbox_payouts {
                        SandboxPayoutsArg::Pay => gateway::SandboxPayouts::Pay,
                        SandboxPayoutsArg::Fail => gateway::SandboxPayouts::Fail,
                        SandboxPayoutsArg::Hold => gateway::SandboxPayouts::Hold,
                    },
                    withdrawal_approval_above,
                    kyc_jurisdictions,
                },
                trusted_proxies,
                password_hash_workers: password_hash_workers
                    .map_or_else(gateway::password_hash_workers_default, |workers| workers.max(1)),
                projector: projector.0,
                projector_schema,
                journal_retention: match journal_retention {
                    RetentionArg::Off => engine::JournalRetention::Off,
                    RetentionArg::Archive => engine::JournalRetention::Archive,
                },
                journal_archive,
                snapshots_keep,
                snapshot_every_commands: snapshot_every,
                edge_state: sportsbook::serve::edge_state_config(edge_state, &edge_state_prefix)?,
                edge_state_timeout: std::time::Duration::from_millis(edge_state_timeout_ms),
                exclusion_register: sportsbook::serve::exclusion_register_config(
                    &exclusion_register,
                    exclusion_register_file,
                    std::env::var(sportsbook::serve::EXCLUSION_REGISTER_KEY_ENV).ok(),
                )?,
            })
        }
        Commands::FeedSim {
            provider,
            websocket,
            amqp_url,
            exchange,
            api_listen,
            fixtures,
            seed,
            price_changes_per_second,
            minute_ms,
            drop,
            duplicate,
            reorder,
            delay,
            duration,
            stop_primary_after,
        } => {
            for (name, probability) in
                [("--drop", drop), ("--duplicate", duplicate), ("--reorder", reorder), ("--delay", delay)]
            {
                anyhow::ensure!((0.0..=1.0).contains(&probability), "{name} is a probability in [0, 1]");
            }
            sportsbook::feeds::run_feed_sim(sportsbook::feeds::FeedSimOptions {
                provider,
                websocket,
                amqp_url,
                exchanges: exchange,
                api_listen,
                fixtures,
                seed,
                price_changes_per_second,
                minute: std::time::Duration::from_millis(minute_ms.max(1)),
                chaos: feed::simulator::Chaos { drop, duplicate, reorder, delay },
                duration: duration.map(std::time::Duration::from_secs),
                stop_first_after: stop_primary_after.map(std::time::Duration::from_secs),
            })
        }
        Commands::Loadgen(args) => loadgen::cli::run(&args).map_err(anyhow::Error::from),
        Commands::BenchFailover(args) => loadgen::failover::run(&args).map_err(anyhow::Error::from),
        Commands::BenchCluster { data_dir, rate, duration, gateways, players, markets, no_embedded, out } => {
            sportsbook::bench_cluster::run(&sportsbook::bench_cluster::BenchClusterOptions {
                data_dir,
                rate,
                duration,
                gateways,
                players,
                markets,
                no_embedded,
                out,
            })
        }
        Commands::Admin { command: AdminCommands::CreateKey { data_dir, scope, name } } => {
            let scopes = sportsbook::admin::parse_scopes(&scope)?;
            sportsbook::admin::create_key(&data_dir, &name, scopes)
        }
        Commands::Admin { command: AdminCommands::ListKeys { data_dir } } => sportsbook::admin::list_keys(&data_dir),
        Commands::Demo { data_dir, bets } => {
            let temporary = match &data_dir {
                Some(_) => None,
                None => Some(tempfile_dir()?),
            };
            let dir = data_dir.unwrap_or_else(|| temporary.clone().unwrap_or_default());
            sportsbook::demo::run(&dir, bets)?;
            if let Some(temporary) = temporary {
                std::fs::remove_dir_all(&temporary).with_context(|| format!("removing {}", temporary.display()))?;
            }
            Ok(())
        }
        Commands::Verify { data_dir, archive, store, schema } => {
            sportsbook::verify_with(&data_dir, archive.as_deref(), store.as_ref(), &schema)
        }
        Commands::Book { nats, data_dir, lease, listen, node_id, replicas, snapshot_every, log_format } => {
            sportsbook::book_role::run(sportsbook::book_role::BookRoleOptions {
                nats,
                data_dir,
                lease,
                listen,
                node_id,
                replicas,
                snapshot_every_commands: snapshot_every,
                log_format: match log_format {
                    LogFormatArg::Text => LogFormat::Text,
                    LogFormatArg::Json => LogFormat::Json,
                },
            })
        }
        Commands::Gateway {
            nats,
            listen,
            data_dir,
            gateway_id,
            replicas,
            rate_limit_per_address,
            rate_limit_per_credential,
            edge_state,
            edge_state_prefix,
            edge_state_timeout_ms,
            read_models,
            read_models_schema,
            exclusion_register,
            exclusion_register_file,
            log_format,
        } => sportsbook::gateway_role::run(sportsbook::gateway_role::GatewayRoleOptions {
            nats,
            listen,
            data_dir,
            gateway_id,
            replicas,
            rate_limit_per_address: rate_limit_per_address.0,
            rate_limit_per_credential: rate_limit_per_credential.0,
            edge_state: sportsbook::serve::edge_state_config(edge_state, &edge_state_prefix)?,
            edge_state_timeout: std::time::Duration::from_millis(edge_state_timeout_ms),
            read_models,
            read_models_schema,
            exclusion_register: sportsbook::serve::exclusion_register_config(
                &exclusion_register,
                exclusion_register_file,
                std::env::var(sportsbook::serve::EXCLUSION_REGISTER_KEY_ENV).ok(),
            )?,
            log_format: match log_format {
                LogFormatArg::Text => LogFormat::Text,
                LogFormatArg::Json => LogFormat::Json,
            },
        }),
        Commands::Feed {
            nats,
            listen,
            data_dir,
            node_id,
            lease,
            replicas,
            demo,
            seed,
            feed_sources,
            uof_api_url,
            uof_node_id,
            feed_ca,
            uof_interest,
            feed_stale_after,
            feed_on_stale,
            log_format,
        } => sportsbook::feed_role::run(sportsbook::feed_role::FeedRoleOptions {
            nats,
            listen,
            data_dir,
            node_id,
            replicas,
            lease,
            feed_sources,
            feed_settings: feed_settings(feed_stale_after, feed_on_stale),
            uof: sportsbook::feeds::UofOptions::from_env(uof_api_url, uof_node_id, feed_ca, uof_interest)?,
            demo,
            seed,
            log_format: log_format.into(),
        }),
        Commands::DevCluster {
            data_dir,
            redis,
            postgres,
            feed_sources,
            seed,
            gateways,
            restart_books,
            no_rate_limits,
        } => sportsbook::dev_cluster::run(sportsbook::dev_cluster::DevClusterOptions {
            data_dir,
            redis,
            postgres,
            feed_sources,
            seed,
            gateways,
            restart_books,
            no_rate_limits,
        }),
        Commands::Repair { data_dir, truncate_at } => sportsbook::repair(&data_dir, truncate_at),
        Commands::Projector {
            data_dir,
            nats,
            stream,
            replicas,
            snapshots_from,
            listen,
            store,
            schema,
            rebuild,
            follow,
            commit_rows,
            digest,
            journal_archive,
            no_pipeline,
            whole_bet_rows,
        } => match data_dir {
            Some(_) if listen.is_some() || snapshots_from.is_some() => {
                anyhow::bail!("--listen and --snapshots-from go with --nats (the cluster's projector), not --data-dir")
            }
            Some(data_dir) => sportsbook::projection::run(&sportsbook::projection::ProjectorArgs {
                archive_dir: engine::archive_dir(&data_dir, journal_archive.as_deref()),
                data_dir,
                store,
                schema,
                rebuild,
                follow,
                commit_rows,
                digest,
                pipeline: !no_pipeline,
                whole_bet_rows,
            }),
            None if whole_bet_rows => anyhow::bail!("--whole-bet-rows goes with --data-dir"),
            None => sportsbook::projector_role::run(&sportsbook::projector_role::NatsProjectorArgs {
                nats,
                stream,
                replicas,
                snapshots_from,
                store,
                schema,
                rebuild,
                follow,
                commit_rows,
                digest,
                listen,
                pipeline: !no_pipeline,
            }),
        },
    }
}

/// How providers are watched: `--feed-stale-after` and `--feed-on-stale` of `serve` and `feed`.
fn feed_settings(stale_after_seconds: u64, on_stale: StaleArg) -> gateway::ProviderSettings {
    gateway::ProviderSettings {
        stale_after: std::time::Duration::from_secs(stale_after_seconds.max(1)),
        on_stale: match on_stale {
            StaleArg::Suspend => book::StaleMode::Suspend,
            StaleArg::Delay => book::StaleMode::Delay,
        },
    }
}

impl From<LogFormatArg> for LogFormat {
    fn from(format: LogFormatArg) -> LogFormat {
        match format {
            LogFormatArg::Text => LogFormat::Text,
            LogFormatArg::Json => LogFormat::Json,
        }
    }
}

/// A rate limit flag: `off`, or `N/s` (also plain `N`) with a burst of twice the rate, the
/// ratio of the gateway's defaults.
#[derive(Clone, Copy, Debug)]
struct RateLimitArg(Option<RateLimit>);

fn parse_rate_limit(value: &str) -> Result<RateLimitArg, String> {
    if value == "off" {
        return Ok(RateLimitArg(None));
    }
    let per_second: u32 = value
        .strip_suffix("/s")
        .unwrap_or(value)
        .parse()
        .ok()
        .filter(|&rate| rate > 0)
        .ok_or_else(|| format!("`{value}`: expected `off` or a rate such as `1000/s`"))?;
    Ok(RateLimitArg(Some(RateLimit { per_second, burst: per_second.saturating_mul(2) })))
}

/// A `--feed-source` checked as `serve` parses it, kept as given (passed on to the feed role).
fn parse_feed_source_text(value: &str) -> Result<String, String> {
    value.parse::<sportsbook::feeds::FeedSource>().map(|_| value.to_string())
}

/// `--projector`: a store, or `off`.
#[derive(Clone, Debug)]
struct ProjectorArg(Option<sportsbook::projection::StoreArg>);

fn parse_projector_store(value: &str) -> Result<ProjectorArg, String> {
    if value == "off" {
        return Ok(ProjectorArg(None));
    }
    sportsbook::projection::parse_store(value).map(|store| ProjectorArg(Some(store)))
}

fn tempfile_dir() -> anyhow::Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("sportsbook-demo-{}", std::process::id()));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    Ok(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_limit_flags() {
        assert_eq!(parse_rate_limit("off").expect("off").0, None);
        assert_eq!(parse_rate_limit("50/s").expect("rate").0, Some(RateLimit { per_second: 50, burst: 100 }));
        assert_eq!(parse_rate_limit("7").expect("rate").0, Some(RateLimit { per_second: 7, burst: 14 }));
        for refused in ["0/s", "-1", "fast", "10/m"] {
            assert!(parse_rate_limit(refused).is_err(), "{refused}");
        }
        // The defaults of the flags are the gateway's.
        assert_eq!(parse_rate_limit("1000/s").expect("rate").0, Some(RateLimit::PER_ADDRESS));
        assert_eq!(parse_rate_limit("100/s").expect("rate").0, Some(RateLimit::PER_PRINCIPAL));
    }
}
