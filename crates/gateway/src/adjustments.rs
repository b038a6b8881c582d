//! Manual balance adjustments by staff (`book::adjustment` decides them):
//!
//! - `POST /v1/admin/accounts/{id}/adjustments` `{amount, currency?, direction, reason}` with an
//!   `Idempotency-Key`: within the staff member's role limit the credit or debit is posted at
//!   once (201 `completed`); above it, it waits for a second staff member (201
//!   `pending_approval`).
//! - `GET /v1/admin/adjustments?status=pending`: the requests waiting for approval.
//! - `POST /v1/admin/adjustments/{id}/approve`: another staff member whose limit covers it
//!   posts it (four eyes: never the requester).
//! - `POST /v1/admin/adjustments/{id}/reject` `{reason}`.
//!
//! Adjustments are for humans: only staff tokens may make, approve or reject them; an API key
//! gets 403 `forbidden`, whatever its scopes (a machine has no second pair of eyes, and the
//! audit trail must name the person). Who may adjust, and how much, is the book's decision
//! from the member's roles (traders and settlement may not; support up to its limit even
//! though its other scopes are read-only).

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::handler::Handler;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use book::{
    scopes, AccountId, Ack, AdjustmentDirection, AdjustmentId, Command, Rejection, StaffId, ADJUSTMENT_REASON_BYTES_MAX,
};
use domain::Currency;
use serde::{Deserialize, Serialize};

use crate::dto::{idempotency, parse_id, parse_money, IdempotencyKey};
use crate::error::{require_json, ApiError, Json};
use crate::requests::check_text;
use crate::time::format_rfc3339;
use crate::{AppState, Principal};

/// Pending adjustments in one page of `GET /v1/admin/adjustments`.
pub const ADJUSTMENTS_PAGE_MAX: usize = 200;

pub fn routes() -> Router<AppState> {
    let json = || axum::middleware::from_fn(require_json);
    Router::new()
        .route("/v1/admin/accounts/{id}/adjustments", post(request.layer(json())))
        .route("/v1/admin/adjustments", get(list_pending))
        .route("/v1/admin/adjustments/{id}/approve", post(approve))
        .route("/v1/admin/adjustments/{id}/reject", post(reject))
}

/// The staff member behind the request: adjustments are for humans.
fn staff_of(principal: &Principal) -> Result<StaffId, ApiError> {
    match principal {
        Principal::Staff { staff, .. } => Ok(*staff),
        _ => Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "balance adjustments are made, approved and rejected by staff members only",
        )),
    }
}

/// A book rejection of an adjustment command as the API answers it.
fn refused(rejection: &Rejection, currency: Currency) -> ApiError {
    match rejection {
        Rejection::InvalidRequest { reason } => ApiError::invalid(*reason),
        Rejection::UnknownAccount => ApiError::not_found("account"),
        Rejection::UnknownAdjustment => ApiError::not_found("adjustment"),
        other => ApiError::from_rejection(other, currency),
    }
}

#[derive(Clone, Copy, Debug, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DirectionName {
    Credit,
    Debit,
}

impl From<AdjustmentDirection> for DirectionName {
    fn from(direction: AdjustmentDirection) -> DirectionName {
        match direction {
            AdjustmentDirection::Credit => DirectionName::Credit,
            AdjustmentDirection::Debit => DirectionName::Debit,
        }
    }
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AdjustmentRequest {
    /// Positive, in the account's currency.
    #[schema(example = "25.00", pattern = r"^[0-9]{1,18}(\.[0-9]+)?$")]
    pub amount: String,
    /// The account's currency, if given (a guard against adjusting in the wrong one).
    #[schema(example = "EUR")]
    pub currency: Option<String>,
    pub direction: DirectionName,
    /// Why (required): journaled with the adjustment and shown in the audit trail.
    #[schema(example = "goodwill credit after the outage of 3 May", min_length = 1, max_length = 500)]
    pub reason: String,
}

/// An adjustment: done (`completed`, with the transaction that posted it), waiting for a
/// second staff member (`pending_approval`, until `expires_at`), or `rejected`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AdjustmentView {
    #[schema(example = "completed")]
    pub status: &'static str,
    #[schema(example = "adj_1")]
    pub adjustment_id: String,
    pub account_id: String,
    pub amount: String,
    pub currency: String,
    pub direction: DirectionName,
    pub reason: String,
    /// The staff member who asked.
    #[schema(example = "stf_2")]
    pub requested_by: String,
    /// The staff member who approved or rejected it, when someone did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub decided_by: Option<String>,
    /// The ledger transaction that posted it, once completed (in the player's
    /// `GET /v1/wallet/transactions`, type `adjustment_credit` or `adjustment_debit`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub transaction_id: Option<String>,
    /// When a pending request expires unless approved (24 hours after it was made).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
    /// When it was asked for (pending requests).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub requested_at: Option<String>,
}

#[utoipa::path(
    post,
    path = "/v1/admin/accounts/{id}/adjustments",
    tag = "adjustments",
    summary = "Adjust a player's balance",
    description = "Credits or debits the player's cash by an exact amount against the operator's adjustments account, \
        with a reason. Within the staff member's role limit (in the base currency: support 50.00, compliance \
        1,000.00, admin without a limit by default; traders and settlement may not adjust) it is posted at once; \
        above it, it waits for approval by another staff member whose limit covers it, for 24 hours. A debit never \
        takes more than the player's free cash. Staff tokens only: API keys get 403. Idempotent with \
        `Idempotency-Key` (required).",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "A player's account id", example = "acc_1"), IdempotencyKey),
    request_body = AdjustmentRequest,
    responses(
        (status = 201, description = "Posted (`completed`) or waiting for approval (`pending_approval`)",
            body = AdjustmentView),
        (status = 400, description = "Malformed body, unknown field, a bad amount, a currency other than the \
            account's, a missing or too long `reason`, or a bad `Idempotency-Key` (`invalid_request`, names the \
            `field`), too many pending requests (`invalid_request`), or no `Idempotency-Key` \
            (`idempotency_key_required`)", body = ApiError),
        (status = 401, description = "No valid credential (`unauthenticated`)", body = ApiError),
        (status = 403, description = "Not a staff token (`forbidden`), or the member's roles may not adjust \
            balances (`adjustment_forbidden`)", body = ApiError),
        (status = 404, description = "No such account (`not_found`)", body = ApiError),
        (status = 413, description = "Body over the size limit (`payload_too_large`)", body = ApiError),
        (status = 415, description = "Not `Content-Type: application/json` (`unsupported_media_type`)",
            body = ApiError),
        (status = 422, description = "A debit beyond the player's free cash (`insufficient_funds`), a balance past \
            the money maximum (`amount_too_large`), no exchange rate for the account's currency \
            (`fx_rate_missing`), or the idempotency key was used with another body (`idempotency_key_reused`)",
            body = ApiError),
    ),
)]
pub(crate) async fn request(
    principal: Principal,
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let staff = staff_of(&principal)?;
    let Path(text) = path.map_err(|_| ApiError::not_found("account"))?;
    let account = AccountId(parse_id(&text, "acc_", "account").map_err(|_| ApiError::not_found("account"))?);
    let bytes = match &body {
        Ok(bytes) => bytes.as_ref(),
        Err(rejection) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            return Err(ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                "the request body is too large",
            ))
        }
        Err(rejection) => return Err(ApiError::invalid(rejection.body_text())),
    };
    let request: AdjustmentRequest = crate::requests::json_body(bytes)?;
    let currency = state
        .read(move |book| book.players().get(account.index()).map(|player| player.currency))
        .await?
        .ok_or_else(|| ApiError::not_found("account"))?;
    if request.currency.as_deref().is_some_and(|code| code != currency.code()) {
        return Err(
            ApiError::invalid(format!("the account's currency is {}", currency.code())).with("field", "currency")
        );
    }
    let amount = parse_money(currency, &request.amount, "amount")?;
    if !amount.is_positive() {
        return Err(ApiError::invalid("amount must be positive").with("field", "amount"));
    }
    check_text(&request.reason, "reason", 1, ADJUSTMENT_REASON_BYTES_MAX)?;
    let key = idempotency(&headers, bytes)?;
    let direction = match request.direction {
        DirectionName::Credit => AdjustmentDirection::Credit,
        DirectionName::Debit => AdjustmentDirection::Debit,
    };
    let reply = match state.first_reply(account, &key).await? {
        Some(reply) => reply,
        None => {
            let command = Command::RequestAdjustment {
                account,
                amount,
                direction,
                reason: request.reason.clone(),
                staff,
                idempotency: Some(key),
            };
            let origin = principal.origin().with_reason(Some(request.reason.clone()));
            state.submit(command, origin).await?
        }
    };
    let mut view = AdjustmentView {
        status: "completed",
        adjustment_id: String::new(),
        account_id: account.to_string(),
        amount: currency.format(amount),
        currency: currency.code().to_string(),
        direction: request.direction,
        reason: request.reason,
        requested_by: staff.to_string(),
        decided_by: None,
        transaction_id: None,
        expires_at: None,
        requested_at: None,
    };
    match reply {
        Ok(Ack::AdjustmentCompleted { adjustment, transfer }) => {
            view.adjustment_id = adjustment.to_string();
            view.transaction_id = Some(transfer.to_string());
        }
        Ok(Ack::AdjustmentPending { adjustment, expires_at }) => {
            view.status = "pending_approval";
            view.adjustment_id = adjustment.to_string();
            view.expires_at = Some(format_rfc3339(expires_at));
        }
        Ok(_) => return Err(ApiError::internal("an adjustment answered with another ack")),
        Err(rejection) => return Err(refused(&rejection, currency)),
    }
    Ok((StatusCode::CREATED, Json(view)).into_response())
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AdjustmentsQuery {
    /// `pending` (the default and the only status the book holds: completed adjustments are
    /// in the account's transactions and the audit trail).
    #[param(example = "pending")]
    pub status: Option<String>,
    /// Items per page, 1 to 200 (default 50).
    pub limit: Option<usize>,
    /// The `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

/// A page of pending adjustments, oldest first.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AdjustmentPage {
    pub items: Vec<AdjustmentView>,
    #[schema(required = true)]
    pub next_cursor: Option<String>,
}

#[utoipa::path(
    get,
    path = "/v1/admin/adjustments",
    tag = "adjustments",
    summary = "Pending adjustments",
    description = "Adjustments waiting for a second staff member's approval, oldest first. Scope: `compliance` \
        (support reads it too).",
    security(("bearer" = [])),
    params(AdjustmentsQuery),
    responses(
        (status = 200, description = "A page of pending adjustments", body = AdjustmentPage),
        (status = 400, description = "A status other than `pending`, a bad `limit` or `cursor`, or an unknown \
            parameter (`invalid_request`)", body = ApiError),
        (status = 401, description = "No valid credential (`unauthenticated`)", body = ApiError),
        (status = 403, description = "Not a credential with the scope (`forbidden`)", body = ApiError),
    ),
)]
pub(crate) async fn list_pending(
    principal: Principal,
    State(state): State<AppState>,
    query: Result<Query<AdjustmentsQuery>, QueryRejection>,
) -> Result<Json<AdjustmentPage>, ApiError> {
    principal.require_scope(scopes::COMPLIANCE)?;
    let Query(query) = query.map_err(|rejection| ApiError::invalid(rejection.body_text()))?;
    if query.status.as_deref().is_some_and(|status| status != "pending") {
        return Err(ApiError::invalid("status: only pending adjustments are listed here").with("field", "status"));
    }
    let limit = match query.limit {
        None => 50,
        Some(limit) if (1..=ADJUSTMENTS_PAGE_MAX).contains(&limit) => limit,
        Some(_) => return Err(ApiError::invalid(format!("limit must be 1 to {ADJUSTMENTS_PAGE_MAX}"))),
    };
    let after = match &query.cursor {
        None => 0,
        Some(cursor) => parse_id(cursor, "adj_", "cursor").map_err(|_| ApiError::invalid("unknown cursor"))?,
    };
    let (mut items, more) = state
        .read(move |book| {
            let mut pending = book.adjustments().pending.range(AdjustmentId(after + 1)..);
            let items: Vec<AdjustmentView> = pending
                .by_ref()
                .take(limit)
                .map(|(_, adjustment)| {
                    let currency =
                        book.players().get(adjustment.account.index()).map_or(book.fx().base, |player| player.currency);
                    pending_view(adjustment, currency)
                })
                .collect();
            (items, pending.next().is_some())
        })
        .await?;
    let next_cursor = if more { items.last().map(|item| item.adjustment_id.clone()) } else { None };
    items.truncate(limit);
    Ok(Json(AdjustmentPage { items, next_cursor }))
}

fn pending_view(adjustment: &book::Adjustment, currency: Currency) -> AdjustmentView {
    AdjustmentView {
        status: "pending_approval",
        adjustment_id: adjustment.id.to_string(),
        account_id: adjustment.account.to_string(),
        amount: currency.format(adjustment.amount),
        currency: currency.code().to_string(),
        direction: adjustment.direction.into(),
        reason: adjustment.reason.clone(),
        requested_by: adjustment.requested_by.to_string(),
        decided_by: None,
        transaction_id: None,
        expires_at: Some(format_rfc3339(adjustment.expires_at)),
        requested_at: Some(format_rfc3339(adjustment.requested_at)),
    }
}

/// The pending adjustment `id` names, with its account's currency: 404 when it never
/// existed, 409 `adjustment_not_pending` when it was completed, rejected or expired.
async fn pending(
    state: &AppState,
    path: Result<Path<String>, PathRejection>,
) -> Result<(book::Adjustment, Currency), ApiError> {
    let Path(text) = path.map_err(|_| ApiError::not_found("adjustment"))?;
    let id = AdjustmentId(parse_id(&text, "adj_", "adjustment").map_err(|_| ApiError::not_found("adjustment"))?);
    let found = state
        .read(move |book| {
            let adjustments = book.adjustments();
            match adjustments.pending.get(&id) {
                Some(adjustment) => {
                    let currency = book.players().get(adjustment.account.index()).map(|player| player.currency);
                    Ok((adjustment.clone(), currency.unwrap_or(book.fx().base)))
                }
                None if id.0 >= 1 && id.0 <= adjustments.issued => Err(Rejection::AdjustmentNotPending),
                None => Err(Rejection::UnknownAdjustment),
            }
        })
        .await?;
    found.map_err(|rejection| refused(&rejection, Currency::EUR))
}

#[utoipa::path(
    post,
    path = "/v1/admin/adjustments/{id}/approve",
    tag = "adjustments",
    summary = "Approve a pending adjustment",
    description = "Posts a pending adjustment. Four eyes: the approver is a staff member other than the requester, \
        whose own role limit covers the amount. No body. Approving twice never posts twice: the second answer is \
        409 `adjustment_not_pending`.",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "An adjustment id", example = "adj_1")),
    responses(
        (status = 200, description = "Posted (`completed`, with `transaction_id` and `decided_by`)",
            body = AdjustmentView),
        (status = 401, description = "No valid credential (`unauthenticated`)", body = ApiError),
        (status = 403, description = "Not a staff token (`forbidden`), the member's roles may not adjust \
            (`adjustment_forbidden`), the member asked for it (`self_approval`), or it is above the member's limit \
            (`approval_limit`)", body = ApiError),
        (status = 404, description = "No such adjustment (`not_found`)", body = ApiError),
        (status = 409, description = "Completed, rejected or expired already (`adjustment_not_pending`)",
            body = ApiError),
        (status = 422, description = "A debit beyond the player's free cash now (`insufficient_funds`) or a \
            balance past the money maximum (`amount_too_large`); the request stays pending", body = ApiError),
    ),
)]
pub(crate) async fn approve(
    principal: Principal,
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<AdjustmentView>, ApiError> {
    let staff = staff_of(&principal)?;
    let (adjustment, currency) = pending(&state, path).await?;
    let command = Command::ApproveAdjustment { adjustment: adjustment.id, account: adjustment.account, staff };
    let reply = state.submit(command, principal.origin()).await?;
    let mut view = pending_view(&adjustment, currency);
    match reply {
        Ok(Ack::AdjustmentCompleted { transfer, .. }) => {
            view.status = "completed";
            view.transaction_id = Some(transfer.to_string());
            view.decided_by = Some(staff.to_string());
            view.expires_at = None;
        }
        Ok(_) => return Err(ApiError::internal("an approval answered with another ack")),
        Err(rejection) => return Err(refused(&rejection, currency)),
    }
    Ok(Json(view))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RejectAdjustmentRequest {
    /// Why (required): journaled and shown in the audit trail.
    #[schema(example = "no evidence of the outage for this account", min_length = 1, max_length = 500)]
    pub reason: String,
}

#[utoipa::path(
    post,
    path = "/v1/admin/adjustments/{id}/reject",
    tag = "adjustments",
    summary = "Reject a pending adjustment",
    description = "Refuses a pending adjustment, with a reason; nothing is posted. Any staff member whose roles may \
        adjust may reject (the requester may withdraw their own).",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "An adjustment id", example = "adj_1")),
    request_body = RejectAdjustmentRequest,
    responses(
        (status = 200, description = "Rejected (`rejected`, with `decided_by`)", body = AdjustmentView),
        (status = 400, description = "Malformed body, unknown field, or a missing or too long `reason` \
            (`invalid_request`, names the `field`)", body = ApiError),
        (status = 401, description = "No valid credential (`unauthenticated`)", body = ApiError),
        (status = 403, description = "Not a staff token (`forbidden`), or the member's roles may not adjust \
            (`adjustment_forbidden`)", body = ApiError),
        (status = 404, description = "No such adjustment (`not_found`)", body = ApiError),
        (status = 409, description = "Completed, rejected or expired already (`adjustment_not_pending`)",
            body = ApiError),
        (status = 413, description = "Body over the size limit (`payload_too_large`)", body = ApiError),
        (status = 415, description = "Not `Content-Type: application/json` (`unsupported_media_type`)",
            body = ApiError),
    ),
)]
pub(crate) async fn reject(
    principal: Principal,
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
    body: Result<Json<RejectAdjustmentRequest>, ApiError>,
) -> Result<Json<AdjustmentView>, ApiError> {
    let staff = staff_of(&principal)?;
    let Json(request) = body?;
    check_text(&request.reason, "reason", 1, ADJUSTMENT_REASON_BYTES_MAX)?;
    let (adjustment, currency) = pending(&state, path).await?;
    let command = Command::RejectAdjustment {
        adjustment: adjustment.id,
        account: adjustment.account,
        staff,
        reason: request.reason.clone(),
    };
    let reply = state.submit(command, principal.origin().with_reason(Some(request.reason))).await?;
    if let Err(rejection) = reply {
        return Err(refused(&rejection, currency));
    }
    let mut view = pending_view(&adjustment, currency);
    view.status = "rejected";
    view.decided_by = Some(staff.to_string());
    view.expires_at = None;
    Ok(Json(view))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_staff_may_adjust() {
        let key = Principal::Operator { key: None, scopes: scopes::ALL };
        assert!(staff_of(&key).is_err(), "an API key");
        let staff = Principal::Staff { staff: StaffId(3), scopes: 0, read_only: true };
        assert_eq!(staff_of(&staff).expect("staff"), StaffId(3));
    }
}
