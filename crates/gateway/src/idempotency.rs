//! Retries after the book's idempotency window, answered from the read models.
//!
//! The book remembers a keyed command's reply (bet placement, deposit, withdrawal, cash-out;
//! refusals too) for `Config::idempotency_window_ms` (10 minutes) only; the projector stores
//! the first reply of every key for good (`projector::schema::FIRST_REPLIES`). Before a keyed
//! write is submitted, [`AppState::first_reply`] looks the key up in the read models: found,
//! the write is answered from there (the same reply, or `idempotency_key_reused` for another
//! body) and never reaches the book; not found, it is submitted and the book decides (a retry
//! inside its window is answered by the book).
//!
//! **No gap.** A key the book has forgotten was decided at least a window before the command
//! is applied. The models hold every key decided before their last batch's book time
//! ([`projector::Published::book_time`]), and all of them once they reach the journal's
//! committed position. So a lookup that misses is safe when the models are caught up, or when
//! the book time of their last batch is less than half a window old
//! ([`KEYED_WRITE_LAG_SHARE`]): the key, if it was ever used, was decided after that time and
//! the book still holds it when this write is applied, unless the write waits more than half
//! a window (5 minutes) between the lookup and the book, which admission control never lets a
//! command do. Otherwise the write waits (at most [`KEYED_WRITE_MODELS_WAIT`]) for the models
//! to reach the committed position and looks again, or is refused with 503 `unavailable` and
//! `Retry-After`: a keyed write is never decided on a gap while the projector runs.
//!
//! With it off (`serve --projector off`), failed (its store is not read: it may hold another
//! journal's models) or stopped (its models are read, but a miss is final), keyed writes are
//! still taken and only the book's window recognises a retry: a documented limit of those
//! modes, which `/readyz` warns about.

use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::http::StatusCode;
use book::{AccountId, Idempotency, Rejection, Reply};
use projector::ProjectorState;

use crate::error::ApiError;
use crate::AppState;

/// The read models may be at most `window / KEYED_WRITE_LAG_SHARE` behind (in book time) for a
/// keyed write to go to the book without waiting for them.
pub const KEYED_WRITE_LAG_SHARE: u64 = 2;
/// How long a keyed write waits for read models too far behind (or not yet published, right
/// after a start while the projector replays to its checkpoint) before 503 `unavailable`.
pub const KEYED_WRITE_MODELS_WAIT: Duration = Duration::from_secs(10);

fn unavailable(message: String) -> ApiError {
    ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", message)
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |elapsed| elapsed.as_millis() as u64)
}

impl AppState {
    /// The reply a keyed write gets without reaching the book: its key's first reply from the
    /// read models (or `idempotency_key_reused` when the body differs), `None` when the models
    /// have no record of the key and the book must decide. 503 `unavailable` when the models
    /// are too far behind to tell.
    pub(crate) async fn first_reply(&self, account: AccountId, key: &Idempotency) -> Result<Option<Reply>, ApiError> {
        let Some(models) = self.config().read_models.clone() else { return Ok(None) };
        // A failed projector's store may hold models of another journal (a repaired one): not
        // read at all. Keyed writes then have the book's window only, as with the projector
        // off; `/readyz` warns `projector_failed`.
        let stopped = match models.published().state() {
            ProjectorState::Failed(_) => return Ok(None),
            ProjectorState::Stopped => true,
            ProjectorState::Starting | ProjectorState::Running => false,
        };
        // Where the models are, taken before the lookup: a miss means only what they held then.
        let committed = self.engine().stats().committed_position.load(Ordering::Acquire);
        let published = models.published();
        let (position, time) = (published.position(), published.book_time());
        let allowed = self.idempotency_window_ms() / KEYED_WRITE_LAG_SHARE;
        let behind = now_ms().saturating_sub(time);
        let fresh = position >= committed || (time != 0 && behind <= allowed);
        // A key the models hold is answered whatever their lag: a first reply is final.
        if let Some(reply) = self.lookup(&models, account, key).await? {
            return Ok(Some(reply));
        }
        // A stopped projector's models are right but will not move: a miss leaves the book's
        // window only (as with the projector off).
        if fresh || stopped {
            return Ok(None);
        }
        // Too far behind to trust a miss: wait for them to hold every committed write, then
        // look again.
        if !published.wait_for(committed, KEYED_WRITE_MODELS_WAIT).await {
            self.metrics().record_read_wait("timed_out");
            return Err(unavailable(format!(
                "the read models are {behind} ms behind the book, more than half its idempotency window \
                 ({allowed} ms): keyed writes wait for them; retry shortly"
            ))
            .retry_after(1)
            .with("models_position", published.position())
            .with("position", committed));
        }
        self.lookup(&models, account, key).await
    }

    /// The key's first reply in the models, as the answer to this request.
    async fn lookup(
        &self,
        models: &projector::ReadModels,
        account: AccountId,
        key: &Idempotency,
    ) -> Result<Option<Reply>, ApiError> {
        let found = models.first_reply(account, &key.key).await.map_err(crate::history::store_error)?;
        Ok(found.map(|found| {
            self.metrics().record_first_reply();
            if found.body_hash == key.body_hash {
                found.reply
            } else {
                Err(Rejection::IdempotencyKeyReused)
            }
        }))
    }
}
