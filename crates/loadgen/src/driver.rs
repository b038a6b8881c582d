//! The open-loop dispatcher: sends each request at its intended time whatever happened to the
//! ones before, with a bounded number in flight, and records each outcome with its latency
//! from the intended time.
//!
//! When the cap on requests in flight is reached the dispatcher waits for a slot; the requests
//! it then sends are late, and their latency still starts at their intended time, so a slow
//! server shows up as latency instead of as a quietly lower request rate. Requests still unsent
//! when the sending window closes (`send_grace` after the schedule's end) are counted as missed
//! sends, never dropped silently.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use tokio::sync::Semaphore;
use tokio::time::Instant;

use crate::schedule::Schedule;
use crate::stats::{Outcome, Recorder};
use crate::workload::{BetSpec, Workload};

/// Requests in flight at once, whatever `--concurrency` says.
pub const CONCURRENCY_MAX: usize = 16_384;
/// Time between building the schedule and its first intended send, so the first requests are
/// not late before the run has begun.
pub const START_LEAD: Duration = Duration::from_millis(200);

/// Where bets go: the sportsbook over HTTP, or the PostgreSQL baseline.
pub trait Target: Send + Sync + 'static {
    /// Places one bet; the dispatcher bounds it with the request timeout.
    fn place(&self, bet: BetSpec) -> impl Future<Output = Outcome> + Send;
}

#[derive(Clone, Debug)]
pub struct OpenLoopOptions {
    /// Requests in flight at once.
    pub concurrency: usize,
    /// A request not answered within this is a timeout.
    pub request_timeout: Duration,
    /// How long after the last intended send the dispatcher may still send late requests.
    pub send_grace: Duration,
    pub progress: bool,
}

/// Runs `schedule` against `target`, then waits for every request sent to finish.
pub async fn run_open_loop<T: Target>(
    schedule: &Schedule,
    workload: &Arc<Workload>,
    target: Arc<T>,
    options: &OpenLoopOptions,
    label: &str,
) -> Recorder {
    run_open_loop_from(Instant::now() + START_LEAD, schedule, workload, target, options, label).await
}

/// The phases of `schedule` as (name, start, end) offsets from its start.
pub fn phase_offsets(schedule: &Schedule) -> Vec<(String, Duration, Duration)> {
    (0..schedule.phases().len())
        .map(|index| {
            let (start, end) = schedule.phase_bounds(index);
            (schedule.phases()[index].name.clone(), start, end)
        })
        .collect()
}

/// The latest an answer can come, from the start of the schedule.
pub fn horizon(schedule: &Schedule, options: &OpenLoopOptions) -> Duration {
    schedule.duration() + options.send_grace + options.request_timeout
}

/// `run_open_loop` with the schedule starting at `start`, so that background work (the
/// subscribers) can place what it sees on the same timeline.
pub async fn run_open_loop_from<T: Target>(
    start: Instant,
    schedule: &Schedule,
    workload: &Arc<Workload>,
    target: Arc<T>,
    options: &OpenLoopOptions,
    label: &str,
) -> Recorder {
    let concurrency = options.concurrency.clamp(1, CONCURRENCY_MAX);
    let recorder = Arc::new(Mutex::new(Recorder::new(phase_offsets(schedule), horizon(schedule, options))));
    let total = schedule.len();
    let progress = progress_bar(options.progress, total, label);
    let slots = Arc::new(Semaphore::new(concurrency));
    let sending_closes = start + schedule.duration() + options.send_grace;
    let mut arrivals = schedule.arrivals();
    for arrival in arrivals.by_ref() {
        let intended = start + arrival.offset;
        // Sleep only when ahead of the schedule; when behind, send at once (the request is late
        // and its latency already runs).
        if intended > Instant::now() {
            tokio::time::sleep_until(intended).await;
        }
        let slot = match slots.clone().try_acquire_owned() {
            Ok(slot) => slot,
            Err(_) => match tokio::time::timeout_at(sending_closes, slots.clone().acquire_owned()).await {
                Ok(Ok(slot)) => slot,
                _ => {
                    lock(&recorder).record_missed(arrival.phase);
                    progress.inc(1);
                    break;
                }
            },
        };
        let bet = workload.bet(arrival.sequence);
        let target = target.clone();
        let recorder = recorder.clone();
        let progress = progress.clone();
        let request_timeout = options.request_timeout;
        tokio::spawn(async move {
            let send_delay = Instant::now().saturating_duration_since(intended);
            let outcome = match tokio::time::timeout(request_timeout, target.place(bet)).await {
                Ok(outcome) => outcome,
                Err(_) => Outcome::Timeout,
            };
            let latency = Instant::now().saturating_duration_since(intended);
            lock(&recorder).record(arrival.phase, arrival.offset, send_delay, latency, &outcome);
            progress.inc(1);
            drop(slot);
        });
    }
    // The window closed with requests still unsent: each one is a missed send.
    for arrival in arrivals {
        lock(&recorder).record_missed(arrival.phase);
        progress.inc(1);
    }
    // Every slot back means every request sent has finished.
    let all = u32::try_from(concurrency).unwrap_or(u32::MAX);
    let _all_done = slots.acquire_many(all).await.expect("the semaphore is never closed");
    progress.finish_and_clear();
    let recorder = lock(&recorder).clone();
    recorder
}

/// The recorder's lock; a panic while holding it only loses that one record.
fn lock(recorder: &Mutex<Recorder>) -> std::sync::MutexGuard<'_, Recorder> {
    recorder.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Every bar and status line of the process, drawn together on standard error.
fn bars() -> &'static MultiProgress {
    static BARS: std::sync::OnceLock<MultiProgress> = std::sync::OnceLock::new();
    BARS.get_or_init(MultiProgress::new)
}

pub(crate) fn progress_bar(shown: bool, total: u64, label: &str) -> ProgressBar {
    if !shown {
        return ProgressBar::hidden();
    }
    let progress = bars().add(ProgressBar::new(total));
    progress.set_style(
        ProgressStyle::with_template("{prefix} [{elapsed_precise}] {wide_bar} {pos}/{len} ({per_sec})")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    progress.set_prefix(label.to_string());
    progress
}

/// A line under the progress bars whose message the caller updates (prices, subscribers).
pub(crate) fn status_line(shown: bool, label: &str) -> ProgressBar {
    if !shown {
        return ProgressBar::hidden();
    }
    let status = bars().add(ProgressBar::new_spinner());
    status
        .set_style(ProgressStyle::with_template("{prefix} {msg}").unwrap_or_else(|_| ProgressStyle::default_spinner()));
    status.set_prefix(label.to_string());
    status
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schedule::Phase;
    use crate::workload::WorkloadOptions;

    /// Answers after a fixed delay; records when each request arrived.
    struct SlowTarget {
        delay: Duration,
        arrivals: Mutex<Vec<Instant>>,
    }

    impl Target for SlowTarget {
        fn place(&self, _bet: BetSpec) -> impl Future<Output = Outcome> + Send {
            self.arrivals.lock().expect("lock").push(Instant::now());
            let delay = self.delay;
            async move {
                tokio::time::sleep(delay).await;
                Outcome::Accepted
            }
        }
    }

    fn options(concurrency: usize) -> OpenLoopOptions {
        OpenLoopOptions {
            concurrency,
            request_timeout: Duration::from_secs(5),
            send_grace: Duration::from_millis(300),
            progress: false,
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_slow_server_shows_as_latency_not_as_a_lower_rate() {
        // 200 requests/s for 1 s against a server taking 50 ms: ten in flight, no queueing.
        let schedule =
            Schedule::new(vec![Phase::constant("steady", Duration::from_secs(1), 200.0)], u64::MAX).expect("schedule");
        let workload = Arc::new(Workload::new(WorkloadOptions { markets: 10, ..WorkloadOptions::default() }));
        let target = Arc::new(SlowTarget { delay: Duration::from_millis(50), arrivals: Mutex::new(Vec::new()) });
        let recorder = run_open_loop(&schedule, &workload, target.clone(), &options(64), "test").await;
        let phase = &recorder.phase_reports()[0];
        assert_eq!((phase.sent, phase.accepted, phase.missed_sends), (200, 200, 0));
        assert!(phase.latency_ms.p50 >= 50.0 && phase.latency_ms.p99 < 80.0, "{:?}", phase.latency_ms);
        // Open loop: sends were spread over the second, not bunched behind answers.
        let arrivals = target.arrivals.lock().expect("lock").clone();
        let spread = *arrivals.last().expect("sent") - arrivals[0];
        assert!(spread >= Duration::from_millis(950), "{spread:?}");

        // The same schedule with at most two in flight: the server can only do 40/s, so the
        // requests queue in the generator. Their latency counts from the intended time, so it
        // grows to the length of the run instead of staying at 50 ms; and the window closes
        // 300 ms after the schedule's end, leaving the rest as missed sends.
        let target = Arc::new(SlowTarget { delay: Duration::from_millis(50), arrivals: Mutex::new(Vec::new()) });
        let recorder = run_open_loop(&schedule, &workload, target, &options(2), "test").await;
        let phase = &recorder.phase_reports()[0];
        assert_eq!(phase.sent + phase.missed_sends, 200);
        assert!(phase.missed_sends > 100, "{phase:?}");
        assert!(phase.late_sends > 0);
        assert!(phase.latency_ms.max > 500.0, "queueing is not hidden: {:?}", phase.latency_ms);
    }

    #[tokio::test]
    async fn a_request_past_its_timeout_is_a_timeout() {
        let schedule = Schedule::new(vec![Phase::constant("steady", Duration::from_millis(100), 50.0)], u64::MAX)
            .expect("schedule");
        let workload = Arc::new(Workload::new(WorkloadOptions { markets: 10, ..WorkloadOptions::default() }));
        let target = Arc::new(SlowTarget { delay: Duration::from_secs(60), arrivals: Mutex::new(Vec::new()) });
        let mut options = options(64);
        options.request_timeout = Duration::from_millis(100);
        let recorder = run_open_loop(&schedule, &workload, target, &options, "test").await;
        let phase = &recorder.phase_reports()[0];
        assert_eq!((phase.sent, phase.timeouts, phase.accepted), (5, 5, 0));
    }
}
