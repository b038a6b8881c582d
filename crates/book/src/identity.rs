//! Who may act: registered players (a username, a password hash made at the edge, a date of
//! birth, a country), operator API keys (a hash of the key and its scopes) and staff members (a
//! username, a password hash, a TOTP secret and roles). They live in the book so that the
//! journal alone rebuilds them, like every other account fact.

use domain::{Currency, Date, Ratio};

use crate::book::Book;
use crate::event::{Ack, BookEvent, Reply};
use crate::ids::{AccountId, ApiKeyId, StaffId, Timestamp};
use crate::ledger::AccountKind;
use crate::player::{LimitSlot, Player};
use crate::rejection::Rejection;

/// Bytes of a password hash (a PHC string such as argon2's).
pub const PASSWORD_HASH_BYTES_MAX: usize = 256;
/// Age below which nobody may register.
pub const AGE_MIN_YEARS: u32 = 18;
/// Operator API keys.
pub const API_KEYS_MAX: usize = 1_024;
/// Staff members, enabled or disabled.
pub const STAFF_MAX: usize = 1_024;
/// Bytes of a staff member's TOTP secret in base32 (RFC 4648, no padding): 160 bits take 32.
pub const TOTP_SECRET_BYTES_MAX: usize = 64;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Profile {
    /// Lower case; unique.
    pub username: String,
    pub password_hash: String,
    pub date_of_birth: Date,
    /// ISO 3166-1 alpha-2.
    pub country: String,
    pub registered_at: Timestamp,
    /// Given at registration (optional); `None` for players registered without any, or
    /// before details were kept.
    pub details: Option<Box<PersonalDetails>>,
}

/// Bytes of one personal detail (a name, an e-mail address, a postcode, an address).
pub const PERSONAL_DETAIL_BYTES_MAX: usize = 200;

/// A player's personal details, each optional: what the national self-exclusion register is
/// asked about, and the address other checks (shared addresses) compare.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PersonalDetails {
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub email: Option<String>,
    pub postcode: Option<String>,
    pub address: Option<String>,
}

impl PersonalDetails {
    pub fn fields(&self) -> [&Option<String>; 5] {
        [&self.first_name, &self.last_name, &self.email, &self.postcode, &self.address]
    }

    /// Every detail is 1 to `PERSONAL_DETAIL_BYTES_MAX` bytes without control characters.
    pub fn is_valid(&self) -> bool {
        self.fields().into_iter().flatten().all(|field| {
            !field.is_empty() && field.len() <= PERSONAL_DETAIL_BYTES_MAX && !field.chars().any(char::is_control)
        })
    }
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

/// Roles of a staff member, as bits; each grants scopes (`roles::scopes_of`).
pub mod roles {
    use super::scopes;

    pub const TRADER: u8 = 1;
    pub const SETTLEMENT: u8 = 2;
    pub const COMPLIANCE: u8 = 4;
    /// Customer support: reads only (see `READ_ONLY`).
    pub const SUPPORT: u8 = 8;
    pub const ADMIN: u8 = 16;
    pub const ALL: u8 = TRADER | SETTLEMENT | COMPLIANCE | SUPPORT | ADMIN;
    pub const NAMES: [(&str, u8); 5] = [
        ("trader", TRADER),
        ("settlement", SETTLEMENT),
        ("compliance", COMPLIANCE),
        ("support", SUPPORT),
        ("admin", ADMIN),
    ];

    /// The scopes `roles` grant: trader trading, settlement settlement, compliance compliance,
    /// admin every scope. Support grants trading and compliance for reading only: the gateway
    /// lets a staff member whose roles are only read-only ones (`read_only`) use those scopes
    /// on GET requests and nothing else.
    pub fn scopes_of(roles: u8) -> u8 {
        let mut granted = 0;
        if roles & TRADER != 0 {
            granted |= scopes::TRADING;
        }
        if roles & SETTLEMENT != 0 {
            granted |= scopes::SETTLEMENT;
        }
        if roles & COMPLIANCE != 0 {
            granted |= scopes::COMPLIANCE;
        }
        if roles & SUPPORT != 0 {
            granted |= scopes::TRADING | scopes::COMPLIANCE;
        }
        if roles & ADMIN != 0 {
            granted |= scopes::ALL;
        }
        granted
    }

    /// Whether `roles` grant reads only (support and nothing that writes).
    pub fn read_only(roles: u8) -> bool {
        roles & !SUPPORT == 0
    }
}

/// A staff member: an operator's employee who logs in with a password and a TOTP code.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Staff {
    pub id: StaffId,
    /// Lower case; unique among staff (players have their own usernames).
    pub username: String,
    pub password_hash: String,
    /// The RFC 6238 shared secret, base32 without padding. The book must hold it (the journal
    /// rebuilds it) and the gateway must read it to check a code, so it is stored as given.
    pub totp_secret: String,
    pub roles: u8,
    pub disabled: bool,
    pub created_at: Timestamp,
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
            details: None,
        });
        Ok(Ack::AccountOpened(account))
    }

    /// Keeps a registered player's personal details in their profile.
    /// Keeps a registered player's personal details; a postal address is also noted in the
    /// monitor's shared-key index (`monitor.rs`: many accounts at one address raise the
    /// `shared_address` alert), by the address with its postcode.
    pub(crate) fn set_personal_details(
        &mut self,
        account: AccountId,
        details: &PersonalDetails,
        events: &mut Vec<BookEvent>,
    ) -> Reply {
        self.player(account)?;
        if !details.is_valid() {
            return Err(Rejection::InvalidRequest { reason: "personal details out of range" });
        }
        let Some(profile) = self.players[account.index()].profile.as_mut() else {
            return Err(Rejection::InvalidRequest { reason: "personal details of a player without a profile" });
        };
        profile.details = Some(Box::new(details.clone()));
        if let Some(address) = details.address.as_deref().filter(|address| !address.trim().is_empty()) {
            let text = format!("{address} {}", details.postcode.as_deref().unwrap_or_default());
            self.note_shared(crate::monitor::SharedKey::address(&text), account, events)?;
        }
        Ok(Ack::Done)
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
        self.watch_opened(id);
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

    pub(crate) fn create_staff(
        &mut self,
        username: &str,
        password_hash: &str,
        totp_secret: &str,
        roles: u8,
        events: &mut Vec<BookEvent>,
    ) -> Reply {
        let username = normalise_username(username)
            .ok_or(Rejection::InvalidRequest { reason: "usernames are 3 to 32 of a-z, 0-9, _ . -" })?;
        if password_hash.is_empty() || password_hash.len() > PASSWORD_HASH_BYTES_MAX {
            return Err(Rejection::InvalidRequest { reason: "password hash out of range" });
        }
        let is_base32 = totp_secret.bytes().all(|byte| byte.is_ascii_uppercase() || (b'2'..=b'7').contains(&byte));
        if totp_secret.len() < 16 || totp_secret.len() > TOTP_SECRET_BYTES_MAX || !is_base32 {
            return Err(Rejection::InvalidRequest { reason: "a TOTP secret is 16 to 64 base32 characters" });
        }
        if roles == 0 || roles & !roles::ALL != 0 {
            return Err(Rejection::InvalidRequest { reason: "a staff member needs known roles" });
        }
        if self.staff.len() >= STAFF_MAX {
            return Err(Rejection::InvalidRequest { reason: "staff members at their maximum" });
        }
        if self.staff.iter().any(|staff| staff.username == username) {
            return Err(Rejection::UsernameTaken);
        }
        let id = StaffId(self.staff.len() as u64 + 1);
        self.staff.push(Staff {
            id,
            username,
            password_hash: password_hash.to_string(),
            totp_secret: totp_secret.to_string(),
            roles,
            disabled: false,
            created_at: self.now,
        });
        events.push(BookEvent::StaffChanged);
        Ok(Ack::StaffCreated(id))
    }

    pub(crate) fn disable_staff(&mut self, staff: StaffId, events: &mut Vec<BookEvent>) -> Reply {
        let found =
            self.staff.get_mut(staff.index()).ok_or(Rejection::InvalidRequest { reason: "unknown staff member" })?;
        found.disabled = true;
        events.push(BookEvent::StaffChanged);
        Ok(Ack::Done)
    }

    pub(crate) fn set_staff_roles(&mut self, staff: StaffId, roles: u8, events: &mut Vec<BookEvent>) -> Reply {
        if roles == 0 || roles & !roles::ALL != 0 {
            return Err(Rejection::InvalidRequest { reason: "a staff member needs known roles" });
        }
        let found =
            self.staff.get_mut(staff.index()).ok_or(Rejection::InvalidRequest { reason: "unknown staff member" })?;
        found.roles = roles;
        events.push(BookEvent::StaffChanged);
        Ok(Ack::Done)
    }

    pub fn staff(&self) -> &[Staff] {
        &self.staff
    }

    /// The staff member with `username` (any case).
    pub fn staff_by_username(&self, username: &str) -> Option<&Staff> {
        let username = username.to_ascii_lowercase();
        self.staff.iter().find(|staff| staff.username == username)
    }

    /// The account registered under `username` (any case).
    pub fn account_by_username(&self, username: &str) -> Option<AccountId> {
        self.usernames.get(&username.to_ascii_lowercase()).copied()
    }

    pub fn api_keys(&self) -> &[ApiKey] {
        &self.api_keys
    }
}
