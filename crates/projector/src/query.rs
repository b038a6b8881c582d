//! Reads of the models for the routes that will serve from them (`GET /v1/bets`,
//! `/v1/wallet/transactions`, `/v1/admin/audit`, `/v1/admin/bets`, `/v1/admin/accounts?q=`):
//! one small query shape both stores run alike (filters on columns, an order, a limit), and the
//! typed reads built on it. Pages are keyed by id (a cursor is the last id seen), newest first,
//! like the gateway's lists.

use crate::schema::{Table, Type, Value, ACCOUNTS, AUDIT, BETS, BET_LEGS, FIRST_REPLIES, STATEMENTS};
use crate::store::Store;
use crate::ProjectorError;

/// Rows one read returns at most, whatever is asked.
pub const QUERY_ROWS_MAX: usize = 1_000;

/// A condition on one column.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Filter {
    Eq(&'static str, Value),
    Lt(&'static str, Value),
    Ge(&'static str, Value),
    /// Text that starts with the value (ASCII lower case on both sides).
    Prefix(&'static str, String),
    /// One of the values (`true`) or none of them (`false`).
    In(&'static str, Vec<Value>, bool),
    /// Bets (`id`) with a leg whose column (`market`, `event`, `selection`) has the value.
    HasLeg(&'static str, Value),
}

impl Filter {
    pub fn column(&self) -> &'static str {
        match self {
            Filter::Eq(column, _)
            | Filter::Lt(column, _)
            | Filter::Ge(column, _)
            | Filter::Prefix(column, _)
            | Filter::In(column, _, _) => column,
            Filter::HasLeg(_, _) => "id",
        }
    }
}

/// `SELECT every column FROM table WHERE filters… ORDER BY order… LIMIT limit`.
#[derive(Clone, Debug)]
pub struct Query {
    pub table: &'static Table,
    pub filters: Vec<Filter>,
    /// `(column, descending)`.
    pub order: Vec<(&'static str, bool)>,
    pub limit: usize,
}

impl Query {
    /// The SQL with placeholders rendered by `placeholder(n)` (1-based), and its parameters.
    pub fn sql(&self, placeholder: &dyn Fn(usize) -> String) -> Result<(String, Vec<Value>), ProjectorError> {
        let known = |column: &str| self.table.columns.iter().any(|candidate| candidate.name == column);
        let mut sql = format!("SELECT {} FROM {}", self.table.column_list(), self.table.name);
        let mut params = Vec::new();
        where_clause(self.table, &self.filters, placeholder, &mut sql, &mut params)?;
        if !self.order.is_empty() {
            let order = self
                .order
                .iter()
                .map(|(column, descending)| {
                    if known(column) {
                        Ok(format!("{column}{}", if *descending { " DESC" } else { "" }))
                    } else {
                        Err(ProjectorError::Store(format!("no column {column} in {}", self.table.name)))
                    }
                })
                .collect::<Result<Vec<_>, _>>()?;
            sql.push_str(&format!(" ORDER BY {}", order.join(", ")));
        }
        sql.push_str(&format!(" LIMIT {}", self.limit.min(QUERY_ROWS_MAX)));
        Ok((sql, params))
    }
}

/// Appends ` WHERE …` for `filters` to `sql` and their parameters to `params`.
fn where_clause(
    table: &Table,
    filters: &[Filter],
    placeholder: &dyn Fn(usize) -> String,
    sql: &mut String,
    params: &mut Vec<Value>,
) -> Result<(), ProjectorError> {
    let known = |column: &str| table.columns.iter().any(|candidate| candidate.name == column);
    for (index, filter) in filters.iter().enumerate() {
        if !known(filter.column()) {
            return Err(ProjectorError::Store(format!("no column {} in {}", filter.column(), table.name)));
        }
        sql.push_str(if index == 0 { " WHERE " } else { " AND " });
        let slot = placeholder(params.len() + 1);
        match filter {
            Filter::Eq(column, value) => {
                sql.push_str(&format!("{column} = {slot}"));
                params.push(value.clone());
            }
            Filter::Lt(column, value) => {
                sql.push_str(&format!("{column} < {slot}"));
                params.push(value.clone());
            }
            Filter::Ge(column, value) => {
                sql.push_str(&format!("{column} >= {slot}"));
                params.push(value.clone());
            }
            Filter::In(_, values, inside) if values.is_empty() => {
                sql.push_str(if *inside { "1 = 0" } else { "1 = 1" });
            }
            Filter::In(column, values, inside) => {
                let slots: Vec<String> =
                    (0..values.len()).map(|offset| placeholder(params.len() + 1 + offset)).collect();
                let negation = if *inside { "" } else { "NOT " };
                sql.push_str(&format!("{column} {negation}IN ({})", slots.join(", ")));
                params.extend(values.iter().cloned());
            }
            Filter::HasLeg(leg_column, value) => {
                if !BET_LEGS.columns.iter().any(|column| column.name == *leg_column) {
                    return Err(ProjectorError::Store(format!("no column {leg_column} in bet_legs")));
                }
                sql.push_str(&format!("id IN (SELECT bet FROM bet_legs WHERE {leg_column} = {slot})"));
                params.push(value.clone());
            }
            Filter::Prefix(column, prefix) => {
                // `\` escapes the pattern characters of the prefix on both stores.
                let escaped: String = prefix
                    .to_ascii_lowercase()
                    .chars()
                    .flat_map(|c| if matches!(c, '%' | '_' | '\\') { vec!['\\', c] } else { vec![c] })
                    .collect();
                sql.push_str(&format!("LOWER({column}) LIKE {slot} ESCAPE '\\'"));
                params.push(Value::from(format!("{escaped}%")));
            }
        }
    }
    Ok(())
}

/// `SELECT group…, COUNT(*), CAST(SUM(c) AS TEXT), COUNT(c)… FROM table WHERE filters… GROUP BY
/// group…`: totals both stores compute alike. A sum is text (PostgreSQL sums BIGINT as NUMERIC;
/// read it as `i128` with [`sum_of`]); `COUNT(c)` counts the rows where `c` is not null.
#[derive(Clone, Debug)]
pub struct Aggregate {
    pub table: &'static Table,
    pub filters: Vec<Filter>,
    pub group: Vec<&'static str>,
    pub sums: Vec<&'static str>,
}

impl Aggregate {
    pub fn sql(&self, placeholder: &dyn Fn(usize) -> String) -> Result<(String, Vec<Value>), ProjectorError> {
        let known = |column: &str| self.table.columns.iter().any(|candidate| candidate.name == column);
        if let Some(unknown) = self.group.iter().chain(&self.sums).find(|column| !known(column)) {
            return Err(ProjectorError::Store(format!("no column {unknown} in {}", self.table.name)));
        }
        let mut selected: Vec<String> = self.group.iter().map(|column| (*column).to_owned()).collect();
        selected.push("COUNT(*)".to_owned());
        for column in &self.sums {
            selected.push(format!("CAST(SUM({column}) AS TEXT)"));
            selected.push(format!("COUNT({column})"));
        }
        let mut sql = format!("SELECT {} FROM {}", selected.join(", "), self.table.name);
        let mut params = Vec::new();
        where_clause(self.table, &self.filters, placeholder, &mut sql, &mut params)?;
        if !self.group.is_empty() {
            sql.push_str(&format!(" GROUP BY {}", self.group.join(", ")));
        }
        Ok((sql, params))
    }

    /// The types of a result row's values.
    pub fn types(&self) -> Vec<Type> {
        let mut types: Vec<Type> =
            self.group.iter().map(|column| self.table.columns[self.table.index_of(column)].ty).collect();
        types.push(Type::Int);
        for _ in &self.sums {
            types.extend([Type::Text, Type::Int]);
        }
        types
    }
}

/// A sum an [`Aggregate`] returned (null when no row: 0).
pub fn sum_of(value: &Value) -> Result<i128, ProjectorError> {
    match value {
        Value::Null => Ok(0),
        Value::Text(text) => {
            text.parse().map_err(|_| ProjectorError::Store(format!("a sum reads {text:?}, not an integer")))
        }
        Value::Int(value) => Ok(i128::from(*value)),
        Value::Bool(_) => Err(ProjectorError::Store("a sum reads a boolean".to_owned())),
    }
}

/// A player's bets, newest first, before the bet id `before` (a cursor), `open` or settled
/// only when asked (`GET /v1/bets`).
pub fn bets_of_player(
    store: &mut dyn Store,
    account: u64,
    before: Option<u64>,
    open: Option<bool>,
    limit: usize,
) -> Result<Vec<Vec<Value>>, ProjectorError> {
    let mut filters = vec![Filter::Eq("account", Value::Int(account as i64))];
    if let Some(before) = before {
        filters.push(Filter::Lt("id", Value::Int(before as i64)));
    }
    let rows = store.select(&Query { table: &BETS, filters, order: vec![("id", true)], limit: QUERY_ROWS_MAX })?;
    let status = BETS.index_of("status");
    Ok(rows
        .into_iter()
        .filter(|row| open.is_none_or(|open| matches!(row[status].text(), Some("pending" | "accepted")) == open))
        .take(limit)
        .collect())
}

/// What the operator's bet search (`GET /v1/admin/bets`) filters on; `None` is no filter.
/// Times are milliseconds since the epoch, windows `[from, to)`; money in minor units.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BetSearch {
    pub account: Option<u64>,
    pub event: Option<u64>,
    pub market: Option<u64>,
    /// A bet status (`accepted`, `won`, ...).
    pub status: Option<String>,
    pub placed_from: Option<u64>,
    pub placed_to: Option<u64>,
    pub settled_from: Option<u64>,
    pub settled_to: Option<u64>,
    pub stake_at_least: Option<i64>,
    /// The cursor: bets with a smaller id.
    pub before: Option<u64>,
}

/// The operator's bet search, newest first.
pub fn search_bets(store: &mut dyn Store, search: &BetSearch, limit: usize) -> Result<Vec<Vec<Value>>, ProjectorError> {
    let int = |value: u64| Value::Int(value as i64);
    let mut filters = Vec::new();
    if let Some(account) = search.account {
        filters.push(Filter::Eq("account", int(account)));
    }
    if let Some(event) = search.event {
        filters.push(Filter::HasLeg("event", int(event)));
    }
    if let Some(market) = search.market {
        filters.push(Filter::HasLeg("market", int(market)));
    }
    if let Some(status) = &search.status {
        filters.push(Filter::Eq("status", Value::from(status.clone())));
    }
    if let Some(from) = search.placed_from {
        filters.push(Filter::Ge("placed_at", int(from)));
    }
    if let Some(to) = search.placed_to {
        filters.push(Filter::Lt("placed_at", int(to)));
    }
    if let Some(from) = search.settled_from {
        filters.push(Filter::Ge("settled_at", int(from)));
    }
    if let Some(to) = search.settled_to {
        filters.push(Filter::Lt("settled_at", int(to)));
    }
    if let Some(stake) = search.stake_at_least {
        filters.push(Filter::Ge("total_stake", Value::Int(stake)));
    }
    if let Some(before) = search.before {
        filters.push(Filter::Lt("id", int(before)));
    }
    store.select(&Query { table: &BETS, filters, order: vec![("id", true)], limit })
}

/// A player's statement, newest transfer first, before the transfer id `before`
/// (`GET /v1/wallet/transactions`).
pub fn statement_of(
    store: &mut dyn Store,
    account: u64,
    before: Option<u64>,
    limit: usize,
) -> Result<Vec<Vec<Value>>, ProjectorError> {
    let mut filters = vec![Filter::Eq("account", Value::Int(account as i64))];
    if let Some(before) = before {
        filters.push(Filter::Lt("transfer", Value::Int(before as i64)));
    }
    store.select(&Query { table: &STATEMENTS, filters, order: vec![("transfer", true)], limit })
}

/// Commands from journal position `from` on, in order (`GET /v1/admin/audit`).
pub fn audit_from(store: &mut dyn Store, from: u64, limit: usize) -> Result<Vec<Vec<Value>>, ProjectorError> {
    store.select(&Query {
        table: &AUDIT,
        filters: vec![Filter::Ge("position", Value::Int(from as i64))],
        order: vec![("position", false), ("ordinal", false)],
        limit,
    })
}

/// Operator search (`GET /v1/admin/accounts?q=`): `acc_N` or a number finds that account; other
/// text finds usernames starting with it, in id order.
pub fn search_accounts(store: &mut dyn Store, q: &str, limit: usize) -> Result<Vec<Vec<Value>>, ProjectorError> {
    let q = q.trim();
    let id = q.strip_prefix("acc_").unwrap_or(q).parse::<u64>().ok();
    let filters = match id {
        Some(id) => vec![Filter::Eq("id", Value::Int(id as i64))],
        None => vec![Filter::Prefix("username", q.to_owned())],
    };
    store.select(&Query { table: &ACCOUNTS, filters, order: vec![("id", false)], limit })
}

/// The first reply of a keyed command, as the projector stored it ([`FIRST_REPLIES`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FirstReply {
    /// The hash of the body the key was first used with (`codec::body_hash`).
    pub body_hash: u64,
    /// The book's reply, accepted or refused.
    pub reply: book::Reply,
    /// The journal position of the batch that decided it.
    pub position: u64,
    /// Book time of that decision.
    pub at: u64,
}

/// The first reply the book gave to `key` of `account` (`Idempotency-Key`), if the models hold
/// one: what a retry after the book's window is answered with.
pub fn first_reply(
    store: &mut dyn Store,
    account: book::AccountId,
    key: &str,
) -> Result<Option<FirstReply>, ProjectorError> {
    let hash = first_reply_hash(account, key);
    Ok(first_replies(store, std::slice::from_ref(&hash))?.pop().flatten())
}

/// How [`FIRST_REPLIES`] keys the reply to `key` of `account`.
pub fn first_reply_hash(account: book::AccountId, key: &str) -> String {
    crate::follower::key_hash_text(book::idempotency_key_hash(account, key))
}

/// The first replies of many keys (by [`first_reply_hash`]), in their order, in one read
/// transaction where the store has them: the statement is built once and each key is a
/// point read on the primary key.
pub fn first_replies(store: &mut dyn Store, hashes: &[String]) -> Result<Vec<Option<FirstReply>>, ProjectorError> {
    let query = Query {
        table: &FIRST_REPLIES,
        filters: vec![Filter::Eq("key_hash", Value::from(String::new()))],
        order: Vec::new(),
        limit: 1,
    };
    let (sql, _) = query.sql(&|index| store.placeholder(index))?;
    let types = FIRST_REPLIES.types();
    store.begin_read()?;
    let found = hashes
        .iter()
        .map(|hash| {
            let rows = store.select_typed(FIRST_REPLIES.name, &types, &sql, &[Value::from(hash.clone())])?;
            rows.into_iter().next().map(|row| first_reply_of(&row)).transpose()
        })
        .collect::<Result<Vec<_>, _>>();
    let ended = store.end_read();
    let found = found?;
    ended?;
    Ok(found)
}

/// A [`FIRST_REPLIES`] row read back.
fn first_reply_of(row: &[Value]) -> Result<FirstReply, ProjectorError> {
    let bad = |what: &str| ProjectorError::Store(format!("unreadable first_replies row ({what}): {row:?}"));
    let column = |name| FIRST_REPLIES.index_of(name);
    let body_hash = row[column("body_hash")]
        .text()
        .and_then(|text| u64::from_str_radix(text, 16).ok())
        .ok_or_else(|| bad("body_hash"))?;
    let bytes = row[column("reply")].text().and_then(|text| hex::decode(text).ok()).ok_or_else(|| bad("reply"))?;
    let mut reader = codec::Reader::new(&bytes);
    let reply = <book::Reply as codec::Wire>::decode(&mut reader).map_err(|_| bad("reply"))?;
    reader.finish().map_err(|_| bad("reply"))?;
    let number = |name| row[column(name)].int().map(|value| value as u64).ok_or_else(|| bad(name));
    Ok(FirstReply { body_hash, reply, position: number("position")?, at: number("at")? })
}
