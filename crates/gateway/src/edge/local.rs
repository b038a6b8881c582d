//! Edge state in this process: rate-limit tables (GCRA, `limits.rs`), the login throttle,
//! refresh tokens, revoked sessions (optionally kept in a file across restarts) and staff TOTP
//! steps, each behind its own lock. Every table is bounded by a named maximum.

use std::collections::HashMap;
use std::io::Write;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, RwLock};
use std::time::{Duration, Instant};

use book::StaffId;

use super::{Checked, EdgeFuture, EdgeSettings, EdgeStore, LoginOutcome, RefreshGrant, SessionId, TokenHash};
use crate::auth::{LoginKey, PrincipalKey, LOGIN_THROTTLE_KEYS_MAX, REFRESH_TOKENS_MAX, REVOKED_SESSIONS_MAX};
use crate::limits::RateTable;

/// Staff members whose last TOTP step is remembered; past it, the oldest steps are forgotten
/// (a step older than `TOTP_STEP_MEMORY` can never match a code again).
pub const TOTP_STEPS_MAX: usize = 100_000;

/// Failures in the current window and attempts being verified now.
#[derive(Clone, Copy, Debug)]
struct LoginAttempts {
    failures: u32,
    in_flight: u32,
    window_started: Instant,
}

struct RefreshEntry {
    grant: RefreshGrant,
    expires: Instant,
}

pub struct LocalEdge {
    settings: EdgeSettings,
    by_address: Option<RateTable<IpAddr>>,
    /// Keyed by the authenticated principal, not the header's bytes: a credential that fails
    /// authentication is limited by its address only.
    by_principal: Option<RateTable<PrincipalKey>>,
    logins: Mutex<HashMap<LoginKey, LoginAttempts>>,
    reservations: AtomicU64,
    refresh: Mutex<HashMap<TokenHash, RefreshEntry>>,
    /// Sessions logged out, with the Unix second their last access token expires.
    revoked: RwLock<HashMap<SessionId, u64>>,
    /// Where the revocations are kept across restarts (`GatewayConfig::revoked_sessions_path`).
    revoked_file: Option<Mutex<RevocationFile>>,
    /// The last TOTP time step each staff member logged in with, and the Unix second it did.
    totp_steps: Mutex<HashMap<StaffId, (u64, u64)>>,
}

/// A poisoned lock only means another request panicked mid-update of a plain map.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

pub(crate) fn unix_seconds() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |elapsed| elapsed.as_secs())
}

impl LocalEdge {
    pub fn new(settings: EdgeSettings, revoked_sessions_path: Option<&Path>) -> LocalEdge {
        let (revoked_file, revoked) = match revoked_sessions_path {
            None => (None, HashMap::new()),
            Some(path) => match RevocationFile::open(path, unix_seconds()) {
                Ok((file, live)) => (Some(Mutex::new(file)), live),
                Err(error) => {
                    tracing::error!(%error, path = %path.display(), "revoked sessions: cannot use the file; kept in memory only");
                    (None, HashMap::new())
                }
            },
        };
        let epoch = Instant::now();
        LocalEdge {
            settings,
            by_address: settings.per_address.map(|limit| RateTable::new(limit, settings.rate_limit_keys_max, epoch)),
            by_principal: settings
                .per_principal
                .map(|limit| RateTable::new(limit, settings.rate_limit_keys_max, epoch)),
            logins: Mutex::new(HashMap::new()),
            reservations: AtomicU64::new(0),
            refresh: Mutex::new(HashMap::new()),
            revoked: RwLock::new(revoked),
            revoked_file,
            totp_steps: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one request from the address's bucket, then the principal's.
    pub(crate) fn rate_check(&self, address: Option<IpAddr>, principal: Option<PrincipalKey>) -> Result<(), Duration> {
        let now = Instant::now();
        if let (Some(table), Some(address)) = (&self.by_address, address) {
            table.acquire(address, now)?;
        }
        if let (Some(table), Some(principal)) = (&self.by_principal, principal) {
            table.acquire(principal, now)?;
        }
        Ok(())
    }

    fn session_revoked(&self, session: SessionId) -> bool {
        // A poisoned table refuses: a revoked token must never work.
        let Ok(revoked) = self.revoked.read() else { return true };
        revoked.get(&session).is_some_and(|until| *until > unix_seconds())
    }

    pub(crate) fn reserve_login_now(&self, key: LoginKey) -> Result<u64, Duration> {
        let mut logins = lock(&self.logins);
        let now = Instant::now();
        let window = self.settings.login_window;
        if logins.len() >= LOGIN_THROTTLE_KEYS_MAX && !logins.contains_key(&key) {
            forget_login_keys(&mut logins, now, window);
        }
        let attempts = logins.entry(key).or_insert(LoginAttempts { failures: 0, in_flight: 0, window_started: now });
        if now.saturating_duration_since(attempts.window_started) >= window {
            attempts.failures = 0;
            attempts.window_started = now;
        }
        let max = self.settings.login_failures_max;
        if attempts.failures + attempts.in_flight >= max {
            let wait = if attempts.failures >= max {
                window.saturating_sub(now.saturating_duration_since(attempts.window_started))
            } else {
                // Only attempts in flight: one of them ends within a hash's time.
                Duration::from_secs(1)
            };
            return Err(wait.max(Duration::from_secs(1)));
        }
        attempts.in_flight += 1;
        Ok(self.reservations.fetch_add(1, Ordering::Relaxed))
    }

    pub(crate) fn settle_login_now(&self, key: LoginKey, _reservation: u64, outcome: LoginOutcome) {
        let mut logins = lock(&self.logins);
        let Some(attempts) = logins.get_mut(&key) else { return };
        attempts.in_flight = attempts.in_flight.saturating_sub(1);
        match outcome {
            LoginOutcome::Succeeded => attempts.failures = 0,
            LoginOutcome::Failed => attempts.failures += 1,
            LoginOutcome::Released => {}
        }
        if attempts.failures == 0 && attempts.in_flight == 0 {
            logins.remove(&key);
        }
    }

    fn put_refresh_now(&self, token: TokenHash, grant: RefreshGrant) {
        let mut refresh = lock(&self.refresh);
        let now = Instant::now();
        if refresh.len() >= REFRESH_TOKENS_MAX {
            refresh.retain(|_, entry| entry.expires > now);
        }
        if refresh.len() >= REFRESH_TOKENS_MAX {
            // Every one is alive: the one closest to expiry goes first.
            let soonest = refresh.iter().min_by_key(|(_, entry)| entry.expires).map(|(token, _)| *token);
            if let Some(soonest) = soonest {
                refresh.remove(&soonest);
            }
        }
        refresh.insert(token, RefreshEntry { grant, expires: now + self.settings.refresh_ttl });
    }

    fn take_refresh_now(&self, token: TokenHash) -> Option<RefreshGrant> {
        let entry = lock(&self.refresh).remove(&token)?;
        (entry.expires > Instant::now() && !self.session_revoked(entry.grant.session)).then_some(entry.grant)
    }

    fn revoke_now(&self, token: TokenHash) {
        let Some(entry) = lock(&self.refresh).remove(&token) else { return };
        self.revoke_session_now(entry.grant.session, self.settings.revocation_ttl);
    }

    fn revoke_session_now(&self, session: SessionId, ttl: Duration) {
        let now = unix_seconds();
        let expires = now + ttl.as_secs().max(1);
        let mut revoked = self.revoked.write().unwrap_or_else(|poisoned| poisoned.into_inner());
        if revoked.len() >= REVOKED_SESSIONS_MAX {
            revoked.retain(|_, until| *until > now);
        }
        if revoked.len() >= REVOKED_SESSIONS_MAX {
            let soonest = revoked.iter().min_by_key(|(_, until)| **until).map(|(session, _)| *session);
            if let Some(soonest) = soonest {
                tracing::warn!(
                    revoked_sessions_max = REVOKED_SESSIONS_MAX,
                    "revoked sessions full: forgetting the one closest to expiry"
                );
                revoked.remove(&soonest);
            }
        }
        revoked.insert(session, expires);
        if let Some(file) = &self.revoked_file {
            if let Err(error) = lock(file).append(session, expires, &revoked) {
                // The session is revoked in memory all the same; only a restart would forget it.
                tracing::error!(%error, "revoked sessions: could not write the file");
            }
        }
    }

    fn use_totp_step_now(&self, staff: StaffId, step: u64) -> bool {
        let mut steps = lock(&self.totp_steps);
        let now = unix_seconds();
        if steps.len() >= TOTP_STEPS_MAX && !steps.contains_key(&staff) {
            let memory = super::TOTP_STEP_MEMORY.as_secs();
            steps.retain(|_, (_, used_at)| now.saturating_sub(*used_at) < memory);
        }
        match steps.get(&staff) {
            Some((last, _)) if *last >= step => false,
            _ => {
                steps.insert(staff, (step, now));
                true
            }
        }
    }
}

fn ready<'a, T: Send + 'a>(value: T) -> EdgeFuture<'a, T> {
    Box::pin(std::future::ready(Ok(value)))
}

impl EdgeStore for LocalEdge {
    fn admit(
        &self,
        session: Option<SessionId>,
        address: Option<IpAddr>,
        principal: Option<PrincipalKey>,
    ) -> EdgeFuture<'_, Checked> {
        let session_revoked = session.is_some_and(|session| self.session_revoked(session));
        let rate = self.rate_check(address, principal.filter(|_| !session_revoked));
        ready(Checked { session_revoked, rate })
    }

    fn reserve_login(&self, key: LoginKey) -> EdgeFuture<'_, Result<u64, Duration>> {
        ready(self.reserve_login_now(key))
    }

    fn settle_login(&self, key: LoginKey, reservation: u64, outcome: LoginOutcome) -> EdgeFuture<'_, ()> {
        self.settle_login_now(key, reservation, outcome);
        ready(())
    }

    fn put_refresh(&self, token: TokenHash, grant: RefreshGrant) -> EdgeFuture<'_, ()> {
        self.put_refresh_now(token, grant);
        ready(())
    }

    fn take_refresh(&self, token: TokenHash) -> EdgeFuture<'_, Option<RefreshGrant>> {
        ready(self.take_refresh_now(token))
    }

    fn revoke(&self, token: TokenHash) -> EdgeFuture<'_, ()> {
        self.revoke_now(token);
        ready(())
    }

    fn revoke_session(&self, session: SessionId, ttl: Duration) -> EdgeFuture<'_, ()> {
        self.revoke_session_now(session, ttl);
        ready(())
    }

    fn use_totp_step(&self, staff: StaffId, step: u64) -> EdgeFuture<'_, bool> {
        ready(self.use_totp_step_now(staff, step))
    }

    fn ping(&self) -> EdgeFuture<'_, ()> {
        ready(())
    }
}

/// Makes room in a full login throttle: forgets keys whose window has passed, then, if none
/// has, the idle half with the oldest windows, unknown usernames' addresses before accounts (so
/// that filling the table from many addresses does not wipe an account's failures first).
fn forget_login_keys(logins: &mut HashMap<LoginKey, LoginAttempts>, now: Instant, window: Duration) {
    logins.retain(|_, attempts| {
        attempts.in_flight > 0 || now.saturating_duration_since(attempts.window_started) < window
    });
    if logins.len() < LOGIN_THROTTLE_KEYS_MAX {
        return;
    }
    let mut idle: Vec<(bool, Instant, LoginKey)> = logins
        .iter()
        .filter(|(_, attempts)| attempts.in_flight == 0)
        .map(|(key, attempts)| (!matches!(key, LoginKey::UnknownUsernameFrom(_)), attempts.window_started, *key))
        .collect();
    idle.sort_unstable_by_key(|(account, started, _)| (*account, *started));
    for (_, _, key) in idle.iter().take(idle.len().div_ceil(2)) {
        logins.remove(key);
    }
}

/// The file of logged-out sessions: one line `<sid hex> <unix second it expires>` per logout,
/// appended; rewritten with only the live ones at start and after every
/// `REVOKED_SESSIONS_MAX` appends, so it stays bounded.
struct RevocationFile {
    path: PathBuf,
    file: std::fs::File,
    appended: usize,
}

impl RevocationFile {
    /// Reads the live revocations of `path` (a missing file is none) and rewrites the file
    /// with only those.
    fn open(path: &Path, now: u64) -> std::io::Result<(RevocationFile, HashMap<SessionId, u64>)> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(error) => return Err(error),
        };
        let mut live = HashMap::new();
        for line in text.lines() {
            let mut fields = line.split_whitespace();
            let session = fields.next().and_then(|hex| SessionId::from_str_radix(hex, 16).ok());
            let until = fields.next().and_then(|seconds| seconds.parse::<u64>().ok());
            // A torn last line (a crash mid-write) is skipped.
            if let (Some(session), Some(until)) = (session, until) {
                if until > now && live.len() < REVOKED_SESSIONS_MAX {
                    live.insert(session, until);
                }
            }
        }
        let file = rewrite(path, &live)?;
        Ok((RevocationFile { path: path.to_path_buf(), file, appended: 0 }, live))
    }

    fn append(&mut self, session: SessionId, until: u64, live: &HashMap<SessionId, u64>) -> std::io::Result<()> {
        if self.appended >= REVOKED_SESSIONS_MAX {
            self.file = rewrite(&self.path, live)?;
            self.appended = 0;
        }
        self.file.write_all(format!("{session:032x} {until}\n").as_bytes())?;
        self.appended += 1;
        Ok(())
    }
}

/// Writes `live` to a temporary file, renames it over `path` and opens it for appending. Only
/// the owner may read it (session ids are not secrets, but nobody else needs them).
fn rewrite(path: &Path, live: &HashMap<SessionId, u64>) -> std::io::Result<std::fs::File> {
    let temporary = path.with_extension("tmp");
    let mut text = String::new();
    for (session, until) in live {
        text.push_str(&format!("{session:032x} {until}\n"));
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(&temporary)?;
    file.write_all(text.as_bytes())?;
    file.sync_all()?;
    std::fs::rename(&temporary, path)?;
    let mut append = std::fs::OpenOptions::new();
    append.append(true);
    append.open(path)
}
