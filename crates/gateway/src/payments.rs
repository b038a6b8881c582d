//! The payments step: what happens after the book places a withdrawal hold. The payment
//! provider is asked to pay it out, and the book posts the hold (paid) or voids it (failed).
//!
//! None of it may depend on the HTTP request that asked for the withdrawal staying alive: a
//! client that hangs up makes axum drop the handler's future, and a hold whose completion lived
//! in that future stayed `pending` for ever. So:
//!
//! - **The book's open withdrawal holds are the durable to-do list.** Nothing else is stored:
//!   a hold is open until a `CompleteWithdrawal` is journaled, and that survives restarts.
//! - **A job per hold, in a task of its own** (`Payments::pay`): it reads the hold, asks the
//!   provider, and submits `CompleteWithdrawal`. The withdrawal route starts it and waits for
//!   it a bounded time (`GatewayConfig::payment_wait`), so with the sandbox provider the
//!   response still shows a completed withdrawal; a dropped request does not cancel the job.
//! - **A sweep** (`GatewayConfig::payment_sweep_interval`, and once at start) starts a job for
//!   every open hold that has none: holds left by a crash, by a request that gave up waiting
//!   for the book (504 `outcome_unknown`), or by a provider that failed and is retried.
//! - **Operators see and resolve what is stuck**: `GET /v1/admin/payments?status=pending`
//!   lists open holds with the attempts made, and `POST /v1/admin/payments/{id}/resolve`
//!   posts or voids one by hand (after checking with the provider).
//!
//! A provider may be asked about the same withdrawal more than once (a retry after a failure,
//! a restart between paying and journaling the completion, a sweep racing the route's job):
//! `PaymentProvider::pay` must be idempotent per withdrawal id, as payment providers are per
//! idempotency key. The book decides the completion once; a second is `unknown_withdrawal`.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::Router;
use book::{scopes, AccountId, Ack, Book, Command, Origin, Rejection, TransferCode, TransferId, TransferKind};
use domain::{Currency, Money};
use engine::{EngineError, EngineHandle};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::auth::Principal;
use crate::dto::{parse_id, Page};
use crate::error::{ApiError, Json};
use crate::time::format_rfc3339;
use crate::{AppState, PAGE_ITEMS_DEFAULT, PAGE_ITEMS_MAX};

/// How often the sweep looks for open withdrawal holds without a job.
pub const PAYMENT_SWEEP_INTERVAL: Duration = Duration::from_secs(1);
/// How long the withdrawal route waits for the payment before answering with the hold as it
/// is (the payment goes on).
pub const PAYMENT_WAIT: Duration = Duration::from_secs(5);
/// How long one call to the provider may take before it counts as a failed attempt.
pub const PAYMENT_PROVIDER_TIMEOUT: Duration = Duration::from_secs(30);
/// Payment jobs running at once; a sweep starts no more, the next sweep starts the rest.
pub const PAYMENT_JOBS_MAX: usize = 256;
/// How long a job waits before submitting its completion again when the book is full.
const PAYMENT_RESUBMIT_DELAY: Duration = Duration::from_millis(50);
/// Bytes of the provider's error kept per open hold for operators.
const PAYMENT_ERROR_BYTES_MAX: usize = 200;

/// A payout the provider is asked to make: the withdrawal hold's id is its idempotency key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Payout {
    pub withdrawal: TransferId,
    pub account: AccountId,
    pub amount: Money,
    pub currency: Currency,
}

/// What the provider did with a payout.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PayoutOutcome {
    /// The money left: the book posts the hold.
    Paid,
    /// The provider refused for good (closed account, ...): the book voids the hold and the
    /// money is the player's again.
    Failed,
}

/// The provider could not say (down, timed out): the hold stays open and is tried again.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProviderError(pub String);

impl fmt::Display for ProviderError {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(&self.0)
    }
}

pub type PayFuture<'a> = Pin<Box<dyn Future<Output = Result<PayoutOutcome, ProviderError>> + Send + 'a>>;

/// A payment provider that pays withdrawals out.
pub trait PaymentProvider: Send + Sync + fmt::Debug + 'static {
    /// Pays `payout` out. Idempotent per `payout.withdrawal`: asked again about the same
    /// withdrawal it answers with the first outcome and pays at most once.
    fn pay(&self, payout: Payout) -> PayFuture<'_>;
}

/// The sandbox provider of `serve` and the demo: every payout is paid at once.
#[derive(Clone, Copy, Debug, Default)]
pub struct SandboxProvider;

impl PaymentProvider for SandboxProvider {
    fn pay(&self, _payout: Payout) -> PayFuture<'_> {
        Box::pin(async { Ok(PayoutOutcome::Paid) })
    }
}

/// Failed attempts at one open hold, for operators.
#[derive(Clone, Debug, Default)]
struct Attempts {
    failed: u32,
    last_error: Option<String>,
}

struct Inner {
    engine: EngineHandle,
    provider: Arc<dyn PaymentProvider>,
    /// Jobs running, by hold; a watcher learns when its job ends.
    jobs: Mutex<HashMap<TransferId, watch::Receiver<bool>>>,
    /// Failed attempts of holds still open; pruned by each sweep to the open holds.
    attempts: Mutex<BTreeMap<TransferId, Attempts>>,
}

/// The payments step's handle: cheap to clone.
#[derive(Clone)]
pub struct Payments(Arc<Inner>);

impl Payments {
    pub fn new(engine: EngineHandle, provider: Arc<dyn PaymentProvider>) -> Payments {
        Payments(Arc::new(Inner {
            engine,
            provider,
            jobs: Mutex::new(HashMap::new()),
            attempts: Mutex::new(BTreeMap::new()),
        }))
    }

    /// Starts the sweep: at once (the holds a restart found open), then every `interval`,
    /// until the handle is dropped.
    pub fn start(&self, interval: Duration) {
        let weak = Arc::downgrade(&self.0);
        tokio::spawn(async move {
            loop {
                let Some(inner) = Weak::upgrade(&weak) else { return };
                Payments(inner).sweep().await;
                tokio::time::sleep(interval).await;
            }
        });
    }

    /// Starts a job for every open withdrawal hold that has none (at most `PAYMENT_JOBS_MAX`
    /// running), and forgets the attempts of holds no longer open.
    pub async fn sweep(&self) {
        let Ok(receiver) = self.0.engine.read_async(open_withdrawals) else { return };
        let Ok(open) = receiver.await else { return };
        self.0.attempts.lock().expect("attempts").retain(|id, _| open.iter().any(|payout| payout.withdrawal == *id));
        for payout in open {
            if self.0.jobs.lock().expect("jobs").len() >= PAYMENT_JOBS_MAX {
                break;
            }
            self.pay(payout.withdrawal);
        }
    }

    /// Starts the job of `withdrawal` unless one runs, and returns a watcher of its end. The
    /// job runs in a task of its own: dropping the watcher does not stop it.
    pub fn pay(&self, withdrawal: TransferId) -> watch::Receiver<bool> {
        let mut jobs = self.0.jobs.lock().expect("jobs");
        if let Some(running) = jobs.get(&withdrawal) {
            return running.clone();
        }
        let (done, watcher) = watch::channel(false);
        jobs.insert(withdrawal, watcher.clone());
        drop(jobs);
        let payments = self.clone();
        tokio::spawn(async move {
            payments.run(withdrawal).await;
            payments.0.jobs.lock().expect("jobs").remove(&withdrawal);
            let _ = done.send(true);
        });
        watcher
    }

    /// `pay`, waiting for the job at most `wait`.
    pub async fn pay_and_wait(&self, withdrawal: TransferId, wait: Duration) {
        let mut watcher = self.pay(withdrawal);
        let _ = tokio::time::timeout(wait, watcher.wait_for(|done| *done)).await;
    }

    async fn run(&self, withdrawal: TransferId) {
        let Ok(receiver) = self.0.engine.read_async(move |book| open_withdrawal(book, withdrawal)) else { return };
        let Ok(Some(payout)) = receiver.await else { return };
        let outcome = match tokio::time::timeout(PAYMENT_PROVIDER_TIMEOUT, self.0.provider.pay(payout)).await {
            Ok(Ok(outcome)) => outcome,
            Ok(Err(error)) => return self.failed_attempt(withdrawal, error.0),
            Err(_) => return self.failed_attempt(withdrawal, "the provider did not answer in time".to_string()),
        };
        let command =
            Command::CompleteWithdrawal { account: payout.account, withdrawal, paid: outcome == PayoutOutcome::Paid };
        match submit_until_decided(&self.0.engine, command).await {
            // Another job or an operator completed it first: nothing to do.
            Ok(Ok(_)) | Ok(Err(Rejection::UnknownWithdrawal)) => {
                self.0.attempts.lock().expect("attempts").remove(&withdrawal);
            }
            Ok(Err(rejection)) => self.failed_attempt(withdrawal, format!("the book refused: {}", rejection.code())),
            Err(error) => self.failed_attempt(withdrawal, format!("the book: {error}")),
        }
    }

    fn failed_attempt(&self, withdrawal: TransferId, mut error: String) {
        tracing::warn!(%withdrawal, %error, "payment attempt failed; the hold stays open and is tried again");
        truncate(&mut error, PAYMENT_ERROR_BYTES_MAX);
        let mut attempts = self.0.attempts.lock().expect("attempts");
        let entry = attempts.entry(withdrawal).or_default();
        entry.failed = entry.failed.saturating_add(1);
        entry.last_error = Some(error);
    }

    fn attempts(&self, withdrawal: TransferId) -> Attempts {
        self.0.attempts.lock().expect("attempts").get(&withdrawal).cloned().unwrap_or_default()
    }

    fn is_running(&self, withdrawal: TransferId) -> bool {
        self.0.jobs.lock().expect("jobs").contains_key(&withdrawal)
    }
}

/// Submits a command and waits for its durable reply, waiting out a full book (the job has no
/// client to answer 503 to). An engine that stopped is an error: the hold stays open, and the
/// sweep after a restart takes it up again.
async fn submit_until_decided(engine: &EngineHandle, command: Command) -> Result<book::Reply, EngineError> {
    loop {
        // The payment job works for nobody who asked: the platform pays out on its own.
        match engine.try_submit_then((command.clone(), Origin::system("payments")), |_, _| ()) {
            Ok(receiver) => {
                return match receiver.await {
                    Ok(outcome) => outcome.map(|(reply, ())| reply),
                    Err(_) => Err(EngineError::ShutDown),
                }
            }
            Err(EngineError::Overloaded) => tokio::time::sleep(PAYMENT_RESUBMIT_DELAY).await,
            Err(error) => return Err(error),
        }
    }
}

fn truncate(text: &mut String, bytes_max: usize) {
    if text.len() > bytes_max {
        let mut end = bytes_max;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
}

/// The payout of an open withdrawal hold (its reference is the player's account id).
fn payout_of(book: &Book, transfer: &book::Transfer) -> Option<Payout> {
    let is_open_hold = transfer.code == TransferCode::Withdrawal
        && transfer.kind == TransferKind::Pending
        && book.ledger().is_open_pending(transfer.id);
    is_open_hold.then(|| Payout {
        withdrawal: transfer.id,
        account: AccountId(transfer.reference),
        amount: transfer.amount,
        currency: book.ledger().account(transfer.debit).currency,
    })
}

fn open_withdrawal(book: &Book, withdrawal: TransferId) -> Option<Payout> {
    book.ledger().transfer(withdrawal).and_then(|transfer| payout_of(book, transfer))
}

/// Every open withdrawal hold, oldest first. Scans the ledger's open pending transfers (a
/// bitset over transfer ids, so about one word per 64 transfers, plus the open holds).
fn open_withdrawals(book: &Book) -> Vec<Payout> {
    let ledger = book.ledger();
    ledger
        .open_pending()
        .filter_map(|id| ledger.transfer(id))
        .filter_map(|transfer| payout_of(book, transfer))
        .collect()
}

// ---- operator routes ------------------------------------------------------------------------

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/admin/payments", get(list_payments))
        .route("/v1/admin/payments/{id}/resolve", post(resolve_payment))
}

/// `?status=pending&limit=&cursor=`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct PaymentsQuery {
    /// `pending`: withdrawals whose hold is open (the provider has not been heard from, or
    /// failed to answer). The only status listed; `pending` when absent.
    #[param(example = "pending")]
    pub status: Option<String>,
    /// Items per page, 1 to 200 (50 when absent).
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<usize>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

/// A withdrawal on its way to the payment provider.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct PaymentView {
    /// The withdrawal hold's transfer id.
    #[schema(example = "trf_12")]
    pub id: String,
    pub account_id: String,
    pub amount: String,
    pub currency: String,
    /// `pending` (hold open), `paid` (posted) or `failed` (voided, the money is the player's).
    pub status: String,
    pub created_at: String,
    /// Failed attempts to ask the provider since this process started.
    pub attempts: u32,
    /// The last failed attempt's error.
    #[schema(required = true)]
    pub last_error: Option<String>,
    /// Whether a payment job is asking the provider now.
    pub in_progress: bool,
}

fn payment_view(payments: &Payments, payout: &Payout, created_at: book::Timestamp, status: &str) -> PaymentView {
    let attempts = payments.attempts(payout.withdrawal);
    PaymentView {
        id: payout.withdrawal.to_string(),
        account_id: payout.account.to_string(),
        amount: payout.currency.format(payout.amount),
        currency: payout.currency.code().to_string(),
        status: status.to_string(),
        created_at: format_rfc3339(created_at),
        attempts: attempts.failed,
        last_error: attempts.last_error,
        in_progress: payments.is_running(payout.withdrawal),
    }
}

#[utoipa::path(
    get,
    path = "/v1/admin/payments",
    tag = "operators",
    summary = "Withdrawals waiting for the payment provider",
    description = "Open withdrawal holds, oldest first: the payments step asks the provider and posts or voids \
        each one, retrying failures every sweep; one that stays here is stuck and can be resolved by hand. \
        Scope `compliance`.",
    security(("bearer" = [])),
    params(PaymentsQuery),
    responses(
        (status = 200, description = "A page of pending payments", body = Page<PaymentView>),
        (status = 400, description = "Unknown status, bad `limit` or `cursor`, or an unknown parameter \
            (`invalid_request`)", body = ApiError),
        (status = 401, description = "No valid credential (`unauthenticated`)", body = ApiError),
        (status = 403, description = "Not an operator key with scope `compliance` (`forbidden`)", body = ApiError),
    ),
)]
pub(crate) async fn list_payments(
    State(state): State<AppState>,
    principal: Principal,
    query: Result<Query<PaymentsQuery>, QueryRejection>,
) -> Result<Json<Page<PaymentView>>, ApiError> {
    principal.require_scope(scopes::COMPLIANCE)?;
    let Query(query) = query.map_err(|rejection| ApiError::invalid(rejection.body_text()))?;
    if query.status.as_deref().is_some_and(|status| status != "pending") {
        return Err(ApiError::invalid("status: only pending payments are listed").with("field", "status"));
    }
    let limit = match query.limit {
        None => PAGE_ITEMS_DEFAULT,
        Some(limit) if (1..=PAGE_ITEMS_MAX).contains(&limit) => limit,
        Some(_) => return Err(ApiError::invalid(format!("limit must be 1 to {PAGE_ITEMS_MAX}"))),
    };
    let after = match &query.cursor {
        None => None,
        Some(cursor) => Some(parse_id(cursor, "trf_", "cursor").map_err(|_| ApiError::invalid("unknown cursor"))?),
    };
    let open = state
        .read(move |book| {
            let ledger = book.ledger();
            let mut selected = ledger
                .open_pending()
                .filter(|id| after.is_none_or(|after| id.0 > after))
                .filter_map(|id| ledger.transfer(id))
                .filter_map(|transfer| payout_of(book, transfer).map(|payout| (payout, transfer.timestamp)));
            let items: Vec<_> = selected.by_ref().take(limit).collect();
            let more = selected.next().is_some();
            (items, more)
        })
        .await?;
    let (items, more) = open;
    let payments = state.payments();
    let items: Vec<PaymentView> =
        items.iter().map(|(payout, created_at)| payment_view(payments, payout, *created_at, "pending")).collect();
    let next_cursor = if more { items.last().map(|item| item.id.clone()) } else { None };
    Ok(Json(Page { items, next_cursor }))
}

/// How an operator resolves a stuck payment, after checking with the provider.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResolvePaymentRequest {
    /// `paid`: the provider paid it (the hold is posted); `failed`: it did not and will not
    /// (the hold is voided and the money is the player's again).
    #[schema(example = "paid")]
    pub outcome: ResolveOutcome,
    /// Why: journaled with the command and shown in the audit trail.
    #[schema(example = "confirmed paid in the provider's dashboard", max_length = 500)]
    pub reason: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ResolveOutcome {
    Paid,
    Failed,
}

#[utoipa::path(
    post,
    path = "/v1/admin/payments/{id}/resolve",
    tag = "operators",
    summary = "Resolve a stuck payment by hand",
    description = "Posts (`paid`) or voids (`failed`) an open withdrawal hold, as the provider says it went. \
        Scope `compliance`.",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "The withdrawal hold's transfer id", example = "trf_12")),
    request_body = ResolvePaymentRequest,
    responses(
        (status = 200, description = "The payment, resolved", body = PaymentView),
        (status = 400, description = "Malformed body, unknown field, or a reason empty or over the limit \
            (`invalid_request`)", body = ApiError),
        (status = 401, description = "No valid credential (`unauthenticated`)", body = ApiError),
        (status = 403, description = "Not an operator key with scope `compliance` (`forbidden`)", body = ApiError),
        (status = 404, description = "No such withdrawal (`not_found`)", body = ApiError),
        (status = 409, description = "The withdrawal is not pending any more (`payment_not_pending`)", body = ApiError),
        (status = 413, description = "Body over the size limit (`payload_too_large`)", body = ApiError),
        (status = 415, description = "Not `Content-Type: application/json` \
            (`unsupported_media_type`)", body = ApiError),
    ),
)]
pub(crate) async fn resolve_payment(
    State(state): State<AppState>,
    principal: Principal,
    path: Result<Path<String>, PathRejection>,
    Json(request): Json<ResolvePaymentRequest>,
) -> Result<Json<PaymentView>, ApiError> {
    principal.require_scope(scopes::COMPLIANCE)?;
    let Path(id) = path.map_err(|_| ApiError::not_found("payment"))?;
    let withdrawal = TransferId(parse_id(&id, "trf_", "payment")?);
    crate::requests::check_text(&request.reason, "reason", 1, book::constants::REASON_BYTES_MAX)?;
    let found = state
        .read(move |book| {
            let transfer = book.ledger().transfer(withdrawal).filter(|transfer| {
                transfer.code == TransferCode::Withdrawal && transfer.kind == TransferKind::Pending
            })?;
            Some((payout_of(book, transfer), transfer.timestamp))
        })
        .await?;
    let Some((open, created_at)) = found else { return Err(ApiError::not_found("payment")) };
    let not_pending =
        || ApiError::new(StatusCode::CONFLICT, "payment_not_pending", "the withdrawal is not pending any more");
    let payout = open.ok_or_else(not_pending)?;
    let paid = request.outcome == ResolveOutcome::Paid;
    let command = Command::CompleteWithdrawal { account: payout.account, withdrawal, paid };
    match state.submit(command, principal.origin().with_reason(Some(request.reason.clone()))).await? {
        Ok(Ack::Transfer(_)) => {}
        Ok(_) => return Err(ApiError::internal("a completion answered with another ack")),
        Err(Rejection::UnknownWithdrawal) => return Err(not_pending()),
        Err(rejection) => return Err(ApiError::from_rejection(&rejection, payout.currency)),
    }
    tracing::info!(
        actor = %principal.label(),
        %withdrawal,
        outcome = if paid { "paid" } else { "failed" },
        reason = %request.reason,
        "payment resolved by hand"
    );
    state.payments().0.attempts.lock().expect("attempts").remove(&withdrawal);
    let status = if paid { "paid" } else { "failed" };
    Ok(Json(payment_view(state.payments(), &payout, created_at, status)))
}
