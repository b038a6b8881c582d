//! The accept loop and the HTTP/1.1 connections behind `serve`: every socket is bounded in
//! time and in number, so that idle or hostile clients cannot hold the process's files.
//!
//! - A client has `header_read_timeout` from connecting (and, on a kept-alive connection, from
//!   the first byte of its next request) to send a complete request head.
//! - A kept-alive connection with no request in progress is closed after
//!   `keep_alive_idle_timeout` without a byte.
//! - At most `connections_max` connections are open. At the cap, the connections that have been
//!   idle the longest (no request in a handler, including half-sent heads) are closed to make
//!   room; when every connection is busy, the new one is answered 503 `overloaded` with
//!   `Retry-After` and closed.
//! - An accept error that is not about one connection (EMFILE, ENFILE, ENOBUFS, ENOMEM) never
//!   stops the loop and never spins: it closes an eighth of the connections, the longest idle
//!   (to free files), and pauses briefly, or `ACCEPT_ERROR_BACKOFF` when none was idle.
//!
//! Closing is graceful where a response may be on its way (hyper's `graceful_shutdown`: an
//! idle connection closes at once, one in the middle of a response finishes it first, for at
//! most `CONNECTION_CLOSE_GRACE`); a connection that never got a request to a handler, or
//! whose next head has started, is dropped at once.
//! hyper's own `header_read_timeout` is not used: its clock also runs while a kept-alive
//! connection waits for its next request, so it cannot tell an idle client from a slow head.
//! Instead each connection's reads are watched (`WatchedStream`: the first byte of a head is
//! noted in the connection's slot) and one sweeper task per listener looks at every slot's
//! deadlines each `sweep_interval` (a twentieth of the shorter timeout, 10 to 250 ms), telling
//! the connections past them to close. A request costs no timer and no extra wake-up of its
//! connection's task (a connection task is woken only to close); a timeout fires up to one
//! sweep interval late, never early.
//!
//! A connection that upgrades to a WebSocket (`/v1/stream`) leaves this table once the `101`
//! is written; the stream's own limits (`STREAM_CONNECTIONS_MAX`, heartbeats, idle timeout)
//! take over.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock, Mutex, PoisonError, Weak};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, Semaphore};
use tokio::time::Instant;
use tower::Service;

use crate::metrics::Metrics;

/// Time a client has to send a complete request head, from connecting or from the first byte
/// of a request on a kept-alive connection.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Time a kept-alive connection may wait for its next request. Behind a load balancer that
/// keeps connections to this server, set it above the balancer's own idle timeout (60 s on
/// common ones), so that the balancer closes first.
pub const KEEP_ALIVE_IDLE_TIMEOUT: Duration = Duration::from_secs(75);
/// HTTP connections open at once (WebSocket streams not counted once upgraded: they have
/// `STREAM_CONNECTIONS_MAX`). Keep `connections_max` + stream connections + some hundred
/// files for the data directory below the process's file limit (`ulimit -n`).
pub const CONNECTIONS_MAX: usize = 10_000;
/// How long a connection told to close may take to finish the response it is writing.
pub const CONNECTION_CLOSE_GRACE: Duration = Duration::from_secs(5);
/// Pause of the accept loop after an accept error that is not about one connection (out of
/// files or memory) when no idle connection could be closed, so that it never spins.
pub const ACCEPT_ERROR_BACKOFF: Duration = Duration::from_millis(100);
/// Pause after such an error when idle connections were closed to free files: long enough for
/// them to go.
const ACCEPT_ERROR_RETRY: Duration = Duration::from_millis(5);
/// Share of the open connections closed after such an error (the longest idle of them).
const ACCEPT_ERROR_SHARE: usize = 8;
/// Connections being refused at once (answered 503 and drained); beyond it a refused
/// connection is closed without an answer.
pub const REFUSALS_IN_FLIGHT_MAX: usize = 64;
/// How long a refusal may take (writing the 503, reading what the client sent).
const REFUSAL_TIMEOUT: Duration = Duration::from_secs(1);
/// Bytes read and dropped from a refused client before closing, so that the 503 is not lost
/// to a reset.
const REFUSAL_DRAIN_BYTES_MAX: usize = 64 * 1024;
/// Idle connections closed in one go at the cap: a share of the cap, so that a flood of new
/// connections does not scan the table once per connection.
const EVICTION_SHARE: usize = 64;
const EVICTION_BATCH_MAX: usize = 256;

/// The limits of one listener's connections (from `GatewayConfig`).
#[derive(Clone, Copy, Debug)]
pub(crate) struct ConnectionLimits {
    pub header_read_timeout: Duration,
    pub idle_timeout: Duration,
    pub connections_max: usize,
}

/// Why a connection was closed by the server (the `reason` label of
/// `sportsbook_http_connections_closed_total`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum CloseReason {
    HeaderTimeout,
    IdleTimeout,
    /// Closed to make room at the cap (or for files after an accept error).
    Evicted,
    /// Refused at the cap with every connection busy.
    Refused,
}

impl CloseReason {
    pub(crate) const ALL: [CloseReason; 4] =
        [CloseReason::HeaderTimeout, CloseReason::IdleTimeout, CloseReason::Evicted, CloseReason::Refused];

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            CloseReason::HeaderTimeout => "header_timeout",
            CloseReason::IdleTimeout => "idle_timeout",
            CloseReason::Evicted => "evicted",
            CloseReason::Refused => "refused",
        }
    }
}

/// Which listener a request came in on: an extension of every request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ListenerKind {
    /// The API's listener.
    Main,
    /// `--metrics-listen`: `/metrics` alone.
    Metrics,
}

/// What the table knows of one connection, shared by its task, its reads and its requests.
#[derive(Debug)]
struct Slot {
    /// Requests in a handler.
    in_flight: AtomicU32,
    /// A request reached a handler on this connection.
    served: AtomicBool,
    /// When the connection last became idle (accepted, or a handler answered), in
    /// microseconds since the table's epoch.
    idle_since_us: AtomicU64,
    /// 1 + when the first byte since `idle_since_us` was read (microseconds since the epoch),
    /// 0 when none was: a request head is on its way.
    first_byte_us: AtomicU64,
    /// Told to close (evicted, past a deadline, or the server shuts down).
    close: AtomicBool,
    /// Wakes the connection's task when it is told to close.
    wake: Notify,
}

impl Slot {
    fn begin_request(&self) {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        self.served.store(true, Ordering::Release);
    }

    /// The handler answered: the connection is idle from `now_us` (the sweeper sees the new
    /// deadline; nothing wakes the connection's task).
    fn end_request(&self, now_us: u64) {
        self.idle_since_us.store(now_us, Ordering::Release);
        self.first_byte_us.store(0, Ordering::Release);
        self.in_flight.fetch_sub(1, Ordering::AcqRel);
    }

    fn idle(&self) -> bool {
        self.in_flight.load(Ordering::Acquire) == 0
    }

    /// Nothing of a response can be on its way: no request was ever served, or the next
    /// request's head has started. Such a connection is dropped at once when it must close
    /// (hyper's graceful shutdown would wait for the head); any other is closed gracefully.
    fn nothing_to_finish(&self) -> bool {
        self.idle() && (!self.served.load(Ordering::Acquire) || self.first_byte_us.load(Ordering::Acquire) != 0)
    }
}

/// The open connections of one listener.
struct Table {
    epoch: Instant,
    limits: ConnectionLimits,
    slots: Mutex<HashMap<u64, Arc<Slot>>>,
    next_id: AtomicU64,
    /// Slots told to close and not yet gone.
    closing: AtomicUsize,
    /// Notified when the last connection is gone.
    emptied: Notify,
    metrics: Metrics,
}

impl Table {
    fn now_us(&self) -> u64 {
        self.epoch.elapsed().as_micros() as u64
    }

    /// How often the sweeper looks at the deadlines: a twentieth of the shorter timeout, so a
    /// timeout fires at most 5% late, within 10 to 250 ms.
    fn sweep_interval(&self) -> Duration {
        (self.limits.header_read_timeout.min(self.limits.idle_timeout) / 20)
            .clamp(Duration::from_millis(10), Duration::from_millis(250))
    }

    /// Tells every connection past its deadline to close, counting why. Returns how many.
    fn sweep(&self) -> usize {
        let now_us = self.now_us();
        let slots = self.lock();
        let mut closed = 0;
        for slot in slots.values() {
            if slot.close.load(Ordering::Acquire) {
                continue;
            }
            let Some((deadline_us, reason)) = self.deadline_us(slot) else { continue };
            if now_us >= deadline_us && self.tell_to_close(slot) {
                self.metrics.record_connection_closed(reason);
                closed += 1;
            }
        }
        closed
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Arc<Slot>>> {
        self.slots.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Room for one more connection: under the cap, or made by closing the connections idle
    /// the longest. `false` when every connection is busy.
    fn admit(&self) -> bool {
        let open = {
            let slots = self.lock();
            slots.len().saturating_sub(self.closing.load(Ordering::Acquire))
        };
        if open < self.limits.connections_max {
            return true;
        }
        self.evict_idle(self.eviction_batch()) > 0
    }

    fn accept_error_batch(&self) -> usize {
        (self.lock().len() / ACCEPT_ERROR_SHARE).clamp(1, EVICTION_BATCH_MAX)
    }

    fn eviction_batch(&self) -> usize {
        (self.limits.connections_max / EVICTION_SHARE).clamp(1, EVICTION_BATCH_MAX)
    }

    /// Tells up to `count` connections that have been idle the longest to close; returns how
    /// many.
    fn evict_idle(&self, count: usize) -> usize {
        let slots = self.lock();
        let mut idle: Vec<(u64, &Arc<Slot>)> = slots
            .values()
            .filter(|slot| slot.idle() && !slot.close.load(Ordering::Acquire))
            .map(|slot| (slot.idle_since_us.load(Ordering::Acquire), slot))
            .collect();
        if idle.len() > count {
            idle.select_nth_unstable_by_key(count, |(since, _)| *since);
            idle.truncate(count);
        }
        let mut evicted = 0;
        for (_, slot) in idle {
            if self.tell_to_close(slot) {
                self.metrics.record_connection_closed(CloseReason::Evicted);
                evicted += 1;
            }
        }
        evicted
    }

    /// Marks a slot closing and wakes its task; `false` when it already was.
    fn tell_to_close(&self, slot: &Slot) -> bool {
        if slot.close.swap(true, Ordering::AcqRel) {
            return false;
        }
        self.closing.fetch_add(1, Ordering::AcqRel);
        slot.wake.notify_one();
        true
    }

    fn register(&self) -> (u64, Arc<Slot>) {
        let now = self.now_us();
        let slot = Arc::new(Slot {
            in_flight: AtomicU32::new(0),
            served: AtomicBool::new(false),
            idle_since_us: AtomicU64::new(now),
            // A new connection owes its first request head from now.
            first_byte_us: AtomicU64::new(now + 1),
            close: AtomicBool::new(false),
            wake: Notify::new(),
        });
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        self.lock().insert(id, Arc::clone(&slot));
        self.metrics.record_http_connections(1);
        (id, slot)
    }

    fn remove(&self, id: u64) {
        let mut slots = self.lock();
        if let Some(slot) = slots.remove(&id) {
            if slot.close.load(Ordering::Acquire) {
                self.closing.fetch_sub(1, Ordering::AcqRel);
            }
            self.metrics.record_http_connections(-1);
        }
        if slots.is_empty() {
            self.emptied.notify_waiters();
        }
    }

    fn close_all(&self) {
        let slots: Vec<Arc<Slot>> = self.lock().values().cloned().collect();
        for slot in slots {
            self.tell_to_close(&slot);
        }
    }

    async fn wait_empty(&self) {
        loop {
            let emptied = self.emptied.notified();
            if self.lock().is_empty() {
                return;
            }
            emptied.await;
        }
    }

    /// When the slot's connection must have made progress (microseconds since the epoch), and
    /// what it is closed for if not; `None` while a request is in a handler (the request
    /// timeout bounds it).
    fn deadline_us(&self, slot: &Slot) -> Option<(u64, CloseReason)> {
        if !slot.idle() {
            return None;
        }
        let micros = |duration: Duration| u64::try_from(duration.as_micros()).unwrap_or(u64::MAX);
        match slot.first_byte_us.load(Ordering::Acquire) {
            0 => Some((
                slot.idle_since_us.load(Ordering::Acquire).saturating_add(micros(self.limits.idle_timeout)),
                CloseReason::IdleTimeout,
            )),
            first => {
                Some(((first - 1).saturating_add(micros(self.limits.header_read_timeout)), CloseReason::HeaderTimeout))
            }
        }
    }
}

/// Sweeps `table` every `sweep_interval` until the table is gone.
async fn sweeper(table: Weak<Table>, interval: Duration) {
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let Some(table) = table.upgrade() else { return };
        table.sweep();
    }
}

/// Stops a task when dropped (the sweeper, when `serve` returns or is dropped).
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Removes the connection from its table when its task ends, however it ends.
struct Registered {
    table: Arc<Table>,
    id: u64,
}

impl Drop for Registered {
    fn drop(&mut self) {
        self.table.remove(self.id);
    }
}

/// Ends a request's time in a handler when its response is ready (or the request is dropped).
struct InHandler {
    table: Arc<Table>,
    slot: Arc<Slot>,
}

impl Drop for InHandler {
    fn drop(&mut self) {
        self.slot.end_request(self.table.now_us());
    }
}

/// The socket, noting the first byte of each request head in its slot.
struct WatchedStream {
    inner: TcpStream,
    table: Arc<Table>,
    slot: Arc<Slot>,
}

impl tokio::io::AsyncRead for WatchedStream {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut tokio::io::ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.inner).poll_read(cx, buf);
        let progressed = matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before;
        // Cheap checks first: this runs on every read, of upgraded WebSockets too.
        if progressed && this.slot.first_byte_us.load(Ordering::Relaxed) == 0 && this.slot.idle() {
            // The sweeper reads the head's deadline from here; no wake-up.
            let now = this.table.now_us() + 1;
            let _ = this.slot.first_byte_us.compare_exchange(0, now, Ordering::AcqRel, Ordering::Acquire);
        }
        polled
    }
}

impl tokio::io::AsyncWrite for WatchedStream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// Serves HTTP/1.1 on `listener` with `router` until `shutdown` completes, then closes every
/// connection gracefully and returns when they are gone. Each accepted socket gets
/// `socket_options` first.
pub(crate) async fn serve(
    listener: TcpListener,
    router: Router,
    kind: ListenerKind,
    limits: ConnectionLimits,
    metrics: Metrics,
    mut socket_options: impl FnMut(&mut TcpStream) + Send + 'static,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let table = Arc::new(Table {
        epoch: Instant::now(),
        limits,
        slots: Mutex::new(HashMap::new()),
        next_id: AtomicU64::new(0),
        closing: AtomicUsize::new(0),
        emptied: Notify::new(),
        metrics: metrics.clone(),
    });
    let _sweeper = AbortOnDrop(tokio::spawn(sweeper(Arc::downgrade(&table), table.sweep_interval())));
    let refusals = Arc::new(Semaphore::new(REFUSALS_IN_FLIGHT_MAX));
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => accepted,
        };
        let (mut stream, peer) = match accepted {
            Ok(accepted) => accepted,
            // About one connection that went away before it was accepted.
            Err(error) if is_connection_error(&error) => continue,
            Err(error) => {
                metrics.record_accept_error();
                // Out of files (or memory): free some by closing the longest idle connections,
                // give them a moment to go, and pause longer when there was none to close.
                let evicted = table.evict_idle(table.accept_error_batch());
                let pause = if evicted > 0 { ACCEPT_ERROR_RETRY } else { ACCEPT_ERROR_BACKOFF };
                tracing::warn!(%error, evicted, ?pause, "accepting a connection failed");
                tokio::select! {
                    () = &mut shutdown => break,
                    () = tokio::time::sleep(pause) => continue,
                }
            }
        };
        if !table.admit() {
            refuse(stream, &refusals, &metrics);
            continue;
        }
        socket_options(&mut stream);
        let (id, slot) = table.register();
        let registered = Registered { table: Arc::clone(&table), id };
        tokio::spawn(serve_connection(stream, peer, router.clone(), kind, slot, registered));
    }
    drop(listener);
    table.close_all();
    table.wait_empty().await;
    Ok(())
}

/// Errors of `accept` about the one connection being accepted: the next accept is fine.
fn is_connection_error(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::ConnectionRefused | io::ErrorKind::ConnectionAborted | io::ErrorKind::ConnectionReset
    )
}

async fn serve_connection(
    stream: TcpStream,
    peer: SocketAddr,
    router: Router,
    kind: ListenerKind,
    slot: Arc<Slot>,
    registered: Registered,
) {
    let table = Arc::clone(&registered.table);
    let io = TokioIo::new(WatchedStream { inner: stream, table: Arc::clone(&table), slot: Arc::clone(&slot) });
    let service = hyper::service::service_fn({
        let table = Arc::clone(&table);
        let slot = Arc::clone(&slot);
        move |request: axum::http::Request<Incoming>| {
            slot.begin_request();
            let in_handler = InHandler { table: Arc::clone(&table), slot: Arc::clone(&slot) };
            let mut request = request.map(axum::body::Body::new);
            request.extensions_mut().insert(ConnectInfo(peer));
            request.extensions_mut().insert(kind);
            let mut router = router.clone();
            async move {
                let response = router.call(request).await;
                drop(in_handler);
                response
            }
        }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    // The deadlines are kept below; see the module's documentation.
    builder.header_read_timeout(None).keep_alive(true);
    let connection = builder.serve_connection(io, service).with_upgrades();
    tokio::pin!(connection);
    // Set once the connection was told to close: when it is dropped if still open.
    let mut closing_until: Option<Instant> = None;
    loop {
        // Woken only to close: the sweeper keeps the deadlines, a request costs no timer here.
        let grace = async move {
            match closing_until {
                Some(until) => tokio::time::sleep_until(until).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            biased;
            served = connection.as_mut() => {
                if let Err(error) = served {
                    tracing::debug!(%error, %peer, "connection ended with an error");
                }
                return;
            }
            () = slot.wake.notified() => {}
            () = grace => {}
        }
        let now = Instant::now();
        if let Some(until) = closing_until {
            if now >= until {
                if !slot.idle() {
                    // A request in a handler is bounded by the request timeout: let it finish.
                    closing_until = Some(now + CONNECTION_CLOSE_GRACE);
                    continue;
                }
                tracing::debug!(%peer, "connection still writing after the close grace; dropped");
                return;
            }
            continue;
        }
        if slot.close.load(Ordering::Acquire) {
            if slot.nothing_to_finish() {
                return;
            }
            connection.as_mut().graceful_shutdown();
            closing_until = Some(now + CONNECTION_CLOSE_GRACE);
        }
    }
}

/// What a refused connection reads before it is closed.
static REFUSAL: LazyLock<Vec<u8>> = LazyLock::new(|| {
    let body = r#"{"error":{"code":"overloaded","message":"too many open connections; retry shortly"}}"#;
    format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nretry-after: 1\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
});

/// Answers a connection that found no room 503 `overloaded` and closes it; without a free
/// refusal permit, closes it at once.
fn refuse(stream: TcpStream, refusals: &Arc<Semaphore>, metrics: &Metrics) {
    metrics.record_connection_closed(CloseReason::Refused);
    let Ok(permit) = Arc::clone(refusals).try_acquire_owned() else {
        return;
    };
    tokio::spawn(async move {
        let _permit = permit;
        let mut stream = stream;
        let refused = async {
            stream.write_all(&REFUSAL).await?;
            stream.shutdown().await?;
            // Read what the client sent, so that closing does not reset the connection before
            // the client has read the answer.
            let mut sink = [0u8; 4096];
            let mut drained = 0;
            while drained < REFUSAL_DRAIN_BYTES_MAX {
                match stream.read(&mut sink).await? {
                    0 => break,
                    read => drained += read,
                }
            }
            Ok::<(), io::Error>(())
        };
        let _ = tokio::time::timeout(REFUSAL_TIMEOUT, refused).await;
    });
}
