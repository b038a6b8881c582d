//! Signed, replay-protected callbacks (webhooks) from outside providers: payment providers
//! today, identity-verification providers next. What every such callback must pass before its
//! content is believed, in this order:
//!
//! 1. **The signature.** `Payment-Signature: sha256=<hex>` (`SIGNATURE_HEADER`) is the
//!    HMAC-SHA256 of the raw request body under the secret shared with the provider, compared
//!    in constant time. Missing, malformed or wrong: 401 `bad_signature`, and nothing of the
//!    body is read. The body is signed as received, so the timestamp and id inside are too.
//! 2. **The timestamp window.** The body's `created_at` must be within `window` of the
//!    gateway's clock, either way: an old callback replayed later is 400 `stale_timestamp`.
//!    This bounds how long callback ids must be remembered.
//! 3. **The callback id.** A callback id seen before (within the window) is answered with the
//!    first answer again, status and body, and does nothing: providers retry deliveries. The
//!    ids are kept in memory for twice the window, at most `CALLBACK_IDS_MAX`; past that a new
//!    callback is refused with 503 `overloaded` (the provider retries). After a restart the
//!    ids are gone, but what a callback does is idempotent in the book too (a deposit settles
//!    once per outcome), so a replay still changes nothing.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::http::{HeaderMap, StatusCode};
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::error::ApiError;

/// The header carrying a callback's signature: `sha256=` and the hex HMAC-SHA256 of the body.
pub const SIGNATURE_HEADER: &str = "payment-signature";
/// How far a callback's `created_at` may be from the gateway's clock (`serve
/// --payment-callback-window`).
pub const CALLBACK_WINDOW: Duration = Duration::from_secs(300);
/// Callback ids remembered at once (for replays within the window).
pub const CALLBACK_IDS_MAX: usize = 100_000;
/// Bytes of a callback id.
pub const CALLBACK_ID_BYTES_MAX: usize = 128;
/// Bytes of a provider's shared secret, at least.
pub const CALLBACK_SECRET_BYTES_MIN: usize = 16;

/// The HMAC-SHA256 of `body` under `secret`, as the signature header carries it.
pub fn sign(secret: &[u8], body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes a key of any length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// Checks the signature header of a callback against its raw body (constant time).
pub fn verify_signature(secret: &[u8], headers: &HeaderMap, body: &[u8]) -> Result<(), ApiError> {
    let bad =
        || ApiError::new(StatusCode::UNAUTHORIZED, "bad_signature", "the callback's signature is missing or wrong");
    let header = headers.get(SIGNATURE_HEADER).and_then(|value| value.to_str().ok()).ok_or_else(bad)?;
    verify(secret, header, body).map_err(|()| bad())
}

fn verify(secret: &[u8], header: &str, body: &[u8]) -> Result<(), ()> {
    let hex_digest = header.trim().strip_prefix("sha256=").ok_or(())?;
    let expected = hex::decode(hex_digest).map_err(|_| ())?;
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).map_err(|_| ())?;
    mac.update(body);
    mac.verify_slice(&expected).map_err(|_| ())
}

/// What the checks read from a callback's body: its id and its time.
pub(crate) trait CallbackBody: serde::de::DeserializeOwned {
    fn id(&self) -> &str;
    /// RFC 3339.
    fn created_at(&self) -> &str;
}

/// The shared secret and timestamp window of one kind of callback.
pub(crate) struct CallbackKeys<'a> {
    pub secret: &'a [u8],
    pub window: Duration,
}

/// Every check of the module's documentation, in its order (signature, body, timestamp, id),
/// then `apply` once per callback id; a delivery seen before gets the first answer again.
/// Status and body of the answer.
pub(crate) async fn receive<T, F, Fut, R>(
    keys: CallbackKeys<'_>,
    seen: &SeenCallbacks,
    provider: &str,
    headers: &HeaderMap,
    body: &[u8],
    apply: F,
) -> (StatusCode, serde_json::Value)
where
    T: CallbackBody,
    F: FnOnce(T) -> Fut,
    Fut: std::future::Future<Output = Result<R, ApiError>>,
    R: serde::Serialize,
{
    let refused = |error: ApiError| (error.status, error.body());
    if let Err(error) = verify_signature(keys.secret, headers, body) {
        return refused(error);
    }
    let parsed: T = match serde_json::from_slice(body) {
        Ok(parsed) => parsed,
        Err(error) => return refused(ApiError::invalid(format!("callback body: {error}"))),
    };
    let Some(created_at) = crate::time::parse_rfc3339(parsed.created_at()) else {
        return refused(ApiError::invalid("created_at: an RFC 3339 time").with("field", "created_at"));
    };
    if let Err(error) = check_timestamp(created_at, keys.window) {
        return refused(error);
    }
    let id = parsed.id().to_string();
    if id.is_empty() || id.len() > CALLBACK_ID_BYTES_MAX {
        return refused(ApiError::invalid("id: 1 to 128 bytes").with("field", "id"));
    }
    match seen.begin(provider, &id, keys.window) {
        Ok(Lookup::Answered(answered)) => return (answered.status, answered.body),
        Ok(Lookup::New) => {}
        Err(error) => return refused(error),
    }
    let answer = match apply(parsed).await {
        Ok(answer) => (StatusCode::OK, serde_json::to_value(answer).unwrap_or_default()),
        Err(error) => refused(error),
    };
    seen.finish(provider, &id, Some(Answered { status: answer.0, body: answer.1.clone() }));
    answer
}

/// Refuses a callback stamped further than `window` from now (`created_at` in ms since the
/// epoch).
pub fn check_timestamp(created_at_ms: u64, window: Duration) -> Result<(), ApiError> {
    let now = now_ms();
    let window_ms = window.as_millis() as u64;
    if created_at_ms.abs_diff(now) > window_ms {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "stale_timestamp",
            format!("the callback's created_at is more than {} s from now", window.as_secs()),
        )
        .with("window_seconds", window.as_secs()));
    }
    Ok(())
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|elapsed| elapsed.as_millis() as u64).unwrap_or(0)
}

/// A first answer to a callback: given again to a replay of the same id.
#[derive(Clone, Debug)]
pub struct Answered {
    pub status: StatusCode,
    pub body: serde_json::Value,
}

/// The callback ids seen lately, per provider, with their first answers.
#[derive(Debug, Default)]
pub struct SeenCallbacks {
    inner: Mutex<Seen>,
}

#[derive(Debug, Default)]
struct Seen {
    answers: HashMap<(String, String), Answered>,
    /// When each id was seen (ms), oldest first, for forgetting.
    order: VecDeque<(u64, (String, String))>,
    /// Ids being decided now: a concurrent replay waits for nothing and is refused as busy.
    deciding: BTreeMap<(String, String), ()>,
}

/// What a callback id's look-up found.
pub enum Lookup {
    /// Seen before: answer this again.
    Answered(Answered),
    /// New: decide it, then `finish`.
    New,
}

impl SeenCallbacks {
    /// Looks `id` of `provider` up, forgetting ids older than twice `window` first.
    pub fn begin(&self, provider: &str, id: &str, window: Duration) -> Result<Lookup, ApiError> {
        let mut seen = self.inner.lock().expect("seen callbacks");
        let cutoff = now_ms().saturating_sub(2 * window.as_millis() as u64);
        while seen.order.front().is_some_and(|(at, _)| *at < cutoff) {
            if let Some((_, key)) = seen.order.pop_front() {
                seen.answers.remove(&key);
            }
        }
        let key = (provider.to_string(), id.to_string());
        if let Some(answered) = seen.answers.get(&key) {
            return Ok(Lookup::Answered(answered.clone()));
        }
        if seen.deciding.contains_key(&key) {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "callback_in_progress",
                "a delivery of this callback is being processed; retry",
            ));
        }
        if seen.answers.len() + seen.deciding.len() >= CALLBACK_IDS_MAX {
            return Err(ApiError::overloaded());
        }
        seen.deciding.insert(key, ());
        Ok(Lookup::New)
    }

    /// Records the answer to a new callback id. An answer that says nothing was decided (a
    /// 5xx: the provider should retry) is not kept.
    pub fn finish(&self, provider: &str, id: &str, answered: Option<Answered>) {
        let mut seen = self.inner.lock().expect("seen callbacks");
        let key = (provider.to_string(), id.to_string());
        seen.deciding.remove(&key);
        if let Some(answered) = answered.filter(|answered| !answered.status.is_server_error()) {
            seen.order.push_back((now_ms(), key.clone()));
            seen.answers.insert(key, answered);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signature_verifies_only_for_its_body_and_secret() {
        let signature = sign(b"a-shared-secret-of-16", b"{\"id\":1}");
        assert!(verify(b"a-shared-secret-of-16", &signature, b"{\"id\":1}").is_ok());
        assert!(verify(b"a-shared-secret-of-16", &signature, b"{\"id\":2}").is_err());
        assert!(verify(b"another-secret-of-16b", &signature, b"{\"id\":1}").is_err());
        assert!(verify(b"a-shared-secret-of-16", signature.trim_start_matches("sha256="), b"{\"id\":1}").is_err());
        assert!(verify(b"a-shared-secret-of-16", "sha256=zz", b"{\"id\":1}").is_err());
    }

    #[test]
    fn timestamps_outside_the_window_are_stale() {
        let window = Duration::from_secs(60);
        assert!(check_timestamp(now_ms(), window).is_ok());
        assert!(check_timestamp(now_ms() - 120_000, window).is_err());
        assert!(check_timestamp(now_ms() + 120_000, window).is_err());
    }
}
