//! Authentication and authorisation: argon2 password hashes, short-lived JWT access tokens,
//! rotating refresh tokens, operator API keys stored as SHA-256 hashes with scopes, and login
//! throttling per account and per address.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use argon2::password_hash::{rand_core::OsRng, PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use axum::extract::FromRequestParts;
use axum::http::header;
use axum::http::request::Parts;
use book::{scopes, AccountId, ApiKeyId};
use domain::Currency;
use jsonwebtoken::{DecodingKey, EncodingKey, Header, Validation};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::ApiError;
use crate::AppState;

/// Failed logins allowed per account and per address in `LOGIN_WINDOW` before throttling.
pub const LOGIN_FAILURES_MAX: u32 = 5;
pub const LOGIN_WINDOW: Duration = Duration::from_secs(15 * 60);
/// Bytes of a password.
pub const PASSWORD_BYTES_MIN: usize = 8;
pub const PASSWORD_BYTES_MAX: usize = 128;
/// Refresh tokens alive at once, across players: beyond it the oldest expire first.
pub const REFRESH_TOKENS_MAX: usize = 1_000_000;
/// Prefix of operator API keys, so a key is never mistaken for a JWT.
pub const API_KEY_PREFIX: &str = "sk_";

/// Who is calling.
#[derive(Clone, Debug)]
pub enum Principal {
    Player { account: AccountId, currency: Currency },
    Operator { key: Option<ApiKeyId>, scopes: u8 },
}

impl Principal {
    /// The player behind a player token; operators get 403.
    pub fn player(&self) -> Result<(AccountId, Currency), ApiError> {
        match self {
            Principal::Player { account, currency } => Ok((*account, *currency)),
            Principal::Operator { .. } => Err(ApiError::forbidden()),
        }
    }

    /// Succeeds for an operator holding any of `needed` (scope bits); players get 403.
    pub fn require_scope(&self, needed: u8) -> Result<(), ApiError> {
        match self {
            Principal::Operator { scopes: held, .. } if held & (needed | scopes::ADMIN) != 0 => Ok(()),
            _ => Err(ApiError::forbidden()),
        }
    }

    /// A stable name for rate limiting and logs.
    pub fn label(&self) -> String {
        match self {
            Principal::Player { account, .. } => account.to_string(),
            Principal::Operator { key: Some(key), .. } => key.to_string(),
            Principal::Operator { key: None, .. } => "bootstrap".to_string(),
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    sub: String,
    cur: String,
    exp: u64,
    iat: u64,
}

struct RefreshEntry {
    account: AccountId,
    currency: Currency,
    expires: Instant,
}

#[derive(Default)]
struct LoginFailures {
    by_key: HashMap<String, (u32, Instant)>,
}

pub struct Auth {
    encoding: EncodingKey,
    decoding: DecodingKey,
    access_ttl: Duration,
    refresh_ttl: Duration,
    refresh: Mutex<HashMap<[u8; 32], RefreshEntry>>,
    /// SHA-256 hex of every live API key, with its id and scopes; loaded from the book.
    api_keys: Mutex<HashMap<String, (ApiKeyId, u8)>>,
    bootstrap_key_hash: Option<String>,
    failures: Mutex<LoginFailures>,
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

/// Hashes a password with argon2id and a random salt (slow on purpose: run off the runtime).
pub fn hash_password(password: &str) -> Result<String, ApiError> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default().hash_password(password.as_bytes(), &salt).map(|hash| hash.to_string()).map_err(ApiError::internal)
}

pub fn verify_password(password: &str, hash: &str) -> bool {
    PasswordHash::new(hash).is_ok_and(|parsed| Argon2::default().verify_password(password.as_bytes(), &parsed).is_ok())
}

impl Auth {
    pub fn new(secret: &[u8], access_ttl: Duration, refresh_ttl: Duration, bootstrap_key: Option<&str>) -> Auth {
        Auth {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            access_ttl,
            refresh_ttl,
            refresh: Mutex::new(HashMap::new()),
            api_keys: Mutex::new(HashMap::new()),
            bootstrap_key_hash: bootstrap_key.map(|key| sha256_hex(key.as_bytes())),
            failures: Mutex::new(LoginFailures::default()),
        }
    }

    pub fn issue(&self, account: AccountId, currency: Currency) -> Result<TokenPair, ApiError> {
        let now = unix_seconds();
        let claims = Claims {
            sub: account.to_string(),
            cur: currency.code().to_string(),
            iat: now,
            exp: now + self.access_ttl.as_secs(),
        };
        let access_token =
            jsonwebtoken::encode(&Header::default(), &claims, &self.encoding).map_err(ApiError::internal)?;
        let refresh_token = random_token();
        let mut refresh = self.refresh.lock().map_err(ApiError::internal)?;
        if refresh.len() >= REFRESH_TOKENS_MAX {
            let now = Instant::now();
            refresh.retain(|_, entry| entry.expires > now);
        }
        refresh.insert(
            Sha256::digest(refresh_token.as_bytes()).into(),
            RefreshEntry { account, currency, expires: Instant::now() + self.refresh_ttl },
        );
        Ok(TokenPair { access_token, refresh_token, expires_in: self.access_ttl.as_secs() })
    }

    /// Exchanges a refresh token for a new pair; the old token stops working.
    pub fn refresh(&self, refresh_token: &str) -> Result<TokenPair, ApiError> {
        let key: [u8; 32] = Sha256::digest(refresh_token.as_bytes()).into();
        let entry = self.refresh.lock().map_err(ApiError::internal)?.remove(&key);
        match entry {
            Some(entry) if entry.expires > Instant::now() => self.issue(entry.account, entry.currency),
            _ => Err(ApiError::unauthenticated()),
        }
    }

    pub fn revoke(&self, refresh_token: &str) -> Result<(), ApiError> {
        let key: [u8; 32] = Sha256::digest(refresh_token.as_bytes()).into();
        self.refresh.lock().map_err(ApiError::internal)?.remove(&key);
        Ok(())
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

    pub(crate) fn authenticate(&self, token: &str) -> Result<Principal, ApiError> {
        if token.starts_with(API_KEY_PREFIX) {
            let hash = sha256_hex(token.as_bytes());
            if self.bootstrap_key_hash.as_deref() == Some(hash.as_str()) {
                return Ok(Principal::Operator { key: None, scopes: scopes::ALL });
            }
            let cache = self.api_keys.lock().map_err(ApiError::internal)?;
            return cache
                .get(&hash)
                .map(|(key, scopes)| Principal::Operator { key: Some(*key), scopes: *scopes })
                .ok_or_else(ApiError::unauthenticated);
        }
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &Validation::default())
            .map_err(|_| ApiError::unauthenticated())?;
        let account = data
            .claims
            .sub
            .strip_prefix("acc_")
            .and_then(|digits| digits.parse().ok())
            .map(AccountId)
            .ok_or_else(ApiError::unauthenticated)?;
        let currency = Currency::parse(&data.claims.cur).map_err(|_| ApiError::unauthenticated())?;
        Ok(Principal::Player { account, currency })
    }

    /// Refuses a login attempt while the account or the address has failed too often.
    pub fn check_login_allowed(&self, username: &str, address: IpAddr) -> Result<(), ApiError> {
        let failures = self.failures.lock().map_err(ApiError::internal)?;
        for key in [format!("user:{}", username.to_ascii_lowercase()), format!("addr:{address}")] {
            if let Some((count, since)) = failures.by_key.get(&key) {
                let elapsed = since.elapsed();
                if *count >= LOGIN_FAILURES_MAX && elapsed < LOGIN_WINDOW {
                    return Err(ApiError::rate_limited((LOGIN_WINDOW - elapsed).as_secs().max(1)));
                }
            }
        }
        Ok(())
    }

    pub fn record_login(&self, username: &str, address: IpAddr, succeeded: bool) {
        let Ok(mut failures) = self.failures.lock() else { return };
        let user_key = format!("user:{}", username.to_ascii_lowercase());
        if succeeded {
            failures.by_key.remove(&user_key);
            return;
        }
        let now = Instant::now();
        for key in [user_key, format!("addr:{address}")] {
            let entry = failures.by_key.entry(key).or_insert((0, now));
            if entry.1.elapsed() >= LOGIN_WINDOW {
                *entry = (0, now);
            }
            entry.0 += 1;
        }
    }
}

/// Extracts the principal from `Authorization: Bearer ...`; 401 when missing or invalid.
impl FromRequestParts<AppState> for Principal {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let token = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.strip_prefix("Bearer "))
            .map(str::trim)
            .ok_or_else(ApiError::unauthenticated)?;
        state.auth().authenticate(token)
    }
}
