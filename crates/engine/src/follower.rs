//! The snapshot follower: a second book on its own thread that applies the same durable batches
//! as the sequencer and writes the periodic snapshots from its own state, so that encoding the
//! book (about a second per million bets) never pauses the sequencer.
//!
//! The sequencer hands each batch over AFTER it is durable and its replies are sent: the
//! commands (moved, not copied), the batch's time, its first sequence number, its reply digest,
//! its journal position and the chain head after it. The follower decides the commands again
//! at that time, exactly like recovery does, and checks the reply digest: a follower that
//! decided differently stops rather than write a snapshot of a book the journal does not
//! describe. A snapshot the follower writes at position `p` is therefore byte for byte the one
//! the sequencer would have written at `p` (same book, same `next_sequence`, same chain head).
//!
//! The hand-over queue is bounded in commands (`FOLLOWER_QUEUE_COMMANDS_MAX_DEFAULT`) and the
//! sequencer never waits on it: if the follower falls that far behind, the sequencer detaches it (counted in
//! `EngineStats::follower_detached`) and periodic snapshots are skipped (counted in
//! `EngineStats::snapshots_skipped`) until the next start, which recovers from the journal as
//! always. The journal holds every batch, so skipping a snapshot only makes the next recovery
//! replay more; it never loses data.
//!
//! The follower shares the machine with the sequencer and the gateway, so it stays out of their
//! way: its thread runs at a lower OS priority (`FOLLOWER_NICE`), and under load it works in
//! steps, draining what is queued and then sleeping `FOLLOWER_POLL_INTERVAL`, rather than
//! blocking on the channel, so that handing a batch over never makes the sequencer wake it (a
//! futex wake-up and a context switch per batch). Only after a step that found nothing does it
//! block on the channel, so an idle server has no polling thread.

use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, TryRecvError};
use std::sync::Arc;
use std::time::Duration;

use book::{Book, BookEvent, Command};
use codec::reply_digest;
use journal::Position;

use crate::error::EngineError;
use crate::recovery::ChainHead;
use crate::sequencer::EngineStats;
use crate::snapshot_writer::{BookAt, SnapshotWriter, Writer};

/// Commands handed to the follower and not yet applied, beyond which the sequencer detaches it
/// rather than wait (`EngineOptions::follower_queue_commands_max`). Counted in commands, not
/// batches: under a light load batches hold one or two commands, thousands a second. About 50 s
/// of 20,000 bets/s: a follower writing a snapshot of a 10M-bet book (about 20 s) keeps up.
pub const FOLLOWER_QUEUE_COMMANDS_MAX_DEFAULT: u64 = 1_000_000;

/// How long the follower sleeps after a step that applied batches before it drains the queue
/// again. Snapshots wait at most this long more; the queue it lets build is a few thousand
/// commands at most (bounded by `FOLLOWER_QUEUE_COMMANDS_MAX_DEFAULT` anyway).
pub const FOLLOWER_POLL_INTERVAL: Duration = Duration::from_millis(10);

/// The nice value of the follower's thread (Linux; higher is lower priority): the sequencer
/// and the gateway's workers go first when the cores are busy, and the follower (a few percent
/// of a core per 10,000 bets/s) catches up when they are not. At nice 5 it still gets about a
/// third of a normal thread's share of a busy core.
pub const FOLLOWER_NICE: i32 = 5;

/// Lowers the calling thread's OS scheduling priority to `nice` (Linux: `setpriority` on the
/// thread's id; raising a thread's nice value needs no privilege). For background threads
/// (the snapshot follower, the projector) that must not take the cores from the sequencer and
/// the gateway. A failure is returned for the caller to log or ignore; nothing depends on it.
pub fn lower_thread_priority(nice: i32) -> std::io::Result<()> {
    let thread = rustix::thread::gettid();
    let current = rustix::process::getpriority_process(Some(thread))?;
    if current >= nice {
        return Ok(());
    }
    rustix::process::setpriority_process(Some(thread), nice).map_err(std::io::Error::from)
}

/// What the sequencer sends the follower.
pub(crate) enum ToFollower {
    /// A durable batch, in journal order.
    Batch(DurableBatch),
    /// An explicit snapshot request: write one at the follower's position once every batch
    /// before it is applied, and reply with that position.
    Snapshot(oneshot::Sender<Result<Position, EngineError>>),
}

/// One durable batch, as the sequencer decided and journaled it.
pub(crate) struct DurableBatch {
    pub position: Position,
    pub first_sequence: u64,
    pub timestamp: u64,
    pub reply_digest: u64,
    pub commands: Vec<Command>,
    /// The journal's chain head after this batch's record.
    pub chain_head: ChainHead,
}

pub(crate) struct Follower {
    pub book: Book,
    /// Journal position after the last batch applied.
    pub position: Position,
    pub next_sequence: u64,
    pub chain_head: ChainHead,
    /// Writes the snapshots, and says when a periodic one is due.
    pub writer: SnapshotWriter,
    pub stats: Arc<EngineStats>,
}

impl Follower {
    /// Applies batches until the sequencer drops its end of the channel (shutdown or detach).
    pub fn run(mut self, batches: Receiver<ToFollower>) {
        // Best effort: at the default priority the follower only competes more.
        let _ = lower_thread_priority(FOLLOWER_NICE);
        let mut events: Vec<BookEvent> = Vec::new();
        let mut scratch = Vec::new();
        // Whether the last step found anything: then sleep and drain again; else block.
        let mut busy = false;
        loop {
            let message = match batches.try_recv() {
                Ok(message) => message,
                Err(TryRecvError::Disconnected) => return,
                Err(TryRecvError::Empty) if busy => {
                    busy = false;
                    std::thread::sleep(FOLLOWER_POLL_INTERVAL);
                    continue;
                }
                Err(TryRecvError::Empty) => match batches.recv() {
                    Ok(message) => message,
                    Err(_) => return,
                },
            };
            busy = true;
            match message {
                ToFollower::Batch(batch) => {
                    if let Err(reason) = self.apply(&batch, &mut events, &mut scratch) {
                        self.stats.follower_failed.store(true, Ordering::SeqCst);
                        if let Ok(mut failure) = self.stats.follower_failure.lock() {
                            *failure = Some(reason);
                        }
                        return;
                    }
                    let commands = batch.commands.len() as u64;
                    self.stats.follower_queue_commands.fetch_sub(commands, Ordering::Relaxed);
                    if self.writer.due(self.next_sequence) {
                        // A failed save is counted by the writer; the next interval tries again.
                        let _ = self.save();
                    }
                }
                ToFollower::Snapshot(reply) => {
                    let _ = reply.send(self.save());
                }
            }
        }
    }

    fn apply(
        &mut self,
        batch: &DurableBatch,
        events: &mut Vec<BookEvent>,
        scratch: &mut Vec<u8>,
    ) -> Result<(), String> {
        if batch.position != self.position || batch.first_sequence != self.next_sequence {
            return Err(format!(
                "batch at position {} (sequence {}) handed to a follower at position {} (sequence {})",
                batch.position, batch.first_sequence, self.position, self.next_sequence
            ));
        }
        let mut digest = 0u64;
        for command in &batch.commands {
            events.clear();
            let reply = self.book.apply(batch.timestamp, command, events);
            digest = reply_digest(digest, &reply, scratch);
        }
        if digest != batch.reply_digest {
            return Err(format!(
                "the batch at position {} decided differently on the follower (reply digest {:#x}, sequencer {:#x})",
                batch.position, digest, batch.reply_digest
            ));
        }
        self.position += 1;
        self.next_sequence += batch.commands.len() as u64;
        self.chain_head = batch.chain_head;
        Ok(())
    }

    fn save(&self) -> Result<Position, EngineError> {
        let at = BookAt {
            position: self.position,
            next_sequence: self.next_sequence,
            chain_head: &self.chain_head,
            book: &self.book,
        };
        self.writer.save_as(Writer::Follower, at)?;
        Ok(self.position)
    }
}
