//! The snapshot format: every part of the book, and the digest that proves two books equal.

use book::{Book, BookParts};
use sha2::{Digest, Sha256};

use crate::wire::{DecodeError, Reader, Wire};

/// Version 3: `version u8` then the fields of `BookParts` in declaration order (version 1
/// had no feed state, version 2 no degraded modes).
pub const SNAPSHOT_FORMAT_VERSION: u8 = 3;

pub fn encode_snapshot(book: &Book) -> Vec<u8> {
    let parts = book.to_parts();
    let mut out = Vec::with_capacity(1 << 16);
    out.push(SNAPSHOT_FORMAT_VERSION);
    parts.config.encode(&mut out);
    parts.now.encode(&mut out);
    let ledger = parts.ledger;
    ledger.accounts().to_vec().encode(&mut out);
    ledger.transfers().to_vec().encode(&mut out);
    ledger.open_pending().collect::<Vec<_>>().encode(&mut out);
    ledger.system_currencies().collect::<Vec<_>>().encode(&mut out);
    parts.players.encode(&mut out);
    parts.events.encode(&mut out);
    parts.markets.encode(&mut out);
    parts.selections.encode(&mut out);
    parts.bets.encode(&mut out);
    parts.delayed.encode(&mut out);
    parts.quotes.encode(&mut out);
    parts.quotes_issued.encode(&mut out);
    parts.idempotency.encode(&mut out);
    parts.api_keys.encode(&mut out);
    parts.feed.encode(&mut out);
    parts.degraded.encode(&mut out);
    out
}

/// Decodes a snapshot and checks the restored book's invariants: a snapshot that decodes but
/// describes an impossible book is refused.
pub fn decode_snapshot(bytes: &[u8]) -> Result<Book, DecodeError> {
    let mut input = Reader::new(bytes);
    let version = u8::decode(&mut input)?;
    if version != SNAPSHOT_FORMAT_VERSION {
        return Err(input.error(format!("unsupported snapshot format version {version}")));
    }
    let config = Wire::decode(&mut input)?;
    let now = Wire::decode(&mut input)?;
    let accounts = Wire::decode(&mut input)?;
    let transfers = Wire::decode(&mut input)?;
    let open_pending = Wire::decode(&mut input)?;
    let system = Wire::decode(&mut input)?;
    let parts = BookParts {
        config,
        now,
        ledger: book::Ledger::from_parts(accounts, transfers, open_pending, system),
        players: Wire::decode(&mut input)?,
        events: Wire::decode(&mut input)?,
        markets: Wire::decode(&mut input)?,
        selections: Wire::decode(&mut input)?,
        bets: Wire::decode(&mut input)?,
        delayed: Wire::decode(&mut input)?,
        quotes: Wire::decode(&mut input)?,
        quotes_issued: Wire::decode(&mut input)?,
        idempotency: Wire::decode(&mut input)?,
        api_keys: Wire::decode(&mut input)?,
        feed: Wire::decode(&mut input)?,
        degraded: Wire::decode(&mut input)?,
    };
    input.finish()?;
    let book = Book::from_parts(parts);
    book.check_invariants()
        .map_err(|violation| DecodeError { offset: 0, reason: format!("snapshot invalid: {violation}") })?;
    Ok(book)
}

/// SHA-256 of the book's snapshot encoding, in hex: equal digests mean equal books.
pub fn digest(book: &Book) -> String {
    let hash = Sha256::digest(encode_snapshot(book));
    hash.iter().map(|byte| format!("{byte:02x}")).collect()
}
