//! One connection's outbound queue: bounded, with price conflation and a hard limit.
//!
//! The dispatcher pushes, the connection's writer drains; each holds the lock only to move
//! frames in or out, never across a socket write, so a slow client can never make the
//! dispatcher (and through it the book's hook or other clients) wait.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::Instant;

use axum::extract::ws::Utf8Bytes;
use book::SelectionId;
use tokio::sync::Notify;

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
    /// Queued in place of an older price of the same selection, which was dropped.
    Conflated,
    /// The queue overflowed: the connection is now closed as a slow consumer, and this many
    /// queued frames (this one included) were dropped.
    Overflowed {
        dropped: usize,
    },
    /// The connection was already closing; the frame was dropped.
    Closed,
}

#[derive(Debug)]
struct State {
    frames: VecDeque<Frame>,
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
    /// Beyond this many queued frames, prices conflate.
    soft_max: usize,
    /// Beyond this many queued messages that are not prices, the connection is closed as a
    /// slow consumer.
    hard_max: usize,
}

impl Outbox {
    pub fn new(soft_max: usize, hard_max: usize, first_seq: u64) -> Outbox {
        debug_assert!(0 < soft_max && soft_max <= hard_max);
        Outbox {
            state: Mutex::new(State { frames: VecDeque::new(), closed: None, others: 0, last_seq: first_seq }),
            notify: Notify::new(),
            soft_max,
            hard_max,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding this lock cannot leave the queue inconsistent (every change is
        // one call on the deque), so a poisoned lock is still usable.
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub fn push(&self, frame: Frame) -> Pushed {
        let pushed = {
            let mut state = self.lock();
            if state.closed.is_some() {
                return Pushed::Closed;
            }
            let mut pushed = Pushed::Queued;
            match frame.selection {
                // Behind: keep only the latest price per selection. The older one leaves the
                // queue and the newer goes to the back, so sequences stay increasing. Prices
                // never overflow: with one per selection their number is bounded by what the
                // connection subscribed to.
                Some(selection) if state.frames.len() >= self.soft_max => {
                    if let Some(index) = state.frames.iter().rposition(|queued| queued.selection == Some(selection)) {
                        state.frames.remove(index);
                        pushed = Pushed::Conflated;
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
            state.last_seq = state.last_seq.max(frame.seq);
            state.frames.push_back(frame);
            pushed
        };
        self.notify.notify_one();
        pushed
    }

    /// Queues a message built from the last queued sequence (errors, heartbeats). Not
    /// conflatable; it counts against the hard limit like a bet or a balance.
    pub fn push_with_seq(&self, build: impl FnOnce(u64) -> String) -> Pushed {
        let seq = self.lock().last_seq;
        self.push(Frame { text: Utf8Bytes::from(build(seq)), seq, committed_at: None, selection: None })
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

    /// Moves every queued frame into `into`; returns the close reason once closed.
    pub fn drain(&self, into: &mut Vec<Frame>) -> Option<CloseReason> {
        let mut state = self.lock();
        into.extend(state.frames.drain(..));
        state.others = 0;
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
        let closed = outbox.drain(&mut frames);
        (frames.iter().map(|frame| frame.seq).collect(), closed)
    }

    #[test]
    fn below_the_soft_limit_every_price_is_kept() {
        let outbox = Outbox::new(4, 8, 0);
        for seq in 1..=4 {
            assert_eq!(outbox.push(price(seq, 1)), Pushed::Queued);
        }
        assert_eq!(drained(&outbox), (vec![1, 2, 3, 4], None));
    }

    #[test]
    fn behind_the_soft_limit_only_the_latest_price_per_selection_stays_in_order() {
        let outbox = Outbox::new(2, 4, 0);
        assert_eq!(outbox.push(price(1, 1)), Pushed::Queued);
        assert_eq!(outbox.push(price(2, 2)), Pushed::Queued);
        assert_eq!(outbox.push(price(3, 1)), Pushed::Conflated);
        assert_eq!(outbox.push(price(4, 2)), Pushed::Conflated);
        assert_eq!(drained(&outbox), (vec![3, 4], None));
    }

    #[test]
    fn prices_of_distinct_selections_never_overflow() {
        let outbox = Outbox::new(1, 2, 0);
        for seq in 1..=10 {
            assert_eq!(outbox.push(price(seq, seq)), Pushed::Queued);
        }
        assert_eq!(outbox.push(price(11, 3)), Pushed::Conflated);
        let (seqs, closed) = drained(&outbox);
        assert_eq!((seqs.len(), seqs.last(), closed), (10, Some(&11), None));
    }

    #[test]
    fn non_conflatable_messages_beyond_the_hard_limit_close_the_connection() {
        let outbox = Outbox::new(1, 3, 0);
        assert_eq!(outbox.push(price(1, 1)), Pushed::Queued);
        for seq in 2..=4 {
            assert_eq!(outbox.push(bet(seq)), Pushed::Queued);
        }
        assert_eq!(outbox.push(bet(5)), Pushed::Overflowed { dropped: 5 });
        assert_eq!(outbox.push(bet(6)), Pushed::Closed);
        assert_eq!(drained(&outbox), (vec![], Some(CloseReason::SlowConsumer)));
    }

    #[test]
    fn errors_carry_the_last_queued_sequence() {
        let outbox = Outbox::new(4, 8, 7);
        outbox.push_with_seq(|seq| format!("e{seq}"));
        outbox.push(price(9, 1));
        outbox.push_with_seq(|seq| format!("e{seq}"));
        let mut frames = Vec::new();
        outbox.drain(&mut frames);
        let texts: Vec<&str> = frames.iter().map(|frame| frame.text.as_str()).collect();
        assert_eq!(texts, ["e7", "p9", "e9"]);
    }
}
