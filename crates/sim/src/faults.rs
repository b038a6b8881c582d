//! Journal faults, armed per command: the simulator decides (from its seed) that the next
//! command's batch fails its sync, and `SimJournal` makes exactly that append fail through a
//! `journal::FaultyJournal`, which then stays poisoned like the real file backend.
//!
//! Why not `FaultPlan::fail_sync_with_probability` over the whole run: that plan counts appends,
//! and the sequencer also appends batches of its own. When an in-play delay falls due it journals
//! a `Tick`, and whether that happens before the simulator's next command or in the same batch
//! depends on thread timing (its timer races the simulator's submit). The count of appends is
//! therefore not a function of the seed, and neither would be the command a counted fault hits.
//! Arming per command keeps every run reproducible: a batch made only of ticks never takes a
//! fault meant for a command, and a tick at the same book time as the command it precedes
//! changes nothing the command would not have changed itself.

use std::sync::{Arc, Mutex, PoisonError};

use book::Command;
use journal::{FaultKind, FaultPlan, FaultyJournal, Journal, JournalError, Position};

#[derive(Debug, Default)]
struct SwitchState {
    armed: Option<Armed>,
    fired: Option<FaultKind>,
    /// After a fired `FaultKind::StorageFull`: appends and space checks that still find the
    /// disk full.
    full_remaining: u64,
}

#[derive(Clone, Copy, Debug)]
struct Armed {
    kind: FaultKind,
    /// The armed command is itself a tick: then any batch may take the fault.
    any_batch: bool,
}

/// Shared between the simulator (which arms) and the journal wrapper (which fires).
#[derive(Clone, Debug, Default)]
pub struct FaultSwitch(Arc<Mutex<SwitchState>>);

impl FaultSwitch {
    fn lock(&self) -> std::sync::MutexGuard<'_, SwitchState> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Makes the next batch holding a command (any batch when `command_is_tick`) fail its sync.
    pub fn arm(&self, kind: FaultKind, command_is_tick: bool) {
        let mut state = self.lock();
        state.armed = Some(Armed { kind, any_batch: command_is_tick });
        state.fired = None;
    }

    /// Makes the next batch holding a command find the disk full, and the `attempts` appends
    /// or space checks after it too; then there is room again. Not a poisoning fault: the
    /// engine refuses commands meanwhile and resumes by itself.
    pub fn arm_storage_full(&self, attempts: u64, command_is_tick: bool) {
        let mut state = self.lock();
        state.armed = Some(Armed { kind: FaultKind::StorageFull, any_batch: command_is_tick });
        state.fired = None;
        state.full_remaining = attempts;
    }

    /// Whether an injected full disk still has no room.
    pub fn is_full(&self) -> bool {
        self.lock().full_remaining > 0
    }

    /// One attempt on the injected full disk: an error while it is still full.
    fn storage_full_attempt(&self, fired: bool) -> Result<(), JournalError> {
        let mut state = self.lock();
        if !fired {
            if state.full_remaining == 0 {
                return Ok(());
            }
            state.full_remaining -= 1;
        }
        Err(JournalError::StorageFull {
            source: std::io::Error::new(std::io::ErrorKind::StorageFull, "injected full disk"),
        })
    }

    /// The fault that fired since arming, clearing it.
    pub fn take_fired(&self) -> Option<FaultKind> {
        let mut state = self.lock();
        state.armed = None;
        state.fired.take()
    }
}

enum Inner {
    Healthy(Box<dyn Journal>),
    /// After the fault: a `FaultyJournal` that failed once and refuses every append since.
    Failed(FaultyJournal<Box<dyn Journal>>),
    /// Only while switching from one to the other.
    Switching,
}

/// The journal the simulator gives the engine: the durable journal, failing when armed.
pub struct SimJournal {
    inner: Inner,
    switch: FaultSwitch,
}

impl SimJournal {
    pub fn new(durable: Box<dyn Journal>, switch: FaultSwitch) -> SimJournal {
        SimJournal { inner: Inner::Healthy(durable), switch }
    }

    fn journal(&self) -> &dyn Journal {
        match &self.inner {
            Inner::Healthy(journal) => journal.as_ref(),
            Inner::Failed(journal) => journal,
            Inner::Switching => unreachable!("the journal is never left switching"),
        }
    }
}

/// Whether a batch record holds anything but ticks.
fn holds_a_command(payload: &[u8]) -> bool {
    codec::decode_batch(payload).map_or(true, |batch| batch.commands.iter().any(|command| *command != Command::Tick))
}

impl Journal for SimJournal {
    fn append(&mut self, payload: &[u8]) -> Result<Position, JournalError> {
        let fire = {
            let mut state = self.switch.lock();
            match state.armed {
                Some(armed) if armed.any_batch || holds_a_command(payload) => {
                    state.armed = None;
                    state.fired = Some(armed.kind);
                    Some(armed.kind)
                }
                _ => None,
            }
        };
        // A full disk is not a failed sync: nothing written, nothing poisoned.
        if fire == Some(FaultKind::StorageFull) || self.switch.is_full() {
            self.switch.storage_full_attempt(fire.is_some())?;
        }
        if let (Some(kind), Inner::Healthy(_)) = (fire, &self.inner) {
            if let Inner::Healthy(durable) = std::mem::replace(&mut self.inner, Inner::Switching) {
                let plan = FaultPlan::fail_sync_at(0).with_kind(kind);
                self.inner = Inner::Failed(FaultyJournal::new(durable, plan));
            }
        }
        match &mut self.inner {
            Inner::Healthy(journal) => journal.append(payload),
            Inner::Failed(journal) => journal.append(payload),
            Inner::Switching => unreachable!("the journal is never left switching"),
        }
    }

    fn next_position(&self) -> Position {
        self.journal().next_position()
    }

    fn check_space(&mut self, bytes: usize) -> Result<(), JournalError> {
        self.switch.storage_full_attempt(false)?;
        match &mut self.inner {
            Inner::Healthy(journal) => journal.check_space(bytes),
            Inner::Failed(journal) => journal.check_space(bytes),
            Inner::Switching => unreachable!("the journal is never left switching"),
        }
    }

    fn read_from(
        &self,
        from: Position,
        visit: &mut dyn FnMut(Position, &[u8]) -> Result<(), JournalError>,
    ) -> Result<(), JournalError> {
        self.journal().read_from(from, visit)
    }
}
