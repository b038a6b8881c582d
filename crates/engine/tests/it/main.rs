//! Integration tests of the engine: durability, recovery and the sequencer's batching, on the
//! real file journal in a temporary directory.

mod batch_bytes;
mod bounded;
mod chain;
mod recovery;
mod replicated;
mod retention;
mod sequencer;
mod snapshots;
mod workload;
