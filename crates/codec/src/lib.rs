//! The versioned binary formats of the book: a journal batch (the commands the sequencer
//! decided, with their time) and a snapshot (the whole book state).
//!
//! Domain types do not derive serialization; this crate owns the formats and implements `Wire`
//! for every type it stores, field by field, so a format change is a visible edit here. Every
//! decoder is total: bad bytes give a `DecodeError` naming the offset, never a panic.

mod batch;
#[cfg(test)]
mod mutation;
mod snapshot;
mod types;
mod wire;

pub use batch::{
    begin_batch, decode_batch, encode_batch, encode_batch_entry, finish_batch, Batch, BATCH_COMMANDS_MAX,
    BATCH_FORMAT_VERSION, BATCH_HEADER_BYTES,
};
pub use snapshot::{
    decode_snapshot, digest, encode_parts, encode_snapshot, write_snapshot, SNAPSHOT_FORMAT_VERSION,
    SNAPSHOT_WRITE_BUFFER_BYTES,
};
pub use types::{body_hash, reply_digest};
pub use wire::{DecodeError, Reader, Wire};
