//! Migrating an existing store: a SQLite store written before the `WITHOUT ROWID` migration
//! (keyed tables with a rowid), or before migration 6 (integer keys beside a hidden rowid),
//! opened by this build is rebuilt by it, keeping every row, and the projector resumes on it;
//! a store before migration 8 gets its `statements` rows folded into `transfers`, and one before
//! migration 9 its `first_replies` appended in order beside a unique index on the key.

use projector::schema::{
    self, Backend as SchemaBackend, FIRST_REPLIES, MIGRATIONS, MIGRATIONS_TABLE, STATEMENTS, TABLES, TRANSFERS,
};
use projector::{digest, SqliteStore, Store};
use std::path::{Path, PathBuf};

use rusqlite::Connection;

use crate::{finished, project};

/// The tables migration 5 rebuilds without a rowid.
const WITHOUT_ROWID: [&str; 6] =
    ["bet_legs", "bet_history", "statements", "daily_totals", "account_limits", "first_replies"];

fn table_sql(conn: &Connection, name: &str) -> String {
    conn.query_row("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?1", [name], |row| row.get(0))
        .unwrap_or_else(|error| panic!("{name}: {error}"))
}

/// A store as an older build left it: every migration before `below` applied (no rows yet).
fn older_store(path: &std::path::Path, below: i64) -> Connection {
    let conn = Connection::open(path).expect("open");
    conn.execute_batch(&format!("CREATE TABLE {MIGRATIONS_TABLE} (version BIGINT PRIMARY KEY, name TEXT NOT NULL)"))
        .expect("migrations table");
    for (version, name, sql) in MIGRATIONS.iter().filter(|(version, _, _)| *version < below) {
        for statement in schema::statements(sql, SchemaBackend::Sqlite) {
            conn.execute_batch(statement).expect("migration");
        }
        conn.execute(&format!("INSERT INTO {MIGRATIONS_TABLE} (version, name) VALUES (?1, ?2)"), (version, name))
            .expect("record migration");
    }
    conn
}

/// The columns `transfers` had before migration 8 folded the statements into it.
const TRANSFER_COLUMNS_BEFORE_8: usize = 13;

/// The kind (`table`, `view`) of `name` in the store, if it has it.
fn kind_of(conn: &Connection, name: &str) -> Option<String> {
    conn.query_row("SELECT type FROM sqlite_master WHERE name = ?1", [name], |row| row.get(0)).ok()
}

/// Copies the latest store's rows into the tables `conn` has (a store before migration 8 gets
/// `transfers` without its statement columns and the `statements` table from the latest
/// store's view); returns the tables it lacks (made by later migrations: an older build wrote
/// no rows for them).
fn copy_rows(conn: &Connection, latest_path: &std::path::Path) -> Vec<&'static str> {
    let (tables, later): (Vec<&str>, Vec<&str>) =
        TABLES.iter().map(|table| table.name).partition(|name| kind_of(conn, name).as_deref() == Some("table"));
    let before_8 = kind_of(conn, "statements").as_deref() == Some("table");
    copy_tables(conn, latest_path, &tables, before_8);
    later
}

fn copy_tables(conn: &Connection, latest_path: &std::path::Path, names: &[&str], before_8: bool) {
    conn.execute("ATTACH DATABASE ?1 AS latest", [latest_path.to_str().expect("utf-8")]).expect("attach");
    for table in TABLES.iter().filter(|table| names.contains(&table.name)) {
        let columns = if before_8 && table.name == TRANSFERS.name {
            TRANSFERS.columns[..TRANSFER_COLUMNS_BEFORE_8]
                .iter()
                .map(|column| column.name)
                .collect::<Vec<_>>()
                .join(", ")
        } else {
            table.column_list()
        };
        conn.execute_batch(&format!("INSERT INTO main.{0} ({columns}) SELECT {columns} FROM latest.{0}", table.name))
            .expect("copy rows");
    }
    if before_8 {
        let columns = STATEMENTS.column_list();
        conn.execute_batch(&format!("INSERT INTO main.statements ({columns}) SELECT {columns} FROM latest.statements"))
            .expect("copy statements");
    }
    conn.execute_batch("DETACH DATABASE latest").expect("detach");
}

/// The shared workload projected into a fresh store of this build, `DIR/latest.sqlite3`, and
/// the digest of its models.
fn latest_store(dir: &Path) -> (PathBuf, String) {
    let path = dir.join("latest.sqlite3");
    let mut latest = project(finished().dir.path(), Box::new(SqliteStore::open(&path).expect("open")), false);
    let expected = digest(latest.store()).expect("digest");
    (path, expected)
}

/// The projector resumes on the (migrated) store at `path` where its checkpoint says, with
/// nothing left to do and the models `expected`.
fn resumes_with(path: &Path, expected: &str) {
    let mut resumed = project(finished().dir.path(), Box::new(SqliteStore::open(path).expect("open")), false);
    assert_eq!(resumed.lag().expect("lag"), 0);
    assert_eq!(digest(resumed.store()).expect("digest"), expected);
}

/// Opens (and so migrates) an older store, then gives the tables later migrations made the
/// latest store's rows: they are empty after the migration (this build's projector fills them
/// from the journal on a `--rebuild`), and the rest of the comparison is about the rows kept.
fn migrate_then_fill(old_path: &std::path::Path, latest_path: &std::path::Path, later: &[&str]) -> SqliteStore {
    drop(SqliteStore::open(old_path).expect("open and migrate"));
    copy_tables(&Connection::open(old_path).expect("open"), latest_path, later, false);
    SqliteStore::open(old_path).expect("open")
}

#[test]
fn a_store_before_migration_8_gets_its_statements_folded_into_transfers() {
    let scratch = tempfile::tempdir().expect("tempdir");
    let (latest_path, expected) = latest_store(scratch.path());
    let statements = SqliteStore::open(&latest_path).expect("open").rows(&STATEMENTS).expect("statements");
    assert!(statements.len() > 100, "a workload with statements: {}", statements.len());
    let old_path = scratch.path().join("old.sqlite3");
    {
        let conn = older_store(&old_path, 8);
        assert!(table_sql(&conn, "statements").starts_with("CREATE TABLE"), "a table before migration 8");
        assert!(copy_rows(&conn, &latest_path).is_empty(), "migration 7 made its tables before 8");
        let copied: i64 = conn.query_row("SELECT COUNT(*) FROM statements", [], |row| row.get(0)).expect("count");
        assert_eq!(copied as usize, statements.len());
    }
    let mut store = SqliteStore::open(&old_path).expect("open and migrate");
    assert_eq!(store.schema_version().expect("version"), schema::SCHEMA_VERSION);
    assert_eq!(digest(&mut store).expect("digest"), expected, "every transfer has its statement columns");
    assert_eq!(store.rows(&STATEMENTS).expect("statements"), statements, "the view shows the rows the table held");
    drop(store);
    {
        let conn = Connection::open(&old_path).expect("open");
        let kind: String = conn
            .query_row("SELECT type FROM sqlite_master WHERE name = 'statements'", [], |row| row.get(0))
            .expect("statements");
        assert_eq!(kind, "view");
        assert!(index_names(&conn).iter().any(|name| name == "transfers_account"));
        // A page of a statement is one range of the partial index, newest first, no sort.
        let plan: Vec<String> = conn
            .prepare(
                "EXPLAIN QUERY PLAN SELECT transfer, amount FROM statements WHERE account = ?1 AND transfer < ?2 \
                 ORDER BY transfer DESC LIMIT 20",
            )
            .and_then(|mut statement| statement.query_map((1, 1_000_000), |row| row.get::<_, String>(3))?.collect())
            .expect("plan");
        assert!(plan.iter().any(|step| step.contains("USING INDEX transfers_account")), "{plan:?}");
        assert!(!plan.iter().any(|step| step.contains("TEMP B-TREE")), "{plan:?}");
    }
    resumes_with(&old_path, &expected);
}

fn index_names(conn: &Connection) -> Vec<String> {
    conn.prepare("SELECT name FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL ORDER BY name")
        .and_then(|mut statement| statement.query_map([], |row| row.get(0))?.collect())
        .expect("indexes")
}

#[test]
fn a_sqlite_store_before_migration_6_gets_integer_rowid_keys_and_an_audit_without_rowid() {
    let scratch = tempfile::tempdir().expect("tempdir");
    let (latest_path, expected) = latest_store(scratch.path());
    let old_path = scratch.path().join("old.sqlite3");
    let later;
    {
        let conn = older_store(&old_path, 6);
        for name in ["bets", "transfers", "accounts"] {
            assert!(table_sql(&conn, name).contains("id BIGINT PRIMARY KEY"), "{name} before migration 6");
        }
        later = copy_rows(&conn, &latest_path);
    }
    let mut store = migrate_then_fill(&old_path, &latest_path, &later);
    assert_eq!(store.schema_version().expect("version"), schema::SCHEMA_VERSION);
    assert_eq!(digest(&mut store).expect("digest"), expected, "every row kept");
    drop(store);
    {
        let conn = Connection::open(&old_path).expect("open");
        for name in ["bets", "transfers", "accounts"] {
            assert!(table_sql(&conn, name).contains("id INTEGER PRIMARY KEY"), "{name}: {}", table_sql(&conn, name));
            // The id is the rowid: no separate unique index on it.
            let autoindexes: i64 = conn
                .query_row(
                    "SELECT COUNT(*) FROM sqlite_master WHERE type = 'index' AND tbl_name = ?1 AND sql IS NULL",
                    [name],
                    |row| row.get(0),
                )
                .expect("autoindexes");
            assert_eq!(autoindexes, 0, "{name} has no key index beside its rows");
        }
        assert!(table_sql(&conn, "audit").ends_with("WITHOUT ROWID"), "{}", table_sql(&conn, "audit"));
        let indexes = index_names(&conn);
        for index in [
            "bets_account",
            "bets_placed_at",
            "bets_settled_at",
            "bets_status",
            "transfers_at",
            "accounts_username",
            "audit_account",
            "audit_at",
            "audit_command",
        ] {
            assert!(indexes.iter().any(|name| name == index), "{index} rebuilt: {indexes:?}");
        }
    }
    resumes_with(&old_path, &expected);
}

#[test]
fn an_older_sqlite_store_is_rebuilt_without_rowids_keeping_every_row() {
    let scratch = tempfile::tempdir().expect("tempdir");
    let (latest_path, expected) = latest_store(scratch.path());

    // The same rows in a store at the version before that migration, as an older build left it.
    let old_path = scratch.path().join("old.sqlite3");
    let later;
    {
        let conn = Connection::open(&old_path).expect("open");
        conn.execute_batch(&format!(
            "CREATE TABLE {MIGRATIONS_TABLE} (version BIGINT PRIMARY KEY, name TEXT NOT NULL)"
        ))
        .expect("migrations table");
        // Every migration before the one that drops the rowids (found by name, so that
        // renumbering it keeps this test true).
        let without_rowid = MIGRATIONS
            .iter()
            .find(|(_, name, _)| name.contains("without rowid"))
            .map(|(version, _, _)| *version)
            .expect("the WITHOUT ROWID migration");
        for (version, name, sql) in MIGRATIONS.iter().filter(|(version, _, _)| *version < without_rowid) {
            for statement in schema::statements(sql, SchemaBackend::Sqlite) {
                conn.execute_batch(statement).expect("migration");
            }
            conn.execute(&format!("INSERT INTO {MIGRATIONS_TABLE} (version, name) VALUES (?1, ?2)"), (version, name))
                .expect("record migration");
        }
        for name in WITHOUT_ROWID {
            assert!(!table_sql(&conn, name).contains("WITHOUT ROWID"), "{name} before the migration");
        }
        later = copy_rows(&conn, &latest_path);
    }

    let mut store = migrate_then_fill(&old_path, &latest_path, &later);
    assert_eq!(store.schema_version().expect("version"), schema::SCHEMA_VERSION);
    assert_eq!(digest(&mut store).expect("digest"), expected, "every row kept");
    drop(store);
    {
        let conn = Connection::open(&old_path).expect("open");
        // (`statements` is a view since migration 8; `first_replies` has rowids again since 9.)
        for name in WITHOUT_ROWID.into_iter().filter(|name| !["statements", "first_replies"].contains(name)) {
            assert!(table_sql(&conn, name).ends_with("WITHOUT ROWID"), "{name}: {}", table_sql(&conn, name));
        }
        let indexes: Vec<String> = conn
            .prepare("SELECT name FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL ORDER BY name")
            .and_then(|mut statement| statement.query_map([], |row| row.get(0))?.collect())
            .expect("indexes");
        for index in ["bet_legs_market", "bet_legs_event", "bet_history_bet", "first_replies_at"] {
            assert!(indexes.iter().any(|name| name == index), "{index} rebuilt: {indexes:?}");
        }
    }
    // The projector resumes on the migrated store where the copied checkpoint says.
    resumes_with(&old_path, &expected);
}

#[test]
fn a_sqlite_store_before_migration_9_keeps_its_first_replies_in_a_rowid_table_found_by_a_unique_key() {
    let scratch = tempfile::tempdir().expect("tempdir");
    let (latest_path, expected) = latest_store(scratch.path());
    let replies = SqliteStore::open(&latest_path).expect("open").rows(&FIRST_REPLIES).expect("first replies");
    assert!(replies.len() > 100, "a workload with keyed commands: {}", replies.len());
    let old_path = scratch.path().join("old.sqlite3");
    {
        let conn = older_store(&old_path, 9);
        assert!(table_sql(&conn, "first_replies").ends_with("WITHOUT ROWID"), "one tree by the key before 9");
        assert!(copy_rows(&conn, &latest_path).is_empty(), "every table made before 9");
    }
    let mut store = SqliteStore::open(&old_path).expect("open and migrate");
    assert_eq!(store.schema_version().expect("version"), schema::SCHEMA_VERSION);
    assert_eq!(digest(&mut store).expect("digest"), expected, "every row kept");
    assert_eq!(store.rows(&FIRST_REPLIES).expect("first replies"), replies);
    drop(store);
    {
        let conn = Connection::open(&old_path).expect("open");
        assert!(!table_sql(&conn, "first_replies").contains("WITHOUT ROWID"), "{}", table_sql(&conn, "first_replies"));
        // Rows in the order they were written: by position.
        let positions: Vec<i64> = conn
            .prepare("SELECT position FROM first_replies ORDER BY rowid")
            .and_then(|mut statement| statement.query_map([], |row| row.get(0))?.collect())
            .expect("positions");
        assert!(positions.windows(2).all(|pair| pair[0] <= pair[1]), "appended in journal order");
        let unique: i64 = conn
            .query_row(
                "SELECT \"unique\" FROM pragma_index_list('first_replies') WHERE name = 'first_replies_key'",
                [],
                |row| row.get(0),
            )
            .expect("the key's index");
        assert_eq!(unique, 1, "one reply per key");
        assert!(index_names(&conn).iter().any(|name| name == "first_replies_at"));
        // A retry's lookup is one point read in the key's index.
        let plan: Vec<String> = conn
            .prepare("EXPLAIN QUERY PLAN SELECT reply FROM first_replies WHERE key_hash = ?1 LIMIT 1")
            .and_then(|mut statement| statement.query_map(["00"], |row| row.get::<_, String>(3))?.collect())
            .expect("plan");
        assert!(plan.iter().any(|step| step.contains("USING INDEX first_replies_key")), "{plan:?}");
    }
    resumes_with(&old_path, &expected);
}

/// Since migration 10 only settled bets are in `bets_settled_at`, and a settlement window (the
/// reports', the operator's search) still reads that index, a store migrated from before it
/// included.
#[test]
fn only_settled_bets_are_indexed_by_settlement_time_and_a_window_reads_that_index() {
    let scratch = tempfile::tempdir().expect("tempdir");
    let (latest_path, expected) = latest_store(scratch.path());
    let old_path = scratch.path().join("old.sqlite3");
    {
        let conn = older_store(&old_path, 10);
        assert!(copy_rows(&conn, &latest_path).is_empty(), "every table made before 10");
    }
    let mut store = SqliteStore::open(&old_path).expect("open and migrate");
    assert_eq!(digest(&mut store).expect("digest"), expected, "every row kept");
    drop(store);
    for path in [&latest_path, &old_path] {
        let conn = Connection::open(path).expect("open");
        let sql: String = conn
            .query_row("SELECT sql FROM sqlite_master WHERE name = 'bets_settled_at'", [], |row| row.get(0))
            .expect("the index");
        assert!(sql.ends_with("WHERE settled_at IS NOT NULL"), "{sql}");
        let (settled, bets): (i64, i64) = conn
            .query_row("SELECT COUNT(settled_at), COUNT(*) FROM bets", [], |row| Ok((row.get(0)?, row.get(1)?)))
            .expect("count");
        assert!(settled > 0 && settled < bets, "a workload with settled and open bets: {settled} of {bets}");
        let plan: Vec<String> = conn
            .prepare("EXPLAIN QUERY PLAN SELECT id FROM bets WHERE settled_at >= ?1 AND settled_at < ?2 ORDER BY id")
            .and_then(|mut statement| statement.query_map((0, i64::MAX), |row| row.get::<_, String>(3))?.collect())
            .expect("plan");
        assert!(plan.iter().any(|step| step.contains("INDEX bets_settled_at")), "{plan:?}");
    }
}
