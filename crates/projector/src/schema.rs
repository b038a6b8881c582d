//! The read models' tables, described once for both stores, and their versioned migrations.
//!
//! Every table is written the same way on SQLite and PostgreSQL: rows are vectors of
//! [`Value`]s in the column order below; the first `key` columns are the primary key. A table
//! is append-only (`Merge::Insert`), keeps the latest row per key (`Merge::Upsert`) or adds its
//! numeric columns to the stored ones (`Merge::Add`, the daily report inputs). The migration
//! SQL is plain (BIGINT, TEXT, BOOLEAN) so one text serves both stores; a later version adds a
//! migration, never edits an applied one.

use std::borrow::Cow;
use std::fmt::Write as _;

/// A column's type. Integers are 64-bit: money in minor units, times in milliseconds since
/// the epoch, ids and journal positions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Type {
    Int,
    Text,
    Bool,
}

/// One value of a row. `Null` only in nullable columns. Text is borrowed when it is a
/// constant (a status, a code, a kind: most of the text the projector writes), so building a
/// row allocates only for text that is made for it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Value {
    Null,
    Bool(bool),
    Int(i64),
    Text(Cow<'static, str>),
}

impl Value {
    pub fn int(&self) -> Option<i64> {
        match self {
            Value::Int(value) => Some(*value),
            _ => None,
        }
    }

    pub fn text(&self) -> Option<&str> {
        match self {
            Value::Text(value) => Some(value),
            _ => None,
        }
    }

    pub fn bool(&self) -> Option<bool> {
        match self {
            Value::Bool(value) => Some(*value),
            _ => None,
        }
    }

    /// The canonical text of the value in a dump: the same on every store.
    pub fn write_canonical(&self, out: &mut String) {
        match self {
            Value::Null => out.push('~'),
            Value::Bool(value) => out.push_str(if *value { "t" } else { "f" }),
            Value::Int(value) => {
                let _ = write!(out, "{value}");
            }
            Value::Text(value) => {
                let _ = write!(out, "{value:?}");
            }
        }
    }
}

impl From<i64> for Value {
    fn from(value: i64) -> Value {
        Value::Int(value)
    }
}

impl From<bool> for Value {
    fn from(value: bool) -> Value {
        Value::Bool(value)
    }
}

impl From<String> for Value {
    fn from(value: String) -> Value {
        Value::Text(Cow::Owned(value))
    }
}

impl From<&str> for Value {
    fn from(value: &str) -> Value {
        Value::Text(Cow::Owned(value.to_owned()))
    }
}

impl Value {
    /// Constant text, borrowed rather than copied.
    pub const fn constant(value: &'static str) -> Value {
        Value::Text(Cow::Borrowed(value))
    }

    /// [`Value::constant`], or `Null`.
    pub fn constant_or_null(value: Option<&'static str>) -> Value {
        value.map_or(Value::Null, Value::constant)
    }
}

impl<T: Into<Value>> From<Option<T>> for Value {
    fn from(value: Option<T>) -> Value {
        value.map_or(Value::Null, Into::into)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Merge {
    /// Rows are only ever added; a key is written once.
    Insert,
    /// The newest row per key replaces the stored one.
    Upsert,
    /// Non-key columns (all integers) are added to the stored row's.
    Add,
    /// The first row per key stays; a later one of the same key is dropped.
    Keep,
    /// Some columns of a row already written (in an earlier commit, or pending in this one)
    /// change: an `UPDATE` of those columns by key, of exactly one row each. The table's `name`
    /// is the table it updates.
    Update,
}

#[derive(Debug)]
pub struct Column {
    pub name: &'static str,
    pub ty: Type,
    pub nullable: bool,
    /// Set when the row is first written and never changed by the book afterwards: an upsert
    /// leaves it out of its `SET` list, so its indexes are not rewritten (SQLite rewrites an
    /// index entry whenever a column in `SET` is indexed, whether or not the value changed).
    pub fixed: bool,
}

const fn col(name: &'static str, ty: Type) -> Column {
    Column { name, ty, nullable: false, fixed: false }
}

const fn opt(name: &'static str, ty: Type) -> Column {
    Column { name, ty, nullable: true, fixed: false }
}

/// A [`col`] the book never changes after the row's first write ([`Column::fixed`]).
const fn fix(name: &'static str, ty: Type) -> Column {
    Column { name, ty, nullable: false, fixed: true }
}

/// An [`opt`] the book never changes after the row's first write ([`Column::fixed`]).
const fn fix_opt(name: &'static str, ty: Type) -> Column {
    Column { name, ty, nullable: true, fixed: true }
}

#[derive(Debug)]
pub struct Table {
    pub name: &'static str,
    pub columns: &'static [Column],
    /// The first `key` columns are the primary key (and the order of a dump).
    pub key: usize,
    pub merge: Merge,
}

impl Table {
    pub fn column_list(&self) -> String {
        self.columns.iter().map(|column| column.name).collect::<Vec<_>>().join(", ")
    }

    /// The columns' types, in order.
    pub fn types(&self) -> Vec<Type> {
        self.columns.iter().map(|column| column.ty).collect()
    }

    pub fn key_list(&self) -> String {
        self.columns[..self.key].iter().map(|column| column.name).collect::<Vec<_>>().join(", ")
    }

    pub fn index_of(&self, name: &str) -> usize {
        self.columns.iter().position(|column| column.name == name).unwrap_or_else(|| panic!("no column {name}"))
    }
}

use Type::{Bool, Int, Text};

/// Where the projector is: the journal position after the last applied batch and the head of
/// the journal's hash chain there, written in the same transaction as the rows of the batches.
pub const CHECKPOINT: Table = Table {
    name: "projector_checkpoint",
    columns: &[
        col("id", Int),
        col("next_position", Int),
        col("chain_head", Text),
        col("batches", Int),
        col("commands", Int),
        // Where the models begin: 0, or the snapshot position they were seeded from.
        col("base_position", Int),
    ],
    key: 1,
    merge: Merge::Upsert,
};

/// Player accounts (registered players and accounts opened without credentials), for operator
/// search: id, username, and the status facts (`frozen`, `timed_out_until`, `excluded_until`;
/// whether a time-out is in force depends on the time of the read).
pub const ACCOUNTS: Table = Table {
    name: "accounts",
    columns: &[
        col("id", Int),
        col("currency", Text),
        opt("username", Text),
        opt("country", Text),
        opt("registered_at", Int),
        col("frozen", Bool),
        col("timed_out_until", Int),
        col("excluded_until", Int),
        col("stake_factor", Text),
        col("updated_position", Int),
    ],
    key: 1,
    merge: Merge::Upsert,
};

/// Bets as they stand: stake, status, settlement and payout.
pub const BETS: Table = Table {
    name: "bets",
    columns: &[
        col("id", Int),
        fix("account", Int),
        fix("currency", Text),
        fix("kind", Text),
        fix("each_way", Bool),
        fix("stake_per_line", Int),
        fix("line_count", Int),
        fix("total_stake", Int),
        // Re-priced when a delayed bet is accepted.
        col("potential_payout", Int),
        fix("policy", Text),
        col("status", Text),
        fix("placed_status", Text),
        fix("placed_at", Int),
        opt("delay_until", Int),
        opt("settled_at", Int),
        opt("payout", Int),
        col("settlement_count", Int),
        opt("rejection", Text),
        col("updated_position", Int),
        // Migration 2: the base currency of the rate recorded on the bet at placement and the
        // total stake converted with it (rounded up to the base's minor unit); null: no rate.
        fix_opt("fx_base", Text),
        fix_opt("base_stake", Int),
    ],
    key: 1,
    merge: Merge::Upsert,
};

/// The legs of each bet, with the price struck and, once resulted, the result.
pub const BET_LEGS: Table = Table {
    name: "bet_legs",
    columns: &[
        col("bet", Int),
        col("leg", Int),
        // A delayed bet's legs are bound again at acceptance (odds, price version, taken), to
        // the same selections.
        fix("selection", Int),
        fix("market", Int),
        fix("event", Int),
        col("requested_odds", Int),
        col("odds", Int),
        col("price_version", Int),
        col("taken", Text),
        opt("each_way_places", Int),
        opt("each_way_fraction", Text),
        opt("result", Text),
        opt("dead_heat", Text),
        opt("void_factor", Text),
    ],
    key: 2,
    merge: Merge::Upsert,
};

/// What of a bet changes once it is accepted (settled, voided, cashed out, resettled): an
/// [`Merge::Update`] of [`BETS`]. A bet placed (or leaving its in-play delay) in the same batch
/// is written whole instead; so a bet's row is written once at placement and then only these
/// columns, rather than the whole row again at its settlement.
pub const BET_SETTLEMENTS: Table = Table {
    name: "bets",
    columns: &[
        col("id", Int),
        col("status", Text),
        opt("settled_at", Int),
        opt("payout", Int),
        col("settlement_count", Int),
        col("updated_position", Int),
    ],
    key: 1,
    merge: Merge::Update,
};

/// What of a leg changes once its bet is accepted: the result. An [`Merge::Update`] of
/// [`BET_LEGS`], as [`BET_SETTLEMENTS`] is of [`BETS`].
pub const LEG_RESULTS: Table = Table {
    name: "bet_legs",
    columns: &[col("bet", Int), col("leg", Int), opt("result", Text), opt("dead_heat", Text), opt("void_factor", Text)],
    key: 2,
    merge: Merge::Update,
};

/// Every status a bet took: placement (`placed`) then every change, with the journal position
/// and book time it happened at.
pub const BET_HISTORY: Table = Table {
    name: "bet_history",
    columns: &[
        col("position", Int),
        col("ordinal", Int),
        col("bet", Int),
        col("at", Int),
        col("status", Text),
        col("payout", Int),
    ],
    key: 2,
    merge: Merge::Insert,
};

/// Every ledger transfer (house and clearing accounts included).
pub const TRANSFERS: Table = Table {
    name: "transfers",
    columns: &[
        col("id", Int),
        col("position", Int),
        col("debit", Int),
        col("credit", Int),
        col("currency", Text),
        col("amount", Int),
        col("code", Text),
        col("status", Text),
        opt("pending_id", Int),
        col("reference", Int),
        col("at", Int),
        // Migration 2: the amount in the base currency `fx_base`, converted with the rate
        // recorded on the transfer's bet at placement (a transfer not tied to a bet: the table's
        // rate when it was made), rounded up; null: no rate.
        opt("fx_base", Text),
        opt("base_amount", Int),
        // Migration 8: the transfer as its player's statement shows it (the statements were a
        // table of their own, one more row per transfer): the player whose cash or debt account
        // it touches (null: none; no transfer touches two players), the bet it is of, the
        // amount signed from the player's side, and the wallet right after it (`balance` =
        // posted cash less held stakes, `available` = posted cash less every pending debit, as
        // `GET /v1/wallet`). The view `statements` shows these rows as the table did.
        opt("account", Int),
        opt("bet", Int),
        opt("signed_amount", Int),
        opt("balance_after", Int),
        opt("available_after", Int),
        opt("pending_stakes_after", Int),
        opt("debt_after", Int),
    ],
    key: 1,
    merge: Merge::Insert,
};

/// Account statements: every transfer touching a player's cash or debt account, signed from
/// the player's side, with the wallet right after it (`balance` = posted cash less held
/// stakes, `available` = posted cash less every pending debit, as `GET /v1/wallet`).
///
/// Since migration 8 a view over `transfers` (the columns above are `transfers`' statement
/// columns, `transfer` its `id` and `amount` its `signed_amount`), read like a table and never
/// written: the projector writes one row per transfer instead of two, and a page of a
/// statement (`account = ? AND transfer < ? ORDER BY transfer DESC`) is a range of the index
/// `transfers_account (account, id)`.
pub const STATEMENTS: Table = Table {
    name: "statements",
    columns: &[
        col("account", Int),
        col("transfer", Int),
        col("position", Int),
        col("at", Int),
        col("code", Text),
        col("status", Text),
        col("amount", Int),
        opt("bet", Int),
        col("balance_after", Int),
        col("available_after", Int),
        col("pending_stakes_after", Int),
        col("debt_after", Int),
    ],
    key: 2,
    merge: Merge::Insert,
};

/// The audit view: every command the sequencer decided, with its journal position, sequence
/// number, book time, kind, the account it concerns, the outcome (`ok` with what it created,
/// or the rejection code), and who submitted it and why.
pub const AUDIT: Table = Table {
    name: "audit",
    columns: &[
        col("position", Int),
        col("ordinal", Int),
        col("sequence", Int),
        col("at", Int),
        col("command", Text),
        opt("account", Int),
        col("outcome", Text),
        opt("reference", Text),
        // Migration 2: the batch's reply digest (hex, 16 digits), and the command as journaled
        // (a one-command batch in the codec's format, hex) with its secrets (password and API
        // key hashes) blanked, for the audit route to render.
        opt("reply_digest", Text),
        opt("body", Text),
        // Migration 4: the command's origin as journaled (`book::Origin`): the actor's kind
        // (`staff`, `api_key`, `player`, `feed`, `system`) and id, and the reason given.
        opt("actor_kind", Text),
        opt("actor_id", Text),
        opt("reason", Text),
    ],
    key: 2,
    merge: Merge::Insert,
};

/// Responsible-gambling limits per account, kind (`deposit`, `loss`, `stake`) and period
/// (`day`, `week`, `month`), as the book holds them: the limit `current`ly set and a change
/// waiting out its cooling-off (`pending`: its value, null to remove, from `pending_at`).
/// Written when an account's limits change; all nulls once a limit is removed.
pub const ACCOUNT_LIMITS: Table = Table {
    name: "account_limits",
    columns: &[
        col("account", Int),
        col("kind", Text),
        col("period", Text),
        opt("current_value", Int),
        col("pending", Bool),
        opt("pending_value", Int),
        opt("pending_at", Int),
        col("updated_position", Int),
    ],
    key: 3,
    merge: Merge::Upsert,
};

/// Regulator report inputs per UTC day (days since the epoch) and currency, on the terms of
/// `GET /v1/admin/reports/{turnover,ggr}`: accepted bets and stakes by the day they were
/// placed; settlement money by the day of the transfer.
pub const DAILY_TOTALS: Table = Table {
    name: "daily_totals",
    columns: &[
        col("day", Int),
        col("currency", Text),
        col("bets_placed", Int),
        col("stakes_placed", Int),
        col("settlements", Int),
        col("stakes_settled", Int),
        col("payouts", Int),
        col("cashouts", Int),
        col("reversals", Int),
        col("payouts_reversed", Int),
        col("recognised_as_debt", Int),
        col("stakes_reversed", Int),
    ],
    key: 2,
    merge: Merge::Add,
};

/// The first reply of every keyed command (`Command::idempotency`: bet placement, deposit,
/// withdrawal, cash-out), accepted or refused, exactly as the book remembered it: what the
/// gateway answers a retry with once the key has left the book's window
/// (`Config::idempotency_window_ms`). Keyed by `idempotency_key_hash(account, key)` (32 hex
/// digits; the hash covers the account); `body_hash` is the request body's (16 hex digits),
/// `reply` the book's `Reply` in the codec's format (hex), `outcome` `ok` or the rejection code.
/// Migration 3; in SQLite the rows are in the order written, the key a unique index, since
/// migration 9. A key is written once (`Merge::Keep`): a second first decision of a key (only
/// possible when the book decided it again, e.g. `serve --projector off`) keeps the first.
pub const FIRST_REPLIES: Table = Table {
    name: "first_replies",
    columns: &[
        col("key_hash", Text),
        opt("account", Int),
        col("body_hash", Text),
        col("position", Int),
        col("at", Int),
        col("outcome", Text),
        col("reply", Text),
    ],
    key: 1,
    merge: Merge::Keep,
};

/// Alerts raised by the monitoring rules (`book::monitor`), each once: the measured value and
/// the threshold (minor units of the base currency for money rules, else counts).
pub const ALERTS: Table = Table {
    name: "alerts",
    columns: &[
        col("id", Int),
        col("account", Int),
        col("rule", Text),
        col("kind", Text),
        col("value", Int),
        col("threshold", Int),
        col("currency", Text),
        col("at", Int),
        opt("case_id", Int),
        col("position", Int),
    ],
    key: 1,
    merge: Merge::Insert,
};

/// Cases of the monitoring queue as they stand, closed ones included.
pub const CASES: Table = Table {
    name: "cases",
    columns: &[
        col("id", Int),
        fix("account", Int),
        col("status", Text),
        fix("opened_at", Int),
        col("updated_at", Int),
        col("alerts_total", Int),
        opt("reference", Text),
        col("updated_position", Int),
    ],
    key: 1,
    merge: Merge::Upsert,
};

/// Every staff action on a case, with who, why and the case's status after it.
pub const CASE_ACTIONS: Table = Table {
    name: "case_actions",
    columns: &[
        col("position", Int),
        col("ordinal", Int),
        col("case_id", Int),
        col("account", Int),
        col("action", Text),
        col("actor_kind", Text),
        col("actor_id", Text),
        col("reason", Text),
        opt("note", Text),
        opt("reference", Text),
        col("status", Text),
        col("at", Int),
    ],
    key: 2,
    merge: Merge::Insert,
};

/// Every table of the models, in the order a commit writes them and a dump lists them (the
/// view [`STATEMENTS`] is not one: it is read, never written).
pub const TABLES: [&Table; 13] = [
    &CHECKPOINT,
    &ACCOUNTS,
    &BETS,
    &BET_LEGS,
    &BET_HISTORY,
    &TRANSFERS,
    &AUDIT,
    &DAILY_TOTALS,
    &ACCOUNT_LIMITS,
    &FIRST_REPLIES,
    &ALERTS,
    &CASES,
    &CASE_ACTIONS,
];

/// What a commit writes, in order: every table, then the partial updates of rows written
/// before ([`Merge::Update`]).
pub const WRITES: [&Table; 15] = [
    &CHECKPOINT,
    &ACCOUNTS,
    &BETS,
    &BET_LEGS,
    &BET_HISTORY,
    &TRANSFERS,
    &AUDIT,
    &DAILY_TOTALS,
    &ACCOUNT_LIMITS,
    &FIRST_REPLIES,
    &ALERTS,
    &CASES,
    &CASE_ACTIONS,
    &BET_SETTLEMENTS,
    &LEG_RESULTS,
];

/// The table whose rows `update` (a [`Merge::Update`]) changes.
pub fn updated_table(update: &Table) -> &'static Table {
    TABLES.iter().copied().find(|table| table.name == update.name).expect("an update of a known table")
}

/// The migrations table: which versions are applied.
pub const MIGRATIONS_TABLE: &str = "projector_migrations";

/// `(version, name, SQL)`, applied in order, each in its own transaction with its row in
/// `projector_migrations`. The SQL is valid on SQLite and PostgreSQL alike.
pub const MIGRATIONS: &[(i64, &str, &str)] = &[
    (
        1,
        "read models",
        "
CREATE TABLE projector_checkpoint (
    id BIGINT PRIMARY KEY, next_position BIGINT NOT NULL, chain_head TEXT NOT NULL,
    batches BIGINT NOT NULL, commands BIGINT NOT NULL, base_position BIGINT NOT NULL
);
CREATE TABLE accounts (
    id BIGINT PRIMARY KEY, currency TEXT NOT NULL, username TEXT, country TEXT, registered_at BIGINT,
    frozen BOOLEAN NOT NULL, timed_out_until BIGINT NOT NULL, excluded_until BIGINT NOT NULL,
    stake_factor TEXT NOT NULL, updated_position BIGINT NOT NULL
);
CREATE UNIQUE INDEX accounts_username ON accounts (username);
CREATE TABLE bets (
    id BIGINT PRIMARY KEY, account BIGINT NOT NULL, currency TEXT NOT NULL, kind TEXT NOT NULL,
    each_way BOOLEAN NOT NULL, stake_per_line BIGINT NOT NULL, line_count BIGINT NOT NULL,
    total_stake BIGINT NOT NULL, potential_payout BIGINT NOT NULL, policy TEXT NOT NULL,
    status TEXT NOT NULL, placed_status TEXT NOT NULL, placed_at BIGINT NOT NULL, delay_until BIGINT,
    settled_at BIGINT, payout BIGINT, settlement_count BIGINT NOT NULL, rejection TEXT,
    updated_position BIGINT NOT NULL
);
CREATE INDEX bets_account ON bets (account, id);
CREATE INDEX bets_placed_at ON bets (placed_at);
CREATE INDEX bets_settled_at ON bets (settled_at);
CREATE INDEX bets_status ON bets (status, id);
CREATE TABLE bet_legs (
    bet BIGINT NOT NULL, leg BIGINT NOT NULL, selection BIGINT NOT NULL, market BIGINT NOT NULL,
    event BIGINT NOT NULL, requested_odds BIGINT NOT NULL, odds BIGINT NOT NULL,
    price_version BIGINT NOT NULL, taken TEXT NOT NULL, each_way_places BIGINT,
    each_way_fraction TEXT, result TEXT, dead_heat TEXT, void_factor TEXT,
    PRIMARY KEY (bet, leg)
);
CREATE INDEX bet_legs_market ON bet_legs (market, bet);
CREATE INDEX bet_legs_event ON bet_legs (event, bet);
CREATE TABLE bet_history (
    position BIGINT NOT NULL, ordinal BIGINT NOT NULL, bet BIGINT NOT NULL, at BIGINT NOT NULL,
    status TEXT NOT NULL, payout BIGINT NOT NULL,
    PRIMARY KEY (position, ordinal)
);
CREATE INDEX bet_history_bet ON bet_history (bet, position, ordinal);
CREATE TABLE transfers (
    id BIGINT PRIMARY KEY, position BIGINT NOT NULL, debit BIGINT NOT NULL, credit BIGINT NOT NULL,
    currency TEXT NOT NULL, amount BIGINT NOT NULL, code TEXT NOT NULL, status TEXT NOT NULL,
    pending_id BIGINT, reference BIGINT NOT NULL, at BIGINT NOT NULL
);
CREATE INDEX transfers_at ON transfers (at);
CREATE TABLE statements (
    account BIGINT NOT NULL, transfer BIGINT NOT NULL, position BIGINT NOT NULL, at BIGINT NOT NULL,
    code TEXT NOT NULL, status TEXT NOT NULL, amount BIGINT NOT NULL, bet BIGINT,
    balance_after BIGINT NOT NULL, available_after BIGINT NOT NULL,
    pending_stakes_after BIGINT NOT NULL, debt_after BIGINT NOT NULL,
    PRIMARY KEY (account, transfer)
);
CREATE TABLE audit (
    position BIGINT NOT NULL, ordinal BIGINT NOT NULL, sequence BIGINT NOT NULL, at BIGINT NOT NULL,
    command TEXT NOT NULL, account BIGINT, outcome TEXT NOT NULL, reference TEXT,
    PRIMARY KEY (position, ordinal)
);
CREATE INDEX audit_account ON audit (account, position);
CREATE INDEX audit_at ON audit (at);
CREATE TABLE daily_totals (
    day BIGINT NOT NULL, currency TEXT NOT NULL, bets_placed BIGINT NOT NULL,
    stakes_placed BIGINT NOT NULL, settlements BIGINT NOT NULL, stakes_settled BIGINT NOT NULL,
    payouts BIGINT NOT NULL, cashouts BIGINT NOT NULL, reversals BIGINT NOT NULL,
    payouts_reversed BIGINT NOT NULL, recognised_as_debt BIGINT NOT NULL, stakes_reversed BIGINT NOT NULL,
    PRIMARY KEY (day, currency)
);
",
    ),
    (
        2,
        "reports and audit from the models",
        "
ALTER TABLE bets ADD COLUMN fx_base TEXT;
ALTER TABLE bets ADD COLUMN base_stake BIGINT;
ALTER TABLE transfers ADD COLUMN fx_base TEXT;
ALTER TABLE transfers ADD COLUMN base_amount BIGINT;
ALTER TABLE audit ADD COLUMN reply_digest TEXT;
ALTER TABLE audit ADD COLUMN body TEXT;
CREATE INDEX audit_command ON audit (command, position);
CREATE TABLE account_limits (
    account BIGINT NOT NULL, kind TEXT NOT NULL, period TEXT NOT NULL, current_value BIGINT,
    pending BOOLEAN NOT NULL, pending_value BIGINT, pending_at BIGINT, updated_position BIGINT NOT NULL,
    PRIMARY KEY (account, kind, period)
);
",
    ),
    (
        3,
        "first replies of keyed commands",
        "
CREATE TABLE first_replies (
    key_hash TEXT PRIMARY KEY, account BIGINT, body_hash TEXT NOT NULL, position BIGINT NOT NULL,
    at BIGINT NOT NULL, outcome TEXT NOT NULL, reply TEXT NOT NULL
);
CREATE INDEX first_replies_at ON first_replies (at);
",
    ),
    (
        4,
        "who submitted each audited command, and why",
        "
ALTER TABLE audit ADD COLUMN actor_kind TEXT;
ALTER TABLE audit ADD COLUMN actor_id TEXT;
ALTER TABLE audit ADD COLUMN reason TEXT;
",
    ),
    (
        5,
        "SQLite: keyed tables without rowid",
        // A table whose primary key is not one integer is two B-trees in SQLite (the rows by
        // rowid, and the key's index); `WITHOUT ROWID` makes it one, keyed by the primary key,
        // so every insert and upsert writes one tree fewer. Rebuilt with the same columns,
        // rows and indexes. PostgreSQL has no rowid: nothing to do there.
        "
/* sqlite only */ CREATE TABLE bet_legs_v5 (
    bet BIGINT NOT NULL, leg BIGINT NOT NULL, selection BIGINT NOT NULL, market BIGINT NOT NULL,
    event BIGINT NOT NULL, requested_odds BIGINT NOT NULL, odds BIGINT NOT NULL,
    price_version BIGINT NOT NULL, taken TEXT NOT NULL, each_way_places BIGINT,
    each_way_fraction TEXT, result TEXT, dead_heat TEXT, void_factor TEXT,
    PRIMARY KEY (bet, leg)
) WITHOUT ROWID;
/* sqlite only */ INSERT INTO bet_legs_v5 SELECT * FROM bet_legs;
/* sqlite only */ DROP TABLE bet_legs;
/* sqlite only */ ALTER TABLE bet_legs_v5 RENAME TO bet_legs;
/* sqlite only */ CREATE INDEX bet_legs_market ON bet_legs (market, bet);
/* sqlite only */ CREATE INDEX bet_legs_event ON bet_legs (event, bet);
/* sqlite only */ CREATE TABLE bet_history_v5 (
    position BIGINT NOT NULL, ordinal BIGINT NOT NULL, bet BIGINT NOT NULL, at BIGINT NOT NULL,
    status TEXT NOT NULL, payout BIGINT NOT NULL,
    PRIMARY KEY (position, ordinal)
) WITHOUT ROWID;
/* sqlite only */ INSERT INTO bet_history_v5 SELECT * FROM bet_history;
/* sqlite only */ DROP TABLE bet_history;
/* sqlite only */ ALTER TABLE bet_history_v5 RENAME TO bet_history;
/* sqlite only */ CREATE INDEX bet_history_bet ON bet_history (bet, position, ordinal);
/* sqlite only */ CREATE TABLE statements_v5 (
    account BIGINT NOT NULL, transfer BIGINT NOT NULL, position BIGINT NOT NULL, at BIGINT NOT NULL,
    code TEXT NOT NULL, status TEXT NOT NULL, amount BIGINT NOT NULL, bet BIGINT,
    balance_after BIGINT NOT NULL, available_after BIGINT NOT NULL,
    pending_stakes_after BIGINT NOT NULL, debt_after BIGINT NOT NULL,
    PRIMARY KEY (account, transfer)
) WITHOUT ROWID;
/* sqlite only */ INSERT INTO statements_v5 SELECT * FROM statements;
/* sqlite only */ DROP TABLE statements;
/* sqlite only */ ALTER TABLE statements_v5 RENAME TO statements;
/* sqlite only */ CREATE TABLE daily_totals_v5 (
    day BIGINT NOT NULL, currency TEXT NOT NULL, bets_placed BIGINT NOT NULL,
    stakes_placed BIGINT NOT NULL, settlements BIGINT NOT NULL, stakes_settled BIGINT NOT NULL,
    payouts BIGINT NOT NULL, cashouts BIGINT NOT NULL, reversals BIGINT NOT NULL,
    payouts_reversed BIGINT NOT NULL, recognised_as_debt BIGINT NOT NULL, stakes_reversed BIGINT NOT NULL,
    PRIMARY KEY (day, currency)
) WITHOUT ROWID;
/* sqlite only */ INSERT INTO daily_totals_v5 SELECT * FROM daily_totals;
/* sqlite only */ DROP TABLE daily_totals;
/* sqlite only */ ALTER TABLE daily_totals_v5 RENAME TO daily_totals;
/* sqlite only */ CREATE TABLE account_limits_v5 (
    account BIGINT NOT NULL, kind TEXT NOT NULL, period TEXT NOT NULL, current_value BIGINT,
    pending BOOLEAN NOT NULL, pending_value BIGINT, pending_at BIGINT, updated_position BIGINT NOT NULL,
    PRIMARY KEY (account, kind, period)
) WITHOUT ROWID;
/* sqlite only */ INSERT INTO account_limits_v5 SELECT * FROM account_limits;
/* sqlite only */ DROP TABLE account_limits;
/* sqlite only */ ALTER TABLE account_limits_v5 RENAME TO account_limits;
/* sqlite only */ CREATE TABLE first_replies_v5 (
    key_hash TEXT PRIMARY KEY, account BIGINT, body_hash TEXT NOT NULL, position BIGINT NOT NULL,
    at BIGINT NOT NULL, outcome TEXT NOT NULL, reply TEXT NOT NULL
) WITHOUT ROWID;
/* sqlite only */ INSERT INTO first_replies_v5 SELECT * FROM first_replies;
/* sqlite only */ DROP TABLE first_replies;
/* sqlite only */ ALTER TABLE first_replies_v5 RENAME TO first_replies;
/* sqlite only */ CREATE INDEX first_replies_at ON first_replies (at);
",
    ),
    (
        6,
        "SQLite: integer keys as rowids, the audit keyed by its primary key",
        // In SQLite only a column declared exactly `INTEGER PRIMARY KEY` is the rowid: `id
        // BIGINT PRIMARY KEY` made `bets`, `transfers` and `accounts` two B-trees each (rows by
        // a hidden rowid, and a unique index on `id`), so every row written went into one tree
        // more than needed. `audit`, keyed by (position, ordinal) and written in key order, is
        // one tree by that key. Same columns, rows and indexes; PostgreSQL has nothing to do.
        // (Number 6 is taken by another change.)
        "
/* sqlite only */ CREATE TABLE bets_v7 (
    id INTEGER PRIMARY KEY, account BIGINT NOT NULL, currency TEXT NOT NULL, kind TEXT NOT NULL,
    each_way BOOLEAN NOT NULL, stake_per_line BIGINT NOT NULL, line_count BIGINT NOT NULL,
    total_stake BIGINT NOT NULL, potential_payout BIGINT NOT NULL, policy TEXT NOT NULL,
    status TEXT NOT NULL, placed_status TEXT NOT NULL, placed_at BIGINT NOT NULL, delay_until BIGINT,
    settled_at BIGINT, payout BIGINT, settlement_count BIGINT NOT NULL, rejection TEXT,
    updated_position BIGINT NOT NULL, fx_base TEXT, base_stake BIGINT
);
/* sqlite only */ INSERT INTO bets_v7 SELECT * FROM bets;
/* sqlite only */ DROP TABLE bets;
/* sqlite only */ ALTER TABLE bets_v7 RENAME TO bets;
/* sqlite only */ CREATE INDEX bets_account ON bets (account, id);
/* sqlite only */ CREATE INDEX bets_placed_at ON bets (placed_at);
/* sqlite only */ CREATE INDEX bets_settled_at ON bets (settled_at);
/* sqlite only */ CREATE INDEX bets_status ON bets (status, id);
/* sqlite only */ CREATE TABLE transfers_v7 (
    id INTEGER PRIMARY KEY, position BIGINT NOT NULL, debit BIGINT NOT NULL, credit BIGINT NOT NULL,
    currency TEXT NOT NULL, amount BIGINT NOT NULL, code TEXT NOT NULL, status TEXT NOT NULL,
    pending_id BIGINT, reference BIGINT NOT NULL, at BIGINT NOT NULL, fx_base TEXT, base_amount BIGINT
);
/* sqlite only */ INSERT INTO transfers_v7 SELECT * FROM transfers;
/* sqlite only */ DROP TABLE transfers;
/* sqlite only */ ALTER TABLE transfers_v7 RENAME TO transfers;
/* sqlite only */ CREATE INDEX transfers_at ON transfers (at);
/* sqlite only */ CREATE TABLE accounts_v7 (
    id INTEGER PRIMARY KEY, currency TEXT NOT NULL, username TEXT, country TEXT, registered_at BIGINT,
    frozen BOOLEAN NOT NULL, timed_out_until BIGINT NOT NULL, excluded_until BIGINT NOT NULL,
    stake_factor TEXT NOT NULL, updated_position BIGINT NOT NULL
);
/* sqlite only */ INSERT INTO accounts_v7 SELECT * FROM accounts;
/* sqlite only */ DROP TABLE accounts;
/* sqlite only */ ALTER TABLE accounts_v7 RENAME TO accounts;
/* sqlite only */ CREATE UNIQUE INDEX accounts_username ON accounts (username);
/* sqlite only */ CREATE TABLE audit_v7 (
    position BIGINT NOT NULL, ordinal BIGINT NOT NULL, sequence BIGINT NOT NULL, at BIGINT NOT NULL,
    command TEXT NOT NULL, account BIGINT, outcome TEXT NOT NULL, reference TEXT,
    reply_digest TEXT, body TEXT, actor_kind TEXT, actor_id TEXT, reason TEXT,
    PRIMARY KEY (position, ordinal)
) WITHOUT ROWID;
/* sqlite only */ INSERT INTO audit_v7 SELECT * FROM audit;
/* sqlite only */ DROP TABLE audit;
/* sqlite only */ ALTER TABLE audit_v7 RENAME TO audit;
/* sqlite only */ CREATE INDEX audit_account ON audit (account, position);
/* sqlite only */ CREATE INDEX audit_at ON audit (at);
/* sqlite only */ CREATE INDEX audit_command ON audit (command, position);
",
    ),
    (
        7,
        "AML monitoring: alerts, cases and case actions",
        "
CREATE TABLE alerts (
    id BIGINT PRIMARY KEY, account BIGINT NOT NULL, rule TEXT NOT NULL, kind TEXT NOT NULL,
    value BIGINT NOT NULL, threshold BIGINT NOT NULL, currency TEXT NOT NULL, at BIGINT NOT NULL,
    case_id BIGINT, position BIGINT NOT NULL
);
CREATE INDEX alerts_account ON alerts (account, id);
CREATE INDEX alerts_at ON alerts (at);
CREATE TABLE cases (
    id BIGINT PRIMARY KEY, account BIGINT NOT NULL, status TEXT NOT NULL, opened_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL, alerts_total BIGINT NOT NULL, reference TEXT,
    updated_position BIGINT NOT NULL
);
CREATE INDEX cases_account ON cases (account, id);
CREATE INDEX cases_status ON cases (status, id);
CREATE TABLE case_actions (
    position BIGINT NOT NULL, ordinal BIGINT NOT NULL, case_id BIGINT NOT NULL, account BIGINT NOT NULL,
    action TEXT NOT NULL, actor_kind TEXT NOT NULL, actor_id TEXT NOT NULL, reason TEXT NOT NULL,
    note TEXT, reference TEXT, status TEXT NOT NULL, at BIGINT NOT NULL,
    PRIMARY KEY (position, ordinal)
);
CREATE INDEX case_actions_case ON case_actions (case_id, position);
",
    ),
    (
        8,
        "statements folded into transfers",
        // A statement row repeated its transfer (id, position, time, code, status, amount) to
        // add the player's side of it: as columns of `transfers` the projector writes one row
        // per transfer instead of two (about a tenth of its rows). The view keeps the old
        // table's name and columns for readers; its filter and the partial index keep a
        // statement page one index range. Rows written before are moved over.
        "
ALTER TABLE transfers ADD COLUMN account BIGINT;
ALTER TABLE transfers ADD COLUMN bet BIGINT;
ALTER TABLE transfers ADD COLUMN signed_amount BIGINT;
ALTER TABLE transfers ADD COLUMN balance_after BIGINT;
ALTER TABLE transfers ADD COLUMN available_after BIGINT;
ALTER TABLE transfers ADD COLUMN pending_stakes_after BIGINT;
ALTER TABLE transfers ADD COLUMN debt_after BIGINT;
UPDATE transfers SET account = s.account, bet = s.bet, signed_amount = s.amount, balance_after = s.balance_after,
    available_after = s.available_after, pending_stakes_after = s.pending_stakes_after, debt_after = s.debt_after
    FROM statements s WHERE s.transfer = transfers.id;
DROP TABLE statements;
CREATE INDEX transfers_account ON transfers (account, id) WHERE account IS NOT NULL;
CREATE VIEW statements AS SELECT account, id AS transfer, position, at, code, status, signed_amount AS amount, bet,
    balance_after, available_after, pending_stakes_after, debt_after
    FROM transfers WHERE account IS NOT NULL;
",
    ),
    (
        9,
        "SQLite: first replies appended in order, found by a unique index on their key",
        // Keyed by a hash, `first_replies` (migration 5 made it one tree by that key) took each
        // row, reply and all, at a random place: nearly every row of a commit dirtied a page of
        // its own, written to the WAL and again at the checkpoint. As a rowid table its rows
        // are appended in the order they are written, and only the unique index on `key_hash`
        // (about 40 bytes an entry instead of a whole row) takes keys at random: the same
        // random keys land on a tenth of the pages. Same columns and rows; the conflict target
        // of the insert (`key_hash`) is that index. PostgreSQL's tables are heaps already.
        "
/* sqlite only */ CREATE TABLE first_replies_v9 (
    key_hash TEXT NOT NULL, account BIGINT, body_hash TEXT NOT NULL, position BIGINT NOT NULL,
    at BIGINT NOT NULL, outcome TEXT NOT NULL, reply TEXT NOT NULL
);
/* sqlite only */ INSERT INTO first_replies_v9 SELECT * FROM first_replies ORDER BY position, key_hash;
/* sqlite only */ DROP TABLE first_replies;
/* sqlite only */ ALTER TABLE first_replies_v9 RENAME TO first_replies;
/* sqlite only */ CREATE UNIQUE INDEX first_replies_key ON first_replies (key_hash);
/* sqlite only */ CREATE INDEX first_replies_at ON first_replies (at);
",
    ),
    (
        10,
        "settled bets indexed by settlement time, open ones not at all",
        // Every open bet had an entry (NULL, id) in `bets_settled_at`, removed from wherever it
        // lay when the bet settled: a page read and dirtied at random per settlement. Only
        // settled bets are ever looked up by that time (a window, `>=` and `<`, which implies
        // NOT NULL), so the index holds them alone and takes each at its end.
        "
DROP INDEX bets_settled_at;
CREATE INDEX bets_settled_at ON bets (settled_at) WHERE settled_at IS NOT NULL;
",
    ),
];

/// Which store a migration runs on: a statement that begins with [`SQLITE_ONLY`] is skipped on
/// PostgreSQL (a storage choice with no PostgreSQL equivalent, such as `WITHOUT ROWID`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// The prefix of a migration statement only SQLite runs.
pub const SQLITE_ONLY: &str = "/* sqlite only */";

/// The newest schema version this build writes.
pub const SCHEMA_VERSION: i64 = MIGRATIONS[MIGRATIONS.len() - 1].0;

/// Splits a migration into the statements `backend` runs (none of ours has a `;` inside a
/// literal).
pub fn statements(sql: &str, backend: Backend) -> impl Iterator<Item = &str> {
    sql.split(';').map(str::trim).filter(|statement| !statement.is_empty()).filter_map(move |statement| {
        match (statement.strip_prefix(SQLITE_ONLY), backend) {
            (Some(statement), Backend::Sqlite) => Some(statement.trim_start()),
            (Some(_), Backend::Postgres) => None,
            (None, _) => Some(statement),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_table_is_created_by_the_migrations_with_its_columns_in_order() {
        for table in TABLES {
            let create = format!("CREATE TABLE {} (", table.name);
            let sql = MIGRATIONS.iter().map(|(_, _, sql)| *sql).collect::<String>();
            let start = sql.find(&create).unwrap_or_else(|| panic!("{} is not created", table.name)) + create.len();
            let body = &sql[start..];
            let mut at = 0;
            for column in table.columns {
                let needle = format!("{} ", column.name);
                let found = body[at..].find(&needle).unwrap_or_else(|| panic!("{}.{}", table.name, column.name));
                at += found + needle.len();
            }
            assert!(table.key >= 1 && table.key <= table.columns.len());
        }
    }

    #[test]
    fn sqlite_only_statements_are_skipped_on_postgres() {
        let sql = "CREATE TABLE a (x BIGINT);\n/* sqlite only */ CREATE TABLE b (x BIGINT) WITHOUT ROWID;\n";
        assert_eq!(
            statements(sql, Backend::Sqlite).collect::<Vec<_>>(),
            ["CREATE TABLE a (x BIGINT)", "CREATE TABLE b (x BIGINT) WITHOUT ROWID"]
        );
        assert_eq!(statements(sql, Backend::Postgres).collect::<Vec<_>>(), ["CREATE TABLE a (x BIGINT)"]);
    }

    #[test]
    fn partial_updates_name_columns_their_table_has_and_come_after_every_table() {
        for (index, table) in WRITES.iter().enumerate() {
            if table.merge != Merge::Update {
                assert_eq!(table.name, TABLES[index].name, "in table order");
                continue;
            }
            let updated = updated_table(table);
            assert!(index >= TABLES.len(), "{} after every table", table.name);
            assert_eq!(table.key_list(), updated.key_list(), "{} is keyed like {}", table.name, updated.name);
            for column in table.columns {
                let found = &updated.columns[updated.index_of(column.name)];
                assert_eq!((found.ty, found.nullable), (column.ty, column.nullable), "{}.{}", table.name, column.name);
                assert!(!found.fixed, "{}.{} never changes", table.name, column.name);
            }
        }
    }

    #[test]
    fn an_upsert_sets_only_the_columns_that_can_change() {
        let clause = crate::store::conflict_clause(&BETS);
        assert!(clause.contains("status = excluded.status") && clause.contains("payout = excluded.payout"));
        assert!(!clause.contains("account = ") && !clause.contains("placed_at = "), "{clause}");
        let clause = crate::store::conflict_clause(&BET_LEGS);
        assert!(clause.contains("result = excluded.result") && !clause.contains("market = "), "{clause}");
    }
}
