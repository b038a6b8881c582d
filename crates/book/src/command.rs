//! Commands: everything that can change the book. Each is decided at a time the sequencer
//! gives, and is recorded in the journal exactly as given, so replay decides it again.

use domain::{Currency, Date, ExchangeRate, Money, Odds, Ratio};

use crate::adjustment::{AdjustmentDirection, AdjustmentLimits};
use crate::bet::{BetKind, PricePolicy};
use crate::calendar::Period;
use crate::catalog::{EachWayTerms, Outcome};
use crate::feed::{FeedMessage, StaleMode};
use crate::identity::PersonalDetails;
use crate::ids::{
    AccountId, AdjustmentId, ApiKeyId, BetId, EventId, MarketId, QuoteId, SelectionId, StaffId, Timestamp, TransferId,
};
use crate::kyc::{KycRules, KycState};
use crate::payments::DepositOutcome;
use crate::player::LimitKind;

/// An idempotency key with the hash of the request body it came with. The same key with the
/// same hash returns the first reply; with another hash it is rejected.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Idempotency {
    pub key: String,
    pub body_hash: u64,
}

/// Who submitted a command. The journal records it with the command; the book never decides by
/// it (authorisation happens at the edge), so replay needs only the commands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Actor {
    /// A staff member logged in with a password and a second factor.
    Staff(StaffId),
    /// An operator API key; `None` is the bootstrap key of `SPORTSBOOK_ADMIN_KEY`.
    ApiKey(Option<ApiKeyId>),
    /// A player acting on their own account.
    Player(AccountId),
    /// A feed adapter, by the name of its source.
    Feed(String),
    /// The platform itself: scheduled and internal work, named (`sequencer`, `payments`,
    /// `serve`, ...). `unrecorded` stands for every command journaled before actors were.
    System(String),
}

impl Actor {
    /// The actor of commands journaled before actors were (batch formats before 4).
    pub const UNRECORDED: &'static str = "unrecorded";

    /// `staff`, `api_key`, `player`, `feed` or `system`.
    pub fn kind(&self) -> &'static str {
        match self {
            Actor::Staff(_) => "staff",
            Actor::ApiKey(_) => "api_key",
            Actor::Player(_) => "player",
            Actor::Feed(_) => "feed",
            Actor::System(_) => "system",
        }
    }

    /// The actor's id as the API shows it: `stf_1`, `key_2` (`bootstrap` for the bootstrap
    /// key), `acc_3`, a feed source's name, a system task's name.
    pub fn id(&self) -> String {
        match self {
            Actor::Staff(staff) => staff.to_string(),
            Actor::ApiKey(Some(key)) => key.to_string(),
            Actor::ApiKey(None) => "bootstrap".to_string(),
            Actor::Player(account) => account.to_string(),
            Actor::Feed(name) | Actor::System(name) => name.clone(),
        }
    }

    pub fn system(name: &str) -> Actor {
        Actor::System(name.to_string())
    }
}

/// Who submitted a command, and why when they said: journaled with the command, shown in the
/// audit trail. A reason is at most `constants::REASON_BYTES_MAX` bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Origin {
    pub actor: Actor,
    pub reason: Option<String>,
}

impl Origin {
    pub fn new(actor: Actor) -> Origin {
        Origin { actor, reason: None }
    }

    pub fn system(name: &str) -> Origin {
        Origin::new(Actor::system(name))
    }

    pub fn with_reason(mut self, reason: Option<String>) -> Origin {
        self.reason = reason;
        self
    }

    /// The origin of a command journaled before origins were.
    pub fn unrecorded() -> Origin {
        Origin::system(Actor::UNRECORDED)
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LegRequest {
    pub selection: SelectionId,
    /// The price the bettor saw.
    pub price: Odds,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlaceBet {
    pub account: AccountId,
    pub kind: BetKind,
    pub legs: Vec<LegRequest>,
    /// Per line for system and each-way bets.
    pub stake: Money,
    pub each_way: bool,
    pub policy: PricePolicy,
    pub idempotency: Option<Idempotency>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewSelection {
    pub name: String,
    pub price: Odds,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MarketAction {
    Suspend,
    Resume,
    Close,
}

/// A change to one responsible-gambling limit; `None` removes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LimitChange {
    pub kind: LimitKind,
    pub period: Period,
    pub value: Option<Money>,
}

/// A change to a market's risk settings; each `Some` replaces the setting, where the inner
/// `None` clears it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MarketRiskChange {
    pub max_stake: Option<Option<Money>>,
    pub liability_cap: Option<Option<Money>>,
    pub selection_liability_cap: Option<Option<Money>>,
    pub suspend_at_liability: Option<Option<Money>>,
    pub in_play_delay_seconds: Option<Option<u32>>,
    pub max_payout: Option<Option<Money>>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResultRequest {
    pub selection: SelectionId,
    pub outcome: Outcome,
    pub dead_heat: Option<Ratio>,
    pub void_factor: Option<Ratio>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    /// Opens an account without credentials (tests, internal accounts).
    OpenAccount {
        currency: Currency,
    },
    /// Registers a player; the password is hashed at the edge, never seen by the book.
    RegisterPlayer {
        username: String,
        password_hash: String,
        date_of_birth: Date,
        country: String,
        currency: Currency,
    },
    /// Issues an operator API key from the hash of its secret.
    CreateApiKey {
        name: String,
        key_hash: String,
        scopes: u8,
    },
    RevokeApiKey {
        key: ApiKeyId,
    },
    /// Creates a staff member; the password is hashed at the edge. `roles` are `roles` bits.
    CreateStaff {
        username: String,
        password_hash: String,
        totp_secret: String,
        roles: u8,
    },
    /// Disables a staff member for good: no login, and their tokens stop working.
    DisableStaff {
        staff: StaffId,
    },
    /// Replaces a staff member's roles (`roles` bits); their tokens hold the new scopes at once.
    SetStaffRoles {
        staff: StaffId,
        roles: u8,
    },
    /// A staff member's manual credit or debit of a player's cash, with a mandatory reason:
    /// done at once within the limit of `staff`'s roles, else pending a second staff member's
    /// approval (`adjustment`).
    RequestAdjustment {
        account: AccountId,
        /// In the player's currency; positive.
        amount: Money,
        direction: AdjustmentDirection,
        reason: String,
        staff: StaffId,
        idempotency: Option<Idempotency>,
    },
    /// `staff` approves a pending adjustment of `account` (never the one who asked).
    ApproveAdjustment {
        adjustment: AdjustmentId,
        account: AccountId,
        staff: StaffId,
    },
    /// `staff` refuses a pending adjustment of `account`, saying why.
    RejectAdjustment {
        adjustment: AdjustmentId,
        account: AccountId,
        staff: StaffId,
        reason: String,
    },
    /// Sets each role's per-adjustment limit (`serve` submits it at start when the book's
    /// differ), journaled so that replays decide with the limits in force at the time.
    SetAdjustmentLimits {
        limits: AdjustmentLimits,
    },
    Deposit {
        account: AccountId,
        amount: Money,
        payment_ref: String,
        idempotency: Option<Idempotency>,
    },
    /// A deposit the payment provider has yet to confirm: checked like `Deposit`, then held
    /// from the clearing account until `SettleDeposit` (`payments.rs`).
    BeginDeposit {
        account: AccountId,
        amount: Money,
        payment_ref: String,
        idempotency: Option<Idempotency>,
    },
    /// The provider's word on a deposit made with `BeginDeposit` (`deposit` is its hold):
    /// completed, failed, or charged back after it completed. Idempotent per outcome.
    SettleDeposit {
        account: AccountId,
        deposit: TransferId,
        outcome: DepositOutcome,
    },
    /// Approves an open withdrawal hold for payout: the payments step below the automatic
    /// threshold, a compliance or admin staff member (with a reason) above it.
    ApproveWithdrawal {
        account: AccountId,
        withdrawal: TransferId,
    },
    /// A compliance or admin staff member refuses a withdrawal that waits for approval: the
    /// hold is voided and the money is the player's again. Refused for an approved hold (the
    /// provider may have it: only its answer, or an operator's resolution, ends it).
    RefuseWithdrawal {
        account: AccountId,
        withdrawal: TransferId,
    },
    /// Holds the amount for the payment provider; `CompleteWithdrawal` posts or releases it.
    Withdraw {
        account: AccountId,
        amount: Money,
        idempotency: Option<Idempotency>,
    },
    CompleteWithdrawal {
        account: AccountId,
        withdrawal: TransferId,
        paid: bool,
    },
    /// Tracks a player's identity verification under their jurisdiction's rules (unverified
    /// at first), or replaces a tracked player's rules (`kyc.rs`).
    SetKycRules {
        account: AccountId,
        rules: KycRules,
    },
    /// A player's verification moves to `state`: a provider's answer (signed callback), the
    /// sandbox, or a compliance staff member by hand with a reason (the origin records who).
    SetKycState {
        account: AccountId,
        state: KycState,
        /// The provider's reference, when there is one.
        reference: Option<String>,
    },
    /// A player chooses the interval of their reality checks, in minutes
    /// (`REALITY_CHECK_INTERVAL_MINUTES_MIN..=MAX`), or stops them (`None`) (`reality.rs`).
    SetRealityCheck {
        account: AccountId,
        interval_minutes: Option<u32>,
    },
    /// A player's session starts (a login): the time played and net position of their reality
    /// checks count from now.
    StartSession {
        account: AccountId,
    },
    /// A player acknowledges the reality check that fell due: play resumes.
    AcknowledgeRealityCheck {
        account: AccountId,
    },
    /// A registered player's personal details (given at registration), kept in their profile.
    SetPersonalDetails {
        account: AccountId,
        details: PersonalDetails,
    },
    SetLimits {
        account: AccountId,
        changes: Vec<LimitChange>,
    },
    TimeOut {
        account: AccountId,
        hours: u32,
    },
    SelfExclude {
        account: AccountId,
        days: u32,
    },
    SetAccountRisk {
        account: AccountId,
        stake_factor: Option<Ratio>,
        frozen: Option<bool>,
    },
    CreateEvent {
        name: String,
        sport: String,
        competition: String,
        starts_at: Timestamp,
    },
    CreateMarket {
        event: EventId,
        name: String,
        kind: String,
        selections: Vec<NewSelection>,
        each_way: Option<EachWayTerms>,
    },
    SetPrices {
        market: MarketId,
        prices: Vec<(SelectionId, Odds)>,
    },
    SetMarketStatus {
        market: MarketId,
        action: MarketAction,
    },
    /// Takes the event and its markets in play, with a bet delay.
    SetInPlay {
        event: EventId,
        bet_delay_seconds: u32,
    },
    /// Ends the event and closes its markets.
    EndEvent {
        event: EventId,
    },
    SetMarketRisk {
        market: MarketId,
        change: MarketRiskChange,
    },
    PlaceBet(PlaceBet),
    QuoteCashout {
        account: AccountId,
        bet: BetId,
    },
    AcceptCashout {
        account: AccountId,
        bet: BetId,
        quote: QuoteId,
        idempotency: Option<Idempotency>,
    },
    SettleMarket {
        market: MarketId,
        results: Vec<ResultRequest>,
    },
    UnsettleMarket {
        market: MarketId,
    },
    VoidMarket {
        market: MarketId,
    },
    /// A message of an odds provider, through a feed adapter.
    Feed(FeedMessage),
    /// A feed adapter's judgement of a provider: stale (with what to do to its markets) or
    /// fresh again.
    FeedHealth {
        provider: String,
        stale: Option<StaleMode>,
    },
    /// The operator's degraded-mode switches; `None` leaves a switch as it is.
    SetTradingMode {
        pre_match_only: Option<bool>,
        cached_odds: Option<bool>,
    },
    /// A market's acceptance throttle in bets per second; `None` removes it.
    SetMarketThrottle {
        market: MarketId,
        bets_per_second: Option<u32>,
    },
    /// Sets the resettlement window (`Config::resettlement_window_ms`): how long a closed
    /// market, its settled bets and every transfer stay in the book. Journaled, so that every
    /// replay decides with the window in force at the time (`serve --resettlement-window`
    /// submits it at start when the book's differs).
    SetResettlementWindow {
        window_ms: u64,
    },
    /// Sets the idempotency window (`Config::idempotency_window_ms`): how long the book itself
    /// remembers a keyed command's reply. Journaled like the resettlement window
    /// (`serve --idempotency-window`). A shorter window forgets the older keys at the next
    /// command; retries of them are answered from the read models.
    SetIdempotencyWindow {
        window_ms: u64,
    },
    /// Replaces the operator's exchange-rate table: 1 unit of `base` buys `rate` units of each
    /// listed currency. Risk settings are in the base currency.
    SetFxRates {
        base: Currency,
        rates: Vec<(Currency, ExchangeRate)>,
    },
    /// Replaces the AML and markers-of-harm rules (`monitor.rs`); `serve --monitoring-rules`
    /// submits it at start when the book's differ.
    SetMonitoringRules {
        rules: crate::monitor::MonitoringRules,
    },
    /// A staff action on a case of the monitoring queue (note, freeze, unfreeze, escalate,
    /// mark reported, close), with who and why.
    CaseAction(crate::monitor::CaseActionRequest),
    /// Notes that `account` uses a payment instrument or a postal address that other
    /// accounts may share (`Book::note_shared`).
    NoteShared {
        account: AccountId,
        key: crate::monitor::SharedKey,
    },
    /// Lets time pass: decides in-play bets whose delay has ended. The sequencer sends it when
    /// a delay is due and nothing else is.
    Tick,
}

impl Command {
    /// The idempotency key a command carries, with the account it is scoped to.
    pub fn idempotency(&self) -> Option<(AccountId, &Idempotency)> {
        match self {
            Command::Deposit { account, idempotency, .. }
            | Command::BeginDeposit { account, idempotency, .. }
            | Command::Withdraw { account, idempotency, .. }
            | Command::AcceptCashout { account, idempotency, .. }
            | Command::RequestAdjustment { account, idempotency, .. } => {
                idempotency.as_ref().map(|key| (*account, key))
            }
            Command::PlaceBet(place) => place.idempotency.as_ref().map(|key| (place.account, key)),
            _ => None,
        }
    }
    /// The player account a command is about, if any (operator commands name none).
    pub fn account(&self) -> Option<AccountId> {
        match self {
            Command::Deposit { account, .. }
            | Command::BeginDeposit { account, .. }
            | Command::SettleDeposit { account, .. }
            | Command::ApproveWithdrawal { account, .. }
            | Command::RefuseWithdrawal { account, .. }
            | Command::Withdraw { account, .. }
            | Command::CompleteWithdrawal { account, .. }
            | Command::SetKycRules { account, .. }
            | Command::SetKycState { account, .. }
            | Command::SetRealityCheck { account, .. }
            | Command::StartSession { account }
            | Command::AcknowledgeRealityCheck { account }
            | Command::SetPersonalDetails { account, .. }
            | Command::SetLimits { account, .. }
            | Command::TimeOut { account, .. }
            | Command::SelfExclude { account, .. }
            | Command::SetAccountRisk { account, .. }
            | Command::QuoteCashout { account, .. }
            | Command::AcceptCashout { account, .. }
            | Command::RequestAdjustment { account, .. }
            | Command::ApproveAdjustment { account, .. }
            | Command::RejectAdjustment { account, .. }
            | Command::NoteShared { account, .. } => Some(*account),
            Command::PlaceBet(place) => Some(place.account),
            _ => None,
        }
    }

    /// The command's kind in snake case: the audit trail's `type`.
    pub fn name(&self) -> &'static str {
        match self {
            Command::OpenAccount { .. } => "open_account",
            Command::RegisterPlayer { .. } => "register_player",
            Command::CreateApiKey { .. } => "create_api_key",
            Command::RevokeApiKey { .. } => "revoke_api_key",
            Command::CreateStaff { .. } => "create_staff",
            Command::DisableStaff { .. } => "disable_staff",
            Command::SetStaffRoles { .. } => "set_staff_roles",
            Command::RequestAdjustment { .. } => "request_adjustment",
            Command::ApproveAdjustment { .. } => "approve_adjustment",
            Command::RejectAdjustment { .. } => "reject_adjustment",
            Command::SetAdjustmentLimits { .. } => "set_adjustment_limits",
            Command::Deposit { .. } => "deposit",
            Command::BeginDeposit { .. } => "begin_deposit",
            Command::SettleDeposit { .. } => "settle_deposit",
            Command::ApproveWithdrawal { .. } => "approve_withdrawal",
            Command::RefuseWithdrawal { .. } => "refuse_withdrawal",
            Command::Withdraw { .. } => "withdraw",
            Command::CompleteWithdrawal { .. } => "complete_withdrawal",
            Command::SetKycRules { .. } => "set_kyc_rules",
            Command::SetKycState { .. } => "set_kyc_state",
            Command::SetRealityCheck { .. } => "set_reality_check",
            Command::StartSession { .. } => "start_session",
            Command::AcknowledgeRealityCheck { .. } => "acknowledge_reality_check",
            Command::SetPersonalDetails { .. } => "set_personal_details",
            Command::SetLimits { .. } => "set_limits",
            Command::TimeOut { .. } => "time_out",
            Command::SelfExclude { .. } => "self_exclude",
            Command::SetAccountRisk { .. } => "set_account_risk",
            Command::CreateEvent { .. } => "create_event",
            Command::CreateMarket { .. } => "create_market",
            Command::SetPrices { .. } => "set_prices",
            Command::SetMarketStatus { .. } => "set_market_status",
            Command::SetInPlay { .. } => "set_in_play",
            Command::EndEvent { .. } => "end_event",
            Command::SetMarketRisk { .. } => "set_market_risk",
            Command::PlaceBet(_) => "place_bet",
            Command::QuoteCashout { .. } => "quote_cashout",
            Command::AcceptCashout { .. } => "accept_cashout",
            Command::SettleMarket { .. } => "settle_market",
            Command::UnsettleMarket { .. } => "unsettle_market",
            Command::VoidMarket { .. } => "void_market",
            Command::Feed(_) => "feed",
            Command::FeedHealth { .. } => "feed_health",
            Command::SetTradingMode { .. } => "set_trading_mode",
            Command::SetMarketThrottle { .. } => "set_market_throttle",
            Command::SetFxRates { .. } => "set_fx_rates",
            Command::SetResettlementWindow { .. } => "set_resettlement_window",
            Command::SetIdempotencyWindow { .. } => "set_idempotency_window",
            Command::SetMonitoringRules { .. } => "set_monitoring_rules",
            Command::CaseAction(_) => "case_action",
            Command::NoteShared { .. } => "note_shared",
            Command::Tick => "tick",
        }
    }
}
