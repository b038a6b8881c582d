//! A circuit breaker around a slow dependency: after `BREAKER_FAILURES` timeouts in a row it
//! opens and callers fail fast (503 `unavailable` with `Retry-After`) for `BREAKER_OPEN_FOR`;
//! then one probe is let through (half-open): its success closes the breaker, its failure
//! opens it again. A request that would only wait for a timeout is answered at once instead,
//! and the dependency is not buried under retries while it recovers.
//!
//! The gateway breaks reads of the book (the read store of the embedded mode): a book too busy
//! to answer reads keeps deciding bets, while catalog pages and bet histories fail fast.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Timeouts in a row that open the breaker.
pub const BREAKER_FAILURES: u32 = 5;
/// How long an open breaker refuses before it lets a probe through.
pub const BREAKER_OPEN_FOR: Duration = Duration::from_secs(2);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BreakerState {
    Closed,
    Open,
    HalfOpen,
}

impl BreakerState {
    /// The metric value: 0 closed, 1 open, 2 half-open.
    pub fn gauge(self) -> i64 {
        match self {
            BreakerState::Closed => 0,
            BreakerState::Open => 1,
            BreakerState::HalfOpen => 2,
        }
    }
}

#[derive(Debug)]
struct Inner {
    state: BreakerState,
    failures: u32,
    opened_at: Option<Instant>,
    probing: bool,
}

#[derive(Debug)]
pub struct Breaker {
    inner: Mutex<Inner>,
    failures_max: u32,
    open_for: Duration,
}

/// May the call go ahead?
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admit {
    Go,
    /// Refused: retry after this long.
    Refuse(Duration),
}

impl Breaker {
    pub fn new(failures_max: u32, open_for: Duration) -> Breaker {
        Breaker {
            inner: Mutex::new(Inner { state: BreakerState::Closed, failures: 0, opened_at: None, probing: false }),
            failures_max: failures_max.max(1),
            open_for,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn state(&self) -> BreakerState {
        self.lock().state
    }

    pub fn admit(&self) -> Admit {
        let mut inner = self.lock();
        match inner.state {
            BreakerState::Closed => Admit::Go,
            BreakerState::Open => {
                let since = inner.opened_at.map_or(Duration::ZERO, |at| at.elapsed());
                if since >= self.open_for {
                    inner.state = BreakerState::HalfOpen;
                    inner.probing = true;
                    Admit::Go
                } else {
                    Admit::Refuse(self.open_for - since)
                }
            }
            // One probe at a time; the others wait for its verdict.
            BreakerState::HalfOpen if inner.probing => Admit::Refuse(Duration::from_secs(1)),
            BreakerState::HalfOpen => {
                inner.probing = true;
                Admit::Go
            }
        }
    }

    /// The call ended without telling anything about the dependency's speed (refused before
    /// it was sent): a probe's turn passes to the next caller.
    pub fn release(&self) {
        self.lock().probing = false;
    }

    pub fn success(&self) {
        let mut inner = self.lock();
        inner.state = BreakerState::Closed;
        inner.failures = 0;
        inner.probing = false;
        inner.opened_at = None;
    }

    /// A timeout. Returns whether this opened the breaker.
    pub fn failure(&self) -> bool {
        let mut inner = self.lock();
        inner.failures += 1;
        inner.probing = false;
        let open = inner.state == BreakerState::HalfOpen || inner.failures >= self.failures_max;
        let opened = open && inner.state != BreakerState::Open;
        if open {
            inner.state = BreakerState::Open;
            inner.opened_at = Some(Instant::now());
        }
        opened
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_after_consecutive_failures_probes_and_closes() {
        let breaker = Breaker::new(3, Duration::from_millis(30));
        assert_eq!(breaker.admit(), Admit::Go);
        assert!(!breaker.failure());
        breaker.success();
        assert!(!breaker.failure());
        assert!(!breaker.failure());
        assert!(breaker.failure(), "the third failure in a row opens it");
        assert!(matches!(breaker.admit(), Admit::Refuse(_)));
        std::thread::sleep(Duration::from_millis(35));
        assert_eq!(breaker.admit(), Admit::Go, "a probe after the open period");
        assert_eq!(breaker.state(), BreakerState::HalfOpen);
        assert!(matches!(breaker.admit(), Admit::Refuse(_)), "one probe at a time");
        assert!(breaker.failure(), "a failed probe opens it again");
        std::thread::sleep(Duration::from_millis(35));
        assert_eq!(breaker.admit(), Admit::Go);
        breaker.success();
        assert_eq!(breaker.state(), BreakerState::Closed);
        assert_eq!(breaker.admit(), Admit::Go);
    }
}
