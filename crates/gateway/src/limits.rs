//! Admission control in front of the handlers: rate limits per client address and per
//! authenticated principal (429 `rate_limited` with `Retry-After`), a bound on HTTP requests in flight
//! (503 `overloaded`) and a deadline per request (503 `timeout`).
//!
//! Rate limits are token buckets kept as GCRA ("generic cell rate algorithm"): one theoretical
//! arrival time per key instead of a token count and a refill time. A key whose arrival time has
//! passed is a full bucket and carries no information, so it can be dropped at any time; that
//! is how the tables stay within `GatewayConfig::rate_limit_keys_max`.
//!
//! The client address is the TCP peer, unless the peer is one of
//! `GatewayConfig::trusted_proxies`: then it is the nearest address of `Forwarded` (or, without
//! it, `X-Forwarded-For`) that is not itself a trusted proxy. Anyone else's forwarding headers
//! are ignored, so a client cannot pick its own address. The principal is authenticated here,
//! once, so that however a credential is spelled one player or one key is one bucket.
//!
//! Operations routes (`/healthz`, `/readyz`, `/metrics`) are exempt: probes and scrapes must
//! see the process as it is, not as throttled.

use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::hash::{BuildHasher, Hash};
use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use ipnet::IpNet;
use tokio::sync::Semaphore;

use crate::auth::{bearer_token, Authenticated};
use crate::error::ApiError;
use crate::metrics::ShedReason;
use crate::AppState;

/// Requests per second one client address may sustain, and how many it may send at once.
/// Generous: many players can share an address behind a NAT.
pub const RATE_PER_ADDRESS_PER_SECOND: u32 = 1_000;
pub const BURST_PER_ADDRESS: u32 = 2_000;
/// Requests per second one principal (player account or API key) may sustain, and its burst.
pub const RATE_PER_PRINCIPAL_PER_SECOND: u32 = 100;
pub const BURST_PER_PRINCIPAL: u32 = 200;
/// Keys remembered per rate-limit table (addresses, credentials); idle keys are evicted first.
pub const RATE_LIMIT_KEYS_MAX: usize = 100_000;
/// HTTP requests being handled at once; beyond it, 503 `overloaded` at once.
pub const HTTP_IN_FLIGHT_MAX: usize = 16_384;
/// How long a request may take before it is answered 503 `timeout`.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Entries of `GatewayConfig::trusted_proxies`.
pub const TRUSTED_PROXIES_MAX: usize = 64;
/// Addresses of one request's forwarding headers looked at, from the nearest.
const FORWARDED_HOPS_MAX: usize = 32;
/// Shards of a rate-limit table, so that concurrent requests rarely wait on one lock.
const RATE_LIMIT_SHARDS: usize = 16;

const _: () = assert!(BURST_PER_ADDRESS >= RATE_PER_ADDRESS_PER_SECOND);
const _: () = assert!(BURST_PER_PRINCIPAL >= RATE_PER_PRINCIPAL_PER_SECOND);
const _: () = assert!(RATE_LIMIT_KEYS_MAX >= RATE_LIMIT_SHARDS);
// Every request waiting on the book holds an HTTP slot too, so the book's bound is the tighter.
const _: () = assert!(crate::BOOK_IN_FLIGHT_MAX <= HTTP_IN_FLIGHT_MAX);
// A request waiting on the book gets the book's 503 before the gateway's deadline cuts it off.
const _: () = assert!(crate::BOOK_REPLY_TIMEOUT.as_secs() < REQUEST_TIMEOUT.as_secs());

/// A sustained rate and a burst: `burst` requests may arrive at once, then one every
/// `1 / per_second` seconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateLimit {
    pub per_second: u32,
    pub burst: u32,
}

impl RateLimit {
    pub const PER_ADDRESS: RateLimit = RateLimit { per_second: RATE_PER_ADDRESS_PER_SECOND, burst: BURST_PER_ADDRESS };
    pub const PER_PRINCIPAL: RateLimit =
        RateLimit { per_second: RATE_PER_PRINCIPAL_PER_SECOND, burst: BURST_PER_PRINCIPAL };

    /// Nanoseconds between two requests at the sustained rate.
    fn interval_nanos(self) -> u64 {
        1_000_000_000 / u64::from(self.per_second.max(1))
    }

    /// How far ahead of now a key's arrival time may run: the burst less the request at hand.
    fn tolerance_nanos(self) -> u64 {
        self.interval_nanos().saturating_mul(u64::from(self.burst.max(1) - 1))
    }
}

/// One rate-limit table: theoretical arrival times (nanoseconds since `epoch`) by key. The
/// in-process edge state keeps two (`edge/local.rs`); Redis keeps the same times per key.
pub(crate) struct RateTable<K> {
    limit: RateLimit,
    keys_per_shard_max: usize,
    epoch: Instant,
    hasher: RandomState,
    shards: Vec<Mutex<HashMap<K, u64>>>,
}

impl<K: Hash + Eq> RateTable<K> {
    pub(crate) fn new(limit: RateLimit, keys_max: usize, epoch: Instant) -> RateTable<K> {
        RateTable {
            limit,
            keys_per_shard_max: (keys_max / RATE_LIMIT_SHARDS).max(1),
            epoch,
            hasher: RandomState::new(),
            shards: (0..RATE_LIMIT_SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
        }
    }

    /// Takes one request from `key`'s bucket, or says how long until one is available.
    pub(crate) fn acquire(&self, key: K, now: Instant) -> Result<(), Duration> {
        let now_nanos = u64::try_from(now.saturating_duration_since(self.epoch).as_nanos()).unwrap_or(u64::MAX);
        let shard_index = (self.hasher.hash_one(&key) as usize) % self.shards.len();
        // A poisoned lock only means another request panicked mid-update of a plain integer map.
        let mut shard = self.shards[shard_index].lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if shard.len() >= self.keys_per_shard_max && !shard.contains_key(&key) {
            evict(&mut shard, now_nanos, self.keys_per_shard_max);
        }
        let arrival = shard.get(&key).copied().unwrap_or(0).max(now_nanos);
        let ahead = arrival - now_nanos;
        if ahead > self.limit.tolerance_nanos() {
            return Err(Duration::from_nanos(ahead - self.limit.tolerance_nanos()));
        }
        shard.insert(key, arrival + self.limit.interval_nanos());
        Ok(())
    }
}

/// Makes room in a full shard: first forget idle keys (full buckets), then, if every key is
/// busy, the half that will be idle soonest. Runs at most once per `keys_max / 2` new keys, so
/// its cost is constant per request on average.
fn evict<K: Hash + Eq>(shard: &mut HashMap<K, u64>, now_nanos: u64, keys_max: usize) {
    shard.retain(|_, arrival| *arrival > now_nanos);
    if shard.len() < keys_max {
        return;
    }
    let mut arrivals: Vec<u64> = shard.values().copied().collect();
    let middle = arrivals.len() / 2;
    let (_, median, _) = arrivals.select_nth_unstable(middle);
    let median = *median;
    shard.retain(|_, arrival| *arrival > median);
    debug_assert!(shard.len() < keys_max);
}

/// Who may say where a request came from. The rate-limit buckets themselves are edge state
/// (`edge/`), in this process or shared by several gateways.
pub struct RateLimits {
    trusted_proxies: Vec<IpNet>,
}

impl RateLimits {
    pub fn new(trusted_proxies: &[IpNet]) -> RateLimits {
        if trusted_proxies.len() > TRUSTED_PROXIES_MAX {
            tracing::warn!(trusted_proxies_max = TRUSTED_PROXIES_MAX, "too many trusted proxies: the rest are ignored");
        }
        RateLimits { trusted_proxies: trusted_proxies.iter().take(TRUSTED_PROXIES_MAX).copied().collect() }
    }

    fn trusted(&self, address: IpAddr) -> bool {
        let address = canonical(address);
        self.trusted_proxies.iter().any(|proxy| proxy.contains(&address))
    }

    /// The client's address: `peer` itself unless it is a trusted proxy; then the nearest
    /// forwarded address that is not a trusted proxy (the farthest one when all are).
    pub fn client_address(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        if !self.trusted(peer) {
            return peer;
        }
        let mut client = peer;
        for hop in forwarded_chain(headers).into_iter().rev() {
            // A hop that is not an address ("unknown", an obfuscated name, garbage) ends the
            // chain: what lies beyond it cannot be checked.
            let Some(hop) = hop else { break };
            client = hop;
            if !self.trusted(hop) {
                break;
            }
        }
        canonical(client)
    }
}

/// IPv4-mapped IPv6 addresses as IPv4, so one client is one key however it is written.
fn canonical(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(address, IpAddr::V4),
        IpAddr::V4(_) => address,
    }
}

/// The forwarded addresses, farthest (the original client) first: `Forwarded`'s `for=` when
/// the header is present (RFC 7239), else `X-Forwarded-For`. `None` for a hop that is not an
/// address. At most the nearest `FORWARDED_HOPS_MAX`.
fn forwarded_chain(headers: &HeaderMap) -> Vec<Option<IpAddr>> {
    let forwarded: Vec<&str> = headers.get_all("forwarded").iter().filter_map(|value| value.to_str().ok()).collect();
    let mut chain: Vec<Option<IpAddr>> = if forwarded.is_empty() {
        headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|value| value.to_str().ok())
            .flat_map(|value| value.split(','))
            .map(|hop| parse_hop(hop.trim()))
            .collect()
    } else {
        forwarded
            .into_iter()
            .flat_map(|value| value.split(','))
            .map(|element| {
                element
                    .split(';')
                    .filter_map(|pair| pair.split_once('='))
                    .find(|(name, _)| name.trim().eq_ignore_ascii_case("for"))
                    .and_then(|(_, value)| parse_hop(value.trim().trim_matches('"')))
            })
            .collect()
    };
    let skip = chain.len().saturating_sub(FORWARDED_HOPS_MAX);
    chain.drain(..skip);
    chain
}

/// One hop: `192.0.2.1`, `192.0.2.1:4711`, `2001:db8::1` or `[2001:db8::1]:4711`.
fn parse_hop(hop: &str) -> Option<IpAddr> {
    if let Ok(address) = hop.parse::<IpAddr>() {
        return Some(address);
    }
    if let Some(rest) = hop.strip_prefix('[') {
        return rest.split_once(']').and_then(|(address, _)| address.parse().ok());
    }
    hop.parse::<SocketAddr>().ok().map(|address| address.ip())
}

/// Parses a `--trusted-proxy` value: an address (`10.0.0.7`, `::1`) or a CIDR range
/// (`10.0.0.0/8`).
pub fn parse_trusted_proxy(value: &str) -> Result<IpNet, String> {
    let value = value.trim();
    value
        .parse::<IpNet>()
        .or_else(|_| value.parse::<IpAddr>().map(IpNet::from))
        .map_err(|_| format!("{value:?} is not an IP address or CIDR range"))
}

/// The client address of a request, as `admit` worked it out (the peer, or the forwarded
/// address when the peer is a trusted proxy).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClientAddress(pub IpAddr);

impl<S: Send + Sync> FromRequestParts<S> for ClientAddress {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        if let Some(address) = parts.extensions.get::<ClientAddress>() {
            return Ok(*address);
        }
        parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|info| ClientAddress(canonical(info.0.ip())))
            .ok_or_else(|| ApiError::internal("no client address on the request"))
    }
}

/// Whether a path is exempt from admission control.
fn is_exempt(path: &str) -> bool {
    matches!(path, "/healthz" | "/readyz" | "/metrics")
}

/// Whole seconds to wait, rounded up and at least one, for `Retry-After`.
fn retry_after_seconds(wait: Duration) -> u64 {
    (wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).max(1)
}

/// Middleware: rate limits, then the in-flight bound, then the deadline.
pub async fn admit(State(state): State<AppState>, mut request: Request, next: Next) -> Response {
    if is_exempt(request.uri().path()) {
        return next.run(request).await;
    }
    let peer = request.extensions().get::<ConnectInfo<SocketAddr>>().map(|info| info.0.ip());
    let address = peer.map(|peer| state.rate_limits().client_address(peer, request.headers()));
    let decoded = bearer_token(request.headers()).and_then(|token| state.auth().decode(token).ok());
    let principal_key = decoded.as_ref().map(|(principal, _)| principal.key());
    let session = decoded.as_ref().and_then(|(_, session)| *session);
    if let Some(address) = address {
        request.extensions_mut().insert(ClientAddress(address));
    }
    // One call to the edge state: the session's revocation and both buckets.
    let (session_check, rate) = state.edge().admit(session, address, principal_key).await;
    match (decoded, session_check) {
        (Some((principal, _)), Ok(false)) => {
            request.extensions_mut().insert(Authenticated(principal));
        }
        // Revoked: a handler that needs the principal answers 401.
        (Some(_), Ok(true)) => {
            request.extensions_mut().insert(crate::auth::SessionRevoked);
        }
        (None, _) => {}
        (Some(_), Err(unverified)) => {
            request.extensions_mut().insert(unverified);
        }
    }
    if let Err(wait) = rate {
        state.metrics().record_shed(ShedReason::RateLimited);
        return ApiError::rate_limited(retry_after_seconds(wait)).into_response();
    }
    let Ok(_permit) = state.http_in_flight().try_acquire() else {
        state.metrics().record_shed(ShedReason::Overloaded);
        return ApiError::overloaded().into_response();
    };
    let handed = crate::outcome::Handed::default();
    match tokio::time::timeout(state.config().request_timeout, handed.scope(next.run(request))).await {
        Ok(mut response) => {
            // Read-your-writes: the write's journal position goes out with its answer
            // (`history.rs`).
            let position = handed.position();
            if position > 0 {
                state.history().record_write(position, response.headers_mut());
            }
            response
        }
        Err(_) => {
            // The handler is dropped here. A command it had submitted is still decided by the
            // book; the client learns the outcome by retrying with the same idempotency key,
            // so such a request answers 504 `outcome_unknown`, never "not done" (`outcome.rs`).
            state.metrics().record_shed(ShedReason::Timeout);
            if handed.is_marked() {
                return crate::outcome::outcome_unknown().into_response();
            }
            request_timeout().into_response()
        }
    }
}

fn request_timeout() -> ApiError {
    ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "timeout", "the request took too long; retry shortly").retry_after(1)
}

/// The semaphore of `admit`, sized by `GatewayConfig::http_in_flight_max`.
pub fn http_in_flight(max: usize) -> Semaphore {
    Semaphore::new(max.min(Semaphore::MAX_PERMITS))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_sustained_rate() {
        let limit = RateLimit { per_second: 10, burst: 3 };
        let epoch = Instant::now();
        let table = RateTable::<u32>::new(limit, 100, epoch);
        let start = epoch + Duration::from_secs(1);
        for _ in 0..3 {
            assert_eq!(table.acquire(7, start), Ok(()));
        }
        let wait = table.acquire(7, start).expect_err("burst spent");
        assert_eq!(wait, Duration::from_millis(100));
        assert_eq!(table.acquire(8, start), Ok(()), "another key has its own bucket");
        assert_eq!(table.acquire(7, start + Duration::from_millis(100)), Ok(()));
        assert!(table.acquire(7, start + Duration::from_millis(100)).is_err());
        // Idle for long enough, the bucket is full again.
        let later = start + Duration::from_secs(10);
        for _ in 0..3 {
            assert_eq!(table.acquire(7, later), Ok(()));
        }
        assert!(table.acquire(7, later).is_err());
    }

    #[test]
    fn tables_stay_bounded() {
        let limit = RateLimit { per_second: 1, burst: 5 };
        let epoch = Instant::now();
        let keys_max = 4 * RATE_LIMIT_SHARDS;
        let table = RateTable::<u32>::new(limit, keys_max, epoch);
        let now = epoch + Duration::from_secs(1);
        for key in 0..10_000 {
            assert_eq!(table.acquire(key, now), Ok(()));
        }
        let keys: usize = table.shards.iter().map(|shard| shard.lock().expect("lock").len()).sum();
        assert!(keys <= keys_max, "{keys} keys");
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for (name, value) in pairs {
            headers.append(
                axum::http::HeaderName::from_bytes(name.as_bytes()).expect("name"),
                value.parse().expect("value"),
            );
        }
        headers
    }

    #[test]
    fn forwarded_addresses_count_only_from_trusted_proxies() {
        let proxies = [parse_trusted_proxy("10.0.0.0/8").expect("cidr"), parse_trusted_proxy("::1").expect("address")];
        let limits = RateLimits::new(&proxies);
        let proxy: IpAddr = "10.1.2.3".parse().expect("ip");
        let stranger: IpAddr = "198.51.100.9".parse().expect("ip");
        let client: IpAddr = "203.0.113.7".parse().expect("ip");
        let forwarded = headers(&[("x-forwarded-for", "203.0.113.7, 10.9.9.9")]);
        assert_eq!(limits.client_address(proxy, &forwarded), client, "nearest untrusted hop");
        assert_eq!(limits.client_address(stranger, &forwarded), stranger, "ignored from anyone else");
        let spoofed = headers(&[("x-forwarded-for", "1.2.3.4, 203.0.113.7")]);
        assert_eq!(limits.client_address(proxy, &spoofed), client, "what the client wrote itself is not believed");
        let rfc = headers(&[("forwarded", r#"for="[2001:db8::17]:4711";proto=https, for=10.0.0.2"#)]);
        assert_eq!(
            limits.client_address("::1".parse().expect("ip"), &rfc),
            "2001:db8::17".parse::<IpAddr>().expect("ip")
        );
        let garbage = headers(&[("x-forwarded-for", "203.0.113.7, unknown")]);
        assert_eq!(limits.client_address(proxy, &garbage), proxy, "an unreadable hop ends the chain");
        assert_eq!(limits.client_address(proxy, &HeaderMap::new()), proxy);
        assert!(parse_trusted_proxy("10.0.0.0/33").is_err());
        assert!(parse_trusted_proxy("proxy.local").is_err());
    }

    #[test]
    fn retry_after_rounds_up() {
        assert_eq!(retry_after_seconds(Duration::from_millis(1)), 1);
        assert_eq!(retry_after_seconds(Duration::from_millis(1_001)), 2);
        assert_eq!(retry_after_seconds(Duration::from_secs(3)), 3);
        assert_eq!(retry_after_seconds(Duration::ZERO), 1);
    }
}
