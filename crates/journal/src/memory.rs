//! In-memory journal for tests: clones share the same records, so a clone stands in for
//! "reopening" the journal after a restart.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use crate::record::RECORD_PAYLOAD_BYTES_MAX;
use crate::{Journal, JournalError, Position};

/// A journal kept in memory. Nothing survives the process, but every clone sees every record.
#[derive(Debug, Clone, Default)]
pub struct MemoryJournal {
    records: Arc<Mutex<Vec<Vec<u8>>>>,
}

impl MemoryJournal {
    /// An empty journal.
    pub fn new() -> Self {
        Self::default()
    }

    /// Copies of all records, in position order.
    pub fn records(&self) -> Vec<Vec<u8>> {
        self.lock().clone()
    }

    fn lock(&self) -> MutexGuard<'_, Vec<Vec<u8>>> {
        // A panic in another thread holding the lock leaves the Vec itself consistent (every
        // mutation is a single push), so the data is still usable.
        self.records.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Journal for MemoryJournal {
    fn append(&mut self, payload: &[u8]) -> Result<Position, JournalError> {
        // Same limit as the file backend, so tests cannot depend on what production rejects.
        if payload.len() > RECORD_PAYLOAD_BYTES_MAX {
            return Err(JournalError::RecordTooLarge { len: payload.len(), max: RECORD_PAYLOAD_BYTES_MAX });
        }
        let mut records = self.lock();
        records.push(payload.to_vec());
        Ok(records.len() as Position - 1)
    }

    fn next_position(&self) -> Position {
        self.lock().len() as Position
    }

    fn read_from(
        &self,
        from: Position,
        visit: &mut dyn FnMut(Position, &[u8]) -> Result<(), JournalError>,
    ) -> Result<(), JournalError> {
        // Reads the records present at the call; the lock is not held while `visit` runs so a
        // visitor may append through another clone without deadlocking.
        let end = self.next_position();
        for position in from..end {
            let Some(payload) = usize::try_from(position).ok().and_then(|index| self.lock().get(index).cloned()) else {
                break;
            };
            visit(position, &payload)?;
        }
        Ok(())
    }
}
