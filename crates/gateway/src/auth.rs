//! Authentication and authorisation: argon2 password hashes (computed on a bounded pool of
//! worker threads), short-lived JWT access tokens bound to a session, rotating refresh tokens,
//! sessions revoked at logout, operator API keys stored as SHA-256 hashes with scopes, login
//! throttling per account (and per address for unknown usernames), and the password policy.
//! Refresh tokens, revocations, login throttles and TOTP steps are edge state (`edge/`): in
//! this process or shared by several gateways.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, LazyLock, Mutex, RwLock};
use std::time::Duration;

use argon2::password_hash::{rand_core::OsRng, Output, ParamsString, PasswordHash, Salt, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, StatusCode};
use book::{scopes, AccountId, Actor, ApiKeyId, Origin, StaffId};
use domain::Currency;
use jsonwebtoken::{DecodingKey, EncodingKey, Header, Validation};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::edge::{EdgeState, LoginReservation, RefreshGrant, SessionId, SessionUnverified};
use crate::error::ApiError;
use crate::AppState;

/// Failed logins allowed per account (and per address for unknown usernames) in
/// `LOGIN_WINDOW` before throttling. Attempts being verified count as failures until they
/// succeed, so no more than this many guesses are ever evaluated at once or in a window.
pub const LOGIN_FAILURES_MAX: u32 = 5;
pub const LOGIN_WINDOW: Duration = Duration::from_secs(15 * 60);
/// Accounts and addresses the login throttle remembers; past it, expired windows are
/// forgotten first, then the oldest idle ones.
pub const LOGIN_THROTTLE_KEYS_MAX: usize = 100_000;
/// Characters (Unicode scalar values, not bytes) of a password, per NIST SP 800-63B: at least
/// 8, and long passphrases allowed.
pub const PASSWORD_CHARS_MIN: usize = 8;
pub const PASSWORD_CHARS_MAX: usize = 128;
/// Password hashes computed at once by default: one worker thread per core, at most this many.
/// Each argon2 hash holds 19 MiB while it runs, so this bounds the memory of hashing.
pub const PASSWORD_HASH_WORKERS_MAX: usize = 16;
/// Password hashes waiting for a worker; past it, 503 `overloaded` with `Retry-After`.
pub const PASSWORD_HASH_QUEUE_MAX: usize = 64;
/// Refresh tokens alive at once, across players: beyond it the oldest expire first.
pub const REFRESH_TOKENS_MAX: usize = 1_000_000;
/// Sessions logged out whose access tokens have not yet expired; past it, the revocations
/// closest to their expiry are forgotten first (and a warning is logged).
pub const REVOKED_SESSIONS_MAX: usize = 1_000_000;
/// Lifetime of a staff access token. Short: staff act with wide powers, and a token cannot be
/// refreshed (a staff member logs in again, with a fresh TOTP code).
pub const STAFF_ACCESS_TTL: Duration = Duration::from_secs(15 * 60);
/// Prefix of operator API keys, so a key is never mistaken for a JWT.
pub const API_KEY_PREFIX: &str = "sk_";

/// The bundled list of common passwords (8 characters or more, lower case), refused at
/// registration as NIST SP 800-63B asks. See the file's header for where it comes from.
const COMMON_PASSWORDS_TEXT: &str = include_str!("common_passwords.txt");
static COMMON_PASSWORDS: LazyLock<HashSet<&'static str>> = LazyLock::new(|| {
    COMMON_PASSWORDS_TEXT.lines().map(str::trim).filter(|line| !line.is_empty() && !line.starts_with('#')).collect()
});

/// Default number of password hash workers: the cores, within `1..=PASSWORD_HASH_WORKERS_MAX`.
pub fn password_hash_workers_default() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from).clamp(1, PASSWORD_HASH_WORKERS_MAX)
}

/// Checks a new password: 400 `invalid_request` (field `password`) outside
/// `PASSWORD_CHARS_MIN..=PASSWORD_CHARS_MAX` characters, 422 `weak_password` when it is one of
/// the bundled common passwords (compared in lower case).
pub fn check_new_password(password: &str) -> Result<(), ApiError> {
    let characters = password.chars().count();
    if !(PASSWORD_CHARS_MIN..=PASSWORD_CHARS_MAX).contains(&characters) {
        return Err(ApiError::invalid(format!(
            "passwords are {PASSWORD_CHARS_MIN} to {PASSWORD_CHARS_MAX} characters"
        ))
        .with("field", "password"));
    }
    if COMMON_PASSWORDS.contains(password.to_lowercase().as_str()) {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "weak_password",
            "this password is one of the most common ones; choose another",
        )
        .with("field", "password"));
    }
    Ok(())
}

type HashJob = Box<dyn FnOnce(&mut HashMemory) + Send>;

/// Argon2's working memory (19 MiB with the default parameters), kept by a worker and reused
/// by every hash it computes. Allocated afresh per hash, the freed blocks stay resident: glibc
/// raises its mmap threshold after the first free and then keeps such blocks in its arenas,
/// so resident memory grew by about one hash per request.
#[derive(Default)]
pub struct HashMemory(Vec<Block>);

impl HashMemory {
    fn blocks(&mut self, count: usize) -> &mut [Block] {
        if self.0.len() < count {
            self.0.resize(count, Block::new());
        }
        &mut self.0[..count]
    }
}

/// The memory cost of a stored hash we agree to verify: a hash asking for more (which we never
/// write) is refused rather than allocated.
const VERIFY_BLOCKS_MAX: usize = 4 * Params::DEFAULT_M_COST as usize;

/// argon2 of `password` and `salt` into an output of `output_len` bytes, in `memory`.
fn argon2_output(
    memory: &mut HashMemory,
    argon2: &Argon2<'_>,
    password: &[u8],
    salt: Salt<'_>,
    output_len: usize,
) -> Result<Output, argon2::password_hash::Error> {
    let mut salt_bytes = [0u8; Salt::MAX_LENGTH];
    let salt_bytes = salt.decode_b64(&mut salt_bytes)?;
    let blocks = memory.blocks(argon2.params().block_count());
    Output::init_with(output_len, |out| {
        argon2.hash_password_into_with_memory(password, salt_bytes, out, &mut *blocks).map_err(Into::into)
    })
}

/// A fixed set of worker threads computing password hashes, fed by a bounded queue: memory
/// stays flat whatever the arrival rate (at most `workers` hashes of 19 MiB at once), and a
/// full queue is 503 `overloaded` at once rather than a growing backlog. Threads of their own,
/// not tokio's blocking pool, because that pool grows to hundreds of threads, each of which
/// would keep its own allocator arena of freed hash memory.
pub struct PasswordHashPool {
    jobs: SyncSender<HashJob>,
    workers: usize,
    in_flight: Arc<AtomicUsize>,
    in_flight_peak: Arc<AtomicUsize>,
}

impl PasswordHashPool {
    pub fn new(workers: usize, queue_max: usize) -> PasswordHashPool {
        let workers = workers.max(1);
        let (jobs, receiver) = sync_channel::<HashJob>(queue_max);
        let receiver = Arc::new(Mutex::new(receiver));
        for index in 0..workers {
            let receiver = Arc::clone(&receiver);
            let spawned = std::thread::Builder::new()
                .name(format!("password-hash-{index}"))
                .spawn(move || hash_worker(&receiver));
            if let Err(error) = spawned {
                tracing::error!(%error, "could not start a password hash worker");
            }
        }
        PasswordHashPool {
            jobs,
            workers,
            in_flight: Arc::new(AtomicUsize::new(0)),
            in_flight_peak: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// Runs `work` on a worker and awaits its result; 503 `overloaded` at once when the queue
    /// is full. The work runs to the end even if the caller goes away.
    pub async fn run<R: Send + 'static>(
        &self,
        work: impl FnOnce(&mut HashMemory) -> R + Send + 'static,
    ) -> Result<R, ApiError> {
        let (sender, receiver) = oneshot::channel();
        let in_flight = Arc::clone(&self.in_flight);
        let in_flight_peak = Arc::clone(&self.in_flight_peak);
        let job: HashJob = Box::new(move |memory| {
            let _running = InFlight::enter(&in_flight, &in_flight_peak);
            let _ = sender.send(work(memory));
        });
        match self.jobs.try_send(job) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                return Err(ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "overloaded",
                    "too many logins and registrations at once; retry shortly",
                )
                .retry_after(1))
            }
            Err(TrySendError::Disconnected(_)) => return Err(ApiError::internal("the password hash workers stopped")),
        }
        receiver.await.map_err(|_| ApiError::internal("a password hash worker failed"))
    }

    pub fn workers(&self) -> usize {
        self.workers
    }

    /// The most hashes that ever ran at once.
    pub fn in_flight_peak(&self) -> usize {
        self.in_flight_peak.load(Ordering::SeqCst)
    }
}

/// Counts a hash in flight until dropped (also when the hash panics).
struct InFlight<'a>(&'a AtomicUsize);

impl<'a> InFlight<'a> {
    fn enter(in_flight: &'a AtomicUsize, peak: &AtomicUsize) -> InFlight<'a> {
        let now = in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        peak.fetch_max(now, Ordering::SeqCst);
        InFlight(in_flight)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// One worker: takes jobs until the pool is dropped. A panicking job loses its reply (the
/// caller answers 500) but not the worker.
fn hash_worker(receiver: &Mutex<Receiver<HashJob>>) {
    let mut memory = HashMemory::default();
    loop {
        let job = match receiver.lock() {
            Ok(receiver) => receiver.recv(),
            Err(_) => return,
        };
        let Ok(job) = job else { return };
        if std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| job(&mut memory))).is_err() {
            tracing::error!("a password hash job panicked");
        }
    }
}

/// Who is calling.
#[derive(Clone, Debug)]
pub enum Principal {
    Player {
        account: AccountId,
        currency: Currency,
    },
    Operator {
        key: Option<ApiKeyId>,
        scopes: u8,
    },
    /// A staff member logged in with a password and a TOTP code, holding the scopes of their
    /// roles; `read_only` (support alone: `book::roles::read_only`) holds them for reads only,
    /// and the extractor clears them on any other method.
    Staff {
        staff: StaffId,
        scopes: u8,
        read_only: bool,
    },
}

/// The identity a per-credential rate limit counts by: however a credential is spelled, one
/// player or one API key is one bucket.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PrincipalKey {
    Player(AccountId),
    ApiKey(ApiKeyId),
    Bootstrap,
    Staff(StaffId),
}

impl Principal {
    /// The player behind a player token; operators get 403.
    pub fn player(&self) -> Result<(AccountId, Currency), ApiError> {
        match self {
            Principal::Player { account, currency } => Ok((*account, *currency)),
            Principal::Operator { .. } | Principal::Staff { .. } => Err(ApiError::forbidden()),
        }
    }

    /// Who this principal is in the journal and the audit trail.
    pub fn actor(&self) -> Actor {
        match self {
            Principal::Player { account, .. } => Actor::Player(*account),
            Principal::Operator { key, .. } => Actor::ApiKey(*key),
            Principal::Staff { staff, .. } => Actor::Staff(*staff),
        }
    }

    /// The origin of a command this principal submits, without a reason.
    pub fn origin(&self) -> Origin {
        Origin::new(self.actor())
    }

    /// Succeeds for an operator holding any of `needed` (scope bits); players get 403.
    pub fn require_scope(&self, needed: u8) -> Result<(), ApiError> {
        match self {
            Principal::Operator { scopes: held, .. } | Principal::Staff { scopes: held, .. }
                if held & (needed | scopes::ADMIN) != 0 =>
            {
                Ok(())
            }
            _ => Err(ApiError::forbidden()),
        }
    }

    /// A stable name for rate limiting and logs.
    pub fn label(&self) -> String {
        match self {
            Principal::Player { account, .. } => account.to_string(),
            Principal::Operator { key: Some(key), .. } => key.to_string(),
            Principal::Operator { key: None, .. } => "bootstrap".to_string(),
            Principal::Staff { staff, .. } => staff.to_string(),
        }
    }

    pub fn key(&self) -> PrincipalKey {
        match self {
            Principal::Player { account, .. } => PrincipalKey::Player(*account),
            Principal::Operator { key: Some(key), .. } => PrincipalKey::ApiKey(*key),
            Principal::Operator { key: None, .. } => PrincipalKey::Bootstrap,
            Principal::Staff { staff, .. } => PrincipalKey::Staff(*staff),
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    sub: String,
    cur: String,
    exp: u64,
    iat: u64,
    /// The session: shared by every access token issued from one login and its refreshes, and
    /// revoked as a whole at logout. Absent in tokens issued before sessions existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    sid: Option<String>,
    /// A staff token's scopes, space-separated names as in OAuth 2.0 (RFC 8693 `scope`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    scope: Option<String>,
    /// A staff token whose scopes are for reads only (the support role).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    read_only: bool,
}

/// What the login throttle keys on: the account that failed, or, for usernames that name no
/// account, the client address. A login for an account that did not fail is never throttled
/// by someone else's failures.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LoginKey {
    Account(AccountId),
    Staff(StaffId),
    UnknownUsernameFrom(IpAddr),
}

pub struct Auth {
    encoding: EncodingKey,
    decoding: DecodingKey,
    access_ttl: Duration,
    /// Refresh tokens, revoked sessions, login throttles and TOTP steps.
    edge: Arc<EdgeState>,
    /// SHA-256 hex of every live API key, with its id and scopes; loaded from the book.
    api_keys: Mutex<HashMap<String, (ApiKeyId, u8)>>,
    /// Staff members still enabled, with their roles now; loaded from the book. A staff token
    /// whose member is not here (disabled since it was issued) is refused, and a token's
    /// scopes are those of the member's roles now (a role change applies at once).
    staff_enabled: RwLock<HashMap<StaffId, u8>>,
    bootstrap_key_hash: Option<String>,
    hashers: PasswordHashPool,
}

pub struct TokenPair {
    pub access_token: String,
    pub refresh_token: String,
    pub expires_in: u64,
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

fn unix_seconds() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |elapsed| elapsed.as_secs())
}

/// A fresh secret: 32 random bytes in hex.
pub fn random_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}

/// Hashes a password with argon2id and a random salt, in PHC string format (slow on purpose:
/// the gateway runs it on its `PasswordHashPool`, in the worker's memory).
pub fn hash_password(password: &str) -> Result<String, ApiError> {
    hash_password_in(&mut HashMemory::default(), password)
}

pub fn hash_password_in(memory: &mut HashMemory, password: &str) -> Result<String, ApiError> {
    let salt = SaltString::generate(&mut OsRng);
    let argon2 = Argon2::default();
    let params = argon2.params().clone();
    let output_len = params.output_len().unwrap_or(Params::DEFAULT_OUTPUT_LEN);
    let output =
        argon2_output(memory, &argon2, password.as_bytes(), salt.as_salt(), output_len).map_err(ApiError::internal)?;
    let hash = PasswordHash {
        algorithm: Algorithm::default().ident(),
        version: Some(Version::default().into()),
        params: ParamsString::try_from(&params).map_err(ApiError::internal)?,
        salt: Some(salt.as_salt()),
        hash: Some(output),
    };
    Ok(hash.to_string())
}

/// Whether `password` matches the PHC string `hash` (compared in constant time).
pub fn verify_password_in(memory: &mut HashMemory, password: &str, hash: &str) -> bool {
    let Ok(parsed) = PasswordHash::new(hash) else { return false };
    let (Some(salt), Some(expected)) = (parsed.salt, parsed.hash) else { return false };
    let Ok(algorithm) = Algorithm::try_from(parsed.algorithm) else { return false };
    let version = match parsed.version.map(Version::try_from).transpose() {
        Ok(version) => version.unwrap_or_default(),
        Err(_) => return false,
    };
    let Ok(params) = Params::try_from(&parsed) else { return false };
    if params.block_count() > VERIFY_BLOCKS_MAX {
        return false;
    }
    let argon2 = Argon2::new(algorithm, version, params);
    argon2_output(memory, &argon2, password.as_bytes(), salt, expected.len()).is_ok_and(|computed| computed == expected)
}

/// The token of `Authorization: Bearer <token>`: the scheme in any case, any spaces or tabs
/// around the token. `None` when the header is missing or not a bearer credential.
pub fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?.trim();
    let (scheme, token) = value.split_once([' ', '\t'])?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// Settings of `Auth`.
pub struct AuthOptions<'a> {
    pub secret: &'a [u8],
    pub access_ttl: Duration,
    pub bootstrap_key: Option<&'a str>,
    pub password_hash_workers: usize,
    pub password_hash_queue_max: usize,
    pub edge: Arc<EdgeState>,
}

impl Auth {
    pub fn new(options: AuthOptions<'_>) -> Auth {
        Auth {
            encoding: EncodingKey::from_secret(options.secret),
            decoding: DecodingKey::from_secret(options.secret),
            access_ttl: options.access_ttl,
            edge: options.edge,
            api_keys: Mutex::new(HashMap::new()),
            staff_enabled: RwLock::new(HashMap::new()),
            bootstrap_key_hash: options.bootstrap_key.map(|key| sha256_hex(key.as_bytes())),
            hashers: PasswordHashPool::new(options.password_hash_workers, options.password_hash_queue_max),
        }
    }

    /// The edge state: refresh tokens, revocations, login throttles, TOTP steps, rate limits.
    pub fn edge(&self) -> &Arc<EdgeState> {
        &self.edge
    }

    /// The pool every password hash and verification runs on.
    pub fn hashers(&self) -> &PasswordHashPool {
        &self.hashers
    }

    /// Issues the tokens of a new session (a login). 503 when the edge state cannot keep the
    /// refresh token.
    pub async fn issue(&self, account: AccountId, currency: Currency) -> Result<TokenPair, ApiError> {
        let mut session = [0u8; 16];
        rand::rng().fill_bytes(&mut session);
        self.issue_in(RefreshGrant { account, currency, session: SessionId::from_le_bytes(session) }).await
    }

    async fn issue_in(&self, grant: RefreshGrant) -> Result<TokenPair, ApiError> {
        let now = unix_seconds();
        let claims = Claims {
            sub: grant.account.to_string(),
            cur: grant.currency.code().to_string(),
            iat: now,
            exp: now + self.access_ttl.as_secs(),
            sid: Some(format!("{:032x}", grant.session)),
            scope: None,
            read_only: false,
        };
        let access_token =
            jsonwebtoken::encode(&Header::default(), &claims, &self.encoding).map_err(ApiError::internal)?;
        let refresh_token = random_token();
        self.edge.put_refresh(Sha256::digest(refresh_token.as_bytes()).into(), grant).await?;
        Ok(TokenPair { access_token, refresh_token, expires_in: self.access_ttl.as_secs() })
    }

    /// Exchanges a refresh token for a new pair of the same session; the old token stops
    /// working (on every gateway sharing the edge state). 401 when it is unknown, used,
    /// expired or logged out; 503 when the edge state cannot answer.
    pub async fn refresh(&self, refresh_token: &str) -> Result<TokenPair, ApiError> {
        let token = Sha256::digest(refresh_token.as_bytes()).into();
        match self.edge.take_refresh(token).await? {
            Some(grant) => self.issue_in(grant).await,
            None => Err(ApiError::unauthenticated()),
        }
    }

    /// Logs out: the refresh token stops working, and so does every access token of its
    /// session, until the last of them expires. In process, revocations are also appended to
    /// `revoked_sessions_path` when set, so a restart does not revive an access token that was
    /// logged out; a shared store keeps them itself. 503 when the edge state cannot record it.
    pub async fn revoke(&self, refresh_token: &str) -> Result<(), ApiError> {
        self.edge.revoke(Sha256::digest(refresh_token.as_bytes()).into()).await
    }

    /// Logs a staff member's token out: its session (one per login) is refused from now until
    /// the token expires, on every gateway sharing the edge state and across restarts like a
    /// player's logout. A token without a session (issued before staff sessions existed)
    /// expires on its own within `STAFF_ACCESS_TTL`.
    pub async fn revoke_staff_token(&self, token: &str) -> Result<(), ApiError> {
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &Validation::default())
            .map_err(|_| ApiError::unauthenticated())?;
        let Some(session) = data.claims.sid.as_deref() else { return Ok(()) };
        let session = SessionId::from_str_radix(session, 16).map_err(|_| ApiError::unauthenticated())?;
        let ttl = Duration::from_secs(data.claims.exp.saturating_sub(unix_seconds()) + 1);
        self.edge.revoke_session(session, ttl).await
    }

    /// Issues a staff access token: `STAFF_ACCESS_TTL`, no refresh token (a staff member logs
    /// in again, with a fresh code), carrying the scopes of the member's roles.
    pub fn issue_staff(&self, staff: &book::Staff) -> Result<(String, u64), ApiError> {
        let now = unix_seconds();
        let granted = book::roles::scopes_of(staff.roles);
        let names: Vec<&str> =
            scopes::NAMES.iter().filter(|(_, bit)| granted & bit != 0).map(|(name, _)| *name).collect();
        let mut session = [0u8; 16];
        rand::rng().fill_bytes(&mut session);
        let claims = Claims {
            sub: staff.id.to_string(),
            cur: String::new(),
            iat: now,
            exp: now + STAFF_ACCESS_TTL.as_secs(),
            // One session per login, so that `POST /v1/staff/logout` can revoke the token.
            sid: Some(format!("{:032x}", SessionId::from_le_bytes(session))),
            scope: Some(names.join(" ")),
            read_only: book::roles::read_only(staff.roles),
        };
        let token = jsonwebtoken::encode(&Header::default(), &claims, &self.encoding).map_err(ApiError::internal)?;
        Ok((token, STAFF_ACCESS_TTL.as_secs()))
    }

    /// Replaces the staff cache with the book's enabled staff members and their roles.
    pub fn load_staff(&self, staff: &[book::Staff]) {
        if let Ok(mut enabled) = self.staff_enabled.write() {
            *enabled = staff.iter().filter(|member| !member.disabled).map(|member| (member.id, member.roles)).collect();
        }
    }

    /// Records that `staff` logged in with the TOTP code of `step`: false when that step or a
    /// later one was already used (a code works once, on every gateway).
    pub async fn use_totp_step(&self, staff: StaffId, step: u64) -> Result<bool, ApiError> {
        self.edge.use_totp_step(staff, step).await
    }

    /// Replaces the API key cache with the book's live keys.
    pub fn load_api_keys(&self, keys: &[book::ApiKey]) {
        if let Ok(mut cache) = self.api_keys.lock() {
            *cache = keys
                .iter()
                .filter(|key| !key.revoked)
                .map(|key| (key.key_hash.clone(), (key.id, key.scopes)))
                .collect();
        }
    }

    /// Authenticates a credential, checking its session against the revocations: 401 when it
    /// is invalid or logged out, 503 when its session cannot be checked.
    pub(crate) async fn authenticate(&self, token: &str) -> Result<Principal, ApiError> {
        let (principal, session) = self.decode(token)?;
        if let Some(session) = session {
            if self.edge.session_revoked(session).await? {
                return Err(ApiError::unauthenticated());
            }
        }
        Ok(principal)
    }

    /// Reads a credential without looking at revocations: the principal, and the session its
    /// access token belongs to (to be checked by the caller).
    pub(crate) fn decode(&self, token: &str) -> Result<(Principal, Option<SessionId>), ApiError> {
        if token.starts_with(API_KEY_PREFIX) {
            let hash = sha256_hex(token.as_bytes());
            if self.bootstrap_key_hash.as_deref() == Some(hash.as_str()) {
                return Ok((Principal::Operator { key: None, scopes: scopes::ALL }, None));
            }
            let cache = self.api_keys.lock().map_err(ApiError::internal)?;
            return cache
                .get(&hash)
                .map(|(key, scopes)| (Principal::Operator { key: Some(*key), scopes: *scopes }, None))
                .ok_or_else(ApiError::unauthenticated);
        }
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &Validation::default())
            .map_err(|_| ApiError::unauthenticated())?;
        // A `sid` that is not 128 bits of hex names no session we issued.
        let session = match data.claims.sid.as_deref() {
            None => None,
            Some(session) => Some(SessionId::from_str_radix(session, 16).map_err(|_| ApiError::unauthenticated())?),
        };
        if let Some(digits) = data.claims.sub.strip_prefix("stf_") {
            let staff = digits.parse().map(StaffId).map_err(|_| ApiError::unauthenticated())?;
            // The roles now, not those the token was issued with: a disabled member's token
            // stops working and a changed member's scopes change at once.
            let roles = self
                .staff_enabled
                .read()
                .map_err(ApiError::internal)?
                .get(&staff)
                .copied()
                .ok_or_else(ApiError::unauthenticated)?;
            let scopes = book::roles::scopes_of(roles);
            return Ok((Principal::Staff { staff, scopes, read_only: book::roles::read_only(roles) }, session));
        }
        let account = data
            .claims
            .sub
            .strip_prefix("acc_")
            .and_then(|digits| digits.parse().ok())
            .map(AccountId)
            .ok_or_else(ApiError::unauthenticated)?;
        let currency = Currency::parse(&data.claims.cur).map_err(|_| ApiError::unauthenticated())?;
        Ok((Principal::Player { account, currency }, session))
    }

    /// Reserves one login attempt for `key`: counted as a failure from now on, so that
    /// concurrent guesses cannot all pass the check before any of them is recorded. 429 when
    /// the failures and the attempts in flight reach `LOGIN_FAILURES_MAX` in the window.
    pub async fn reserve_login(&self, key: LoginKey) -> Result<LoginReservation, ApiError> {
        self.edge.reserve_login(key).await
    }
}

/// The principal `limits::admit` already authenticated for this request, so that the handler
/// does not verify the token twice.
#[derive(Clone, Debug)]
pub(crate) struct Authenticated(pub Principal);

/// The session of this request's access token was logged out (`limits::admit` checked it).
#[derive(Clone, Copy, Debug)]
pub(crate) struct SessionRevoked;

/// Extracts the principal from `Authorization: Bearer ...`; 401 when missing or invalid.
impl FromRequestParts<AppState> for Principal {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let principal = match parts.extensions.get::<Authenticated>() {
            Some(Authenticated(principal)) => principal.clone(),
            None if parts.extensions.get::<SessionRevoked>().is_some() => return Err(ApiError::unauthenticated()),
            None if parts.extensions.get::<SessionUnverified>().is_some() => return Err(crate::edge::unavailable()),
            None => {
                let token = bearer_token(&parts.headers).ok_or_else(ApiError::unauthenticated)?;
                state.auth().authenticate(token).await?
            }
        };
        // A read-only staff member's scopes hold for reads alone.
        Ok(match principal {
            Principal::Staff { staff, read_only: true, .. }
                if parts.method != axum::http::Method::GET && parts.method != axum::http::Method::HEAD =>
            {
                Principal::Staff { staff, scopes: 0, read_only: true }
            }
            other => other,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_spellings_give_one_token() {
        for spelling in ["Bearer abc", "Bearer  abc", "bearer abc", "BEARER\tabc", " Bearer abc  ", "Bearer \t abc"] {
            let mut headers = HeaderMap::new();
            headers.insert(header::AUTHORIZATION, spelling.parse().expect("header"));
            assert_eq!(bearer_token(&headers), Some("abc"), "{spelling:?}");
        }
        for refused in ["Basic abc", "Bearer", "Bearer   ", "Bearerabc"] {
            let mut headers = HeaderMap::new();
            headers.insert(header::AUTHORIZATION, refused.parse().expect("header"));
            assert_eq!(bearer_token(&headers), None, "{refused:?}");
        }
    }

    #[test]
    fn password_policy_counts_characters_and_refuses_common_ones() {
        assert!(COMMON_PASSWORDS.len() > 10_000, "{} common passwords", COMMON_PASSWORDS.len());
        // Seven characters of 2 bytes each: 14 bytes, still too short.
        assert_eq!(check_new_password("ééééééé").expect_err("short").code, "invalid_request");
        assert!(check_new_password("éééééééé").is_ok());
        assert_eq!(check_new_password(&"a".repeat(PASSWORD_CHARS_MAX + 1)).expect_err("long").code, "invalid_request");
        for common in ["password", "Password1", "12345678", "iloveyou", "QWERTYUIOP"] {
            let error = check_new_password(common).expect_err(common);
            assert_eq!((error.status, error.code), (StatusCode::UNPROCESSABLE_ENTITY, "weak_password"), "{common}");
        }
        assert!(check_new_password("correct horse battery staple").is_ok());
    }

    #[test]
    fn hashes_in_reused_memory_are_standard_argon2id() {
        let mut memory = HashMemory::default();
        let hash = hash_password_in(&mut memory, "correct horse battery staple").expect("hash");
        assert!(hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{hash}");
        // The argon2 crate's own verifier agrees, and ours verifies with the same memory.
        use argon2::PasswordVerifier;
        let parsed = PasswordHash::new(&hash).expect("phc");
        assert!(Argon2::default().verify_password(b"correct horse battery staple", &parsed).is_ok());
        assert!(verify_password_in(&mut memory, "correct horse battery staple", &hash));
        assert!(!verify_password_in(&mut memory, "correct horse battery stapler", &hash));
        let other = {
            use argon2::PasswordHasher;
            let salt = SaltString::generate(&mut OsRng);
            Argon2::default().hash_password(b"tr0ub4dor&3", &salt).expect("hash").to_string()
        };
        assert!(verify_password_in(&mut memory, "tr0ub4dor&3", &other));
        assert!(!verify_password_in(&mut memory, "tr0ub4dor&3", "not a hash"));
    }

    #[test]
    fn hash_pool_never_runs_more_than_its_workers() {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        let pool = PasswordHashPool::new(2, 1_000);
        runtime.block_on(async {
            let jobs = (0..40).map(|_| pool.run(|_| std::thread::sleep(Duration::from_millis(5))));
            for result in futures_util::future::join_all(jobs).await {
                result.expect("queued");
            }
        });
        assert_eq!(pool.in_flight_peak(), 2);
        let full = PasswordHashPool::new(1, 1);
        runtime.block_on(async {
            let jobs = (0..10).map(|_| full.run(|_| std::thread::sleep(Duration::from_millis(20))));
            let results = futures_util::future::join_all(jobs).await;
            let refused =
                results.iter().filter(|result| result.as_ref().is_err_and(|error| error.code == "overloaded"));
            assert!(refused.count() >= 7, "one running, one queued, the rest refused");
        });
    }

    #[test]
    fn reservations_bound_concurrent_guesses() {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        let settings = crate::edge::EdgeSettings::new(None, None, Duration::from_secs(60), Duration::from_secs(60));
        let edge = Arc::new(EdgeState::in_process(settings, None, crate::Metrics::new()));
        let auth = Auth::new(AuthOptions {
            secret: b"secret",
            access_ttl: Duration::from_secs(60),
            bootstrap_key: None,
            password_hash_workers: 1,
            password_hash_queue_max: 1,
            edge,
        });
        runtime.block_on(async {
            let key = LoginKey::Account(AccountId(1));
            let mut held = Vec::new();
            for _ in 0..LOGIN_FAILURES_MAX {
                held.push(auth.reserve_login(key).await.expect("reserved"));
            }
            assert_eq!(auth.reserve_login(key).await.err().map(|error| error.code), Some("rate_limited"));
            let other = LoginKey::Account(AccountId(2));
            auth.reserve_login(other).await.expect("another account is not throttled").failed().await;
            drop(held);
            auth.reserve_login(key).await.expect("released without counting").succeeded().await;
        });
    }
}
