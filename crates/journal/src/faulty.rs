//! Fault-injecting journal wrapper for tests and the deterministic simulator: makes chosen
//! appends fail their sync and then stays poisoned, like the real file backend; or makes them
//! find the disk full ([`FaultKind::StorageFull`]), which does not poison: the disk stays full
//! for a number of attempts, then has room again.

use std::io;

use crate::{Journal, JournalError, Position};

/// Denominator of [`FaultPlan::fail_sync_with_probability`].
pub const FAULT_PER_MILLION_MAX: u32 = 1_000_000;

/// What an injected sync failure leaves behind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum FaultKind {
    /// The record never reaches the inner journal: a crash lost it.
    #[default]
    Lost,
    /// The record reaches the inner journal but the append still reports `SyncFailed`: the
    /// fsyncgate case, where a reopen may or may not find an unacknowledged record.
    WrittenButUnacknowledged,
    /// The write finds the disk full: nothing reaches the inner journal, the append reports
    /// [`JournalError::StorageFull`] and the wrapper is *not* poisoned. The next
    /// [`FaultPlan::with_full_attempts`] appends or [`Journal::check_space`] calls find the
    /// disk still full; after them there is room again.
    StorageFull,
}

/// Default of [`FaultPlan::with_full_attempts`].
pub const FULL_ATTEMPTS_DEFAULT: u64 = 2;

/// When the wrapper injects a failure. The count is of appends through the wrapper, from 0.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FaultPlan {
    fail_at: Option<u64>,
    probability: Option<Probability>,
    kind: FaultKind,
    full_attempts: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Probability {
    rng: SplitMix64,
    per_million: u32,
}

impl FaultPlan {
    /// Never fails.
    pub fn none() -> Self {
        Self::default()
    }

    /// Fails the `n`th append (0-based).
    pub fn fail_sync_at(n: u64) -> Self {
        Self { fail_at: Some(n), ..Self::default() }
    }

    /// Fails each append with probability `per_million / 1_000_000`, drawn from a PRNG seeded
    /// with `seed`: the same seed fails the same append every run.
    pub fn fail_sync_with_probability(seed: u64, per_million: u32) -> Self {
        Self {
            probability: Some(Probability {
                rng: SplitMix64::new(seed),
                per_million: per_million.min(FAULT_PER_MILLION_MAX),
            }),
            ..Self::default()
        }
    }

    /// With [`FaultKind::StorageFull`]: how many attempts after the failed append (appends or
    /// space checks) still find the disk full.
    pub fn with_full_attempts(mut self, attempts: u64) -> Self {
        self.full_attempts = Some(attempts);
        self
    }

    /// Sets what a failed append leaves in the inner journal.
    pub fn with_kind(mut self, kind: FaultKind) -> Self {
        self.kind = kind;
        self
    }

    /// Decides whether append number `n` fails. Draws from the PRNG on every call so the
    /// decision for an append depends only on the seed and `n`.
    fn fires(&mut self, n: u64) -> bool {
        let drawn = self
            .probability
            .as_mut()
            .is_some_and(|p| p.rng.next_u64() % u64::from(FAULT_PER_MILLION_MAX) < u64::from(p.per_million));
        drawn || self.fail_at == Some(n)
    }
}

/// Wraps a journal and injects the sync failures of a [`FaultPlan`].
#[derive(Debug)]
pub struct FaultyJournal<J: Journal> {
    inner: J,
    plan: FaultPlan,
    appends: u64,
    faults_fired: u64,
    poisoned: bool,
    /// Attempts that still find the disk full after a [`FaultKind::StorageFull`].
    full_remaining: u64,
}

impl<J: Journal> FaultyJournal<J> {
    pub fn new(inner: J, plan: FaultPlan) -> Self {
        Self { inner, plan, appends: 0, faults_fired: 0, poisoned: false, full_remaining: 0 }
    }

    /// Whether the injected full disk has no room yet.
    pub fn is_full(&self) -> bool {
        self.full_remaining > 0
    }

    /// Takes one attempt off a full disk: `Err(StorageFull)` while it is still full.
    fn still_full(&mut self, what: &str) -> Result<(), JournalError> {
        if self.full_remaining == 0 {
            return Ok(());
        }
        self.full_remaining -= 1;
        Err(storage_full(what))
    }

    /// Injected failures so far (at most one, as the wrapper is poisoned after it).
    pub fn faults_fired(&self) -> u64 {
        self.faults_fired
    }

    /// Appends attempted through this wrapper, including failed ones.
    pub fn appends(&self) -> u64 {
        self.appends
    }

    pub fn is_poisoned(&self) -> bool {
        self.poisoned
    }

    pub fn inner(&self) -> &J {
        &self.inner
    }

    /// The wrapped journal, e.g. to "reopen" it under a new plan after a fault.
    pub fn into_inner(self) -> J {
        self.inner
    }
}

impl<J: Journal> Journal for FaultyJournal<J> {
    fn append(&mut self, payload: &[u8]) -> Result<Position, JournalError> {
        let n = self.appends;
        self.appends += 1;
        if self.poisoned {
            return Err(JournalError::Poisoned);
        }
        let fires = self.plan.fires(n);
        self.still_full("append")?;
        if !fires {
            return self.inner.append(payload);
        }
        self.faults_fired += 1;
        if self.plan.kind == FaultKind::StorageFull {
            self.full_remaining = self.plan.full_attempts.unwrap_or(FULL_ATTEMPTS_DEFAULT);
            return Err(storage_full(&format!("append {n}")));
        }
        self.poisoned = true;
        if self.plan.kind == FaultKind::WrittenButUnacknowledged {
            self.inner.append(payload)?;
        }
        Err(JournalError::SyncFailed { source: io::Error::other(format!("injected sync failure at append {n}")) })
    }

    fn next_position(&self) -> Position {
        self.inner.next_position()
    }

    fn payload_bytes_max(&self) -> usize {
        self.inner.payload_bytes_max()
    }

    fn check_space(&mut self, bytes: usize) -> Result<(), JournalError> {
        self.still_full("space check")?;
        self.inner.check_space(bytes)
    }

    fn read_from(
        &self,
        from: Position,
        visit: &mut dyn FnMut(Position, &[u8]) -> Result<(), JournalError>,
    ) -> Result<(), JournalError> {
        self.inner.read_from(from, visit)
    }
}

fn storage_full(what: &str) -> JournalError {
    JournalError::StorageFull {
        source: io::Error::new(io::ErrorKind::StorageFull, format!("injected full disk at {what}")),
    }
}

/// SplitMix64 (Steele, Lea, Flood 2014): tiny, full-period and good enough to spread faults;
/// hand written to keep the crate free of a `rand` dependency.
#[derive(Debug, Clone, PartialEq, Eq)]
struct SplitMix64 {
    state: u64,
}

impl SplitMix64 {
    fn new(seed: u64) -> Self {
        Self { state: seed }
    }

    fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

#[cfg(test)]
mod tests {
    use super::SplitMix64;

    #[test]
    fn splitmix64_matches_reference_output() {
        // First outputs for seed 1234567 from the reference C implementation.
        let mut rng = SplitMix64::new(1_234_567);
        assert_eq!(rng.next_u64(), 6_457_827_717_110_365_317);
        assert_eq!(rng.next_u64(), 3_203_168_211_198_807_973);
    }
}
