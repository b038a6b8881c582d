//! The rows of one transaction while they wait for their commit, kept packed.
//!
//! A transaction holds hundreds of thousands of rows while the projector is behind (larger
//! transactions write far fewer pages: `docs/benchmarks.md`). As `Vec<Value>` a row cost about
//! 750 bytes (32 bytes a value, a vector per row and another per key, each allocated and freed
//! on its own); packed, a table's rows lie one after another in one buffer (integers as
//! variable-length numbers, texts with their length), and a keyed row's key is one allocation,
//! in an encoding whose byte order is the key's order. The stores bind the values straight
//! from the packed bytes ([`Row::values`]).

use std::collections::BTreeMap;

use crate::schema::{updated_table, Merge, Table, Value, WRITES};

/// A value read from a packed row, borrowing its text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ValueRef<'a> {
    Null,
    Bool(bool),
    Int(i64),
    Text(&'a str),
}

impl<'a> ValueRef<'a> {
    pub fn int(self) -> Option<i64> {
        match self {
            ValueRef::Int(value) => Some(value),
            _ => None,
        }
    }

    pub fn bool(self) -> Option<bool> {
        match self {
            ValueRef::Bool(value) => Some(value),
            _ => None,
        }
    }

    pub fn text(self) -> Option<&'a str> {
        match self {
            ValueRef::Text(value) => Some(value),
            _ => None,
        }
    }

    pub fn to_value(self) -> Value {
        match self {
            ValueRef::Null => Value::Null,
            ValueRef::Bool(value) => Value::Bool(value),
            ValueRef::Int(value) => Value::Int(value),
            ValueRef::Text(value) => Value::from(value.to_owned()),
        }
    }
}

impl<'a> From<&'a Value> for ValueRef<'a> {
    fn from(value: &'a Value) -> ValueRef<'a> {
        match value {
            Value::Null => ValueRef::Null,
            Value::Bool(value) => ValueRef::Bool(*value),
            Value::Int(value) => ValueRef::Int(*value),
            Value::Text(value) => ValueRef::Text(value),
        }
    }
}

const NULL: u8 = 0;
const FALSE: u8 = 1;
const TRUE: u8 = 2;
const INT: u8 = 3;
const TEXT: u8 = 4;

/// Appends `values` packed: a tag byte each, then a zigzag LEB128 integer or a text's length
/// (LEB128) and bytes.
fn pack_into(values: &[Value], out: &mut Vec<u8>) {
    for value in values {
        out.push(tag(value));
        match value {
            Value::Null | Value::Bool(_) => {}
            Value::Int(value) => put_varint(out, zigzag(*value)),
            Value::Text(text) => {
                put_varint(out, text.len() as u64);
                out.extend_from_slice(text.as_bytes());
            }
        }
    }
}

/// A value's tag, in the order of `Value`'s variants (so that packed keys sort as values).
fn tag(value: &Value) -> u8 {
    match value {
        Value::Null => NULL,
        Value::Bool(false) => FALSE,
        Value::Bool(true) => TRUE,
        Value::Int(_) => INT,
        Value::Text(_) => TEXT,
    }
}

fn put_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push(value as u8 | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

fn zigzag(value: i64) -> u64 {
    ((value << 1) ^ (value >> 63)) as u64
}

/// A key packed so that byte order is value order (`Value`'s `Ord`: by variant, then value):
/// integers as 8 big-endian bytes with the sign bit flipped, texts as their bytes with 0x00
/// escaped as 0x00 0xFF and ended by 0x00 0x00.
fn pack_key(values: &[Value]) -> Box<[u8]> {
    let len = values
        .iter()
        .map(|value| match value {
            Value::Null | Value::Bool(_) => 1,
            Value::Int(_) => 9,
            Value::Text(text) => 3 + text.len() + text.bytes().filter(|byte| *byte == 0).count(),
        })
        .sum();
    let mut out = Vec::with_capacity(len);
    for value in values {
        out.push(tag(value));
        match value {
            Value::Null | Value::Bool(_) => {}
            Value::Int(value) => out.extend_from_slice(&((*value as u64) ^ (1 << 63)).to_be_bytes()),
            Value::Text(text) => {
                for &byte in text.as_bytes() {
                    out.push(byte);
                    if byte == 0 {
                        out.push(0xFF);
                    }
                }
                out.extend_from_slice(&[0, 0]);
            }
        }
    }
    debug_assert_eq!(out.len(), len);
    out.into_boxed_slice()
}

/// One pending row, packed.
#[derive(Clone, Copy, Debug)]
pub struct Row<'a>(&'a [u8]);

impl<'a> Row<'a> {
    /// The row's values in column order.
    pub fn values(self) -> Values<'a> {
        Values { rest: self.0 }
    }

    pub fn to_values(self) -> Vec<Value> {
        self.values().map(ValueRef::to_value).collect()
    }
}

/// The values of a [`Row`].
pub struct Values<'a> {
    rest: &'a [u8],
}

impl<'a> Values<'a> {
    fn varint(&mut self) -> u64 {
        let mut value = 0u64;
        let mut shift = 0;
        loop {
            let byte = self.rest[0];
            self.rest = &self.rest[1..];
            value |= u64::from(byte & 0x7F) << shift;
            if byte < 0x80 {
                return value;
            }
            shift += 7;
        }
    }
}

impl<'a> Iterator for Values<'a> {
    type Item = ValueRef<'a>;

    fn next(&mut self) -> Option<ValueRef<'a>> {
        let (&tag, rest) = self.rest.split_first()?;
        self.rest = rest;
        Some(match tag {
            NULL => ValueRef::Null,
            FALSE => ValueRef::Bool(false),
            TRUE => ValueRef::Bool(true),
            INT => {
                let zigzag = self.varint();
                ValueRef::Int((zigzag >> 1) as i64 ^ -((zigzag & 1) as i64))
            }
            TEXT => {
                let len = self.varint() as usize;
                let (text, rest) = self.rest.split_at(len);
                self.rest = rest;
                // Packed from a `str` by this module: always UTF-8.
                ValueRef::Text(std::str::from_utf8(text).expect("packed from a str"))
            }
            other => unreachable!("packed by this module, never tag {other}"),
        })
    }
}

/// Where a packed row lies in its table's bytes.
type Span = (usize, usize);

/// Pending rows of one table, packed one after another in `bytes` (no allocation per row):
/// appended (an append-only table's keys are unique by construction) or by primary key,
/// packed ([`pack_key`]), in key order (an upsert keeps the newest row of a key; an `Add`
/// table sums). A row replaced or changed is packed again at the end; the old bytes stay until
/// the commit.
#[derive(Debug, Default)]
struct Rows {
    bytes: Vec<u8>,
    /// Append-only tables: the rows in the order put.
    appended: Vec<Span>,
    /// Keyed tables: the rows by key.
    keyed: BTreeMap<Box<[u8]>, Span>,
}

impl Rows {
    fn push(&mut self, values: &[Value]) -> Span {
        let start = self.bytes.len();
        pack_into(values, &mut self.bytes);
        (start, self.bytes.len())
    }

    fn row(&self, (start, end): Span) -> Row<'_> {
        Row(&self.bytes[start..end])
    }
}

/// Rows waiting to be committed, by table.
#[derive(Debug)]
pub struct Changes {
    tables: Vec<(&'static Table, Rows)>,
    rows: usize,
}

impl Default for Changes {
    fn default() -> Changes {
        Changes { tables: WRITES.iter().map(|table| (*table, Rows::default())).collect(), rows: 0 }
    }
}

impl Changes {
    /// The pending rows of `table` (a table and its partial updates share a name).
    fn slot(&mut self, table: &Table) -> &mut Rows {
        let update = table.merge == Merge::Update;
        let index = WRITES
            .iter()
            .position(|candidate| candidate.name == table.name && (candidate.merge == Merge::Update) == update)
            .expect("a known table");
        &mut self.tables[index].1
    }

    /// Adds a row, or replaces the pending row of its key in a keyed table. A partial update
    /// ([`Merge::Update`]) of a row pending in this commit changes that row instead; a whole
    /// row replaces a pending partial update of its key.
    pub fn put(&mut self, table: &Table, row: Vec<Value>) {
        debug_assert_eq!(row.len(), table.columns.len(), "{}", table.name);
        match table.merge {
            Merge::Update => return self.update(table, row),
            Merge::Upsert => self.drop_updates(table, &row[..table.key]),
            Merge::Insert | Merge::Add | Merge::Keep => {}
        }
        let slot = self.slot(table);
        let added = if table.merge == Merge::Insert {
            let span = slot.push(&row);
            slot.appended.push(span);
            true
        } else {
            let key = pack_key(&row[..table.key]);
            match slot.keyed.get(&key) {
                Some(_) if table.merge == Merge::Keep => false,
                found => {
                    let added = found.is_none();
                    let span = slot.push(&row);
                    slot.keyed.insert(key, span);
                    added
                }
            }
        };
        if added {
            self.rows += 1;
        }
    }

    fn update(&mut self, update: &Table, row: Vec<Value>) {
        let table = updated_table(update);
        let key = pack_key(&row[..update.key]);
        let pending = self.slot(table);
        if let Some(&span) = pending.keyed.get(&key) {
            let mut values = pending.row(span).to_values();
            for (column, value) in update.columns.iter().zip(row).skip(update.key) {
                values[table.index_of(column.name)] = value;
            }
            let span = pending.push(&values);
            pending.keyed.insert(key, span);
            return;
        }
        let updates = self.slot(update);
        let span = updates.push(&row);
        if updates.keyed.insert(key, span).is_none() {
            self.rows += 1;
        }
    }

    /// Forgets the pending partial updates of `key` in `table` (a whole row follows).
    fn drop_updates(&mut self, table: &Table, key: &[Value]) {
        let key = pack_key(key);
        for update in WRITES.iter().filter(|update| update.merge == Merge::Update && update.name == table.name) {
            if self.slot(update).keyed.remove(&key).is_some() {
                self.rows -= 1;
            }
        }
    }

    /// Adds a row's integer columns to the pending row of its key.
    pub(crate) fn add(&mut self, table: &Table, row: Vec<Value>) {
        debug_assert_eq!(table.merge, Merge::Add, "{} is not summed", table.name);
        let key = pack_key(&row[..table.key]);
        let slot = self.slot(table);
        let values = match slot.keyed.get(&key) {
            Some(&span) => {
                let mut values = slot.row(span).to_values();
                for (stored, added) in values.iter_mut().zip(row).skip(table.key) {
                    if let (Value::Int(stored), Value::Int(added)) = (stored, added) {
                        *stored += added;
                    }
                }
                values
            }
            None => {
                self.rows += 1;
                row
            }
        };
        let slot = self.slot(table);
        let span = slot.push(&values);
        slot.keyed.insert(key, span);
    }

    /// Rows pending, counting an upserted key once.
    pub fn rows(&self) -> usize {
        self.rows
    }

    pub fn is_empty(&self) -> bool {
        self.rows == 0
    }

    /// Each table with its pending rows (keyed tables in key order).
    pub fn tables(&self) -> impl Iterator<Item = (&'static Table, Vec<Row<'_>>)> + '_ {
        self.tables.iter().map(|(table, rows)| {
            let pending = if table.merge == Merge::Insert {
                rows.appended.iter().map(|span| rows.row(*span)).collect()
            } else {
                rows.keyed.values().map(|span| rows.row(*span)).collect()
            };
            (*table, pending)
        })
    }

    /// Empties every table, keeping the room its bytes took for the next transaction.
    pub fn clear(&mut self) {
        for (_, rows) in &mut self.tables {
            rows.bytes.clear();
            rows.appended.clear();
            rows.keyed.clear();
        }
        self.rows = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values() -> Vec<Vec<Value>> {
        let ints = [0, 1, -1, 63, -64, 64, 127, 128, 300, -300, i64::MAX, i64::MIN, 1 << 40, -(1 << 40)];
        let texts = ["", "a", "ab", "b", "a\0", "a\0b", "\0", "é", "a longer text of some length"];
        let mut rows: Vec<Vec<Value>> = ints.iter().map(|int| vec![Value::Int(*int)]).collect();
        rows.extend(texts.iter().map(|text| vec![Value::from((*text).to_owned())]));
        rows.extend([vec![Value::Null], vec![Value::Bool(false)], vec![Value::Bool(true)]]);
        rows.push(vec![Value::Int(7), Value::constant("open"), Value::Null, Value::Bool(true), Value::Int(-9)]);
        rows.push(vec![Value::Int(7), Value::constant("open\0"), Value::Int(1)]);
        rows.push(vec![Value::Int(7), Value::constant("ope"), Value::Int(1)]);
        rows
    }

    #[test]
    fn a_packed_row_reads_back_as_its_values() {
        for row in values() {
            let mut packed = Vec::new();
            pack_into(&row, &mut packed);
            assert_eq!(Row(&packed).to_values(), row);
            assert_eq!(Row(&packed).values().count(), row.len());
        }
    }

    #[test]
    fn packed_keys_sort_as_their_values_and_differ_when_they_do() {
        let rows = values();
        for a in &rows {
            for b in &rows {
                assert_eq!(pack_key(a).cmp(&pack_key(b)), a.cmp(b), "{a:?} against {b:?}");
            }
        }
    }

    fn any_value() -> impl proptest::strategy::Strategy<Value = Value> {
        use proptest::prelude::*;
        prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::Int),
            // Texts with NULs, multi-byte characters and prefixes of one another.
            proptest::collection::vec(prop_oneof![Just('\0'), Just('a'), Just('b'), Just('é'), any::<char>()], 0..6)
                .prop_map(|chars| Value::from(chars.into_iter().collect::<String>())),
        ]
    }

    proptest::proptest! {
        #[test]
        fn any_row_reads_back_and_any_keys_sort_as_their_values(
            a in proptest::collection::vec(any_value(), 0..5),
            b in proptest::collection::vec(any_value(), 0..5),
        ) {
            let mut packed = Vec::new();
            pack_into(&a, &mut packed);
            proptest::prop_assert_eq!(Row(&packed).to_values(), a.clone());
            proptest::prop_assert_eq!(pack_key(&a).cmp(&pack_key(&b)), a.cmp(&b));
        }
    }

    #[test]
    fn keyed_rows_merge_as_their_table_says() {
        use crate::schema::{BETS, BET_SETTLEMENTS, DAILY_TOTALS, FIRST_REPLIES};
        let mut changes = Changes::default();
        let total = |day: i64, bets: i64| {
            let mut row: Vec<Value> = DAILY_TOTALS.columns.iter().map(|_| Value::Int(0)).collect();
            row[0] = Value::Int(day);
            row[1] = Value::constant("EUR");
            row[2] = Value::Int(bets);
            row
        };
        changes.add(&DAILY_TOTALS, total(1, 2));
        changes.add(&DAILY_TOTALS, total(1, 3));
        changes.add(&DAILY_TOTALS, total(2, 1));
        let reply = |key: &str, position: i64| {
            let mut row: Vec<Value> = FIRST_REPLIES.columns.iter().map(|_| Value::constant("x")).collect();
            row[0] = Value::from(key.to_owned());
            row[3] = Value::Int(position);
            row
        };
        changes.put(&FIRST_REPLIES, reply("k", 1));
        changes.put(&FIRST_REPLIES, reply("k", 2));
        assert_eq!(changes.rows(), 3);
        let pending = |changes: &Changes, name: &str, merge: Merge| -> Vec<Vec<Value>> {
            let (_, rows) = changes.tables().find(|(table, _)| table.name == name && table.merge == merge).expect(name);
            rows.into_iter().map(Row::to_values).collect()
        };
        let totals = pending(&changes, DAILY_TOTALS.name, Merge::Add);
        assert_eq!(
            totals.iter().map(|row| (row[0].int(), row[2].int())).collect::<Vec<_>>(),
            [(Some(1), Some(5)), (Some(2), Some(1))]
        );
        assert_eq!(pending(&changes, FIRST_REPLIES.name, Merge::Keep)[0][3], Value::Int(1), "the first is kept");

        // A partial update of a bet pending whole changes that row; of another bet, waits as
        // an update; a whole row after it replaces the update.
        let bet = |id: i64, status: &'static str| {
            let mut row: Vec<Value> = BETS.columns.iter().map(|_| Value::Null).collect();
            row[0] = Value::Int(id);
            row[BETS.index_of("status")] = Value::constant(status);
            row
        };
        let settle = |id: i64| {
            let mut row: Vec<Value> = BET_SETTLEMENTS.columns.iter().map(|_| Value::Null).collect();
            row[0] = Value::Int(id);
            row[BET_SETTLEMENTS.index_of("status")] = Value::constant("won");
            row
        };
        changes.put(&BETS, bet(1, "open"));
        changes.put(&BET_SETTLEMENTS, settle(1));
        changes.put(&BET_SETTLEMENTS, settle(2));
        let bets = pending(&changes, BETS.name, Merge::Upsert);
        assert_eq!(bets.len(), 1);
        assert_eq!(bets[0][BETS.index_of("status")], Value::constant("won"));
        assert_eq!(pending(&changes, BETS.name, Merge::Update).len(), 1);
        assert_eq!(changes.rows(), 5);
        changes.put(&BETS, bet(2, "lost"));
        assert_eq!(pending(&changes, BETS.name, Merge::Update).len(), 0, "the whole row replaced the update");
        assert_eq!(changes.rows(), 5);
        changes.clear();
        assert!(changes.is_empty() && changes.tables().all(|(_, rows)| rows.is_empty()));
    }
}
