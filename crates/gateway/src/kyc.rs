//! Identity verification (KYC) at the edge: the jurisdictions a country belongs to, the
//! sandbox verification provider, its signed webhooks, and compliance staff's hand.
//!
//! - **Jurisdictions** (`KycSettings::jurisdictions`, `serve --kyc-jurisdictions FILE`): each
//!   lists its countries (ISO 3166-1 alpha-2), a minimum age, and the rules the book applies
//!   (`book::KycRules`: lifetime deposits allowed until verified, re-verification above
//!   lifetime deposits, how long a verification lasts). With jurisdictions configured, a
//!   registration from a country in none is refused (422 `country_not_allowed`), one under the
//!   jurisdiction's age 422 `underage`; the player is tracked under its rules and their
//!   verification asked of the provider (`pending`).
//! - **No jurisdiction configured** (the default): the sandbox verifies every player at
//!   registration, without rules, so `serve`, the demo and existing clients behave as before.
//! - **The sandbox provider** answers a request at once from the configuration
//!   (`KycSettings::sandbox`) and the player's data: a username ending in `_kycpending` stays
//!   pending (its answer is to come by webhook), one ending in `_kycreject` is rejected, any
//!   other gets the configured outcome (`verified` unless told `pending`).
//! - **Webhooks** (`POST /v1/kyc/callbacks/{provider}`) pass `callbacks.rs` exactly like the
//!   payment provider's: HMAC-SHA256 signature (`Payment-Signature`), timestamp window,
//!   callback ids answered once. The book makes a state given twice a no-op, so a replay after
//!   a restart changes nothing either.
//! - **Compliance staff** set a state by hand with a reason (`PUT /v1/admin/accounts/{id}/kyc`);
//!   the audit trail shows who and why.

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{post, put};
use axum::Router;
use book::{scopes, AccountId, Ack, Actor, Book, Command, KycRules, KycState, Origin, Rejection};
use domain::{Currency, Date, Money};
use serde::{Deserialize, Serialize};

use crate::auth::Principal;
use crate::dto::parse_id;
use crate::error::{ApiError, Json};
use crate::time::format_rfc3339;
use crate::AppState;

/// The verification provider's name in webhook paths.
pub const KYC_SANDBOX_PROVIDER: &str = "sandbox";
/// Jurisdictions configured at most.
pub const JURISDICTIONS_MAX: usize = 64;
/// Countries of one jurisdiction at most.
pub const JURISDICTION_COUNTRIES_MAX: usize = 300;

/// What the sandbox answers to a verification request.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SandboxOutcome {
    /// Verified at once (the default).
    #[default]
    Verified,
    /// Left pending: the answer comes by webhook.
    Pending,
}

/// One jurisdiction's rules.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Jurisdiction {
    pub name: String,
    /// ISO 3166-1 alpha-2 codes, upper case.
    pub countries: Vec<String>,
    /// Registration is refused younger than this (never below the book's 18).
    #[serde(default = "age_min_default")]
    pub age_min_years: u32,
    /// Lifetime deposits allowed until verified, in minor units of the player's currency.
    #[serde(default)]
    pub deposit_cap_minor: Option<i64>,
    /// Lifetime deposits (minor units) past which a player is verified again.
    #[serde(default)]
    pub reverify_above_minor: Option<i64>,
    /// How many days a verification lasts.
    #[serde(default)]
    pub expiry_days: Option<u32>,
}

fn age_min_default() -> u32 {
    book::AGE_MIN_YEARS
}

impl Jurisdiction {
    pub fn rules(&self) -> KycRules {
        KycRules {
            deposit_cap: self.deposit_cap_minor.map(Money::from_minor),
            reverify_above: self.reverify_above_minor.map(Money::from_minor),
            expiry_ms: self.expiry_days.map(|days| u64::from(days) * 86_400_000),
        }
    }
}

/// The KYC configuration of a gateway; the default has no jurisdiction and no webhooks.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KycSettings {
    #[serde(default)]
    pub jurisdictions: Vec<Jurisdiction>,
    #[serde(default)]
    pub sandbox: SandboxOutcome,
    /// The webhooks' shared secret and window; `None`: webhooks are refused (`bad_signature`).
    #[serde(skip)]
    pub callbacks: Option<crate::PaymentCallbacks>,
}

impl KycSettings {
    /// Reads and checks a jurisdictions file (JSON: `{"jurisdictions": [...], "sandbox": ...}`).
    pub fn from_json(text: &str) -> Result<KycSettings, String> {
        let settings: KycSettings = serde_json::from_str(text).map_err(|error| error.to_string())?;
        settings.check()?;
        Ok(settings)
    }

    fn check(&self) -> Result<(), String> {
        if self.jurisdictions.len() > JURISDICTIONS_MAX {
            return Err(format!("at most {JURISDICTIONS_MAX} jurisdictions"));
        }
        let mut seen = std::collections::BTreeSet::new();
        for jurisdiction in &self.jurisdictions {
            let name = &jurisdiction.name;
            if name.is_empty() || name.len() > 64 {
                return Err("a jurisdiction's name is 1 to 64 bytes".to_string());
            }
            if jurisdiction.countries.is_empty() || jurisdiction.countries.len() > JURISDICTION_COUNTRIES_MAX {
                return Err(format!("jurisdiction {name}: 1 to {JURISDICTION_COUNTRIES_MAX} countries"));
            }
            for country in &jurisdiction.countries {
                let alpha2 = country.len() == 2 && country.bytes().all(|byte| byte.is_ascii_uppercase());
                if !alpha2 || !seen.insert(country.clone()) {
                    return Err(format!("jurisdiction {name}: country {country:?} malformed or listed twice"));
                }
            }
            if jurisdiction.age_min_years < book::AGE_MIN_YEARS || jurisdiction.age_min_years > 100 {
                return Err(format!("jurisdiction {name}: age_min_years is 18 to 100"));
            }
            let amounts = [jurisdiction.deposit_cap_minor, jurisdiction.reverify_above_minor];
            if amounts.into_iter().flatten().any(|minor| !(0..=domain::MONEY_MINOR_MAX).contains(&minor)) {
                return Err(format!("jurisdiction {name}: amounts are 0 to the money maximum"));
            }
            if jurisdiction.expiry_days.is_some_and(|days| days == 0 || days > 36_600) {
                return Err(format!("jurisdiction {name}: expiry_days is 1 to 36600"));
            }
        }
        Ok(())
    }

    /// The jurisdiction of a country, when any is configured.
    pub fn jurisdiction_of(&self, country: &str) -> Option<&Jurisdiction> {
        self.jurisdictions.iter().find(|jurisdiction| jurisdiction.countries.iter().any(|c| c == country))
    }
}

/// The registration check: with jurisdictions configured, the country must be in one and the
/// player old enough for it. Returns the jurisdiction.
pub(crate) fn check_registration(
    settings: &KycSettings,
    country: &str,
    date_of_birth: Date,
    today: Date,
) -> Result<Option<Jurisdiction>, ApiError> {
    if settings.jurisdictions.is_empty() {
        return Ok(None);
    }
    let jurisdiction = settings.jurisdiction_of(country).ok_or_else(|| {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "country_not_allowed",
            "registration from this country is not allowed",
        )
        .with("field", "country")
    })?;
    if date_of_birth.years_until(today) < jurisdiction.age_min_years {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "underage",
            format!("players in {} must be at least {}", jurisdiction.name, jurisdiction.age_min_years),
        )
        .with("age_min_years", jurisdiction.age_min_years));
    }
    Ok(Some(jurisdiction.clone()))
}

/// What the sandbox answers for a player.
fn sandbox_decides(settings: &KycSettings, username: &str) -> KycState {
    if username.ends_with("_kycreject") {
        KycState::Rejected
    } else if username.ends_with("_kycpending") || settings.sandbox == SandboxOutcome::Pending {
        KycState::Pending
    } else {
        KycState::Verified
    }
}

fn sandbox_origin() -> Origin {
    Origin::new(Actor::System(format!("kyc:{KYC_SANDBOX_PROVIDER}")))
}

fn sandbox_reference(account: AccountId) -> String {
    format!("{KYC_SANDBOX_PROVIDER}-{account}")
}

/// After a registration: without jurisdictions the sandbox verifies the player; with one, the
/// player is tracked under its rules, their verification asked (pending) and the sandbox's
/// answer applied.
pub(crate) async fn after_registration(
    state: &AppState,
    account: AccountId,
    username: &str,
    jurisdiction: Option<&Jurisdiction>,
) -> Result<(), ApiError> {
    // No jurisdiction: the registration is the sandbox's verification, and nothing more is
    // journaled (the player is not tracked, so nothing is restricted; the views show them
    // verified at registration). Existing clients and journals see no change.
    let Some(jurisdiction) = jurisdiction else { return Ok(()) };
    let reference = Some(sandbox_reference(account));
    let rules = Command::SetKycRules { account, rules: jurisdiction.rules() };
    expect_done(state.submit(rules, Origin::system("registration")).await?)?;
    let asked = Command::SetKycState { account, state: KycState::Pending, reference: reference.clone() };
    expect_done(state.submit(asked, sandbox_origin()).await?)?;
    let decided = sandbox_decides(state.kyc(), username);
    if decided != KycState::Pending {
        let answer = Command::SetKycState { account, state: decided, reference };
        expect_done(state.submit(answer, sandbox_origin()).await?)?;
    }
    Ok(())
}

fn expect_done(reply: book::Reply) -> Result<(), ApiError> {
    match reply {
        Ok(Ack::Done) => Ok(()),
        Ok(_) => Err(ApiError::internal("a kyc command answered with another ack")),
        Err(rejection) => Err(kyc_error(&rejection)),
    }
}

fn kyc_error(rejection: &Rejection) -> ApiError {
    match rejection {
        Rejection::UnknownAccount => ApiError::not_found("account"),
        other => ApiError::from_rejection(other, Currency::EUR),
    }
}

/// A player's verification as the API shows it.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct KycStateView {
    /// `unverified`, `pending`, `verified`, `rejected` or `expired`.
    #[schema(example = "verified")]
    pub state: String,
    /// When the state last changed (RFC 3339).
    pub changed_at: String,
    /// The provider's reference.
    #[schema(required = true)]
    pub reference: Option<String>,
    /// When the verification expires, under an expiry rule.
    #[schema(required = true)]
    pub expires_at: Option<String>,
    /// Lifetime deposits allowed until verified, in the player's currency.
    #[schema(required = true)]
    pub deposit_cap: Option<String>,
    /// Lifetime deposits counted against the rules; null for a player under none.
    #[schema(required = true)]
    pub deposited: Option<String>,
}

/// The view of `account`'s verification. A registered player the book does not track (no
/// jurisdiction configured, or registered before KYC) was verified by the sandbox at
/// registration and has no rule; `None` for an account opened without registration.
pub(crate) fn kyc_view(book: &Book, account: AccountId, currency: Currency) -> Option<KycStateView> {
    let Some(kyc) = book.kyc().get(account) else {
        let profile = book.players().get(account.index())?.profile.as_ref()?;
        return Some(KycStateView {
            state: KycState::Verified.name().to_string(),
            changed_at: format_rfc3339(profile.registered_at),
            reference: None,
            expires_at: None,
            deposit_cap: None,
            deposited: None,
        });
    };
    let now = book.now();
    let state = kyc.effective(now);
    Some(KycStateView {
        state: state.name().to_string(),
        changed_at: format_rfc3339(match (state, kyc.expires_at()) {
            (KycState::Expired, Some(at)) if kyc.state == KycState::Verified => at,
            _ => kyc.changed_at,
        }),
        reference: kyc.reference.clone(),
        expires_at: kyc.expires_at().filter(|_| state == KycState::Verified).map(format_rfc3339),
        deposit_cap: kyc.rules.deposit_cap.map(|cap| currency.format(cap)),
        deposited: Some(currency.format(Money::from_minor(kyc.deposited))),
    })
}

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/kyc/callbacks/{provider}", post(kyc_callback))
        .route("/v1/admin/accounts/{id}/kyc", put(set_kyc))
        .route("/v1/players/me/kyc", axum::routing::get(my_kyc).post(request_kyc))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetKycRequest {
    /// `unverified`, `pending`, `verified`, `rejected` or `expired`.
    #[schema(example = "verified")]
    pub state: String,
    /// Why, 1 to 500 bytes: shown in the audit trail.
    #[schema(example = "documents checked by hand")]
    pub reason: String,
    /// A reference of the check, when there is one.
    #[serde(default)]
    pub reference: Option<String>,
}

fn parse_state(text: &str) -> Result<KycState, ApiError> {
    KycState::parse(text).ok_or_else(|| {
        ApiError::invalid("state: unverified, pending, verified, rejected or expired").with("field", "state")
    })
}

#[utoipa::path(
    put,
    path = "/v1/admin/accounts/{id}/kyc",
    tag = "operators",
    summary = "Set a player's KYC state by hand",
    description = "Compliance staff set a player's identity-verification state, with a reason (shown in the audit \
        trail with who did it). `expired` only follows a verification. Scope: `compliance`.",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "A player's account id", example = "acc_1")),
    request_body = SetKycRequest,
    responses(
        (status = 200, description = "The player's verification now", body = KycStateView),
        (status = 400, description = "Malformed body, unknown field or state, a missing or too long `reason` or \
            `reference` (`invalid_request`, names the `field`)", body = ApiError),
        (status = 401, description = "No valid credential (`unauthenticated`)", body = ApiError),
        (status = 403, description = "Not a credential with the scope (`forbidden`)", body = ApiError),
        (status = 404, description = "No such account (`not_found`)", body = ApiError),
        (status = 409, description = "Not a move of the state machine (`kyc_conflict`)", body = ApiError),
        (status = 413, description = "Body over the size limit (`payload_too_large`)", body = ApiError),
        (status = 415, description = "Not `Content-Type: application/json` (`unsupported_media_type`)", body = ApiError),
    ),
)]
pub(crate) async fn set_kyc(
    principal: Principal,
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
    body: Result<Json<SetKycRequest>, ApiError>,
) -> Result<Json<KycStateView>, ApiError> {
    principal.require_scope(scopes::COMPLIANCE)?;
    let Path(text) = path.map_err(|_| ApiError::not_found("account"))?;
    let account = AccountId(parse_id(&text, "acc_", "account").map_err(|_| ApiError::not_found("account"))?);
    let Json(request) = body?;
    let kyc_state = parse_state(&request.state)?;
    crate::requests::check_text(&request.reason, "reason", 1, book::constants::REASON_BYTES_MAX)?;
    if let Some(reference) = &request.reference {
        crate::requests::check_text(reference, "reference", 1, book::KYC_REFERENCE_BYTES_MAX)?;
    }
    let origin = principal.origin().with_reason(Some(request.reason));
    let command = Command::SetKycState { account, state: kyc_state, reference: request.reference };
    let (reply, view) = state
        .submit_then(command, origin, move |book, _| {
            let currency = book.players().get(account.index())?.currency;
            kyc_view(book, account, currency)
        })
        .await?;
    expect_done(reply)?;
    view.map(Json).ok_or_else(|| ApiError::not_found("account"))
}

#[utoipa::path(
    get,
    path = "/v1/players/me/kyc",
    tag = "players",
    summary = "My identity verification",
    description = "The player's KYC state, when it last changed, the provider's reference, and the rules that depend \
        on it (a deposit cap until verified). 404 `not_found` for an account not tracked (opened without \
        registration). A player registered where no jurisdiction is configured was verified by the sandbox at \
        registration.",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The player's verification", body = KycStateView),
        (status = 401, description = "No valid credential (`unauthenticated`)", body = ApiError),
        (status = 403, description = "Not a player's credential (`forbidden`)", body = ApiError),
        (status = 404, description = "Not tracked (`not_found`)", body = ApiError),
    ),
)]
pub(crate) async fn my_kyc(
    principal: Principal,
    State(state): State<AppState>,
) -> Result<Json<KycStateView>, ApiError> {
    let (account, currency) = principal.player()?;
    let view = state.read(move |book| kyc_view(book, account, currency)).await?;
    view.map(Json).ok_or_else(|| ApiError::not_found("kyc record"))
}

#[utoipa::path(
    post,
    path = "/v1/players/me/kyc",
    tag = "players",
    summary = "Ask for my identity verification",
    description = "Asks the provider to verify the player again (after a rejection, an expiry, or a re-verification \
        above the lifetime deposit threshold): the state becomes `pending` and the sandbox answers as at \
        registration. A verified player's request changes nothing.",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The player's verification now", body = KycStateView),
        (status = 401, description = "No valid credential (`unauthenticated`)", body = ApiError),
        (status = 403, description = "Not a player's credential (`forbidden`)", body = ApiError),
    ),
)]
pub(crate) async fn request_kyc(
    principal: Principal,
    State(state): State<AppState>,
) -> Result<Json<KycStateView>, ApiError> {
    let (account, currency) = principal.player()?;
    let found = state
        .read(move |book| {
            let username = book.players().get(account.index())?.profile.as_ref()?.username.clone();
            let current = book.kyc().get(account).map(|kyc| kyc.effective(book.now()));
            Some((username, current))
        })
        .await?;
    let (username, current) = found.ok_or_else(|| ApiError::not_found("player"))?;
    if current != Some(KycState::Verified) {
        let reference = Some(sandbox_reference(account));
        let asked = Command::SetKycState { account, state: KycState::Pending, reference: reference.clone() };
        expect_done(state.submit(asked, principal.origin()).await?)?;
        let decided = sandbox_decides(state.kyc(), &username);
        if decided != KycState::Pending {
            let answer = Command::SetKycState { account, state: decided, reference };
            expect_done(state.submit(answer, sandbox_origin()).await?)?;
        }
    }
    let view = state.read(move |book| kyc_view(book, account, currency)).await?;
    view.map(Json).ok_or_else(|| ApiError::internal("the player is not tracked after a request"))
}

/// A verification provider's webhook. Signed as a whole (`Payment-Signature`).
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct KycCallbackBody {
    /// The callback's id, 1 to 128 bytes: a delivery of an id seen before is answered with
    /// the first answer and does nothing.
    #[schema(example = "kyc_evt_1", min_length = 1, max_length = 128)]
    pub id: String,
    /// When the provider sent it (RFC 3339); refused outside the window (`stale_timestamp`).
    #[schema(example = "2026-12-07T03:00:00Z")]
    pub created_at: String,
    /// The player's account id, as the provider was given it.
    #[schema(example = "acc_1")]
    pub account_id: String,
    /// `verified`, `rejected`, `pending` or `expired`.
    #[schema(example = "verified")]
    pub state: String,
    /// The provider's reference of the check.
    #[schema(example = "sandbox-acc_1", min_length = 1, max_length = 128)]
    pub reference: String,
}

/// What the gateway made of a webhook.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct KycCallbackAnswer {
    pub id: String,
    pub account_id: String,
    /// The player's state after it.
    pub state: String,
}

#[utoipa::path(
    post,
    path = "/v1/kyc/callbacks/{provider}",
    tag = "kyc",
    summary = "A verification provider's webhook",
    description = "How the identity-verification provider says how a check went. Signed like the payment provider's \
        callbacks: header `Payment-Signature: sha256=<hex HMAC-SHA256 of the raw body under the shared secret>` \
        (`serve --kyc-callback-secret-file`), `created_at` within the window of now, and a callback id seen before \
        answered with the first answer, doing nothing. The same state again changes nothing in the book either.",
    params(("provider" = String, Path, description = "The provider's name", example = "sandbox")),
    request_body = KycCallbackBody,
    responses(
        (status = 200, description = "Applied, or a replay answered as the first time", body = KycCallbackAnswer),
        (status = 400, description = "Malformed body, unknown field, state or type (`invalid_request`), or \
            `created_at` outside the window (`stale_timestamp`)", body = ApiError),
        (status = 401, description = "Missing or wrong signature, or webhooks not configured \
            (`bad_signature`)", body = ApiError),
        (status = 404, description = "Unknown provider or account (`not_found`)", body = ApiError),
        (status = 409, description = "Not a move of the state machine (`kyc_conflict`), or a delivery of the same \
            id is being processed (`callback_in_progress`)", body = ApiError),
        (status = 413, description = "Body over the size limit (`payload_too_large`)", body = ApiError),
    ),
)]
pub(crate) async fn kyc_callback(
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let Ok(Path(provider)) = path else { return ApiError::not_found("kyc provider").into_response() };
    let body = match crate::players::raw_body(&body) {
        Ok(body) => body,
        Err(error) => return error.into_response(),
    };
    let (status, body) = receive_kyc_callback(&state, &provider, &headers, body).await;
    (status, axum::Json(body)).into_response()
}

async fn receive_kyc_callback(
    state: &AppState,
    provider: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> (StatusCode, serde_json::Value) {
    let refused = |error: ApiError| (error.status, error.body());
    if provider != KYC_SANDBOX_PROVIDER {
        return refused(ApiError::not_found("kyc provider"));
    }
    let Some(callbacks) = state.kyc().callbacks.as_ref() else {
        return refused(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "bad_signature",
            "this gateway takes no kyc webhooks (no shared secret is configured)",
        ));
    };
    let keys = crate::callbacks::CallbackKeys { secret: &callbacks.secret, window: callbacks.window };
    crate::callbacks::receive(keys, state.kyc_seen(), provider, headers, body, |parsed: KycCallbackBody| async move {
        apply_kyc_callback(state, provider, &parsed).await
    })
    .await
}

impl crate::callbacks::CallbackBody for KycCallbackBody {
    fn id(&self) -> &str {
        &self.id
    }
    fn created_at(&self) -> &str {
        &self.created_at
    }
}

async fn apply_kyc_callback(
    state: &AppState,
    provider: &str,
    callback: &KycCallbackBody,
) -> Result<KycCallbackAnswer, ApiError> {
    let account =
        AccountId(parse_id(&callback.account_id, "acc_", "account").map_err(|_| ApiError::not_found("account"))?);
    let kyc_state = parse_state(&callback.state)?;
    if kyc_state == KycState::Unverified {
        return Err(ApiError::invalid("state: a provider answers verified, rejected, pending or expired")
            .with("field", "state"));
    }
    crate::requests::check_text(&callback.reference, "reference", 1, book::KYC_REFERENCE_BYTES_MAX)?;
    let origin = Origin::new(Actor::System(format!("kyc:{provider}")));
    let command = Command::SetKycState { account, state: kyc_state, reference: Some(callback.reference.clone()) };
    let (reply, now) = state
        .submit_then(command, origin, move |book, _| book.kyc().get(account).map(|kyc| kyc.effective(book.now())))
        .await?;
    expect_done(reply)?;
    Ok(KycCallbackAnswer {
        id: callback.id.clone(),
        account_id: account.to_string(),
        state: now.unwrap_or(kyc_state).name().to_string(),
    })
}

/// Today by the gateway's clock (the age check at the edge; the book checks 18 by its own).
pub(crate) fn today() -> Date {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| elapsed.as_millis() as u64)
        .unwrap_or(0);
    Date::from_unix_millis(now)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_jurisdictions_file_is_checked() {
        let good = r#"{"jurisdictions": [{"name": "uk", "countries": ["GB"], "age_min_years": 21,
            "deposit_cap_minor": 20000, "reverify_above_minor": 50000, "expiry_days": 365}], "sandbox": "pending"}"#;
        let settings = KycSettings::from_json(good).expect("valid");
        assert_eq!(settings.sandbox, SandboxOutcome::Pending);
        let rules = settings.jurisdiction_of("GB").expect("uk").rules();
        assert_eq!(rules.deposit_cap, Some(Money::from_minor(20_000)));
        assert_eq!(rules.expiry_ms, Some(365 * 86_400_000));
        assert!(settings.jurisdiction_of("FR").is_none());
        for bad in [
            r#"{"jurisdictions": [{"name": "uk", "countries": ["gb"]}]}"#,
            r#"{"jurisdictions": [{"name": "uk", "countries": ["GB"]}, {"name": "ie", "countries": ["GB"]}]}"#,
            r#"{"jurisdictions": [{"name": "uk", "countries": ["GB"], "age_min_years": 16}]}"#,
            r#"{"jurisdictions": [{"name": "uk", "countries": []}]}"#,
            r#"{"jurisdictions": [{"name": "uk", "countries": ["GB"], "deposit_cap_minor": -1}]}"#,
            r#"{"jurisdictions": [{"name": "uk", "countries": ["GB"], "expiry_days": 0}]}"#,
            r#"{"jurisdictions": [{"name": "uk", "countries": ["GB"], "unknown": 1}]}"#,
            r#"{"sandbox": "maybe"}"#,
        ] {
            assert!(KycSettings::from_json(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn registration_is_checked_against_the_jurisdiction() {
        let settings =
            KycSettings::from_json(r#"{"jurisdictions": [{"name": "uk", "countries": ["GB"], "age_min_years": 21}]}"#)
                .expect("valid");
        let today = Date::parse("2026-12-07").expect("date");
        let adult = Date::parse("2000-01-01").expect("date");
        let twenty = Date::parse("2006-01-01").expect("date");
        assert!(check_registration(&settings, "GB", adult, today).expect("allowed").is_some());
        let refused = check_registration(&settings, "US", adult, today).expect_err("not allowed");
        assert_eq!(refused.code, "country_not_allowed");
        let refused = check_registration(&settings, "GB", twenty, today).expect_err("under 21");
        assert_eq!(refused.code, "underage");
        assert!(check_registration(&KycSettings::default(), "US", twenty, today).expect("no rules").is_none());
    }
}
