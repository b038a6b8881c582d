//! Edge state in Redis, shared by every gateway that names the same server and key prefix.
//!
//! Each operation is one Lua script (or one command), so a check and the update it allows are
//! atomic across gateways; a request's admission (its session and both of its buckets) is one
//! round trip. Times come from the server (`TIME`), so gateways' clocks do not matter. Every
//! key expires (`PX`/`EX`): buckets when they are full again, failure counts with their
//! window, reservations, refresh tokens and revocations with their lifetimes, TOTP steps after
//! `TOTP_STEP_MEMORY`: nothing grows for ever.
//!
//! Keys, under the prefix: `rl:a:<address>` and `rl:p:<principal>` (a bucket's theoretical
//! arrival time in µs, GCRA as in `limits.rs`), `rev:<session>`, `rt:<sha-256 of the refresh
//! token>` (`<account> <session> <currency>`), `login:<key>` (a hash: failures `f`, window start
//! `s`) and `login:<key>:inflight` (a sorted set of reservations by expiry), `totp:<staff>`.
//! The refresh and logout scripts name the session's revocation key from the token's value,
//! so the store is one Redis server (or a replicated primary), not a Redis Cluster.

use std::net::IpAddr;
use std::time::Duration;

use book::{AccountId, StaffId};
use domain::Currency;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::Script;

use super::{
    Checked, EdgeError, EdgeFuture, EdgeSettings, EdgeStore, LoginOutcome, RefreshGrant, SessionId, TokenHash,
    EDGE_KEY_PREFIX_BYTES_MAX, LOGIN_RESERVATION_TTL, TOTP_STEP_MEMORY,
};
use crate::auth::{LoginKey, PrincipalKey};
use crate::limits::RateLimit;

/// How long one attempt to (re)connect may take; the gateway's own bound per call
/// (`EDGE_STATE_TIMEOUT`) is shorter, so a slow connect only delays the calls behind it.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// Reconnection attempts the manager makes in a row after losing the server; the next call
/// starts another round.
const RECONNECT_RETRIES: usize = 2;

/// The revocation check and both buckets of a request, in one step.
const ADMIT: &str = r"
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000000 + tonumber(time[2])
local revoked = 0
local first = 1
if ARGV[1] == '1' then
  first = 2
  revoked = redis.call('EXISTS', KEYS[1])
end
for i = first, #KEYS do
  local a = 2 + (i - first) * 3
  if not (revoked == 1 and ARGV[a + 2] == '1') then
    local interval = tonumber(ARGV[a])
    local tolerance = tonumber(ARGV[a + 1])
    local tat = tonumber(redis.call('GET', KEYS[i]) or '0')
    if tat < now then tat = now end
    local ahead = tat - now
    if ahead > tolerance then return {revoked, ahead - tolerance} end
    local next_tat = tat + interval
    redis.call('SET', KEYS[i], string.format('%d', next_tat), 'PX', math.floor((next_tat - now) / 1000) + 1)
  end
end
return {revoked, 0}
";

/// Reserves a login attempt: failures in the window plus live reservations under the maximum.
const LOGIN_RESERVE: &str = r"
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
local window = tonumber(ARGV[2])
local failures = tonumber(redis.call('HGET', KEYS[1], 'f') or '0')
local started = tonumber(redis.call('HGET', KEYS[1], 's') or now)
if now - started >= window then
  failures = 0
  started = now
  redis.call('DEL', KEYS[1])
end
local max = tonumber(ARGV[1])
if failures + redis.call('ZCARD', KEYS[2]) >= max then
  if failures >= max then return {0, window - (now - started)} end
  return {0, 1000}
end
redis.call('ZADD', KEYS[2], now + tonumber(ARGV[3]), ARGV[4])
redis.call('PEXPIRE', KEYS[2], tonumber(ARGV[3]))
return {1, 0}
";

/// Settles a reservation: a success clears the failures, a failure counts (the window starts
/// at the first).
const LOGIN_SETTLE: &str = r"
redis.call('ZREM', KEYS[2], ARGV[1])
if ARGV[2] == 's' then
  redis.call('DEL', KEYS[1])
elseif ARGV[2] == 'f' then
  if redis.call('HINCRBY', KEYS[1], 'f', 1) == 1 then
    local time = redis.call('TIME')
    redis.call('HSET', KEYS[1], 's', tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000))
    redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[3]))
  end
end
return 1
";

/// Takes a refresh token; nothing when its session was revoked.
const REFRESH_TAKE: &str = r"
local grant = redis.call('GET', KEYS[1])
if not grant then return false end
redis.call('DEL', KEYS[1])
local session = string.match(grant, '^%S+ (%x+) ')
if session and redis.call('EXISTS', ARGV[1] .. session) == 1 then return false end
return grant
";

/// Takes a refresh token and revokes its session, in one step.
const REVOKE: &str = r"
local grant = redis.call('GET', KEYS[1])
if not grant then return 0 end
redis.call('DEL', KEYS[1])
local session = string.match(grant, '^%S+ (%x+) ')
if not session then return 0 end
redis.call('SET', ARGV[1] .. session, '1', 'EX', tonumber(ARGV[2]))
return 1
";

/// A TOTP step works once: only a later one is recorded.
const TOTP_STEP: &str = r"
local last = tonumber(redis.call('GET', KEYS[1]) or '-1')
if last >= tonumber(ARGV[1]) then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'EX', tonumber(ARGV[2]))
return 1
";

pub struct RedisEdge {
    connection: ConnectionManager,
    prefix: String,
    settings: EdgeSettings,
    admit: Script,
    login_reserve: Script,
    login_settle: Script,
    refresh_take: Script,
    revoke: Script,
    totp_step: Script,
}

fn store_error(error: impl std::fmt::Display) -> EdgeError {
    EdgeError::Store(error.to_string())
}

/// Checks a `--edge-state` URL without connecting: `redis://host[:port][/db]` (or `rediss://`
/// is refused: this build has no TLS for Redis).
pub fn check_redis_url(url: &str) -> Result<(), String> {
    if !url.starts_with("redis://") {
        return Err(format!("{url:?} is not a redis://host[:port][/db] URL"));
    }
    redis::Client::open(url).map(|_| ()).map_err(|error| format!("{url:?}: {error}"))
}

/// Checks a key prefix: at most `EDGE_KEY_PREFIX_BYTES_MAX` bytes of printable ASCII.
pub fn check_key_prefix(prefix: &str) -> Result<(), String> {
    if prefix.len() > EDGE_KEY_PREFIX_BYTES_MAX || !prefix.bytes().all(|byte| byte.is_ascii_graphic()) {
        return Err(format!("key prefixes are at most {EDGE_KEY_PREFIX_BYTES_MAX} printable ASCII characters"));
    }
    Ok(())
}

impl RedisEdge {
    /// A store on the server of `url` under `prefix`. Connects lazily (on the first call, and
    /// again after the server is lost), so a gateway starts while Redis is down; must be
    /// called inside a tokio runtime.
    pub fn new(url: &str, prefix: &str, settings: EdgeSettings) -> Result<RedisEdge, EdgeError> {
        check_redis_url(url).map_err(EdgeError::Store)?;
        check_key_prefix(prefix).map_err(EdgeError::Store)?;
        let client = redis::Client::open(url).map_err(store_error)?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(CONNECT_TIMEOUT))
            .set_number_of_retries(RECONNECT_RETRIES);
        let connection = ConnectionManager::new_lazy_with_config(client, config).map_err(store_error)?;
        Ok(RedisEdge {
            connection,
            prefix: prefix.to_string(),
            settings,
            admit: Script::new(ADMIT),
            login_reserve: Script::new(LOGIN_RESERVE),
            login_settle: Script::new(LOGIN_SETTLE),
            refresh_take: Script::new(REFRESH_TAKE),
            revoke: Script::new(REVOKE),
            totp_step: Script::new(TOTP_STEP),
        })
    }

    fn revocation_prefix(&self) -> String {
        format!("{}rev:", self.prefix)
    }

    fn token_key(&self, token: &TokenHash) -> String {
        format!("{}rt:{}", self.prefix, hex::encode(token))
    }

    fn login_keys(&self, key: LoginKey) -> (String, String) {
        let name = match key {
            LoginKey::Account(account) => account.to_string(),
            LoginKey::Staff(staff) => staff.to_string(),
            LoginKey::UnknownUsernameFrom(address) => format!("ip:{address}"),
        };
        let failures = format!("{}login:{name}", self.prefix);
        let in_flight = format!("{failures}:inflight");
        (failures, in_flight)
    }
}

/// A bucket's GCRA parameters in µs: the interval between requests at the sustained rate, and
/// how far ahead of now the arrival time may run (the burst less the request at hand).
fn bucket_micros(limit: RateLimit) -> (u64, u64) {
    let interval = 1_000_000 / u64::from(limit.per_second.max(1));
    (interval, interval.saturating_mul(u64::from(limit.burst.max(1) - 1)))
}

fn principal_name(principal: PrincipalKey) -> String {
    match principal {
        PrincipalKey::Player(account) => account.to_string(),
        PrincipalKey::ApiKey(key) => key.to_string(),
        PrincipalKey::Bootstrap => "bootstrap".to_string(),
        PrincipalKey::Staff(staff) => staff.to_string(),
    }
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX).max(1)
}

/// `<account> <session> <currency>`, as kept under a refresh token's key.
fn encode_grant(grant: &RefreshGrant) -> String {
    format!("{} {:032x} {}", grant.account.0, grant.session, grant.currency.code())
}

fn decode_grant(value: &str) -> Result<RefreshGrant, EdgeError> {
    let mut fields = value.split(' ');
    let account = fields.next().and_then(|field| field.parse().ok()).map(AccountId);
    let session = fields.next().and_then(|field| SessionId::from_str_radix(field, 16).ok());
    let currency = fields.next().and_then(|field| Currency::parse(field).ok());
    match (account, session, currency) {
        (Some(account), Some(session), Some(currency)) => Ok(RefreshGrant { account, currency, session }),
        _ => Err(EdgeError::Store(format!("unreadable refresh token record {value:?}"))),
    }
}

impl EdgeStore for RedisEdge {
    fn admit(
        &self,
        session: Option<SessionId>,
        address: Option<IpAddr>,
        principal: Option<PrincipalKey>,
    ) -> EdgeFuture<'_, Checked> {
        let mut invocation = self.admit.prepare_invoke();
        let mut asks = session.is_some();
        invocation.arg(if session.is_some() { "1" } else { "0" });
        if let Some(session) = session {
            invocation.key(format!("{}{session:032x}", self.revocation_prefix()));
        }
        if let (Some(limit), Some(address)) = (self.settings.per_address, address) {
            let (interval, tolerance) = bucket_micros(limit);
            invocation.key(format!("{}rl:a:{address}", self.prefix)).arg(interval).arg(tolerance).arg("0");
            asks = true;
        }
        if let (Some(limit), Some(principal)) = (self.settings.per_principal, principal) {
            let (interval, tolerance) = bucket_micros(limit);
            invocation
                .key(format!("{}rl:p:{}", self.prefix, principal_name(principal)))
                .arg(interval)
                .arg(tolerance)
                .arg("1");
            asks = true;
        }
        let mut connection = self.connection.clone();
        Box::pin(async move {
            // Nothing to ask: no session and no limit in force.
            if !asks {
                return Ok(Checked { session_revoked: false, rate: Ok(()) });
            }
            let (revoked, wait_micros): (i64, u64) =
                invocation.invoke_async(&mut connection).await.map_err(store_error)?;
            let rate = if wait_micros == 0 { Ok(()) } else { Err(Duration::from_micros(wait_micros)) };
            Ok(Checked { session_revoked: revoked == 1, rate })
        })
    }

    fn reserve_login(&self, key: LoginKey) -> EdgeFuture<'_, Result<u64, Duration>> {
        let (failures, in_flight) = self.login_keys(key);
        let reservation: u64 = rand::random();
        let mut connection = self.connection.clone();
        Box::pin(async move {
            let (reserved, wait_millis): (i64, u64) = self
                .login_reserve
                .key(failures)
                .key(in_flight)
                .arg(self.settings.login_failures_max)
                .arg(millis(self.settings.login_window))
                .arg(millis(LOGIN_RESERVATION_TTL))
                .arg(reservation)
                .invoke_async(&mut connection)
                .await
                .map_err(store_error)?;
            Ok(if reserved == 1 { Ok(reservation) } else { Err(Duration::from_millis(wait_millis.max(1))) })
        })
    }

    fn settle_login(&self, key: LoginKey, reservation: u64, outcome: LoginOutcome) -> EdgeFuture<'_, ()> {
        let (failures, in_flight) = self.login_keys(key);
        let outcome = match outcome {
            LoginOutcome::Succeeded => "s",
            LoginOutcome::Failed => "f",
            LoginOutcome::Released => "r",
        };
        let mut connection = self.connection.clone();
        Box::pin(async move {
            let _: i64 = self
                .login_settle
                .key(failures)
                .key(in_flight)
                .arg(reservation)
                .arg(outcome)
                .arg(millis(self.settings.login_window))
                .invoke_async(&mut connection)
                .await
                .map_err(store_error)?;
            Ok(())
        })
    }

    fn put_refresh(&self, token: TokenHash, grant: RefreshGrant) -> EdgeFuture<'_, ()> {
        let key = self.token_key(&token);
        let mut connection = self.connection.clone();
        Box::pin(async move {
            let () = redis::cmd("SET")
                .arg(key)
                .arg(encode_grant(&grant))
                .arg("PX")
                .arg(millis(self.settings.refresh_ttl))
                .query_async(&mut connection)
                .await
                .map_err(store_error)?;
            Ok(())
        })
    }

    fn take_refresh(&self, token: TokenHash) -> EdgeFuture<'_, Option<RefreshGrant>> {
        let key = self.token_key(&token);
        let mut connection = self.connection.clone();
        Box::pin(async move {
            let value: Option<String> = self
                .refresh_take
                .key(key)
                .arg(self.revocation_prefix())
                .invoke_async(&mut connection)
                .await
                .map_err(store_error)?;
            value.as_deref().map(decode_grant).transpose()
        })
    }

    fn revoke(&self, token: TokenHash) -> EdgeFuture<'_, ()> {
        let key = self.token_key(&token);
        let mut connection = self.connection.clone();
        Box::pin(async move {
            let _: i64 = self
                .revoke
                .key(key)
                .arg(self.revocation_prefix())
                .arg(self.settings.revocation_ttl.as_secs().max(1))
                .invoke_async(&mut connection)
                .await
                .map_err(store_error)?;
            Ok(())
        })
    }

    fn revoke_session(&self, session: SessionId, ttl: Duration) -> EdgeFuture<'_, ()> {
        let key = format!("{}{session:032x}", self.revocation_prefix());
        let mut connection = self.connection.clone();
        Box::pin(async move {
            let _: () = redis::cmd("SET")
                .arg(key)
                .arg("1")
                .arg("EX")
                .arg(ttl.as_secs().max(1))
                .query_async(&mut connection)
                .await
                .map_err(store_error)?;
            Ok(())
        })
    }

    fn use_totp_step(&self, staff: StaffId, step: u64) -> EdgeFuture<'_, bool> {
        let key = format!("{}totp:{staff}", self.prefix);
        let mut connection = self.connection.clone();
        Box::pin(async move {
            let recorded: i64 = self
                .totp_step
                .key(key)
                .arg(step)
                .arg(TOTP_STEP_MEMORY.as_secs())
                .invoke_async(&mut connection)
                .await
                .map_err(store_error)?;
            Ok(recorded == 1)
        })
    }

    fn ping(&self) -> EdgeFuture<'_, ()> {
        let mut connection = self.connection.clone();
        Box::pin(async move {
            let _: String = redis::cmd("PING").query_async(&mut connection).await.map_err(store_error)?;
            Ok(())
        })
    }
}
