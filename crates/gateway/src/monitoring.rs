//! AML monitoring and markers of harm at the edge: the rules (`GET|PUT
//! /v1/admin/monitoring-rules`, `serve --monitoring-rules FILE`), the alerts and the case
//! queue with staff actions, and the suspicious-activity report.
//!
//! The book decides everything (`book::monitor`): rules fire on book time, alerts open or
//! join a case, and each staff action is a journaled `CaseAction` command whose origin carries
//! the actor and the reason the action requires (the audit trail shows both). The book keeps
//! only the cases not closed (what its decisions need); the reads (alerts, cases, a case, the
//! suspicious-activity report) are served from the projector's read models (`alerts`, `cases`,
//! `case_actions`), closed cases included, with the history routes' read-your-writes wait on
//! `X-Min-Position` and their 503 `unavailable` when there are no models (`history.rs`). An
//! action still decides in the book (it needs the open case) and answers from it.
//!
//! Scopes: `compliance` reads (support staff too, reads only), `compliance` acts on cases,
//! `admin` changes the rules.

use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use book::{
    scopes, Alert, AlertKind, Book, Case, CaseActionKind, CaseActionRequest, CaseId, CaseStatus, Command,
    MonitoringRules, Period, RapidInOut, Rule, Threshold,
};
use domain::Currency;
use projector::query::{Filter, Query as ModelQuery, QUERY_ROWS_MAX};
use projector::schema::{Table, Value, ACCOUNTS, ALERTS, CASES, CASE_ACTIONS};
use projector::{ProjectorError, Store};
use serde::{Deserialize, Serialize};

use crate::auth::Principal;
use crate::dto::{parse_id, parse_money};
use crate::error::{ApiError, Json};
use crate::history::store_error;
use crate::time::{format_rfc3339, parse_rfc3339};
use crate::AppState;

/// Items of one page of alerts or cases at most.
pub const MONITORING_PAGE_MAX: usize = 200;
/// Items of one page by default.
pub const MONITORING_PAGE_DEFAULT: usize = 50;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/admin/monitoring-rules", get(get_rules).put(put_rules))
        .route("/v1/admin/alerts", get(list_alerts))
        .route("/v1/admin/cases", get(list_cases))
        .route("/v1/admin/cases/{id}", get(get_case))
        .route("/v1/admin/cases/{id}/actions", post(act_on_case))
        .route("/v1/admin/reports/suspicious-activity", get(suspicious_activity))
}

// ---- the rules ------------------------------------------------------------------------------

/// A money threshold over a calendar period, in the base currency.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ThresholdBody {
    /// `day`, `week` or `month` (UTC calendar periods, weeks from Monday).
    #[schema(example = "day")]
    pub period: String,
    /// In the base currency.
    #[schema(example = "10000.00")]
    pub amount: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RapidInOutBody {
    /// A withdrawal this many hours or less after the last deposit ...
    #[schema(example = 24)]
    pub within_hours: u32,
    /// ... with the stakes placed since that deposit below this percentage of it.
    #[schema(example = 10)]
    pub turnover_percent: u32,
}

/// The monitoring rules; `null` turns a rule off. The body of `PUT` and of
/// `serve --monitoring-rules FILE` (every field required; `base_currency` is read only).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MonitoringRulesBody {
    /// The currency of every threshold (the fx table's base); ignored in a `PUT`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_currency: Option<String>,
    /// AML: deposits in the period at or above the amount.
    #[schema(required = true)]
    pub deposits: Option<ThresholdBody>,
    /// AML: withdrawals requested in the period at or above the amount.
    #[schema(required = true)]
    pub withdrawals: Option<ThresholdBody>,
    /// AML: stakes placed in the period at or above the amount.
    #[schema(required = true)]
    pub turnover: Option<ThresholdBody>,
    /// AML: rapid in-and-out with little play.
    #[schema(required = true)]
    pub rapid_in_out: Option<RapidInOutBody>,
    /// AML: an alert on every account when more than this many share a payment instrument or
    /// a postal address (1 to 64).
    #[schema(required = true)]
    pub shared_accounts_max: Option<u32>,
    /// Harm: deposits in a day at or above this count.
    #[schema(required = true)]
    pub deposits_per_day: Option<u32>,
    /// Harm: bets placed in the night hours of a day at or above this count.
    #[schema(required = true)]
    pub night_bets_per_day: Option<u32>,
    /// The night hours, UTC: from this hour (0 to 23) ...
    pub night_start_hour: u8,
    /// ... to this one (1 to 24, exclusive; below the start it wraps past midnight).
    pub night_end_hour: u8,
    /// Harm: withdrawals refused or failed in 30 days at or above this count (1 to 32).
    #[schema(required = true)]
    pub refused_withdrawals: Option<u32>,
    /// Harm: a deposit while a withdrawal of the same player is pending.
    pub deposit_while_withdrawal_pending: bool,
}

impl MonitoringRulesBody {
    pub fn from_rules(rules: &MonitoringRules, base: Currency) -> MonitoringRulesBody {
        let threshold = |threshold: Option<Threshold>| {
            threshold.map(|threshold| ThresholdBody {
                period: threshold.period.as_str().to_string(),
                amount: base.format(threshold.amount),
            })
        };
        MonitoringRulesBody {
            base_currency: Some(base.code().to_string()),
            deposits: threshold(rules.deposits),
            withdrawals: threshold(rules.withdrawals),
            turnover: threshold(rules.turnover),
            rapid_in_out: rules.rapid_in_out.map(|rapid| RapidInOutBody {
                within_hours: rapid.within_hours,
                turnover_percent: rapid.turnover_percent,
            }),
            shared_accounts_max: rules.shared_accounts_max,
            deposits_per_day: rules.deposits_per_day,
            night_bets_per_day: rules.night_bets_per_day,
            night_start_hour: rules.night_start_hour,
            night_end_hour: rules.night_end_hour,
            refused_withdrawals: rules.refused_withdrawals,
            deposit_while_withdrawal_pending: rules.deposit_while_withdrawal_pending,
        }
    }

    /// The book's rules, amounts parsed in `base`; checked like the book checks them.
    pub fn to_rules(&self, base: Currency) -> Result<MonitoringRules, ApiError> {
        let threshold = |body: &Option<ThresholdBody>, field: &str| -> Result<Option<Threshold>, ApiError> {
            let Some(body) = body else { return Ok(None) };
            let period = Period::ALL
                .into_iter()
                .find(|period| period.as_str() == body.period)
                .ok_or_else(|| ApiError::invalid(format!("{field}.period: day, week or month")).with("field", field))?;
            let amount = parse_money(base, &body.amount, field)?;
            Ok(Some(Threshold { period, amount }))
        };
        let rules = MonitoringRules {
            deposits: threshold(&self.deposits, "deposits")?,
            withdrawals: threshold(&self.withdrawals, "withdrawals")?,
            turnover: threshold(&self.turnover, "turnover")?,
            rapid_in_out: self
                .rapid_in_out
                .as_ref()
                .map(|rapid| RapidInOut { within_hours: rapid.within_hours, turnover_percent: rapid.turnover_percent }),
            shared_accounts_max: self.shared_accounts_max,
            deposits_per_day: self.deposits_per_day,
            night_bets_per_day: self.night_bets_per_day,
            night_start_hour: self.night_start_hour,
            night_end_hour: self.night_end_hour,
            refused_withdrawals: self.refused_withdrawals,
            deposit_while_withdrawal_pending: self.deposit_while_withdrawal_pending,
        };
        rules.check().map_err(ApiError::invalid)?;
        Ok(rules)
    }

    /// Reads a rules file (`serve --monitoring-rules`): JSON of this shape.
    pub fn from_json(text: &str) -> Result<MonitoringRulesBody, String> {
        serde_json::from_str(text).map_err(|error| error.to_string())
    }
}

#[utoipa::path(
    get,
    path = "/v1/admin/monitoring-rules",
    tag = "monitoring",
    summary = "The AML and markers-of-harm rules",
    description = "The rules in force, thresholds in the base currency. Scope: `compliance`.",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The rules", body = MonitoringRulesBody),
        (status = 401, description = "No valid credential (`unauthenticated`)", body = ApiError),
        (status = 403, description = "Not a credential with the scope (`forbidden`)", body = ApiError),
    ),
)]
pub(crate) async fn get_rules(
    principal: Principal,
    State(state): State<AppState>,
) -> Result<Json<MonitoringRulesBody>, ApiError> {
    principal.require_scope(scopes::COMPLIANCE)?;
    let (rules, base) = state.read(|book| (*book.monitor().rules(), book.fx().base)).await?;
    Ok(Json(MonitoringRulesBody::from_rules(&rules, base)))
}

#[utoipa::path(
    put,
    path = "/v1/admin/monitoring-rules",
    tag = "monitoring",
    summary = "Replace the AML and markers-of-harm rules",
    description = "Replaces every rule (journaled: replays decide with the rules in force at the time). Scope: \
        `admin`.",
    security(("bearer" = [])),
    request_body = MonitoringRulesBody,
    responses(
        (status = 200, description = "The rules now", body = MonitoringRulesBody),
        (status = 400, description = "Malformed body, an unknown field, a rule out of range (`invalid_request`)",
            body = ApiError),
        (status = 401, description = "No valid credential (`unauthenticated`)", body = ApiError),
        (status = 403, description = "Not an admin credential (`forbidden`)", body = ApiError),
        (status = 413, description = "Body over the size limit (`payload_too_large`)", body = ApiError),
        (status = 415, description = "Not `Content-Type: application/json` (`unsupported_media_type`)", body = ApiError),
    ),
)]
pub(crate) async fn put_rules(
    principal: Principal,
    State(state): State<AppState>,
    body: Result<Json<MonitoringRulesBody>, ApiError>,
) -> Result<Json<MonitoringRulesBody>, ApiError> {
    principal.require_scope(scopes::ADMIN)?;
    let Json(request) = body?;
    let base = state.read(|book| book.fx().base).await?;
    let rules = request.to_rules(base)?;
    let (reply, (now, base)) = state
        .submit_then(Command::SetMonitoringRules { rules }, principal.origin(), |book, _| {
            (*book.monitor().rules(), book.fx().base)
        })
        .await?;
    reply.map_err(|rejection| ApiError::from_rejection(&rejection, base))?;
    Ok(Json(MonitoringRulesBody::from_rules(&now, base)))
}

// ---- alerts and cases -----------------------------------------------------------------------

#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct AlertView {
    #[schema(example = "alr_1")]
    pub id: String,
    #[schema(example = "acc_1")]
    pub account_id: String,
    /// `deposit_threshold`, `withdrawal_threshold`, `turnover_threshold`, `rapid_in_out`,
    /// `shared_instrument`, `shared_address`, `deposit_frequency`, `late_night_play`,
    /// `refused_withdrawals` or `deposit_while_withdrawal_pending`.
    #[schema(example = "deposit_threshold")]
    pub rule: String,
    /// `aml` or `harm`.
    #[schema(example = "aml")]
    pub kind: String,
    /// What was measured: an amount in `currency` for the money rules (deposits, withdrawals,
    /// turnover, rapid in-and-out: the turnover since the deposit), else a count.
    #[schema(example = "10000.00")]
    pub value: String,
    /// The rule's threshold, in the same unit (rapid in-and-out: the turnover it needed).
    #[schema(example = "10000.00")]
    pub threshold: String,
    /// The base currency, for the money rules; null for counts.
    #[schema(required = true)]
    pub currency: Option<String>,
    pub raised_at: String,
    /// The case it joined; null when the case queue was full.
    #[schema(required = true)]
    pub case_id: Option<String>,
}

impl AlertView {
    fn new(alert: &Alert) -> AlertView {
        let (value, threshold, currency) = if alert.rule.is_money() {
            let money = |minor| alert.currency.format(domain::Money::from_minor(minor));
            (money(alert.value), money(alert.threshold), Some(alert.currency.code().to_string()))
        } else {
            (alert.value.to_string(), alert.threshold.to_string(), None)
        };
        AlertView {
            id: alert.id.to_string(),
            account_id: alert.account.to_string(),
            rule: alert.rule.as_str().to_string(),
            kind: alert.kind().as_str().to_string(),
            value,
            threshold,
            currency,
            raised_at: format_rfc3339(alert.at),
            case_id: alert.case.map(|case| case.to_string()),
        }
    }
}

#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct CaseActionView {
    /// `note`, `freeze`, `unfreeze`, `escalate`, `mark_reported` or `close`.
    pub action: String,
    /// `{"kind", "id"}` of who acted.
    pub actor: crate::compliance::ActorView,
    pub reason: String,
    #[schema(required = true)]
    pub note: Option<String>,
    #[schema(required = true)]
    pub reference: Option<String>,
    pub at: String,
}

#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct CaseView {
    #[schema(example = "case_1")]
    pub id: String,
    pub account_id: String,
    /// `open`, `escalated`, `reported` or `closed`.
    pub status: String,
    pub opened_at: String,
    pub updated_at: String,
    /// The first 64 alerts of the case, oldest first.
    pub alerts: Vec<AlertView>,
    /// Every alert that joined the case.
    pub alerts_total: u32,
    /// Staff actions, oldest first.
    pub actions: Vec<CaseActionView>,
    /// The reporting reference (e.g. the NCA SAR number) once reported.
    #[schema(required = true)]
    pub reference: Option<String>,
    /// Whether the account is frozen now.
    pub frozen: bool,
}

fn case_view(case: &Case, frozen: bool) -> CaseView {
    CaseView {
        id: case.id.to_string(),
        account_id: case.account.to_string(),
        status: case.status.as_str().to_string(),
        opened_at: format_rfc3339(case.opened_at),
        updated_at: format_rfc3339(case.updated_at),
        alerts: case.alerts.iter().map(AlertView::new).collect(),
        alerts_total: case.alerts_total,
        actions: case.actions.iter().map(action_view).collect(),
        reference: case.reference.clone(),
        frozen,
    }
}

fn action_view(action: &book::CaseAction) -> CaseActionView {
    CaseActionView {
        action: action.action.as_str().to_string(),
        actor: crate::compliance::ActorView::of(&action.by),
        reason: action.reason.clone(),
        note: action.note.clone(),
        reference: action.reference.clone(),
        at: format_rfc3339(action.at),
    }
}

fn is_frozen(book: &Book, case: &Case) -> bool {
    book.players().get(case.account.index()).is_some_and(|player| player.frozen)
}

/// The open case of an account, as the customer view shows it.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct OpenCaseView {
    pub id: String,
    /// `open`, `escalated` or `reported`.
    pub status: String,
}

pub(crate) fn open_case_of(book: &Book, account: book::AccountId) -> Option<OpenCaseView> {
    book.monitor()
        .case_of(account)
        .map(|case| OpenCaseView { id: case.id.to_string(), status: case.status.as_str().to_string() })
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AlertsQuery {
    /// Only this account's alerts (`acc_1`).
    pub account: Option<String>,
    /// Only this rule's alerts.
    pub rule: Option<String>,
    /// `aml` or `harm`.
    pub kind: Option<String>,
    /// Raised at or after (RFC 3339).
    pub from: Option<String>,
    /// Raised before (RFC 3339).
    pub to: Option<String>,
    /// Items per page, 1 to 200 (default 50).
    pub limit: Option<usize>,
    /// The `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

/// A page of alerts, oldest first.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AlertPage {
    pub items: Vec<AlertView>,
    #[schema(required = true)]
    pub next_cursor: Option<String>,
}

fn page_limit(limit: Option<usize>) -> Result<usize, ApiError> {
    match limit {
        None => Ok(MONITORING_PAGE_DEFAULT),
        Some(limit) if (1..=MONITORING_PAGE_MAX).contains(&limit) => Ok(limit),
        Some(_) => Err(ApiError::invalid(format!("limit must be 1 to {MONITORING_PAGE_MAX}")).with("field", "limit")),
    }
}

fn parse_account(text: &str) -> Result<book::AccountId, ApiError> {
    parse_id(text, "acc_", "account")
        .map(book::AccountId)
        .map_err(|_| ApiError::invalid("unknown account").with("field", "account"))
}

fn parse_time(text: Option<&str>, field: &str) -> Result<Option<u64>, ApiError> {
    text.map(|text| {
        parse_rfc3339(text).ok_or_else(|| ApiError::invalid(format!("{field}: an RFC 3339 time")).with("field", field))
    })
    .transpose()
}

#[utoipa::path(
    get,
    path = "/v1/admin/alerts",
    tag = "monitoring",
    summary = "Alerts raised by the monitoring rules",
    description = "Alerts from the read models, oldest first, those of closed cases too. Read-your-writes: \
        waits (at most 2 s) until the models hold every write acknowledged before the read and \
        `X-Min-Position`, else 503 `unavailable` (also with the projector off). \
        Scope: `compliance`.",
    security(("bearer" = [])),
    params(AlertsQuery, crate::history::MinPosition),
    responses(
        (status = 200, description = "A page of alerts", body = AlertPage),
        (status = 400, description = "An unknown rule, kind or parameter, a bad time, `limit` or `cursor` \
            or `X-Min-Position` (`invalid_request`)", body = ApiError),
        (status = 401, description = "No valid credential (`unauthenticated`)", body = ApiError),
        (status = 403, description = "Not a credential with the scope (`forbidden`)", body = ApiError),
    ),
)]
pub(crate) async fn list_alerts(
    principal: Principal,
    State(state): State<AppState>,
    headers: HeaderMap,
    query: Result<Query<AlertsQuery>, QueryRejection>,
) -> Result<Json<AlertPage>, ApiError> {
    principal.require_scope(scopes::COMPLIANCE)?;
    let Query(query) = query.map_err(|rejection| ApiError::invalid(rejection.body_text()))?;
    let limit = page_limit(query.limit)?;
    let account = query.account.as_deref().map(parse_account).transpose()?;
    let rule = query
        .rule
        .as_deref()
        .map(|text| Rule::parse(text).ok_or_else(|| ApiError::invalid("unknown rule").with("field", "rule")))
        .transpose()?;
    let kind = query
        .kind
        .as_deref()
        .map(|text| AlertKind::parse(text).ok_or_else(|| ApiError::invalid("kind: aml or harm").with("field", "kind")))
        .transpose()?;
    let from = parse_time(query.from.as_deref(), "from")?;
    let to = parse_time(query.to.as_deref(), "to")?;
    let after = match &query.cursor {
        None => 0,
        Some(cursor) => parse_id(cursor, "alr_", "cursor").map_err(|_| ApiError::invalid("unknown cursor"))?,
    };
    let mut filters = vec![Filter::Ge("id", model_int(after.saturating_add(1)))];
    if let Some(account) = account {
        filters.push(Filter::Eq("account", model_int(account.0)));
    }
    if let Some(rule) = rule {
        filters.push(Filter::Eq("rule", Value::from(rule.as_str())));
    }
    if let Some(kind) = kind {
        filters.push(Filter::Eq("kind", Value::from(kind.as_str())));
    }
    if let Some(from) = from {
        filters.push(Filter::Ge("at", model_int(from)));
    }
    if let Some(to) = to {
        filters.push(Filter::Lt("at", model_int(to)));
    }
    let models = state.read_models(&headers).await?;
    let model_query = ModelQuery { table: &ALERTS, filters, order: vec![("id", false)], limit: limit + 1 };
    let rows = models.query(move |store| store.select(&model_query)).await.map_err(store_error)?;
    let mut alerts = rows.iter().map(|row| alert_of_row(row)).collect::<Result<Vec<_>, _>>()?;
    let more = alerts.len() > limit;
    alerts.truncate(limit);
    let next_cursor = if more { alerts.last().map(|alert| alert.id.to_string()) } else { None };
    Ok(Json(AlertPage { items: alerts.iter().map(AlertView::new).collect(), next_cursor }))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct CasesQuery {
    /// `open`, `escalated`, `reported` or `closed`.
    pub status: Option<String>,
    /// Only this account's case.
    pub account: Option<String>,
    /// Items per page, 1 to 200 (default 50).
    pub limit: Option<usize>,
    /// The `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

/// A page of cases, oldest first.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CasePage {
    pub items: Vec<CaseView>,
    #[schema(required = true)]
    pub next_cursor: Option<String>,
}

#[utoipa::path(
    get,
    path = "/v1/admin/cases",
    tag = "monitoring",
    summary = "The case queue",
    description = "Cases from the read models, closed ones too, oldest first, each with its alerts and actions. Read-your-writes: \
        waits (at most 2 s) until the models hold every write acknowledged before the read and \
        `X-Min-Position`, else 503 `unavailable` (also with the projector off). \
        Scope: `compliance`.",
    security(("bearer" = [])),
    params(CasesQuery, crate::history::MinPosition),
    responses(
        (status = 200, description = "A page of cases", body = CasePage),
        (status = 400, description = "An unknown status or parameter, a bad `limit` or `cursor` or `X-Min-Position` (`invalid_request`)",
            body = ApiError),
        (status = 401, description = "No valid credential (`unauthenticated`)", body = ApiError),
        (status = 403, description = "Not a credential with the scope (`forbidden`)", body = ApiError),
    ),
)]
pub(crate) async fn list_cases(
    principal: Principal,
    State(state): State<AppState>,
    headers: HeaderMap,
    query: Result<Query<CasesQuery>, QueryRejection>,
) -> Result<Json<CasePage>, ApiError> {
    principal.require_scope(scopes::COMPLIANCE)?;
    let Query(query) = query.map_err(|rejection| ApiError::invalid(rejection.body_text()))?;
    let limit = page_limit(query.limit)?;
    let status = query
        .status
        .as_deref()
        .map(|text| {
            CaseStatus::parse(text)
                .ok_or_else(|| ApiError::invalid("status: open, escalated, reported or closed").with("field", "status"))
        })
        .transpose()?;
    let account = query.account.as_deref().map(parse_account).transpose()?;
    let after = match &query.cursor {
        None => 0,
        Some(cursor) => parse_id(cursor, "case_", "cursor").map_err(|_| ApiError::invalid("unknown cursor"))?,
    };
    let mut filters = vec![Filter::Ge("id", model_int(after.saturating_add(1)))];
    if let Some(status) = status {
        filters.push(Filter::Eq("status", Value::from(status.as_str())));
    }
    if let Some(account) = account {
        filters.push(Filter::Eq("account", model_int(account.0)));
    }
    let models = state.read_models(&headers).await?;
    let model_query = ModelQuery { table: &CASES, filters, order: vec![("id", false)], limit: limit + 1 };
    let rows = models.query(move |store| select_cases(store, &model_query)).await.map_err(store_error)?;
    let mut cases = rows.iter().map(case_of_rows).collect::<Result<Vec<_>, _>>()?;
    let more = cases.len() > limit;
    cases.truncate(limit);
    let next_cursor = if more { cases.last().map(|case| case.id.clone()) } else { None };
    Ok(Json(CasePage { items: cases, next_cursor }))
}

fn parse_case(path: Result<Path<String>, PathRejection>) -> Result<CaseId, ApiError> {
    let Path(text) = path.map_err(|_| unknown_case())?;
    parse_id(&text, "case_", "case").map(CaseId).map_err(|_| unknown_case())
}

fn unknown_case() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "unknown_case", "no such case")
}

#[utoipa::path(
    get,
    path = "/v1/admin/cases/{id}",
    tag = "monitoring",
    summary = "A case with its alerts and actions",
    description = "A case from the read models, closed or not, with its alerts and actions. 409 `case_closed` \
        for a case closed before the models began (a snapshot they started from). Read-your-writes: \
        waits (at most 2 s) until the models hold every write acknowledged before the read and \
        `X-Min-Position`, else 503 `unavailable` (also with the projector off). \
        Scope: `compliance`.",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "A case id", example = "case_1"), crate::history::MinPosition),
    responses(
        (status = 200, description = "The case", body = CaseView),
        (status = 401, description = "No valid credential (`unauthenticated`)", body = ApiError),
        (status = 403, description = "Not a credential with the scope (`forbidden`)", body = ApiError),
        (status = 400, description = "A bad `X-Min-Position` (`invalid_request`)", body = ApiError),
        (status = 404, description = "No such case (`unknown_case`)", body = ApiError),
        (status = 409, description = "The case was closed before the models began (`case_closed`)", body = ApiError),
    ),
)]
pub(crate) async fn get_case(
    principal: Principal,
    State(state): State<AppState>,
    headers: HeaderMap,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<CaseView>, ApiError> {
    principal.require_scope(scopes::COMPLIANCE)?;
    let case = parse_case(path)?;
    let models = state.read_models(&headers).await?;
    let model_query =
        ModelQuery { table: &CASES, filters: vec![Filter::Eq("id", model_int(case.0))], order: Vec::new(), limit: 1 };
    let rows = models.query(move |store| select_cases(store, &model_query)).await.map_err(store_error)?;
    if let Some(rows) = rows.first() {
        return Ok(Json(case_of_rows(rows)?));
    }
    // Not in the models: a case closed before the snapshot the models began from, or none.
    let issued = state.read(|book| book.monitor().cases_issued()).await?;
    if case.0 >= 1 && case.0 <= issued {
        return Err(ApiError::from_rejection(&book::Rejection::CaseClosed, Currency::EUR));
    }
    Err(unknown_case())
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CaseActionBody {
    /// `note`, `freeze`, `unfreeze`, `escalate`, `mark_reported` or `close`.
    #[schema(example = "escalate")]
    pub action: String,
    /// Why, 1 to 500 bytes (required): shown in the case and the audit trail.
    #[schema(example = "deposits far above the declared income")]
    pub reason: Option<String>,
    /// The note (required by `note`), at most 1,000 bytes.
    #[serde(default)]
    pub note: Option<String>,
    /// The reporting reference (required by `mark_reported`, e.g. the NCA SAR number), at most
    /// 1,000 bytes.
    #[serde(default)]
    pub reference: Option<String>,
}

#[utoipa::path(
    post,
    path = "/v1/admin/cases/{id}/actions",
    tag = "monitoring",
    summary = "Act on a case",
    description = "A staff action, journaled with who and why: `note` (with a `note`), `freeze` (the account is \
        frozen at once: bets, deposits and withdrawals get 403 `account_frozen`), `unfreeze`, `escalate` (from \
        `open`), `mark_reported` (from `open` or `escalated`, with a `reference`), `close` (the case leaves the \
        queue). Answers the case after the action. Scope: `compliance`.",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "A case id", example = "case_1")),
    request_body = CaseActionBody,
    responses(
        (status = 200, description = "The case after the action", body = CaseView),
        (status = 400, description = "Malformed body, an unknown action or field, a missing or too long `reason`, \
            a missing `note` or `reference` (`invalid_request`, names the `field`)", body = ApiError),
        (status = 401, description = "No valid credential (`unauthenticated`)", body = ApiError),
        (status = 403, description = "Not a credential with the scope, or a read-only one (`forbidden`)",
            body = ApiError),
        (status = 404, description = "No such case (`unknown_case`)", body = ApiError),
        (status = 409, description = "The case was closed (`case_closed`), or its status does not allow the action \
            (`invalid_transition`)", body = ApiError),
        (status = 413, description = "Body over the size limit (`payload_too_large`)", body = ApiError),
        (status = 415, description = "Not `Content-Type: application/json` (`unsupported_media_type`)", body = ApiError),
    ),
)]
pub(crate) async fn act_on_case(
    principal: Principal,
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
    body: Result<Json<CaseActionBody>, ApiError>,
) -> Result<Json<CaseView>, ApiError> {
    principal.require_scope(scopes::COMPLIANCE)?;
    let case = parse_case(path)?;
    let Json(request) = body?;
    let action = CaseActionKind::parse(&request.action).ok_or_else(|| {
        ApiError::invalid("action: note, freeze, unfreeze, escalate, mark_reported or close").with("field", "action")
    })?;
    let Some(reason) = request.reason else {
        return Err(ApiError::invalid("reason: required").with("field", "reason"));
    };
    crate::requests::check_text(&reason, "reason", 1, book::constants::REASON_BYTES_MAX)?;
    if let Some(note) = &request.note {
        crate::requests::check_text(note, "note", 1, book::CASE_TEXT_BYTES_MAX)?;
    }
    if let Some(reference) = &request.reference {
        crate::requests::check_text(reference, "reference", 1, book::CASE_TEXT_BYTES_MAX)?;
    }
    if action == CaseActionKind::Note && request.note.is_none() {
        return Err(ApiError::invalid("note: required by a note action").with("field", "note"));
    }
    if action == CaseActionKind::MarkReported && request.reference.is_none() {
        return Err(ApiError::invalid("reference: required by mark_reported").with("field", "reference"));
    }
    // The case before the action: a closed case leaves the book, and the answer shows it
    // closed from what it was.
    let before =
        state.read(move |book| book.monitor().case(case).map(|found| (found.clone(), is_frozen(book, found)))).await?;
    let origin = principal.origin().with_reason(Some(reason.clone()));
    let closing_reason = reason.clone();
    let command = Command::CaseAction(CaseActionRequest {
        case,
        action,
        by: principal.actor(),
        reason,
        note: request.note,
        reference: request.reference,
    });
    let (reply, after) = state
        .submit_then(command, origin, move |book, _| {
            book.monitor().case(case).map(|found| case_view(found, is_frozen(book, found)))
        })
        .await?;
    if let Err(rejection) = reply {
        return Err(match rejection {
            book::Rejection::UnknownCase => unknown_case(),
            other => ApiError::from_rejection(&other, Currency::EUR),
        });
    }
    match (after, before) {
        (Some(view), _) => Ok(Json(view)),
        (None, Some((mut closed, frozen))) => {
            closed.status = CaseStatus::Closed;
            let mut view = case_view(&closed, frozen);
            view.actions.push(CaseActionView {
                action: action.as_str().to_string(),
                actor: crate::compliance::ActorView::of(&principal.actor()),
                reason: closing_reason,
                note: None,
                reference: None,
                at: view.updated_at.clone(),
            });
            Ok(Json(view))
        }
        (None, None) => Err(unknown_case()),
    }
}

// ---- reads from the read models ---------------------------------------------------------------

/// Cases of one suspicious-activity report at most; a report that would hold more says
/// `truncated` (narrow the window).
pub const SUSPICIOUS_REPORT_CASES_MAX: usize = 1_000;

fn cell_int(row: &[Value], table: &Table, column: &str) -> i64 {
    row[table.index_of(column)].int().unwrap_or(0)
}

fn cell_id(row: &[Value], table: &Table, column: &str) -> u64 {
    u64::try_from(cell_int(row, table, column)).unwrap_or(0)
}

fn cell_text<'a>(row: &'a [Value], table: &Table, column: &str) -> &'a str {
    row[table.index_of(column)].text().unwrap_or("")
}

fn cell_opt_text(row: &[Value], table: &Table, column: &str) -> Option<String> {
    row[table.index_of(column)].text().map(str::to_string)
}

fn model_int(value: u64) -> Value {
    Value::Int(i64::try_from(value).unwrap_or(i64::MAX))
}

fn unreadable(table: &Table, what: &str) -> ApiError {
    ApiError::internal(format!("a read-model row of {} holds an unknown {what}", table.name))
}

/// A case as the models hold it: its row, its first alerts and its actions, and whether its
/// account is frozen.
struct CaseRows {
    case: Vec<Value>,
    alerts: Vec<Vec<Value>>,
    actions: Vec<Vec<Value>>,
    frozen: bool,
}

/// The cases `query` selects with their alerts (the first [`book::CASE_ALERTS_MAX`], oldest
/// first), their actions (oldest first) and their account's `frozen`, in one read.
fn select_cases(store: &mut dyn Store, query: &ModelQuery) -> Result<Vec<CaseRows>, ProjectorError> {
    store.begin_read()?;
    let found = cases_in_read(store, query);
    let ended = store.end_read();
    let found = found?;
    ended?;
    Ok(found)
}

fn cases_in_read(store: &mut dyn Store, query: &ModelQuery) -> Result<Vec<CaseRows>, ProjectorError> {
    let cases = store.select(query)?;
    let mut found = Vec::with_capacity(cases.len());
    for case in cases {
        let id = case[CASES.index_of("id")].clone();
        let account = case[CASES.index_of("account")].clone();
        let alerts = store.select(&ModelQuery {
            table: &ALERTS,
            filters: vec![Filter::Eq("case_id", id.clone())],
            order: vec![("id", false)],
            limit: book::CASE_ALERTS_MAX,
        })?;
        let actions = store.select(&ModelQuery {
            table: &CASE_ACTIONS,
            filters: vec![Filter::Eq("case_id", id)],
            order: vec![("position", false), ("ordinal", false)],
            limit: QUERY_ROWS_MAX,
        })?;
        let frozen = store
            .select(&ModelQuery {
                table: &ACCOUNTS,
                filters: vec![Filter::Eq("id", account)],
                order: Vec::new(),
                limit: 1,
            })?
            .first()
            .and_then(|row| row[ACCOUNTS.index_of("frozen")].bool())
            .unwrap_or(false);
        found.push(CaseRows { case, alerts, actions, frozen });
    }
    Ok(found)
}

fn alert_of_row(row: &[Value]) -> Result<Alert, ApiError> {
    let rule = Rule::parse(cell_text(row, &ALERTS, "rule")).ok_or_else(|| unreadable(&ALERTS, "rule"))?;
    let currency = Currency::parse(cell_text(row, &ALERTS, "currency")).map_err(|_| unreadable(&ALERTS, "currency"))?;
    Ok(Alert {
        id: book::AlertId(cell_id(row, &ALERTS, "id")),
        account: book::AccountId(cell_id(row, &ALERTS, "account")),
        rule,
        value: cell_int(row, &ALERTS, "value"),
        threshold: cell_int(row, &ALERTS, "threshold"),
        currency,
        at: cell_id(row, &ALERTS, "at"),
        case: row[ALERTS.index_of("case_id")].int().and_then(|id| u64::try_from(id).ok()).map(CaseId),
    })
}

fn action_of_row(row: &[Value]) -> Result<CaseActionView, ApiError> {
    use crate::compliance::ActorKind;
    let kind = match cell_text(row, &CASE_ACTIONS, "actor_kind") {
        "staff" => ActorKind::Staff,
        "api_key" => ActorKind::ApiKey,
        "player" => ActorKind::Player,
        "feed" => ActorKind::Feed,
        "system" => ActorKind::System,
        _ => return Err(unreadable(&CASE_ACTIONS, "actor kind")),
    };
    Ok(CaseActionView {
        action: cell_text(row, &CASE_ACTIONS, "action").to_string(),
        actor: crate::compliance::ActorView { kind, id: cell_text(row, &CASE_ACTIONS, "actor_id").to_string() },
        reason: cell_text(row, &CASE_ACTIONS, "reason").to_string(),
        note: cell_opt_text(row, &CASE_ACTIONS, "note"),
        reference: cell_opt_text(row, &CASE_ACTIONS, "reference"),
        at: format_rfc3339(cell_id(row, &CASE_ACTIONS, "at")),
    })
}

fn case_of_rows(rows: &CaseRows) -> Result<CaseView, ApiError> {
    let case = &rows.case;
    let status = cell_text(case, &CASES, "status");
    CaseStatus::parse(status).ok_or_else(|| unreadable(&CASES, "status"))?;
    Ok(CaseView {
        id: CaseId(cell_id(case, &CASES, "id")).to_string(),
        account_id: book::AccountId(cell_id(case, &CASES, "account")).to_string(),
        status: status.to_string(),
        opened_at: format_rfc3339(cell_id(case, &CASES, "opened_at")),
        updated_at: format_rfc3339(cell_id(case, &CASES, "updated_at")),
        alerts: rows
            .alerts
            .iter()
            .map(|row| alert_of_row(row).map(|alert| AlertView::new(&alert)))
            .collect::<Result<_, _>>()?,
        alerts_total: u32::try_from(cell_int(case, &CASES, "alerts_total")).unwrap_or(u32::MAX),
        actions: rows.actions.iter().map(|row| action_of_row(row)).collect::<Result<_, _>>()?,
        reference: cell_opt_text(case, &CASES, "reference"),
        frozen: rows.frozen,
    })
}

/// The report's cases from the models: escalated or reported now, or closed after an
/// `escalate` or `mark_reported`, last changed in `[from, to)`, by id; `true` when there were
/// more than [`SUSPICIOUS_REPORT_CASES_MAX`].
fn select_suspicious(
    store: &mut dyn Store,
    from: Option<u64>,
    to: Option<u64>,
) -> Result<(Vec<CaseRows>, bool), ProjectorError> {
    let statuses = ["escalated", "reported", "closed"].map(Value::from).to_vec();
    let mut found = Vec::new();
    let mut after = 0u64;
    loop {
        let mut filters = vec![Filter::In("status", statuses.clone(), true), Filter::Ge("id", model_int(after + 1))];
        if let Some(from) = from {
            filters.push(Filter::Ge("updated_at", model_int(from)));
        }
        if let Some(to) = to {
            filters.push(Filter::Lt("updated_at", model_int(to)));
        }
        let page = ModelQuery { table: &CASES, filters, order: vec![("id", false)], limit: QUERY_ROWS_MAX };
        let rows = select_cases(store, &page)?;
        let full = rows.len() == QUERY_ROWS_MAX;
        for rows in rows {
            after = cell_id(&rows.case, &CASES, "id");
            let closed = cell_text(&rows.case, &CASES, "status") == "closed";
            let suspicious = !closed
                || rows
                    .actions
                    .iter()
                    .any(|action| matches!(cell_text(action, &CASE_ACTIONS, "action"), "escalate" | "mark_reported"));
            if suspicious {
                if found.len() == SUSPICIOUS_REPORT_CASES_MAX {
                    return Ok((found, true));
                }
                found.push(rows);
            }
        }
        if !full {
            return Ok((found, false));
        }
    }
}

// ---- the suspicious-activity report -----------------------------------------------------------

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct SuspiciousActivityQuery {
    /// Cases last changed at or after (RFC 3339).
    pub from: Option<String>,
    /// Cases last changed before (RFC 3339).
    pub to: Option<String>,
    /// `json` (the default) or `csv` (`text/csv`: `case_id,account_id,status,opened_at,updated_at,reference,rules,
    /// alerts,aml_amount,currency,actions`).
    pub format: Option<String>,
}

/// One case of the report.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SuspiciousCaseView {
    pub case_id: String,
    pub account_id: String,
    /// `escalated`, `reported`, or `closed` after an escalation or a report.
    pub status: String,
    pub opened_at: String,
    pub updated_at: String,
    #[schema(required = true)]
    pub reference: Option<String>,
    /// The rules that fired, without repeats, in the order they first fired.
    pub rules: Vec<String>,
    pub alerts_total: u32,
    /// The largest amount measured by a money rule's alert, in `currency`.
    #[schema(required = true)]
    pub largest_amount: Option<String>,
    pub currency: String,
    pub actions: Vec<CaseActionView>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SuspiciousActivityReport {
    /// `suspicious-activity`.
    pub report: String,
    #[schema(required = true)]
    pub from: Option<String>,
    #[schema(required = true)]
    pub to: Option<String>,
    pub cases: Vec<SuspiciousCaseView>,
    /// More cases matched than a report holds (1,000): narrow the window.
    pub truncated: bool,
}

#[utoipa::path(
    get,
    path = "/v1/admin/reports/suspicious-activity",
    tag = "monitoring",
    summary = "The suspicious-activity report",
    description = "Cases from the read models escalated or reported (now, or before they were closed) that last \
        changed in the window, with the account, the rules that fired, the largest amount, and every action; at \
        most 1,000 cases (`truncated` says when more matched). JSON, or CSV with `?format=csv`. Read-your-writes: \
        waits (at most 2 s) until the models hold every write acknowledged before the read and \
        `X-Min-Position`, else 503 `unavailable` (also with the projector off). \
        Scope: `compliance`.",
    security(("bearer" = [])),
    params(SuspiciousActivityQuery, crate::history::MinPosition),
    responses(
        (status = 200, description = "The report", content((SuspiciousActivityReport = "application/json"),
            (String = "text/csv"))),
        (status = 400, description = "A bad time or `format`, an unknown parameter or `X-Min-Position` (`invalid_request`)",
            body = ApiError),
        (status = 401, description = "No valid credential (`unauthenticated`)", body = ApiError),
        (status = 403, description = "Not a credential with the scope (`forbidden`)", body = ApiError),
    ),
)]
pub(crate) async fn suspicious_activity(
    principal: Principal,
    State(state): State<AppState>,
    headers: HeaderMap,
    query: Result<Query<SuspiciousActivityQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    principal.require_scope(scopes::COMPLIANCE)?;
    let Query(query) = query.map_err(|rejection| ApiError::invalid(rejection.body_text()))?;
    let csv = match query.format.as_deref() {
        None | Some("json") => false,
        Some("csv") => true,
        Some(_) => return Err(ApiError::invalid("format: json or csv").with("field", "format")),
    };
    let from = parse_time(query.from.as_deref(), "from")?;
    let to = parse_time(query.to.as_deref(), "to")?;
    let base = state.read(|book| book.fx().base).await?;
    let models = state.read_models(&headers).await?;
    let (rows, truncated) = models.query(move |store| select_suspicious(store, from, to)).await.map_err(store_error)?;
    let cases: Vec<SuspiciousCaseView> = rows
        .iter()
        .map(|rows| {
            let case = case_of_rows(rows)?;
            let alerts = rows.alerts.iter().map(|row| alert_of_row(row)).collect::<Result<Vec<_>, _>>()?;
            let mut rules: Vec<String> = Vec::new();
            for alert in &alerts {
                let name = alert.rule.as_str().to_string();
                if !rules.contains(&name) {
                    rules.push(name);
                }
            }
            let largest = alerts.iter().filter(|alert| alert.rule.is_money()).map(|alert| alert.value).max();
            Ok(SuspiciousCaseView {
                case_id: case.id,
                account_id: case.account_id,
                status: case.status,
                opened_at: case.opened_at,
                updated_at: case.updated_at,
                reference: case.reference,
                rules,
                alerts_total: case.alerts_total,
                largest_amount: largest.map(|minor| base.format(domain::Money::from_minor(minor))),
                currency: base.code().to_string(),
                actions: case.actions,
            })
        })
        .collect::<Result<_, ApiError>>()?;
    let report = SuspiciousActivityReport {
        report: "suspicious-activity".to_string(),
        from: from.map(format_rfc3339),
        to: to.map(format_rfc3339),
        cases,
        truncated,
    };
    if csv {
        return Ok(crate::compliance::csv_response("suspicious-activity", &suspicious_csv(&report)));
    }
    Ok(Json(report).into_response())
}

/// The columns of the suspicious-activity CSV.
pub const SUSPICIOUS_CSV_HEADER: [&str; 11] = [
    "case_id",
    "account_id",
    "status",
    "opened_at",
    "updated_at",
    "reference",
    "rules",
    "alerts",
    "largest_amount",
    "currency",
    "actions",
];

/// One row a case: rules joined with `;`, actions as `action:actor:reason` joined with `;`.
fn suspicious_csv(report: &SuspiciousActivityReport) -> String {
    let mut out = format!("{}\r\n", SUSPICIOUS_CSV_HEADER.join(","));
    for case in &report.cases {
        let actions: Vec<String> = case
            .actions
            .iter()
            .map(|action| format!("{}:{}:{}", action.action, action.actor.id, action.reason))
            .collect();
        let cells = [
            case.case_id.clone(),
            case.account_id.clone(),
            case.status.clone(),
            case.opened_at.clone(),
            case.updated_at.clone(),
            case.reference.clone().unwrap_or_default(),
            case.rules.join(";"),
            case.alerts_total.to_string(),
            case.largest_amount.clone().unwrap_or_default(),
            case.currency.clone(),
            actions.join(";"),
        ];
        for (index, cell) in cells.iter().enumerate() {
            if index > 0 {
                out.push(',');
            }
            crate::compliance::csv_field(&mut out, cell);
        }
        out.push_str("\r\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_rules_survive_their_json() {
        let rules = MonitoringRules::default();
        let body = MonitoringRulesBody::from_rules(&rules, Currency::EUR);
        let text = serde_json::to_string(&body).expect("json");
        let back = MonitoringRulesBody::from_json(&text).expect("parses");
        assert_eq!(back.to_rules(Currency::EUR).expect("valid"), rules);
        let mut off = body.clone();
        off.shared_accounts_max = Some(0);
        assert!(off.to_rules(Currency::EUR).is_err());
        assert!(MonitoringRulesBody::from_json("{\"nonsense\": 1}").is_err());
    }
}
