//! Who may act: registered players (a username, a password hash made at the edge, a date of
//! birth, a country) and operator API keys (a hash of the key and its scopes). They live in the
//! book so that the journal alone rebuilds them, like every other account fact.

use domain::{Currency, Date, Ratio};

use crate::book::Book;
use crate::event::{Ack, BookEvent, Reply};
use crate::ids::{AccountId, ApiKeyId, Timestamp};
use crate::ledger::AccountKind;
use crate::player::{LimitSlot, Player};
use crate::rejection::Rejection;

/// Bytes of a password hash (a PHC string such as argon2's).
pub const PASSWORD_HASH_BYTES_MAX: usize = 256;
/// Age below which nobody may register.
pub const AGE_MIN_YEARS: u32 = 18;
/// Operator API keys.
pub const API_KEYS_MAX: usize = 1_024;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Profile {
    /// Lower case; unique.
    pub username: String,
    pub password_hash: String,
    pub date_of_birth: Date,
    /// ISO 3166-1 alpha-2.
    pub country: String,
    pub registered_at: Timestamp,
}

/// Scopes of an operator API key, as bits.
pub mod scopes {
    pub const TRADING: u8 = 1;
    pub const SETTLEMENT: u8 = 2;
    pub const FEED: u8 = 4;
    pub const COMPLIANCE: u8 = 8;
    pub const ADMIN: u8 = 16;
    pub const ALL: u8 = TRADING | SETTLEMENT | FEED | COMPLIANCE | ADMIN;
    pub const NAMES: [(&str, u8); 5] = [
        ("trading", TRADING),
        ("settlement", SETTLEMENT),
        ("feed", FEED),
        ("compliance", COMPLIANCE),
        ("admin", ADMIN),
    ];
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiKey {
    pub id: ApiKeyId,
    pub name: String,
    /// Hex SHA-256 of the key; the key itself is never stored.
    pub key_hash: String,
    pub scopes: u8,
    pub revoked: bool,
    pub created_at: Timestamp,
}

/// A username: 3 to 32 of `a-z 0-9 _ . -`, compared in lower case.
pub fn normalise_username(username: &str) -> Option<String> {
    let lower = username.to_ascii_lowercase();
    let valid = (3..=32).contains(&lower.len())
        && lower.bytes().all(|byte| byte.is_ascii_lowercase() || byte.is_ascii_digit() || b"_.-".contains(&byte));
    valid.then_some(lower)
}

impl Book {
    pub(crate) fn register_player(
        &mut self,
        username: &str,
        password_hash: &str,
        date_of_birth: Date,
        country: &str,
        currency: Currency,
        events: &mut Vec<BookEvent>,
    ) -> Reply {
        let username = normalise_username(username)
            .ok_or(Rejection::InvalidRequest { reason: "usernames are 3 to 32 of a-z, 0-9, _ . -" })?;
        if password_hash.is_empty() || password_hash.len() > PASSWORD_HASH_BYTES_MAX {
            return Err(Rejection::InvalidRequest { reason: "password hash out of range" });
        }
        if country.len() != 2 || !country.bytes().all(|byte| byte.is_ascii_uppercase()) {
            return Err(Rejection::InvalidRequest { reason: "country must be an ISO 3166-1 alpha-2 code" });
        }
        if date_of_birth.years_until(Date::from_unix_millis(self.now)) < AGE_MIN_YEARS {
            return Err(Rejection::Underage);
        }
        if self.usernames.contains_key(&username) {
            return Err(Rejection::UsernameTaken);
        }
        let account = self.open_player(currency, events);
        self.usernames.insert(username.clone(), account);
        self.players[account.index()].profile = Some(Profile {
            username,
            password_hash: password_hash.to_string(),
            date_of_birth,
            country: country.to_string(),
            registered_at: self.now,
        });
        Ok(Ack::AccountOpened(account))
    }

    /// Opens a player account with its cash and debt ledger accounts.
    pub(crate) fn open_player(&mut self, currency: Currency, events: &mut Vec<BookEvent>) -> AccountId {
        let id = AccountId(self.players.len() as u64 + 1);
        let cash = self.ledger.open_account(AccountKind::PlayerCash(id), currency);
        let debt = self.ledger.open_account(AccountKind::PlayerDebt(id), currency);
        self.players.push(Player {
            id,
            currency,
            cash,
            debt,
            stake_factor: Ratio::ONE,
            frozen: false,
            timed_out_until: 0,
            excluded_until: 0,
            limits: [[LimitSlot::default(); 3]; 3],
            usage: Default::default(),
            profile: None,
        });
        events.push(BookEvent::AccountOpened { account: id, currency });
        id
    }

    pub(crate) fn create_api_key(
        &mut self,
        name: &str,
        key_hash: &str,
        scopes: u8,
        events: &mut Vec<BookEvent>,
    ) -> Reply {
        if name.is_empty() || name.len() > crate::constants::NAME_BYTES_MAX {
            return Err(Rejection::InvalidRequest { reason: "names are 1 to 200 bytes" });
        }
        let is_sha256_hex = key_hash.len() == 64 && key_hash.bytes().all(|byte| byte.is_ascii_hexdigit());
        if !is_sha256_hex || scopes == 0 || scopes & !scopes::ALL != 0 {
            return Err(Rejection::InvalidRequest { reason: "an API key needs a SHA-256 hash and known scopes" });
        }
        // Hashes are stored in lower case, so a duplicate is one in any letter case: otherwise
        // the same key could be issued twice, with two sets of scopes.
        let key_hash = key_hash.to_ascii_lowercase();
        if self.api_keys.len() >= API_KEYS_MAX || self.api_keys.iter().any(|key| key.key_hash == key_hash) {
            return Err(Rejection::InvalidRequest { reason: "API key refused" });
        }
        let id = ApiKeyId(self.api_keys.len() as u64 + 1);
        self.api_keys.push(ApiKey {
            id,
            name: name.to_string(),
            key_hash,
            scopes,
            revoked: false,
            created_at: self.now,
        });
        events.push(BookEvent::ApiKeysChanged);
        Ok(Ack::ApiKeyCreated(id))
    }

    pub(crate) fn revoke_api_key(&mut self, key: ApiKeyId, events: &mut Vec<BookEvent>) -> Reply {
        let found =
            self.api_keys.get_mut(key.index()).ok_or(Rejection::InvalidRequest { reason: "unknown API key" })?;
        found.revoked = true;
        events.push(BookEvent::ApiKeysChanged);
        Ok(Ack::Done)
    }

    /// The account registered under `username` (any case).
    pub fn account_by_username(&self, username: &str) -> Option<AccountId> {
        self.usernames.get(&username.to_ascii_lowercase()).copied()
    }

    pub fn api_keys(&self) -> &[ApiKey] {
        &self.api_keys
    }
}
