//! A replica engine: an `EngineHandle` whose book follows a replicated journal instead of
//! deciding commands (a cluster gateway's local read replica, `sportsbook gateway`).
//!
//! One thread owns the replica's book, as the sequencer owns the leader's. It takes the same
//! requests through the same bounded inbox, so every caller of `EngineHandle` works unchanged:
//!
//! - **Records** of the replicated journal, handed over by a [`ReplicaFeed`] (the cluster's
//!   tail of the stream), are applied exactly as recovery replays them (`Replica`: decided
//!   again at the batch's stamped time, reply digest checked, chain extended); then the commit
//!   hooks run with the batch's events, as they do after a sequencer's append. A record that
//!   replays differently stops the engine: a diverged book must never serve.
//! - **Reads** and inspections run between two records, against the state after a whole record.
//! - **Commands** are handed to a [`Forward`] (the leader, over the network). Its answer carries
//!   the journal position after the command's batch; the reply is held until the replica has
//!   applied that far, and only then delivered (`try_submit_then`'s `then` runs on the replica's
//!   book at that point, which holds the batch; later records may be in it too). So a caller
//!   that got a reply reads its own write here, and `EngineStats::committed_position` is at or
//!   past its batch when the reply arrives. The hold is bounded: past
//!   [`ReplicaEngineOptions::catch_up_wait_max`] the caller gets `EngineError::ReplicaBehind`
//!   (the command WAS decided; a retry with its idempotency key gets its reply).

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use book::Reply;
use journal::{Journal, Position, SnapshotStore};

use crate::error::EngineError;
use crate::recovery::{ChainHead, Recovered, Replica};
use crate::sequencer::{
    read_journal_page, CommitHook, Committed, EngineHandle, EngineStats, JournalPage, JournalView, Request, Responder,
    Submission, INBOX_MAX_DEFAULT,
};

/// How long a forwarded command's reply waits for the replica to apply its batch, unless the
/// options say otherwise. A healthy replica is milliseconds behind the leader; this much means
/// it is stuck or far behind, and the caller is better told so (503) than kept waiting.
pub const REPLICA_CATCH_UP_WAIT_MAX: Duration = Duration::from_secs(5);

/// A forwarded command's answer: the book's reply, and the journal position after its batch
/// (the replica delivers the reply once it has applied that far).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Forwarded {
    pub reply: Reply,
    pub position: Position,
}

/// Called once with a forwarded command's answer, from any thread.
pub type ForwardDone = Box<dyn FnOnce(Result<Forwarded, EngineError>) + Send>;

/// Where a replica engine sends commands: the book's leader. `forward` must not block (it runs
/// on the replica's thread): start the work elsewhere and call `done` when it is over. Errors:
/// `EngineError::NoLeader` when the command reached no book, `Overloaded` or `StorageFull` when
/// the leader refused it, `Stopped` when its outcome is unknown.
pub trait Forward: Send + 'static {
    fn forward(&self, submission: Submission, done: ForwardDone);
}

pub struct ReplicaEngineOptions {
    pub inbox_max: usize,
    /// Run in order on the replica's thread after each record applied (metrics, streams).
    pub on_commit: Vec<CommitHook>,
    /// [`REPLICA_CATCH_UP_WAIT_MAX`] by default.
    pub catch_up_wait_max: Duration,
    /// A snapshot of the replica every this many commands applied (0: only at shutdown and when
    /// asked), written on the replica's thread between records.
    pub snapshot_every_commands: u64,
}

impl Default for ReplicaEngineOptions {
    fn default() -> ReplicaEngineOptions {
        ReplicaEngineOptions {
            inbox_max: INBOX_MAX_DEFAULT,
            on_commit: Vec::new(),
            catch_up_wait_max: REPLICA_CATCH_UP_WAIT_MAX,
            snapshot_every_commands: 0,
        }
    }
}

/// Hands the replicated journal's records to a replica engine, in order. Cheap to clone.
#[derive(Clone)]
pub struct ReplicaFeed {
    inbox: SyncSender<Request>,
    stats: Arc<EngineStats>,
}

impl std::fmt::Debug for ReplicaFeed {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.debug_struct("ReplicaFeed").finish_non_exhaustive()
    }
}

impl ReplicaFeed {
    /// Queues the record at `position`, waiting for room in the inbox. Records already applied
    /// are passed over (a tail that restarts from an earlier position is harmless); a gap stops
    /// the engine.
    pub fn apply(&self, position: Position, payload: Vec<u8>) -> Result<(), EngineError> {
        self.inbox.send(Request::Record { position, payload }).map_err(|_| EngineError::ShutDown)
    }

    /// Where a tail should (re)start: the position after the last record applied. Records in
    /// the inbox are not counted, so a restart may hand some again; they are passed over.
    pub fn position(&self) -> Position {
        self.stats.committed_position.load(Ordering::Acquire)
    }

    /// Whether the engine stopped (a record that did not replay, or a gap).
    pub fn stopped(&self) -> bool {
        self.stats.stopped.load(Ordering::SeqCst)
    }
}

impl EngineHandle {
    /// Starts a replica engine on a recovered book (its report's position is where the feed
    /// must start). `reader` is the replicated journal, read for the audit trail's pages (on
    /// the replica's thread, like the sequencer's); `snapshots`, if any, receives the replica's
    /// snapshots. Stop it with [`EngineHandle::shutdown`] (the feed keeps its inbox open).
    pub fn start_replica(
        recovered: Recovered,
        reader: Box<dyn Journal>,
        snapshots: Option<SnapshotStore>,
        forward: Box<dyn Forward>,
        options: ReplicaEngineOptions,
    ) -> Result<(EngineHandle, ReplicaFeed), EngineError> {
        let (inbox, requests) = mpsc::sync_channel(options.inbox_max.max(1));
        let stats = Arc::new(EngineStats::default());
        let replica = Replica::from_recovered(recovered);
        stats.committed_position.store(replica.position(), Ordering::Release);
        stats.last_batch_timestamp_ms.store(replica.book().now(), Ordering::Relaxed);
        let commands_at_snapshot = replica.replayed_commands();
        let runner = Runner {
            replica,
            reader,
            snapshots,
            forward,
            on_commit: options.on_commit,
            stats: Arc::clone(&stats),
            arrived: Arc::new(Mutex::new(Vec::new())),
            wake: inbox.clone(),
            waiting: BTreeMap::new(),
            stopped: None,
            catch_up_wait_max: options.catch_up_wait_max,
            snapshot_every_commands: options.snapshot_every_commands,
            commands_at_snapshot,
        };
        let thread = std::thread::Builder::new()
            .name("book-replica".to_string())
            .spawn(move || runner.run(requests))
            .map_err(EngineError::Spawn)?;
        let feed = ReplicaFeed { inbox: inbox.clone(), stats: Arc::clone(&stats) };
        let handle = EngineHandle {
            inbox,
            stats,
            thread: Arc::new(Mutex::new(Some(thread))),
            files: None,
            snapshot_writer: None,
        };
        Ok((handle, feed))
    }
}

/// A forwarded command's answer, waiting to be taken by the replica's thread.
struct Arrived {
    result: Result<Forwarded, EngineError>,
    responder: Responder,
}

/// A reply held until the replica reaches its batch.
struct Held {
    reply: Reply,
    responder: Responder,
    deadline: Instant,
}

struct Runner {
    replica: Replica,
    reader: Box<dyn Journal>,
    snapshots: Option<SnapshotStore>,
    forward: Box<dyn Forward>,
    on_commit: Vec<CommitHook>,
    stats: Arc<EngineStats>,
    /// Answers that came back (from other threads), not yet taken.
    arrived: Arc<Mutex<Vec<Arrived>>>,
    /// For `Wake`s: an answer arrived.
    wake: SyncSender<Request>,
    /// Replies held, by the position the replica must reach.
    waiting: BTreeMap<Position, Vec<Held>>,
    /// Why the engine stopped (a record that did not replay): nothing is served any more.
    stopped: Option<String>,
    catch_up_wait_max: Duration,
    snapshot_every_commands: u64,
    commands_at_snapshot: u64,
}

impl JournalView for Runner {
    fn chain_head(&self) -> (ChainHead, Position) {
        (self.replica.chain_head(), self.replica.position())
    }

    fn journal_page(&self, from: Position, limit: usize) -> Result<JournalPage, EngineError> {
        read_journal_page(self.reader.as_ref(), from, limit)
    }
}

impl Runner {
    fn run(mut self, requests: Receiver<Request>) {
        loop {
            let next_deadline = self.waiting.values().flatten().map(|held| held.deadline).min();
            let request = match next_deadline {
                Some(deadline) => match requests.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                    Ok(request) => Some(request),
                    Err(RecvTimeoutError::Timeout) => None,
                    Err(RecvTimeoutError::Disconnected) => break,
                },
                None => match requests.recv() {
                    Ok(request) => Some(request),
                    Err(_) => break,
                },
            };
            match request {
                Some(Request::Shutdown) => break,
                Some(request) => self.handle(request),
                None => {}
            }
            self.settle();
        }
        // Nothing will be delivered any more: say so to whoever waits.
        for held in std::mem::take(&mut self.waiting).into_values().flatten() {
            held.responder.fail(self.replica.book(), EngineError::ShutDown);
        }
        if let Ok(mut arrived) = self.arrived.lock() {
            for arrived in arrived.drain(..) {
                arrived.responder.fail(self.replica.book(), EngineError::ShutDown);
            }
        }
        if self.stopped.is_none() {
            self.save_snapshot();
        }
    }

    fn handle(&mut self, request: Request) {
        match request {
            Request::Record { position, payload } => self.apply(position, &payload),
            Request::Command { submission, reply } => {
                self.stats.inbox_depth.fetch_sub(1, Ordering::Relaxed);
                let Some(responder) = reply else { return };
                if let Some(reason) = &self.stopped {
                    responder.fail(self.replica.book(), EngineError::Stopped(reason.clone()));
                    return;
                }
                let arrived = Arc::clone(&self.arrived);
                let wake = self.wake.clone();
                self.forward.forward(
                    submission,
                    Box::new(move |result| {
                        if let Ok(mut arrived) = arrived.lock() {
                            arrived.push(Arrived { result, responder });
                        }
                        // A full inbox wakes the replica anyway; a closed one has stopped.
                        let _ = wake.try_send(Request::Wake);
                    }),
                );
            }
            Request::Read(read) => {
                // Reads are dropped once stopped: the caller sees the engine as gone.
                if self.stopped.is_none() {
                    read(self.replica.book());
                }
            }
            Request::Inspect(inspect) => inspect(&*self),
            Request::Snapshot(reply) => {
                let _ = reply.send(self.snapshot_now());
            }
            Request::Wake | Request::Shutdown => {}
        }
    }

    fn apply(&mut self, position: Position, payload: &[u8]) {
        if self.stopped.is_some() || position < self.replica.position() {
            return;
        }
        if let Err(error) = self.replica.apply_record(position, payload) {
            self.stop(format!("the replicated journal cannot be applied: {error}"));
            return;
        }
        let batch = self.replica.last_batch();
        self.stats.committed_position.store(self.replica.position(), Ordering::Release);
        self.stats.last_batch_timestamp_ms.store(batch.timestamp, Ordering::Relaxed);
        self.stats.batches.fetch_add(1, Ordering::Relaxed);
        self.stats.commands.fetch_add(batch.commands, Ordering::Relaxed);
        self.stats.last_batch_commands.store(batch.commands, Ordering::Relaxed);
        if !self.on_commit.is_empty() {
            let committed = Committed {
                position,
                commands: batch.commands,
                sync_nanos: 0,
                first_sequence: batch.first_sequence,
                timestamp: batch.timestamp,
                events: self.replica.last_events(),
                book: self.replica.book(),
            };
            for on_commit in &mut self.on_commit {
                on_commit(&committed);
            }
        }
        // Replies whose batch this record completes see the book right after it.
        self.deliver_reached();
        if self.snapshot_every_commands > 0
            && self.replica.replayed_commands() - self.commands_at_snapshot >= self.snapshot_every_commands
        {
            self.save_snapshot();
        }
    }

    /// Takes the answers that arrived, delivers what the replica has reached, and fails what
    /// waited too long.
    fn settle(&mut self) {
        let arrived = match self.arrived.lock() {
            Ok(mut arrived) => std::mem::take(&mut *arrived),
            Err(_) => Vec::new(),
        };
        for Arrived { result, responder } in arrived {
            match result {
                Err(error) => responder.fail(self.replica.book(), error),
                Ok(Forwarded { reply, position }) => {
                    let deadline = Instant::now() + self.catch_up_wait_max;
                    self.waiting.entry(position).or_default().push(Held { reply, responder, deadline });
                }
            }
        }
        self.deliver_reached();
        let now = Instant::now();
        if let Some(reason) = &self.stopped {
            let reason = reason.clone();
            for held in std::mem::take(&mut self.waiting).into_values().flatten() {
                held.responder.fail(self.replica.book(), EngineError::Stopped(reason.clone()));
            }
            return;
        }
        let at = self.replica.position();
        for (needed, held) in &mut self.waiting {
            let (late, keep): (Vec<Held>, Vec<Held>) =
                std::mem::take(held).into_iter().partition(|h| h.deadline <= now);
            *held = keep;
            for late in late {
                late.responder.fail(self.replica.book(), EngineError::ReplicaBehind { needed: *needed, at });
            }
        }
        self.waiting.retain(|_, held| !held.is_empty());
    }

    fn deliver_reached(&mut self) {
        if self.stopped.is_some() {
            return;
        }
        let at = self.replica.position();
        while let Some(entry) = self.waiting.first_entry() {
            if *entry.key() > at {
                break;
            }
            for held in entry.remove() {
                match held.responder {
                    Responder::Reply(sender) => {
                        let _ = sender.send(Ok(held.reply));
                    }
                    Responder::Then(then) => then(self.replica.book(), Ok(held.reply)),
                }
            }
        }
    }

    fn snapshot_now(&mut self) -> Result<Position, EngineError> {
        if let Some(reason) = &self.stopped {
            return Err(EngineError::Stopped(reason.clone()));
        }
        let Some(store) = &self.snapshots else {
            return Ok(self.replica.position());
        };
        let started = Instant::now();
        let position = self.replica.save_snapshot(store)?;
        let nanos = started.elapsed().as_nanos() as u64;
        self.stats.snapshots.fetch_add(1, Ordering::Relaxed);
        self.stats.snapshots_sequencer.fetch_add(1, Ordering::Relaxed);
        self.stats.snapshot_nanos_total_sequencer.fetch_add(nanos, Ordering::Relaxed);
        self.stats.snapshot_nanos_max_sequencer.fetch_max(nanos, Ordering::Relaxed);
        self.commands_at_snapshot = self.replica.replayed_commands();
        Ok(position)
    }

    fn save_snapshot(&mut self) {
        if let Err(error) = self.snapshot_now() {
            self.stats.snapshot_failures.fetch_add(1, Ordering::Relaxed);
            self.commands_at_snapshot = self.replica.replayed_commands();
            tracing::warn!(%error, "the replica could not write a snapshot");
        }
    }

    fn stop(&mut self, reason: String) {
        tracing::error!(%reason, "the replica engine stopped");
        if let Ok(mut stop_reason) = self.stats.stop_reason.lock() {
            *stop_reason = Some(reason.clone());
        }
        self.stats.stopped.store(true, Ordering::SeqCst);
        self.stopped = Some(reason);
    }
}
