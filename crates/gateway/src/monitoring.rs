//! AML monitoring and markers of harm at the edge: the rules (`GET|PUT
//! /v1/admin/monitoring-rules`, `serve --monitoring-rules FILE`), the alerts and the case
//! queue with staff actions, and the suspicious-activity report.
//!
//! The book decides everything (`book::monitor`): rules fire on book time, alerts open or
//! join a case, and each staff action is a journaled `CaseAction` command whose origin carries
//! the actor and the reason the action requires (the audit trail shows both). The routes here
//! read the book's open cases: a closed case has left the book, and with it its alerts (the
//! projector's `alerts`, `cases` and `case_actions` tables and the audit trail keep them; no
//! route reads those tables yet).
//!
//! Scopes: `compliance` reads (support staff too, reads only), `compliance` acts on cases,
//! `admin` changes the rules.

use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use book::{
    scopes, Alert, AlertKind, Book, Case, CaseActionKind, CaseActionRequest, CaseId, CaseStatus, Command,
    MonitoringRules, Period, RapidInOut, Rule, Threshold,
};
use domain::Currency;
use serde::{Deserialize, Serialize};

use crate::auth::Principal;
use crate::dto::{parse_id, parse_money};
use crate::error::{ApiError, Json};
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
    summary = "Alerts of the open cases",
    description = "Alerts raised by the monitoring rules, oldest first, of the cases not closed (a closed case's \
        alerts are in the audit trail). Scope: `compliance`.",
    security(("bearer" = [])),
    params(AlertsQuery),
    responses(
        (status = 200, description = "A page of alerts", body = AlertPage),
        (status = 400, description = "An unknown rule, kind or parameter, a bad time, `limit` or `cursor` \
            (`invalid_request`)", body = ApiError),
        (status = 401, description = "No valid credential (`unauthenticated`)", body = ApiError),
        (status = 403, description = "Not a credential with the scope (`forbidden`)", body = ApiError),
    ),
)]
pub(crate) async fn list_alerts(
    principal: Principal,
    State(state): State<AppState>,
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
    let mut alerts = state
        .read(move |book| {
            let monitor = book.monitor();
            let cases: Vec<&Case> = match account {
                Some(account) => monitor.case_of(account).into_iter().collect(),
                None => monitor.cases().collect(),
            };
            let mut found: Vec<Alert> = cases
                .into_iter()
                .flat_map(|case| case.alerts.iter())
                .filter(|alert| alert.id.0 > after)
                .filter(|alert| rule.is_none_or(|rule| alert.rule == rule))
                .filter(|alert| kind.is_none_or(|kind| alert.kind() == kind))
                .filter(|alert| from.is_none_or(|from| alert.at >= from) && to.is_none_or(|to| alert.at < to))
                .cloned()
                .collect();
            found.sort_by_key(|alert| alert.id);
            found.truncate(limit + 1);
            found
        })
        .await?;
    let more = alerts.len() > limit;
    alerts.truncate(limit);
    let next_cursor = if more { alerts.last().map(|alert| alert.id.to_string()) } else { None };
    Ok(Json(AlertPage { items: alerts.iter().map(AlertView::new).collect(), next_cursor }))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct CasesQuery {
    /// `open`, `escalated` or `reported` (closed cases have left the book).
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
    description = "Cases not closed, oldest first, each with its alerts and actions. Scope: `compliance`.",
    security(("bearer" = [])),
    params(CasesQuery),
    responses(
        (status = 200, description = "A page of cases", body = CasePage),
        (status = 400, description = "An unknown status or parameter, a bad `limit` or `cursor` (`invalid_request`)",
            body = ApiError),
        (status = 401, description = "No valid credential (`unauthenticated`)", body = ApiError),
        (status = 403, description = "Not a credential with the scope (`forbidden`)", body = ApiError),
    ),
)]
pub(crate) async fn list_cases(
    principal: Principal,
    State(state): State<AppState>,
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
    let mut cases = state
        .read(move |book| {
            let monitor = book.monitor();
            monitor
                .cases()
                .filter(|case| case.id.0 > after)
                .filter(|case| status.is_none_or(|status| case.status == status))
                .filter(|case| account.is_none_or(|account| case.account == account))
                .take(limit + 1)
                .map(|case| case_view(case, is_frozen(book, case)))
                .collect::<Vec<CaseView>>()
        })
        .await?;
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
    description = "A case not closed. 409 `case_closed` for a case that was closed (it left the book; the audit \
        trail keeps its actions). Scope: `compliance`.",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "A case id", example = "case_1")),
    responses(
        (status = 200, description = "The case", body = CaseView),
        (status = 401, description = "No valid credential (`unauthenticated`)", body = ApiError),
        (status = 403, description = "Not a credential with the scope (`forbidden`)", body = ApiError),
        (status = 404, description = "No such case (`unknown_case`)", body = ApiError),
        (status = 409, description = "The case was closed (`case_closed`)", body = ApiError),
    ),
)]
pub(crate) async fn get_case(
    principal: Principal,
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<CaseView>, ApiError> {
    principal.require_scope(scopes::COMPLIANCE)?;
    let case = parse_case(path)?;
    let (view, issued) = state
        .read(move |book| {
            let view = book.monitor().case(case).map(|found| case_view(found, is_frozen(book, found)));
            (view, book.monitor().cases_issued())
        })
        .await?;
    match view {
        Some(view) => Ok(Json(view)),
        None if case.0 >= 1 && case.0 <= issued => {
            Err(ApiError::from_rejection(&book::Rejection::CaseClosed, Currency::EUR))
        }
        None => Err(unknown_case()),
    }
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
    /// `escalated` or `reported`.
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
}

#[utoipa::path(
    get,
    path = "/v1/admin/reports/suspicious-activity",
    tag = "monitoring",
    summary = "The suspicious-activity report",
    description = "Cases escalated or reported (and not closed) that changed in the window, with the account, the \
        rules that fired, the largest amount, and every action. JSON, or CSV with `?format=csv`. Scope: \
        `compliance`.",
    security(("bearer" = [])),
    params(SuspiciousActivityQuery),
    responses(
        (status = 200, description = "The report", content((SuspiciousActivityReport = "application/json"),
            (String = "text/csv"))),
        (status = 400, description = "A bad time or `format`, an unknown parameter (`invalid_request`)",
            body = ApiError),
        (status = 401, description = "No valid credential (`unauthenticated`)", body = ApiError),
        (status = 403, description = "Not a credential with the scope (`forbidden`)", body = ApiError),
    ),
)]
pub(crate) async fn suspicious_activity(
    principal: Principal,
    State(state): State<AppState>,
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
    let (cases, base) = state
        .read(move |book| {
            let cases: Vec<Case> = book
                .monitor()
                .cases()
                .filter(|case| matches!(case.status, CaseStatus::Escalated | CaseStatus::Reported))
                .filter(|case| {
                    from.is_none_or(|from| case.updated_at >= from) && to.is_none_or(|to| case.updated_at < to)
                })
                .cloned()
                .collect();
            (cases, book.fx().base)
        })
        .await?;
    let cases: Vec<SuspiciousCaseView> = cases
        .iter()
        .map(|case| {
            let mut rules: Vec<String> = Vec::new();
            for alert in &case.alerts {
                let name = alert.rule.as_str().to_string();
                if !rules.contains(&name) {
                    rules.push(name);
                }
            }
            let largest = case.alerts.iter().filter(|alert| alert.rule.is_money()).map(|alert| alert.value).max();
            SuspiciousCaseView {
                case_id: case.id.to_string(),
                account_id: case.account.to_string(),
                status: case.status.as_str().to_string(),
                opened_at: format_rfc3339(case.opened_at),
                updated_at: format_rfc3339(case.updated_at),
                reference: case.reference.clone(),
                rules,
                alerts_total: case.alerts_total,
                largest_amount: largest.map(|minor| base.format(domain::Money::from_minor(minor))),
                currency: base.code().to_string(),
                actions: case.actions.iter().map(action_view).collect(),
            }
        })
        .collect();
    let report = SuspiciousActivityReport {
        report: "suspicious-activity".to_string(),
        from: from.map(format_rfc3339),
        to: to.map(format_rfc3339),
        cases,
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
