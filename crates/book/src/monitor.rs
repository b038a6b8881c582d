//! AML monitoring and markers of harm: rules over the calendar periods of `calendar.rs`,
//! decided in the book on book time, so that alerts are deterministic, replayable and the
//! same after a rebuild; alerts open (or join) a case per account, and staff act on cases
//! with journaled commands.
//!
//! Cost: every deposit, withdrawal and bet updates a few counters of the account's `Watch`
//! (O(1), no allocation once the account has one: it is made when the account opens) and
//! compares them with the rules. Only an alert allocates (it is kept in its case), and at most
//! one alert fires per (account, rule, window period).
//!
//! Rules (thresholds in the base currency of the fx table, the measured amounts converted
//! with the rate now, rounded up like every amount at risk; a rule set to `None` is off):
//! - `aml`: deposits, withdrawals or turnover (stakes placed) in a day, week or month at or
//!   above a threshold; rapid in-and-out (a withdrawal within `within_hours` of the last
//!   deposit with the turnover since that deposit below `turnover_percent` of it); more than
//!   `shared_accounts_max` accounts sharing a payment instrument or a postal address.
//! - `harm`: deposits in a day at or above a count; bets placed in the night hours (UTC, from
//!   `night_start_hour` to `night_end_hour`) at or above a count in a day; withdrawals refused
//!   or failed at or above a count in 30 days (a player cannot cancel a withdrawal, UKGC RTS
//!   14B, so refused and failed ones are the marker); a deposit while a withdrawal of the same
//!   player is pending.
//!
//! Cases: `open` → `escalated` → `reported` (with a reference such as the NCA SAR number),
//! any of them → `closed`. Notes, freezes and unfreezes are allowed while a case is not
//! closed; a freeze freezes the account in the same command. The book holds only cases not
//! closed (`CASES_OPEN_MAX`); a closed case leaves it (its events are in the journal).

use std::collections::{BTreeMap, VecDeque};

use domain::{Currency, Money};

use crate::calendar::Period;
use crate::command::Actor;
use crate::event::{Ack, BookEvent, Reply};
use crate::ids::{AccountId, Timestamp, MILLIS_PER_DAY, MILLIS_PER_HOUR};
use crate::rejection::Rejection;
use crate::Book;

/// Cases not closed that the book holds at once; past it an alert fires (it is an event and
/// in the audit of the command) but joins no case.
pub const CASES_OPEN_MAX: usize = 100_000;
/// Alerts one case holds; later alerts of the case are counted (`Case::alerts_total`).
pub const CASE_ALERTS_MAX: usize = 64;
/// Staff actions on one case; past it only `close` is accepted.
pub const CASE_ACTIONS_MAX: usize = 64;
/// Distinct shared keys (instruments, addresses) the index holds; past it new keys are not
/// indexed (the alert needs a key already held).
pub const SHARED_KEYS_MAX: usize = 1_000_000;
/// The largest `shared_accounts_max`: the index keeps at most this plus one account per key.
pub const SHARED_ACCOUNTS_MAX_LIMIT: u32 = 64;
/// The largest count a count rule accepts (deposits per day, night bets, refused withdrawals).
pub const RULE_COUNT_MAX: u32 = 10_000;
/// The largest `refused_withdrawals`: that many refusal times are kept per account.
pub const REFUSED_WITHDRAWALS_MAX: u32 = 32;
/// The window of the refused-withdrawals marker.
pub const REFUSED_WITHDRAWALS_WINDOW_MS: u64 = 30 * MILLIS_PER_DAY;
/// The longest rapid in-and-out window.
pub const RAPID_WITHIN_HOURS_MAX: u32 = 24 * 31;
/// A note or a reference on a case, in bytes.
pub const CASE_TEXT_BYTES_MAX: usize = 1_000;

/// A case of the queue: `case_` and its number.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CaseId(pub u64);

impl std::fmt::Display for CaseId {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(formatter, "case_{}", self.0)
    }
}

/// An alert: `alr_` and its number.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AlertId(pub u64);

impl std::fmt::Display for AlertId {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(formatter, "alr_{}", self.0)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum AlertKind {
    Aml,
    Harm,
}

impl AlertKind {
    pub fn as_str(self) -> &'static str {
        match self {
            AlertKind::Aml => "aml",
            AlertKind::Harm => "harm",
        }
    }

    pub fn parse(text: &str) -> Option<AlertKind> {
        match text {
            "aml" => Some(AlertKind::Aml),
            "harm" => Some(AlertKind::Harm),
            _ => None,
        }
    }
}

/// The rules, by the name the API gives them. Tags are explicit: they are in the codec.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Rule {
    DepositThreshold = 0,
    WithdrawalThreshold = 1,
    TurnoverThreshold = 2,
    RapidInOut = 3,
    SharedInstrument = 4,
    SharedAddress = 5,
    DepositFrequency = 6,
    LateNightPlay = 7,
    RefusedWithdrawals = 8,
    DepositWhileWithdrawalPending = 9,
}

impl Rule {
    pub const ALL: [Rule; 10] = [
        Rule::DepositThreshold,
        Rule::WithdrawalThreshold,
        Rule::TurnoverThreshold,
        Rule::RapidInOut,
        Rule::SharedInstrument,
        Rule::SharedAddress,
        Rule::DepositFrequency,
        Rule::LateNightPlay,
        Rule::RefusedWithdrawals,
        Rule::DepositWhileWithdrawalPending,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Rule::DepositThreshold => "deposit_threshold",
            Rule::WithdrawalThreshold => "withdrawal_threshold",
            Rule::TurnoverThreshold => "turnover_threshold",
            Rule::RapidInOut => "rapid_in_out",
            Rule::SharedInstrument => "shared_instrument",
            Rule::SharedAddress => "shared_address",
            Rule::DepositFrequency => "deposit_frequency",
            Rule::LateNightPlay => "late_night_play",
            Rule::RefusedWithdrawals => "refused_withdrawals",
            Rule::DepositWhileWithdrawalPending => "deposit_while_withdrawal_pending",
        }
    }

    pub fn parse(text: &str) -> Option<Rule> {
        Rule::ALL.into_iter().find(|rule| rule.as_str() == text)
    }

    pub fn from_tag(tag: u8) -> Option<Rule> {
        Rule::ALL.get(usize::from(tag)).copied()
    }

    pub fn tag(self) -> u8 {
        self as u8
    }

    pub fn kind(self) -> AlertKind {
        match self {
            Rule::DepositFrequency
            | Rule::LateNightPlay
            | Rule::RefusedWithdrawals
            | Rule::DepositWhileWithdrawalPending => AlertKind::Harm,
            _ => AlertKind::Aml,
        }
    }

    /// Whether the rule's `value` and `threshold` are money in the base currency (else counts).
    pub fn is_money(self) -> bool {
        matches!(self, Rule::DepositThreshold | Rule::WithdrawalThreshold | Rule::TurnoverThreshold | Rule::RapidInOut)
    }
}

/// A money threshold over a calendar period, in the base currency.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Threshold {
    pub period: Period,
    pub amount: Money,
}

/// Rapid in-and-out: a withdrawal within `within_hours` of the last deposit, with the stakes
/// placed since that deposit below `turnover_percent` of it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RapidInOut {
    pub within_hours: u32,
    pub turnover_percent: u32,
}

/// The monitoring rules in force (`Command::SetMonitoringRules`, `serve --monitoring-rules`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MonitoringRules {
    pub deposits: Option<Threshold>,
    pub withdrawals: Option<Threshold>,
    pub turnover: Option<Threshold>,
    pub rapid_in_out: Option<RapidInOut>,
    /// An alert on every account when more than this many share an instrument or address.
    pub shared_accounts_max: Option<u32>,
    pub deposits_per_day: Option<u32>,
    pub night_bets_per_day: Option<u32>,
    /// The night hours (UTC): from the start hour (inclusive) to the end hour (exclusive).
    pub night_start_hour: u8,
    pub night_end_hour: u8,
    /// Withdrawals refused or failed in 30 days.
    pub refused_withdrawals: Option<u32>,
    pub deposit_while_withdrawal_pending: bool,
}

impl Default for MonitoringRules {
    /// The defaults: thresholds of 10,000.00 deposited or withdrawn and 50,000.00 staked in a
    /// day (in the base currency's minor units at 2 decimals), rapid in-and-out within 24
    /// hours below 10% turnover, more than 3 accounts per instrument or address, 5 deposits a
    /// day, 10 bets between 00:00 and 06:00 UTC in a day, 3 refused or failed withdrawals in
    /// 30 days, and a deposit while a withdrawal is pending.
    fn default() -> MonitoringRules {
        MonitoringRules {
            deposits: Some(Threshold { period: Period::Day, amount: Money::from_minor(1_000_000) }),
            withdrawals: Some(Threshold { period: Period::Day, amount: Money::from_minor(1_000_000) }),
            turnover: Some(Threshold { period: Period::Day, amount: Money::from_minor(5_000_000) }),
            rapid_in_out: Some(RapidInOut { within_hours: 24, turnover_percent: 10 }),
            shared_accounts_max: Some(3),
            deposits_per_day: Some(5),
            night_bets_per_day: Some(10),
            night_start_hour: 0,
            night_end_hour: 6,
            refused_withdrawals: Some(3),
            deposit_while_withdrawal_pending: true,
        }
    }
}

impl MonitoringRules {
    /// Rules the book refuses: counts of zero or past their maxima, night hours past 24.
    pub fn check(&self) -> Result<(), &'static str> {
        let count_ok = |count: Option<u32>, max: u32| count.is_none_or(|count| (1..=max).contains(&count));
        let amount_ok = |threshold: Option<Threshold>| threshold.is_none_or(|threshold| threshold.amount.is_positive());
        if !amount_ok(self.deposits) || !amount_ok(self.withdrawals) || !amount_ok(self.turnover) {
            return Err("monitoring rules out of range");
        }
        if !count_ok(self.shared_accounts_max, SHARED_ACCOUNTS_MAX_LIMIT)
            || !count_ok(self.deposits_per_day, RULE_COUNT_MAX)
            || !count_ok(self.night_bets_per_day, RULE_COUNT_MAX)
            || !count_ok(self.refused_withdrawals, REFUSED_WITHDRAWALS_MAX)
        {
            return Err("monitoring rules out of range");
        }
        if self.night_start_hour > 23 || self.night_end_hour > 24 || self.night_start_hour == self.night_end_hour {
            return Err("monitoring rules out of range");
        }
        if self.rapid_in_out.is_some_and(|rapid| {
            rapid.within_hours == 0 || rapid.within_hours > RAPID_WITHIN_HOURS_MAX || rapid.turnover_percent > 1_000
        }) {
            return Err("monitoring rules out of range");
        }
        Ok(())
    }

    /// Whether `at` falls in the night hours (which may wrap past midnight).
    pub fn is_night(&self, at: Timestamp) -> bool {
        let hour = ((at % MILLIS_PER_DAY) / MILLIS_PER_HOUR) as u8;
        let (start, end) = (self.night_start_hour, self.night_end_hour);
        if start < end {
            hour >= start && hour < end
        } else {
            hour >= start || hour < end
        }
    }
}

/// One period's counters of an account (amounts in the base currency's minor units).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    pub period_index: u64,
    pub deposit_count: u32,
    pub night_bets: u32,
    pub deposited: i64,
    pub withdrawn: i64,
    pub turnover: i64,
}

/// What the monitor keeps of one account.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Watch {
    /// `[period]`.
    pub counters: [Counters; 3],
    /// The last deposit: when, how much (base), and the stakes placed since (base).
    pub last_deposit_at: Timestamp,
    pub last_deposit: i64,
    pub turnover_since_deposit: i64,
    /// When withdrawals were refused or failed, oldest first, at most `REFUSED_WITHDRAWALS_MAX`.
    pub refusals: VecDeque<Timestamp>,
    /// `[rule]`: one more than the window index the rule last fired in (0: never).
    pub fired: [u64; 10],
}

impl Watch {
    fn counters_mut(&mut self, period: Period, now: Timestamp) -> &mut Counters {
        let index = period.index(now);
        let counters = &mut self.counters[period.slot()];
        if counters.period_index != index {
            *counters = Counters { period_index: index, ..Counters::default() };
        }
        counters
    }

    /// The counters of the period containing `now`, zero when nothing happened in it yet.
    pub fn counters(&self, period: Period, now: Timestamp) -> Counters {
        let counters = self.counters[period.slot()];
        if counters.period_index == period.index(now) {
            counters
        } else {
            Counters::default()
        }
    }

    fn is_default(&self) -> bool {
        *self == Watch::default()
    }
}

/// An alert, as the book raised it. `value` and `threshold` are money in the base currency
/// (minor units) for money rules (`Rule::is_money`), counts otherwise.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Alert {
    pub id: AlertId,
    pub account: AccountId,
    pub rule: Rule,
    pub value: i64,
    pub threshold: i64,
    pub currency: Currency,
    pub at: Timestamp,
    /// The case it joined; `None` when the case queue was full.
    pub case: Option<CaseId>,
}

impl Alert {
    pub fn kind(&self) -> AlertKind {
        self.rule.kind()
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum CaseStatus {
    Open,
    Escalated,
    Reported,
    Closed,
}

impl CaseStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            CaseStatus::Open => "open",
            CaseStatus::Escalated => "escalated",
            CaseStatus::Reported => "reported",
            CaseStatus::Closed => "closed",
        }
    }

    pub fn parse(text: &str) -> Option<CaseStatus> {
        [CaseStatus::Open, CaseStatus::Escalated, CaseStatus::Reported, CaseStatus::Closed]
            .into_iter()
            .find(|status| status.as_str() == text)
    }
}

/// A staff action on a case. Tags are explicit: they are in the codec.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum CaseActionKind {
    Note = 0,
    Freeze = 1,
    Unfreeze = 2,
    Escalate = 3,
    MarkReported = 4,
    Close = 5,
}

impl CaseActionKind {
    pub const ALL: [CaseActionKind; 6] = [
        CaseActionKind::Note,
        CaseActionKind::Freeze,
        CaseActionKind::Unfreeze,
        CaseActionKind::Escalate,
        CaseActionKind::MarkReported,
        CaseActionKind::Close,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            CaseActionKind::Note => "note",
            CaseActionKind::Freeze => "freeze",
            CaseActionKind::Unfreeze => "unfreeze",
            CaseActionKind::Escalate => "escalate",
            CaseActionKind::MarkReported => "mark_reported",
            CaseActionKind::Close => "close",
        }
    }

    pub fn parse(text: &str) -> Option<CaseActionKind> {
        CaseActionKind::ALL.into_iter().find(|action| action.as_str() == text)
    }

    pub fn from_tag(tag: u8) -> Option<CaseActionKind> {
        CaseActionKind::ALL.get(usize::from(tag)).copied()
    }

    pub fn tag(self) -> u8 {
        self as u8
    }
}

/// A staff action as the case records it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CaseAction {
    pub action: CaseActionKind,
    pub by: Actor,
    pub reason: String,
    pub note: Option<String>,
    pub reference: Option<String>,
    pub at: Timestamp,
}

/// A case of one account, while it is not closed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Case {
    pub id: CaseId,
    pub account: AccountId,
    pub status: CaseStatus,
    pub opened_at: Timestamp,
    pub updated_at: Timestamp,
    /// The first `CASE_ALERTS_MAX` alerts.
    pub alerts: Vec<Alert>,
    /// Every alert that joined the case.
    pub alerts_total: u32,
    pub actions: Vec<CaseAction>,
    /// The reporting reference once `mark_reported`.
    pub reference: Option<String>,
}

/// A case's figures without its alerts and actions: what `BookEvent::CaseChanged` carries
/// (a closed case has left the book when the event is read).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CaseSummary {
    pub id: CaseId,
    pub account: AccountId,
    pub status: CaseStatus,
    pub opened_at: Timestamp,
    pub updated_at: Timestamp,
    pub alerts_total: u32,
    pub reference: Option<String>,
}

impl Case {
    pub fn summary(&self) -> CaseSummary {
        CaseSummary {
            id: self.id,
            account: self.account,
            status: self.status,
            opened_at: self.opened_at,
            updated_at: self.updated_at,
            alerts_total: self.alerts_total,
            reference: self.reference.clone(),
        }
    }
}

/// A key accounts may share: a payment instrument (the provider's token of a card or bank
/// account) or a postal address, held as a 64-bit FNV-1a hash of its normalised text (the
/// journal and snapshots never hold the instrument itself).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SharedKey {
    Instrument(u64),
    Address(u64),
}

impl SharedKey {
    pub fn instrument(token: &str) -> SharedKey {
        SharedKey::Instrument(key_hash(token))
    }

    /// An address: letters and digits only, lower case, so that spacing and punctuation do
    /// not hide a match.
    pub fn address(text: &str) -> SharedKey {
        let normalised: String = text.chars().filter(|c| c.is_alphanumeric()).flat_map(|c| c.to_lowercase()).collect();
        SharedKey::Address(key_hash(&normalised))
    }

    fn rule(self) -> Rule {
        match self {
            SharedKey::Instrument(_) => Rule::SharedInstrument,
            SharedKey::Address(_) => Rule::SharedAddress,
        }
    }
}

fn key_hash(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |hash, byte| (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3))
}

/// The monitor's state in the book.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Monitor {
    pub(crate) rules: MonitoringRules,
    /// By account index; made when the account opens (or on its first use after a restore).
    pub(crate) watches: Vec<Watch>,
    pub(crate) cases: BTreeMap<CaseId, Case>,
    /// The open case of each account that has one.
    pub(crate) case_of: BTreeMap<AccountId, CaseId>,
    pub(crate) shared: BTreeMap<SharedKey, Vec<AccountId>>,
    pub(crate) alerts_issued: u64,
    pub(crate) cases_issued: u64,
}

/// Every part of a `Monitor`, for snapshots.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MonitorParts {
    pub rules: MonitoringRules,
    /// Accounts whose watch is not empty, in account order.
    pub watches: Vec<(AccountId, Watch)>,
    /// In id order.
    pub cases: Vec<Case>,
    /// In key order; each list in the order the accounts were noted.
    pub shared: Vec<(SharedKey, Vec<AccountId>)>,
    pub alerts_issued: u64,
    pub cases_issued: u64,
}

impl Monitor {
    pub fn rules(&self) -> &MonitoringRules {
        &self.rules
    }

    /// Cases not closed, in id order.
    pub fn cases(&self) -> impl Iterator<Item = &Case> + '_ {
        self.cases.values()
    }

    pub fn case(&self, case: CaseId) -> Option<&Case> {
        self.cases.get(&case)
    }

    /// The open case of `account`, if any.
    pub fn case_of(&self, account: AccountId) -> Option<&Case> {
        self.case_of.get(&account).and_then(|case| self.cases.get(case))
    }

    pub fn watch(&self, account: AccountId) -> Option<&Watch> {
        self.watches.get(account.index())
    }

    pub fn alerts_issued(&self) -> u64 {
        self.alerts_issued
    }

    pub fn cases_issued(&self) -> u64 {
        self.cases_issued
    }

    /// The accounts noted under `key` (at most `shared_accounts_max` + 1).
    pub fn sharing(&self, key: SharedKey) -> &[AccountId] {
        self.shared.get(&key).map_or(&[], Vec::as_slice)
    }

    pub fn to_parts(&self) -> MonitorParts {
        MonitorParts {
            rules: self.rules,
            watches: self
                .watches
                .iter()
                .enumerate()
                .filter(|(_, watch)| !watch.is_default())
                .map(|(index, watch)| (AccountId(index as u64 + 1), watch.clone()))
                .collect(),
            cases: self.cases.values().cloned().collect(),
            shared: self.shared.iter().map(|(key, accounts)| (*key, accounts.clone())).collect(),
            alerts_issued: self.alerts_issued,
            cases_issued: self.cases_issued,
        }
    }

    /// The monitor of a snapshot; `players` is how many accounts the book has.
    pub fn from_parts(parts: MonitorParts, players: usize) -> Monitor {
        let mut watches = vec![Watch::default(); players];
        for (account, watch) in parts.watches {
            if let Some(slot) = watches.get_mut(account.index()) {
                *slot = watch;
            }
        }
        Monitor {
            rules: parts.rules,
            watches,
            case_of: parts.cases.iter().map(|case| (case.account, case.id)).collect(),
            cases: parts.cases.into_iter().map(|case| (case.id, case)).collect(),
            shared: parts.shared.into_iter().collect(),
            alerts_issued: parts.alerts_issued,
            cases_issued: parts.cases_issued,
        }
    }

    /// What a snapshot's decoder refuses: cases over their bounds, two cases of one account,
    /// ids past their counters, a closed case held.
    pub fn check_parts(parts: &MonitorParts) -> Result<(), String> {
        parts.rules.check().map_err(str::to_string)?;
        if parts.cases.len() > CASES_OPEN_MAX || parts.shared.len() > SHARED_KEYS_MAX {
            return Err("monitor over its bounds".into());
        }
        let mut accounts = std::collections::BTreeSet::new();
        for pair in parts.cases.windows(2) {
            if pair[0].id >= pair[1].id {
                return Err("cases out of order".into());
            }
        }
        for case in &parts.cases {
            if case.id.0 == 0 || case.id.0 > parts.cases_issued || case.status == CaseStatus::Closed {
                return Err(format!("case {} out of range or closed", case.id));
            }
            if !accounts.insert(case.account) {
                return Err(format!("two open cases of {}", case.account));
            }
            if case.alerts.len() > CASE_ALERTS_MAX || case.actions.len() > CASE_ACTIONS_MAX {
                return Err(format!("case {} over its bounds", case.id));
            }
            if case.alerts.iter().any(|alert| alert.id.0 == 0 || alert.id.0 > parts.alerts_issued) {
                return Err(format!("an alert of case {} past the counter", case.id));
            }
        }
        let limit = parts.rules.shared_accounts_max.unwrap_or(SHARED_ACCOUNTS_MAX_LIMIT) as usize + 1;
        if parts.shared.iter().any(|(_, accounts)| accounts.len() > limit.max(SHARED_ACCOUNTS_MAX_LIMIT as usize + 1)) {
            return Err("a shared key over its bound".into());
        }
        if parts.watches.iter().any(|(_, watch)| watch.refusals.len() > REFUSED_WITHDRAWALS_MAX as usize) {
            return Err("refusals over their bound".into());
        }
        // What `to_parts` writes, and nothing else: a snapshot has one encoding per monitor.
        if !parts.watches.windows(2).all(|pair| pair[0].0 < pair[1].0) {
            return Err("monitor watches out of account order".into());
        }
        if parts.watches.iter().any(|(account, watch)| account.0 == 0 || watch.is_default()) {
            return Err("an empty monitor watch".into());
        }
        if !parts.shared.windows(2).all(|pair| pair[0].0 < pair[1].0) {
            return Err("shared keys out of order".into());
        }
        for (_, accounts) in &parts.shared {
            let distinct: std::collections::BTreeSet<_> = accounts.iter().collect();
            if accounts.is_empty() || distinct.len() != accounts.len() {
                return Err("a shared key with no accounts, or one twice".into());
            }
        }
        Ok(())
    }
}

/// One account's figures that a rule compares, found before anything is raised.
struct Firing {
    rule: Rule,
    window: u64,
    value: i64,
    threshold: i64,
}

impl Book {
    pub fn monitor(&self) -> &Monitor {
        &self.monitor
    }

    pub(crate) fn set_monitoring_rules(&mut self, rules: MonitoringRules) -> Reply {
        rules.check().map_err(|reason| Rejection::InvalidRequest { reason })?;
        self.monitor.rules = rules;
        Ok(Ack::Done)
    }

    /// `amount` of `currency` in the base currency now (rounded up); zero without a rate.
    fn in_base(&self, amount: Money, currency: Currency) -> i64 {
        self.fx.rate(currency).map_or(0, |rate| rate.to_base(amount, currency).minor())
    }

    fn watch_mut(&mut self, account: AccountId) -> &mut Watch {
        let index = account.index();
        if self.monitor.watches.len() <= index {
            self.monitor.watches.resize(index + 1, Watch::default());
        }
        &mut self.monitor.watches[index]
    }

    /// Makes the watch of a new account, so that its first bet allocates nothing.
    pub(crate) fn watch_opened(&mut self, account: AccountId) {
        self.watch_mut(account);
    }

    /// A deposit of `account` was credited or begun.
    pub(crate) fn monitor_deposit(&mut self, account: AccountId, amount: Money, events: &mut Vec<BookEvent>) {
        let Some(player) = self.players.get(account.index()) else { return };
        let currency = player.currency;
        let cash = self.ledger.account(player.cash);
        // A hold on the cash account that is not a stake is a pending withdrawal.
        let withdrawal_pending = cash.debits_pending - cash.debits_pending_stakes > 0;
        let base = self.in_base(amount, currency);
        let (now, rules) = (self.now, self.monitor.rules);
        let watch = self.watch_mut(account);
        for period in Period::ALL {
            let counters = watch.counters_mut(period, now);
            counters.deposit_count += 1;
            counters.deposited += base;
        }
        watch.last_deposit_at = now;
        watch.last_deposit = base;
        watch.turnover_since_deposit = 0;
        let day = Period::Day.index(now);
        let mut firings = [None, None, None];
        if let Some(threshold) = rules.deposits {
            let deposited = watch.counters(threshold.period, now).deposited;
            if deposited >= threshold.amount.minor() {
                firings[0] = Some(Firing {
                    rule: Rule::DepositThreshold,
                    window: threshold.period.index(now),
                    value: deposited,
                    threshold: threshold.amount.minor(),
                });
            }
        }
        if let Some(count) = rules.deposits_per_day {
            let made = watch.counters(Period::Day, now).deposit_count;
            if made >= count {
                firings[1] = Some(Firing {
                    rule: Rule::DepositFrequency,
                    window: day,
                    value: i64::from(made),
                    threshold: i64::from(count),
                });
            }
        }
        if rules.deposit_while_withdrawal_pending && withdrawal_pending {
            firings[2] =
                Some(Firing { rule: Rule::DepositWhileWithdrawalPending, window: day, value: base, threshold: 0 });
        }
        for firing in firings.into_iter().flatten() {
            self.raise(account, firing, events);
        }
    }

    /// A withdrawal of `account` was requested (held).
    pub(crate) fn monitor_withdrawal(&mut self, account: AccountId, amount: Money, events: &mut Vec<BookEvent>) {
        let Some(player) = self.players.get(account.index()) else { return };
        let base = self.in_base(amount, player.currency);
        let (now, rules) = (self.now, self.monitor.rules);
        let watch = self.watch_mut(account);
        for period in Period::ALL {
            watch.counters_mut(period, now).withdrawn += base;
        }
        let mut firings = [None, None];
        if let Some(threshold) = rules.withdrawals {
            let withdrawn = watch.counters(threshold.period, now).withdrawn;
            if withdrawn >= threshold.amount.minor() {
                firings[0] = Some(Firing {
                    rule: Rule::WithdrawalThreshold,
                    window: threshold.period.index(now),
                    value: withdrawn,
                    threshold: threshold.amount.minor(),
                });
            }
        }
        if let Some(rapid) = rules.rapid_in_out {
            let within = u64::from(rapid.within_hours) * MILLIS_PER_HOUR;
            let recent = watch.last_deposit > 0 && now.saturating_sub(watch.last_deposit_at) <= within;
            // Turnover below the percentage: turnover * 100 < deposit * percent (exact).
            let floor = i128::from(watch.last_deposit) * i128::from(rapid.turnover_percent);
            if recent && i128::from(watch.turnover_since_deposit) * 100 < floor {
                firings[1] = Some(Firing {
                    rule: Rule::RapidInOut,
                    window: Period::Day.index(now),
                    value: watch.turnover_since_deposit,
                    threshold: (floor / 100) as i64,
                });
            }
        }
        for firing in firings.into_iter().flatten() {
            self.raise(account, firing, events);
        }
    }

    /// A withdrawal of `account` was refused by staff or failed at the provider.
    pub(crate) fn monitor_withdrawal_refused(&mut self, account: AccountId, events: &mut Vec<BookEvent>) {
        if self.players.get(account.index()).is_none() {
            return;
        }
        let (now, rules) = (self.now, self.monitor.rules);
        let watch = self.watch_mut(account);
        while watch.refusals.front().is_some_and(|at| at.saturating_add(REFUSED_WITHDRAWALS_WINDOW_MS) <= now) {
            watch.refusals.pop_front();
        }
        if watch.refusals.len() >= REFUSED_WITHDRAWALS_MAX as usize {
            watch.refusals.pop_front();
        }
        watch.refusals.push_back(now);
        let Some(count) = rules.refused_withdrawals else { return };
        let refused = watch.refusals.len() as u32;
        if refused >= count {
            let firing = Firing {
                rule: Rule::RefusedWithdrawals,
                window: Period::Day.index(now),
                value: i64::from(refused),
                threshold: i64::from(count),
            };
            self.raise(account, firing, events);
        }
    }

    /// A bet of `account` was placed (accepted or pending its delay) with `total_stake`.
    pub(crate) fn monitor_bet(&mut self, account: AccountId, total_stake: Money, events: &mut Vec<BookEvent>) {
        let Some(player) = self.players.get(account.index()) else { return };
        let base = self.in_base(total_stake, player.currency);
        let (now, rules) = (self.now, self.monitor.rules);
        let night = rules.is_night(now);
        let watch = self.watch_mut(account);
        for period in Period::ALL {
            let counters = watch.counters_mut(period, now);
            counters.turnover += base;
            counters.night_bets += u32::from(night);
        }
        watch.turnover_since_deposit = watch.turnover_since_deposit.saturating_add(base);
        let mut firings = [None, None];
        if let Some(threshold) = rules.turnover {
            let turnover = watch.counters(threshold.period, now).turnover;
            if turnover >= threshold.amount.minor() {
                firings[0] = Some(Firing {
                    rule: Rule::TurnoverThreshold,
                    window: threshold.period.index(now),
                    value: turnover,
                    threshold: threshold.amount.minor(),
                });
            }
        }
        if let Some(count) = rules.night_bets_per_day.filter(|_| night) {
            let bets = watch.counters(Period::Day, now).night_bets;
            if bets >= count {
                firings[1] = Some(Firing {
                    rule: Rule::LateNightPlay,
                    window: Period::Day.index(now),
                    value: i64::from(bets),
                    threshold: i64::from(count),
                });
            }
        }
        for firing in firings.into_iter().flatten() {
            self.raise(account, firing, events);
        }
    }

    /// Notes that `account` uses `key` (an instrument it deposited with, an address it
    /// registered): when more than `shared_accounts_max` accounts share the key, every one of
    /// them is alerted (each at most once a day). The registration path calls this with
    /// `SharedKey::Address` once addresses are taken.
    pub fn note_shared(&mut self, key: SharedKey, account: AccountId, events: &mut Vec<BookEvent>) -> Reply {
        self.player(account)?;
        let Some(most) = self.monitor.rules.shared_accounts_max else { return Ok(Ack::Done) };
        let keep = most as usize + 1;
        let held = self.monitor.shared.len();
        let accounts = match self.monitor.shared.get_mut(&key) {
            Some(accounts) => accounts,
            None if held >= SHARED_KEYS_MAX => return Ok(Ack::Done),
            None => self.monitor.shared.entry(key).or_default(),
        };
        let newcomer = !accounts.contains(&account);
        if newcomer && accounts.len() < keep {
            accounts.push(account);
        }
        if accounts.len() < keep {
            return Ok(Ack::Done);
        }
        // More than `most` share the key: every account held, and a newcomer past the bound.
        let mut alerted: Vec<AccountId> = accounts.clone();
        if newcomer && !alerted.contains(&account) {
            alerted.push(account);
        }
        let sharing = if newcomer && alerted.len() > keep { alerted.len() } else { keep };
        let day = Period::Day.index(self.now);
        for sharer in alerted {
            let firing = Firing { rule: key.rule(), window: day, value: sharing as i64, threshold: i64::from(most) };
            self.raise(sharer, firing, events);
        }
        Ok(Ack::Done)
    }

    /// Raises an alert unless the rule fired for the account in the same window already; it
    /// opens a case for the account or joins the open one.
    fn raise(&mut self, account: AccountId, firing: Firing, events: &mut Vec<BookEvent>) {
        let now = self.now;
        let watch = self.watch_mut(account);
        let slot = &mut watch.fired[usize::from(firing.rule.tag())];
        if *slot == firing.window + 1 {
            return;
        }
        *slot = firing.window + 1;
        let monitor = &mut self.monitor;
        monitor.alerts_issued += 1;
        let id = AlertId(monitor.alerts_issued);
        let case = match monitor.case_of.get(&account) {
            Some(case) => Some(*case),
            None if monitor.cases.len() >= CASES_OPEN_MAX => None,
            None => {
                monitor.cases_issued += 1;
                let case = CaseId(monitor.cases_issued);
                monitor.cases.insert(
                    case,
                    Case {
                        id: case,
                        account,
                        status: CaseStatus::Open,
                        opened_at: now,
                        updated_at: now,
                        alerts: Vec::new(),
                        alerts_total: 0,
                        actions: Vec::new(),
                        reference: None,
                    },
                );
                monitor.case_of.insert(account, case);
                Some(case)
            }
        };
        let alert = Alert {
            id,
            account,
            rule: firing.rule,
            value: firing.value,
            threshold: firing.threshold,
            currency: self.fx.base,
            at: now,
            case,
        };
        let mut summary = None;
        if let Some(found) = case.and_then(|case| monitor.cases.get_mut(&case)) {
            found.alerts_total = found.alerts_total.saturating_add(1);
            found.updated_at = now;
            if found.alerts.len() < CASE_ALERTS_MAX {
                found.alerts.push(alert.clone());
            }
            summary = Some(found.summary());
        }
        events.push(BookEvent::Alert(alert));
        if let Some(summary) = summary {
            events.push(BookEvent::CaseChanged(summary));
        }
    }

    /// A staff action on a case (`Command::CaseAction`).
    pub(crate) fn act_on_case(&mut self, request: &CaseActionRequest, events: &mut Vec<BookEvent>) -> Reply {
        let CaseActionRequest { case, action, by, reason, note, reference } = request;
        let Some(found) = self.monitor.cases.get(case) else {
            return Err(if case.0 >= 1 && case.0 <= self.monitor.cases_issued {
                Rejection::CaseClosed
            } else {
                Rejection::UnknownCase
            });
        };
        if reason.is_empty() || reason.len() > crate::constants::REASON_BYTES_MAX {
            return Err(Rejection::InvalidRequest { reason: "a case action needs a reason of 1 to 500 bytes" });
        }
        let too_long = |text: &Option<String>| text.as_ref().is_some_and(|text| text.len() > CASE_TEXT_BYTES_MAX);
        if too_long(note) || too_long(reference) {
            return Err(Rejection::InvalidRequest { reason: "a case note or reference is at most 1,000 bytes" });
        }
        let status = found.status;
        let next = match action {
            CaseActionKind::Note if note.as_ref().is_none_or(String::is_empty) => {
                return Err(Rejection::InvalidRequest { reason: "a note action needs a note" });
            }
            CaseActionKind::Note | CaseActionKind::Freeze | CaseActionKind::Unfreeze => status,
            CaseActionKind::Escalate if status == CaseStatus::Open => CaseStatus::Escalated,
            CaseActionKind::MarkReported if matches!(status, CaseStatus::Open | CaseStatus::Escalated) => {
                if reference.as_ref().is_none_or(String::is_empty) {
                    return Err(Rejection::InvalidRequest { reason: "mark_reported needs a reference" });
                }
                CaseStatus::Reported
            }
            CaseActionKind::Escalate | CaseActionKind::MarkReported => return Err(Rejection::InvalidTransition),
            CaseActionKind::Close => CaseStatus::Closed,
        };
        if *action != CaseActionKind::Close && found.actions.len() >= CASE_ACTIONS_MAX {
            return Err(Rejection::InvalidRequest { reason: "the case has its most actions: close it" });
        }
        let account = found.account;
        match action {
            CaseActionKind::Freeze | CaseActionKind::Unfreeze => {
                let frozen = *action == CaseActionKind::Freeze;
                self.players[account.index()].frozen = frozen;
                events.push(BookEvent::AccountRestricted { account });
            }
            _ => {}
        }
        let now = self.now;
        let record = CaseAction {
            action: *action,
            by: by.clone(),
            reason: reason.clone(),
            note: note.clone(),
            reference: reference.clone(),
            at: now,
        };
        events.push(BookEvent::CaseActed { case: *case, account, action: record.clone(), status: next });
        let mut summary = None;
        if next == CaseStatus::Closed {
            if let Some(mut closed) = self.monitor.cases.remove(case) {
                closed.status = CaseStatus::Closed;
                closed.updated_at = now;
                summary = Some(closed.summary());
            }
            self.monitor.case_of.remove(&account);
        } else if let Some(found) = self.monitor.cases.get_mut(case) {
            found.status = next;
            found.updated_at = now;
            if *action == CaseActionKind::MarkReported {
                found.reference = reference.clone();
            }
            found.actions.push(record);
            summary = Some(found.summary());
        }
        if let Some(summary) = summary {
            events.push(BookEvent::CaseChanged(summary));
        }
        Ok(Ack::Done)
    }
}

/// What `Command::CaseAction` carries: the case, the action, who (also in the origin, which
/// the book does not see) and why, and the note or reference the action takes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CaseActionRequest {
    pub case: CaseId,
    pub action: CaseActionKind,
    pub by: Actor,
    pub reason: String,
    pub note: Option<String>,
    pub reference: Option<String>,
}
