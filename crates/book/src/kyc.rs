//! Know-your-customer (identity verification) as the book keeps it: each tracked player's
//! verification state, when it last changed and the provider's reference, the rules of the
//! player's jurisdiction that depend on it, and the player's lifetime deposits they are
//! measured against.
//!
//! The book decides only what money may do: a withdrawal is refused (`kyc_required`) unless the
//! player is verified, and while they are not, their lifetime deposits may not pass the
//! jurisdiction's cap (`kyc_deposit_cap`). A deposit that takes lifetime deposits past the
//! re-verification threshold when the last verification was below it sends the player back to
//! `pending`: withdrawals wait for a new verification. A verification older than the expiry
//! reads as `expired` from that moment (evaluated at each command's time, so replay decides
//! the same). Who may change a state (a provider's signed callback, a compliance staff member)
//! and which rules a country gets are decided at the edge; every change is a journaled command
//! with its actor.
//!
//! Players the book does not track (accounts opened without registration, players registered
//! before KYC existed) have no restriction: replays of older journals decide as they did.

use std::collections::BTreeMap;

use domain::Money;

use crate::book::Book;
use crate::event::{Ack, Reply};
use crate::ids::{AccountId, Timestamp};
use crate::rejection::Rejection;

/// Bytes of a provider's verification reference, at most.
pub const KYC_REFERENCE_BYTES_MAX: usize = 128;

/// Where a player's identity verification is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum KycState {
    /// Nothing asked yet.
    Unverified,
    /// Asked of the provider (or sent back for re-verification); waiting for its answer.
    Pending,
    Verified,
    Rejected,
    /// A verification older than the jurisdiction's expiry.
    Expired,
}

impl KycState {
    pub const ALL: [KycState; 5] =
        [KycState::Unverified, KycState::Pending, KycState::Verified, KycState::Rejected, KycState::Expired];

    pub fn name(self) -> &'static str {
        match self {
            KycState::Unverified => "unverified",
            KycState::Pending => "pending",
            KycState::Verified => "verified",
            KycState::Rejected => "rejected",
            KycState::Expired => "expired",
        }
    }

    pub fn parse(name: &str) -> Option<KycState> {
        KycState::ALL.into_iter().find(|state| state.name() == name)
    }
}

/// The rules of a player's jurisdiction that the book applies; `None` is no such rule.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KycRules {
    /// Lifetime deposits allowed while the player is not verified, in their currency.
    pub deposit_cap: Option<Money>,
    /// Lifetime deposits past which a verification made below them is asked again.
    pub reverify_above: Option<Money>,
    /// How long a verification lasts, in ms.
    pub expiry_ms: Option<u64>,
}

/// One tracked player's verification.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Kyc {
    /// The state as last set (see `effective` for expiry).
    pub state: KycState,
    /// When the state was last set.
    pub changed_at: Timestamp,
    /// The provider's reference of the last verification asked or answered.
    pub reference: Option<String>,
    pub rules: KycRules,
    /// Deposits made since the player was tracked (pending ones included; failed ones leave),
    /// in minor units of their currency.
    pub deposited: i64,
    /// `deposited` when the player was last verified.
    pub verified_deposits: i64,
}

impl Kyc {
    /// The state at `now`: a verification past its expiry is `Expired`.
    pub fn effective(&self, now: Timestamp) -> KycState {
        match (self.state, self.rules.expiry_ms) {
            (KycState::Verified, Some(expiry)) if now >= self.changed_at.saturating_add(expiry) => KycState::Expired,
            (state, _) => state,
        }
    }

    /// When the verification expires, for a verified player under an expiry rule.
    pub fn expires_at(&self) -> Option<Timestamp> {
        match (self.state, self.rules.expiry_ms) {
            (KycState::Verified, Some(expiry)) => Some(self.changed_at.saturating_add(expiry)),
            _ => None,
        }
    }

    /// Whether moving from the state at `now` to `to` is a transition of the state machine.
    /// Any state may go to any other except: `expired` only from a verification (the provider
    /// or staff cannot expire what was never verified), and nothing to the state it is in
    /// (an answer given twice is a replay, answered as one by the caller).
    pub fn allows(from: KycState, to: KycState) -> bool {
        from != to && (to != KycState::Expired || from == KycState::Verified)
    }
}

/// The tracked players' verifications.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KycBook {
    pub(crate) players: BTreeMap<AccountId, Kyc>,
}

impl KycBook {
    /// A tracked player's verification.
    pub fn get(&self, account: AccountId) -> Option<&Kyc> {
        self.players.get(&account)
    }

    /// Every tracked player, by account.
    pub fn iter(&self) -> impl Iterator<Item = (AccountId, &Kyc)> + '_ {
        self.players.iter().map(|(account, kyc)| (*account, kyc))
    }

    /// In account order, for snapshots.
    pub fn to_parts(&self) -> Vec<(AccountId, Kyc)> {
        self.players.iter().map(|(account, kyc)| (*account, kyc.clone())).collect()
    }

    pub fn from_parts(parts: Vec<(AccountId, Kyc)>) -> KycBook {
        KycBook { players: parts.into_iter().collect() }
    }

    /// Checks decoded parts: in account order, references within bounds, amounts sane.
    pub fn check_parts(parts: &[(AccountId, Kyc)]) -> Result<(), String> {
        if !parts.windows(2).all(|pair| pair[0].0 < pair[1].0) {
            return Err("kyc records out of order".to_string());
        }
        for (account, kyc) in parts {
            let reference_ok =
                kyc.reference.as_ref().is_none_or(|reference| reference.len() <= KYC_REFERENCE_BYTES_MAX);
            let rules_ok = [kyc.rules.deposit_cap, kyc.rules.reverify_above]
                .into_iter()
                .flatten()
                .all(|amount| amount.minor() >= 0);
            if !reference_ok || !rules_ok || kyc.deposited < 0 || kyc.verified_deposits < 0 {
                return Err(format!("kyc record of {account} is inconsistent"));
            }
        }
        Ok(())
    }
}

impl Book {
    /// The tracked players' verifications.
    pub fn kyc(&self) -> &KycBook {
        &self.kyc
    }

    /// Starts tracking `account` under `rules` (unverified), or replaces the rules of a tracked
    /// player (their state and deposits stay).
    pub(crate) fn set_kyc_rules(&mut self, account: AccountId, rules: KycRules) -> Reply {
        self.player(account)?;
        let amounts_ok =
            [rules.deposit_cap, rules.reverify_above].into_iter().flatten().all(|amount| amount.minor() >= 0);
        if !amounts_ok || rules.expiry_ms == Some(0) {
            return Err(Rejection::InvalidRequest { reason: "kyc rules out of range" });
        }
        let now = self.now;
        self.kyc.players.entry(account).and_modify(|kyc| kyc.rules = rules).or_insert(Kyc {
            state: KycState::Unverified,
            changed_at: now,
            reference: None,
            rules,
            deposited: 0,
            verified_deposits: 0,
        });
        Ok(Ack::Done)
    }

    /// Moves a player's verification to `state` (tracking them, without rules, if they were
    /// not). The state they are in already, with the same reference, answers `Done` again and
    /// changes nothing (a provider's retried callback); any other move outside the state
    /// machine is `kyc_conflict`.
    pub(crate) fn set_kyc_state(&mut self, account: AccountId, state: KycState, reference: Option<&str>) -> Reply {
        self.player(account)?;
        if reference.is_some_and(|reference| reference.is_empty() || reference.len() > KYC_REFERENCE_BYTES_MAX) {
            return Err(Rejection::InvalidRequest { reason: "kyc reference must be 1 to 128 bytes" });
        }
        let now = self.now;
        let kyc = self.kyc.players.entry(account).or_insert(Kyc {
            state: KycState::Unverified,
            changed_at: now,
            reference: None,
            rules: KycRules::default(),
            deposited: 0,
            verified_deposits: 0,
        });
        let from = kyc.effective(now);
        if from == state && (reference.is_none() || kyc.reference.as_deref() == reference) {
            return Ok(Ack::Done);
        }
        if !Kyc::allows(from, state) && from != state {
            return Err(Rejection::KycConflict);
        }
        kyc.state = state;
        kyc.changed_at = now;
        if let Some(reference) = reference {
            kyc.reference = Some(reference.to_string());
        }
        if state == KycState::Verified {
            kyc.verified_deposits = kyc.deposited;
        }
        Ok(Ack::Done)
    }

    /// Refuses a withdrawal of a tracked player who is not verified now.
    pub(crate) fn check_kyc_withdrawal(&self, account: AccountId) -> Result<(), Rejection> {
        match self.kyc.players.get(&account) {
            Some(kyc) if kyc.effective(self.now) != KycState::Verified => Err(Rejection::KycRequired),
            _ => Ok(()),
        }
    }

    /// Refuses a deposit that would take an unverified player's lifetime deposits past the cap.
    pub(crate) fn check_kyc_deposit(&self, account: AccountId, amount: Money) -> Result<(), Rejection> {
        let Some(kyc) = self.kyc.players.get(&account) else { return Ok(()) };
        match kyc.rules.deposit_cap {
            Some(cap)
                if kyc.effective(self.now) != KycState::Verified && kyc.deposited + amount.minor() > cap.minor() =>
            {
                Err(Rejection::KycDepositCap { cap })
            }
            _ => Ok(()),
        }
    }

    /// Counts a deposit (`minor` negative for a failed one leaving) in the lifetime deposits,
    /// sending a player verified below the re-verification threshold back to `pending` when it
    /// takes them past it.
    pub(crate) fn record_kyc_deposit(&mut self, account: AccountId, minor: i64) {
        let now = self.now;
        let Some(kyc) = self.kyc.players.get_mut(&account) else { return };
        kyc.deposited = (kyc.deposited + minor).max(0);
        if let Some(threshold) = kyc.rules.reverify_above {
            if kyc.effective(now) == KycState::Verified
                && kyc.verified_deposits <= threshold.minor()
                && kyc.deposited > threshold.minor()
            {
                kyc.state = KycState::Pending;
                kyc.changed_at = now;
            }
        }
    }
}
