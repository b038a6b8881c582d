//! Player routes: registration and tokens, the wallet (deposits through the sandbox payment
//! provider, withdrawals, statement), bets and cash-out, responsible-gambling limits, time-outs
//! and self-exclusion. A player sees and touches only their own resources: ids of other
//! players' bets are simply not found.

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::handler::Handler;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use book::{
    AccountId, Ack, BetId, BetStatus, Book, Command, LimitChange, LimitKind, Origin, Period, TransferCode, TransferKind,
};
use domain::{Currency, Date};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize};

use crate::auth::{check_new_password, hash_password_in, verify_password_in, LoginKey, Principal};
use crate::dto::{idempotency, parse_id, parse_money, BetView, IdempotencyKey, Page, PageQuery};
use crate::error::{require_json, ApiError, Json};
use crate::limits::ClientAddress;
use crate::time::format_rfc3339;
use crate::AppState;

pub fn routes() -> Router<AppState> {
    // The routes that read their body as bytes (to hash it for the idempotency key) check its
    // Content-Type here; the others through the `Json` extractor.
    let json = || axum::middleware::from_fn(require_json);
    Router::new()
        .route("/v1/auth/register", post(register))
        .route("/v1/auth/login", post(login))
        .route("/v1/auth/refresh", post(refresh))
        .route("/v1/auth/logout", post(logout))
        .route("/v1/wallet", get(wallet))
        .route("/v1/wallet/deposits", post(deposit.layer(json())))
        .route("/v1/wallet/withdrawals", post(withdraw.layer(json())))
        .route("/v1/wallet/transactions", get(transactions))
        .route("/v1/bets", post(place_bet.layer(json())).get(list_bets))
        .route("/v1/bets/{id}", get(get_bet))
        .route("/v1/bets/{id}/cashout", get(quote_cashout).post(accept_cashout.layer(json())))
        .route("/v1/limits", get(get_limits).put(put_limits))
        .route("/v1/self-exclusion", post(self_exclude))
        .route("/v1/time-out", post(time_out))
}

/// The raw body (for the idempotency hash) and its parse. Over the body limit is 413.
fn parse_body<T: DeserializeOwned>(body: &Result<Bytes, BytesRejection>) -> Result<T, ApiError> {
    crate::requests::json_body(raw_body(body)?)
}

/// The raw body, or 413 `payload_too_large` over the limit.
/// The request's body, or the error its rejection calls for (413 `payload_too_large` over the
/// size limit, else 400 `invalid_request`).
pub(crate) fn raw_body(body: &Result<Bytes, BytesRejection>) -> Result<&[u8], ApiError> {
    match body {
        Ok(bytes) => Ok(bytes.as_ref()),
        Err(rejection) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            Err(ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", "the request body is too large"))
        }
        Err(rejection) => Err(ApiError::invalid(rejection.body_text())),
    }
}

fn body_bytes(body: &Result<Bytes, BytesRejection>) -> &[u8] {
    body.as_ref().map_or(&[], |bytes| bytes.as_ref())
}

/// A book reply: the ack, or the rejection as an API error in the player's currency.
fn accepted(reply: book::Reply, currency: Currency) -> Result<Ack, ApiError> {
    reply.map_err(|rejection| ApiError::from_rejection(&rejection, currency))
}

// ---- registration and tokens ------------------------------------------------------------

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegisterRequest {
    #[schema(example = "alice", pattern = r"^[A-Za-z0-9_.-]{3,32}$")]
    pub username: String,
    /// 8 to 128 characters (not bytes), and not one of the most common passwords.
    #[schema(example = "correct horse battery staple", min_length = 8, max_length = 128)]
    pub password: String,
    /// `YYYY-MM-DD`.
    #[schema(example = "1990-05-17", pattern = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$")]
    pub date_of_birth: String,
    /// ISO 3166-1 alpha-2.
    #[schema(example = "GB", pattern = r"^[A-Z]{2}$")]
    pub country: String,
    /// ISO 4217; `EUR` when absent.
    #[schema(example = "EUR", pattern = r"^[A-Z]{3}$")]
    pub currency: Option<String>,
    /// Personal details, each optional (1 to 200 bytes): the national self-exclusion register
    /// is asked about them (with the date of birth), and they are kept in the player's profile.
    #[schema(example = "Ada", min_length = 1, max_length = 200)]
    pub first_name: Option<String>,
    #[schema(example = "Lovelace", min_length = 1, max_length = 200)]
    pub last_name: Option<String>,
    #[schema(example = "ada@example.com", min_length = 3, max_length = 200)]
    pub email: Option<String>,
    #[schema(example = "SW1A 1AA", min_length = 1, max_length = 200)]
    pub postcode: Option<String>,
    #[schema(example = "1 Example Street, London", min_length = 1, max_length = 200)]
    pub address: Option<String>,
}

impl RegisterRequest {
    /// The personal details given, checked: each 1 to `PERSONAL_DETAIL_BYTES_MAX` bytes
    /// without control characters, an e-mail address with an `@`.
    fn details(&self) -> Result<book::PersonalDetails, ApiError> {
        let fields = [
            ("first_name", &self.first_name),
            ("last_name", &self.last_name),
            ("email", &self.email),
            ("postcode", &self.postcode),
            ("address", &self.address),
        ];
        for (field, value) in fields {
            let Some(value) = value else { continue };
            crate::requests::check_text(value, field, 1, book::PERSONAL_DETAIL_BYTES_MAX)?;
            if value.chars().any(char::is_control) || value.trim().is_empty() {
                return Err(
                    ApiError::invalid(format!("{field}: no control characters, not blank")).with("field", field)
                );
            }
        }
        if self.email.as_deref().is_some_and(|email| !email.contains('@')) {
            return Err(ApiError::invalid("email: an e-mail address").with("field", "email"));
        }
        Ok(book::PersonalDetails {
            first_name: self.first_name.clone(),
            last_name: self.last_name.clone(),
            email: self.email.clone(),
            postcode: self.postcode.clone(),
            address: self.address.clone(),
        })
    }
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct PlayerView {
    pub id: String,
    pub username: String,
    pub date_of_birth: String,
    pub country: String,
    pub currency: String,
    pub created_at: String,
}

#[utoipa::path(
    post,
    path = "/v1/auth/register",
    tag = "players",
    summary = "Register a player",
    description = "Passwords are 8 to 128 characters and not among the most common ones (NIST SP 800-63B). They are \
        hashed on a bounded pool: past it, 503 `overloaded` with `Retry-After`.",
    request_body = RegisterRequest,
    responses(
        (status = 201, description = "The new player", body = PlayerView),
        (status = 400, description = "Malformed body, unknown field or invalid field (`invalid_request`, names the \
            `field`)", body = ApiError),
        (status = 403, description = "The person is on the national self-exclusion register (`self_excluded`, with \
            `\"source\": \"register\"`); nothing is created", body = ApiError),
        (status = 409, description = "The username is taken (`username_taken`)", body = ApiError),
        (status = 413, description = "Body over the size limit (`payload_too_large`)", body = ApiError),
        (status = 415, description = "Not `Content-Type: application/json` \
            (`unsupported_media_type`)", body = ApiError),
        (status = 422, description = "Under 18 (`underage`), a password among the most common ones \
            (`weak_password`, with `field`), or a field the book refuses (`invalid_request`)", body = ApiError),
        (status = 503, description = "`exclusion_register_unavailable`: the national self-exclusion register cannot \
            be asked (unreachable, an answer outside its protocol, or later than its timeout), nothing is created; or \
            overloaded: the book or the server is busy (`overloaded`), the request took too long (`timeout`), or the \
            book is not accepting requests (`unavailable`)", body = ApiError,
            headers(("Retry-After" = u64, description = "Seconds to wait before retrying"))),
    ),
)]
pub(crate) async fn register(
    State(state): State<AppState>,
    Json(request): Json<RegisterRequest>,
) -> Result<Response, ApiError> {
    let date_of_birth = Date::parse(&request.date_of_birth)
        .map_err(|_| ApiError::invalid("date_of_birth must be a date YYYY-MM-DD").with("field", "date_of_birth"))?;
    let currency = Currency::parse(request.currency.as_deref().unwrap_or("EUR"))
        .map_err(|_| ApiError::invalid("unknown currency").with("field", "currency"))?;
    check_new_password(&request.password)?;
    let username = book::normalise_username(&request.username)
        .ok_or_else(|| ApiError::invalid("usernames are 3 to 32 of a-z, 0-9, _ . -").with("field", "username"))?;
    // Bounded before the book, like every free-text field (ISO 3166-1 alpha-2).
    crate::requests::check_text(&request.country, "country", 2, 2)?;
    let today = crate::kyc::today();
    let jurisdiction = crate::kyc::check_registration(state.kyc(), &request.country, date_of_birth, today)?;
    let details = request.details()?;
    let person = crate::register::Person {
        first_name: details.first_name.clone().unwrap_or_default(),
        last_name: details.last_name.clone().unwrap_or_default(),
        date_of_birth,
        email: details.email.clone().unwrap_or_default(),
        postcode: details.postcode.clone().unwrap_or_default(),
        mobile: String::new(),
    };
    // Before anything is created: an excluded person leaves no account behind.
    crate::register::check_registration(&state, &person).await?;
    let password = request.password;
    let password_hash = state.auth().hashers().run(move |memory| hash_password_in(memory, &password)).await??;
    let command = Command::RegisterPlayer {
        username: username.clone(),
        password_hash,
        date_of_birth,
        country: request.country.clone(),
        currency,
    };
    let Ack::AccountOpened(account) = accepted(state.submit(command, Origin::system("registration")).await?, currency)?
    else {
        return Err(ApiError::internal("registration answered with another ack"));
    };
    if details != book::PersonalDetails::default() {
        let command = Command::SetPersonalDetails { account, details };
        accepted(state.submit(command, Origin::system("registration")).await?, currency)?;
    }
    crate::kyc::after_registration(&state, account, &username, jurisdiction.as_ref()).await?;
    let created_at = state
        .read(move |book| book.players().get(account.index()).and_then(|p| p.profile.as_ref().map(|p| p.registered_at)))
        .await?;
    let view = PlayerView {
        id: account.to_string(),
        username,
        date_of_birth: date_of_birth.to_string(),
        country: request.country,
        currency: currency.code().to_string(),
        created_at: format_rfc3339(created_at.unwrap_or_default()),
    };
    Ok((StatusCode::CREATED, Json(view)).into_response())
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    #[schema(example = "alice")]
    pub username: String,
    #[schema(example = "correct horse battery staple")]
    pub password: String,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct TokenView {
    pub access_token: String,
    pub refresh_token: String,
    /// Seconds the access token is valid.
    pub expires_in: u64,
    pub token_type: &'static str,
}

impl From<crate::auth::TokenPair> for TokenView {
    fn from(pair: crate::auth::TokenPair) -> TokenView {
        TokenView {
            access_token: pair.access_token,
            refresh_token: pair.refresh_token,
            expires_in: pair.expires_in,
            token_type: "Bearer",
        }
    }
}

/// A valid argon2 hash of nothing anyone knows: verifying against it when the username is
/// unknown makes a miss cost the same time as a wrong password.
const DUMMY_HASH: &str =
    "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$0Wt0ZkmjKPSXeUFUJPgPv7yhcIxGrCE+XRJQpHMPVfs";

#[utoipa::path(
    post,
    path = "/v1/auth/login",
    tag = "players",
    summary = "Log in",
    description = "Exchanges a username and password for a short-lived JWT access token and a refresh token. Failures \
        throttle the account that failed (and unknown usernames per client address) with 429 `rate_limited`, never \
        another account: attempts being verified count as failures until they succeed. Passwords are verified on a \
        bounded pool: past it, 503 `overloaded` with `Retry-After`.",
    request_body = LoginRequest,
    responses(
        (status = 200, description = "A new access token and refresh token", body = TokenView),
        (status = 400, description = "Malformed body or unknown field (`invalid_request`)", body = ApiError),
        (status = 401, description = "Wrong username or password (`unauthenticated`)", body = ApiError),
        (status = 403, description = "The player is on the national self-exclusion register (`self_excluded`, with \
            `\"source\": \"register\"`): no tokens, and a self-exclusion is recorded with the register as its \
            origin", body = ApiError),
        (status = 413, description = "Body over the size limit (`payload_too_large`)", body = ApiError),
        (status = 415, description = "Not `Content-Type: application/json` \
            (`unsupported_media_type`)", body = ApiError),
        (status = 503, description = "`exclusion_register_unavailable`: the national self-exclusion register cannot \
            be asked; or overloaded: the book or the server is busy (`overloaded`), the request took too long \
            (`timeout`), or `unavailable`: the book is not accepting requests, or the shared session state cannot be \
            reached", body = ApiError,
            headers(("Retry-After" = u64, description = "Seconds to wait before retrying"))),
    ),
)]
pub(crate) async fn login(
    State(state): State<AppState>,
    ClientAddress(address): ClientAddress,
    Json(request): Json<LoginRequest>,
) -> Result<Json<TokenView>, ApiError> {
    let username = request.username.clone();
    let found = state
        .read(move |book| {
            let account = book.account_by_username(&username)?;
            let player = book.players().get(account.index())?;
            let profile = player.profile.as_ref()?;
            let person = crate::register::Person::of(profile);
            let reality = book.reality_checks().get(account).is_some();
            Some((account, player.currency, profile.password_hash.clone(), person, reality))
        })
        .await?;
    let key = match &found {
        Some((account, ..)) => LoginKey::Account(*account),
        None => LoginKey::UnknownUsernameFrom(address),
    };
    // Counted as a failure before the hash is verified: concurrent guesses cannot all pass.
    let reservation = state.auth().reserve_login(key).await?;
    let password = request.password;
    let hash = found.as_ref().map_or(DUMMY_HASH.to_string(), |(_, _, hash, ..)| hash.clone());
    let verified = state.auth().hashers().run(move |memory| verify_password_in(memory, &password, &hash)).await?;
    match found {
        Some((account, currency, _, person, reality)) if verified => {
            reservation.succeeded().await;
            // Only the owner of the password learns that the register refuses them.
            crate::register::check_login(&state, account, &person).await?;
            // A new session for the reality checks; journaled only for players who chose them,
            // so that a login stays a read for everyone else.
            if reality {
                let origin = Origin::new(book::Actor::Player(account));
                accepted(state.submit(Command::StartSession { account }, origin).await?, currency)?;
            }
            Ok(Json(state.auth().issue(account, currency).await?.into()))
        }
        _ => {
            reservation.failed().await;
            Err(ApiError::new(StatusCode::UNAUTHORIZED, "unauthenticated", "wrong username or password"))
        }
    }
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RefreshRequest {
    pub refresh_token: String,
}

#[utoipa::path(
    post,
    path = "/v1/auth/refresh",
    tag = "players",
    summary = "Refresh the tokens",
    description = "Exchanges a refresh token for a new pair; the old refresh token stops working.",
    request_body = RefreshRequest,
    responses(
        (status = 200, description = "A new token pair; the refresh token sent stops working", body = TokenView),
        (status = 400, description = "Malformed body or unknown field (`invalid_request`)", body = ApiError),
        (status = 401, description = "Unknown, used or expired refresh token (`unauthenticated`)", body = ApiError),
        (status = 413, description = "Body over the size limit (`payload_too_large`)", body = ApiError),
        (status = 415, description = "Not `Content-Type: application/json` \
            (`unsupported_media_type`)", body = ApiError),
    ),
)]
pub(crate) async fn refresh(
    State(state): State<AppState>,
    Json(request): Json<RefreshRequest>,
) -> Result<Json<TokenView>, ApiError> {
    Ok(Json(state.auth().refresh(&request.refresh_token).await?.into()))
}

#[utoipa::path(
    post,
    path = "/v1/auth/logout",
    tag = "players",
    summary = "Log out",
    description = "Revokes a refresh token and its session: every access token issued from the same login (and its \
        refreshes) stops working at once.",
    request_body = RefreshRequest,
    responses(
        (status = 204, description = "The refresh token and its session's access tokens are revoked (also when it \
            was unknown)"),
        (status = 400, description = "Malformed body or unknown field (`invalid_request`)", body = ApiError),
        (status = 413, description = "Body over the size limit (`payload_too_large`)", body = ApiError),
        (status = 415, description = "Not `Content-Type: application/json` \
            (`unsupported_media_type`)", body = ApiError),
    ),
)]
pub(crate) async fn logout(
    State(state): State<AppState>,
    Json(request): Json<RefreshRequest>,
) -> Result<StatusCode, ApiError> {
    state.auth().revoke(&request.refresh_token).await?;
    Ok(StatusCode::NO_CONTENT)
}

// ---- wallet -------------------------------------------------------------------------------

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct WalletView {
    pub currency: String,
    /// Cash with the stakes of open bets already taken out.
    pub balance: String,
    /// What can be staked or withdrawn now.
    pub available: String,
    /// Total stake of open bets.
    pub pending_stakes: String,
    /// Owed after a resettlement took back winnings already spent; repaid from new credits.
    pub debt: String,
}

#[utoipa::path(
    get,
    path = "/v1/wallet",
    tag = "players",
    summary = "The wallet",
    description = "`balance` is the cash with the stakes of open bets already taken out; `pending_stakes` the total \
        stake of open bets; `available` what can be staked or withdrawn now.",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The player's wallet", body = WalletView),
        (status = 401, description = "No valid credential (`unauthenticated`)", body = ApiError),
        (status = 403, description = "Not a player token (`forbidden`)", body = ApiError),
        (status = 404, description = "The token's account does not exist (`not_found`)", body = ApiError),
    ),
)]
pub(crate) async fn wallet(State(state): State<AppState>, principal: Principal) -> Result<Json<WalletView>, ApiError> {
    let (account, currency) = principal.player()?;
    let wallet = state.read(move |book| book.wallet(account)).await?.ok_or_else(|| ApiError::not_found("account"))?;
    Ok(Json(WalletView {
        currency: currency.code().to_string(),
        balance: currency.format(wallet.balance),
        available: currency.format(wallet.available),
        pending_stakes: currency.format(wallet.pending_stakes),
        debt: currency.format(wallet.debt),
    }))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DepositRequest {
    #[schema(example = "10.50", pattern = r"^[0-9]{1,18}(\.[0-9]+)?$")]
    pub amount: String,
    /// The payment provider's reference: 1 to 200 bytes; credits the account at most once.
    #[schema(example = "psp_7f3a", min_length = 1, max_length = 200)]
    pub payment_ref: String,
    /// The provider's token of the card or bank account paid from (1 to 200 bytes), for AML
    /// monitoring: more accounts than the rules allow sharing one raise alerts on each.
    #[serde(default)]
    #[schema(example = "tok_card_4242", min_length = 1, max_length = 200)]
    pub instrument: Option<String>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct TransactionView {
    pub id: String,
    /// `deposit`, `withdrawal`, `stake`, `payout`, `cashout`, `payout_reversal`,
    /// `stake_reversal`, `debt_recognised`, `debt_repaid`, `adjustment_credit`,
    /// `adjustment_debit`, `chargeback`, `chargeback_debt`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Signed, from the player's side: positive credits the player.
    pub amount: String,
    /// `posted`, `pending`, `posts` (completes a pending one) or `voids` (releases it). The
    /// answer to a deposit says `completed`, `pending`, `failed` or `charged_back` instead.
    pub status: String,
    /// The pending transfer a `posts`/`voids` entry completes.
    #[schema(required = true)]
    pub pending_id: Option<String>,
    /// The bet it belongs to, for bet transfers.
    #[schema(required = true)]
    pub bet_id: Option<String>,
    pub created_at: String,
}

/// Renders a transfer from the side of one of the player's ledger accounts.
fn transaction_view(transfer: &book::Transfer, own: &[book::LedgerAccountId], currency: Currency) -> TransactionView {
    let sign = if own.contains(&transfer.credit) { 1 } else { -1 };
    let (status, pending) = match transfer.kind {
        TransferKind::Posted => ("posted", None),
        TransferKind::Pending => ("pending", None),
        TransferKind::PostPending(pending) => ("posts", Some(pending.to_string())),
        TransferKind::VoidPending(pending) => ("voids", Some(pending.to_string())),
    };
    let bet_codes = [
        TransferCode::Stake,
        TransferCode::Payout,
        TransferCode::Cashout,
        TransferCode::PayoutReversal,
        TransferCode::StakeReversal,
        TransferCode::DebtRecognised,
    ];
    TransactionView {
        id: transfer.id.to_string(),
        kind: transfer.code.name().to_string(),
        amount: currency.format(domain::Money::from_minor(sign * transfer.amount.minor())),
        status: status.to_string(),
        pending_id: pending,
        bet_id: bet_codes.contains(&transfer.code).then(|| BetId(transfer.reference).to_string()),
        created_at: format_rfc3339(transfer.timestamp),
    }
}

async fn render_transfer(
    state: &AppState,
    transfer: book::TransferId,
    currency: Currency,
    account: book::AccountId,
) -> Result<TransactionView, ApiError> {
    let held = state
        .read(move |book| {
            let player = book.players().get(account.index())?;
            let own = [player.cash, player.debt];
            book.ledger().transfer(transfer).map(|found| transaction_view(found, &own, currency))
        })
        .await?;
    match held {
        Some(view) => Ok(view),
        // Left the book (past the resettlement window): a retry answered from the models.
        None => state
            .transfer_from_models(account, transfer, currency)
            .await?
            .ok_or_else(|| ApiError::internal("a transfer the book acknowledged is missing")),
    }
}

#[utoipa::path(
    post,
    path = "/v1/wallet/deposits",
    tag = "players",
    summary = "Deposit",
    description = "Deposits through the payment provider. Idempotent with `Idempotency-Key` (required). \
        `payment_ref` is 1 to 200 bytes and credits the account at most once. The largest single deposit is set in \
        the base currency (100,000.00 EUR by default) and applies to the player's currency through the current \
        exchange rate, rounded down. The answer's `status` is `completed` when the money is credited (the default \
        sandbox completes at once) or `pending` while the provider has yet to confirm it (`serve --payments \
        callbacks`): nothing is spendable until its callback says `completed`; a pending deposit counts against \
        the deposit limits at once, and no longer if it fails.",
    security(("bearer" = [])),
    params(IdempotencyKey),
    request_body = DepositRequest,
    responses(
        (status = 201, description = "The deposit: its transfer, with `status` `completed` or `pending`",
            body = TransactionView),
        (status = 400, description = "Malformed body, unknown field, bad amount or bad `Idempotency-Key` \
            (`invalid_request`), or no `Idempotency-Key` (`idempotency_key_required`)", body = ApiError),
        (status = 401, description = "No valid credential (`unauthenticated`)", body = ApiError),
        (status = 403, description = "Not a player token (`forbidden`), or the account may not deposit now \
            (`self_excluded`, `timed_out`, `account_frozen`)", body = ApiError),
        (status = 404, description = "The token's account does not exist (`unknown_account`)", body = ApiError),
        (status = 409, description = "This payment reference credited the account already: a provider's payment \
            credits once (`duplicate_payment_ref`)", body = ApiError),
        (status = 413, description = "Body over the size limit (`payload_too_large`)", body = ApiError),
        (status = 415, description = "Not `Content-Type: application/json` \
            (`unsupported_media_type`)", body = ApiError),
        (status = 422, description = "A deposit limit would be exceeded (`limit_reached`), the amount is refused \
            (`invalid_request`: not positive, or over the largest deposit converted into the player's currency), the \
            player's currency has no exchange rate (`fx_rate_missing`, with `currency`), the balance would pass the money maximum (`amount_too_large`), or the \
            idempotency key was used with another body (`idempotency_key_reused`)", body = ApiError),
    ),
)]
pub(crate) async fn deposit(
    State(state): State<AppState>,
    principal: Principal,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let (account, currency) = principal.player()?;
    let bytes = raw_body(&body)?;
    let (mut command, instrument) = crate::requests::deposit(bytes, account, currency)?;
    // With a provider that answers by callback the deposit waits for it (`payments.rs`).
    if state.config().payment_callbacks.is_some() {
        if let Command::Deposit { account, amount, payment_ref, idempotency } = command {
            command = Command::BeginDeposit { account, amount, payment_ref, idempotency };
        }
    }
    let key = idempotency(&headers, bytes)?;
    let reply = match state.first_reply(account, &key).await? {
        Some(reply) => reply,
        None => {
            if let Command::Deposit { idempotency: slot, .. } | Command::BeginDeposit { idempotency: slot, .. } =
                &mut command
            {
                *slot = Some(key);
            }
            state.submit(command, principal.origin()).await?
        }
    };
    let Ack::Transfer(transfer) = accepted(reply, currency)? else {
        return Err(ApiError::internal("deposit answered with another ack"));
    };
    // The instrument goes to the monitor's shared-instrument index once the deposit is taken:
    // noting it again (a retry) changes nothing, an account is held once per instrument.
    if let Some(instrument) = instrument {
        let note = Command::NoteShared { account, key: book::SharedKey::instrument(&instrument) };
        state
            .submit(note, principal.origin())
            .await?
            .map_err(|rejection| ApiError::from_rejection(&rejection, currency))?;
    }
    // The deposit's state: a deposit that completed at once is not among the provider's.
    let payment_state = state.read(move |book| book.payments().deposit(transfer).map(|deposit| deposit.state)).await?;
    if payment_state == Some(book::DepositState::Pending) {
        state.payments().collect(transfer);
    }
    let mut view = render_transfer(&state, transfer, currency, account).await?;
    view.status = payment_state.map_or("completed", book::DepositState::name).to_string();
    Ok((StatusCode::CREATED, Json(view)).into_response())
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WithdrawalRequest {
    #[schema(example = "5.00", pattern = r"^[0-9]{1,18}(\.[0-9]+)?$")]
    pub amount: String,
}

#[utoipa::path(
    post,
    path = "/v1/wallet/withdrawals",
    tag = "players",
    summary = "Withdraw",
    description = "Never more than is withdrawable. Idempotent with `Idempotency-Key`.",
    security(("bearer" = [])),
    params(IdempotencyKey),
    request_body = WithdrawalRequest,
    responses(
        (status = 201, description = "The withdrawal's hold. The payments step asks the payment provider and \
            posts or voids it whether or not this request stays; the sandbox provider pays at once, before \
            the answer", body = TransactionView),
        (status = 400, description = "Malformed body, unknown field, bad amount or bad `Idempotency-Key` \
            (`invalid_request`), or no `Idempotency-Key` (`idempotency_key_required`)", body = ApiError),
        (status = 401, description = "No valid credential (`unauthenticated`)", body = ApiError),
        (status = 403, description = "Not a player token (`forbidden`), or the account is frozen \
            (`account_frozen`)", body = ApiError),
        (status = 404, description = "The token's account does not exist (`unknown_account`)", body = ApiError),
        (status = 413, description = "Body over the size limit (`payload_too_large`)", body = ApiError),
        (status = 415, description = "Not `Content-Type: application/json` \
            (`unsupported_media_type`)", body = ApiError),
        (status = 422, description = "More than is withdrawable (`insufficient_funds`), the amount is refused \
            (`invalid_request`), or the idempotency key was used with another body \
            (`idempotency_key_reused`)", body = ApiError),
    ),
)]
pub(crate) async fn withdraw(
    State(state): State<AppState>,
    principal: Principal,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let (account, currency) = principal.player()?;
    let bytes = raw_body(&body)?;
    let mut command = crate::requests::withdrawal(bytes, account, currency)?;
    let key = idempotency(&headers, bytes)?;
    // A retry after the book's window: answered from the models; the payments step completes
    // the hold whatever happened to the first request.
    if let Some(reply) = state.first_reply(account, &key).await? {
        let Ack::Transfer(withdrawal) = accepted(reply, currency)? else {
            return Err(ApiError::internal("withdrawal answered with another ack"));
        };
        let view = render_transfer(&state, withdrawal, currency, account).await?;
        return Ok((StatusCode::CREATED, Json(view)).into_response());
    }
    if let Command::Withdraw { idempotency: slot, .. } = &mut command {
        *slot = Some(key);
    }
    // The hold and its payment must not depend on this request staying alive: a client that
    // hangs up makes axum drop this future. So both run in a task of their own, and the
    // request only waits for it (the command reaches the book whatever happens to the request,
    // hence `Handed`). The payment job goes on after `payment_wait`, and the payments sweep
    // takes up a hold whose reply came too late for this task (`payments.rs`).
    crate::outcome::Handed::mark_current();
    let origin = principal.origin();
    let task = tokio::spawn({
        let state = state.clone();
        async move {
            let Ack::Transfer(withdrawal) = accepted(state.submit(command, origin).await?, currency)? else {
                return Err(ApiError::internal("withdrawal answered with another ack"));
            };
            // A retry finds the hold completed already: the job then has nothing to do.
            state.payments().pay_and_wait(withdrawal, state.config().payment_wait).await;
            Ok(withdrawal)
        }
    });
    let withdrawal = task.await.map_err(ApiError::internal)??;
    let view = render_transfer(&state, withdrawal, currency, account).await?;
    Ok((StatusCode::CREATED, Json(view)).into_response())
}

#[utoipa::path(
    get,
    path = "/v1/wallet/transactions",
    tag = "players",
    summary = "The statement",
    description = "The player's ledger postings, newest first, from the read models. Read-your-writes: waits (at \
        most 2 s) until the models hold this player's last write and `X-Min-Position`, else 503 `unavailable`.",
    security(("bearer" = [])),
    params(PageQuery, crate::history::MinPosition),
    responses(
        (status = 200, description = "The player's ledger postings, newest first", body = Page<TransactionView>),
        (status = 400, description = "Bad `limit` or `cursor`, or an unknown parameter \
            (`invalid_request`)", body = ApiError),
        (status = 401, description = "No valid credential (`unauthenticated`)", body = ApiError),
        (status = 403, description = "Not a player token (`forbidden`)", body = ApiError),
    ),
)]
pub(crate) async fn transactions(
    State(state): State<AppState>,
    principal: Principal,
    headers: HeaderMap,
    query: Result<Query<PageQuery>, QueryRejection>,
) -> Result<Json<Page<TransactionView>>, ApiError> {
    let (account, currency) = principal.player()?;
    let Query(page) = query.map_err(|rejection| ApiError::invalid(rejection.body_text()))?;
    crate::history::player_transactions(&state, &headers, account, currency, &page).await.map(Json)
}

// ---- bets -----------------------------------------------------------------------------------

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LegBody {
    #[schema(example = "sel_1")]
    pub selection_id: String,
    /// The decimal price the bettor saw.
    #[schema(example = "2.50", pattern = r"^([0-9]{1,6}(\.[0-9]{1,4})?|[0-9]{1,9}/[0-9]{1,9}|[+-][0-9]{3,9})$")]
    pub price: String,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PlaceBetRequest {
    /// `single`, `multiple` or `system`.
    #[serde(rename = "type")]
    #[schema(example = "single", pattern = r"^(single|multiple|system)$")]
    pub kind: String,
    /// For system bets: `trixie`, `patent`, `yankee`, `lucky15`, `canadian`, `heinz`,
    /// `super_heinz`, `goliath`.
    #[schema(pattern = r"^(trixie|patent|yankee|lucky15|canadian|heinz|super_heinz|goliath)$")]
    pub system: Option<String>,
    #[schema(min_items = 1, max_items = 20)]
    pub legs: Vec<LegBody>,
    /// Per line for system and each-way bets.
    #[schema(example = "10.00", pattern = r"^[0-9]{1,18}(\.[0-9]+)?$")]
    pub stake: String,
    /// `none` (default), `better` or `any`.
    #[schema(example = "none", pattern = r"^(none|better|any)$")]
    pub accept_price_changes: Option<String>,
    #[serde(default)]
    pub each_way: bool,
}

#[utoipa::path(
    post,
    path = "/v1/bets",
    tag = "players",
    summary = "Place a bet",
    description = "A single, multiple or system bet. The bet is bound to the price at commit; `accept_price_changes` \
        says which price moves the bettor accepts. Idempotent with `Idempotency-Key`.",
    security(("bearer" = [])),
    params(IdempotencyKey),
    request_body = PlaceBetRequest,
    responses(
        (status = 201, description = "Accepted, bound to the price at commit", body = BetView),
        (status = 202, description = "Pending: an in-play delay applies; the final status comes from `GET \
            /v1/bets/{id}`", body = BetView),
        (status = 400, description = "Malformed body, unknown field, bad money or odds, or bad `Idempotency-Key` \
            (`invalid_request`), or no `Idempotency-Key` (`idempotency_key_required`)", body = ApiError),
        (status = 401, description = "No valid credential (`unauthenticated`)", body = ApiError),
        (status = 403, description = "Not a player token (`forbidden`), or the account may not bet now \
            (`self_excluded`, `timed_out`, `account_frozen`, or `reality_check_due`: a reality check fell due and \
            play pauses until `POST /v1/reality-check/acknowledge`)", body = ApiError),
        (status = 404, description = "The token's account does not exist (`unknown_account`)", body = ApiError),
        (status = 409, description = "`price_changed` (with `current_price`), `market_suspended`, `market_closed` or \
            `selection_unavailable`", body = ApiError),
        (status = 413, description = "Body over the size limit (`payload_too_large`)", body = ApiError),
        (status = 415, description = "Not `Content-Type: application/json` \
            (`unsupported_media_type`)", body = ApiError),
        (status = 422, description = "`insufficient_funds`, `stake_too_low` (with `min_stake`), `stake_too_high` (with \
            `max_stake`; both in the player's currency, converted from the base currency), `liability_limit`, \
            `limit_reached` (with `limit`, `period`), `fx_rate_missing` (with `currency`: no exchange rate for the \
            player's currency), `invalid_bet`, `invalid_request` or `idempotency_key_reused`", body = ApiError),
    ),
)]
pub(crate) async fn place_bet(
    State(state): State<AppState>,
    principal: Principal,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let started = std::time::Instant::now();
    let result = place_bet_inner(&state, &principal, &headers, &body).await;
    let outcome = match &result {
        Ok((status, _)) if *status == StatusCode::ACCEPTED => "pending",
        Ok(_) => "accepted",
        Err(error) => error.code,
    };
    state.metrics().record_bet(outcome, started.elapsed().as_secs_f64());
    let (status, view) = result?;
    Ok((status, Json(view)).into_response())
}

async fn place_bet_inner(
    state: &AppState,
    principal: &Principal,
    headers: &HeaderMap,
    body: &Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, BetView), ApiError> {
    let (account, currency) = principal.player()?;
    let request: PlaceBetRequest = parse_body(body)?;
    let mut place = crate::requests::place_bet_from(request, account, currency)?;
    let key = idempotency(headers, body_bytes(body))?;
    if let Some(reply) = state.first_reply(account, &key).await? {
        // A retry after the book's window: the first reply, rendered as placed like the book's.
        let Ack::BetPlaced { bet, status } = accepted(reply, currency)? else {
            return Err(ApiError::internal("placement answered with another ack"));
        };
        let held = state.read(move |book| book.bet(bet).map(std::borrow::Cow::into_owned)).await?;
        let view = match held {
            Some(found) => BetView::of(&found, currency, true),
            None => state
                .placed_bet_from_models(bet)
                .await?
                .ok_or_else(|| ApiError::internal("an acknowledged bet is missing"))?,
        };
        let code = if status == BetStatus::Pending { StatusCode::ACCEPTED } else { StatusCode::CREATED };
        return Ok((code, view));
    }
    place.idempotency = Some(key);
    // One trip to the book: the bet is copied on the sequencer thread right after its batch is
    // durable, and rendered here.
    let (reply, placed) = state
        .submit_then(Command::PlaceBet(place), principal.origin(), |book, reply| match reply {
            Ok(Ack::BetPlaced { bet, .. }) => book.bet(*bet).map(std::borrow::Cow::into_owned),
            _ => None,
        })
        .await?;
    let ack = accepted(reply, currency)?;
    let Ack::BetPlaced { status, .. } = ack else {
        return Err(ApiError::internal("placement answered with another ack"));
    };
    // Rendered as placed, so a retry with the same key gets the same body.
    let view = placed
        .map(|found| BetView::of(&found, currency, true))
        .ok_or_else(|| ApiError::internal("an acknowledged bet is missing"))?;
    let code = if status == BetStatus::Pending { StatusCode::ACCEPTED } else { StatusCode::CREATED };
    Ok((code, view))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct BetsQuery {
    /// `open` (pending or accepted) or `settled` (everything else).
    #[param(pattern = "^(open|settled)$", example = "open")]
    pub status: Option<String>,
    /// Items per page, 1 to 200 (50 when absent).
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<usize>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

#[utoipa::path(
    get,
    path = "/v1/bets",
    tag = "players",
    summary = "The player's bets",
    description = "From the read models. Read-your-writes: waits (at most 2 s) until the models hold this player's \
        last write and `X-Min-Position`, else 503 `unavailable`.",
    security(("bearer" = [])),
    params(BetsQuery, crate::history::MinPosition),
    responses(
        (status = 200, description = "The player's bets, newest first", body = Page<BetView>),
        (status = 400, description = "Bad `status`, `limit` or `cursor`, or an unknown parameter \
            (`invalid_request`)", body = ApiError),
        (status = 401, description = "No valid credential (`unauthenticated`)", body = ApiError),
        (status = 403, description = "Not a player token (`forbidden`)", body = ApiError),
    ),
)]
pub(crate) async fn list_bets(
    State(state): State<AppState>,
    principal: Principal,
    headers: HeaderMap,
    query: Result<Query<BetsQuery>, QueryRejection>,
) -> Result<Json<Page<BetView>>, ApiError> {
    let (account, _) = principal.player()?;
    let Query(query) = query.map_err(|rejection| ApiError::invalid(rejection.body_text()))?;
    let open = match query.status.as_deref() {
        None => None,
        Some("open") => Some(true),
        Some("settled") => Some(false),
        Some(_) => return Err(ApiError::invalid("status must be open or settled").with("field", "status")),
    };
    let page = PageQuery { limit: query.limit, cursor: query.cursor };
    crate::history::player_bets(&state, &headers, account, open, &page).await.map(Json)
}

/// The player's own bet, or 404.
fn own_bet(path: Result<Path<String>, PathRejection>) -> Result<BetId, ApiError> {
    let Path(id) = path.map_err(|_| ApiError::not_found("bet"))?;
    parse_id(&id, "bet_", "bet").map(BetId)
}

#[utoipa::path(
    get,
    path = "/v1/bets/{id}",
    tag = "players",
    summary = "A bet",
    description = "From the read models. Read-your-writes: waits (at most 2 s) until the models hold this player's \
        last write and `X-Min-Position`, else 503 `unavailable`.",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "A bet id", example = "bet_1"), crate::history::MinPosition),
    responses(
        (status = 200, description = "The bet", body = BetView),
        (status = 400, description = "A bad `X-Min-Position` (`invalid_request`)", body = ApiError),
        (status = 401, description = "No valid credential (`unauthenticated`)", body = ApiError),
        (status = 403, description = "Not a player token (`forbidden`)", body = ApiError),
        (status = 404, description = "No such bet of this player (`not_found`)", body = ApiError),
    ),
)]
pub(crate) async fn get_bet(
    State(state): State<AppState>,
    principal: Principal,
    headers: HeaderMap,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<BetView>, ApiError> {
    let (account, _) = principal.player()?;
    let bet = own_bet(path)?;
    crate::history::player_bet(&state, &headers, account, bet).await.map(Json)
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CashoutQuoteView {
    pub quote_id: String,
    pub bet_id: String,
    pub amount: String,
    pub expires_at: String,
}

#[utoipa::path(
    get,
    path = "/v1/bets/{id}/cashout",
    tag = "players",
    summary = "Quote a cash-out",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "A bet id", example = "bet_1")),
    responses(
        (status = 200, description = "A cash-out quote, valid until `expires_at`", body = CashoutQuoteView),
        (status = 401, description = "No valid credential (`unauthenticated`)", body = ApiError),
        (status = 403, description = "Not a player token (`forbidden`)", body = ApiError),
        (status = 404, description = "No such bet of this player (`not_found`)", body = ApiError),
        (status = 409, description = "The bet cannot be cashed out now (`cashout_unavailable`)", body = ApiError),
    ),
)]
pub(crate) async fn quote_cashout(
    State(state): State<AppState>,
    principal: Principal,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<CashoutQuoteView>, ApiError> {
    let (account, currency) = principal.player()?;
    let bet = own_bet(path)?;
    let ack = accepted(state.submit(Command::QuoteCashout { account, bet }, principal.origin()).await?, currency)
        .map_err(|error| if error.code == "unknown_bet" { ApiError::not_found("bet") } else { error })?;
    let Ack::CashoutQuote { quote, amount, expires_at } = ack else {
        return Err(ApiError::internal("a quote answered with another ack"));
    };
    Ok(Json(CashoutQuoteView {
        quote_id: quote.to_string(),
        bet_id: bet.to_string(),
        amount: currency.format(amount),
        expires_at: format_rfc3339(expires_at),
    }))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CashoutRequest {
    #[schema(example = "quo_1")]
    pub quote_id: String,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CashoutView {
    pub bet_id: String,
    pub amount: String,
    pub status: String,
}

#[utoipa::path(
    post,
    path = "/v1/bets/{id}/cashout",
    tag = "players",
    summary = "Accept a cash-out quote",
    description = "Idempotent with `Idempotency-Key`.",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "A bet id", example = "bet_1"), IdempotencyKey),
    request_body = CashoutRequest,
    responses(
        (status = 200, description = "Cashed out", body = CashoutView),
        (status = 400, description = "Malformed body, unknown field or bad `Idempotency-Key` \
            (`invalid_request`), or no `Idempotency-Key` (`idempotency_key_required`)", body = ApiError),
        (status = 401, description = "No valid credential (`unauthenticated`)", body = ApiError),
        (status = 403, description = "Not a player token (`forbidden`)", body = ApiError),
        (status = 404, description = "No such bet of this player (`not_found`)", body = ApiError),
        (status = 409, description = "`quote_expired`, `cashout_unavailable` or `price_changed`", body = ApiError),
        (status = 413, description = "Body over the size limit (`payload_too_large`)", body = ApiError),
        (status = 415, description = "Not `Content-Type: application/json` \
            (`unsupported_media_type`)", body = ApiError),
        (status = 422, description = "The idempotency key was used with another body \
            (`idempotency_key_reused`), or the balance would pass the money maximum \
            (`amount_too_large`)", body = ApiError),
    ),
)]
pub(crate) async fn accept_cashout(
    State(state): State<AppState>,
    principal: Principal,
    path: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<CashoutView>, ApiError> {
    let (account, currency) = principal.player()?;
    let bet = own_bet(path)?;
    let request: CashoutRequest = parse_body(&body)?;
    let quote = parse_id(&request.quote_id, "quo_", "quote")
        .map_err(|_| ApiError::new(StatusCode::CONFLICT, "quote_expired", "the quote is unknown or expired"))?;
    let key = idempotency(&headers, body_bytes(&body))?;
    let reply = match state.first_reply(account, &key).await? {
        Some(reply) => reply,
        None => {
            let command = Command::AcceptCashout { account, bet, quote: book::QuoteId(quote), idempotency: Some(key) };
            state.submit(command, principal.origin()).await?
        }
    };
    let ack = accepted(reply, currency).map_err(|error| {
        if error.code == "unknown_bet" {
            ApiError::not_found("bet")
        } else {
            error
        }
    })?;
    let Ack::CashedOut { bet, amount } = ack else {
        return Err(ApiError::internal("a cash-out answered with another ack"));
    };
    Ok(Json(CashoutView { bet_id: bet.to_string(), amount: currency.format(amount), status: "cashed_out".to_string() }))
}

// ---- responsible gambling -----------------------------------------------------------------

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct PendingLimitView {
    #[schema(required = true)]
    pub value: Option<String>,
    pub effective_at: String,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct LimitView {
    /// The limit in force now (null: none).
    #[schema(required = true)]
    pub value: Option<String>,
    /// A raised or removed limit waiting out its cooling-off.
    #[schema(required = true)]
    pub pending: Option<PendingLimitView>,
    /// Used in the current period.
    pub used: String,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct PeriodLimitsView {
    pub day: LimitView,
    pub week: LimitView,
    pub month: LimitView,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct LimitsView {
    pub deposit: PeriodLimitsView,
    pub loss: PeriodLimitsView,
    pub stake: PeriodLimitsView,
    #[schema(required = true)]
    pub timed_out_until: Option<String>,
    #[schema(required = true)]
    pub self_excluded_until: Option<String>,
}

#[utoipa::path(
    get,
    path = "/v1/limits",
    tag = "players",
    summary = "Responsible-gambling limits",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Deposit, loss and stake limits per period, time-out and \
            self-exclusion", body = LimitsView),
        (status = 401, description = "No valid credential (`unauthenticated`)", body = ApiError),
        (status = 403, description = "Not a player token (`forbidden`)", body = ApiError),
        (status = 404, description = "The token's account does not exist (`not_found`)", body = ApiError),
    ),
)]
pub(crate) async fn get_limits(
    State(state): State<AppState>,
    principal: Principal,
) -> Result<Json<LimitsView>, ApiError> {
    let (account, currency) = principal.player()?;
    state
        .read(move |book| limits_view(book, account, currency))
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::not_found("account"))
}

/// A player's limits, their usage and measures in force, on the book's clock (decision state:
/// the book's, not the read models').
pub(crate) fn limits_view(book: &Book, account: AccountId, currency: Currency) -> Option<LimitsView> {
    let now = book.now();
    let player = book.players().get(account.index())?;
    let slot = |kind: LimitKind, period: Period| {
        let slot = player.limits[kind.slot()][period.slot()];
        let usage = player.usage(period, now);
        let used = match kind {
            LimitKind::Deposit => usage.deposited,
            LimitKind::Stake => usage.staked,
            LimitKind::Loss => usage.net_loss.max(0),
        };
        LimitView {
            value: slot.effective(now).map(|value| currency.format(value)),
            pending: slot.pending.filter(|pending| pending.effective_at > now).map(|pending| PendingLimitView {
                value: pending.value.map(|value| currency.format(value)),
                effective_at: format_rfc3339(pending.effective_at),
            }),
            // Usage counts a whole period and may pass the money maximum.
            used: crate::compliance::format_minor(currency, i128::from(used)),
        }
    };
    let periods = |kind| PeriodLimitsView {
        day: slot(kind, Period::Day),
        week: slot(kind, Period::Week),
        month: slot(kind, Period::Month),
    };
    Some(LimitsView {
        deposit: periods(LimitKind::Deposit),
        loss: periods(LimitKind::Loss),
        stake: periods(LimitKind::Stake),
        timed_out_until: (player.timed_out_until > now).then(|| format_rfc3339(player.timed_out_until)),
        self_excluded_until: (player.excluded_until > now).then(|| format_rfc3339(player.excluded_until)),
    })
}

/// Distinguishes an absent field (`None`) from an explicit `null` (`Some(None)`).
pub(crate) fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    deserializer: D,
) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(deserializer).map(Some)
}

#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PeriodLimitsBody {
    /// A money string sets the limit, `null` removes it, absent leaves it.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>, pattern = r"^[0-9]{1,18}(\.[0-9]+)?$")]
    pub day: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>, pattern = r"^[0-9]{1,18}(\.[0-9]+)?$")]
    pub week: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>, pattern = r"^[0-9]{1,18}(\.[0-9]+)?$")]
    pub month: Option<Option<String>>,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LimitsRequest {
    pub deposit: Option<PeriodLimitsBody>,
    pub loss: Option<PeriodLimitsBody>,
    pub stake: Option<PeriodLimitsBody>,
}

#[utoipa::path(
    put,
    path = "/v1/limits",
    tag = "players",
    summary = "Set responsible-gambling limits",
    description = "A money string sets a limit, `null` removes it, an absent field leaves it.",
    security(("bearer" = [])),
    request_body = LimitsRequest,
    responses(
        (status = 200, description = "The limits after the change: lower limits apply at once, higher or removed ones \
            after a cooling-off", body = LimitsView),
        (status = 400, description = "Malformed body, unknown field or bad money (`invalid_request`, names the \
            `field`)", body = ApiError),
        (status = 401, description = "No valid credential (`unauthenticated`)", body = ApiError),
        (status = 403, description = "Not a player token (`forbidden`)", body = ApiError),
        (status = 404, description = "The token's account does not exist (`unknown_account`)", body = ApiError),
        (status = 413, description = "Body over the size limit (`payload_too_large`)", body = ApiError),
        (status = 415, description = "Not `Content-Type: application/json` \
            (`unsupported_media_type`)", body = ApiError),
        (status = 422, description = "A limit the book refuses (`invalid_request`)", body = ApiError),
    ),
)]
pub(crate) async fn put_limits(
    State(state): State<AppState>,
    principal: Principal,
    Json(request): Json<LimitsRequest>,
) -> Result<Json<LimitsView>, ApiError> {
    let (account, currency) = principal.player()?;
    let mut changes = Vec::new();
    for (kind, body) in
        [(LimitKind::Deposit, &request.deposit), (LimitKind::Loss, &request.loss), (LimitKind::Stake, &request.stake)]
    {
        let Some(body) = body else { continue };
        for (period, value) in [(Period::Day, &body.day), (Period::Week, &body.week), (Period::Month, &body.month)] {
            let Some(value) = value else { continue };
            let field = format!("{}.{}", kind.as_str(), period.as_str());
            let value = value.as_deref().map(|text| parse_money(currency, text, &field)).transpose()?;
            changes.push(LimitChange { kind, period, value });
        }
    }
    accepted(state.submit(Command::SetLimits { account, changes }, principal.origin()).await?, currency)?;
    get_limits(State(state), principal).await
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SelfExclusionRequest {
    /// At least 182 (six months).
    #[schema(example = 182)]
    pub days: u32,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TimeOutRequest {
    #[schema(example = 24)]
    pub hours: u32,
}

#[utoipa::path(
    post,
    path = "/v1/self-exclusion",
    tag = "players",
    summary = "Self-exclude",
    description = "Takes effect at once for at least 182 days.",
    security(("bearer" = [])),
    request_body = SelfExclusionRequest,
    responses(
        (status = 200, description = "Excluded at once; the limits with `self_excluded_until`", body = LimitsView),
        (status = 400, description = "Malformed body or unknown field (`invalid_request`)", body = ApiError),
        (status = 401, description = "No valid credential (`unauthenticated`)", body = ApiError),
        (status = 403, description = "Not a player token (`forbidden`)", body = ApiError),
        (status = 404, description = "The token's account does not exist (`unknown_account`)", body = ApiError),
        (status = 413, description = "Body over the size limit (`payload_too_large`)", body = ApiError),
        (status = 415, description = "Not `Content-Type: application/json` \
            (`unsupported_media_type`)", body = ApiError),
        (status = 422, description = "Days out of range (`invalid_request`)", body = ApiError),
    ),
)]
pub(crate) async fn self_exclude(
    State(state): State<AppState>,
    principal: Principal,
    Json(request): Json<SelfExclusionRequest>,
) -> Result<Json<LimitsView>, ApiError> {
    let (account, currency) = principal.player()?;
    accepted(state.submit(Command::SelfExclude { account, days: request.days }, principal.origin()).await?, currency)?;
    get_limits(State(state), principal).await
}

#[utoipa::path(
    post,
    path = "/v1/time-out",
    tag = "players",
    summary = "Take a time-out",
    description = "Takes effect at once.",
    security(("bearer" = [])),
    request_body = TimeOutRequest,
    responses(
        (status = 200, description = "Timed out at once; the limits with `timed_out_until`", body = LimitsView),
        (status = 400, description = "Malformed body or unknown field (`invalid_request`)", body = ApiError),
        (status = 401, description = "No valid credential (`unauthenticated`)", body = ApiError),
        (status = 403, description = "Not a player token (`forbidden`)", body = ApiError),
        (status = 404, description = "The token's account does not exist (`unknown_account`)", body = ApiError),
        (status = 413, description = "Body over the size limit (`payload_too_large`)", body = ApiError),
        (status = 415, description = "Not `Content-Type: application/json` \
            (`unsupported_media_type`)", body = ApiError),
        (status = 422, description = "Hours out of range (`invalid_request`)", body = ApiError),
    ),
)]
pub(crate) async fn time_out(
    State(state): State<AppState>,
    principal: Principal,
    Json(request): Json<TimeOutRequest>,
) -> Result<Json<LimitsView>, ApiError> {
    let (account, currency) = principal.player()?;
    accepted(state.submit(Command::TimeOut { account, hours: request.hours }, principal.origin()).await?, currency)?;
    get_limits(State(state), principal).await
}
