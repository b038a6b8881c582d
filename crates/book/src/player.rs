//! Player accounts as the book sees them: currency, ledger accounts, risk settings, and
//! responsible-gambling limits with their usage in the current day, week and month.

use domain::{Currency, Money, Ratio};

use crate::calendar::Period;
use crate::ids::{AccountId, LedgerAccountId, Timestamp};

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum LimitKind {
    Deposit,
    Loss,
    Stake,
}

impl LimitKind {
    pub const ALL: [LimitKind; 3] = [LimitKind::Deposit, LimitKind::Loss, LimitKind::Stake];

    pub fn as_str(self) -> &'static str {
        match self {
            LimitKind::Deposit => "deposit",
            LimitKind::Loss => "loss",
            LimitKind::Stake => "stake",
        }
    }

    pub fn slot(self) -> usize {
        self as usize
    }
}

/// One limit (say, the weekly deposit limit). A decrease applies at once; an increase or a
/// removal waits in `pending` until its cooling-off ends.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LimitSlot {
    pub current: Option<Money>,
    pub pending: Option<PendingLimit>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PendingLimit {
    pub value: Option<Money>,
    pub effective_at: Timestamp,
}

impl LimitSlot {
    /// The limit in force at `now`.
    pub fn effective(&self, now: Timestamp) -> Option<Money> {
        match self.pending {
            Some(pending) if now >= pending.effective_at => pending.value,
            _ => self.current,
        }
    }

    /// Folds a pending change whose cooling-off has ended into `current`.
    pub fn settle(&mut self, now: Timestamp) {
        if let Some(pending) = self.pending {
            if now >= pending.effective_at {
                self.current = pending.value;
                self.pending = None;
            }
        }
    }
}

/// Usage of one period: which period it counts, and deposits, stakes and net loss within it.
/// Net loss is stakes placed less returns paid; it goes negative when the player is ahead.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Usage {
    pub period_index: u64,
    pub deposited: i64,
    pub staked: i64,
    pub net_loss: i64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Player {
    pub id: AccountId,
    pub currency: Currency,
    pub cash: LedgerAccountId,
    pub debt: LedgerAccountId,
    /// Scales the maximum stake for this customer (1 by default; 0.1 for a sharp).
    pub stake_factor: Ratio,
    pub frozen: bool,
    pub timed_out_until: Timestamp,
    pub excluded_until: Timestamp,
    /// `[kind][period]`.
    pub limits: [[LimitSlot; 3]; 3],
    /// `[period]`.
    pub usage: [Usage; 3],
    /// Set for players who registered with a username.
    pub profile: Option<crate::identity::Profile>,
}

impl Player {
    /// Usage of the period containing `now`, starting a fresh count when the period has rolled.
    pub fn usage_mut(&mut self, period: Period, now: Timestamp) -> &mut Usage {
        let index = period.index(now);
        let usage = &mut self.usage[period.slot()];
        if usage.period_index != index {
            *usage = Usage { period_index: index, ..Usage::default() };
        }
        usage
    }

    /// Usage of the period containing `now`, zero when nothing happened in it yet.
    pub fn usage(&self, period: Period, now: Timestamp) -> Usage {
        let usage = self.usage[period.slot()];
        if usage.period_index == period.index(now) {
            usage
        } else {
            Usage::default()
        }
    }

    /// The first limit of `kind` that `amount` more would exceed, by period.
    pub fn exceeded_limit(&self, kind: LimitKind, amount: Money, now: Timestamp) -> Option<Period> {
        // Most players set no limits; skip the calendar arithmetic for them.
        if self.limits[kind.slot()].iter().all(|slot| slot.current.is_none() && slot.pending.is_none()) {
            return None;
        }
        Period::ALL.into_iter().find(|period| {
            let Some(limit) = self.limits[kind.slot()][period.slot()].effective(now) else {
                return false;
            };
            let usage = self.usage(*period, now);
            let used = match kind {
                LimitKind::Deposit => usage.deposited,
                LimitKind::Stake => usage.staked,
                // A stake can at most be lost in full, so the check counts it as lost.
                LimitKind::Loss => usage.net_loss.max(0),
            };
            used + amount.minor() > limit.minor()
        })
    }

    /// Takes back a stake counted at `counted_at`, in the periods that are still current at
    /// `now`. A period that has rolled over since started from zero and never held it.
    pub fn unrecord_stake(&mut self, counted_at: Timestamp, now: Timestamp, staked: i64) {
        for period in Period::ALL {
            if period.index(counted_at) == period.index(now) {
                let usage = self.usage_mut(period, now);
                usage.staked -= staked;
                usage.net_loss -= staked;
            }
        }
    }

    /// Records usage in every period.
    pub fn record(&mut self, now: Timestamp, deposited: i64, staked: i64, net_loss: i64) {
        for period in Period::ALL {
            let usage = self.usage_mut(period, now);
            usage.deposited += deposited;
            usage.staked += staked;
            usage.net_loss += net_loss;
        }
    }
}
