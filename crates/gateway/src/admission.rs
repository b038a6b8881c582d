//! Admission control for commands to the book: shed load before latency collapses.
//!
//! A queue that stays long is what turns a spike into timeouts. Following CoDel, the gateway
//! watches the *smallest* time a command took from submission to its durable reply within each
//! `ADMISSION_INTERVAL`: a burst makes some replies slow but not all, while a standing queue
//! makes even the fastest one slow. When the smallest exceeds `ADMISSION_TARGET`, the next
//! interval refuses new commands at once (503 `overloaded` with `Retry-After`), which drains the
//! queue; commands already admitted still finish and report, so the following interval sees
//! whether the queue is gone. An interval with fewer than `ADMISSION_SAMPLES_MIN` replies
//! judges nothing: at low traffic one slow sync is not a standing queue, and there is no load
//! to shed.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The standing queue delay the book may have before the gateway sheds.
pub const ADMISSION_TARGET: Duration = Duration::from_millis(50);
/// How often the gateway judges the queue.
pub const ADMISSION_INTERVAL: Duration = Duration::from_millis(100);
/// Replies an interval needs before it can judge the queue standing.
pub const ADMISSION_SAMPLES_MIN: u32 = 32;

#[derive(Debug)]
struct Window {
    started: Instant,
    /// The fastest reply in this window.
    fastest: Option<Duration>,
    /// Replies in this window.
    samples: u32,
    /// Whether this window sheds (decided when the previous one ended).
    shedding: bool,
}

#[derive(Debug)]
pub struct Admission {
    target: Duration,
    interval: Duration,
    samples_min: u32,
    window: Mutex<Window>,
}

impl Admission {
    pub fn new(target: Duration, interval: Duration, samples_min: u32) -> Admission {
        Admission {
            target,
            interval,
            samples_min: samples_min.max(1),
            window: Mutex::new(Window { started: Instant::now(), fastest: None, samples: 0, shedding: false }),
        }
    }

    fn roll(&self, window: &mut Window, now: Instant) {
        if now.duration_since(window.started) < self.interval {
            return;
        }
        window.shedding =
            window.samples >= self.samples_min && window.fastest.is_some_and(|fastest| fastest > self.target);
        window.fastest = None;
        window.samples = 0;
        window.started = now;
    }

    /// Whether a new command may go to the book now.
    pub fn admit(&self) -> bool {
        let mut window = self.window.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        self.roll(&mut window, Instant::now());
        !window.shedding
    }

    /// A command came back after `took`.
    pub fn record(&self, took: Duration) {
        let mut window = self.window.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        self.roll(&mut window, Instant::now());
        window.fastest = Some(window.fastest.map_or(took, |fastest| fastest.min(took)));
        window.samples = window.samples.saturating_add(1);
    }

    /// Whether the gateway is shedding now.
    pub fn shedding(&self) -> bool {
        self.window.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).shedding
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_standing_queue_sheds_the_next_interval_and_a_drained_one_stops_it() {
        let admission = Admission::new(Duration::from_millis(50), Duration::from_millis(20), 2);
        // A burst: one slow reply among fast ones is not a standing queue.
        admission.record(Duration::from_millis(200));
        admission.record(Duration::from_millis(3));
        std::thread::sleep(Duration::from_millis(25));
        assert!(admission.admit());
        // Every reply slow: shed the next interval.
        admission.record(Duration::from_millis(80));
        admission.record(Duration::from_millis(120));
        std::thread::sleep(Duration::from_millis(25));
        assert!(!admission.admit());
        assert!(admission.shedding());
        // The admitted commands drain quickly: the interval after admits again.
        admission.record(Duration::from_millis(4));
        admission.record(Duration::from_millis(6));
        std::thread::sleep(Duration::from_millis(25));
        assert!(admission.admit());
        // Nothing came back in an interval: no evidence of a queue.
        std::thread::sleep(Duration::from_millis(25));
        assert!(admission.admit());
        // One slow reply alone (low traffic) judges nothing.
        admission.record(Duration::from_millis(300));
        std::thread::sleep(Duration::from_millis(25));
        assert!(admission.admit());
    }
}
