//! The embedded store: one SQLite file inside the data directory (`rusqlite`, SQLite built in).
//!
//! WAL mode with `synchronous = NORMAL`: a commit is atomic and the file is never left
//! inconsistent; a power loss may drop the last commits, which the projector then applies again
//! from the older checkpoint (rows and checkpoint go together, so nothing is applied twice).

use std::path::Path;

use journal::Position;
use rusqlite::types::{ToSqlOutput, ValueRef as SqlValueRef};
use rusqlite::{params_from_iter, Connection, OptionalExtension, ToSql, TransactionBehavior};

use crate::changes::{Changes, ValueRef};
use crate::schema::{self, Merge, Type, Value, MIGRATIONS, MIGRATIONS_TABLE, TABLES};
use crate::store::{check_previous, conflict_clause, update_assignments, Store};
use crate::ProjectorError;

/// The store's file name inside `DATA_DIR/projector/`.
pub const SQLITE_FILE_NAME: &str = "read-models.sqlite3";

/// The writer's page cache (KiB; SQLite's default is 2,000 KiB). The indexes keyed by account
/// (`bets_account`, `transfers_account`, `audit_account`) take each row at the end of its
/// account's range, so a commit touches a page per active account in each (10,000 players:
/// some 30,000 pages, 120 MB), besides the recent bets a settlement updates: with less cache
/// than that, most of them are read back from the OS on every commit (a fifth of the commit
/// thread's time in the soak at 64 MiB). SQLite fills it only as pages are touched, and it
/// counts in the process's memory: 256 MiB took the soak's peak to 998 MiB (aim: 1 GiB) for
/// only a third fewer reads, so 128 MiB.
pub const SQLITE_WRITER_CACHE_KIB: i64 = 128 * 1024;

/// How long a statement waits for a lock another connection holds before failing.
pub const SQLITE_BUSY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

#[derive(Debug)]
pub struct SqliteStore {
    conn: Connection,
}

fn error(context: &str) -> impl Fn(rusqlite::Error) -> ProjectorError + '_ {
    move |source| ProjectorError::Store(format!("sqlite: {context}: {source}"))
}

/// How SQLite holds a value: booleans as 0 and 1.
fn sql_value(value: ValueRef<'_>) -> SqlValueRef<'_> {
    match value {
        ValueRef::Null => SqlValueRef::Null,
        ValueRef::Bool(value) => SqlValueRef::Integer(i64::from(value)),
        ValueRef::Int(value) => SqlValueRef::Integer(value),
        ValueRef::Text(value) => SqlValueRef::Text(value.as_bytes()),
    }
}

impl ToSql for Value {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::Borrowed(sql_value(ValueRef::from(self))))
    }
}

impl ToSql for ValueRef<'_> {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::Borrowed(sql_value(*self)))
    }
}

impl SqliteStore {
    /// Opens (creating if needed) the store file and applies the migrations it lacks.
    pub fn open(path: &Path) -> Result<SqliteStore, ProjectorError> {
        if let Some(parent) = path.parent().filter(|parent| !parent.as_os_str().is_empty()) {
            // Owner-only, like the rest of the data directory: the models hold usernames and
            // every player's money.
            std::os::unix::fs::DirBuilderExt::mode(std::fs::DirBuilder::new().recursive(true), 0o700)
                .create(parent)
                .map_err(|source| ProjectorError::Store(format!("creating {}: {source}", parent.display())))?;
        }
        // SQLite creates its files 0644 and gives the `-wal` and `-shm` files the mode of the
        // database file: create (or tighten) that one owner-only first.
        private_file(path).map_err(|source| ProjectorError::Store(format!("creating {}: {source}", path.display())))?;
        let conn = Connection::open(path).map_err(error("open"))?;
        conn.pragma_update(None, "journal_mode", "WAL").map_err(error("journal_mode"))?;
        conn.pragma_update(None, "synchronous", "NORMAL").map_err(error("synchronous"))?;
        conn.pragma_update(None, "cache_size", -SQLITE_WRITER_CACHE_KIB).map_err(error("cache_size"))?;
        // A reader (the gateway, a test) may hold the file for a moment; wait rather than fail.
        conn.busy_timeout(SQLITE_BUSY_TIMEOUT).map_err(error("busy_timeout"))?;
        conn.set_prepared_statement_cache_capacity(32);
        let mut store = SqliteStore { conn };
        store.migrate()?;
        Ok(store)
    }

    /// A reader's connection to an existing store (the projector creates and migrates it):
    /// never creates the file, refuses writes (`query_only`), and waits out the writer's locks.
    /// In WAL mode a reader sees the last committed transaction and never blocks the writer.
    pub fn open_reader(path: &Path) -> Result<SqliteStore, ProjectorError> {
        use rusqlite::OpenFlags;
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX | OpenFlags::SQLITE_OPEN_URI;
        let conn = Connection::open_with_flags(path, flags).map_err(error("open reader"))?;
        conn.busy_timeout(SQLITE_BUSY_TIMEOUT).map_err(error("busy_timeout"))?;
        conn.pragma_update(None, "query_only", true).map_err(error("query_only"))?;
        conn.set_prepared_statement_cache_capacity(32);
        Ok(SqliteStore { conn })
    }

    fn migrate(&mut self) -> Result<(), ProjectorError> {
        self.conn
            .execute_batch(&format!(
                "CREATE TABLE IF NOT EXISTS {MIGRATIONS_TABLE} (version BIGINT PRIMARY KEY, name TEXT NOT NULL)"
            ))
            .map_err(error("migrations table"))?;
        for (version, name, sql) in MIGRATIONS {
            // Checked again under the write lock: another process may be migrating too.
            let tx = self
                .conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(error("begin migration"))?;
            // Each migration once, by its own number (not "every number above the newest
            // applied"): numbers taken by changes made side by side may land in any order.
            let applied: i64 = tx
                .query_row(&format!("SELECT COUNT(*) FROM {MIGRATIONS_TABLE} WHERE version = ?1"), [version], |row| {
                    row.get(0)
                })
                .map_err(error("schema version"))?;
            if applied > 0 {
                continue;
            }
            for statement in schema::statements(sql, schema::Backend::Sqlite) {
                tx.execute_batch(statement).map_err(error("migration"))?;
            }
            tx.execute(&format!("INSERT INTO {MIGRATIONS_TABLE} (version, name) VALUES (?1, ?2)"), (version, name))
                .map_err(error("record migration"))?;
            tx.commit().map_err(error("commit migration"))?;
        }
        Ok(())
    }
}

impl Store for SqliteStore {
    fn kind(&self) -> &'static str {
        "sqlite"
    }

    fn schema_version(&mut self) -> Result<i64, ProjectorError> {
        self.conn
            .query_row(&format!("SELECT COALESCE(MAX(version), 0) FROM {MIGRATIONS_TABLE}"), [], |row| row.get(0))
            .map_err(error("schema version"))
    }

    fn commit(&mut self, changes: &Changes, previous: Option<Position>) -> Result<(), ProjectorError> {
        // IMMEDIATE: the write lock from the start, so the checkpoint read below stays true.
        let tx = self.conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(error("begin"))?;
        let found: Option<i64> = tx
            .query_row("SELECT next_position FROM projector_checkpoint WHERE id = 1", [], |row| row.get(0))
            .optional()
            .map_err(error("read checkpoint"))?;
        check_previous(found, previous)?;
        for (table, rows) in changes.tables() {
            if rows.is_empty() {
                continue;
            }
            let update = table.merge == Merge::Update;
            let sql = if update {
                format!("UPDATE {} {}", table.name, update_assignments(table, &|index| format!("?{index}")))
            } else {
                let placeholders =
                    (1..=table.columns.len()).map(|index| format!("?{index}")).collect::<Vec<_>>().join(", ");
                format!(
                    "INSERT INTO {} ({}) VALUES ({placeholders}){}",
                    table.name,
                    table.column_list(),
                    conflict_clause(table)
                )
            };
            let mut statement = tx.prepare_cached(&sql).map_err(error("prepare insert"))?;
            for row in rows {
                for (index, value) in row.values().enumerate() {
                    statement.raw_bind_parameter(index + 1, value).map_err(error(table.name))?;
                }
                let changed = statement.raw_execute().map_err(error(table.name))?;
                // An update of a row the store does not hold would lose it without a word.
                if update && changed != 1 {
                    return Err(ProjectorError::Store(format!(
                        "sqlite: an update of {} changed {changed} rows, not 1: {:?}",
                        table.name,
                        &row.to_values()[..table.key]
                    )));
                }
            }
        }
        tx.commit().map_err(error("commit"))
    }

    fn clear(&mut self) -> Result<(), ProjectorError> {
        let tx = self.conn.transaction().map_err(error("begin"))?;
        for table in TABLES {
            tx.execute(&format!("DELETE FROM {}", table.name), []).map_err(error("clear"))?;
        }
        tx.commit().map_err(error("commit clear"))
    }

    fn placeholder(&self, index: usize) -> String {
        format!("?{index}")
    }

    fn begin_read(&mut self) -> Result<(), ProjectorError> {
        self.conn.execute_batch("BEGIN DEFERRED").map_err(error("begin read"))
    }

    fn end_read(&mut self) -> Result<(), ProjectorError> {
        self.conn.execute_batch("COMMIT").map_err(error("end read"))
    }

    fn select_typed(
        &mut self,
        name: &str,
        types: &[Type],
        sql: &str,
        params: &[Value],
    ) -> Result<Vec<Vec<Value>>, ProjectorError> {
        let mut statement = self.conn.prepare_cached(sql).map_err(error("prepare select"))?;
        let mut rows = statement.query(params_from_iter(params.iter())).map_err(error("select"))?;
        let mut out = Vec::new();
        while let Some(row) = rows.next().map_err(error("select"))? {
            let mut values = Vec::with_capacity(types.len());
            for (index, ty) in types.iter().enumerate() {
                let value = match (row.get_ref(index).map_err(error("read"))?, *ty) {
                    (SqlValueRef::Null, _) => Value::Null,
                    (SqlValueRef::Integer(value), Type::Bool) => Value::Bool(value != 0),
                    (SqlValueRef::Integer(value), Type::Int) => Value::Int(value),
                    (SqlValueRef::Text(text), Type::Text) => Value::from(String::from_utf8_lossy(text).into_owned()),
                    (other, _) => {
                        return Err(ProjectorError::Store(format!("sqlite: column {index} of {name} holds {other:?}")))
                    }
                };
                values.push(value);
            }
            out.push(values);
        }
        Ok(out)
    }
}

/// Creates `path` with mode 0600 if missing (never truncating it), and makes an existing one 0600.
fn private_file(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    std::fs::OpenOptions::new().create(true).truncate(false).write(true).mode(0o600).open(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
}
