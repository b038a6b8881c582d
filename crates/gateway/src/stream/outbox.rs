//! One connection's outbound queue: bounded, with price conflation and a hard limit.
//!
//! The dispatcher pushes, the connection's writer drains; each holds the lock only to move
//! frames in or out, never across a socket write, so a slow client can never make the
//! dispatcher (and through it the book's hook or other clients) wait.
//!
//! A connection is *behind* when its queue holds `queue_messages_max` frames or when the
//! oldest queued frame has waited `price_age_max`. While behind, a new price replaces every
//! queued price of its selection, so the client gets the latest price rather than a queue of
//! old ones. The age matters more than the length: with a bounded socket send buffer (see
//! `StreamConfig::socket_send_buffer_bytes`) a client that stops reading stops the writer
//! within a few hundred messages, and from then on its queue only ages.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::extract::ws::Utf8Bytes;
use book::SelectionId;
use tokio::sync::Notify;

use super::StreamConfig;

/// A message ready for the socket: serialised once, shared by every connection that gets it.
#[derive(Clone, Debug)]
pub(crate) struct Frame {
    pub text: Utf8Bytes,
    pub seq: u64,
    /// When the batch it comes from was durable (for the book-to-subscriber lag).
    pub committed_at: Option<Instant>,
    /// Set for prices: a newer price of the same selection may replace this one.
    pub selection: Option<SelectionId>,
}

/// Why the server closes a connection; the reason is the close frame's text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum CloseReason {
    /// Non-conflatable messages overflowed the hard limit of the queue.
    SlowConsumer,
    /// No pong or message within `StreamConfig::idle_timeout`.
    IdleTimeout,
    /// The server is shutting down.
    GoingAway,
}

impl CloseReason {
    pub fn as_str(self) -> &'static str {
        match self {
            CloseReason::SlowConsumer => "slow_consumer",
            CloseReason::IdleTimeout => "idle_timeout",
            CloseReason::GoingAway => "going_away",
        }
    }

    /// RFC 6455 close codes: 1008 policy violation, 1001 going away.
    pub fn code(self) -> u16 {
        match self {
            CloseReason::SlowConsumer | CloseReason::IdleTimeout => 1008,
            CloseReason::GoingAway => 1001,
        }
    }
}

/// What happened to a pushed frame.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Pushed {
    Queued,
    /// Queued in place of this many older prices of the same selection, which were dropped.
    Conflated {
        replaced: usize,
    },
    /// The queue overflowed: the connection is now closed as a slow consumer, and this many
    /// queued frames (this one included) were dropped.
    Overflowed {
        dropped: usize,
    },
    /// The connection was already closing; the frame was dropped.
    Closed,
}

/// A frame in the queue, with when it was queued (for its age).
#[derive(Debug)]
struct Queued {
    frame: Frame,
    queued_at: Instant,
}

#[derive(Debug)]
struct State {
    frames: VecDeque<Queued>,
    closed: Option<CloseReason>,
    /// Queued frames that are not prices (cannot be conflated).
    others: usize,
    /// The highest sequence queued so far: errors and heartbeats carry it.
    last_seq: u64,
}

#[derive(Debug)]
pub(crate) struct Outbox {
    state: Mutex<State>,
    notify: Notify,
    /// From this many queued frames, prices conflate.
    soft_max: usize,
    /// Once the oldest queued frame has waited this long, prices conflate.
    price_age_max: Duration,
    /// Beyond this many queued messages that are not prices, the connection is closed as a
    /// slow consumer.
    hard_max: usize,
}

impl Outbox {
    /// An empty queue with `config`'s limits; errors and heartbeats before the first update
    /// carry `first_seq`.
    pub fn new(config: &StreamConfig, first_seq: u64) -> Outbox {
        let (soft_max, hard_max) = (config.queue_messages_max, config.queue_messages_hard_max);
        debug_assert!(0 < soft_max && soft_max <= hard_max);
        Outbox {
            state: Mutex::new(State { frames: VecDeque::new(), closed: None, others: 0, last_seq: first_seq }),
            notify: Notify::new(),
            soft_max,
            price_age_max: config.price_age_max,
            hard_max,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding this lock cannot leave the queue inconsistent (every change is
        // one call on the deque), so a poisoned lock is still usable.
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Queues `frame` at `now` (the caller reads the clock once for many pushes).
    pub fn push(&self, frame: Frame, now: Instant) -> Pushed {
        let pushed = {
            let mut state = self.lock();
            if state.closed.is_some() {
                return Pushed::Closed;
            }
            let mut pushed = Pushed::Queued;
            match frame.selection {
                // Behind: keep only the latest price per selection. Every older one leaves the
                // queue and the newer goes to the back, so sequences stay increasing; messages
                // that are not prices (a snapshot, a status change) are never removed, so a
                // client misses none of them and a snapshot still comes before its deltas.
                // Prices never overflow: while behind there is at most one per selection
                // queued since, bounded by what the connection subscribed to.
                Some(selection) if self.behind(&state, now) => {
                    let before = state.frames.len();
                    state.frames.retain(|queued| queued.frame.selection != Some(selection));
                    let replaced = before - state.frames.len();
                    if replaced > 0 {
                        pushed = Pushed::Conflated { replaced };
                    }
                }
                Some(_) => {}
                None if state.others >= self.hard_max => {
                    let dropped = state.frames.len() + 1;
                    state.frames.clear();
                    state.others = 0;
                    state.closed = Some(CloseReason::SlowConsumer);
                    drop(state);
                    self.notify.notify_one();
                    return Pushed::Overflowed { dropped };
                }
                None => state.others += 1,
            }
            debug_assert!(state.frames.back().is_none_or(|last| last.frame.seq <= frame.seq));
            state.last_seq = state.last_seq.max(frame.seq);
            state.frames.push_back(Queued { frame, queued_at: now });
            pushed
        };
        self.notify.notify_one();
        pushed
    }

    /// Whether the client is behind: its queue is long, or its oldest frame has waited too
    /// long (the writer is stuck on a full socket, or the runtime is too busy to run it).
    fn behind(&self, state: &State, now: Instant) -> bool {
        state.frames.len() >= self.soft_max
            || state
                .frames
                .front()
                .is_some_and(|oldest| now.saturating_duration_since(oldest.queued_at) >= self.price_age_max)
    }

    /// Queues a message built from the last queued sequence (errors, heartbeats). Not
    /// conflatable; it counts against the hard limit like a bet or a balance.
    pub fn push_with_seq(&self, build: impl FnOnce(u64) -> String) -> Pushed {
        let seq = self.lock().last_seq;
        let frame = Frame { text: Utf8Bytes::from(build(seq)), seq, committed_at: None, selection: None };
        self.push(frame, Instant::now())
    }

    /// Closes the connection after the frames already taken by the writer; the queue is dropped.
    pub fn close(&self, reason: CloseReason) {
        {
            let mut state = self.lock();
            if state.closed.is_none() {
                state.closed = Some(reason);
                state.frames.clear();
                state.others = 0;
            }
        }
        self.notify.notify_one();
    }

    /// Moves up to `frames_max` of the oldest queued frames into `into`; returns the close
    /// reason once closed. The writer takes a bounded number at a time so that what it cannot
    /// write yet stays here, where it can still be conflated.
    pub fn drain(&self, into: &mut Vec<Frame>, frames_max: usize) -> Option<CloseReason> {
        let mut state = self.lock();
        let state = &mut *state;
        let taken = state.frames.len().min(frames_max);
        for queued in state.frames.drain(..taken) {
            if queued.frame.selection.is_none() {
                state.others -= 1;
            }
            into.push(queued.frame);
        }
        state.closed
    }

    /// Completes when something was pushed or the outbox was closed since the last call.
    pub async fn changed(&self) {
        self.notify.notified().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// No age limit in reach: only the queue length makes a connection behind.
    fn outbox(soft_max: usize, hard_max: usize, first_seq: u64) -> Outbox {
        let config = StreamConfig {
            queue_messages_max: soft_max,
            queue_messages_hard_max: hard_max,
            price_age_max: Duration::from_secs(3_600),
            ..StreamConfig::default()
        };
        Outbox::new(&config, first_seq)
    }

    fn aged(soft_max: usize, price_age_max: Duration) -> Outbox {
        let config = StreamConfig {
            queue_messages_max: soft_max,
            queue_messages_hard_max: soft_max * 4,
            price_age_max,
            ..StreamConfig::default()
        };
        Outbox::new(&config, 0)
    }

    fn price(seq: u64, selection: u64) -> Frame {
        Frame {
            text: Utf8Bytes::from(format!("p{seq}")),
            seq,
            committed_at: None,
            selection: Some(SelectionId(selection)),
        }
    }

    fn bet(seq: u64) -> Frame {
        Frame { text: Utf8Bytes::from(format!("b{seq}")), seq, committed_at: None, selection: None }
    }

    fn drained(outbox: &Outbox) -> (Vec<u64>, Option<CloseReason>) {
        let mut frames = Vec::new();
        let closed = outbox.drain(&mut frames, usize::MAX);
        (frames.iter().map(|frame| frame.seq).collect(), closed)
    }

    #[test]
    fn below_the_soft_limit_every_price_is_kept() {
        let outbox = outbox(4, 8, 0);
        let now = Instant::now();
        for seq in 1..=4 {
            assert_eq!(outbox.push(price(seq, 1), now), Pushed::Queued);
        }
        assert_eq!(drained(&outbox), (vec![1, 2, 3, 4], None));
    }

    #[test]
    fn behind_the_soft_limit_only_the_latest_price_per_selection_stays_in_order() {
        let outbox = outbox(2, 4, 0);
        let now = Instant::now();
        assert_eq!(outbox.push(price(1, 1), now), Pushed::Queued);
        assert_eq!(outbox.push(price(2, 2), now), Pushed::Queued);
        assert_eq!(outbox.push(price(3, 1), now), Pushed::Conflated { replaced: 1 });
        assert_eq!(outbox.push(price(4, 2), now), Pushed::Conflated { replaced: 1 });
        assert_eq!(drained(&outbox), (vec![3, 4], None));
    }

    #[test]
    fn prices_of_distinct_selections_never_overflow() {
        let outbox = outbox(1, 2, 0);
        let now = Instant::now();
        for seq in 1..=10 {
            assert_eq!(outbox.push(price(seq, seq), now), Pushed::Queued);
        }
        assert_eq!(outbox.push(price(11, 3), now), Pushed::Conflated { replaced: 1 });
        let (seqs, closed) = drained(&outbox);
        assert_eq!((seqs.len(), seqs.last(), closed), (10, Some(&11), None));
    }

    #[test]
    fn non_conflatable_messages_beyond_the_hard_limit_close_the_connection() {
        let outbox = outbox(1, 3, 0);
        let now = Instant::now();
        assert_eq!(outbox.push(price(1, 1), now), Pushed::Queued);
        for seq in 2..=4 {
            assert_eq!(outbox.push(bet(seq), now), Pushed::Queued);
        }
        assert_eq!(outbox.push(bet(5), now), Pushed::Overflowed { dropped: 5 });
        assert_eq!(outbox.push(bet(6), now), Pushed::Closed);
        assert_eq!(drained(&outbox), (vec![], Some(CloseReason::SlowConsumer)));
    }

    #[test]
    fn errors_carry_the_last_queued_sequence() {
        let outbox = outbox(4, 8, 7);
        outbox.push_with_seq(|seq| format!("e{seq}"));
        outbox.push(price(9, 1), Instant::now());
        outbox.push_with_seq(|seq| format!("e{seq}"));
        let mut frames = Vec::new();
        outbox.drain(&mut frames, usize::MAX);
        let texts: Vec<&str> = frames.iter().map(|frame| frame.text.as_str()).collect();
        assert_eq!(texts, ["e7", "p9", "e9"]);
    }

    #[test]
    fn a_short_queue_whose_oldest_frame_waited_past_the_age_limit_conflates() {
        let outbox = aged(100, Duration::from_millis(250));
        let start = Instant::now();
        assert_eq!(outbox.push(price(1, 1), start), Pushed::Queued);
        assert_eq!(outbox.push(price(2, 2), start), Pushed::Queued);
        // Young: every price is kept, however many of one selection.
        let young = start + Duration::from_millis(249);
        assert_eq!(outbox.push(price(3, 1), young), Pushed::Queued);
        // The oldest has waited the limit: the new price of selection 1 replaces both queued ones.
        let old = start + Duration::from_millis(250);
        assert_eq!(outbox.push(price(4, 1), old), Pushed::Conflated { replaced: 2 });
        // A selection with nothing queued is simply queued.
        assert_eq!(outbox.push(price(5, 3), old), Pushed::Queued);
        assert_eq!(drained(&outbox), (vec![2, 4, 5], None));
    }

    #[test]
    fn age_conflation_keeps_every_other_message_and_the_order() {
        let outbox = aged(100, Duration::from_millis(250));
        let start = Instant::now();
        let late = start + Duration::from_secs(1);
        outbox.push(bet(1), start); // a snapshot, a status change: never replaced
        outbox.push(price(2, 1), start);
        outbox.push(bet(3), start);
        outbox.push(price(4, 2), start);
        assert_eq!(outbox.push(price(5, 1), late), Pushed::Conflated { replaced: 1 });
        assert_eq!(outbox.push(price(6, 2), late), Pushed::Conflated { replaced: 1 });
        assert_eq!(outbox.push(price(7, 1), late), Pushed::Conflated { replaced: 1 });
        assert_eq!(drained(&outbox), (vec![1, 3, 6, 7], None));
    }

    #[test]
    fn once_the_old_frames_are_drained_the_connection_is_no_longer_behind() {
        let outbox = aged(100, Duration::from_millis(250));
        let start = Instant::now();
        outbox.push(price(1, 1), start);
        outbox.push(price(2, 2), start + Duration::from_millis(200));
        // The writer takes the oldest frame only: the next one is 100 ms old at `later`.
        let mut frames = Vec::new();
        assert_eq!(outbox.drain(&mut frames, 1), None);
        assert_eq!(frames.len(), 1);
        let later = start + Duration::from_millis(300);
        assert_eq!(outbox.push(price(3, 2), later), Pushed::Queued);
        // At 450 ms the oldest queued (seq 2) has waited 250 ms.
        let behind = start + Duration::from_millis(450);
        assert_eq!(outbox.push(price(4, 2), behind), Pushed::Conflated { replaced: 2 });
        assert_eq!(drained(&outbox), (vec![4], None));
    }

    #[test]
    fn a_bounded_drain_leaves_the_rest_and_counts_others_right() {
        let outbox = outbox(1, 2, 0);
        let now = Instant::now();
        outbox.push(bet(1), now);
        outbox.push(bet(2), now);
        let mut frames = Vec::new();
        outbox.drain(&mut frames, 1);
        // One non-price message left: one more fits under the hard limit of 2 ...
        assert_eq!(outbox.push(bet(3), now), Pushed::Queued);
        // ... and the next overflows.
        assert_eq!(outbox.push(bet(4), now), Pushed::Overflowed { dropped: 3 });
    }
}
