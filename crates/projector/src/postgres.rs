//! The PostgreSQL store (cluster mode): the same tables in a schema of its own, written with one
//! multi-row statement per table and chunk (`INSERT … SELECT * FROM unnest($1::BIGINT[], …)`),
//! all of a commit in one transaction. The client is `tokio-postgres` on a private
//! current-thread runtime: the projector is a plain thread and blocks on each call.

use journal::Position;
use tokio::runtime::Runtime;
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, NoTls};

use crate::changes::{Changes, ValueRef};
use crate::schema::{self, Merge, Type, Value, MIGRATIONS, MIGRATIONS_TABLE, TABLES};
use crate::store::{check_previous, conflict_clause, Store, ROWS_PER_STATEMENT_MAX};
use crate::ProjectorError;

/// The schema the models live in unless told otherwise.
pub const POSTGRES_SCHEMA_DEFAULT: &str = "projector";

pub struct PostgresStore {
    runtime: Runtime,
    client: Client,
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.debug_struct("PostgresStore").finish_non_exhaustive()
    }
}

fn error(context: &str) -> impl Fn(tokio_postgres::Error) -> ProjectorError + '_ {
    move |source| ProjectorError::Store(format!("postgres: {context}: {source}"))
}

/// The connection error with its cause (tokio-postgres keeps the reason, e.g. "Connection
/// refused", in the source).
fn cannot_connect(url: &str, error: &tokio_postgres::Error) -> ProjectorError {
    let cause = std::error::Error::source(error).map(|cause| format!(": {cause}")).unwrap_or_default();
    ProjectorError::Store(format!("postgres: cannot connect to {url}: {error}{cause}"))
}

/// A schema name we accept: it is spliced into SQL.
fn valid_schema(schema: &str) -> bool {
    !schema.is_empty()
        && schema.len() <= 63
        && schema.bytes().all(|byte| byte.is_ascii_lowercase() || byte.is_ascii_digit() || byte == b'_')
        && !schema.as_bytes()[0].is_ascii_digit()
}

impl PostgresStore {
    /// A connection on a runtime of its own, for `schema` (checked, not yet selected).
    fn session(url: &str, schema: &str) -> Result<PostgresStore, ProjectorError> {
        if !valid_schema(schema) {
            return Err(ProjectorError::Store(format!(
                "postgres: schema `{schema}` must be lower-case letters, digits and `_`"
            )));
        }
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|source| ProjectorError::Store(format!("postgres: runtime: {source}")))?;
        let (client, connection) =
            runtime.block_on(tokio_postgres::connect(url, NoTls)).map_err(|source| cannot_connect(url, &source))?;
        runtime.spawn(async move {
            // Ends when the client is dropped; an error surfaces on the next call.
            let _ = connection.await;
        });
        Ok(PostgresStore { runtime, client })
    }

    /// Connects (`postgres://user@host:port/db`), creates `schema` if missing, and applies the
    /// migrations it lacks there.
    pub fn connect(url: &str, schema: &str) -> Result<PostgresStore, ProjectorError> {
        let mut store = PostgresStore::session(url, schema)?;
        store.batch(&format!("CREATE SCHEMA IF NOT EXISTS {schema}; SET search_path TO {schema}"))?;
        store.migrate()?;
        Ok(store)
    }

    /// A read-only connection to models that exist (`sportsbook verify`): creates nothing,
    /// applies no migration, and the session refuses writes (`default_transaction_read_only`).
    pub fn connect_reader(url: &str, schema: &str) -> Result<PostgresStore, ProjectorError> {
        let mut store = PostgresStore::session(url, schema)?;
        store.batch(&format!("SET default_transaction_read_only = on; SET search_path TO {schema}"))?;
        let found = store.select_typed(
            "schemata",
            &[Type::Int],
            "SELECT COUNT(*) FROM information_schema.schemata WHERE schema_name = $1",
            &[Value::from(schema.to_owned())],
        )?;
        if found.first().and_then(|row| row.first()).and_then(Value::int) != Some(1) {
            return Err(ProjectorError::Store(format!("postgres: no schema `{schema}` (no read models there)")));
        }
        Ok(store)
    }

    /// Drops `schema` and everything in it (tests, and an operator starting over).
    pub fn drop_schema(url: &str, schema: &str) -> Result<(), ProjectorError> {
        if !valid_schema(schema) {
            return Err(ProjectorError::Store(format!("postgres: bad schema name `{schema}`")));
        }
        Self::execute(url, &format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
    }

    /// Runs `sql` (one or more statements) on a connection of its own to `url`, outside any
    /// store: what the store's own API does not do (`drop_schema`; tests that change a column).
    pub fn execute(url: &str, sql: &str) -> Result<(), ProjectorError> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|source| ProjectorError::Store(format!("postgres: runtime: {source}")))?;
        runtime.block_on(async {
            let (client, connection) =
                tokio_postgres::connect(url, NoTls).await.map_err(|source| cannot_connect(url, &source))?;
            let connection = tokio::spawn(connection);
            client.batch_execute(sql).await.map_err(error("statement"))?;
            drop(client);
            let _ = connection.await;
            Ok(())
        })
    }

    fn batch(&mut self, sql: &str) -> Result<(), ProjectorError> {
        self.runtime.block_on(self.client.batch_execute(sql)).map_err(error("statement"))
    }

    fn migrate(&mut self) -> Result<(), ProjectorError> {
        self.batch(&format!(
            "CREATE TABLE IF NOT EXISTS {MIGRATIONS_TABLE} (version BIGINT PRIMARY KEY, name TEXT NOT NULL)"
        ))?;
        for (version, name, sql) in MIGRATIONS {
            let client = &mut self.client;
            self.runtime.block_on(async {
                let tx = client.transaction().await.map_err(error("begin migration"))?;
                // Checked again under the lock: another process may be migrating too.
                tx.batch_execute(&format!("LOCK TABLE {MIGRATIONS_TABLE} IN SHARE ROW EXCLUSIVE MODE"))
                    .await
                    .map_err(error("lock migrations"))?;
                // Each migration once, by its own number (numbers taken by changes made side
                // by side may land in any order).
                let applied: i64 = tx
                    .query_one(&format!("SELECT COUNT(*) FROM {MIGRATIONS_TABLE} WHERE version = $1"), &[version])
                    .await
                    .map_err(error("schema version"))?
                    .get(0);
                if applied > 0 {
                    return Ok(());
                }
                for statement in schema::statements(sql, schema::Backend::Postgres) {
                    tx.batch_execute(statement).await.map_err(error("migration"))?;
                }
                tx.execute(
                    &format!("INSERT INTO {MIGRATIONS_TABLE} (version, name) VALUES ($1, $2)"),
                    &[version, name],
                )
                .await
                .map_err(error("record migration"))?;
                tx.commit().await.map_err(error("commit migration"))
            })?;
        }
        Ok(())
    }
}

fn sql_type(ty: Type) -> &'static str {
    match ty {
        Type::Int => "BIGINT",
        Type::Text => "TEXT",
        Type::Bool => "BOOLEAN",
    }
}

/// One column of a chunk as a typed array parameter.
fn column_array(rows: &[Vec<ValueRef<'_>>], index: usize, ty: Type) -> Box<dyn ToSql + Sync + Send> {
    match ty {
        Type::Int => Box::new(rows.iter().map(|row| row[index].int()).collect::<Vec<Option<i64>>>()),
        Type::Text => {
            Box::new(rows.iter().map(|row| row[index].text().map(str::to_owned)).collect::<Vec<Option<String>>>())
        }
        Type::Bool => Box::new(rows.iter().map(|row| row[index].bool()).collect::<Vec<Option<bool>>>()),
    }
}

impl Store for PostgresStore {
    fn kind(&self) -> &'static str {
        "postgres"
    }

    fn schema_version(&mut self) -> Result<i64, ProjectorError> {
        let row = self
            .runtime
            .block_on(self.client.query_one(&format!("SELECT COALESCE(MAX(version), 0) FROM {MIGRATIONS_TABLE}"), &[]))
            .map_err(error("schema version"))?;
        Ok(row.get(0))
    }

    fn commit(&mut self, changes: &Changes, previous: Option<Position>) -> Result<(), ProjectorError> {
        let client = &mut self.client;
        self.runtime.block_on(async {
            let tx = client.transaction().await.map_err(error("begin"))?;
            // One writer at a time: the lock makes the checkpoint read below stay true until
            // this transaction ends (even when there is no checkpoint row yet).
            tx.batch_execute("LOCK TABLE projector_checkpoint IN SHARE ROW EXCLUSIVE MODE")
                .await
                .map_err(error("lock checkpoint"))?;
            let found = tx
                .query_opt("SELECT next_position FROM projector_checkpoint WHERE id = 1", &[])
                .await
                .map_err(error("read checkpoint"))?
                .map(|row| row.get::<_, i64>(0));
            check_previous(found, previous)?;
            for (table, rows) in changes.tables() {
                if rows.is_empty() {
                    continue;
                }
                let arrays = table
                    .columns
                    .iter()
                    .enumerate()
                    .map(|(index, column)| format!("${}::{}[]", index + 1, sql_type(column.ty)))
                    .collect::<Vec<_>>()
                    .join(", ");
                let update = table.merge == Merge::Update;
                let sql = if update {
                    // The key and the new values as one array per column, joined by key.
                    let set = table.columns[table.key..]
                        .iter()
                        .map(|column| format!("{0} = u.{0}", column.name))
                        .collect::<Vec<_>>()
                        .join(", ");
                    let key = table.columns[..table.key]
                        .iter()
                        .map(|column| format!("{0}.{1} = u.{1}", table.name, column.name))
                        .collect::<Vec<_>>()
                        .join(" AND ");
                    format!(
                        "UPDATE {} SET {set} FROM unnest({arrays}) AS u ({}) WHERE {key}",
                        table.name,
                        table.column_list()
                    )
                } else {
                    format!(
                        "INSERT INTO {} ({}) SELECT * FROM unnest({arrays}){}",
                        table.name,
                        table.column_list(),
                        conflict_clause(table)
                    )
                };
                let statement = tx.prepare(&sql).await.map_err(error("prepare insert"))?;
                for chunk in rows.chunks(ROWS_PER_STATEMENT_MAX) {
                    let chunk: Vec<Vec<ValueRef<'_>>> = chunk.iter().map(|row| row.values().collect()).collect();
                    let params: Vec<Box<dyn ToSql + Sync + Send>> = table
                        .columns
                        .iter()
                        .enumerate()
                        .map(|(index, column)| column_array(&chunk, index, column.ty))
                        .collect();
                    let params: Vec<&(dyn ToSql + Sync)> =
                        params.iter().map(|param| param.as_ref() as &(dyn ToSql + Sync)).collect();
                    let changed = tx.execute(&statement, &params).await.map_err(error(table.name))?;
                    // An update of a row the store does not hold would lose it without a word.
                    if update && changed != chunk.len() as u64 {
                        return Err(ProjectorError::Store(format!(
                            "postgres: an update of {} changed {changed} rows of {}",
                            table.name,
                            chunk.len()
                        )));
                    }
                }
            }
            tx.commit().await.map_err(error("commit"))
        })
    }

    fn clear(&mut self) -> Result<(), ProjectorError> {
        let names = TABLES.iter().map(|table| table.name).collect::<Vec<_>>().join(", ");
        self.batch(&format!("TRUNCATE {names}"))
    }

    fn placeholder(&self, index: usize) -> String {
        format!("${index}")
    }

    /// The database's collation may order text otherwise (`en_US`: "a" before "B").
    fn bytewise(&self, column: &str) -> String {
        format!("{column} COLLATE \"C\"")
    }

    fn select_typed(
        &mut self,
        name: &str,
        types: &[Type],
        sql: &str,
        params: &[Value],
    ) -> Result<Vec<Vec<Value>>, ProjectorError> {
        let params: Vec<Box<dyn ToSql + Sync + Send>> = params
            .iter()
            .map(|value| -> Box<dyn ToSql + Sync + Send> {
                match value {
                    Value::Null => Box::new(Option::<i64>::None),
                    Value::Bool(value) => Box::new(*value),
                    Value::Int(value) => Box::new(*value),
                    Value::Text(value) => Box::new(value.clone()),
                }
            })
            .collect();
        let params: Vec<&(dyn ToSql + Sync)> =
            params.iter().map(|param| param.as_ref() as &(dyn ToSql + Sync)).collect();
        let rows = self.runtime.block_on(self.client.query(sql, &params)).map_err(error("select"))?;
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            let mut values = Vec::with_capacity(types.len());
            for (index, ty) in types.iter().enumerate() {
                let value = match ty {
                    Type::Int => row.try_get::<_, Option<i64>>(index).map(Value::from),
                    Type::Text => row.try_get::<_, Option<String>>(index).map(Value::from),
                    Type::Bool => row.try_get::<_, Option<bool>>(index).map(Value::from),
                }
                .map_err(error(name))?;
                values.push(value);
            }
            out.push(values);
        }
        Ok(out)
    }
}
