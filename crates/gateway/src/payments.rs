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
//! Payments through a provider that answers later (`GatewayConfig::payment_callbacks`; the
//! default completes deposits at once, as the sandbox of `serve` and the demo always did):
//!
//! - **Deposits are pending** (`Command::BeginDeposit`) until the provider's signed callback
//!   says `deposit.completed`, `deposit.failed` or `deposit.charged_back`
//!   (`POST /v1/payments/callbacks/{provider}`, `Command::SettleDeposit`). The provider is asked
//!   to collect each pending deposit (`PaymentProvider::collect`, idempotent per deposit); the
//!   sweep asks again for pending deposits this process has not asked about (a restart).
//! - **Withdrawals are approved before they are paid** when a threshold is configured
//!   (`GatewayConfig::withdrawal_approval_above`, in the base currency): at or below it the
//!   payments step approves on its own (`Command::ApproveWithdrawal`, actor `system:payments`),
//!   above it a compliance or admin staff member does, with a reason
//!   (`POST /v1/admin/payments/{id}/approve`), or refuses it (`.../refuse`: the hold is voided
//!   and the money is the player's again). Without a threshold every withdrawal is paid
//!   without an approval step, as before. A provider that answers later
//!   (`PayoutOutcome::Submitted`) confirms the payout by callback (`withdrawal.paid`,
//!   `withdrawal.failed`).
//! - **A player cannot take a withdrawal back** (UKGC RTS 14B, no reverse withdrawals): there is
//!   no player route to cancel one, on purpose.
//! - Callbacks are verified by `callbacks.rs` (HMAC-SHA256 signature, timestamp window,
//!   replayed ids answered with the first answer).
//!
//! A provider may be asked about the same withdrawal more than once (a retry after a failure,
//! a restart between paying and journaling the completion, a sweep racing the route's job):
//! `PaymentProvider::pay` must be idempotent per withdrawal id, as payment providers are per
//! idempotency key. The book decides the completion once; a second is `unknown_withdrawal`.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use book::{
    scopes, AccountId, Ack, Actor, Book, Command, DepositOutcome, DepositState, Origin, Rejection, TransferCode,
    TransferId, TransferKind,
};
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
    /// The provider took the payout and confirms it later by callback (`withdrawal.paid` or
    /// `withdrawal.failed`): the hold stays open until then.
    Submitted,
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
pub type CollectFuture<'a> = Pin<Box<dyn Future<Output = Result<(), ProviderError>> + Send + 'a>>;
pub type DeliverFuture = Pin<Box<dyn Future<Output = ()> + Send>>;

/// Hands a signed callback (raw body, signature header) to the gateway as if it had arrived
/// over HTTP: how the sandbox delivers its callbacks (`PaymentProvider::attach`).
pub type CallbackSink = Arc<dyn Fn(Vec<u8>, String) -> DeliverFuture + Send + Sync>;

/// A deposit the provider is asked to collect: the pending deposit's id is its idempotency key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Collection {
    pub deposit: TransferId,
    pub account: AccountId,
    pub amount: Money,
    pub currency: Currency,
    pub payment_ref: String,
}

/// A payment provider: pays withdrawals out and, when deposits wait for it
/// (`GatewayConfig::payment_callbacks`), collects them and says how they went by callback.
pub trait PaymentProvider: Send + Sync + fmt::Debug + 'static {
    /// Pays `payout` out. Idempotent per `payout.withdrawal`: asked again about the same
    /// withdrawal it answers with the first outcome and pays at most once.
    fn pay(&self, payout: Payout) -> PayFuture<'_>;

    /// Starts collecting a pending deposit; the outcome arrives by callback. Idempotent per
    /// `collection.deposit`. A provider that never leaves deposits pending does nothing.
    fn collect(&self, _collection: Collection) -> CollectFuture<'_> {
        Box::pin(async { Ok(()) })
    }

    /// The name callbacks arrive under (`POST /v1/payments/callbacks/{name}`).
    fn name(&self) -> &str {
        "sandbox"
    }

    /// Receives the way into the gateway's callback route, for a provider in this process
    /// (the sandbox); a real provider posts its callbacks over HTTP and ignores it.
    fn attach(&self, _sink: CallbackSink) {}
}

/// The sandbox provider of `serve` and the demo by default: every payout is paid at once (and
/// deposits complete at once: `GatewayConfig::payment_callbacks` is off).
#[derive(Clone, Copy, Debug, Default)]
pub struct SandboxProvider;

impl PaymentProvider for SandboxProvider {
    fn pay(&self, _payout: Payout) -> PayFuture<'_> {
        Box::pin(async { Ok(PayoutOutcome::Paid) })
    }
}

/// What the callback sandbox does with payouts (`serve --payment-sandbox-payouts`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SandboxPayouts {
    /// Confirms each payout paid (`withdrawal.paid`).
    #[default]
    Pay,
    /// Reports each payout failed (`withdrawal.failed`).
    Fail,
    /// Takes each payout and never confirms it (a test or an operator sends the callback).
    Hold,
}

/// Bytes of a payment reference prefix the callback sandbox reads.
const SANDBOX_PREFIX_BYTES_MAX: usize = 16;

/// A sandbox provider that behaves like a real one: deposits stay pending until it sends its
/// signed callback, after `delay`. What it says depends on the deposit's `payment_ref`:
/// starting `fail` it fails, `delay` it never answers (a test or an operator sends the
/// callback), `chargeback` it completes and then charges back; anything else completes.
/// Payouts follow `payouts`. Its callbacks are signed with the shared secret and go through
/// the same verification as a real provider's.
#[derive(Debug)]
pub struct CallbackSandbox {
    secret: Vec<u8>,
    delay: Duration,
    payouts: SandboxPayouts,
    sink: OnceLock<CallbackSinkHolder>,
    sequence: AtomicU64,
    /// Deposits and payouts already taken: asked again, it sends nothing twice.
    taken: Mutex<HashSet<TransferId>>,
}

struct CallbackSinkHolder(CallbackSink);

impl fmt::Debug for CallbackSinkHolder {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("CallbackSink")
    }
}

impl CallbackSandbox {
    pub fn new(secret: Vec<u8>, delay: Duration, payouts: SandboxPayouts) -> CallbackSandbox {
        CallbackSandbox {
            secret,
            delay,
            payouts,
            sink: OnceLock::new(),
            sequence: AtomicU64::new(0),
            taken: Mutex::new(HashSet::new()),
        }
    }

    /// Sends `kinds` about `payment`, in order, after the delay.
    fn send(&self, payment: TransferId, kinds: Vec<&'static str>) {
        let Some(CallbackSinkHolder(sink)) = self.sink.get() else {
            tracing::warn!(%payment, "the payment sandbox has no gateway to call back");
            return;
        };
        let (sink, secret, delay) = (Arc::clone(sink), self.secret.clone(), self.delay);
        let ids: Vec<u64> = kinds.iter().map(|_| self.sequence.fetch_add(1, Ordering::Relaxed) + 1).collect();
        let nonce = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|elapsed| elapsed.as_nanos())
            .unwrap_or(0);
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            for (kind, id) in kinds.into_iter().zip(ids) {
                let body = serde_json::json!({
                    "id": format!("sbx_{nonce:x}_{id}"),
                    "created_at": crate::time::format_rfc3339(now_ms()),
                    "type": kind,
                    "payment_id": payment.to_string(),
                })
                .to_string()
                .into_bytes();
                let signature = crate::callbacks::sign(&secret, &body);
                sink(body, signature).await;
            }
        });
    }

    fn first_time(&self, payment: TransferId) -> bool {
        self.taken.lock().expect("taken").insert(payment)
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| elapsed.as_millis() as u64)
        .unwrap_or(0)
}

impl PaymentProvider for CallbackSandbox {
    fn pay(&self, payout: Payout) -> PayFuture<'_> {
        if self.first_time(payout.withdrawal) {
            match self.payouts {
                SandboxPayouts::Pay => self.send(payout.withdrawal, vec!["withdrawal.paid"]),
                SandboxPayouts::Fail => self.send(payout.withdrawal, vec!["withdrawal.failed"]),
                SandboxPayouts::Hold => {}
            }
        }
        Box::pin(async { Ok(PayoutOutcome::Submitted) })
    }

    fn collect(&self, collection: Collection) -> CollectFuture<'_> {
        if self.first_time(collection.deposit) {
            let prefix: String = collection.payment_ref.chars().take(SANDBOX_PREFIX_BYTES_MAX).collect();
            let prefix = prefix.to_ascii_lowercase();
            if prefix.starts_with("fail") {
                self.send(collection.deposit, vec!["deposit.failed"]);
            } else if prefix.starts_with("chargeback") {
                self.send(collection.deposit, vec!["deposit.completed", "deposit.charged_back"]);
            } else if !prefix.starts_with("delay") {
                self.send(collection.deposit, vec!["deposit.completed"]);
            }
        }
        Box::pin(async { Ok(()) })
    }

    fn attach(&self, sink: CallbackSink) {
        let _ = self.sink.set(CallbackSinkHolder(sink));
    }
}

/// Deposits through a provider that answers by callback (`serve --payments callbacks`).
#[derive(Clone, Debug)]
pub struct PaymentCallbacks {
    /// The secret the provider signs its callbacks with (`SPORTSBOOK_PAYMENT_SECRET`), at
    /// least `CALLBACK_SECRET_BYTES_MIN` bytes.
    pub secret: Vec<u8>,
    /// How far a callback's `created_at` may be from now (`CALLBACK_WINDOW`).
    pub window: Duration,
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
    /// Holds the provider took and will confirm by callback; pruned by each sweep.
    submitted: Mutex<HashSet<TransferId>>,
    /// Pending deposits the provider was asked to collect by this process.
    collecting: Mutex<HashSet<TransferId>>,
    /// The automatic approval threshold in the base currency; `None`: no approval step.
    approval_above: Option<Money>,
    /// Callback ids seen lately, with their first answers.
    pub(crate) seen: crate::callbacks::SeenCallbacks,
}

/// The payments step's handle: cheap to clone.
#[derive(Clone)]
pub struct Payments(Arc<Inner>);

impl Payments {
    pub fn new(engine: EngineHandle, provider: Arc<dyn PaymentProvider>, approval_above: Option<Money>) -> Payments {
        Payments(Arc::new(Inner {
            engine,
            provider,
            jobs: Mutex::new(HashMap::new()),
            attempts: Mutex::new(BTreeMap::new()),
            submitted: Mutex::new(HashSet::new()),
            collecting: Mutex::new(HashSet::new()),
            approval_above,
            seen: crate::callbacks::SeenCallbacks::default(),
        }))
    }

    pub fn provider(&self) -> &Arc<dyn PaymentProvider> {
        &self.0.provider
    }

    /// Asks the provider to collect a pending deposit, once per process (the provider is
    /// idempotent per deposit, so a second ask after a restart is harmless).
    pub fn collect(&self, deposit: TransferId) {
        if !self.0.collecting.lock().expect("collecting").insert(deposit) {
            return;
        }
        let payments = self.clone();
        tokio::spawn(async move {
            let read = payments.0.engine.read_async(move |book| collection_of(book, deposit));
            let Ok(receiver) = read else { return };
            let Ok(Some(collection)) = receiver.await else { return };
            let asked = tokio::time::timeout(PAYMENT_PROVIDER_TIMEOUT, payments.0.provider.collect(collection)).await;
            if !matches!(asked, Ok(Ok(()))) {
                tracing::warn!(%deposit, "the provider did not take the deposit; asking again at the next sweep");
                payments.0.collecting.lock().expect("collecting").remove(&deposit);
            }
        });
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
        let Ok(receiver) = self.0.engine.read_async(|book| (open_withdrawals(book), pending_deposits(book))) else {
            return;
        };
        let Ok((open, deposits)) = receiver.await else { return };
        self.0.attempts.lock().expect("attempts").retain(|id, _| open.iter().any(|payout| payout.withdrawal == *id));
        self.0.submitted.lock().expect("submitted").retain(|id| open.iter().any(|payout| payout.withdrawal == *id));
        self.0.collecting.lock().expect("collecting").retain(|id| deposits.contains(id));
        for deposit in deposits {
            self.collect(deposit);
        }
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
        if self.0.submitted.lock().expect("submitted").contains(&withdrawal) {
            return;
        }
        let threshold = self.0.approval_above;
        let read = self.0.engine.read_async(move |book| {
            let payout = open_withdrawal(book, withdrawal)?;
            Some((payout, approval_of(book, &payout, threshold)))
        });
        let Ok(receiver) = read else { return };
        let Ok(Some((payout, approval))) = receiver.await else { return };
        match approval {
            Approval::NotRequired | Approval::Approved => {}
            // Above the threshold: a staff member approves or refuses it.
            Approval::Awaiting => return,
            Approval::Automatic => {
                let command = Command::ApproveWithdrawal { account: payout.account, withdrawal };
                let origin = Origin::system("payments")
                    .with_reason(Some("at or below the automatic approval threshold".to_string()));
                match submit_until_decided(&self.0.engine, command, origin).await {
                    Ok(Ok(_)) => {}
                    Ok(Err(Rejection::UnknownWithdrawal)) => return,
                    Ok(Err(rejection)) => {
                        return self.failed_attempt(withdrawal, format!("the book refused: {}", rejection.code()))
                    }
                    Err(error) => return self.failed_attempt(withdrawal, format!("the book: {error}")),
                }
            }
        }
        let outcome = match tokio::time::timeout(PAYMENT_PROVIDER_TIMEOUT, self.0.provider.pay(payout)).await {
            Ok(Ok(PayoutOutcome::Submitted)) => {
                self.0.submitted.lock().expect("submitted").insert(withdrawal);
                self.0.attempts.lock().expect("attempts").remove(&withdrawal);
                return;
            }
            Ok(Ok(outcome)) => outcome,
            Ok(Err(error)) => return self.failed_attempt(withdrawal, error.0),
            Err(_) => return self.failed_attempt(withdrawal, "the provider did not answer in time".to_string()),
        };
        let command =
            Command::CompleteWithdrawal { account: payout.account, withdrawal, paid: outcome == PayoutOutcome::Paid };
        match submit_until_decided(&self.0.engine, command, Origin::system("payments")).await {
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
async fn submit_until_decided(
    engine: &EngineHandle,
    command: Command,
    origin: Origin,
) -> Result<book::Reply, EngineError> {
    loop {
        // The payment job works for nobody who asked: the platform pays out on its own.
        match engine.try_submit_then((command.clone(), origin.clone()), |_, _| ()) {
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

/// Pending deposits, oldest first.
fn pending_deposits(book: &Book) -> Vec<TransferId> {
    book.payments().pending_deposits().map(|deposit| deposit.id).collect()
}

/// What the provider is asked to collect for a pending deposit.
fn collection_of(book: &Book, deposit: TransferId) -> Option<Collection> {
    let found = book.payments().deposit(deposit).filter(|found| found.state == DepositState::Pending)?;
    let player = book.players().get(found.account.index())?;
    Some(Collection {
        deposit,
        account: found.account,
        amount: found.amount,
        currency: player.currency,
        payment_ref: found.payment_ref.clone(),
    })
}

/// Where a withdrawal hold stands with its approval.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Approval {
    /// No threshold configured: withdrawals are paid without an approval step.
    NotRequired,
    /// Approved (automatically or by staff).
    Approved,
    /// At or below the threshold: the payments step approves it.
    Automatic,
    /// Above the threshold (or its currency has no exchange rate to judge it by): waits for
    /// a compliance or admin staff member.
    Awaiting,
}

impl Approval {
    fn name(self) -> &'static str {
        match self {
            Approval::NotRequired => "not_required",
            Approval::Approved => "approved",
            Approval::Automatic => "automatic",
            Approval::Awaiting => "awaiting_approval",
        }
    }
}

/// The approval of an open withdrawal hold. The player is KYC-verified here (until KYC
/// states exist every player counts as verified, as the sandbox verifies at registration).
fn approval_of(book: &Book, payout: &Payout, threshold: Option<Money>) -> Approval {
    let Some(threshold) = threshold else { return Approval::NotRequired };
    if book.payments().is_approved(payout.withdrawal) {
        return Approval::Approved;
    }
    let in_base = book.fx().rate(payout.currency).map(|rate| rate.to_base(payout.amount, payout.currency));
    match in_base {
        Some(amount) if amount <= threshold => Approval::Automatic,
        _ => Approval::Awaiting,
    }
}

// ---- operator routes ------------------------------------------------------------------------

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/admin/payments", get(list_payments))
        .route("/v1/admin/payments/{id}/resolve", post(resolve_payment))
        .route("/v1/admin/payments/{id}/approve", post(approve_payment))
        .route("/v1/admin/payments/{id}/refuse", post(refuse_payment))
        .route("/v1/payments/callbacks/{provider}", post(payment_callback))
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
    /// `not_required` (no approval threshold configured), `approved`, `automatic` (at or below
    /// the threshold: the payments step approves it) or `awaiting_approval` (above it: a
    /// compliance or admin staff member approves or refuses it).
    #[schema(example = "awaiting_approval")]
    pub approval: String,
    /// Whether the provider took the payout and its confirmation callback is awaited.
    pub submitted: bool,
}

fn payment_view(
    payments: &Payments,
    payout: &Payout,
    created_at: book::Timestamp,
    status: &str,
    approval: Approval,
) -> PaymentView {
    let attempts = payments.attempts(payout.withdrawal);
    PaymentView {
        approval: approval.name().to_string(),
        submitted: payments.0.submitted.lock().expect("submitted").contains(&payout.withdrawal),
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
    let threshold = state.payments().0.approval_above;
    let open = state
        .read(move |book| {
            let ledger = book.ledger();
            let mut selected = ledger
                .open_pending()
                .filter(|id| after.is_none_or(|after| id.0 > after))
                .filter_map(|id| ledger.transfer(id))
                .filter_map(|transfer| {
                    payout_of(book, transfer)
                        .map(|payout| (payout, transfer.timestamp, approval_of(book, &payout, threshold)))
                });
            let items: Vec<_> = selected.by_ref().take(limit).collect();
            let more = selected.next().is_some();
            (items, more)
        })
        .await?;
    let (items, more) = open;
    let payments = state.payments();
    let items: Vec<PaymentView> = items
        .iter()
        .map(|(payout, created_at, approval)| payment_view(payments, payout, *created_at, "pending", *approval))
        .collect();
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
    let approval = if state.payments().0.approval_above.is_some() { Approval::Approved } else { Approval::NotRequired };
    Ok(Json(payment_view(state.payments(), &payout, created_at, status, approval)))
}

// ---- staff approval of withdrawals above the threshold --------------------------------------

/// Why a staff member approves or refuses a withdrawal.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PaymentDecisionRequest {
    /// Journaled with the command and shown in the audit trail.
    #[schema(example = "source of funds checked", min_length = 1, max_length = 500)]
    pub reason: String,
}

/// The staff member behind a request, with compliance or admin: approving and refusing
/// payouts is for people (support staff hold `compliance` for reads only, and are refused).
fn approver_of(principal: &Principal) -> Result<(), ApiError> {
    principal.require_scope(scopes::COMPLIANCE)?;
    match principal {
        Principal::Staff { .. } => Ok(()),
        _ => Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "withdrawals are approved and refused by compliance or admin staff members only",
        )),
    }
}

/// The open withdrawal hold `id` names, with its approval; 404 / 409 otherwise.
async fn open_hold(state: &AppState, withdrawal: TransferId) -> Result<(Payout, book::Timestamp, Approval), ApiError> {
    let threshold = state.payments().0.approval_above;
    let found = state
        .read(move |book| {
            let transfer = book.ledger().transfer(withdrawal).filter(|transfer| {
                transfer.code == TransferCode::Withdrawal && transfer.kind == TransferKind::Pending
            })?;
            let payout = payout_of(book, transfer);
            Some((payout.map(|payout| (payout, approval_of(book, &payout, threshold))), transfer.timestamp))
        })
        .await?;
    let Some((open, created_at)) = found else { return Err(ApiError::not_found("payment")) };
    let (payout, approval) = open.ok_or_else(not_pending)?;
    Ok((payout, created_at, approval))
}

fn not_pending() -> ApiError {
    ApiError::new(StatusCode::CONFLICT, "payment_not_pending", "the withdrawal is not pending any more")
}

#[utoipa::path(
    post,
    path = "/v1/admin/payments/{id}/approve",
    tag = "operators",
    summary = "Approve a withdrawal for payout",
    description = "A withdrawal above the automatic approval threshold (`serve --withdrawal-approval-above`) \
        waits for a compliance or admin staff member; approving it (with a reason, audited) sends it to the \
        payment provider. Approving an approved one answers the same. Staff tokens only (support staff, API keys: \
        403).",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "The withdrawal hold's transfer id", example = "trf_12")),
    request_body = PaymentDecisionRequest,
    responses(
        (status = 200, description = "The payment, approved", body = PaymentView),
        (status = 400, description = "Malformed body, unknown field, or a reason empty or over the limit \
            (`invalid_request`)", body = ApiError),
        (status = 401, description = "No valid credential (`unauthenticated`)", body = ApiError),
        (status = 403, description = "Not a compliance or admin staff member (`forbidden`)", body = ApiError),
        (status = 404, description = "No such withdrawal (`not_found`)", body = ApiError),
        (status = 409, description = "The withdrawal is not pending any more (`payment_not_pending`)", body = ApiError),
        (status = 413, description = "Body over the size limit (`payload_too_large`)", body = ApiError),
        (status = 415, description = "Not `Content-Type: application/json` \
            (`unsupported_media_type`)", body = ApiError),
    ),
)]
pub(crate) async fn approve_payment(
    State(state): State<AppState>,
    principal: Principal,
    path: Result<Path<String>, PathRejection>,
    Json(request): Json<PaymentDecisionRequest>,
) -> Result<Json<PaymentView>, ApiError> {
    approver_of(&principal)?;
    let Path(id) = path.map_err(|_| ApiError::not_found("payment"))?;
    let withdrawal = TransferId(parse_id(&id, "trf_", "payment")?);
    crate::requests::check_text(&request.reason, "reason", 1, book::constants::REASON_BYTES_MAX)?;
    let (payout, created_at, _) = open_hold(&state, withdrawal).await?;
    let command = Command::ApproveWithdrawal { account: payout.account, withdrawal };
    match state.submit(command, principal.origin().with_reason(Some(request.reason.clone()))).await? {
        Ok(_) => {}
        Err(Rejection::UnknownWithdrawal) => return Err(not_pending()),
        Err(rejection) => return Err(ApiError::from_rejection(&rejection, payout.currency)),
    }
    tracing::info!(actor = %principal.label(), %withdrawal, reason = %request.reason, "withdrawal approved");
    // The payment job goes on whatever happens to this request.
    state.payments().pay_and_wait(withdrawal, state.config().payment_wait).await;
    let (status, approval) = match open_hold(&state, withdrawal).await {
        Ok((_, _, approval)) => ("pending", approval),
        Err(_) => ("paid", Approval::Approved),
    };
    Ok(Json(payment_view(state.payments(), &payout, created_at, status, approval)))
}

#[utoipa::path(
    post,
    path = "/v1/admin/payments/{id}/refuse",
    tag = "operators",
    summary = "Refuse a withdrawal",
    description = "Refuses an open withdrawal (with a reason, audited): the hold is voided and the money is the \
        player's again. Staff tokens only, compliance or admin (support staff, API keys: 403). Players cannot \
        cancel a withdrawal they asked for (UKGC RTS 14B): there is no player route for it.",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "The withdrawal hold's transfer id", example = "trf_12")),
    request_body = PaymentDecisionRequest,
    responses(
        (status = 200, description = "The payment, refused", body = PaymentView),
        (status = 400, description = "Malformed body, unknown field, or a reason empty or over the limit \
            (`invalid_request`)", body = ApiError),
        (status = 401, description = "No valid credential (`unauthenticated`)", body = ApiError),
        (status = 403, description = "Not a compliance or admin staff member (`forbidden`)", body = ApiError),
        (status = 404, description = "No such withdrawal (`not_found`)", body = ApiError),
        (status = 409, description = "The withdrawal is not pending any more, or it is approved (the provider \
            may have it; so is every withdrawal when no approval threshold is configured) \
            (`payment_not_pending`)", body = ApiError),
        (status = 413, description = "Body over the size limit (`payload_too_large`)", body = ApiError),
        (status = 415, description = "Not `Content-Type: application/json` \
            (`unsupported_media_type`)", body = ApiError),
    ),
)]
pub(crate) async fn refuse_payment(
    State(state): State<AppState>,
    principal: Principal,
    path: Result<Path<String>, PathRejection>,
    Json(request): Json<PaymentDecisionRequest>,
) -> Result<Json<PaymentView>, ApiError> {
    approver_of(&principal)?;
    let Path(id) = path.map_err(|_| ApiError::not_found("payment"))?;
    let withdrawal = TransferId(parse_id(&id, "trf_", "payment")?);
    crate::requests::check_text(&request.reason, "reason", 1, book::constants::REASON_BYTES_MAX)?;
    let (payout, created_at, approval) = open_hold(&state, withdrawal).await?;
    // Only a withdrawal waiting for approval can be refused: an approved one may be with the
    // provider already (its answer, or `resolve`, ends it). The book checks it again, in
    // order with the approval, so a refusal racing an approval cannot void a payout.
    let with_provider = || not_pending().with("reason", "approved: the payment provider may have the payout");
    if matches!(approval, Approval::Approved | Approval::NotRequired) {
        return Err(with_provider());
    }
    let command = Command::RefuseWithdrawal { account: payout.account, withdrawal };
    match state.submit(command, principal.origin().with_reason(Some(request.reason.clone()))).await? {
        Ok(_) => {}
        Err(Rejection::UnknownWithdrawal) => return Err(not_pending()),
        Err(Rejection::PaymentConflict) => return Err(with_provider()),
        Err(rejection) => return Err(ApiError::from_rejection(&rejection, payout.currency)),
    }
    tracing::info!(actor = %principal.label(), %withdrawal, reason = %request.reason, "withdrawal refused");
    Ok(Json(payment_view(state.payments(), &payout, created_at, "refused", approval)))
}

// ---- provider callbacks ---------------------------------------------------------------------

/// A provider's callback. Signed as a whole (`Payment-Signature`), so its id and time are too.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PaymentCallbackBody {
    /// The callback's id, 1 to 128 bytes: a delivery of an id seen before is answered with
    /// the first answer and does nothing.
    #[schema(example = "evt_1f2e", min_length = 1, max_length = 128)]
    pub id: String,
    /// When the provider sent it (RFC 3339); refused outside the window (`stale_timestamp`).
    #[schema(example = "2026-12-07T03:00:00Z")]
    pub created_at: String,
    /// `deposit.completed`, `deposit.failed`, `deposit.charged_back`, `withdrawal.paid` or
    /// `withdrawal.failed`.
    #[serde(rename = "type")]
    #[schema(example = "deposit.completed")]
    pub kind: String,
    /// The deposit's or withdrawal's transfer id, as the provider was given it.
    #[schema(example = "trf_12")]
    pub payment_id: String,
}

/// What the gateway made of a callback.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct PaymentCallbackAnswer {
    pub id: String,
    pub payment_id: String,
    /// A deposit's state after it (`completed`, `failed`, `charged_back`), or a withdrawal's
    /// (`paid`, `failed`).
    pub status: String,
    /// The transfer the outcome made (the first one, for a replay).
    pub transfer_id: String,
}

#[utoipa::path(
    post,
    path = "/v1/payments/callbacks/{provider}",
    tag = "payments",
    summary = "A payment provider's callback",
    description = "How a payment provider says what happened to a deposit (completed, failed, charged back) or a \
        payout (paid, failed). Only when deposits wait for the provider (`serve --payments callbacks`). The body is \
        signed: header `Payment-Signature: sha256=<hex HMAC-SHA256 of the raw body under the shared secret>`. \
        `created_at` must be within the window of now (300 s by default). A callback id seen before is answered \
        with the first answer, status and body, and does nothing; a deposit settles once per outcome, so a \
        replay after a restart changes nothing either. A chargeback takes the deposit back from the player's free \
        cash, and the rest becomes a debt the player owes.",
    params(("provider" = String, Path, description = "The provider's name", example = "sandbox")),
    request_body = PaymentCallbackBody,
    responses(
        (status = 200, description = "Applied, or a replay answered as the first time", body = PaymentCallbackAnswer),
        (status = 400, description = "Malformed body, unknown field or type (`invalid_request`), or `created_at` \
            outside the window (`stale_timestamp`)", body = ApiError),
        (status = 401, description = "Missing or wrong signature, or callbacks not configured \
            (`bad_signature`)", body = ApiError),
        (status = 404, description = "Unknown provider (`not_found`), or no such deposit or withdrawal \
            (`unknown_payment`)", body = ApiError),
        (status = 409, description = "The outcome contradicts what happened already (`payment_conflict`), or a \
            delivery of the same id is being processed (`callback_in_progress`)", body = ApiError),
        (status = 413, description = "Body over the size limit (`payload_too_large`)", body = ApiError),
    ),
)]
pub(crate) async fn payment_callback(
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let Ok(Path(provider)) = path else { return ApiError::not_found("payment provider").into_response() };
    let body = match crate::players::raw_body(&body) {
        Ok(body) => body,
        Err(error) => return error.into_response(),
    };
    let (status, body) = receive_callback(&state, &provider, &headers, body).await;
    (status, axum::Json(body)).into_response()
}

/// Verifies and applies one callback, whether it came over HTTP or from the sandbox in this
/// process: status and body of the answer.
pub(crate) async fn receive_callback(
    state: &AppState,
    provider: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> (StatusCode, serde_json::Value) {
    let refused = |error: ApiError| (error.status, error.body());
    if provider != state.payments().provider().name() {
        return refused(ApiError::not_found("payment provider"));
    }
    // Deposits that complete at once take no callbacks: no secret, so nothing verifies.
    let Some(callbacks) = state.config().payment_callbacks.as_ref() else {
        return refused(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "bad_signature",
            "this gateway takes no payment callbacks (no shared secret is configured)",
        ));
    };
    let keys = crate::callbacks::CallbackKeys { secret: &callbacks.secret, window: callbacks.window };
    let seen = &state.payments().0.seen;
    crate::callbacks::receive(keys, seen, provider, headers, body, |parsed: PaymentCallbackBody| async move {
        apply_callback(state, provider, &parsed).await
    })
    .await
}

impl crate::callbacks::CallbackBody for PaymentCallbackBody {
    fn id(&self) -> &str {
        &self.id
    }
    fn created_at(&self) -> &str {
        &self.created_at
    }
}

async fn apply_callback(
    state: &AppState,
    provider: &str,
    callback: &PaymentCallbackBody,
) -> Result<PaymentCallbackAnswer, ApiError> {
    let payment = TransferId(
        parse_id(&callback.payment_id, "trf_", "payment")
            .map_err(|_| ApiError::new(StatusCode::NOT_FOUND, "unknown_payment", "no such payment"))?,
    );
    let unknown = || ApiError::new(StatusCode::NOT_FOUND, "unknown_payment", "no such deposit or withdrawal");
    let origin = Origin::new(Actor::System(format!("payments:{provider}")));
    let answer = |status: &str, transfer: TransferId| PaymentCallbackAnswer {
        id: callback.id.clone(),
        payment_id: payment.to_string(),
        status: status.to_string(),
        transfer_id: transfer.to_string(),
    };
    let deposit_outcome = match callback.kind.as_str() {
        "deposit.completed" => Some(DepositOutcome::Completed),
        "deposit.failed" => Some(DepositOutcome::Failed),
        "deposit.charged_back" => Some(DepositOutcome::ChargedBack),
        "withdrawal.paid" | "withdrawal.failed" => None,
        _ => return Err(ApiError::invalid("type: an unknown callback type").with("field", "type")),
    };
    if let Some(outcome) = deposit_outcome {
        let found = state.read(move |book| book.payments().deposit(payment).map(|deposit| deposit.account)).await?;
        let account = found.ok_or_else(unknown)?;
        let command = Command::SettleDeposit { account, deposit: payment, outcome };
        let (reply, state_after) = state
            .submit_then(command, origin, move |book, _| book.payments().deposit(payment).map(|deposit| deposit.state))
            .await?;
        return match reply {
            Ok(Ack::Transfer(transfer)) => {
                let status = state_after.map_or(outcome.name(), |state| state.name());
                Ok(answer(status, transfer))
            }
            Ok(_) => Err(ApiError::internal("a deposit settled with another ack")),
            Err(Rejection::UnknownPayment) => Err(unknown()),
            Err(rejection) => Err(ApiError::from_rejection(&rejection, Currency::EUR)),
        };
    }
    let paid = callback.kind == "withdrawal.paid";
    let found = state
        .read(move |book| {
            let transfer = book.ledger().transfer(payment)?;
            if transfer.code != TransferCode::Withdrawal || transfer.kind != TransferKind::Pending {
                return None;
            }
            let account = AccountId(transfer.reference);
            let open = book.ledger().is_open_pending(payment);
            // A completed withdrawal: how it ended, from the player's postings.
            let ended = book.players().get(account.index()).and_then(|player| {
                book.ledger().postings_of(player.cash).iter().find_map(|id| {
                    let posting = book.ledger().transfer(*id)?;
                    match posting.kind {
                        TransferKind::PostPending(pending) if pending == payment => Some((true, posting.id)),
                        TransferKind::VoidPending(pending) if pending == payment => Some((false, posting.id)),
                        _ => None,
                    }
                })
            });
            Some((account, open, ended))
        })
        .await?;
    let (account, open, ended) = found.ok_or_else(unknown)?;
    let name = |paid: bool| if paid { "paid" } else { "failed" };
    if !open {
        return match ended {
            Some((was_paid, transfer)) if was_paid == paid => Ok(answer(name(paid), transfer)),
            Some(_) => Err(ApiError::from_rejection(&Rejection::PaymentConflict, Currency::EUR)),
            None => Err(unknown()),
        };
    }
    let command = Command::CompleteWithdrawal { account, withdrawal: payment, paid };
    match state.submit(command, origin).await? {
        Ok(Ack::Transfer(transfer)) => {
            state.payments().0.submitted.lock().expect("submitted").remove(&payment);
            Ok(answer(name(paid), transfer))
        }
        Ok(_) => Err(ApiError::internal("a completion answered with another ack")),
        Err(Rejection::UnknownWithdrawal) => Err(unknown()),
        Err(rejection) => Err(ApiError::from_rejection(&rejection, Currency::EUR)),
    }
}
