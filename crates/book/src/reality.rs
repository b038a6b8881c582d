//! Reality checks (UKGC RTS 13): a player who chose an interval is reminded, every interval of
//! a session, how long they have played and what they have won or lost since the session
//! started, and play pauses until they acknowledge.
//!
//! The book keeps, only for players who chose an interval, when their session started (a
//! journaled `StartSession` at login), their net position since then (returns less stakes, in
//! exact minor units: the same places that count the loss limits' usage count it), and when the
//! next check falls due. Due checks are found on book time through a queue ordered by due time
//! (`RealityChecks::due`), never by scanning players: `Book::advance` pops what is due, marks
//! it, and reports `BookEvent::RealityCheckDue` for the stream. While a check is due and not
//! acknowledged, bets are refused (`reality_check_due`); the next check falls due an interval
//! after the acknowledgement.

use std::collections::{BTreeMap, BTreeSet};

use crate::book::Book;
use crate::event::{Ack, BookEvent, Reply};
use crate::ids::{AccountId, Timestamp};
use crate::rejection::Rejection;

/// The shortest interval a player may choose, in minutes.
pub const REALITY_CHECK_INTERVAL_MINUTES_MIN: u32 = 10;
/// The longest interval a player may choose, in minutes.
pub const REALITY_CHECK_INTERVAL_MINUTES_MAX: u32 = 240;
const MILLIS_PER_MINUTE: u64 = 60_000;

/// One player's reality checks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RealityCheck {
    pub interval_minutes: u32,
    /// When the current session started (a login, or the choice of an interval).
    pub session_started_at: Timestamp,
    /// Returns less stakes since the session started, in minor units of the player's
    /// currency: negative when the player lost.
    pub net_minor: i64,
    /// When the next check falls due; `None` while one is due and not acknowledged.
    pub next_due_at: Option<Timestamp>,
    /// A check fell due and the player has not acknowledged it.
    pub due: bool,
}

impl RealityCheck {
    fn interval_ms(&self) -> u64 {
        u64::from(self.interval_minutes) * MILLIS_PER_MINUTE
    }
}

/// Every player's reality checks, and the queue of those not yet due by due time (derived).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RealityChecks {
    checks: BTreeMap<AccountId, RealityCheck>,
    queue: BTreeSet<(Timestamp, AccountId)>,
}

impl RealityChecks {
    pub fn get(&self, account: AccountId) -> Option<&RealityCheck> {
        self.checks.get(&account)
    }

    pub fn len(&self) -> usize {
        self.checks.len()
    }

    pub fn is_empty(&self) -> bool {
        self.checks.is_empty()
    }

    /// Whether `account` has a check due and not acknowledged.
    pub fn is_due(&self, account: AccountId) -> bool {
        self.checks.get(&account).is_some_and(|check| check.due)
    }

    /// When the next check falls due, for the sequencer's timer.
    pub fn next_due(&self) -> Option<Timestamp> {
        self.queue.first().map(|(due, _)| *due)
    }

    /// In account order, for snapshots.
    pub fn to_parts(&self) -> Vec<(AccountId, RealityCheck)> {
        self.checks.iter().map(|(account, check)| (*account, check.clone())).collect()
    }

    /// Rebuilds the queue from each check's `next_due_at`.
    pub fn from_parts(parts: Vec<(AccountId, RealityCheck)>) -> RealityChecks {
        let queue = parts.iter().filter_map(|(account, check)| check.next_due_at.map(|due| (due, *account))).collect();
        RealityChecks { checks: parts.into_iter().collect(), queue }
    }

    /// What a snapshot must hold: intervals in range, and a check either due or scheduled.
    pub fn check_parts(parts: &[(AccountId, RealityCheck)]) -> Result<(), String> {
        if parts.windows(2).any(|pair| pair[0].0 >= pair[1].0) {
            return Err("reality checks out of account order".to_string());
        }
        for (account, check) in parts {
            if !(REALITY_CHECK_INTERVAL_MINUTES_MIN..=REALITY_CHECK_INTERVAL_MINUTES_MAX)
                .contains(&check.interval_minutes)
            {
                return Err(format!("reality check interval of {account} out of range"));
            }
            if check.due == check.next_due_at.is_some() {
                return Err(format!("reality check of {account} is both due and scheduled, or neither"));
            }
        }
        Ok(())
    }

    fn schedule(&mut self, account: AccountId, due: Option<Timestamp>) {
        let Some(check) = self.checks.get_mut(&account) else { return };
        if let Some(previous) = check.next_due_at.take() {
            self.queue.remove(&(previous, account));
        }
        check.next_due_at = due;
        if let Some(due) = due {
            self.queue.insert((due, account));
        }
    }
}

impl Book {
    /// The players' reality checks.
    pub fn reality_checks(&self) -> &RealityChecks {
        &self.reality
    }

    /// Chooses (or changes) a player's interval, or stops their checks (`None`). A first choice
    /// starts a session now; a change keeps the session and counts the new interval from now.
    pub(crate) fn set_reality_check(&mut self, account: AccountId, interval_minutes: Option<u32>) -> Reply {
        self.player(account)?;
        let Some(interval_minutes) = interval_minutes else {
            // A check that is due is acknowledged first: stopping the checks is no way around
            // the pause.
            if self.reality.checks.get(&account).is_some_and(|check| check.due) {
                return Err(Rejection::RealityCheckDue);
            }
            if let Some(check) = self.reality.checks.get(&account) {
                let due = check.next_due_at;
                if let Some(due) = due {
                    self.reality.queue.remove(&(due, account));
                }
                self.reality.checks.remove(&account);
            }
            return Ok(Ack::Done);
        };
        if !(REALITY_CHECK_INTERVAL_MINUTES_MIN..=REALITY_CHECK_INTERVAL_MINUTES_MAX).contains(&interval_minutes) {
            return Err(Rejection::InvalidRequest { reason: "reality check interval out of range" });
        }
        let now = self.now;
        let check = self.reality.checks.entry(account).or_insert(RealityCheck {
            interval_minutes,
            session_started_at: now,
            net_minor: 0,
            next_due_at: None,
            due: false,
        });
        check.interval_minutes = interval_minutes;
        // A check already due stays due until acknowledged; otherwise the next one is an
        // interval from now.
        if !check.due {
            let due = now.saturating_add(check.interval_ms());
            self.reality.schedule(account, Some(due));
        }
        Ok(Ack::Done)
    }

    /// A new session (a login): time played and the net position count from now. A check
    /// still due stays due (logging in again is no way around the pause); otherwise the next
    /// falls due an interval from now. Players without an interval have nothing to start (the
    /// gateway does not journal it for them).
    pub(crate) fn start_session(&mut self, account: AccountId) -> Reply {
        self.player(account)?;
        let now = self.now;
        let Some(check) = self.reality.checks.get_mut(&account) else { return Ok(Ack::Done) };
        check.session_started_at = now;
        check.net_minor = 0;
        if !check.due {
            let due = now.saturating_add(check.interval_ms());
            self.reality.schedule(account, Some(due));
        }
        Ok(Ack::Done)
    }

    /// The player acknowledged the check that fell due: play resumes, and the next check
    /// falls due an interval from now.
    pub(crate) fn acknowledge_reality_check(&mut self, account: AccountId) -> Reply {
        self.player(account)?;
        let now = self.now;
        let Some(check) = self.reality.checks.get_mut(&account).filter(|check| check.due) else {
            return Err(Rejection::NoRealityCheckDue);
        };
        check.due = false;
        let due = now.saturating_add(check.interval_ms());
        self.reality.schedule(account, Some(due));
        Ok(Ack::Done)
    }

    /// Counts money won (positive) or staked (negative) into the session's net position of a
    /// player with reality checks.
    pub(crate) fn record_net_position(&mut self, account: AccountId, delta_minor: i64) {
        if let Some(check) = self.reality.checks.get_mut(&account) {
            check.net_minor = check.net_minor.saturating_add(delta_minor);
        }
    }

    /// Marks every check due by now, in due order, and reports each.
    pub(crate) fn fall_due_reality_checks(&mut self, events: &mut Vec<BookEvent>) {
        while let Some(&(due, account)) = self.reality.queue.first() {
            if due > self.now {
                break;
            }
            self.reality.queue.remove(&(due, account));
            if let Some(check) = self.reality.checks.get_mut(&account) {
                debug_assert_eq!(check.next_due_at, Some(due), "the queue follows the checks");
                check.next_due_at = None;
                check.due = true;
                events.push(BookEvent::RealityCheckDue { account });
            }
        }
    }
}
