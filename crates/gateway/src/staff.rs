//! Staff accounts: an operator's employees, who log in with a username, a password and a TOTP
//! code (RFC 6238: HMAC-SHA-1, 30-second steps, 6 digits) and act with the scopes of their
//! roles (`book::roles`). API keys stay for machines.
//!
//! `POST /v1/admin/staff` (admin) creates a member and shows the `otpauth://` URI of their TOTP
//! secret once; `POST /v1/admin/staff/{id}/disable` (admin) disables one for good (their tokens
//! stop working at once). Both are book commands, so the journal keeps staff across restarts.
//! `POST /v1/staff/login` answers a staff access token (`STAFF_ACCESS_TTL`, no refresh token);
//! failures are throttled per member like player logins (`auth::LOGIN_FAILURES_MAX`).
//! `POST /v1/staff/logout` revokes the caller's token. `GET /v1/admin/staff` lists members
//! (never a secret) and `PUT /v1/admin/staff/{id}/roles` (admin, with a reason) replaces a
//! member's roles, which their live tokens hold at once (scopes come from the roles now).

use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{post, put};
use axum::Router;
use book::{roles, scopes, Ack, Command, Rejection, StaffId};
use hmac::{Hmac, Mac};
use rand::RngCore;
use serde::{Deserialize, Serialize};

use crate::auth::{check_new_password, hash_password_in, verify_password_in, LoginKey};
use crate::dto::{parse_id, PageQuery};
use crate::error::{ApiError, Json};
use crate::limits::ClientAddress;
use crate::{AppState, Principal};

/// Seconds of one TOTP time step (RFC 6238's `X`).
pub const TOTP_STEP_SECONDS: u64 = 30;
/// Digits of a TOTP code.
pub const TOTP_DIGITS: u32 = 6;
/// Steps either side of now whose codes are accepted, for clocks that drift (RFC 6238 §5.2).
pub const TOTP_SKEW_STEPS: u64 = 1;
/// Random bytes of a new TOTP secret: 160 bits, as RFC 4226 recommends for HMAC-SHA-1.
pub const TOTP_SECRET_BYTES: usize = 20;
/// The issuer an authenticator app shows next to the code.
pub const TOTP_ISSUER: &str = "Sportsbook";

const _: () = assert!(TOTP_SECRET_BYTES.div_ceil(5) * 8 <= book::TOTP_SECRET_BYTES_MAX);

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/staff/login", post(login))
        .route("/v1/staff/logout", post(logout))
        .route("/v1/admin/staff", post(create_staff).get(list_staff))
        .route("/v1/admin/staff/{id}/disable", post(disable_staff))
        .route("/v1/admin/staff/{id}/roles", put(set_roles))
}

/// The RFC 6238 code of `secret` for time step `step`: HOTP (RFC 4226) over the step counter
/// with HMAC-SHA-1, dynamically truncated to `TOTP_DIGITS` digits.
pub fn totp_code(secret: &[u8], step: u64) -> u32 {
    let mut mac = Hmac::<sha1::Sha1>::new_from_slice(secret).expect("HMAC takes a key of any length");
    mac.update(&step.to_be_bytes());
    let digest = mac.finalize().into_bytes();
    let offset = usize::from(digest[digest.len() - 1] & 0x0f);
    let binary =
        u32::from_be_bytes([digest[offset], digest[offset + 1], digest[offset + 2], digest[offset + 3]]) & 0x7fff_ffff;
    binary % 10u32.pow(TOTP_DIGITS)
}

/// The time step a code given at `unix_seconds` matches, within `TOTP_SKEW_STEPS`, if any.
/// Codes are compared in constant time.
pub fn totp_step_matching(secret_base32: &str, code: &str, unix_seconds: u64) -> Option<u64> {
    let secret = data_encoding::BASE32_NOPAD.decode(secret_base32.as_bytes()).ok()?;
    if code.len() != TOTP_DIGITS as usize || !code.bytes().all(|byte| byte.is_ascii_digit()) {
        return None;
    }
    let now = unix_seconds / TOTP_STEP_SECONDS;
    let mut matched = None;
    for step in now.saturating_sub(TOTP_SKEW_STEPS)..=now + TOTP_SKEW_STEPS {
        let expected = format!("{:0width$}", totp_code(&secret, step), width = TOTP_DIGITS as usize);
        let same = expected.bytes().zip(code.bytes()).fold(0u8, |differ, (a, b)| differ | (a ^ b)) == 0;
        if same {
            matched = Some(step);
        }
    }
    matched
}

/// The URI an authenticator app scans (Key Uri Format): label, secret, issuer and parameters.
fn otpauth_uri(username: &str, secret_base32: &str) -> String {
    format!(
        "otpauth://totp/{TOTP_ISSUER}:{username}?secret={secret_base32}&issuer={TOTP_ISSUER}&algorithm=SHA1\
         &digits={TOTP_DIGITS}&period={TOTP_STEP_SECONDS}"
    )
}

fn unix_seconds() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |elapsed| elapsed.as_secs())
}

fn role_names(bits: u8) -> Vec<String> {
    roles::NAMES.iter().filter(|(_, bit)| bits & bit != 0).map(|(name, _)| (*name).to_string()).collect()
}

fn staff_view(staff: &book::Staff) -> StaffView {
    let granted = roles::scopes_of(staff.roles);
    StaffView {
        id: staff.id.to_string(),
        username: staff.username.clone(),
        roles: role_names(staff.roles),
        scopes: scopes::NAMES.iter().filter(|(_, bit)| granted & bit != 0).map(|(name, _)| name.to_string()).collect(),
        read_only: roles::read_only(staff.roles),
        disabled: staff.disabled,
        created_at: crate::time::format_rfc3339(staff.created_at),
    }
}

// ---- login ------------------------------------------------------------------------------------

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StaffLoginRequest {
    #[schema(example = "ops.anna")]
    pub username: String,
    pub password: String,
    /// The 6-digit code of the member's authenticator app now.
    #[schema(example = "492039")]
    pub totp: String,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct StaffTokenView {
    /// A JWT carrying the scopes of the member's roles; no refresh token is issued.
    pub access_token: String,
    /// Seconds the token lives: `STAFF_ACCESS_TTL`, 900.
    #[schema(example = 900)]
    pub expires_in: u64,
}

/// A staff member's password hash for unknown usernames: verified all the same, so that an
/// unknown username takes as long as a wrong password.
const DUMMY_HASH: &str =
    "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$0Wt0ZkmjKPSXeUFUJPgPv7yhcIxGrCE+XRJQpHMPVfs";

#[utoipa::path(
    post,
    path = "/v1/staff/login",
    tag = "staff",
    summary = "Log a staff member in",
    description = "Exchanges a username, a password and the TOTP code of now (RFC 6238: SHA-1, 30 s, 6 digits; \
        one step of clock drift allowed; each code works once) for a staff access token of 15 minutes that carries \
        the scopes of the member's roles. No refresh token: log in again. Failures throttle the member that failed \
        (and unknown usernames per client address) with 429 `rate_limited`, as player logins do.",
    request_body = StaffLoginRequest,
    responses(
        (status = 200, description = "A staff access token", body = StaffTokenView),
        (status = 400, description = "Malformed body or unknown field (`invalid_request`)", body = ApiError),
        (status = 401, description = "Wrong username or password (`unauthenticated`), or a missing, wrong or \
            already used TOTP code (`totp_invalid`)", body = ApiError),
        (status = 403, description = "The staff member is disabled (`staff_disabled`)", body = ApiError),
        (status = 413, description = "Body over the size limit (`payload_too_large`)", body = ApiError),
        (status = 415, description = "Not `Content-Type: application/json` (`unsupported_media_type`)", body = ApiError),
    ),
)]
pub(crate) async fn login(
    State(state): State<AppState>,
    ClientAddress(address): ClientAddress,
    Json(request): Json<StaffLoginRequest>,
) -> Result<Json<StaffTokenView>, ApiError> {
    let username = request.username.clone();
    let found = state.read(move |book| book.staff_by_username(&username).cloned()).await?;
    let key = match &found {
        Some(staff) => LoginKey::Staff(staff.id),
        None => LoginKey::UnknownUsernameFrom(address),
    };
    // Counted as a failure before anything is verified: concurrent guesses cannot all pass.
    let reservation = state.auth().reserve_login(key).await?;
    let password = request.password;
    let hash = found.as_ref().map_or(DUMMY_HASH.to_string(), |staff| staff.password_hash.clone());
    let verified = state.auth().hashers().run(move |memory| verify_password_in(memory, &password, &hash)).await?;
    let Some(staff) = found.filter(|_| verified) else {
        reservation.failed().await;
        return Err(ApiError::new(StatusCode::UNAUTHORIZED, "unauthenticated", "wrong username or password"));
    };
    if staff.disabled {
        reservation.failed().await;
        return Err(ApiError::new(StatusCode::FORBIDDEN, "staff_disabled", "this staff member is disabled"));
    }
    let step = totp_step_matching(&staff.totp_secret, &request.totp, unix_seconds());
    let used = match step {
        Some(step) => state.auth().use_totp_step(staff.id, step).await?,
        None => false,
    };
    if !used {
        reservation.failed().await;
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "totp_invalid",
            "a valid TOTP code of now is required (each code works once)",
        ));
    }
    reservation.succeeded().await;
    let (access_token, expires_in) = state.auth().issue_staff(&staff)?;
    Ok(Json(StaffTokenView { access_token, expires_in }))
}

// ---- administration ---------------------------------------------------------------------------

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateStaffRequest {
    /// 3 to 32 of `a-z 0-9 _ . -`, unique among staff (any case).
    #[schema(example = "ops.anna")]
    pub username: String,
    /// 8 to 128 characters, not one of the most common passwords.
    pub password: String,
    /// At least one of `trader`, `settlement`, `compliance`, `support`, `admin`.
    #[schema(example = json!(["trader", "support"]))]
    pub roles: Vec<String>,
}

/// A staff member. Roles grant scopes: trader `trading`, settlement `settlement`, compliance
/// `compliance`, support `trading` and `compliance` for reads only (GET), admin every scope.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct StaffView {
    #[schema(example = "stf_1")]
    pub id: String,
    pub username: String,
    pub roles: Vec<String>,
    /// The scopes the roles grant.
    pub scopes: Vec<String>,
    /// Whether the scopes hold for reads only (support without a role that writes).
    pub read_only: bool,
    pub disabled: bool,
    pub created_at: String,
}

/// A new staff member with the TOTP secret, shown this once.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct StaffCreatedView {
    #[serde(flatten)]
    pub staff: StaffView,
    /// The `otpauth://totp/...` URI for an authenticator app (SHA-1, 6 digits, 30 s); shown
    /// this once, never again.
    #[schema(
        example = "otpauth://totp/Sportsbook:ops.anna?secret=JBSWY3DPEHPK3PXP&issuer=Sportsbook&algorithm=SHA1&digits=6&period=30"
    )]
    pub otpauth_uri: String,
}

#[utoipa::path(
    post,
    path = "/v1/admin/staff",
    tag = "staff",
    summary = "Create a staff member",
    description = "Creates a staff member with a password and roles, and a fresh TOTP secret whose `otpauth://` URI \
        is shown this once. Scope: `admin`.",
    security(("bearer" = [])),
    request_body = CreateStaffRequest,
    responses(
        (status = 201, description = "The staff member, with the TOTP URI shown this once", body = StaffCreatedView),
        (status = 400, description = "Malformed body, unknown field, a bad username, a password out of range, or no \
            or unknown roles (`invalid_request`, names the `field`)", body = ApiError),
        (status = 401, description = "No valid credential (`unauthenticated`)", body = ApiError),
        (status = 403, description = "Not a credential with the scope (`forbidden`)", body = ApiError),
        (status = 409, description = "A staff member has the username (`username_taken`)", body = ApiError),
        (status = 413, description = "Body over the size limit (`payload_too_large`)", body = ApiError),
        (status = 415, description = "Not `Content-Type: application/json` (`unsupported_media_type`)", body = ApiError),
        (status = 422, description = "A common password (`weak_password`)", body = ApiError),
    ),
)]
pub(crate) async fn create_staff(
    principal: Principal,
    State(state): State<AppState>,
    body: Result<Json<CreateStaffRequest>, ApiError>,
) -> Result<(StatusCode, Json<StaffCreatedView>), ApiError> {
    principal.require_scope(scopes::ADMIN)?;
    let Json(request) = body?;
    let username = book::normalise_username(&request.username)
        .ok_or_else(|| ApiError::invalid("usernames are 3 to 32 of a-z, 0-9, _ . -").with("field", "username"))?;
    let role_bits = role_bits(&request.roles)?;
    check_new_password(&request.password)?;
    let password = request.password;
    let password_hash = state.auth().hashers().run(move |memory| hash_password_in(memory, &password)).await??;
    let mut secret = [0u8; TOTP_SECRET_BYTES];
    rand::rng().fill_bytes(&mut secret);
    let totp_secret = data_encoding::BASE32_NOPAD.encode(&secret);
    let command = Command::CreateStaff {
        username: username.clone(),
        password_hash,
        totp_secret: totp_secret.clone(),
        roles: role_bits,
    };
    let (reply, created) = state
        .submit_then(command, principal.origin(), |book, reply| match reply {
            Ok(Ack::StaffCreated(id)) => book.staff().get(id.index()).cloned(),
            _ => None,
        })
        .await?;
    match reply {
        Ok(Ack::StaffCreated(_)) => {}
        Ok(_) => return Err(ApiError::internal("staff creation answered with another ack")),
        Err(Rejection::UsernameTaken) => {
            return Err(ApiError::new(StatusCode::CONFLICT, "username_taken", "a staff member has this username"))
        }
        Err(rejection) => return Err(ApiError::from_rejection(&rejection, domain::Currency::EUR)),
    }
    let staff = created.ok_or_else(|| ApiError::internal("the new staff member is not in the book"))?;
    state.reload_staff().await?;
    let view = StaffCreatedView { staff: staff_view(&staff), otpauth_uri: otpauth_uri(&username, &totp_secret) };
    Ok((StatusCode::CREATED, Json(view)))
}

#[utoipa::path(
    post,
    path = "/v1/admin/staff/{id}/disable",
    tag = "staff",
    summary = "Disable a staff member",
    description = "Disables a staff member for good: no login, and their tokens stop working at once. Disabling \
        again changes nothing. Scope: `admin`.",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "A staff member's id", example = "stf_1")),
    responses(
        (status = 200, description = "The staff member, disabled", body = StaffView),
        (status = 401, description = "No valid credential (`unauthenticated`)", body = ApiError),
        (status = 403, description = "Not a credential with the scope (`forbidden`)", body = ApiError),
        (status = 404, description = "No such staff member (`not_found`)", body = ApiError),
    ),
)]
pub(crate) async fn disable_staff(
    principal: Principal,
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<StaffView>, ApiError> {
    principal.require_scope(scopes::ADMIN)?;
    let Path(text) = path.map_err(|_| ApiError::not_found("staff member"))?;
    let staff = StaffId(parse_id(&text, "stf_", "staff member").map_err(|_| ApiError::not_found("staff member"))?);
    let (reply, disabled) = state
        .submit_then(Command::DisableStaff { staff }, principal.origin(), move |book, _| {
            book.staff().get(staff.index()).cloned()
        })
        .await?;
    let disabled = match reply {
        Ok(_) => disabled.ok_or_else(|| ApiError::internal("the staff member is not in the book"))?,
        Err(_) => return Err(ApiError::not_found("staff member")),
    };
    state.reload_staff().await?;
    Ok(Json(staff_view(&disabled)))
}

/// Role names to `roles` bits: at least one, each known, or 400 naming the field.
fn role_bits(names: &[String]) -> Result<u8, ApiError> {
    if names.is_empty() {
        return Err(ApiError::invalid("at least one role").with("field", "roles"));
    }
    let mut bits = 0u8;
    for name in names {
        let (_, bit) = roles::NAMES.iter().find(|(known, _)| known == name).ok_or_else(|| {
            ApiError::invalid("roles are trader, settlement, compliance, support and admin").with("field", "roles")
        })?;
        bits |= bit;
    }
    Ok(bits)
}

#[utoipa::path(
    post,
    path = "/v1/staff/logout",
    tag = "staff",
    summary = "Log a staff member out",
    description = "Revokes the staff token the request carries: it is refused from now on (across restarts), until \
        it would have expired. No body. Only a staff token may log out here.",
    security(("bearer" = [])),
    responses(
        (status = 204, description = "The token is revoked"),
        (status = 401, description = "No valid credential (`unauthenticated`)", body = ApiError),
        (status = 403, description = "Not a staff token (`forbidden`)", body = ApiError),
    ),
)]
pub(crate) async fn logout(
    principal: Principal,
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<StatusCode, ApiError> {
    let Principal::Staff { .. } = principal else { return Err(ApiError::forbidden()) };
    let token = crate::auth::bearer_token(&headers).ok_or_else(ApiError::unauthenticated)?;
    state.auth().revoke_staff_token(token).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A page of staff members.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct StaffPage {
    pub items: Vec<StaffView>,
    #[schema(required = true)]
    pub next_cursor: Option<String>,
}

#[utoipa::path(
    get,
    path = "/v1/admin/staff",
    tag = "staff",
    summary = "List staff members",
    description = "Every staff member, enabled or disabled, by id; never a password hash or a TOTP secret. Scope: \
        `admin`.",
    security(("bearer" = [])),
    params(PageQuery),
    responses(
        (status = 200, description = "A page of staff members", body = StaffPage),
        (status = 400, description = "Bad `limit` or `cursor`, or an unknown parameter (`invalid_request`)",
            body = ApiError),
        (status = 401, description = "No valid credential (`unauthenticated`)", body = ApiError),
        (status = 403, description = "Not a credential with the scope (`forbidden`)", body = ApiError),
    ),
)]
pub(crate) async fn list_staff(
    principal: Principal,
    State(state): State<AppState>,
    query: Result<Query<PageQuery>, QueryRejection>,
) -> Result<Json<StaffPage>, ApiError> {
    principal.require_scope(scopes::ADMIN)?;
    let Query(page) = query.map_err(|rejection| ApiError::invalid(rejection.body_text()))?;
    let limit = page.limit()?;
    let after = page.after("stf_")?.unwrap_or(0);
    let mut members = state
        .read(move |book| {
            book.staff().iter().filter(|staff| staff.id.0 > after).take(limit + 1).cloned().collect::<Vec<_>>()
        })
        .await?;
    let next_cursor = (members.len() > limit).then(|| members[limit - 1].id.to_string());
    members.truncate(limit);
    Ok(Json(StaffPage { items: members.iter().map(staff_view).collect(), next_cursor }))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetRolesRequest {
    /// At least one of `trader`, `settlement`, `compliance`, `support`, `admin`: replaces
    /// the member's roles.
    #[schema(example = json!(["compliance"]))]
    pub roles: Vec<String>,
    /// Why (required): journaled with the change and shown in the audit trail.
    #[schema(example = "moved to the compliance team", min_length = 1, max_length = 500)]
    pub reason: String,
}

#[utoipa::path(
    put,
    path = "/v1/admin/staff/{id}/roles",
    tag = "staff",
    summary = "Change a staff member's roles",
    description = "Replaces a staff member's roles, with a reason. Their live tokens hold the new roles' scopes at \
        once. Scope: `admin`.",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "A staff member's id", example = "stf_1")),
    request_body = SetRolesRequest,
    responses(
        (status = 200, description = "The staff member with the new roles", body = StaffView),
        (status = 400, description = "Malformed body, unknown field, no or unknown roles, or a missing or too long \
            `reason` (`invalid_request`, names the `field`)", body = ApiError),
        (status = 401, description = "No valid credential (`unauthenticated`)", body = ApiError),
        (status = 403, description = "Not a credential with the scope (`forbidden`)", body = ApiError),
        (status = 404, description = "No such staff member (`not_found`)", body = ApiError),
        (status = 413, description = "Body over the size limit (`payload_too_large`)", body = ApiError),
        (status = 415, description = "Not `Content-Type: application/json` (`unsupported_media_type`)", body = ApiError),
    ),
)]
pub(crate) async fn set_roles(
    principal: Principal,
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
    body: Result<Json<SetRolesRequest>, ApiError>,
) -> Result<Json<StaffView>, ApiError> {
    principal.require_scope(scopes::ADMIN)?;
    let Path(text) = path.map_err(|_| ApiError::not_found("staff member"))?;
    let staff = StaffId(parse_id(&text, "stf_", "staff member").map_err(|_| ApiError::not_found("staff member"))?);
    let Json(request) = body?;
    let roles = role_bits(&request.roles)?;
    crate::requests::check_text(&request.reason, "reason", 1, book::constants::REASON_BYTES_MAX)?;
    let origin = principal.origin().with_reason(Some(request.reason));
    let (reply, changed) = state
        .submit_then(Command::SetStaffRoles { staff, roles }, origin, move |book, _| {
            book.staff().get(staff.index()).cloned()
        })
        .await?;
    let changed = match reply {
        Ok(_) => changed.ok_or_else(|| ApiError::internal("the staff member is not in the book"))?,
        Err(Rejection::InvalidRequest { reason: "unknown staff member" }) => {
            return Err(ApiError::not_found("staff member"))
        }
        Err(rejection) => return Err(ApiError::from_rejection(&rejection, domain::Currency::EUR)),
    };
    state.reload_staff().await?;
    Ok(Json(staff_view(&changed)))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 6238 appendix B, SHA-1 (seed "12345678901234567890"): the 8-digit codes end in
    /// these 6 digits.
    #[test]
    fn codes_match_the_rfc_6238_test_vectors() {
        let secret = b"12345678901234567890";
        for (time, code) in [
            (59u64, 287_082u32),
            (1_111_111_109, 81_804),
            (1_111_111_111, 50_471),
            (1_234_567_890, 5_924),
            (2_000_000_000, 279_037),
            (20_000_000_000, 353_130),
        ] {
            assert_eq!(totp_code(secret, time / TOTP_STEP_SECONDS), code, "at {time}");
        }
        let base32 = data_encoding::BASE32_NOPAD.encode(secret);
        assert_eq!(totp_step_matching(&base32, "287082", 59), Some(1));
        assert_eq!(totp_step_matching(&base32, "287082", 59 + 30), Some(1), "one step late");
        assert_eq!(totp_step_matching(&base32, "287082", 59 + 60), None, "two steps late");
        assert_eq!(totp_step_matching(&base32, "28708", 59), None);
        assert_eq!(totp_step_matching(&base32, "28708a", 59), None);
    }
}
