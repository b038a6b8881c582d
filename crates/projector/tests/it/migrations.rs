//! Migrating an existing store: a SQLite store written before the `WITHOUT ROWID` migration
//! (keyed tables with a rowid) opened by this build is rebuilt by it, keeping every row, and
//! the projector resumes on it.

use projector::schema::{self, Backend as SchemaBackend, MIGRATIONS, MIGRATIONS_TABLE, TABLES};
use projector::{digest, SqliteStore, Store};
use rusqlite::Connection;

use crate::{finished, project};

/// The tables migration 5 rebuilds without a rowid.
const WITHOUT_ROWID: [&str; 6] =
    ["bet_legs", "bet_history", "statements", "daily_totals", "account_limits", "first_replies"];

fn table_sql(conn: &Connection, name: &str) -> String {
    conn.query_row("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?1", [name], |row| row.get(0))
        .unwrap_or_else(|error| panic!("{name}: {error}"))
}

#[test]
fn an_older_sqlite_store_is_rebuilt_without_rowids_keeping_every_row() {
    let finished = finished();
    let scratch = tempfile::tempdir().expect("tempdir");
    let latest_path = scratch.path().join("latest.sqlite3");
    let mut latest = project(finished.dir.path(), Box::new(SqliteStore::open(&latest_path).expect("open")), false);
    let expected = digest(latest.store()).expect("digest");
    drop(latest);

    // The same rows in a store at the version before that migration, as an older build left it.
    let old_path = scratch.path().join("old.sqlite3");
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
        conn.execute("ATTACH DATABASE ?1 AS latest", [latest_path.to_str().expect("utf-8")]).expect("attach");
        for table in TABLES {
            let columns = table.column_list();
            conn.execute_batch(&format!(
                "INSERT INTO main.{0} ({columns}) SELECT {columns} FROM latest.{0}",
                table.name
            ))
            .expect("copy rows");
        }
        conn.execute_batch("DETACH DATABASE latest").expect("detach");
    }

    let mut store = SqliteStore::open(&old_path).expect("open and migrate");
    assert_eq!(store.schema_version().expect("version"), schema::SCHEMA_VERSION);
    assert_eq!(digest(&mut store).expect("digest"), expected, "every row kept");
    drop(store);
    {
        let conn = Connection::open(&old_path).expect("open");
        for name in WITHOUT_ROWID {
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
    let mut resumed = project(finished.dir.path(), Box::new(SqliteStore::open(&old_path).expect("open")), false);
    assert_eq!(resumed.lag().expect("lag"), 0);
    assert_eq!(digest(resumed.store()).expect("digest"), expected);
}
