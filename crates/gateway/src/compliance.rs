//! Compliance routes: the audit trail (`GET /v1/admin/audit`) and regulator reports
//! (`GET /v1/admin/reports/{name}`). Every route wants an operator API key with the
//! `compliance` scope (or `admin`); a player token or a key without it is 403.
//!
//! Both read the read models (`crates/projector`) once they hold every write acknowledged
//! before the request (`AppState::read_models`, the wait of `history.rs`; 503 `unavailable`
//! past it or with the projector off).
//!
//! The audit trail is the `audit` model: one row per command the sequencer decided, with its
//! journal position, sequence number, book time, its batch's reply digest and the command as
//! journaled (secrets blanked by the projector), listed a batch at a time, rendered here. The
//! journal stays the evidence: `?verify=true` walks it from position 0 through the engine and
//! recomputes its hash chain (`engine::chain_next`) against the head the engine keeps.
//!
//! Turnover and GGR are SQL aggregates over the `bets` and `transfers` models in the window;
//! liabilities are open state and read the book (the markets' exposure, the open stake holds);
//! responsible-gambling facts come from the `accounts`, `account_limits` and `audit` models.
//! Money is summed in integer minor units (`i128` here) and formatted once.
//!
//! Turnover and GGR also carry a total in the base currency (`base_total`): each bet's money is
//! converted with the rate recorded on that bet when it was placed (`Bet::fx`, what its risk was
//! measured in, so a report over a window never changes when the table does), one transfer or
//! stake at a time, rounded up to the base's minor unit (`AppliedRate::to_base`, the one rule of
//! `domain::fx`), by the projector (`base_stake`, `base_amount`), then summed; revenue and the
//! other derived figures are computed from those sums. A currency whose money cannot be
//! converted (no rate, or converted into another base than the book's now) is listed in
//! `missing_rates` and the base total is null, never a partial sum.

use std::collections::{BTreeMap, BTreeSet};

use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use book::{scopes, AccountId, BetKind, Command, LimitKind, MarketAction, Period, Timestamp, TransferCode};
use domain::{Currency, Money};
use engine::{ChainHead, EngineError, JournalPage, AUDIT_PAGE_RECORDS_MAX, CHAIN_HEAD_GENESIS};
use journal::{JournalError, Position};
use projector::query::{sum_of, Aggregate, Filter, Query as ModelQuery, QUERY_ROWS_MAX};
use projector::schema::{Value, ACCOUNTS, ACCOUNT_LIMITS, AUDIT, BETS, TRANSFERS};
use projector::{ProjectorError, ReadModels, Store};
use serde::{Deserialize, Serialize};

use crate::dto::{EachWayView, PageQuery};
use crate::error::{ApiError, Json};
use crate::history::store_error;
use crate::operators::{exposure_page, market_liability, total_by_currency, CurrencyAmountView, MarketExposureView};
use crate::players::PendingLimitView;
use crate::time::{format_rfc3339, parse_rfc3339};
use crate::{AppState, Principal};

/// Commands in one page of the audit trail. A page ends before the batch that would pass it,
/// but always holds at least one batch (a batch has at most `codec::BATCH_COMMANDS_MAX`).
pub const AUDIT_PAGE_COMMANDS_MAX: usize = 2_000;

/// What the `rg-events` report can and cannot say, sent with it.
const RG_EVENTS_NOTE: &str = "`accounts` is the state now: every account with a self-exclusion or time-out in force, \
    a freeze, or a limit set or waiting out its cooling-off. `events` are the responsible-gambling commands in the \
    window, read from the journal with the book time they were decided at; the journal records commands and a digest \
    of the replies, not the replies, so a command the book refused (say, a self-exclusion shorter than the minimum) is \
    listed too. The state in `accounts` is what the accepted ones left.";

pub fn routes() -> Router<AppState> {
    Router::new().route("/v1/admin/audit", get(audit)).route("/v1/admin/reports/{name}", get(report))
}

// ---- the audit trail --------------------------------------------------------------------------

/// `?limit=&cursor=` or `?verify=true`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AuditQuery {
    /// Batches per page, 1 to 200 (50 when absent).
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<usize>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
    /// `true`: verify the journal's hash chain instead of listing (takes no `limit` or `cursor`).
    pub verify: Option<bool>,
}

/// A page of the audit trail or, with `?verify=true`, the verification of its hash chain.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(untagged)]
pub enum AuditResponse {
    Page(AuditPageView),
    Verification(AuditVerificationView),
}

/// Journal batches, oldest first.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AuditPageView {
    pub items: Vec<AuditBatchView>,
    /// The `cursor` of the next page; null on the last page (more may be appended later).
    #[schema(required = true, example = "pos_50")]
    pub next_cursor: Option<String>,
}

/// One journal record: a batch of commands the sequencer decided at one time and made durable
/// with one sync.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AuditBatchView {
    /// The record's journal position (from 0), the unit the hash chain covers.
    pub position: u64,
    /// Sequence number of the batch's first command.
    pub sequence_from: u64,
    /// Sequence number of its last command.
    pub sequence_to: u64,
    /// Book time the batch was decided at.
    pub recorded_at: String,
    /// Digest of the replies the book decided (hex); replaying the batch must reproduce it.
    #[schema(example = "00f3a2c1d4e5b6a7")]
    pub reply_digest: String,
    pub commands: Vec<AuditCommandView>,
}

/// A command with its sequence number, who submitted it and why. Password and API key hashes
/// and TOTP secrets are never shown.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AuditCommandView {
    pub sequence: u64,
    pub actor: ActorView,
    /// Why, when the actor gave a reason.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(flatten)]
    pub command: AuditCommand,
}

/// Who submitted a command: a staff member (`stf_1`), an API key (`key_2`, or `bootstrap` for
/// `SPORTSBOOK_ADMIN_KEY`), a player (`acc_3`), a feed adapter (its source's name) or the
/// system (the task: `sequencer`, `payments`, `registration`, `serve` ...; `unrecorded` for
/// commands journaled before actors were).
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct ActorView {
    #[schema(example = "staff")]
    pub kind: ActorKind,
    #[schema(example = "stf_1")]
    pub id: String,
}

impl ActorView {
    pub fn of(actor: &book::Actor) -> ActorView {
        let kind = match actor {
            book::Actor::Staff(_) => ActorKind::Staff,
            book::Actor::ApiKey(_) => ActorKind::ApiKey,
            book::Actor::Player(_) => ActorKind::Player,
            book::Actor::Feed(_) => ActorKind::Feed,
            book::Actor::System(_) => ActorKind::System,
        };
        ActorView { kind, id: actor.id() }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ActorKind {
    Staff,
    ApiKey,
    Player,
    Feed,
    System,
}

/// A command's origin as the audit view holds it.
#[derive(Clone, Debug)]
struct AuditOrigin {
    actor: ActorView,
    reason: Option<String>,
}

/// A book command as journaled, by `type`. Money is a decimal string in the account's currency
/// (EUR for market settings); ids are the API's ids.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum AuditCommand {
    OpenAccount {
        currency: String,
    },
    /// The password hash is left out.
    RegisterPlayer {
        username: String,
        date_of_birth: String,
        country: String,
        currency: String,
    },
    /// The key's hash is left out.
    CreateApiKey {
        name: String,
        scopes: Vec<String>,
    },
    RevokeApiKey {
        api_key_id: String,
    },
    /// The password hash and the TOTP secret are left out.
    CreateStaff {
        username: String,
        roles: Vec<String>,
    },
    DisableStaff {
        staff_id: String,
    },
    /// A staff member's roles replaced.
    SetStaffRoles {
        staff_id: String,
        roles: Vec<String>,
    },
    /// A manual balance adjustment asked for by `requested_by` (the staff member; also the
    /// record's actor).
    RequestAdjustment {
        account_id: String,
        amount: String,
        /// `credit` or `debit`.
        direction: String,
        reason: String,
        requested_by: String,
        #[schema(required = true)]
        idempotency_key: Option<String>,
    },
    /// A pending adjustment approved by `approved_by` (four eyes).
    ApproveAdjustment {
        adjustment_id: String,
        account_id: String,
        approved_by: String,
    },
    /// A pending adjustment refused by `rejected_by`.
    RejectAdjustment {
        adjustment_id: String,
        account_id: String,
        rejected_by: String,
        reason: String,
    },
    /// Each role's per-adjustment limit in the base currency's minor units (`null`: no limit;
    /// absent: may not adjust).
    SetAdjustmentLimits {
        #[schema(value_type = std::collections::BTreeMap<String, Option<i64>>)]
        limits: BTreeMap<String, Option<i64>>,
    },
    Deposit {
        account_id: String,
        amount: String,
        payment_ref: String,
        #[schema(required = true)]
        idempotency_key: Option<String>,
    },
    /// A deposit waiting for the payment provider's callback.
    BeginDeposit {
        account_id: String,
        amount: String,
        payment_ref: String,
        #[schema(required = true)]
        idempotency_key: Option<String>,
    },
    /// The payment provider's word on a pending deposit.
    SettleDeposit {
        account_id: String,
        /// The pending deposit transfer.
        deposit_id: String,
        /// `completed`, `failed` or `charged_back`.
        outcome: String,
    },
    /// A withdrawal approved for payout (automatically below the threshold, by staff above it).
    ApproveWithdrawal {
        account_id: String,
        /// The pending withdrawal transfer.
        withdrawal_id: String,
    },
    /// A withdrawal waiting for approval, refused by staff: the money is the player's again.
    RefuseWithdrawal {
        account_id: String,
        /// The pending withdrawal transfer.
        withdrawal_id: String,
    },
    /// A player tracked for identity verification under their jurisdiction's rules.
    SetKycRules {
        account_id: String,
        /// Lifetime deposits allowed until verified; null for no cap.
        #[schema(required = true)]
        deposit_cap: Option<String>,
        /// Lifetime deposits past which the player is verified again; null for none.
        #[schema(required = true)]
        reverify_above: Option<String>,
        /// How long a verification lasts, in seconds; null for ever.
        #[schema(required = true)]
        expiry_seconds: Option<u64>,
    },
    /// A player's verification state set: by the provider's callback, the sandbox, or
    /// compliance staff by hand (the audit entry's actor and reason say which).
    SetKycState {
        account_id: String,
        /// `unverified`, `pending`, `verified`, `rejected` or `expired`.
        state: String,
        /// The provider's reference.
        #[schema(required = true)]
        reference: Option<String>,
    },
    /// A player chose the interval of their reality checks (null: stopped them).
    SetRealityCheck {
        account_id: String,
        #[schema(required = true)]
        interval_minutes: Option<u32>,
    },
    /// A player's session started (a login of a player with reality checks).
    StartSession {
        account_id: String,
    },
    /// A player acknowledged a reality check that fell due.
    AcknowledgeRealityCheck {
        account_id: String,
    },
    /// Personal details kept with a registration: which were given (the values are personal
    /// data and stay out of the audit trail).
    SetPersonalDetails {
        account_id: String,
        fields: Vec<String>,
    },
    Withdraw {
        account_id: String,
        amount: String,
        #[schema(required = true)]
        idempotency_key: Option<String>,
    },
    CompleteWithdrawal {
        account_id: String,
        /// The pending withdrawal transfer.
        withdrawal_id: String,
        paid: bool,
    },
    SetLimits {
        account_id: String,
        changes: Vec<AuditLimitChange>,
    },
    TimeOut {
        account_id: String,
        hours: u32,
    },
    SelfExclude {
        account_id: String,
        days: u32,
    },
    SetAccountRisk {
        account_id: String,
        #[schema(required = true)]
        stake_factor: Option<String>,
        #[schema(required = true)]
        frozen: Option<bool>,
    },
    CreateEvent {
        name: String,
        sport: String,
        competition: String,
        starts_at: String,
    },
    CreateMarket {
        event_id: String,
        name: String,
        kind: String,
        selections: Vec<AuditNewSelection>,
        #[schema(required = true)]
        each_way: Option<EachWayView>,
    },
    SetPrices {
        market_id: String,
        prices: Vec<AuditPrice>,
    },
    SetMarketStatus {
        market_id: String,
        /// `suspend`, `resume` or `close`.
        action: String,
    },
    SetInPlay {
        event_id: String,
        bet_delay_seconds: u32,
    },
    EndEvent {
        event_id: String,
    },
    SetMarketRisk {
        market_id: String,
        change: AuditMarketRiskChange,
    },
    /// The bet's id is the book's reply, which the journal does not hold.
    PlaceBet {
        account_id: String,
        /// `single`, `multiple` or `system`.
        bet_type: String,
        #[schema(required = true)]
        system: Option<String>,
        each_way: bool,
        /// The prices the bettor asked for.
        legs: Vec<AuditPrice>,
        /// Per line.
        stake: String,
        accept_price_changes: String,
        #[schema(required = true)]
        idempotency_key: Option<String>,
    },
    QuoteCashout {
        account_id: String,
        bet_id: String,
    },
    AcceptCashout {
        account_id: String,
        bet_id: String,
        quote_id: String,
        #[schema(required = true)]
        idempotency_key: Option<String>,
    },
    SettleMarket {
        market_id: String,
        results: Vec<AuditResult>,
    },
    UnsettleMarket {
        market_id: String,
    },
    VoidMarket {
        market_id: String,
    },
    /// Time passing: the sequencer ends due in-play delays.
    Tick,
    /// A provider's message as the feed role normalised it (the native JSON feed's form).
    Feed {
        #[schema(value_type = Object)]
        message: serde_json::Value,
    },
    /// The operator's degraded-mode switches (absent: unchanged).
    SetTradingMode {
        pre_match_only: Option<bool>,
        cached_odds: Option<bool>,
    },
    /// A market's acceptance throttle (absent: removed).
    SetMarketThrottle {
        market_id: String,
        bets_per_second: Option<u32>,
    },
    /// The feed role judged a provider stale (`stale`: `suspend` or `delay`) or fresh again.
    FeedHealth {
        provider: String,
        stale: Option<String>,
    },
    /// The resettlement window, in milliseconds (`serve --resettlement-window`).
    SetResettlementWindow {
        window_ms: u64,
    },
    /// The book's idempotency window, in milliseconds (`serve --idempotency-window`).
    SetIdempotencyWindow {
        window_ms: u64,
    },
    /// The operator's exchange-rate table: 1 unit of `base` = `rates[code]` units.
    SetFxRates {
        base: String,
        #[schema(value_type = std::collections::BTreeMap<String, String>)]
        rates: BTreeMap<String, String>,
    },
    /// The AML and markers-of-harm rules replaced (thresholds in the base currency).
    SetMonitoringRules {
        rules: Box<crate::monitoring::MonitoringRulesBody>,
    },
    /// A staff action on a case of the monitoring queue (the entry's actor and reason say who
    /// and why).
    CaseAction {
        case_id: String,
        /// `note`, `freeze`, `unfreeze`, `escalate`, `mark_reported` or `close`.
        action: String,
        #[schema(required = true)]
        note: Option<String>,
        #[schema(required = true)]
        reference: Option<String>,
    },
    /// An account noted as using a payment instrument (`instrument`) or a postal address
    /// (`address`), by a hash of it.
    NoteShared {
        account_id: String,
        /// `instrument` or `address`.
        key: String,
    },
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AuditLimitChange {
    /// `deposit`, `loss` or `stake`.
    pub kind: String,
    /// `day`, `week` or `month`.
    pub period: String,
    /// The new limit; null removes it.
    #[schema(required = true)]
    pub value: Option<String>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AuditNewSelection {
    pub name: String,
    pub price: String,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AuditPrice {
    pub selection_id: String,
    pub price: String,
}

/// The settings a market risk change names; an absent field was left as it was, `null` was
/// cleared. Money in EUR.
#[derive(Debug, Default, Serialize, utoipa::ToSchema)]
pub struct AuditMarketRiskChange {
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, required = false)]
    pub max_stake: Option<Option<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, required = false)]
    pub liability_cap: Option<Option<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, required = false)]
    pub selection_liability_cap: Option<Option<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, required = false)]
    pub suspend_at_liability: Option<Option<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<u32>, required = false)]
    pub in_play_delay_seconds: Option<Option<u32>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, required = false)]
    pub max_payout: Option<Option<String>>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AuditResult {
    pub selection_id: String,
    /// `win`, `lose`, `void` or `place`.
    pub outcome: String,
    #[schema(required = true)]
    pub dead_heat_factor: Option<String>,
    #[schema(required = true)]
    pub void_factor: Option<String>,
}

/// The journal's hash chain recomputed from its records, against the engine's live head.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AuditVerificationView {
    /// Every record from position 0 to the live head was read and the recomputed head equals it.
    pub verified: bool,
    /// Records hashed.
    pub records: u64,
    /// The head recomputed from the records (hex SHA-256).
    #[schema(example = "5f1c0e3a9b7d2c4e6f8a0b1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e6f7a8b9c0d1e")]
    pub head: String,
    /// The head the engine keeps, as of the start of the walk (hex SHA-256).
    pub expected_head: String,
    /// Why not verified; null when verified.
    #[schema(required = true)]
    pub reason: Option<String>,
}

/// `GET /v1/admin/audit` (compliance): journal batches oldest first, or `?verify=true`.
#[utoipa::path(
    get,
    path = "/v1/admin/audit",
    tag = "operators",
    summary = "Audit trail",
    description = "The journal: every batch of commands the book decided, oldest first, with its position, sequence \
        numbers and book time; password and API key hashes are never shown. A page holds at most `limit` batches and \
        about 2,000 commands. With `?verify=true`, walks the whole journal from position 0, recomputes its hash chain \
        (`head = SHA-256(head || position u64 LE || record)` from 32 zero bytes) and compares it with the head the \
        engine keeps; the walk reads 1,024 records per book read and runs within the request deadline (30 s), so a \
        journal too large for it answers 503 `timeout`. Scope: `compliance`.",
    security(("bearer" = [])),
    params(AuditQuery),
    responses(
        (status = 200, description = "A page of batches (`{items, next_cursor}`), or with `?verify=true` the \
            verification (`{verified, records, head, expected_head, reason}`)", body = AuditResponse),
        (status = 400, description = "Bad `limit`, `cursor` or `verify`, `verify` with `limit` or `cursor`, or an \
            unknown parameter (`invalid_request`)", body = ApiError),
        (status = 401, description = "No valid credential (`unauthenticated`)", body = ApiError),
        (status = 403, description = "Not an API key with the scope (`forbidden`)", body = ApiError),
    ),
)]
pub(crate) async fn audit(
    principal: Principal,
    State(state): State<AppState>,
    headers: HeaderMap,
    query: Result<Query<AuditQuery>, QueryRejection>,
) -> Result<Json<AuditResponse>, ApiError> {
    principal.require_scope(scopes::COMPLIANCE)?;
    let Query(query) = query.map_err(|rejection| ApiError::invalid(rejection.body_text()))?;
    if query.verify == Some(true) {
        if query.limit.is_some() || query.cursor.is_some() {
            return Err(ApiError::invalid("verify takes no limit or cursor"));
        }
        return Ok(Json(AuditResponse::Verification(verify(&state).await?)));
    }
    let page = PageQuery { limit: query.limit, cursor: None };
    let limit = page.limit()?;
    let from = query.cursor.as_deref().map(parse_position_cursor).transpose()?.unwrap_or(0);
    Ok(Json(AuditResponse::Page(audit_page(&state, &headers, from, limit).await?)))
}

async fn audit_page(
    state: &AppState,
    headers: &HeaderMap,
    from: Position,
    limit: usize,
) -> Result<AuditPageView, ApiError> {
    let models = state.read_models(headers).await?;
    let base = state.read(|book| book.fx().base).await?;
    let (batches, currencies) = models
        .query(move |store| {
            let batches = audit_batches(store, from, limit)?;
            let accounts = batches.iter().flat_map(|batch| batch.commands.iter().filter_map(|(_, c, _)| c.account()));
            let currencies = account_currencies(store, accounts.collect(), base)?;
            Ok((batches, currencies))
        })
        .await
        .map_err(store_error)?;
    let next = batches.last().map_or(from, |batch| batch.position + 1);
    // Asked after the page was read: the models commit whole batches, so a batch at or past
    // `next` committed since is on a later page.
    let end = models.published().position();
    let items =
        blocking(move || batches.iter().map(|batch| batch_view(batch, &currencies)).collect::<Vec<_>>()).await?;
    let next_cursor = (next < end).then(|| format!("pos_{next}"));
    Ok(AuditPageView { items, next_cursor })
}

/// One journal batch as the audit view holds it: its commands with their sequence numbers.
struct ModelBatch {
    position: Position,
    at: Timestamp,
    reply_digest: String,
    commands: Vec<(u64, Command, AuditOrigin)>,
}

// Columns of an `audit` row.
const AUDIT_POSITION: usize = 0;
const AUDIT_SEQUENCE: usize = 2;
const AUDIT_AT: usize = 3;
const AUDIT_REPLY_DIGEST: usize = 8;
const AUDIT_BODY: usize = 9;
const AUDIT_ACTOR_KIND: usize = 10;
const AUDIT_ACTOR_ID: usize = 11;
const AUDIT_REASON: usize = 12;

fn audit_int(row: &[Value], column: usize) -> Result<u64, ProjectorError> {
    row.get(column)
        .and_then(Value::int)
        .map(|value| value as u64)
        .ok_or_else(|| ProjectorError::Store(format!("an audit row without column {column}: {row:?}")))
}

/// The command an audit row holds. Rows written before migration 2 have none.
fn audit_row_command(row: &[Value]) -> Result<(u64, Command, AuditOrigin), ProjectorError> {
    let position = audit_int(row, AUDIT_POSITION)?;
    let body = row.get(AUDIT_BODY).and_then(Value::text).ok_or_else(|| {
        ProjectorError::Store(format!(
            "the audit row at journal position {position} has no command body (written before migration 2); \
             rebuild the read models (sportsbook projector --rebuild)"
        ))
    })?;
    let command = projector::follower::decode_audit_body(body).ok_or_else(|| {
        ProjectorError::Store(format!("the audit row at journal position {position} holds an unreadable command"))
    })?;
    Ok((audit_int(row, AUDIT_SEQUENCE)?, command, audit_row_origin(row)))
}

/// Who submitted the command of an audit row. Rows written before migration 4 have no actor:
/// they show the system actor `unrecorded`, like commands journaled before actors were.
fn audit_row_origin(row: &[Value]) -> AuditOrigin {
    let text = |column: usize| row.get(column).and_then(Value::text);
    let kind = match text(AUDIT_ACTOR_KIND) {
        Some("staff") => ActorKind::Staff,
        Some("api_key") => ActorKind::ApiKey,
        Some("player") => ActorKind::Player,
        Some("feed") => ActorKind::Feed,
        _ => ActorKind::System,
    };
    let id = match text(AUDIT_ACTOR_KIND) {
        Some(_) => text(AUDIT_ACTOR_ID).unwrap_or_default().to_string(),
        None => book::Actor::UNRECORDED.to_string(),
    };
    AuditOrigin { actor: ActorView { kind, id }, reason: text(AUDIT_REASON).map(str::to_string) }
}

/// Whole batches of the audit view from journal position `from` on, oldest first: at most
/// `limit` of them and `AUDIT_PAGE_COMMANDS_MAX` commands, but at least one batch. Reads
/// `QUERY_ROWS_MAX` rows at a time; a batch longer than that is read in parts.
fn audit_batches(store: &mut dyn Store, from: Position, limit: usize) -> Result<Vec<ModelBatch>, ProjectorError> {
    let order = vec![("position", false), ("ordinal", false)];
    let mut batches: Vec<ModelBatch> = Vec::new();
    let mut commands = 0usize;
    let mut next = from;
    'read: loop {
        let query = ModelQuery {
            table: &AUDIT,
            filters: vec![Filter::Ge("position", Value::Int(next as i64))],
            order: order.clone(),
            limit: QUERY_ROWS_MAX,
        };
        let rows = store.select(&query)?;
        let full = rows.len() == QUERY_ROWS_MAX;
        let mut groups: Vec<Vec<Vec<Value>>> = Vec::new();
        for row in rows {
            let position = audit_int(&row, AUDIT_POSITION)?;
            match groups.last_mut() {
                Some(group) if audit_int(&group[0], AUDIT_POSITION)? == position => group.push(row),
                _ => groups.push(vec![row]),
            }
        }
        let count = groups.len();
        for (index, mut group) in groups.into_iter().enumerate() {
            let position = audit_int(&group[0], AUDIT_POSITION)?;
            if full && index + 1 == count {
                if index > 0 {
                    // The read may have cut this batch: read it again whole.
                    next = position;
                    continue 'read;
                }
                // One batch longer than a read: the rest of it.
                loop {
                    let rest = store.select(&ModelQuery {
                        table: &AUDIT,
                        filters: vec![
                            Filter::Eq("position", Value::Int(position as i64)),
                            Filter::Ge("ordinal", Value::Int(group.len() as i64)),
                        ],
                        order: order.clone(),
                        limit: QUERY_ROWS_MAX,
                    })?;
                    if rest.is_empty() {
                        break;
                    }
                    group.extend(rest);
                }
            }
            if batches.len() == limit || (!batches.is_empty() && commands + group.len() > AUDIT_PAGE_COMMANDS_MAX) {
                break 'read;
            }
            commands += group.len();
            let first = &group[0];
            batches.push(ModelBatch {
                position,
                at: audit_int(first, AUDIT_AT)?,
                reply_digest: first.get(AUDIT_REPLY_DIGEST).and_then(Value::text).unwrap_or_default().to_owned(),
                commands: group.iter().map(|row| audit_row_command(row)).collect::<Result<_, _>>()?,
            });
            next = position + 1;
        }
        if !full {
            break;
        }
    }
    Ok(batches)
}

fn batch_view(batch: &ModelBatch, currencies: &Currencies) -> AuditBatchView {
    let sequence_from = batch.commands.first().map_or(0, |(sequence, _, _)| *sequence);
    let sequence_to = batch.commands.last().map_or(sequence_from, |(sequence, _, _)| *sequence);
    AuditBatchView {
        position: batch.position,
        sequence_from,
        sequence_to,
        recorded_at: format_rfc3339(batch.at),
        reply_digest: batch.reply_digest.clone(),
        commands: batch
            .commands
            .iter()
            .map(|(sequence, command, origin)| AuditCommandView {
                sequence: *sequence,
                actor: origin.actor.clone(),
                reason: origin.reason.clone(),
                command: audit_command(command, currencies),
            })
            .collect(),
    }
}

/// Renders one command. Secrets (password and API key hashes) are left out by construction:
/// every field shown is named here.
fn audit_command(command: &Command, currencies: &Currencies) -> AuditCommand {
    let currency_of = |account: &AccountId| currencies.accounts.get(account).copied().unwrap_or(currencies.base);
    let money = |account: &AccountId, amount: Money| currency_of(account).format(amount);
    let idempotency_key = |key: &Option<book::Idempotency>| key.as_ref().map(|key| key.key.clone());
    match command {
        Command::OpenAccount { currency } => AuditCommand::OpenAccount { currency: currency.to_string() },
        Command::RegisterPlayer { username, password_hash: _, date_of_birth, country, currency } => {
            AuditCommand::RegisterPlayer {
                username: username.clone(),
                date_of_birth: date_of_birth.to_string(),
                country: country.clone(),
                currency: currency.to_string(),
            }
        }
        Command::CreateApiKey { name, key_hash: _, scopes: bits } => AuditCommand::CreateApiKey {
            name: name.clone(),
            scopes: scopes::NAMES
                .iter()
                .filter(|(_, bit)| bits & bit != 0)
                .map(|(scope, _)| (*scope).to_string())
                .collect(),
        },
        Command::RevokeApiKey { key } => AuditCommand::RevokeApiKey { api_key_id: key.to_string() },
        Command::CreateStaff { username, password_hash: _, totp_secret: _, roles: bits } => AuditCommand::CreateStaff {
            username: username.clone(),
            roles: book::roles::NAMES
                .iter()
                .filter(|(_, bit)| bits & bit != 0)
                .map(|(role, _)| (*role).to_string())
                .collect(),
        },
        Command::DisableStaff { staff } => AuditCommand::DisableStaff { staff_id: staff.to_string() },
        Command::SetStaffRoles { staff, roles: bits } => AuditCommand::SetStaffRoles {
            staff_id: staff.to_string(),
            roles: book::roles::NAMES
                .iter()
                .filter(|(_, bit)| bits & bit != 0)
                .map(|(role, _)| (*role).to_string())
                .collect(),
        },
        Command::RequestAdjustment { account, amount, direction, reason, staff, idempotency } => {
            AuditCommand::RequestAdjustment {
                account_id: account.to_string(),
                amount: money(account, *amount),
                direction: direction.name().to_string(),
                reason: reason.clone(),
                requested_by: staff.to_string(),
                idempotency_key: idempotency_key(idempotency),
            }
        }
        Command::ApproveAdjustment { adjustment, account, staff } => AuditCommand::ApproveAdjustment {
            adjustment_id: adjustment.to_string(),
            account_id: account.to_string(),
            approved_by: staff.to_string(),
        },
        Command::RejectAdjustment { adjustment, account, staff, reason } => AuditCommand::RejectAdjustment {
            adjustment_id: adjustment.to_string(),
            account_id: account.to_string(),
            rejected_by: staff.to_string(),
            reason: reason.clone(),
        },
        Command::SetAdjustmentLimits { limits } => AuditCommand::SetAdjustmentLimits {
            limits: book::roles::NAMES
                .iter()
                .zip(limits.0)
                .filter_map(|((role, _), limit)| match limit {
                    book::AdjustmentLimit::Forbidden => None,
                    book::AdjustmentLimit::UpTo(amount) => Some(((*role).to_string(), Some(amount.minor()))),
                    book::AdjustmentLimit::Unlimited => Some(((*role).to_string(), None)),
                })
                .collect(),
        },
        Command::Deposit { account, amount, payment_ref, idempotency } => AuditCommand::Deposit {
            account_id: account.to_string(),
            amount: money(account, *amount),
            payment_ref: payment_ref.clone(),
            idempotency_key: idempotency_key(idempotency),
        },
        Command::BeginDeposit { account, amount, payment_ref, idempotency } => AuditCommand::BeginDeposit {
            account_id: account.to_string(),
            amount: money(account, *amount),
            payment_ref: payment_ref.clone(),
            idempotency_key: idempotency_key(idempotency),
        },
        Command::SettleDeposit { account, deposit, outcome } => AuditCommand::SettleDeposit {
            account_id: account.to_string(),
            deposit_id: deposit.to_string(),
            outcome: outcome.name().to_string(),
        },
        Command::ApproveWithdrawal { account, withdrawal } => {
            AuditCommand::ApproveWithdrawal { account_id: account.to_string(), withdrawal_id: withdrawal.to_string() }
        }
        Command::RefuseWithdrawal { account, withdrawal } => {
            AuditCommand::RefuseWithdrawal { account_id: account.to_string(), withdrawal_id: withdrawal.to_string() }
        }
        Command::SetKycRules { account, rules } => AuditCommand::SetKycRules {
            account_id: account.to_string(),
            deposit_cap: rules.deposit_cap.map(|cap| money(account, cap)),
            reverify_above: rules.reverify_above.map(|threshold| money(account, threshold)),
            expiry_seconds: rules.expiry_ms.map(|ms| ms / 1_000),
        },
        Command::SetKycState { account, state, reference } => AuditCommand::SetKycState {
            account_id: account.to_string(),
            state: state.name().to_string(),
            reference: reference.clone(),
        },
        Command::SetRealityCheck { account, interval_minutes } => {
            AuditCommand::SetRealityCheck { account_id: account.to_string(), interval_minutes: *interval_minutes }
        }
        Command::StartSession { account } => AuditCommand::StartSession { account_id: account.to_string() },
        Command::AcknowledgeRealityCheck { account } => {
            AuditCommand::AcknowledgeRealityCheck { account_id: account.to_string() }
        }
        Command::SetPersonalDetails { account, details } => {
            let names = ["first_name", "last_name", "email", "postcode", "address"];
            let fields = names
                .into_iter()
                .zip(details.fields())
                .filter(|(_, value)| value.is_some())
                .map(|(name, _)| name.to_string())
                .collect();
            AuditCommand::SetPersonalDetails { account_id: account.to_string(), fields }
        }
        Command::Withdraw { account, amount, idempotency } => AuditCommand::Withdraw {
            account_id: account.to_string(),
            amount: money(account, *amount),
            idempotency_key: idempotency_key(idempotency),
        },
        Command::CompleteWithdrawal { account, withdrawal, paid } => AuditCommand::CompleteWithdrawal {
            account_id: account.to_string(),
            withdrawal_id: withdrawal.to_string(),
            paid: *paid,
        },
        Command::SetLimits { account, changes } => AuditCommand::SetLimits {
            account_id: account.to_string(),
            changes: changes
                .iter()
                .map(|change| AuditLimitChange {
                    kind: change.kind.as_str().to_string(),
                    period: change.period.as_str().to_string(),
                    value: change.value.map(|value| money(account, value)),
                })
                .collect(),
        },
        Command::TimeOut { account, hours } => AuditCommand::TimeOut { account_id: account.to_string(), hours: *hours },
        Command::SelfExclude { account, days } => {
            AuditCommand::SelfExclude { account_id: account.to_string(), days: *days }
        }
        Command::SetAccountRisk { account, stake_factor, frozen } => AuditCommand::SetAccountRisk {
            account_id: account.to_string(),
            stake_factor: stake_factor.map(|factor| factor.to_string()),
            frozen: *frozen,
        },
        Command::CreateEvent { name, sport, competition, starts_at } => AuditCommand::CreateEvent {
            name: name.clone(),
            sport: sport.clone(),
            competition: competition.clone(),
            starts_at: format_rfc3339(*starts_at),
        },
        Command::CreateMarket { event, name, kind, selections, each_way } => AuditCommand::CreateMarket {
            event_id: event.to_string(),
            name: name.clone(),
            kind: kind.clone(),
            selections: selections
                .iter()
                .map(|selection| AuditNewSelection { name: selection.name.clone(), price: selection.price.decimal() })
                .collect(),
            each_way: each_way.map(|terms| EachWayView { places: terms.places, fraction: terms.fraction.to_string() }),
        },
        Command::SetPrices { market, prices } => AuditCommand::SetPrices {
            market_id: market.to_string(),
            prices: prices
                .iter()
                .map(|(selection, price)| AuditPrice { selection_id: selection.to_string(), price: price.decimal() })
                .collect(),
        },
        Command::SetMarketStatus { market, action } => AuditCommand::SetMarketStatus {
            market_id: market.to_string(),
            action: match action {
                MarketAction::Suspend => "suspend",
                MarketAction::Resume => "resume",
                MarketAction::Close => "close",
            }
            .to_string(),
        },
        Command::SetInPlay { event, bet_delay_seconds } => {
            AuditCommand::SetInPlay { event_id: event.to_string(), bet_delay_seconds: *bet_delay_seconds }
        }
        Command::EndEvent { event } => AuditCommand::EndEvent { event_id: event.to_string() },
        Command::SetMarketRisk { market, change } => {
            // Risk settings are in the base currency, fixed since the first market existed.
            let eur = |setting: Option<Option<Money>>| {
                setting.map(|value| value.map(|amount| currencies.base.format(amount)))
            };
            AuditCommand::SetMarketRisk {
                market_id: market.to_string(),
                change: AuditMarketRiskChange {
                    max_stake: eur(change.max_stake),
                    liability_cap: eur(change.liability_cap),
                    selection_liability_cap: eur(change.selection_liability_cap),
                    suspend_at_liability: eur(change.suspend_at_liability),
                    in_play_delay_seconds: change.in_play_delay_seconds,
                    max_payout: eur(change.max_payout),
                },
            }
        }
        Command::PlaceBet(place) => {
            let (bet_type, system) = match place.kind {
                BetKind::Single => ("single", None),
                BetKind::Multiple => ("multiple", None),
                BetKind::System(system) => ("system", Some(system.as_str().to_string())),
            };
            AuditCommand::PlaceBet {
                account_id: place.account.to_string(),
                bet_type: bet_type.to_string(),
                system,
                each_way: place.each_way,
                legs: place
                    .legs
                    .iter()
                    .map(|leg| AuditPrice { selection_id: leg.selection.to_string(), price: leg.price.decimal() })
                    .collect(),
                stake: money(&place.account, place.stake),
                accept_price_changes: place.policy.as_str().to_string(),
                idempotency_key: idempotency_key(&place.idempotency),
            }
        }
        Command::QuoteCashout { account, bet } => {
            AuditCommand::QuoteCashout { account_id: account.to_string(), bet_id: bet.to_string() }
        }
        Command::AcceptCashout { account, bet, quote, idempotency } => AuditCommand::AcceptCashout {
            account_id: account.to_string(),
            bet_id: bet.to_string(),
            quote_id: quote.to_string(),
            idempotency_key: idempotency_key(idempotency),
        },
        Command::SettleMarket { market, results } => AuditCommand::SettleMarket {
            market_id: market.to_string(),
            results: results
                .iter()
                .map(|result| AuditResult {
                    selection_id: result.selection.to_string(),
                    outcome: result.outcome.as_str().to_string(),
                    dead_heat_factor: result.dead_heat.map(|factor| factor.to_string()),
                    void_factor: result.void_factor.map(|factor| factor.to_string()),
                })
                .collect(),
        },
        Command::UnsettleMarket { market } => AuditCommand::UnsettleMarket { market_id: market.to_string() },
        Command::VoidMarket { market } => AuditCommand::VoidMarket { market_id: market.to_string() },
        Command::Tick => AuditCommand::Tick,
        Command::Feed(message) => AuditCommand::Feed {
            message: serde_json::to_value(::feed::json::JsonMessage::from_book(message)).unwrap_or_default(),
        },
        Command::SetTradingMode { pre_match_only, cached_odds } => {
            AuditCommand::SetTradingMode { pre_match_only: *pre_match_only, cached_odds: *cached_odds }
        }
        Command::SetMarketThrottle { market, bets_per_second } => {
            AuditCommand::SetMarketThrottle { market_id: market.to_string(), bets_per_second: *bets_per_second }
        }
        Command::SetResettlementWindow { window_ms } => AuditCommand::SetResettlementWindow { window_ms: *window_ms },
        Command::SetIdempotencyWindow { window_ms } => AuditCommand::SetIdempotencyWindow { window_ms: *window_ms },
        Command::SetMonitoringRules { rules } => AuditCommand::SetMonitoringRules {
            rules: Box::new(crate::monitoring::MonitoringRulesBody::from_rules(rules, currencies.base)),
        },
        Command::CaseAction(request) => AuditCommand::CaseAction {
            case_id: request.case.to_string(),
            action: request.action.as_str().to_string(),
            note: request.note.clone(),
            reference: request.reference.clone(),
        },
        Command::NoteShared { account, key } => AuditCommand::NoteShared {
            account_id: account.to_string(),
            key: match key {
                book::SharedKey::Instrument(_) => "instrument",
                book::SharedKey::Address(_) => "address",
            }
            .to_string(),
        },
        Command::SetFxRates { base, rates } => AuditCommand::SetFxRates {
            base: base.to_string(),
            rates: rates.iter().map(|(currency, rate)| (currency.to_string(), rate.to_string())).collect(),
        },
        Command::FeedHealth { provider, stale } => AuditCommand::FeedHealth {
            provider: provider.clone(),
            stale: stale.map(|mode| {
                match mode {
                    book::StaleMode::Suspend => "suspend",
                    book::StaleMode::Delay => "delay",
                }
                .to_string()
            }),
        },
    }
}

/// Walks the journal from position 0 up to the live head's position, recomputing the chain.
/// Records are read a page at a time on the sequencer and hashed on the blocking pool.
async fn verify(state: &AppState) -> Result<AuditVerificationView, ApiError> {
    let (expected, end) = chain_head(state).await?;
    let mut head = CHAIN_HEAD_GENESIS;
    let mut position: Position = 0;
    let mut reason = None;
    while position < end && reason.is_none() {
        let records = match journal_page(state, position, AUDIT_PAGE_RECORDS_MAX).await? {
            Ok(records) => records,
            Err(EngineError::Journal(JournalError::Corrupt { position, .. })) => {
                reason = Some(format!("the journal record at position {position} is corrupt"));
                break;
            }
            Err(EngineError::Journal(JournalError::Pruned { first_available, .. })) => {
                reason = Some(format!("the journal records before position {first_available} were removed"));
                break;
            }
            Err(other) => return Err(other.into()),
        };
        let before = position;
        (head, position) = blocking(move || extend_chain(head, position, end, &records)).await?;
        if position == before {
            reason = Some(format!("the journal has no record at position {position}"));
        }
    }
    if reason.is_none() && head != expected {
        reason = Some("the head recomputed from the journal differs from the engine's".to_string());
    }
    Ok(AuditVerificationView {
        verified: reason.is_none(),
        records: position,
        head: hex::encode(head),
        expected_head: hex::encode(expected),
        reason,
    })
}

/// Extends `head` by the records at `position`, `position + 1`, ... below `end`; stops at a gap.
fn extend_chain(
    mut head: ChainHead,
    mut position: Position,
    end: Position,
    records: &[(Position, Vec<u8>)],
) -> (ChainHead, Position) {
    for (at, record) in records {
        if *at != position || *at >= end {
            break;
        }
        head = engine::chain_next(&head, *at, record);
        position += 1;
    }
    (head, position)
}

// ---- reports ----------------------------------------------------------------------------------

/// The reports `GET /v1/admin/reports/{name}` knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, utoipa::ToSchema)]
#[schema(rename_all = "kebab-case")]
pub enum ReportName {
    Turnover,
    Ggr,
    Liabilities,
    RgEvents,
}

impl ReportName {
    pub const ALL: [ReportName; 4] =
        [ReportName::Turnover, ReportName::Ggr, ReportName::Liabilities, ReportName::RgEvents];

    pub fn as_str(self) -> &'static str {
        match self {
            ReportName::Turnover => "turnover",
            ReportName::Ggr => "ggr",
            ReportName::Liabilities => "liabilities",
            ReportName::RgEvents => "rg-events",
        }
    }
}

/// `?from=&to=&limit=&cursor=`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ReportQuery {
    /// Start of the window on book time, inclusive (RFC 3339 UTC); the beginning when absent.
    /// Not for `liabilities`, which are as of now.
    #[param(example = "2026-11-01T00:00:00Z")]
    pub from: Option<String>,
    /// End of the window, exclusive; now when absent. Not for `liabilities`.
    #[param(example = "2026-12-01T00:00:00Z")]
    pub to: Option<String>,
    /// `liabilities` and `rg-events` only: items per page, 1 to 200 (50 when absent).
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<usize>,
    /// `liabilities` and `rg-events` only: `next_cursor` of the previous page.
    pub cursor: Option<String>,
    /// `json` (the default) or `csv` (`text/csv`, CRLF lines, a header row; the first column,
    /// `line`, names what a row is, other columns a row lacks are empty; amounts are decimal
    /// strings in the row's `currency`). `turnover`: `line,currency,bets_placed,stakes_placed,
    /// bets_settled,stakes_settled`; `ggr`: `line,currency,stakes_settled,payouts,cashouts,
    /// gross_gaming_revenue,payouts_reversed,recognised_as_debt,stakes_reversed,adjustment,
    /// net_gaming_revenue`; both a `currency` row per currency, then `base_total` or, when it is
    /// null, a `missing_rate` row per currency without a rate. `liabilities`: `line,currency,
    /// bets,stakes,liability,market_id,event_id,selection_id,cursor` with `open_bets`,
    /// `total_liability`, `total_liability_by_currency`, then per market `market`,
    /// `market_by_currency`, and per selection `selection`, `selection_by_currency` rows.
    /// `rg-events`: `line,account_id,currency,frozen,self_excluded_until,timed_out_until,kind,
    /// period,value,pending_value,effective_at,position,recorded_at,sequence,type,hours,days,
    /// stake_factor,cursor` with an `account` row and its `limit` rows per account, then an
    /// `event` row per command (one per limit change of a `set_limits`). A paginated report's
    /// CSV is one page, like its JSON, and ends with a `next_cursor` row (`cursor`) when there
    /// is another.
    #[param(example = "csv")]
    pub format: Option<String>,
}

/// A report, by `report`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(tag = "report")]
pub enum ReportView {
    #[serde(rename = "turnover")]
    Turnover(TurnoverReport),
    #[serde(rename = "ggr")]
    Ggr(GgrReport),
    #[serde(rename = "liabilities")]
    Liabilities(LiabilitiesReport),
    #[serde(rename = "rg-events")]
    RgEvents(RgEventsReport),
}

/// Bets placed and settled in the window, by currency.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct TurnoverReport {
    /// The window's start as given; null: the beginning.
    #[schema(required = true)]
    pub from: Option<String>,
    /// The window's end as given; null: now.
    #[schema(required = true)]
    pub to: Option<String>,
    /// Book time the report was computed at.
    pub as_of: String,
    /// Currencies with any bet placed or settled in the window, by code.
    pub currencies: Vec<TurnoverView>,
    /// The same totals over every currency, in the base currency (`currency` is the base): each
    /// bet's stake converted with the rate recorded on the bet at placement, rounded up to the
    /// base's minor unit, then summed. Null when `missing_rates` lists a currency.
    #[schema(required = true)]
    pub base_total: Option<TurnoverView>,
    /// Currencies whose money could not be converted into the base currency (no rate); empty
    /// unless a rate is missing.
    pub missing_rates: Vec<String>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct TurnoverView {
    #[schema(example = "EUR")]
    pub currency: String,
    /// Bets placed in the window and accepted (not those refused or still in an in-play delay).
    pub bets_placed: u64,
    /// Their total stakes.
    pub stakes_placed: String,
    /// Settlements in the window (by result, void or cash-out) less the settlements reversed in
    /// it: a bet settled, unsettled and settled again counts once.
    pub bets_settled: i64,
    /// Their stakes, on the same terms.
    pub stakes_settled: String,
}

/// Gross gaming revenue of the settlements in the window, by currency, with the reversals of
/// earlier settlements (resettlements) apart.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct GgrReport {
    #[schema(required = true)]
    pub from: Option<String>,
    #[schema(required = true)]
    pub to: Option<String>,
    pub as_of: String,
    /// Currencies with any settlement or reversal in the window, by code.
    pub currencies: Vec<GgrView>,
    /// The same over every currency, in the base currency (`currency` is the base): each
    /// settlement, payout and reversal converted with the rate recorded on its bet at placement,
    /// rounded up to the base's minor unit, then summed; revenue and the adjustment are computed
    /// from those sums. Null when `missing_rates` lists a currency.
    #[schema(required = true)]
    pub base_total: Option<GgrView>,
    /// Currencies whose money could not be converted into the base currency (no rate); empty
    /// unless a rate is missing.
    pub missing_rates: Vec<String>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct GgrView {
    #[schema(example = "EUR")]
    pub currency: String,
    /// Stakes of the bets settled in the window (by result, void or cash-out); a bet settled
    /// again after a reversal counts again.
    pub stakes_settled: String,
    /// Paid at those settlements, cash-outs and void refunds included.
    pub payouts: String,
    /// The part of `payouts` paid by cash-out.
    pub cashouts: String,
    /// `stakes_settled - payouts`.
    pub gross_gaming_revenue: String,
    pub resettlements: ResettlementView,
    /// `gross_gaming_revenue + resettlements.adjustment`.
    pub net_gaming_revenue: String,
}

/// Settlements reversed in the window (the resettled wager adjustment).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ResettlementView {
    /// Payouts taken back from the players.
    pub payouts_reversed: String,
    /// The part of `payouts_reversed` the players' cash no longer covered, now owed as debt.
    pub recognised_as_debt: String,
    /// Settled stakes given back to be held again on the reopened bets.
    pub stakes_reversed: String,
    /// `payouts_reversed - stakes_reversed`: what the reversals add to revenue.
    pub adjustment: String,
}

/// Open exposure now: liability per market and the open stakes.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct LiabilitiesReport {
    pub as_of: String,
    /// Open bets (accepted, or waiting out an in-play delay) and their stakes, by currency, over
    /// the whole book.
    pub open_bets: Vec<OpenBetsView>,
    /// Sum of every market's worst-case liability over the whole book, in the base currency like
    /// the exposure; a multiple counts in each market it has a leg in.
    pub total_liability: String,
    /// The base currency of `total_liability`.
    #[schema(example = "EUR")]
    pub currency: String,
    /// Per bettor currency, the sum over markets of each market's worst case in that currency.
    pub total_liability_by_currency: Vec<CurrencyAmountView>,
    /// Markets with a liability, in id order (a page of them).
    pub items: Vec<MarketExposureView>,
    #[schema(required = true)]
    pub next_cursor: Option<String>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct OpenBetsView {
    #[schema(example = "EUR")]
    pub currency: String,
    pub bets: u64,
    pub stakes: String,
}

/// Responsible-gambling facts: accounts with measures in force now, then the commands in the
/// window. Walk `next_cursor` to the end: the first pages list accounts, later ones events.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RgEventsReport {
    #[schema(required = true)]
    pub from: Option<String>,
    #[schema(required = true)]
    pub to: Option<String>,
    pub as_of: String,
    /// What the two lists can and cannot say.
    pub note: String,
    /// Accounts with a measure in force now, in id order.
    pub accounts: Vec<RgAccountView>,
    /// Responsible-gambling commands decided in the window, oldest first. A page ends on a
    /// whole batch, so it may hold a few more than `limit`.
    pub events: Vec<RgEventView>,
    #[schema(required = true)]
    pub next_cursor: Option<String>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RgAccountView {
    pub account_id: String,
    /// The account's currency (the CSV's `currency` column; the JSON has none).
    #[serde(skip)]
    pub currency: String,
    pub frozen: bool,
    #[schema(required = true)]
    pub self_excluded_until: Option<String>,
    #[schema(required = true)]
    pub timed_out_until: Option<String>,
    /// Limits set or waiting out a cooling-off.
    pub limits: Vec<RgLimitView>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RgLimitView {
    /// `deposit`, `loss` or `stake`.
    pub kind: String,
    /// `day`, `week` or `month`.
    pub period: String,
    /// In force now; null: none.
    #[schema(required = true)]
    pub value: Option<String>,
    /// A raised or removed limit waiting out its cooling-off.
    #[schema(required = true)]
    pub pending: Option<PendingLimitView>,
}

/// A `set_limits`, `time_out`, `self_exclude` or `set_account_risk` command from the journal.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RgEventView {
    /// The journal position of its batch.
    pub position: u64,
    /// Book time it was decided at.
    pub recorded_at: String,
    /// The account's currency (the CSV's `currency` column; the JSON has none).
    #[serde(skip)]
    pub currency: Option<String>,
    #[serde(flatten)]
    pub command: AuditCommandView,
}

/// `GET /v1/admin/reports/{name}` (compliance).
#[utoipa::path(
    get,
    path = "/v1/admin/reports/{name}",
    tag = "operators",
    summary = "Regulator report",
    description = "`turnover`: bets placed (accepted) and settled in the window, by currency. `ggr`: stakes settled \
        in the window less their payouts (cash-outs included), by currency, with reversals of settlements \
        (resettlements) apart and the net. `liabilities`: open exposure per market now and the open stakes \
        (paginated; no window). `rg-events`: accounts with responsible-gambling measures in force now, then the \
        responsible-gambling commands of the window from the audit view (paginated). Turnover, GGR and rg-events \
        read the read models once they hold every write acknowledged before the request (at most 2 s, then 503 \
        `unavailable`). The window is on book time: `from` \
        inclusive, `to` exclusive. Money is exact, in the currency named. `turnover` and `ggr` add `base_total`, the \
        same figures over every currency in the base currency: each bet's money is converted with the rate recorded on \
        the bet when it was placed (not today's table), one amount at a time, rounded up to the base currency's minor \
        unit, then summed. A currency that cannot be converted (no rate) is listed in `missing_rates` and \
        `base_total` is null. Scope: `compliance`.",
    security(("bearer" = [])),
    params(("name" = ReportName, Path, description = "The report", example = "turnover"), ReportQuery),
    responses(
        (status = 200, description = "The report, its kind in `report`; with `?format=csv` the same figures as \
            `text/csv` (the columns of each report are under the `format` parameter)",
            content((ReportView = "application/json"), (String = "text/csv"))),
        (status = 400, description = "Bad `from`, `to`, `limit`, `cursor` or `format`, `from` after `to`, a parameter \
            the report does not take, or an unknown parameter (`invalid_request`)", body = ApiError),
        (status = 401, description = "No valid credential (`unauthenticated`)", body = ApiError),
        (status = 403, description = "Not an API key with the scope (`forbidden`)", body = ApiError),
        (status = 404, description = "No such report (`not_found`)", body = ApiError),
    ),
)]
pub(crate) async fn report(
    principal: Principal,
    State(state): State<AppState>,
    headers: HeaderMap,
    path: Result<Path<String>, PathRejection>,
    query: Result<Query<ReportQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    principal.require_scope(scopes::COMPLIANCE)?;
    let Path(name) = path.map_err(|_| ApiError::not_found("report"))?;
    let name = ReportName::ALL
        .into_iter()
        .find(|known| known.as_str() == name)
        .ok_or_else(|| ApiError::not_found("report"))?;
    let Query(query) = query.map_err(|rejection| ApiError::invalid(rejection.body_text()))?;
    let window = Window::parse(&query)?;
    let paginated = matches!(name, ReportName::Liabilities | ReportName::RgEvents);
    if !paginated && (query.limit.is_some() || query.cursor.is_some()) {
        return Err(ApiError::invalid(format!("the {} report takes no limit or cursor", name.as_str())));
    }
    let csv = match query.format.as_deref() {
        None | Some("json") => false,
        Some("csv") => true,
        Some(_) => return Err(ApiError::invalid("format: json or csv").with("field", "format")),
    };
    let page = PageQuery { limit: query.limit, cursor: query.cursor };
    let view = match name {
        ReportName::Turnover => {
            ReportView::Turnover(turnover(&state, &state.read_models(&headers).await?, window).await?)
        }
        ReportName::Ggr => ReportView::Ggr(ggr(&state, &state.read_models(&headers).await?, window).await?),
        ReportName::Liabilities => {
            if query.from.is_some() || query.to.is_some() {
                return Err(ApiError::invalid("liabilities are as of now: from and to do not apply"));
            }
            ReportView::Liabilities(liabilities(&state, &page).await?)
        }
        ReportName::RgEvents => {
            ReportView::RgEvents(rg_events(&state, &state.read_models(&headers).await?, window, &page).await?)
        }
    };
    match view {
        ReportView::Turnover(report) if csv => Ok(csv_response("turnover", &turnover_csv(&report))),
        ReportView::Ggr(report) if csv => Ok(csv_response("ggr", &ggr_csv(&report))),
        ReportView::Liabilities(report) if csv => Ok(csv_response("liabilities", &liabilities_csv(&report))),
        ReportView::RgEvents(report) if csv => Ok(csv_response("rg-events", &rg_events_csv(&report))),
        view => Ok(Json(view).into_response()),
    }
}

pub(crate) fn csv_response(name: &str, body: &str) -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_string()),
            (header::CONTENT_DISPOSITION, format!("attachment; filename=\"{name}.csv\"")),
        ],
        body.to_string(),
    )
        .into_response()
}

/// Rows of `line,currency,...`: the currencies, then the base total or the missing rates. Every
/// field is a currency code, a count or a decimal amount, so nothing needs quoting.
fn csv_rows(
    header: &[&str],
    currencies: impl Iterator<Item = Vec<String>>,
    base_total: Option<Vec<String>>,
    missing_rates: &[String],
) -> String {
    let mut out = format!("line,{}\r\n", header.join(","));
    let mut row = |line: &str, fields: Vec<String>| {
        out.push_str(line);
        for field in fields {
            out.push(',');
            out.push_str(&field);
        }
        out.push_str("\r\n");
    };
    for fields in currencies {
        row("currency", fields);
    }
    match base_total {
        Some(fields) => row("base_total", fields),
        None => {
            for currency in missing_rates {
                let mut fields = vec![currency.clone()];
                fields.resize(header.len(), String::new());
                row("missing_rate", fields);
            }
        }
    }
    out
}

const TURNOVER_CSV_HEADER: [&str; 5] = ["currency", "bets_placed", "stakes_placed", "bets_settled", "stakes_settled"];

fn turnover_csv(report: &TurnoverReport) -> String {
    let fields = |line: &TurnoverView| {
        vec![
            line.currency.clone(),
            line.bets_placed.to_string(),
            line.stakes_placed.clone(),
            line.bets_settled.to_string(),
            line.stakes_settled.clone(),
        ]
    };
    csv_rows(
        &TURNOVER_CSV_HEADER,
        report.currencies.iter().map(fields),
        report.base_total.as_ref().map(fields),
        &report.missing_rates,
    )
}

const GGR_CSV_HEADER: [&str; 10] = [
    "currency",
    "stakes_settled",
    "payouts",
    "cashouts",
    "gross_gaming_revenue",
    "payouts_reversed",
    "recognised_as_debt",
    "stakes_reversed",
    "adjustment",
    "net_gaming_revenue",
];

fn ggr_csv(report: &GgrReport) -> String {
    let fields = |line: &GgrView| {
        vec![
            line.currency.clone(),
            line.stakes_settled.clone(),
            line.payouts.clone(),
            line.cashouts.clone(),
            line.gross_gaming_revenue.clone(),
            line.resettlements.payouts_reversed.clone(),
            line.resettlements.recognised_as_debt.clone(),
            line.resettlements.stakes_reversed.clone(),
            line.resettlements.adjustment.clone(),
            line.net_gaming_revenue.clone(),
        ]
    };
    csv_rows(
        &GGR_CSV_HEADER,
        report.currencies.iter().map(fields),
        report.base_total.as_ref().map(fields),
        &report.missing_rates,
    )
}

/// CSV rows under a fixed header whose first column, `line`, names what a row is; a row
/// fills the columns it has by name and leaves the others empty.
struct CsvTable {
    header: &'static [&'static str],
    out: String,
}

impl CsvTable {
    fn new(header: &'static [&'static str]) -> CsvTable {
        CsvTable { header, out: format!("{}\r\n", header.join(",")) }
    }

    /// A row of `line` with `fields` by column name (a name not in the header is left out:
    /// the tests of each report show every column filled).
    fn row(&mut self, line: &str, fields: &[(&str, &str)]) {
        let mut cells = vec![""; self.header.len()];
        cells[0] = line;
        for (name, value) in fields {
            if let Some(index) = self.header.iter().position(|column| column == name) {
                cells[index] = value;
            }
        }
        for (index, cell) in cells.iter().enumerate() {
            if index > 0 {
                self.out.push(',');
            }
            csv_field(&mut self.out, cell);
        }
        self.out.push_str("\r\n");
    }

    fn finish(self) -> String {
        self.out
    }
}

/// A field, quoted (RFC 4180) only when it holds a comma, a quote or a line break: amounts,
/// ids, codes and times never do.
pub(crate) fn csv_field(out: &mut String, field: &str) {
    if field.contains([',', '"', '\r', '\n']) {
        out.push('"');
        out.push_str(&field.replace('"', "\"\""));
        out.push('"');
    } else {
        out.push_str(field);
    }
}

/// The columns of `liabilities` as CSV.
pub const LIABILITIES_CSV_HEADER: [&str; 9] =
    ["line", "currency", "bets", "stakes", "liability", "market_id", "event_id", "selection_id", "cursor"];

/// `liabilities` as CSV: `open_bets` rows (currency, bets, stakes), a `total_liability` row (the
/// base currency), `total_liability_by_currency` rows, then per market of the page a `market`
/// row (base liability), its `market_by_currency` rows, and per selection a `selection` row and
/// its `selection_by_currency` rows; last, when there is a next page, a `next_cursor` row.
fn liabilities_csv(report: &LiabilitiesReport) -> String {
    let mut table = CsvTable::new(&LIABILITIES_CSV_HEADER);
    for open in &report.open_bets {
        let bets = open.bets.to_string();
        table.row("open_bets", &[("currency", &open.currency), ("bets", &bets), ("stakes", &open.stakes)]);
    }
    table.row("total_liability", &[("currency", &report.currency), ("liability", &report.total_liability)]);
    for amount in &report.total_liability_by_currency {
        table.row("total_liability_by_currency", &[("currency", &amount.currency), ("liability", &amount.liability)]);
    }
    for market in &report.items {
        let ids = [("market_id", market.market_id.as_str()), ("event_id", market.event_id.as_str())];
        let row = |currency: &str, liability: &str, selection: &str| {
            let mut fields = vec![("currency", currency), ("liability", liability)];
            fields.extend(ids);
            if !selection.is_empty() {
                fields.push(("selection_id", selection));
            }
            fields.into_iter().map(|(name, value)| (name, value.to_string())).collect::<Vec<_>>()
        };
        let mut put = |line: &str, fields: Vec<(&str, String)>| {
            let fields: Vec<(&str, &str)> = fields.iter().map(|(name, value)| (*name, value.as_str())).collect();
            table.row(line, &fields);
        };
        put("market", row(&market.currency, &market.liability, ""));
        for amount in &market.by_currency {
            put("market_by_currency", row(&amount.currency, &amount.liability, ""));
        }
        for selection in &market.selections {
            put("selection", row(&selection.currency, &selection.liability, &selection.selection_id));
            for amount in &selection.by_currency {
                put("selection_by_currency", row(&amount.currency, &amount.liability, &selection.selection_id));
            }
        }
    }
    if let Some(cursor) = &report.next_cursor {
        table.row("next_cursor", &[("cursor", cursor)]);
    }
    table.finish()
}

/// The columns of `rg-events` as CSV.
pub const RG_EVENTS_CSV_HEADER: [&str; 19] = [
    "line",
    "account_id",
    "currency",
    "frozen",
    "self_excluded_until",
    "timed_out_until",
    "kind",
    "period",
    "value",
    "pending_value",
    "effective_at",
    "position",
    "recorded_at",
    "sequence",
    "type",
    "hours",
    "days",
    "stake_factor",
    "cursor",
];

/// `rg-events` as CSV: per account with a measure in force an `account` row (frozen, the ends
/// of a self-exclusion or time-out) and a `limit` row per limit (value in force, a pending
/// value and when it takes effect); then an `event` row per command (position, recorded_at,
/// sequence, type and its figures: a `set_limits` gives a row per change, `value` empty when
/// removed); last, when there is a next page, a `next_cursor` row.
fn rg_events_csv(report: &RgEventsReport) -> String {
    let mut table = CsvTable::new(&RG_EVENTS_CSV_HEADER);
    let flag = |value: bool| if value { "true" } else { "false" };
    for account in &report.accounts {
        let id = [("account_id", account.account_id.as_str()), ("currency", account.currency.as_str())];
        let mut fields = id.to_vec();
        fields.push(("frozen", flag(account.frozen)));
        fields.push(("self_excluded_until", account.self_excluded_until.as_deref().unwrap_or("")));
        fields.push(("timed_out_until", account.timed_out_until.as_deref().unwrap_or("")));
        table.row("account", &fields);
        for limit in &account.limits {
            let mut fields = id.to_vec();
            fields.extend([
                ("kind", limit.kind.as_str()),
                ("period", limit.period.as_str()),
                ("value", limit.value.as_deref().unwrap_or("")),
            ]);
            if let Some(pending) = &limit.pending {
                fields.push(("pending_value", pending.value.as_deref().unwrap_or("")));
                fields.push(("effective_at", &pending.effective_at));
            }
            table.row("limit", &fields);
        }
    }
    for event in &report.events {
        let position = event.position.to_string();
        let sequence = event.command.sequence.to_string();
        let common = [
            ("currency", event.currency.as_deref().unwrap_or("")),
            ("position", position.as_str()),
            ("recorded_at", event.recorded_at.as_str()),
            ("sequence", sequence.as_str()),
        ];
        let with = |account: &str, kind: &str, more: &[(&'static str, &str)]| {
            let mut fields: Vec<(&str, String)> =
                common.iter().map(|(name, value)| (*name, (*value).to_string())).collect();
            fields.push(("account_id", account.to_string()));
            fields.push(("type", kind.to_string()));
            fields.extend(more.iter().map(|(name, value)| (*name, (*value).to_string())));
            fields
        };
        let rows: Vec<Vec<(&str, String)>> = match &event.command.command {
            AuditCommand::SetLimits { account_id, changes } if !changes.is_empty() => changes
                .iter()
                .map(|change| {
                    with(
                        account_id,
                        "set_limits",
                        &[
                            ("kind", &change.kind),
                            ("period", &change.period),
                            ("value", change.value.as_deref().unwrap_or("")),
                        ],
                    )
                })
                .collect(),
            AuditCommand::SetLimits { account_id, .. } => vec![with(account_id, "set_limits", &[])],
            AuditCommand::TimeOut { account_id, hours } => {
                vec![with(account_id, "time_out", &[("hours", &hours.to_string())])]
            }
            AuditCommand::SelfExclude { account_id, days } => {
                vec![with(account_id, "self_exclude", &[("days", &days.to_string())])]
            }
            AuditCommand::SetAccountRisk { account_id, stake_factor, frozen } => vec![with(
                account_id,
                "set_account_risk",
                &[("stake_factor", stake_factor.as_deref().unwrap_or("")), ("frozen", frozen.map_or("", flag))],
            )],
            // The report holds the four commands above only.
            other => {
                let kind = serde_json::to_value(other).ok().and_then(|value| value["type"].as_str().map(str::to_owned));
                vec![with("", kind.as_deref().unwrap_or(""), &[])]
            }
        };
        for fields in rows {
            let fields: Vec<(&str, &str)> = fields.iter().map(|(name, value)| (*name, value.as_str())).collect();
            table.row("event", &fields);
        }
    }
    if let Some(cursor) = &report.next_cursor {
        table.row("next_cursor", &[("cursor", cursor)]);
    }
    table.finish()
}

/// A window on book time: `from` inclusive, `to` exclusive.
#[derive(Clone, Copy, Debug)]
struct Window {
    from: Option<Timestamp>,
    to: Option<Timestamp>,
}

impl Window {
    fn parse(query: &ReportQuery) -> Result<Window, ApiError> {
        let parse = |text: &Option<String>, field: &str| {
            text.as_deref()
                .map(|text| {
                    parse_rfc3339(text).ok_or_else(|| {
                        ApiError::invalid(format!("{field}: not an RFC 3339 UTC time such as 2026-11-25T20:00:00Z"))
                            .with("field", field)
                    })
                })
                .transpose()
        };
        let window = Window { from: parse(&query.from, "from")?, to: parse(&query.to, "to")? };
        if let (Some(from), Some(to)) = (window.from, window.to) {
            if from > to {
                return Err(ApiError::invalid("from is after to").with("field", "from"));
            }
        }
        Ok(window)
    }

    fn shown(self) -> (Option<String>, Option<String>) {
        (self.from.map(format_rfc3339), self.to.map(format_rfc3339))
    }
}

/// Minor units summed in `i128`: a sum of many `i64` amounts cannot overflow it.
type Minor = i128;

type ByCurrency<T> = BTreeMap<Currency, T>;

/// Shows a sum of minor units with the currency's decimal places, like `Currency::format`.
pub(crate) fn format_minor(currency: Currency, minor: Minor) -> String {
    // Sums of many amounts may pass the money maximum, where `Money` cannot hold them.
    let in_range = |minor: &i64| (-domain::MONEY_MINOR_MAX..=domain::MONEY_MINOR_MAX).contains(minor);
    if let Some(minor) = i64::try_from(minor).ok().filter(in_range) {
        return currency.format(Money::from_minor(minor));
    }
    let sign = if minor < 0 { "-" } else { "" };
    let magnitude = minor.unsigned_abs();
    let exponent = u32::from(currency.exponent());
    if exponent == 0 {
        return format!("{sign}{magnitude}");
    }
    let divisor = 10u128.pow(exponent);
    let width = exponent as usize;
    format!("{sign}{}.{:0width$}", magnitude / divisor, magnitude % divisor)
}

#[derive(Clone, Copy, Debug, Default)]
struct PlacedTotals {
    bets: u64,
    stakes: Minor,
}

/// What settlements moved in a window, from the ledger.
#[derive(Clone, Copy, Debug, Default)]
struct SettlementTotals {
    settlements: i64,
    stakes_settled: Minor,
    payouts: Minor,
    cashouts: Minor,
    reversals: i64,
    payouts_reversed: Minor,
    recognised_as_debt: Minor,
    stakes_reversed: Minor,
}

/// Totals by currency and, converted, in the base currency.
#[derive(Clone, Debug, Default)]
struct Totals<T> {
    by_currency: ByCurrency<T>,
    base: T,
    /// Currencies with money that could not be converted.
    missing_rates: BTreeSet<Currency>,
}

impl<T: Default> Totals<T> {
    /// Adds `count` rows of `currency` summing to `amount` to its line and, converted
    /// (`in_base`: the sum of each row converted, `None` when any could not be), to the base line.
    fn add(&mut self, currency: Currency, count: i64, amount: Minor, in_base: Option<Minor>, effect: Effect<T>) {
        effect(self.by_currency.entry(currency).or_default(), count, amount);
        match in_base {
            Some(in_base) => effect(&mut self.base, count, in_base),
            None => {
                self.missing_rates.insert(currency);
            }
        }
    }

    /// The base line, unless a currency could not be converted.
    fn base(&self) -> Option<&T> {
        self.missing_rates.is_empty().then_some(&self.base)
    }

    fn missing_rates(&self) -> Vec<String> {
        self.missing_rates.iter().map(Currency::to_string).collect()
    }
}

/// What a group of rows adds to a line: their count and the sum of their amounts.
type Effect<T> = fn(&mut T, i64, Minor);

/// One group of an aggregate over amounts converted into the base currency: `group` columns,
/// then `COUNT(*)`, the sum and count of the amount, the sum and count of the base amount.
struct Converted {
    currency: Currency,
    count: i64,
    amount: Minor,
    /// The base amounts' sum, when every row of the group has one in `base`.
    in_base: Option<Minor>,
}

/// Reads a group (`[currency, fx_base, …extra, count, amount sum, amount count, base sum,
/// base count]`) of an aggregate whose group starts with the currency and the rate's base.
fn converted(row: &[Value], extra: usize, base: Currency) -> Result<Converted, ProjectorError> {
    let bad = || ProjectorError::Store(format!("an unreadable report row {row:?}"));
    let currency = row.first().and_then(Value::text).and_then(|code| Currency::parse(code).ok()).ok_or_else(bad)?;
    let at = 2 + extra;
    let count = row.get(at).and_then(Value::int).ok_or_else(bad)?;
    let amount = sum_of(row.get(at + 1).ok_or_else(bad)?)?;
    let base_sum = sum_of(row.get(at + 3).ok_or_else(bad)?)?;
    let base_count = row.get(at + 4).and_then(Value::int).ok_or_else(bad)?;
    let same_base = row.get(1).and_then(Value::text) == Some(base.code());
    Ok(Converted { currency, count, amount, in_base: (same_base && base_count == count).then_some(base_sum) })
}

/// The window's filters on a time column.
fn window_filters(window: Window, column: &'static str) -> Vec<Filter> {
    let mut filters = Vec::new();
    if let Some(from) = window.from {
        filters.push(Filter::Ge(column, Value::Int(i64::try_from(from).unwrap_or(i64::MAX))));
    }
    if let Some(to) = window.to {
        filters.push(Filter::Lt(column, Value::Int(i64::try_from(to).unwrap_or(i64::MAX))));
    }
    filters
}

/// Bets placed in the window and accepted (at placement or when their in-play delay ended; a
/// refused bet never stood), by the currency of their account: from the `bets` model, each
/// stake converted with the rate recorded on the bet at placement (`base_stake`).
fn placed_totals(
    store: &mut dyn Store,
    window: Window,
    base: Currency,
) -> Result<Totals<PlacedTotals>, ProjectorError> {
    let mut filters = window_filters(window, "placed_at");
    filters.push(Filter::In("status", vec![Value::from("pending"), Value::from("rejected")], false));
    let rows = store.aggregate(&Aggregate {
        table: &BETS,
        filters,
        group: vec!["currency", "fx_base"],
        sums: vec!["total_stake", "base_stake"],
    })?;
    let mut totals = Totals::default();
    for row in rows {
        let group = converted(&row, 0, base)?;
        totals.add(
            group.currency,
            group.count,
            group.amount,
            group.in_base,
            |line: &mut PlacedTotals, count, stake| {
                line.bets += count as u64;
                line.stakes += stake;
            },
        );
    }
    Ok(totals)
}

/// What a group of transfers adds to the settlement totals, by code and status; `None`: it
/// moves no revenue. Settling posts the stake hold (`stake`, `posts` a pending transfer) and
/// pays the payout or the cash-out; a reversal takes the payout back (`payout_reversal` from
/// cash, `debt_recognised` for what cash no longer covers) and gives the stake back
/// (`stake_reversal`) before holding it again. Deposits, withdrawals, stake holds and their
/// releases move no revenue.
fn settlement_effect(code: &str, status: &str) -> Option<Effect<SettlementTotals>> {
    let posted = status == "posted";
    let effect: Effect<SettlementTotals> = match (code, status) {
        ("stake", "posts") => |totals, count, amount| {
            totals.settlements += count;
            totals.stakes_settled += amount;
        },
        ("payout", _) if posted => |totals, _, amount| totals.payouts += amount,
        ("cashout", _) if posted => |totals, _, amount| {
            totals.payouts += amount;
            totals.cashouts += amount;
        },
        ("payout_reversal", _) if posted => |totals, _, amount| totals.payouts_reversed += amount,
        ("debt_recognised", _) if posted => |totals, _, amount| {
            totals.payouts_reversed += amount;
            totals.recognised_as_debt += amount;
        },
        ("stake_reversal", _) if posted => |totals, count, amount| {
            totals.reversals += count;
            totals.stakes_reversed += amount;
        },
        _ => return None,
    };
    Some(effect)
}

/// Settlement money of the window from the `transfers` model (stamped with book time as they
/// were made), each amount converted with the rate recorded on its bet at placement
/// (`base_amount`).
fn settlement_totals(
    store: &mut dyn Store,
    window: Window,
    base: Currency,
) -> Result<Totals<SettlementTotals>, ProjectorError> {
    let mut filters = window_filters(window, "at");
    let codes = ["stake", "payout", "cashout", "payout_reversal", "debt_recognised", "stake_reversal"];
    filters.push(Filter::In("code", codes.into_iter().map(Value::from).collect(), true));
    let rows = store.aggregate(&Aggregate {
        table: &TRANSFERS,
        filters,
        group: vec!["currency", "fx_base", "code", "status"],
        sums: vec!["amount", "base_amount"],
    })?;
    let mut totals = Totals::default();
    for row in rows {
        let (Some(code), Some(status)) = (row[2].text(), row[3].text()) else {
            return Err(ProjectorError::Store(format!("an unreadable report row {row:?}")));
        };
        let Some(effect) = settlement_effect(code, status) else { continue };
        let group = converted(&row, 2, base)?;
        totals.add(group.currency, group.count, group.amount, group.in_base, effect);
    }
    Ok(totals)
}

/// The book time and the base currency now (decision state, from the book).
async fn now_and_base(state: &AppState) -> Result<(Timestamp, Currency), ApiError> {
    state.read(|book| (book.now(), book.fx().base)).await
}

async fn turnover(state: &AppState, models: &ReadModels, window: Window) -> Result<TurnoverReport, ApiError> {
    let (as_of, base) = now_and_base(state).await?;
    let (placed, settled) = models
        .query(move |store| Ok((placed_totals(store, window, base)?, settlement_totals(store, window, base)?)))
        .await
        .map_err(store_error)?;
    let currencies: BTreeSet<Currency> = placed.by_currency.keys().chain(settled.by_currency.keys()).copied().collect();
    let view = |currency: Currency, placed: PlacedTotals, settled: SettlementTotals| TurnoverView {
        currency: currency.to_string(),
        bets_placed: placed.bets,
        stakes_placed: format_minor(currency, placed.stakes),
        bets_settled: settled.settlements - settled.reversals,
        stakes_settled: format_minor(currency, settled.stakes_settled - settled.stakes_reversed),
    };
    let mut missing = placed.missing_rates.clone();
    missing.extend(settled.missing_rates.iter().copied());
    let base_total = match (placed.base(), settled.base()) {
        (Some(placed), Some(settled)) => Some(view(base, *placed, *settled)),
        _ => None,
    };
    let (from, to) = window.shown();
    Ok(TurnoverReport {
        from,
        to,
        as_of: format_rfc3339(as_of),
        currencies: currencies
            .into_iter()
            .map(|currency| {
                let placed = placed.by_currency.get(&currency).copied().unwrap_or_default();
                let settled = settled.by_currency.get(&currency).copied().unwrap_or_default();
                view(currency, placed, settled)
            })
            .collect(),
        base_total,
        missing_rates: missing.iter().map(Currency::to_string).collect(),
    })
}

/// One currency's GGR figures (the base currency's for the base total).
fn ggr_view(currency: Currency, totals: &SettlementTotals) -> GgrView {
    let gross = totals.stakes_settled - totals.payouts;
    let adjustment = totals.payouts_reversed - totals.stakes_reversed;
    let money = |minor| format_minor(currency, minor);
    GgrView {
        currency: currency.to_string(),
        stakes_settled: money(totals.stakes_settled),
        payouts: money(totals.payouts),
        cashouts: money(totals.cashouts),
        gross_gaming_revenue: money(gross),
        resettlements: ResettlementView {
            payouts_reversed: money(totals.payouts_reversed),
            recognised_as_debt: money(totals.recognised_as_debt),
            stakes_reversed: money(totals.stakes_reversed),
            adjustment: money(adjustment),
        },
        net_gaming_revenue: money(gross + adjustment),
    }
}

async fn ggr(state: &AppState, models: &ReadModels, window: Window) -> Result<GgrReport, ApiError> {
    let (as_of, base) = now_and_base(state).await?;
    let settled = models.query(move |store| settlement_totals(store, window, base)).await.map_err(store_error)?;
    let (from, to) = window.shown();
    Ok(GgrReport {
        from,
        to,
        as_of: format_rfc3339(as_of),
        currencies: settled.by_currency.iter().map(|(currency, totals)| ggr_view(*currency, totals)).collect(),
        base_total: settled.base().map(|totals| ggr_view(base, totals)),
        missing_rates: settled.missing_rates(),
    })
}

/// Exposure per market as `GET /v1/admin/exposure` shows it, with the open bets and stakes by
/// currency: every open bet holds its stake as one open pending `Stake` transfer.
async fn liabilities(state: &AppState, page: &PageQuery) -> Result<LiabilitiesReport, ApiError> {
    let limit = page.limit()?;
    let after = page.after("mkt_")?;
    state
        .read(move |book| {
            let ledger = book.ledger();
            let mut open: ByCurrency<PlacedTotals> = ByCurrency::new();
            for hold in ledger.open_pending().filter_map(|id| ledger.transfer(id)) {
                if hold.code == TransferCode::Stake {
                    let totals = open.entry(ledger.account(hold.debit).currency).or_default();
                    totals.bets += 1;
                    totals.stakes += Minor::from(hold.amount.minor());
                }
            }
            let total: Minor = book
                .markets()
                .iter()
                .filter_map(|market| market_liability(book, market))
                .map(|liability| Minor::from(liability.minor()))
                .sum();
            let (items, next_cursor) = exposure_page(book, after, limit);
            LiabilitiesReport {
                as_of: format_rfc3339(book.now()),
                open_bets: open
                    .into_iter()
                    .map(|(currency, totals)| OpenBetsView {
                        currency: currency.to_string(),
                        bets: totals.bets,
                        stakes: format_minor(currency, totals.stakes),
                    })
                    .collect(),
                total_liability: format_minor(book.fx().base, total),
                currency: book.fx().base.to_string(),
                total_liability_by_currency: total_by_currency(book),
                items,
                next_cursor,
            }
        })
        .await
}

/// Where a page of the `rg-events` report starts.
#[derive(Clone, Copy, Debug)]
enum RgCursor {
    /// Accounts in force, from this account id on.
    Accounts(u64),
    /// Events, from this journal position.
    Events(Position),
}

async fn rg_events(
    state: &AppState,
    models: &ReadModels,
    window: Window,
    page: &PageQuery,
) -> Result<RgEventsReport, ApiError> {
    let limit = page.limit()?;
    let cursor = match page.cursor.as_deref() {
        None => RgCursor::Accounts(1),
        Some(text) if text.starts_with("acc_") => {
            RgCursor::Accounts(page.after("acc_")?.unwrap_or(0).saturating_add(1))
        }
        Some(text) => RgCursor::Events(parse_position_cursor(text)?),
    };
    let (now, base) = now_and_base(state).await?;
    let (accounts, events, next_cursor) = models
        .query(move |store| {
            let mut accounts = Vec::new();
            let mut from = 0;
            if let RgCursor::Accounts(start) = cursor {
                let next;
                (accounts, next) = rg_accounts(store, start, limit, now)?;
                if let Some(next) = next {
                    // Accounts left to look at: the next page goes on with them.
                    return Ok((accounts, Vec::new(), Some(format!("acc_{}", next - 1))));
                }
            } else if let RgCursor::Events(position) = cursor {
                from = position;
            }
            if accounts.len() == limit {
                return Ok((accounts, Vec::new(), Some(format!("pos_{from}"))));
            }
            let (batches, next) = rg_model_events(store, window, from, limit - accounts.len())?;
            let touched = batches.iter().filter_map(|(_, _, _, command, _)| command.account());
            let currencies = account_currencies(store, touched.collect(), base)?;
            let events = batches
                .iter()
                .map(|(position, at, sequence, command, origin)| RgEventView {
                    position: *position,
                    recorded_at: format_rfc3339(*at),
                    currency: command
                        .account()
                        .and_then(|account| currencies.accounts.get(&account))
                        .map(ToString::to_string),
                    command: AuditCommandView {
                        sequence: *sequence,
                        actor: origin.actor.clone(),
                        reason: origin.reason.clone(),
                        command: audit_command(command, &currencies),
                    },
                })
                .collect();
            Ok((accounts, events, next.map(|position| format!("pos_{position}"))))
        })
        .await
        .map_err(store_error)?;
    let (from, to) = window.shown();
    Ok(RgEventsReport {
        from,
        to,
        as_of: format_rfc3339(now),
        note: RG_EVENTS_NOTE.to_string(),
        accounts,
        events,
        next_cursor,
    })
}

/// Accounts (of the `accounts` model) one page of the `rg-events` report looks at most; a page
/// that reaches it ends with a cursor, however few accounts with measures it found.
pub const RG_ACCOUNTS_SCAN_MAX: usize = 65_536;
/// Accounts read at a time: their limits (nine slots each) fit in one read.
const RG_ACCOUNTS_PER_READ: usize = QUERY_ROWS_MAX / 9;

/// Up to `limit` accounts with a measure in force at `now`, from account id `start` on, in id
/// order, from the `accounts` and `account_limits` models. Returns them and, when accounts
/// are left to look at, the id to go on from.
fn rg_accounts(
    store: &mut dyn Store,
    start: u64,
    limit: usize,
    now: Timestamp,
) -> Result<(Vec<RgAccountView>, Option<u64>), ProjectorError> {
    let mut found = Vec::new();
    let mut next = start;
    let mut scanned = 0usize;
    loop {
        let rows = store.select(&ModelQuery {
            table: &ACCOUNTS,
            filters: vec![Filter::Ge("id", Value::Int(next as i64))],
            order: vec![("id", false)],
            limit: RG_ACCOUNTS_PER_READ,
        })?;
        let Some(last) = rows.last().and_then(|row| row[0].int()) else { return Ok((found, None)) };
        let limits = store.select(&ModelQuery {
            table: &ACCOUNT_LIMITS,
            filters: vec![Filter::Ge("account", Value::Int(next as i64)), Filter::Lt("account", Value::Int(last + 1))],
            order: vec![("account", false)],
            limit: QUERY_ROWS_MAX,
        })?;
        let full = rows.len() == RG_ACCOUNTS_PER_READ;
        for row in rows {
            let id = row[0].int().unwrap_or_default();
            next = id as u64 + 1;
            scanned += 1;
            let slots: Vec<&Vec<Value>> = limits.iter().filter(|limit| limit[0].int() == Some(id)).collect();
            if let Some(view) = rg_account(&row, &slots, now)? {
                found.push(view);
                if found.len() == limit {
                    return Ok((found, Some(next)));
                }
            }
        }
        if !full {
            return Ok((found, None));
        }
        if scanned >= RG_ACCOUNTS_SCAN_MAX {
            return Ok((found, Some(next)));
        }
    }
}

/// The account's responsible-gambling measures in force at `now` (an `accounts` row and its
/// `account_limits` rows); `None` when it has none.
fn rg_account(
    account: &[Value],
    slots: &[&Vec<Value>],
    now: Timestamp,
) -> Result<Option<RgAccountView>, ProjectorError> {
    let bad = || ProjectorError::Store(format!("an unreadable account row {account:?}"));
    let id = account.first().and_then(Value::int).ok_or_else(bad)?;
    let currency = account.get(1).and_then(Value::text).and_then(|code| Currency::parse(code).ok()).ok_or_else(bad)?;
    let frozen = account.get(5).and_then(Value::bool).ok_or_else(bad)?;
    let timed_out_until = account.get(6).and_then(Value::int).ok_or_else(bad)? as u64;
    let excluded_until = account.get(7).and_then(Value::int).ok_or_else(bad)? as u64;
    let money = |value: &Value| value.int().map(|minor| currency.format(Money::from_minor(minor)));
    let mut limits = Vec::new();
    for kind in LimitKind::ALL {
        for period in Period::ALL {
            let Some(slot) = slots
                .iter()
                .find(|slot| slot[1].text() == Some(kind.as_str()) && slot[2].text() == Some(period.as_str()))
            else {
                continue;
            };
            // `current_value`, `pending`, `pending_value`, `pending_at`.
            let pending_at = slot[6].int().map(|at| at as u64);
            let pending = (slot[4].bool() == Some(true)).then_some(pending_at).flatten();
            // The limit in force now: a pending change past its cooling-off is in force.
            let value = match pending {
                Some(at) if now >= at => money(&slot[5]),
                _ => money(&slot[3]),
            };
            let pending = pending.filter(|at| *at > now);
            if value.is_none() && pending.is_none() {
                continue;
            }
            limits.push(RgLimitView {
                kind: kind.as_str().to_string(),
                period: period.as_str().to_string(),
                value,
                pending: pending
                    .map(|at| PendingLimitView { value: money(&slot[5]), effective_at: format_rfc3339(at) }),
            });
        }
    }
    let self_excluded_until = (excluded_until > now).then(|| format_rfc3339(excluded_until));
    let timed_out_until = (timed_out_until > now).then(|| format_rfc3339(timed_out_until));
    if limits.is_empty() && !frozen && self_excluded_until.is_none() && timed_out_until.is_none() {
        return Ok(None);
    }
    Ok(Some(RgAccountView {
        account_id: AccountId(id as u64).to_string(),
        currency: currency.to_string(),
        frozen,
        self_excluded_until,
        timed_out_until,
        limits,
    }))
}

/// The responsible-gambling commands of the audit view.
const RG_COMMANDS: [&str; 4] = ["set_limits", "time_out", "self_exclude", "set_account_risk"];

/// An event of the `rg-events` report: journal position, book time, sequence, command.
type RgEvent = (Position, Timestamp, u64, Command, AuditOrigin);

/// The responsible-gambling commands of the window from journal position `from` on, from the
/// audit view: at least `room` of them (a page ends on a whole batch) unless they end first.
/// Returns them and the position to go on from (`None`: no more).
fn rg_model_events(
    store: &mut dyn Store,
    window: Window,
    from: Position,
    room: usize,
) -> Result<(Vec<RgEvent>, Option<Position>), ProjectorError> {
    let mut filters = window_filters(window, "at");
    filters.push(Filter::In("command", RG_COMMANDS.into_iter().map(Value::from).collect(), true));
    filters.push(Filter::Ge("position", Value::Int(from as i64)));
    let rows = store.select(&ModelQuery {
        table: &AUDIT,
        filters,
        order: vec![("position", false), ("ordinal", false)],
        limit: QUERY_ROWS_MAX,
    })?;
    let full = rows.len() == QUERY_ROWS_MAX;
    let mut events: Vec<RgEvent> = Vec::new();
    for row in &rows {
        let position = audit_int(row, AUDIT_POSITION)?;
        if events.len() >= room && events.last().is_some_and(|event| event.0 != position) {
            return Ok((events, Some(position)));
        }
        let (sequence, command, origin) = audit_row_command(row)?;
        events.push((position, audit_int(row, AUDIT_AT)?, sequence, command, origin));
    }
    // Every row read was taken: more may follow only after a full read, which may have cut its
    // last batch: that batch is read again whole by the next page (unless it is the only one).
    let (Some(first), Some(last)) = (events.first().map(|event| event.0), events.last().map(|event| event.0)) else {
        return Ok((events, None));
    };
    if !full {
        return Ok((events, None));
    }
    if first == last {
        return Ok((events, Some(last + 1)));
    }
    events.retain(|event| event.0 != last);
    Ok((events, Some(last)))
}

// ---- helpers ----------------------------------------------------------------------------------

async fn chain_head(state: &AppState) -> Result<(ChainHead, Position), ApiError> {
    state.ask(|engine| engine.chain_head_async()).await
}

/// A page of raw journal records. The inner error is the journal's, which `verify` reports as a
/// finding rather than a failure.
async fn journal_page(
    state: &AppState,
    from: Position,
    limit: usize,
) -> Result<Result<JournalPage, EngineError>, ApiError> {
    state.ask(|engine| engine.journal_page_async(from, limit)).await
}

/// Runs CPU-bound work (hashing, rendering pages) on the blocking pool, off the runtime's
/// worker threads.
async fn blocking<R: Send + 'static>(work: impl FnOnce() -> R + Send + 'static) -> Result<R, ApiError> {
    tokio::task::spawn_blocking(work).await.map_err(ApiError::internal)
}

/// What amounts in journaled commands are shown in: each account's currency, and the base
/// currency for market risk settings. An account the models do not know (named by a refused
/// command) is shown in the base currency.
struct Currencies {
    accounts: BTreeMap<AccountId, Currency>,
    base: Currency,
}

/// The currency of each account (accounts never change currency), from the `accounts` model.
fn account_currencies(
    store: &mut dyn Store,
    accounts: BTreeSet<AccountId>,
    base: Currency,
) -> Result<Currencies, ProjectorError> {
    let mut found = BTreeMap::new();
    let ids: Vec<Value> = accounts.iter().map(|account| Value::Int(account.0 as i64)).collect();
    for chunk in ids.chunks(QUERY_ROWS_MAX) {
        let rows = store.select(&ModelQuery {
            table: &ACCOUNTS,
            filters: vec![Filter::In("id", chunk.to_vec(), true)],
            order: Vec::new(),
            limit: QUERY_ROWS_MAX,
        })?;
        for row in rows {
            let currency = row[1].text().and_then(|code| Currency::parse(code).ok());
            if let (Some(id), Some(currency)) = (row[0].int(), currency) {
                found.insert(AccountId(id as u64), currency);
            }
        }
    }
    Ok(Currencies { accounts: found, base })
}

/// A journal position cursor, `pos_123`.
fn parse_position_cursor(text: &str) -> Result<Position, ApiError> {
    text.strip_prefix("pos_")
        .filter(|digits| !digits.is_empty() && digits.len() <= 19 && digits.bytes().all(|byte| byte.is_ascii_digit()))
        .and_then(|digits| digits.parse().ok())
        .ok_or_else(|| ApiError::invalid("unknown cursor"))
}

#[cfg(test)]
mod format_tests {
    use super::*;

    /// Sums past the money maximum (an exposure over many markets, a month's usage) are shown,
    /// not asserted away by `Money::from_minor`.
    #[test]
    fn sums_beyond_the_money_maximum_are_formatted() {
        let eur = Currency::EUR;
        assert_eq!(format_minor(eur, 1_050), "10.50");
        assert_eq!(format_minor(eur, -5), "-0.05");
        assert_eq!(format_minor(eur, i128::from(domain::MONEY_MINOR_MAX) + 1), "10000000000000.01");
        assert_eq!(format_minor(eur, -i128::from(i64::MAX) * 4), "-368934881474191032.28");
    }

    /// A currency whose money cannot be converted leaves the base total null and is named,
    /// never summed in part; the CSV lists it instead of a base row.
    #[test]
    fn a_missing_rate_makes_the_base_total_absent_and_named() {
        let eur = Currency::EUR;
        // Groups of the `bets` aggregate: currency, fx_base, count, stake sum and count, base
        // sum and count.
        let group = |currency: &str, fx_base: Option<&str>, count: i64, stakes: &str, base: Option<&str>| {
            vec![
                Value::from(currency),
                Value::from(fx_base),
                Value::Int(count),
                Value::from(stakes),
                Value::Int(count),
                Value::from(base),
                Value::Int(if base.is_some() { count } else { 0 }),
            ]
        };
        let mut totals: Totals<PlacedTotals> = Totals::default();
        let add = |totals: &mut Totals<PlacedTotals>, row: Vec<Value>| {
            let group = converted(&row, 0, eur).expect("a group");
            totals.add(group.currency, group.count, group.amount, group.in_base, |line, count, stake| {
                line.bets += count as u64;
                line.stakes += stake;
            });
        };
        add(&mut totals, group("JPY", Some("EUR"), 1, "1", Some("1")));
        add(&mut totals, group("EUR", Some("EUR"), 1, "250", Some("250")));
        assert_eq!(totals.base().map(|base| (base.bets, base.stakes)), Some((2, 251)));
        // A bet converted against another base is as good as none.
        add(&mut totals, group("JPY", Some("USD"), 1, "5", Some("3")));
        assert!(totals.base().is_none());
        assert_eq!(totals.missing_rates(), vec!["JPY".to_string()]);
        assert_eq!(
            totals.by_currency.get(&Currency::parse("JPY").expect("JPY")).map(|line| (line.bets, line.stakes)),
            Some((2, 6))
        );
        let mut partly: Totals<PlacedTotals> = Totals::default();
        // Two bets, one of them without a base amount.
        let mut row = group("EUR", Some("EUR"), 2, "500", Some("250"));
        row[6] = Value::Int(1);
        add(&mut partly, row);
        assert!(partly.base().is_none(), "never a partial sum");

        let report = TurnoverReport {
            from: None,
            to: None,
            as_of: "2026-12-06T00:00:00Z".to_string(),
            currencies: Vec::new(),
            base_total: None,
            missing_rates: totals.missing_rates(),
        };
        assert_eq!(
            turnover_csv(&report),
            "line,currency,bets_placed,stakes_placed,bets_settled,stakes_settled\r\nmissing_rate,JPY,,,,\r\n"
        );
    }
}
