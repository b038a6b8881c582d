//! "Outcome unknown": what a request answers when it gave up waiting after its command reached
//! the book.
//!
//! Once a command is handed to the engine it will be decided and, unless the journal fails,
//! made durable, whether or not anyone waits for the reply. A timeout after that point must
//! not answer a code that means "not done, retry" (503 `overloaded`/`timeout`): a client that
//! retries without the first request's idempotency key would do it twice. Such a request
//! answers 504 `outcome_unknown` instead, and the client retries with the same
//! `Idempotency-Key` to learn the first outcome.
//!
//! The request's deadline (`limits::admit`) and the handler's wait (`AppState::durable_reply`)
//! are far apart in the code, so the handler marks the request through a task-local flag that
//! the deadline layer sets up around the handler's future.

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use axum::http::StatusCode;

use crate::error::ApiError;

tokio::task_local! {
    static HANDED: Handed;
}

/// Whether the request being handled has handed a command to the engine, and the journal
/// position its durable reply was seen at (0: none yet; read-your-writes, `history.rs`).
#[derive(Clone, Debug, Default)]
pub(crate) struct Handed(Arc<(AtomicBool, AtomicU64)>);

impl Handed {
    /// Runs `future` (the handler) with this flag as the request's.
    pub(crate) async fn scope<F: Future>(&self, future: F) -> F::Output {
        HANDED.scope(self.clone(), future).await
    }

    /// Marks the current request, if it runs in a scope: its command reached the engine.
    pub(crate) fn mark_current() {
        let _ = HANDED.try_with(|handed| handed.0 .0.store(true, Ordering::Release));
    }

    pub(crate) fn is_marked(&self) -> bool {
        self.0 .0.load(Ordering::Acquire)
    }

    /// Records on the current request, if it runs in a scope, that a durable reply came when
    /// the journal was committed up to `position` (at or past the command's own batch).
    pub(crate) fn record_position(position: u64) {
        let _ = HANDED.try_with(|handed| handed.0 .1.fetch_max(position, Ordering::AcqRel));
    }

    /// The journal position the request's writes are durable below; 0 when it wrote nothing.
    pub(crate) fn position(&self) -> u64 {
        self.0 .1.load(Ordering::Acquire)
    }
}

/// 504 `outcome_unknown`: the command reached the book but its reply did not come in time.
pub fn outcome_unknown() -> ApiError {
    ApiError::new(
        StatusCode::GATEWAY_TIMEOUT,
        "outcome_unknown",
        "the request reached the book but its outcome is not known yet; retry with the same Idempotency-Key \
         to learn it",
    )
    .retry_after(1)
}
