//! The PostgreSQL baseline: the usual sportsbook write path of
//! `../shared/baselines/postgres-per-bet`, one transaction per bet, driven with the same
//! schedule and the same bets as the sportsbook.
//!
//! Per bet: lock the wallet row (`SELECT ... FOR UPDATE`), debit it, add the bet's liability to
//! each leg's market row, insert the bet and its two ledger rows, commit with
//! `synchronous_commit = on` (durable before the client hears of it, as our group commit is).
//! The baseline's schema has no prices, no idempotency keys and no limits: its bets take their
//! odds from the same price table as ours, price moves and idempotent retries cost it nothing,
//! and it rejects nothing. Where that makes a difference it favours the baseline.
//!
//! Tables live in their own schema, dropped and created again at the start of each run, so
//! nothing else in the database is touched.

use std::sync::Mutex;

use serde::Serialize;
use tokio::sync::Semaphore;
use tokio_postgres::{Client, NoTls, Statement};

use crate::driver::Target;
use crate::stats::Outcome;
use crate::workload::{BetSpec, PriceTable};
use crate::LoadgenError;

/// The schema the baseline's tables go in.
pub const SCHEMA: &str = "sportsbook_loadgen_baseline";
/// Connections of the pool at most (PostgreSQL's default `max_connections` is 100).
pub const POOL_CONNECTIONS_MAX: usize = 90;
/// Wallet rows at most.
pub const WALLETS_MAX: u32 = 10_000_000;
/// The baseline's `schema.sql`, verbatim: `schema_statements` must produce exactly this for its
/// sizes (100,000 wallets, 1,000 markets), which a test checks.
pub const BASELINE_SCHEMA_SQL: &str = include_str!("../sql/schema.sql");

#[derive(Clone, Debug)]
pub struct PostgresOptions {
    /// A libpq-style connection string, e.g. `host=127.0.0.1 port=5432 user=postgres dbname=test`.
    pub connection: String,
    pub pool_connections: usize,
    pub wallets: u32,
    pub markets: usize,
}

/// The statements of the baseline's `schema.sql` for `wallets` wallets and `markets` markets.
pub fn schema_statements(wallets: u32, markets: usize) -> Vec<String> {
    vec![
        "DROP TABLE IF EXISTS ledger, bets, markets, wallets;".to_string(),
        "CREATE TABLE wallets(id int PRIMARY KEY, balance bigint NOT NULL);".to_string(),
        "CREATE TABLE markets(id int PRIMARY KEY, liability bigint NOT NULL);".to_string(),
        "CREATE TABLE bets(id bigserial PRIMARY KEY, account int NOT NULL, market int NOT NULL, stake bigint NOT NULL, odds int NOT NULL, created timestamptz NOT NULL DEFAULT now());".to_string(),
        "CREATE TABLE ledger(id bigserial PRIMARY KEY, account int NOT NULL, amount bigint NOT NULL, bet_id bigint NOT NULL);".to_string(),
        format!("INSERT INTO wallets SELECT g, 1000000000000 FROM generate_series(1,{wallets}) g;"),
        format!("INSERT INTO markets SELECT g, 0 FROM generate_series(1,{markets}) g;"),
        "VACUUM ANALYZE wallets; VACUUM ANALYZE markets;".to_string(),
    ]
}

#[derive(Clone, Debug, Serialize)]
pub struct PostgresSetupReport {
    pub schema: String,
    pub wallets: u32,
    pub markets: usize,
    pub pool_connections: usize,
    pub server_version: String,
    pub synchronous_commit: String,
    pub seconds: f64,
}

struct Statements {
    lock_wallet: Statement,
    debit_wallet: Statement,
    add_liability: Statement,
    insert_bet: Statement,
    insert_ledger: Statement,
}

struct Connection {
    client: Client,
    statements: Statements,
}

/// A fixed pool: a semaphore counts the idle connections, a stack holds them.
pub struct PostgresTarget {
    idle: Mutex<Vec<Connection>>,
    available: Semaphore,
    options: PostgresOptions,
    prices: std::sync::Arc<PriceTable>,
}

async fn connect(options: &PostgresOptions) -> Result<Client, LoadgenError> {
    let (client, connection) = tokio_postgres::connect(&options.connection, NoTls).await.map_err(|error| {
        LoadgenError::Postgres(format!("connecting to PostgreSQL with \"{}\": {error}", options.connection))
    })?;
    tokio::spawn(async move {
        // Ends when the client is dropped or the server goes away; the client's calls then fail
        // and are counted as transport errors.
        let _ = connection.await;
    });
    // Durable before acknowledged, like the sportsbook's journal.
    client
        .batch_execute(&format!("SET search_path TO {SCHEMA}; SET synchronous_commit TO on;"))
        .await
        .map_err(|error| LoadgenError::Postgres(format!("configuring a connection: {error}")))?;
    Ok(client)
}

fn postgres_error(context: &str) -> impl Fn(tokio_postgres::Error) -> LoadgenError + '_ {
    // The server's own message: tokio-postgres displays a server error only as "db error".
    move |error| match error.as_db_error() {
        Some(db) => LoadgenError::Postgres(format!("{context}: {} ({})", db.message(), db.code().code())),
        None => LoadgenError::Postgres(format!("{context}: {error}")),
    }
}

impl PostgresTarget {
    /// Drops and creates the baseline's schema and opens the pool.
    pub async fn setup(
        options: &PostgresOptions,
        prices: std::sync::Arc<PriceTable>,
    ) -> Result<(PostgresTarget, PostgresSetupReport), LoadgenError> {
        if !(1..=POOL_CONNECTIONS_MAX).contains(&options.pool_connections) {
            return Err(LoadgenError::Config(format!("--pg-pool must be 1 to {POOL_CONNECTIONS_MAX}")));
        }
        if !(1..=WALLETS_MAX).contains(&options.wallets) {
            return Err(LoadgenError::Config(format!("--pg-wallets must be 1 to {WALLETS_MAX}")));
        }
        check_loopback_connection(&options.connection)?;
        let started = std::time::Instant::now();
        let (admin, connection) = tokio_postgres::connect(&options.connection, NoTls).await.map_err(|error| {
            LoadgenError::Postgres(format!("connecting to PostgreSQL with \"{}\": {error}", options.connection))
        })?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        admin
            .batch_execute(&format!(
                "DROP SCHEMA IF EXISTS {SCHEMA} CASCADE; CREATE SCHEMA {SCHEMA}; SET search_path TO {SCHEMA};"
            ))
            .await
            .map_err(postgres_error("creating the baseline schema"))?;
        // One statement at a time: a multi-statement string runs as one implicit transaction,
        // and VACUUM refuses to run inside a transaction.
        for line in schema_statements(options.wallets, options.markets) {
            for statement in line.split(';').map(str::trim).filter(|statement| !statement.is_empty()) {
                admin.execute(statement, &[]).await.map_err(postgres_error("creating the baseline tables"))?;
            }
        }
        let show = |name: &'static str| {
            let admin = &admin;
            async move {
                let row = admin.query_one(&format!("SHOW {name}"), &[]).await.map_err(postgres_error("SHOW"))?;
                Ok::<String, LoadgenError>(row.get(0))
            }
        };
        let server_version = show("server_version").await?;
        let mut idle = Vec::with_capacity(options.pool_connections);
        for _ in 0..options.pool_connections {
            let client = connect(options).await?;
            let statements = prepare(&client).await?;
            idle.push(Connection { client, statements });
        }
        let synchronous_commit = {
            let row = idle[0].client.query_one("SHOW synchronous_commit", &[]).await.map_err(postgres_error("SHOW"))?;
            row.get::<_, String>(0)
        };
        let report = PostgresSetupReport {
            schema: SCHEMA.to_string(),
            wallets: options.wallets,
            markets: options.markets,
            pool_connections: options.pool_connections,
            server_version,
            synchronous_commit,
            seconds: started.elapsed().as_secs_f64(),
        };
        let target = PostgresTarget {
            available: Semaphore::new(idle.len()),
            idle: Mutex::new(idle),
            options: options.clone(),
            prices,
        };
        Ok((target, report))
    }

    /// Bets stored, as a check that the run wrote what it says it did.
    pub async fn count_bets(&self) -> Result<i64, LoadgenError> {
        let client = connect(&self.options).await?;
        let row = client.query_one("SELECT count(*) FROM bets", &[]).await.map_err(postgres_error("counting bets"))?;
        Ok(row.get(0))
    }

    fn take(&self) -> Option<Connection> {
        self.idle.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).pop()
    }

    fn give_back(&self, connection: Connection) {
        self.idle.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).push(connection);
        self.available.add_permits(1);
    }
}

async fn prepare(client: &Client) -> Result<Statements, LoadgenError> {
    let prepare = |sql: &'static str| async move { client.prepare(sql).await.map_err(postgres_error("preparing")) };
    Ok(Statements {
        lock_wallet: prepare("SELECT balance FROM wallets WHERE id = $1 FOR UPDATE").await?,
        debit_wallet: prepare("UPDATE wallets SET balance = balance - $2 WHERE id = $1").await?,
        add_liability: prepare("UPDATE markets SET liability = liability + $2 WHERE id = $1").await?,
        insert_bet: prepare(
            "INSERT INTO bets(account, market, stake, odds, created) VALUES ($1, $2, $3, $4, now()) RETURNING id",
        )
        .await?,
        insert_ledger: prepare("INSERT INTO ledger(account, amount, bet_id) VALUES ($1, -$2::bigint, $3), (0, $2, $3)")
            .await?,
    })
}

/// Refuses a connection string whose host is not this machine.
fn check_loopback_connection(connection: &str) -> Result<(), LoadgenError> {
    let config: tokio_postgres::Config =
        connection.parse().map_err(|error| LoadgenError::Config(format!("--pg \"{connection}\": {error}")))?;
    let loopback = !config.get_hosts().is_empty()
        && config.get_hosts().iter().all(|host| match host {
            tokio_postgres::config::Host::Tcp(name) => {
                name == "localhost" || name.parse::<std::net::IpAddr>().is_ok_and(|address| address.is_loopback())
            }
            #[cfg(unix)]
            tokio_postgres::config::Host::Unix(_) => true,
        });
    if !loopback {
        return Err(LoadgenError::Config(format!(
            "--pg \"{connection}\": the baseline runs against this machine only"
        )));
    }
    Ok(())
}

/// One bet as the baseline's transaction. Odds in hundredths as its `odds int` column; a
/// multiple or system bet stores the product of its legs' odds and adds the liability to every
/// leg's market, in market order so two transactions never wait on each other in a cycle.
struct BaselineBet {
    wallet: i32,
    markets: Vec<i32>,
    stake: i64,
    odds: i32,
    liability: i64,
}

impl BaselineBet {
    fn of(bet: &BetSpec, wallets: u32, prices: &PriceTable) -> BaselineBet {
        let mut odds: i64 = 100;
        for leg in &bet.legs {
            odds = (odds * i64::from(prices.get(*leg) / 100) / 100).min(i64::from(i32::MAX));
        }
        let stake = bet.total_stake_minor() as i64;
        let mut markets: Vec<i32> = bet.legs.iter().map(|leg| leg.market as i32 + 1).collect();
        markets.sort_unstable();
        BaselineBet {
            wallet: (bet.account_draw % u64::from(wallets)) as i32 + 1,
            markets,
            stake,
            odds: odds as i32,
            // The baseline's `(:stake * (:odds - 100)) / 100`.
            liability: stake.saturating_mul(odds - 100) / 100,
        }
    }
}

/// A connection out of the pool; it goes back when the lease ends, even when the bet's future
/// is dropped half-way (a timeout): tokio-postgres then rolls the open transaction back on that
/// connection before anything else runs on it.
struct Lease<'a> {
    target: &'a PostgresTarget,
    connection: Option<Connection>,
}

impl Drop for Lease<'_> {
    fn drop(&mut self) {
        if let Some(connection) = self.connection.take() {
            self.target.give_back(connection);
        }
    }
}

impl Target for PostgresTarget {
    async fn place(&self, bet: BetSpec) -> Outcome {
        let baseline = BaselineBet::of(&bet, self.options.wallets, &self.prices);
        // Waiting for a connection is part of the bet's latency, as in a service with a pool.
        let Ok(permit) = self.available.acquire().await else { return Outcome::Transport };
        permit.forget();
        let mut lease = Lease { target: self, connection: self.take() };
        let Some(connection) = lease.connection.as_mut() else { return Outcome::Transport };
        let outcome = match transaction(connection, &baseline).await {
            Ok(()) => Outcome::Accepted,
            Err(error) => match error.code() {
                // SQLSTATE, e.g. 40P01 deadlock_detected: the baseline's own rejections.
                Some(state) => Outcome::Rejected { code: format!("sqlstate_{}", state.code()) },
                None => Outcome::Transport,
            },
        };
        if connection.client.is_closed() {
            // A broken connection is replaced, so the pool keeps its size.
            if let Ok(client) = connect(&self.options).await {
                if let Ok(statements) = prepare(&client).await {
                    lease.connection = Some(Connection { client, statements });
                }
            }
        }
        outcome
    }
}

async fn transaction(connection: &mut Connection, bet: &BaselineBet) -> Result<(), tokio_postgres::Error> {
    let statements = &connection.statements;
    let transaction = connection.client.transaction().await?;
    transaction.query_one(&statements.lock_wallet, &[&bet.wallet]).await?;
    transaction.execute(&statements.debit_wallet, &[&bet.wallet, &bet.stake]).await?;
    for market in &bet.markets {
        transaction.execute(&statements.add_liability, &[market, &bet.liability]).await?;
    }
    let row =
        transaction.query_one(&statements.insert_bet, &[&bet.wallet, &bet.markets[0], &bet.stake, &bet.odds]).await?;
    let bet_id: i64 = row.get(0);
    transaction.execute(&statements.insert_ledger, &[&bet.wallet, &bet.stake, &bet_id]).await?;
    transaction.commit().await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workload::{BetKind, Leg, PricePolicy};

    #[test]
    fn the_schema_is_the_baselines() {
        let ours = schema_statements(100_000, 1_000).join("\n");
        let theirs: Vec<&str> = BASELINE_SCHEMA_SQL.lines().filter(|line| !line.starts_with("--")).collect();
        assert_eq!(ours, theirs.join("\n").trim_end());
    }

    #[test]
    fn a_multiple_locks_its_markets_in_order() {
        let prices = PriceTable::new(1, 10);
        prices.set(Leg { market: 7, selection: 0 }, 25_000);
        prices.set(Leg { market: 2, selection: 1 }, 20_000);
        let bet = BetSpec {
            sequence: 0,
            account_draw: 100_001,
            kind: BetKind::Multiple,
            legs: vec![Leg { market: 7, selection: 0 }, Leg { market: 2, selection: 1 }],
            stake_minor: 1_000,
            policy: PricePolicy::None,
            retry: false,
        };
        let baseline = BaselineBet::of(&bet, 100_000, &prices);
        assert_eq!(baseline.wallet, 2);
        assert_eq!(baseline.markets, vec![3, 8]);
        assert_eq!(baseline.odds, 500);
        assert_eq!(baseline.liability, 4_000);
    }

    #[test]
    fn only_local_databases() {
        assert!(check_loopback_connection("host=127.0.0.1 port=5432 user=postgres dbname=test").is_ok());
        assert!(check_loopback_connection("host=localhost dbname=test").is_ok());
        assert!(check_loopback_connection("host=db.example.com dbname=test").is_err());
        assert!(check_loopback_connection("dbname=test").is_err(), "no host named");
    }
}
