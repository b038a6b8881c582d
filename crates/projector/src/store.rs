//! The read-model store: one trait, two backends (SQLite embedded, PostgreSQL for cluster
//! mode), the same tables and the same migrations. A commit writes the rows of one or more
//! journal batches and the checkpoint row (the position after the last of them) in one
//! transaction: a store is always at a batch boundary, never between two.

use journal::Position;
use sha2::{Digest, Sha256};

use crate::follower::{Changes, Checkpoint};
use crate::schema::{Table, Type, Value, CHECKPOINT, TABLES};
use crate::ProjectorError;

/// Rows one multi-row statement writes at most (PostgreSQL arrays, SQLite batches).
pub const ROWS_PER_STATEMENT_MAX: usize = 10_000;

pub trait Store: Send {
    /// `sqlite` or `postgres`, for logs.
    fn kind(&self) -> &'static str;

    /// The newest applied migration.
    fn schema_version(&mut self) -> Result<i64, ProjectorError>;

    /// Writes every row of `changes` (its checkpoint row included) in one transaction, if the
    /// store's checkpoint is still at `previous` (`None`: no checkpoint yet); otherwise
    /// another writer moved it, nothing is written, and the error is `ConcurrentWriter`.
    fn commit(&mut self, changes: &Changes, previous: Option<Position>) -> Result<(), ProjectorError>;

    /// Deletes every row of the models (a rebuild), in one transaction.
    fn clear(&mut self) -> Result<(), ProjectorError>;

    /// The text of the `index`th (from 1) parameter in this store's SQL (`?1`, `$1`).
    fn placeholder(&self, index: usize) -> String;

    /// The text column `column` as this store's SQL compares it byte by byte, which is how
    /// [`Value`] orders text (SQLite's default `BINARY` collation does already).
    fn bytewise(&self, column: &str) -> String {
        column.to_owned()
    }

    /// Runs a select whose result columns have `types` (`name`: the table, for errors).
    fn select_typed(
        &mut self,
        name: &str,
        types: &[Type],
        sql: &str,
        params: &[Value],
    ) -> Result<Vec<Vec<Value>>, ProjectorError>;

    /// Begins a read transaction, so that the selects up to [`Store::end_read`] see one
    /// snapshot and share one lock (SQLite: many point reads for the price of one). A no-op
    /// where each statement is as cheap alone.
    fn begin_read(&mut self) -> Result<(), ProjectorError> {
        Ok(())
    }

    /// Ends what [`Store::begin_read`] began.
    fn end_read(&mut self) -> Result<(), ProjectorError> {
        Ok(())
    }

    /// Every row of `table`, in primary-key order.
    fn rows(&mut self, table: &Table) -> Result<Vec<Vec<Value>>, ProjectorError> {
        let sql = format!("SELECT {} FROM {} ORDER BY {}", table.column_list(), table.name, table.key_list());
        self.select_typed(table.name, &table.types(), &sql, &[])
    }

    /// The rows a [`crate::query::Query`] selects.
    fn select(&mut self, query: &crate::query::Query) -> Result<Vec<Vec<Value>>, ProjectorError> {
        let (sql, params) = query.sql(&|index| self.placeholder(index))?;
        self.select_typed(query.table.name, &query.table.types(), &sql, &params)
    }

    /// The rows (one per group) an [`crate::query::Aggregate`] computes.
    fn aggregate(&mut self, aggregate: &crate::query::Aggregate) -> Result<Vec<Vec<Value>>, ProjectorError> {
        let (sql, params) = aggregate.sql(&|index| self.placeholder(index))?;
        self.select_typed(aggregate.table.name, &aggregate.types(), &sql, &params)
    }
}

/// The checkpoint a store is at, `None` when it holds nothing yet.
pub fn checkpoint(store: &mut dyn Store) -> Result<Option<Checkpoint>, ProjectorError> {
    store.rows(&CHECKPOINT)?.first().map(|row| Checkpoint::from_row(row)).transpose()
}

/// Rows [`digest`] reads in one select.
pub const DIGEST_ROWS_PER_PAGE: usize = 10_000;

/// Every row of every table as canonical text, the same for equal models on either backend:
/// `table|value|value…` per row, in table order and key order. The whole store in memory: for
/// tests and small stores ([`digest`] reads a page at a time).
pub fn dump(store: &mut dyn Store) -> Result<String, ProjectorError> {
    let mut out = String::new();
    for table in TABLES {
        let mut rows = store.rows(table)?;
        // Key order by value, not by a database collation.
        rows.sort_by(|a, b| a[..table.key].cmp(&b[..table.key]));
        for row in rows {
            write_canonical_row(table, &row, &mut out);
        }
    }
    Ok(out)
}

/// One line of [`dump`].
fn write_canonical_row(table: &Table, row: &[Value], out: &mut String) {
    out.push_str(table.name);
    for value in row {
        out.push('|');
        value.write_canonical(out);
    }
    out.push('\n');
}

/// SHA-256 of [`dump`], hex, without holding the dump: each table is read
/// [`DIGEST_ROWS_PER_PAGE`] rows at a time, in key order, each page after the last key of the
/// one before (so its memory is a page, where the dump of a 2 GB store took 4 GB).
pub fn digest(store: &mut dyn Store) -> Result<String, ProjectorError> {
    digest_paged(store, DIGEST_ROWS_PER_PAGE)
}

/// [`digest`] with pages of `rows_per_page` rows (at least 1).
pub fn digest_paged(store: &mut dyn Store, rows_per_page: usize) -> Result<String, ProjectorError> {
    let rows_per_page = rows_per_page.max(1);
    let mut hasher = Sha256::new();
    let mut line = String::new();
    store.begin_read()?;
    let mut hash_tables = || -> Result<(), ProjectorError> {
        for table in TABLES {
            let types = table.types();
            let mut after: Option<Vec<Value>> = None;
            loop {
                let (sql, params) = page_sql(store, table, after.as_deref(), rows_per_page);
                let rows = store.select_typed(table.name, &types, &sql, &params)?;
                for row in &rows {
                    // The dump orders keys by value; a store whose order differed (a collation)
                    // would give another digest for the same rows, so it is refused instead.
                    if after.as_deref().is_some_and(|last| row[..table.key] <= *last) {
                        return Err(ProjectorError::Store(format!(
                            "digest: {} returned its rows out of key order at {:?}",
                            table.name,
                            &row[..table.key]
                        )));
                    }
                    after = Some(row[..table.key].to_vec());
                    line.clear();
                    write_canonical_row(table, row, &mut line);
                    hasher.update(line.as_bytes());
                }
                if rows.len() < rows_per_page {
                    break;
                }
            }
        }
        Ok(())
    };
    let hashed = hash_tables();
    let ended = store.end_read();
    hashed?;
    ended?;
    Ok(hex::encode(hasher.finalize()))
}

/// The select of one [`digest_paged`] page: the rows after the key `after` (all from the first
/// when `None`), in key order, text compared byte by byte as [`Value`] orders it
/// ([`Store::bytewise`]).
fn page_sql(store: &dyn Store, table: &Table, after: Option<&[Value]>, rows_per_page: usize) -> (String, Vec<Value>) {
    let key: Vec<String> = table.columns[..table.key]
        .iter()
        .map(|column| match column.ty {
            Type::Text => store.bytewise(column.name),
            _ => column.name.to_owned(),
        })
        .collect();
    let mut sql = format!("SELECT {} FROM {}", table.column_list(), table.name);
    let params = after.map(<[Value]>::to_vec).unwrap_or_default();
    if !params.is_empty() {
        let placeholders: Vec<String> = (1..=params.len()).map(|index| store.placeholder(index)).collect();
        sql.push_str(&format!(" WHERE ({}) > ({})", key.join(", "), placeholders.join(", ")));
    }
    sql.push_str(&format!(" ORDER BY {} LIMIT {rows_per_page}", key.join(", ")));
    (sql, params)
}

/// The check of [`Store::commit`]: `found` is the checkpoint's position in the transaction.
pub(crate) fn check_previous(found: Option<i64>, previous: Option<Position>) -> Result<(), ProjectorError> {
    let found = found.map(|position| position as Position);
    if found == previous {
        Ok(())
    } else {
        Err(ProjectorError::ConcurrentWriter { expected: previous, found })
    }
}

/// The `ON CONFLICT` tail of an insert into `table` (shared by both backends).
pub(crate) fn conflict_clause(table: &Table) -> String {
    // An upsert sets only the columns that can change ([`crate::schema::Column::fixed`]).
    let assignments = |render: &dyn Fn(&str) -> String| {
        table.columns[table.key..]
            .iter()
            .filter(|column| !column.fixed)
            .map(|column| render(column.name))
            .collect::<Vec<_>>()
            .join(", ")
    };
    match table.merge {
        // An update is no insert (`update_sql`).
        crate::schema::Merge::Insert | crate::schema::Merge::Update => String::new(),
        crate::schema::Merge::Keep => format!(" ON CONFLICT ({}) DO NOTHING", table.key_list()),
        crate::schema::Merge::Upsert => format!(
            " ON CONFLICT ({}) DO UPDATE SET {}",
            table.key_list(),
            assignments(&|name| format!("{name} = excluded.{name}"))
        ),
        crate::schema::Merge::Add => format!(
            " ON CONFLICT ({}) DO UPDATE SET {}",
            table.key_list(),
            assignments(&|name| format!("{name} = {}.{name} + excluded.{name}", table.name))
        ),
    }
}

/// `SET a = P, b = P … WHERE key = P …` of an update of `table` ([`crate::schema::Merge::Update`]),
/// with `placeholder(i)` the text of the value of the table's `i`th column (from 1).
pub(crate) fn update_assignments(table: &Table, placeholder: &dyn Fn(usize) -> String) -> String {
    let set = table.columns[table.key..]
        .iter()
        .enumerate()
        .map(|(index, column)| format!("{} = {}", column.name, placeholder(table.key + index + 1)))
        .collect::<Vec<_>>()
        .join(", ");
    let key = table.columns[..table.key]
        .iter()
        .enumerate()
        .map(|(index, column)| format!("{}.{} = {}", table.name, column.name, placeholder(index + 1)))
        .collect::<Vec<_>>()
        .join(" AND ");
    format!("SET {set} WHERE {key}")
}
