//! Recovery as the UOF provider does it: one state machine per producer (`product`).
//!
//! The provider does not read recovery requests from the message broker: a client asks its HTTP
//! API (`POST {base}/v1/{producer}/recovery/initiate_request?after=..&request_id=..&node_id=..`,
//! see [`crate::uof_api`]), the provider replays the messages since `after` on the feed with that
//! `request_id`, and ends the replay with `<snapshot_complete request_id=".."/>`. Only then is the
//! producer up again.
//!
//! [`ProducerRecovery`] is pure and deterministic: no clock, no I/O. The runtime feeds it what
//! happened (messages, `alive`, `snapshot_complete`, `product_down`, a lost connection, the
//! outcome of each HTTP request) and the time as milliseconds of its own monotonic clock, and
//! carries out the [`Action`]s it returns (mark the producer's markets suspended, send a request,
//! mark them open again). Provider timestamps (`timestamp` attributes, Unix ms) and local times
//! are kept apart: `after` is always a provider timestamp.
//!
//! States: `Down` (no request in flight; the next attempt is due at `retry_at`) →
//! `Requested { request_id }` (the HTTP request was sent or is being sent) → `Up` once the
//! `snapshot_complete` with that id arrives. From `Up` the producer goes down on an `alive` with
//! `subscribed="0"`, on alive silence longer than `max_inactivity`, on a gap between two
//! consecutive `alive` timestamps longer than `max_inactivity`, on `product_down`, or on a lost
//! connection. A failed HTTP request, or a replay that does not complete within
//! `max_recovery_time`, sends a new request after a backoff that doubles up to `backoff_max`.

use std::time::Duration;

/// How far inside the producer's recovery window `after` is kept: the provider measures the
/// window from its own now, our clocks differ from it, and a request waits before it is sent
/// (Sportradar's Java SDK keeps 10 minutes; at most half the window).
pub const AFTER_WINDOW_MARGIN: Duration = Duration::from_secs(10 * 60);

/// Limits and timings of one producer's recovery. Defaults follow the provider's SDKs: 20 s
/// without `alive` marks a producer down (their minimum and default inactivity), a replay may
/// take 10 minutes before it is asked again (the .NET SDK's minimum recovery execution time),
/// and `after` may not be older than the producer's stateful recovery window (72 h for most
/// producers in `producers.xml`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecoveryConfig {
    /// Silence (no `alive`) after which an up producer is down; also the largest gap allowed
    /// between two consecutive `alive` timestamps.
    pub max_inactivity: Duration,
    /// How long a replay may take before the request is sent again (with a new id).
    pub max_recovery_time: Duration,
    /// The producer's `stateful_recovery_window_in_minutes`: `after` is never older than
    /// `now - window` (the provider refuses older values).
    pub recovery_window: Duration,
    /// First wait after a failed request; doubled on each further failure.
    pub backoff_initial: Duration,
    /// Longest wait between two requests.
    pub backoff_max: Duration,
}

impl Default for RecoveryConfig {
    fn default() -> Self {
        Self {
            max_inactivity: Duration::from_secs(20),
            max_recovery_time: Duration::from_secs(600),
            recovery_window: Duration::from_secs(72 * 3600),
            backoff_initial: Duration::from_secs(1),
            backoff_max: Duration::from_secs(60),
        }
    }
}

/// Why a producer is down (for logs and the `reason` label of metrics).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DownReason {
    /// Not recovered since the process started.
    Startup,
    /// `alive` with `subscribed="0"`: the provider dropped our subscription.
    Unsubscribed,
    /// No `alive` for longer than `max_inactivity`.
    AliveTimeout,
    /// Two consecutive `alive` timestamps further apart than `max_inactivity`.
    AliveGap,
    /// A `product_down` message.
    ProductDown,
    /// The feed connection was lost.
    Disconnected,
}

impl DownReason {
    pub fn as_str(self) -> &'static str {
        match self {
            DownReason::Startup => "startup",
            DownReason::Unsubscribed => "unsubscribed",
            DownReason::AliveTimeout => "alive_timeout",
            DownReason::AliveGap => "alive_gap",
            DownReason::ProductDown => "product_down",
            DownReason::Disconnected => "disconnected",
        }
    }
}

/// One recovery request to send to the provider's API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecoveryRequest {
    pub producer: u32,
    pub request_id: u64,
    /// Provider timestamp (Unix ms) to replay from; `None` asks for a full odds recovery.
    pub after: Option<u64>,
}

/// What the runtime must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Suspend the producer's markets (they stay suspended until [`Action::MarkUp`]).
    MarkDown(DownReason),
    /// Send this request to the provider's recovery API, then report the outcome with
    /// [`ProducerRecovery::on_request_sent`] or [`ProducerRecovery::on_request_failed`].
    SendRequest(RecoveryRequest),
    /// The replay is complete: the producer's markets may open again.
    MarkUp,
}

/// The producer's state as the runtime and `/v1/feed/providers` may show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum State {
    Down { reason: DownReason, retry_at: u64 },
    Requested { request_id: u64, after: Option<u64>, sent_at: u64 },
    Up,
}

/// Counters since this value was created (the runtime exports them).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecoveryCounts {
    pub requests: u64,
    pub request_failures: u64,
    pub replay_timeouts: u64,
    /// Requests whose `after` was moved forward to the recovery window.
    pub after_clamped: u64,
    /// `snapshot_complete` messages whose `request_id` is not the one in flight (ignored).
    pub stale_snapshots: u64,
    pub completed: u64,
}

/// Allocates request ids unique across the producers of one node. Start it from a value that is
/// not reused after a restart (the runtime seeds it from the wall clock in ms), so a late
/// `snapshot_complete` of a previous process never matches a new request.
#[derive(Debug, Clone)]
pub struct RequestIds {
    next: u64,
}

impl RequestIds {
    pub fn starting_at(first: u64) -> Self {
        Self { next: first.max(1) }
    }

    pub fn next_id(&mut self) -> u64 {
        let id = self.next;
        self.next = self.next.wrapping_add(1).max(1);
        id
    }
}

/// One producer's recovery state machine. All times are milliseconds: `now` of the runtime's
/// monotonic clock, `timestamp`s of the provider.
#[derive(Debug, Clone)]
pub struct ProducerRecovery {
    producer: u32,
    config: RecoveryConfig,
    state: State,
    /// Provider timestamp of the last message or `alive` processed while up: the next `after`.
    last_good: Option<u64>,
    /// Local time of the last `alive` (or of becoming up).
    last_alive_at: Option<u64>,
    /// Provider timestamp of the last `alive` while up (gap detection).
    last_alive_ts: Option<u64>,
    /// The local wall clock (Unix ms) as last told: the provider's now, up to clock skew.
    wall_now: Option<u64>,
    failures: u32,
    counts: RecoveryCounts,
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl ProducerRecovery {
    /// A producer that has not been recovered yet. `last_good` is the provider timestamp stored
    /// by a previous run (if any): the first request replays from there.
    pub fn new(producer: u32, config: RecoveryConfig, last_good: Option<u64>, now: u64) -> Self {
        Self {
            producer,
            config,
            state: State::Down { reason: DownReason::Startup, retry_at: now },
            last_good,
            last_alive_at: None,
            last_alive_ts: None,
            wall_now: None,
            failures: 0,
            counts: RecoveryCounts::default(),
        }
    }

    pub fn producer(&self) -> u32 {
        self.producer
    }

    pub fn state(&self) -> &State {
        &self.state
    }

    pub fn is_up(&self) -> bool {
        self.state == State::Up
    }

    /// The provider timestamp the next recovery would start from; store it durably so a restart
    /// asks only for what it missed.
    pub fn last_good(&self) -> Option<u64> {
        self.last_good
    }

    /// The producer's own recovery window (`stateful_recovery_window_in_minutes` of the
    /// provider's producers list), in place of the configured default.
    pub fn set_recovery_window(&mut self, window: Duration) {
        self.config.recovery_window = window;
    }

    pub fn recovery_window(&self) -> Duration {
        self.config.recovery_window
    }

    /// The local wall clock in Unix ms (the runtime tells it before each poll). The provider
    /// measures the recovery window back from its own now, which a restart's stored `after`
    /// may be days behind before any `alive` has told the provider's time.
    pub fn on_wall_clock(&mut self, wall_ms: u64) {
        self.wall_now = Some(self.wall_now.map_or(wall_ms, |t| t.max(wall_ms)));
    }

    pub fn counts(&self) -> &RecoveryCounts {
        &self.counts
    }

    /// A message of this producer was applied. While up, its timestamp advances `after`;
    /// replayed messages (while a request is in flight) do not, so a replay cut short is asked
    /// again from the same point.
    pub fn on_message(&mut self, timestamp: u64) {
        if self.state == State::Up {
            self.last_good = Some(self.last_good.map_or(timestamp, |t| t.max(timestamp)));
        }
    }

    /// `<alive product=".." timestamp=".." subscribed=".."/>`.
    pub fn on_alive(&mut self, now: u64, timestamp: u64, subscribed: bool) -> Vec<Action> {
        if !subscribed {
            return self.go_down(now, DownReason::Unsubscribed);
        }
        match self.state {
            State::Up => {
                let gap = self
                    .last_alive_ts
                    .is_some_and(|prev| timestamp.saturating_sub(prev) > millis(self.config.max_inactivity));
                if gap {
                    return self.go_down(now, DownReason::AliveGap);
                }
                self.last_alive_at = Some(now);
                self.last_alive_ts = Some(timestamp);
                self.on_message(timestamp);
                Vec::new()
            }
            // A subscribed alive while down or recovering does not bring the producer up (only
            // the matching snapshot_complete does); it tells the provider's current time, which
            // bounds the next `after` to the recovery window.
            _ => {
                self.last_alive_ts = Some(self.last_alive_ts.map_or(timestamp, |t| t.max(timestamp)));
                Vec::new()
            }
        }
    }

    /// `<snapshot_complete request_id=".." product=".."/>`.
    pub fn on_snapshot_complete(&mut self, now: u64, request_id: u64) -> Vec<Action> {
        match self.state {
            State::Requested { request_id: expected, .. } if expected == request_id => {
                self.state = State::Up;
                self.failures = 0;
                self.last_alive_at = Some(now);
                self.last_alive_ts = None;
                self.counts.completed += 1;
                vec![Action::MarkUp]
            }
            _ => {
                self.counts.stale_snapshots += 1;
                Vec::new()
            }
        }
    }

    /// `<product_down product=".."/>`.
    pub fn on_product_down(&mut self, now: u64) -> Vec<Action> {
        self.go_down(now, DownReason::ProductDown)
    }

    /// The feed connection was lost (every producer on it is down).
    pub fn on_disconnected(&mut self, now: u64) -> Vec<Action> {
        self.go_down(now, DownReason::Disconnected)
    }

    /// The provider accepted the request (a 2xx answer): wait for its `snapshot_complete`.
    pub fn on_request_sent(&mut self, _now: u64, _request_id: u64) {}

    /// The request failed (connection, timeout, non-2xx): back off and send a new one.
    pub fn on_request_failed(&mut self, now: u64, request_id: u64) -> Vec<Action> {
        match self.state {
            State::Requested { request_id: current, .. } if current == request_id => {
                self.counts.request_failures += 1;
                self.failures = self.failures.saturating_add(1);
                let reason = DownReason::Startup;
                self.state = State::Down { reason, retry_at: now + self.backoff() };
                Vec::new()
            }
            _ => Vec::new(),
        }
    }

    /// Time passes: detects alive silence, replays that take too long, and due retries. Call it
    /// about once a second.
    pub fn on_tick(&mut self, now: u64) -> Vec<Action> {
        self.tick_with(now, None)
    }

    /// Like [`Self::on_tick`], with the request-id allocator so a due request can be built.
    pub fn poll(&mut self, now: u64, ids: &mut RequestIds) -> Vec<Action> {
        self.tick_with(now, Some(ids))
    }

    fn tick_with(&mut self, now: u64, ids: Option<&mut RequestIds>) -> Vec<Action> {
        match self.state.clone() {
            State::Up => {
                let silent =
                    self.last_alive_at.is_some_and(|at| now.saturating_sub(at) > millis(self.config.max_inactivity));
                if silent {
                    let mut actions = self.go_down(now, DownReason::AliveTimeout);
                    if let Some(ids) = ids {
                        actions.extend(self.request_if_due(now, ids));
                    }
                    return actions;
                }
                Vec::new()
            }
            State::Requested { sent_at, .. } => {
                if now.saturating_sub(sent_at) > millis(self.config.max_recovery_time) {
                    self.counts.replay_timeouts += 1;
                    self.failures = self.failures.saturating_add(1);
                    self.state = State::Down { reason: DownReason::Startup, retry_at: now };
                    if let Some(ids) = ids {
                        return self.request_if_due(now, ids);
                    }
                }
                Vec::new()
            }
            State::Down { .. } => match ids {
                Some(ids) => self.request_if_due(now, ids),
                None => Vec::new(),
            },
        }
    }

    /// Builds the next request if the producer is down and its retry is due: `after` is the last
    /// good provider timestamp, moved forward to the recovery window measured back from the
    /// newest provider timestamp seen.
    fn request_if_due(&mut self, now: u64, ids: &mut RequestIds) -> Vec<Action> {
        let State::Down { retry_at, .. } = self.state else {
            return Vec::new();
        };
        if now < retry_at {
            return Vec::new();
        }
        let after = self.after_for_request();
        let request_id = ids.next_id();
        self.state = State::Requested { request_id, after, sent_at: now };
        self.counts.requests += 1;
        vec![Action::SendRequest(RecoveryRequest { producer: self.producer, request_id, after })]
    }

    fn after_for_request(&mut self) -> Option<u64> {
        let last = self.last_good?;
        // The provider refuses an `after` older than its window measured back from its now:
        // the newest time we know of it (an alive, a message, or our wall clock), less a
        // margin for the clocks' difference and the request's way there.
        let newest = self.last_alive_ts.unwrap_or(last).max(last).max(self.wall_now.unwrap_or(0));
        let window = millis(self.config.recovery_window);
        let margin = millis(AFTER_WINDOW_MARGIN).min(window / 2);
        let earliest = newest.saturating_sub(window - margin);
        if last < earliest {
            self.counts.after_clamped += 1;
            Some(earliest)
        } else {
            Some(last)
        }
    }

    fn go_down(&mut self, now: u64, reason: DownReason) -> Vec<Action> {
        match self.state {
            State::Up => {
                self.state = State::Down { reason, retry_at: now };
                vec![Action::MarkDown(reason)]
            }
            // Already down: a request in flight for a subscription that was dropped again is
            // useless; ask again (the old id's snapshot_complete will be ignored).
            State::Requested { .. } if reason == DownReason::Unsubscribed => {
                self.state = State::Down { reason, retry_at: now };
                Vec::new()
            }
            State::Requested { .. } if reason == DownReason::Disconnected => {
                self.state = State::Down { reason, retry_at: now };
                Vec::new()
            }
            _ => Vec::new(),
        }
    }

    fn backoff(&self) -> u64 {
        let initial = millis(self.config.backoff_initial).max(1);
        let shift = self.failures.saturating_sub(1).min(32);
        initial.saturating_mul(1u64 << shift).min(millis(self.config.backoff_max))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> RecoveryConfig {
        RecoveryConfig {
            max_inactivity: Duration::from_secs(20),
            max_recovery_time: Duration::from_secs(600),
            recovery_window: Duration::from_secs(3600),
            backoff_initial: Duration::from_secs(1),
            backoff_max: Duration::from_secs(8),
        }
    }

    fn request(actions: &[Action]) -> RecoveryRequest {
        match actions {
            [.., Action::SendRequest(r)] => r.clone(),
            other => panic!("expected a request, got {other:?}"),
        }
    }

    #[test]
    fn startup_full_recovery_then_up_only_on_matching_snapshot() {
        let mut ids = RequestIds::starting_at(100);
        let mut p = ProducerRecovery::new(1, cfg(), None, 0);
        let r = request(&p.poll(0, &mut ids));
        assert_eq!(r, RecoveryRequest { producer: 1, request_id: 100, after: None });
        p.on_request_sent(1, 100);
        assert!(p.on_snapshot_complete(5, 99).is_empty());
        assert_eq!(p.counts().stale_snapshots, 1);
        assert!(!p.is_up());
        assert_eq!(p.on_alive(6, 1_000, true), Vec::new());
        assert!(!p.is_up());
        assert_eq!(p.on_snapshot_complete(7, 100), vec![Action::MarkUp]);
        assert!(p.is_up());
    }

    #[test]
    fn unsubscribed_alive_goes_down_and_asks_after_last_good() {
        let mut ids = RequestIds::starting_at(1);
        let mut p = ProducerRecovery::new(3, cfg(), Some(50_000), 0);
        let r = request(&p.poll(0, &mut ids));
        assert_eq!(r.after, Some(50_000));
        p.on_snapshot_complete(10, r.request_id);
        p.on_alive(1_000, 60_000, true);
        p.on_message(61_000);
        assert_eq!(p.on_alive(2_000, 62_000, false), vec![Action::MarkDown(DownReason::Unsubscribed)]);
        let r2 = request(&p.poll(2_000, &mut ids));
        assert_eq!((r2.request_id, r2.after), (2, Some(61_000)));
    }

    #[test]
    fn silence_and_gap_go_down() {
        let mut ids = RequestIds::starting_at(1);
        let mut p = ProducerRecovery::new(1, cfg(), None, 0);
        let r = request(&p.poll(0, &mut ids));
        p.on_snapshot_complete(0, r.request_id);
        p.on_alive(10_000, 100_000, true);
        assert!(p.poll(30_000, &mut ids).is_empty());
        let actions = p.poll(30_001, &mut ids);
        assert_eq!(actions[0], Action::MarkDown(DownReason::AliveTimeout));
        assert_eq!(request(&actions).after, Some(100_000));
        // gap
        let mut p = ProducerRecovery::new(1, cfg(), None, 0);
        let r = request(&p.poll(0, &mut ids));
        p.on_snapshot_complete(0, r.request_id);
        p.on_alive(1, 100_000, true);
        assert_eq!(p.on_alive(2, 130_000, true), vec![Action::MarkDown(DownReason::AliveGap)]);
        assert_eq!(p.last_good(), Some(100_000));
    }

    #[test]
    fn failures_back_off_doubling_to_the_cap() {
        let mut ids = RequestIds::starting_at(1);
        let mut p = ProducerRecovery::new(1, cfg(), None, 0);
        let mut now = 0;
        let mut waits = Vec::new();
        for _ in 0..6 {
            let r = request(&p.poll(now, &mut ids));
            p.on_request_failed(now, r.request_id);
            let State::Down { retry_at, .. } = *p.state() else { panic!() };
            assert!(p.poll(retry_at - 1, &mut ids).is_empty());
            waits.push(retry_at - now);
            now = retry_at;
        }
        assert_eq!(waits, vec![1_000, 2_000, 4_000, 8_000, 8_000, 8_000]);
        assert_eq!(p.counts().request_failures, 6);
    }

    #[test]
    fn replay_timeout_asks_again_with_a_new_id_and_old_snapshot_is_ignored() {
        let mut ids = RequestIds::starting_at(1);
        let mut p = ProducerRecovery::new(1, cfg(), Some(5), 0);
        let r1 = request(&p.poll(0, &mut ids));
        assert!(p.poll(600_000, &mut ids).is_empty());
        let r2 = request(&p.poll(600_001, &mut ids));
        assert_ne!(r1.request_id, r2.request_id);
        assert_eq!(r2.after, Some(5));
        assert!(p.on_snapshot_complete(600_002, r1.request_id).is_empty());
        assert_eq!(p.on_snapshot_complete(600_003, r2.request_id), vec![Action::MarkUp]);
    }

    #[test]
    fn after_is_bounded_by_the_recovery_window() {
        let mut ids = RequestIds::starting_at(1);
        let mut p = ProducerRecovery::new(1, cfg(), None, 0);
        let r = request(&p.poll(0, &mut ids));
        p.on_snapshot_complete(0, r.request_id);
        p.on_alive(1, 1_000_000, true);
        p.on_disconnected(2);
        // Far later, alives show the provider clock moved 2 h on.
        assert!(p.on_alive(3, 1_000_000 + 7_200_000, true).is_empty());
        let r = request(&p.poll(3, &mut ids));
        assert_eq!(r.after, Some(1_000_000 + 7_200_000 - 3_600_000 + 600_000));
        assert_eq!(p.counts().after_clamped, 1);
    }

    #[test]
    fn a_stored_after_older_than_the_window_is_clamped_by_the_wall_clock_before_any_alive() {
        let mut ids = RequestIds::starting_at(1);
        let day = 86_400_000;
        let now = 100 * day;
        // Stored two days ago; the producers list gives a 10-hour window.
        let mut p = ProducerRecovery::new(1, cfg(), Some(now - 2 * day), 0);
        p.set_recovery_window(Duration::from_secs(10 * 3600));
        p.on_wall_clock(now);
        let r = request(&p.poll(0, &mut ids));
        assert_eq!(r.after, Some(now - 10 * 3_600_000 + 600_000));
        assert_eq!(p.counts().after_clamped, 1);
        // Inside the window it is sent as stored; a short window keeps half of itself.
        let mut p = ProducerRecovery::new(1, cfg(), Some(now - 3_600_000), 0);
        p.set_recovery_window(Duration::from_secs(10 * 3600));
        p.on_wall_clock(now);
        assert_eq!(request(&p.poll(0, &mut ids)).after, Some(now - 3_600_000));
        let mut p = ProducerRecovery::new(1, cfg(), Some(now - day), 0);
        p.set_recovery_window(Duration::from_secs(600));
        p.on_wall_clock(now);
        assert_eq!(request(&p.poll(0, &mut ids)).after, Some(now - 300_000));
    }
}
