//! The feed supervisor: follows each provider's sources, forwards the active source's messages
//! to the book, and watches freshness.
//!
//! A provider has one or more sources (primary first, then backups; `POST /v1/feed/messages`
//! is the source `http`). Every message or heartbeat from a source marks it fresh. A watchdog
//! checks every `WATCHDOG_INTERVAL`:
//! - when the active source is silent for longer than `stale_after`, or disconnected, and
//!   another source is fresh, it switches to that one and asks it for a recovery;
//! - when no source is fresh, it tells the book the provider is stale (`FeedHealth`): the
//!   provider's markets are suspended or marked delayed, as configured;
//! - when the active source is fresh again, it tells the book and asks for a recovery; the
//!   markets reopen when the provider's `snapshot_complete` reaches the book.
//!
//! A provider with producers (the Unified Odds Feed's `product`s) has each tracked on its own,
//! with its own alive/down/recovery state (`recovery::ProducerRecovery`), and each owns the
//! markets it priced last (`odds_change` of that product; a market handed over, `status="-2"`,
//! leaves its owner). A producer that goes down (`alive subscribed="0"`, its `alive` silent
//! beyond `max_inactivity`, `product_down`) suspends only its own markets: the hub submits a
//! `bet_stop` of them at once (a feed message like any, in the journal, in order with what the
//! sources submit after it), and asks the provider's API for the producer's recovery. Until it
//! is up again its markets are held: its `odds_change` messages (live or replayed) still go to
//! the book, prices and all, but an active market status in them is forwarded as suspended;
//! the hub remembers the last status the owner gave each market. The `snapshot_complete` of
//! its request brings it up, and the hub then submits one feed message (`Markets` items with
//! status active and no odds, stamped with the provider's latest time) that reopens the
//! markets it last said were active; if the provider is stale then, or its snapshot is held
//! back for another producer's recovery, they reopen right after the `snapshot_complete` that
//! ends it. The other producers' markets stay open. A silent or lost source is the provider's
//! staleness: all its markets wait (`FeedHealth`), every producer recovers, and the book
//! reopens them on the `snapshot_complete` that ends the last recovery.
//!
//! A start is treated like a silence for a provider that can recover (a UOF provider with its
//! API): the markets a previous run left open have prices of unknown age, so `configure_uof`
//! tells the book the provider is stale before any source starts and fetches the provider's
//! producers list (`producers.xml`, retried until it comes: without it the provider stays
//! stale); the active producers of that list (and those of the previous run, at once) recover,
//! and the `snapshot_complete` that ends the last recovery of a listed producer reopens the
//! markets. A producer not waited for that is still down then, or first heard of later, is
//! held until its own recovery completes.
//!
//! Every switch is logged and counted; every refused message and refused item is logged with
//! its reason and counted by reason (`sportsbook_feed_refusals`).

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use book::{
    Ack, Actor, Command, FeedApplied, FeedItem, FeedMarket, FeedMarketStatus, FeedMessage, Origin, Reply, StaleMode,
};
use engine::{EngineError, EngineHandle, Outcome};
use tokio::sync::mpsc;

use crate::metrics::FeedMetrics;
use crate::producers::ProducerDescription;
use crate::recovery::{Action, ProducerRecovery, RecoveryConfig, RequestIds, State};
use crate::uof::UofNames;
use crate::uof_api::UofApi;

/// How often the watchdog checks freshness.
pub const WATCHDOG_INTERVAL: Duration = Duration::from_millis(100);
/// Markets whose owning producer the hub remembers per provider (`(event, market)` → product);
/// beyond it a market's owner is not tracked (counted as `owner_untracked`), and a producer
/// going down does not suspend it (the provider's staleness still does).
pub const PRODUCER_MARKETS_MAX: usize = 262_144;
/// How often each producer's recovery state machine is polled (and `last_good` stored).
pub const RECOVERY_POLL_INTERVAL: Duration = Duration::from_secs(1);
/// Control requests queued per source.
pub const SOURCE_CONTROL_QUEUE_MAX: usize = 16;
/// The source name of messages pushed over `POST /v1/feed/messages`.
pub const HTTP_SOURCE: &str = "http";

/// How a provider is watched.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProviderSettings {
    /// Silence after which a source is no longer fresh.
    pub stale_after: Duration,
    pub on_stale: StaleMode,
}

impl Default for ProviderSettings {
    fn default() -> ProviderSettings {
        ProviderSettings { stale_after: Duration::from_secs(10), on_stale: StaleMode::Suspend }
    }
}

/// How a Unified Odds Feed provider recovers its producers and names its markets.
#[derive(Clone, Debug, Default)]
pub struct UofSettings {
    /// The provider's HTTP API: recovery requests go there. Without it a producer that is down
    /// stays down (each attempt is logged and counted as failed).
    pub api: Option<UofApi>,
    /// Where `last_good` (the provider timestamp a restart recovers from) is stored per
    /// producer: `<dir>/recovery-<provider>.txt`, written atomically. `None`: not stored.
    pub state_dir: Option<PathBuf>,
    pub recovery: RecoveryConfig,
    /// Market descriptions and fixtures; `None`: placeholder names.
    pub names: Option<Arc<UofNames>>,
    /// Where fixtures are fetched from and cached (`None`: events keep their URN names).
    pub store: Option<crate::names::NameStore>,
}

/// What the supervisor asks of a source.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Control {
    /// Replay current prices (messages after `after`, provider time) and end with
    /// `snapshot_complete`.
    Recover { after: u64, request_id: u64 },
}

#[derive(Debug)]
struct SourceState {
    name: String,
    connected: bool,
    /// The source said it connected (`SourceHandle::connected`: for AMQP, its queue is bound
    /// and consumed): a recovery's replay reaches us. A new source is presumed `connected` for
    /// freshness, not this: a request sent before the queue is bound would be replayed to
    /// nobody (and asked again once it is).
    session: bool,
    last_seen: Option<Instant>,
    controls: Option<mpsc::Sender<Control>>,
}

/// One producer of a provider (UOF `product`): its recovery state machine.
#[derive(Debug)]
struct ProducerState {
    recovery: ProducerRecovery,
    /// Heard of in this run (a message, an alive ...), not only stored or listed: a producer
    /// never heard of that the provider's list does not show active is forgotten.
    heard: bool,
    /// Its markets were suspended as it went down for its own reasons: while it is down its
    /// active statuses are forwarded as suspended, and once it is up (and the book no longer
    /// waits for the provider's snapshot) the hub reopens those it last said were active.
    held: bool,
}

impl ProducerState {
    fn down(&self) -> bool {
        !self.recovery.is_up()
    }

    fn recovering(&self) -> Option<u64> {
        match self.recovery.state() {
            State::Requested { request_id, .. } => Some(*request_id),
            _ => None,
        }
    }
}

/// The UOF side of a provider: settings, the `last_good` stored by a previous run, the
/// provider's producers list, and the `snapshot_complete` held back while another producer
/// still recovers.
#[derive(Debug, Default)]
struct UofState {
    settings: UofSettings,
    stored: BTreeMap<u32, u64>,
    saved: BTreeMap<u32, u64>,
    /// The provider's producers list (`producers.xml`) once fetched: its active producers are
    /// the ones the provider's markets wait for. `None`: not fetched yet, nothing is released.
    listed: Option<Vec<ProducerDescription>>,
    list_fetch: ListFetch,
    held_snapshot: Option<FeedMessage>,
    last_poll: Option<Instant>,
}

/// Fetching the producers list: one request at a time, retried after a back-off that doubles
/// (the recovery configuration's `backoff_initial` to `backoff_max`) until one succeeds.
#[derive(Debug, Default)]
struct ListFetch {
    in_flight: bool,
    failures: u32,
    next_at: Option<Instant>,
}

/// A producer as seen from outside.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProducerView {
    pub product: u32,
    pub down: bool,
    pub recovering: Option<u64>,
}

#[derive(Debug)]
struct ProviderState {
    settings: ProviderSettings,
    producers: BTreeMap<u32, ProducerState>,
    /// The producer that priced each market last: `(event, market)` → product (at most
    /// `PRODUCER_MARKETS_MAX`).
    owners: BTreeMap<(String, String), u32>,
    /// The owned markets whose last status from their owner was active (a subset of `owners`).
    active_markets: BTreeSet<(String, String)>,
    /// The book holds the provider's markets for its recovery snapshot: from the hub's
    /// `FeedHealth` stale until the `snapshot_complete` that ends the last recovery is
    /// forwarded. A held producer's markets reopen only after it.
    book_held: bool,
    /// The provider is recovering at start (a UOF provider with an API, `configure_uof`): the
    /// hub told the book it was stale before any of its messages, and its markets wait for the
    /// `snapshot_complete` that ends the recoveries of every producer it knew of at start or
    /// heard of since. Shown as stale (`/readyz`) until then.
    starting: bool,
    uof: UofState,
    sources: Vec<SourceState>,
    active: usize,
    stale: bool,
    /// Provider time of the last message forwarded.
    last_timestamp: u64,
}

impl ProviderState {
    fn fresh(&self, source: usize, now: Instant) -> bool {
        let source = &self.sources[source];
        source.connected && source.last_seen.is_some_and(|seen| now.duration_since(seen) <= self.settings.stale_after)
    }
}

/// What the provider's state looks like from outside (readiness, tests).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProviderView {
    pub provider: String,
    pub active_source: String,
    pub stale: bool,
    pub silent_for: Option<Duration>,
    pub producers: Vec<ProducerView>,
}

struct Inner {
    engine: EngineHandle,
    metrics: FeedMetrics,
    defaults: ProviderSettings,
    providers: Mutex<BTreeMap<String, ProviderState>>,
    request_ids: std::sync::atomic::AtomicU64,
    /// Recovery request ids of the provider API, unique across restarts (seeded from the wall
    /// clock in ms).
    uof_ids: Mutex<RequestIds>,
    /// The monotonic origin of the recovery state machines' clock.
    started: Instant,
}

/// The feed role's shared state: the gateway pushes through it, sources report to it, the
/// watchdog runs over it.
#[derive(Clone)]
pub struct FeedHub(Arc<Inner>);

impl std::fmt::Debug for FeedHub {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.debug_struct("FeedHub").finish_non_exhaustive()
    }
}

/// A source's side of the hub.
#[derive(Debug)]
pub struct SourceHandle {
    hub: FeedHub,
    provider: String,
    index: usize,
    /// Requests from the supervisor (recoveries).
    pub controls: mpsc::Receiver<Control>,
}

fn wall_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |elapsed| elapsed.as_millis() as u64)
}

/// A feed message's outcome as a metric label.
pub fn outcome_label(reply: &Reply) -> &'static str {
    match reply {
        Ok(Ack::Feed(FeedApplied { duplicate: true, .. })) => "duplicate",
        Ok(Ack::Feed(FeedApplied { ignored, applied, .. })) if !ignored.is_empty() => {
            if *applied > 0 {
                "partial"
            } else {
                "refused"
            }
        }
        Ok(Ack::Feed(FeedApplied { applied: 0, stale, .. })) if *stale > 0 => "stale",
        Ok(_) => "applied",
        Err(_) => "refused",
    }
}

impl FeedHub {
    pub fn new(engine: EngineHandle, metrics: FeedMetrics, defaults: ProviderSettings) -> FeedHub {
        FeedHub(Arc::new(Inner {
            engine,
            metrics,
            defaults,
            providers: Mutex::new(BTreeMap::new()),
            request_ids: std::sync::atomic::AtomicU64::new(1),
            uof_ids: Mutex::new(RequestIds::starting_at(wall_ms())),
            started: Instant::now(),
        }))
    }

    pub fn metrics(&self) -> &FeedMetrics {
        &self.0.metrics
    }

    fn with_provider<R>(&self, provider: &str, apply: impl FnOnce(&mut ProviderState) -> R) -> R {
        let mut providers = self.0.providers.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let state = providers.entry(provider.to_string()).or_insert_with(|| ProviderState {
            settings: self.0.defaults,
            producers: BTreeMap::new(),
            owners: BTreeMap::new(),
            active_markets: BTreeSet::new(),
            book_held: false,
            starting: false,
            uof: UofState::default(),
            sources: Vec::new(),
            active: 0,
            stale: false,
            last_timestamp: 0,
        });
        apply(state)
    }

    /// Sets how a provider is watched (before its sources start).
    pub fn configure(&self, provider: &str, settings: ProviderSettings) {
        self.with_provider(provider, |state| state.settings = settings);
    }

    fn source_index(state: &mut ProviderState, name: &str) -> usize {
        match state.sources.iter().position(|source| source.name == name) {
            Some(index) => index,
            None => {
                state.sources.push(SourceState {
                    name: name.to_string(),
                    connected: false,
                    session: false,
                    last_seen: None,
                    controls: None,
                });
                state.sources.len() - 1
            }
        }
    }

    /// Adds a source that the supervisor can ask for recoveries. Sources added first are
    /// preferred: the first is the primary.
    pub fn add_source(&self, provider: &str, name: &str) -> SourceHandle {
        let (sender, controls) = mpsc::channel(SOURCE_CONTROL_QUEUE_MAX);
        let index = self.with_provider(provider, |state| {
            let index = Self::source_index(state, name);
            // A new source is presumed up: it has `stale_after` to connect and speak before it
            // counts as silent.
            state.sources[index].connected = true;
            state.sources[index].last_seen = Some(Instant::now());
            state.sources[index].controls = Some(sender);
            index
        });
        SourceHandle { hub: self.clone(), provider: provider.to_string(), index, controls }
    }

    /// A message pushed over HTTP by `actor` (the API key that called): the `http` source is
    /// fresh, and the message goes to the book whichever source is active (the provider chose
    /// to push it).
    pub fn push(&self, message: FeedMessage, actor: Actor) -> Result<oneshot::Receiver<Outcome>, EngineError> {
        self.with_provider(&message.provider, |state| {
            Self::heard_over_http(state);
            state.last_timestamp = state.last_timestamp.max(message.timestamp);
        });
        self.0.engine.try_submit((Command::Feed(message), Origin::new(actor)))
    }

    /// A heartbeat (or any message) pushed over HTTP.
    pub fn touch_http(&self, provider: &str) {
        self.with_provider(provider, Self::heard_over_http);
    }

    fn heard_over_http(state: &mut ProviderState) {
        let index = Self::source_index(state, HTTP_SOURCE);
        let source = &mut state.sources[index];
        source.connected = true;
        source.session = true;
        source.last_seen = Some(Instant::now());
    }

    /// Counts a book reply to a feed message and its feed-to-book delay.
    pub fn record(&self, provider: &str, timestamp: u64, reply: &Reply) {
        self.0.metrics.count(provider, outcome_label(reply));
        match reply {
            Ok(Ack::Feed(FeedApplied { ignored, .. })) => {
                for (index, rejection) in ignored {
                    let reason = format!("book_{}", rejection.code());
                    self.0.metrics.refusal(provider, &reason);
                    tracing::warn!(%provider, item = index, %reason, detail = %rejection, "feed item refused by the book");
                }
            }
            Err(rejection) => {
                let reason = format!("book_{}", rejection.code());
                self.0.metrics.refusal(provider, &reason);
                tracing::warn!(%provider, %reason, detail = %rejection, "feed message refused by the book");
            }
            Ok(_) => {}
        }
        let lag_ms = wall_ms().saturating_sub(timestamp);
        self.0.metrics.feed_to_book_seconds.observe(lag_ms as f64 / 1000.0);
    }

    pub fn providers(&self) -> Vec<ProviderView> {
        let now = Instant::now();
        let providers = self.0.providers.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        providers
            .iter()
            .map(|(name, state)| ProviderView {
                provider: name.clone(),
                active_source: state.sources.get(state.active).map(|source| source.name.clone()).unwrap_or_default(),
                stale: state.stale || state.starting,
                silent_for: state.sources.get(state.active).and_then(|source| source.last_seen).map(|seen| now - seen),
                producers: state
                    .producers
                    .iter()
                    .map(|(product, producer)| ProducerView {
                        product: *product,
                        down: producer.down(),
                        recovering: producer.recovering(),
                    })
                    .collect(),
            })
            .collect()
    }

    /// Providers with no fresh source now.
    pub fn stale_providers(&self) -> Vec<String> {
        self.providers().into_iter().filter(|view| view.stale).map(|view| view.provider).collect()
    }

    /// One watchdog pass: failovers, stale and fresh transitions. Returns the book commands to
    /// send (sent by `run_watchdog`; returned for tests).
    pub fn check(&self) -> Vec<Command> {
        let now = Instant::now();
        let mut commands = Vec::new();
        let mut providers = self.0.providers.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let mut stale_count = 0;
        let mut writes = Vec::new();
        for (name, state) in providers.iter_mut() {
            let list_due = state.uof.settings.api.is_some()
                && state.uof.listed.is_none()
                && !state.uof.list_fetch.in_flight
                && state.uof.list_fetch.next_at.is_none_or(|at| now >= at);
            if list_due {
                self.fetch_producers(name, state);
            }
            if state.sources.is_empty() {
                continue;
            }
            let poll_due = state.uof.last_poll.is_none_or(|at| now.duration_since(at) >= RECOVERY_POLL_INTERVAL);
            if poll_due && !state.producers.is_empty() {
                state.uof.last_poll = Some(now);
                let connected = state.sources[state.active].connected && state.sources[state.active].session;
                let ms = self.now_ms();
                let wall = wall_ms();
                let mut due = Vec::new();
                {
                    let mut ids = self.0.uof_ids.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
                    for (product, producer) in &mut state.producers {
                        producer.recovery.on_wall_clock(wall);
                        // Requests wait for a connection: a replay sent to nobody is lost.
                        let actions = if connected {
                            producer.recovery.poll(ms, &mut ids)
                        } else {
                            producer.recovery.on_tick(ms)
                        };
                        due.push((*product, actions));
                    }
                }
                for (product, actions) in due {
                    commands.extend(self.carry_out(name, state, product, actions).into_iter().map(Command::Feed));
                }
                for (product, producer) in &state.producers {
                    self.0.metrics.recoveries(name, *product, producer.recovery.counts());
                }
                if let Some(names) = &state.uof.settings.names {
                    self.0.metrics.name_fallbacks(name, &names.namer.fallbacks);
                }
                if let Some(write) = Self::last_good_to_store(name, state) {
                    writes.push(write);
                }
            }
            if let Some(seen) = state.sources[state.active].last_seen {
                let silent = now.duration_since(seen).as_millis() as i64;
                self.0
                    .metrics
                    .staleness_ms
                    .get_or_create(&crate::metrics::ProviderLabel { provider: name.clone() })
                    .set(silent);
            }
            if !state.fresh(state.active, now) {
                if let Some(next) =
                    (0..state.sources.len()).find(|index| *index != state.active && state.fresh(*index, now))
                {
                    tracing::warn!(
                        provider = %name,
                        from = %state.sources[state.active].name,
                        to = %state.sources[next].name,
                        "feed source failover"
                    );
                    state.active = next;
                    self.0.metrics.switch(name, "failover");
                    self.request_recovery(name, state);
                } else if !state.stale {
                    tracing::error!(provider = %name, mode = ?state.settings.on_stale, "feed stale: no fresh source");
                    // What the producers sent while the source was silent or gone is lost:
                    // each recovers before the markets reopen. The whole provider's markets
                    // wait (`FeedHealth`), not each producer's.
                    state.stale = true;
                    state.book_held = true;
                    let ms = self.now_ms();
                    let products: Vec<u32> = state.producers.keys().copied().collect();
                    for product in products {
                        let Some(producer) = state.producers.get_mut(&product) else { continue };
                        if producer.recovery.is_up() {
                            let actions = producer.recovery.on_disconnected(ms);
                            self.carry_out(name, state, product, actions);
                        }
                    }
                    self.0.metrics.switch(name, "stale");
                    commands.push(Command::FeedHealth { provider: name.clone(), stale: Some(state.settings.on_stale) });
                }
            } else if state.stale {
                tracing::info!(provider = %name, source = %state.sources[state.active].name, "feed fresh again; recovering");
                state.stale = false;
                self.0.metrics.switch(name, "fresh");
                commands.push(Command::FeedHealth { provider: name.clone(), stale: None });
                // A provider with producers is fresh only once every one has recovered.
                if state.producers.is_empty() {
                    self.request_recovery(name, state);
                }
            }
            stale_count += i64::from(state.stale || state.starting);
        }
        self.0.metrics.stale_providers.set(stale_count);
        drop(providers);
        for (path, text) in writes {
            if let Err(error) = write_atomically(&path, &text) {
                tracing::error!(path = %path.display(), %error, "feed recovery point not stored");
            }
        }
        commands
    }

    fn request_recovery(&self, name: &str, state: &mut ProviderState) {
        if !state.producers.is_empty() {
            // UOF producers recover through the provider's API, each on its own.
            let ms = self.now_ms();
            let products: Vec<u32> = state.producers.keys().copied().collect();
            for product in products {
                let Some(producer) = state.producers.get_mut(&product) else { continue };
                let actions = producer.recovery.on_disconnected(ms);
                self.carry_out(name, state, product, actions);
            }
            return;
        }
        let Some(controls) = &state.sources[state.active].controls else { return };
        let request_id = self.0.request_ids.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if controls.try_send(Control::Recover { after: state.last_timestamp, request_id }).is_ok() {
            self.0.metrics.switch(name, "recovery");
            tracing::info!(provider = %name, source = %state.sources[state.active].name, request_id, "feed recovery requested");
        }
    }

    fn now_ms(&self) -> u64 {
        self.0.started.elapsed().as_millis() as u64
    }

    /// Sets how a Unified Odds Feed provider recovers and names (before its sources start);
    /// reads the recovery points a previous run stored.
    ///
    /// A provider that can recover (its API is configured) starts stale: the markets a
    /// previous run left open carry prices of unknown age, so the hub submits `FeedHealth`
    /// stale for it now, ahead of every message its sources will submit and every bet taken
    /// after this call, and the book suspends (or delays) them as for a silence. The hub
    /// fetches the provider's producers list (`producers.xml`, retried with a back-off until it
    /// comes): the producers waited for are the active ones of that list. The producers of the
    /// previous run (those with a stored recovery point) start down and recover at once; one
    /// the list shows inactive or omits is dropped (logged) unless heard of meanwhile, and is
    /// never waited for; an active one never stored recovers in full (no `after`, as the SDKs
    /// do on a first start). The book reopens the markets on the `snapshot_complete` that ends
    /// the last of those recoveries; until the list is fetched nothing reopens. Without an API
    /// nothing could ever end that wait, so such a provider starts fresh (and says so in the
    /// log).
    pub fn configure_uof(&self, provider: &str, settings: UofSettings) {
        let stored =
            settings.state_dir.as_ref().map(|dir| read_last_good(&recovery_path(dir, provider))).unwrap_or_default();
        if !stored.is_empty() {
            tracing::info!(%provider, ?stored, "feed recovery points of a previous run");
        }
        let recovers = settings.api.is_some();
        let hold = self.with_provider(provider, |state| {
            state.uof.saved = stored.clone();
            state.uof.stored = stored.clone();
            state.uof.settings = settings;
            // Producers made from an earlier configuration's stored points or list, and never
            // heard of, are made again from this one's.
            state.producers.retain(|_, producer| producer.heard);
            if recovers {
                for product in stored.keys() {
                    self.producer_entry(state, *product, false);
                }
                state.uof.listed = None;
                state.uof.list_fetch = ListFetch::default();
                self.fetch_producers(provider, state);
            }
            if !recovers || state.starting {
                return None;
            }
            state.starting = true;
            state.book_held = true;
            Some(state.settings.on_stale)
        });
        match hold {
            Some(mode) => {
                tracing::warn!(%provider, ?mode, producers = ?stored.keys().collect::<Vec<_>>(), "feed provider starts stale: its markets wait for its producers' recovery");
                self.0.metrics.switch(provider, "stale");
                let command = Command::FeedHealth { provider: provider.to_string(), stale: Some(mode) };
                self.submit_health(command);
            }
            None if !recovers => {
                tracing::warn!(%provider, "no UOF API: the provider cannot recover, so the markets a previous run left open take bets at once");
            }
            None => {}
        }
    }

    /// Submits a `FeedHealth` judgement now (in order before whatever is submitted after this
    /// call) and logs a refusal when the book answers.
    fn submit_health(&self, command: Command) {
        let origin = match &command {
            Command::FeedHealth { provider, .. } => Origin::new(Actor::Feed(provider.clone())),
            _ => Origin::system("feed_watchdog"),
        };
        match self.0.engine.submit_waiting((command, origin)) {
            Ok(reply) => {
                if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                    runtime.spawn(async move {
                        if let Ok(Err(error)) = reply.await.map_err(|_| ()) {
                            tracing::error!(%error, "feed health not recorded");
                        }
                    });
                }
            }
            Err(error) => tracing::error!(%error, "feed health not sent"),
        }
    }

    /// The names of a UOF provider (market descriptions and fixtures), if configured.
    pub fn uof_names(&self, provider: &str) -> Option<Arc<UofNames>> {
        self.with_provider(provider, |state| state.uof.settings.names.clone())
    }

    /// The provider timestamp each producer of `provider` would recover from now.
    pub fn last_good(&self, provider: &str) -> BTreeMap<u32, u64> {
        self.with_provider(provider, |state| {
            state
                .producers
                .iter()
                .filter_map(|(product, producer)| producer.recovery.last_good().map(|at| (*product, at)))
                .collect()
        })
    }

    /// The producer `product`, heard of now (a message, an alive ...): created if new.
    fn producer<'a>(&self, state: &'a mut ProviderState, product: u32) -> &'a mut ProducerState {
        let producer = self.producer_entry(state, product, true);
        producer.heard = true;
        producer
    }

    /// The producer `product`, created if new (down, recovering from its stored point, with its
    /// recovery window from the producers list if fetched).
    fn producer_entry<'a>(&self, state: &'a mut ProviderState, product: u32, heard: bool) -> &'a mut ProducerState {
        let ms = self.now_ms();
        let window = state
            .uof
            .listed
            .as_ref()
            .and_then(|list| list.iter().find(|listed| listed.id == product))
            .and_then(ProducerDescription::recovery_window);
        let config = state.uof.settings.recovery.clone();
        let stored = state.uof.stored.get(&product).copied();
        // A producer first heard of while the book does not hold the provider's markets (after
        // the start recovery, with its API to recover through) has markets that may be open
        // on prices of unknown age: they are held until its own recovery completes.
        let held = !state.book_held && state.uof.settings.api.is_some();
        state.producers.entry(product).or_insert_with(|| {
            let mut recovery = ProducerRecovery::new(product, config, stored, ms);
            if let Some(window) = window {
                recovery.set_recovery_window(window);
            }
            ProducerState { recovery, heard, held }
        })
    }

    /// Carries out a producer's recovery actions; returns the messages to forward to the book,
    /// in order: the `snapshot_complete` when the last producer that was down is up again, then
    /// the reopening of held producers' markets.
    fn carry_out(&self, name: &str, state: &mut ProviderState, product: u32, actions: Vec<Action>) -> Vec<FeedMessage> {
        let mut forward = Vec::new();
        for action in actions {
            match action {
                Action::MarkDown(reason) => {
                    self.0.metrics.producer(name, product, "down");
                    tracing::error!(provider = %name, product, reason = reason.as_str(), "feed producer down; its markets wait for its recovery");
                    // A lost connection is the provider's staleness (all its markets wait, and
                    // its snapshot reopens them); the producer's own reasons suspend its own.
                    // A stale provider's markets are all suspended already, and its snapshot
                    // reopens them.
                    if reason != crate::recovery::DownReason::Disconnected && !state.stale {
                        self.suspend_producer(name, state, product);
                        if let Some(producer) = state.producers.get_mut(&product) {
                            producer.held = true;
                        }
                    }
                }
                Action::SendRequest(request) => {
                    self.0.metrics.producer(name, product, "recovery");
                    self.0.metrics.switch(name, "recovery");
                    tracing::info!(provider = %name, product, request_id = request.request_id, after = ?request.after, "feed recovery requested from the provider's API");
                    let api = state.uof.settings.api.clone();
                    match (api, tokio::runtime::Handle::try_current()) {
                        (Some(api), Ok(runtime)) => {
                            let hub = self.clone();
                            let provider = name.to_string();
                            runtime.spawn(async move {
                                let outcome = api.initiate_recovery(&request).await;
                                hub.request_done(&provider, product, request.request_id, outcome);
                            });
                        }
                        (api, _) => {
                            let why = if api.is_none() { "no provider API configured" } else { "no runtime" };
                            self.0.metrics.producer(name, product, "recovery_failed");
                            tracing::error!(provider = %name, product, request_id = request.request_id, reason = why, "feed recovery request not sent");
                            let ms = self.now_ms();
                            if let Some(producer) = state.producers.get_mut(&product) {
                                producer.recovery.on_request_failed(ms, request.request_id);
                            }
                        }
                    }
                }
                Action::MarkUp => {
                    self.0.metrics.producer(name, product, "up");
                    tracing::info!(provider = %name, product, "feed producer up: its recovery completed");
                    forward.extend(self.release(name, state));
                }
            }
        }
        forward
    }

    /// The messages that reopen the markets `product` owns and last said were active (one
    /// `Markets` item per market, with its status and no odds), once it is up again after it
    /// was held. Stamped with the provider's latest time (that of the `snapshot_complete` that
    /// ended its recovery, or later), never the wall clock: the book takes the stamp as the
    /// market's odds time, and a provider's price stamped before it would be refused as stale.
    fn reopen_producer(&self, name: &str, state: &mut ProviderState, product: u32) -> Vec<FeedMessage> {
        if let Some(producer) = state.producers.get_mut(&product) {
            producer.held = false;
        }
        let items: Vec<FeedItem> = state
            .owners
            .iter()
            .filter(|(key, owner)| **owner == product && state.active_markets.contains(*key))
            .map(|((event, market), _)| FeedItem::Markets {
                event: event.clone(),
                markets: vec![FeedMarket {
                    market: market.clone(),
                    name: String::new(),
                    kind: String::new(),
                    status: FeedMarketStatus::Active,
                    outcomes: Vec::new(),
                }],
            })
            .collect();
        if items.is_empty() {
            return Vec::new();
        }
        self.0.metrics.producer_markets(name, product, "markets_reopened", items.len() as u64);
        tracing::info!(provider = %name, product, markets = items.len(), "feed producer up: its active markets reopen");
        items
            .chunks(book::constants::FEED_ITEMS_MAX)
            .map(|items| FeedMessage {
                provider: name.to_string(),
                sequence: 0,
                timestamp: state.last_timestamp,
                items: items.to_vec(),
            })
            .collect()
    }

    /// While `product` is held (down after its markets were suspended), the active statuses
    /// of its message are forwarded as suspended: its prices still move, its markets stay
    /// suspended until it is up.
    fn hold(&self, name: &str, state: &ProviderState, product: u32, message: &mut FeedMessage) {
        if !state.producers.get(&product).is_some_and(|producer| producer.held && producer.down()) {
            return;
        }
        let mut held = 0;
        for item in &mut message.items {
            if let FeedItem::Markets { markets, .. } = item {
                for market in markets.iter_mut().filter(|market| market.status == FeedMarketStatus::Active) {
                    market.status = FeedMarketStatus::Suspended;
                    held += 1;
                }
            }
        }
        if held > 0 {
            self.0.metrics.producer_markets(name, product, "markets_held", held);
        }
    }

    /// Suspends the markets `product` owns: a `bet_stop` of them (one item per market, so that
    /// one the book does not have is refused alone) goes to the book now, in order with the
    /// messages the sources submit after it. A stale provider's markets are all suspended
    /// already.
    fn suspend_producer(&self, name: &str, state: &ProviderState, product: u32) {
        if state.stale {
            return;
        }
        let items = Self::stop_items(state, product);
        if items.is_empty() {
            return;
        }
        self.0.metrics.producer_markets_suspended(name, product, items.len() as u64);
        tracing::warn!(provider = %name, product, markets = items.len(), "feed producer down: its markets suspended");
        // A stamp of its own (the provider's latest time or the wall clock, whichever is later),
        // so that two suspensions of the same markets are two messages, not a duplicate.
        let timestamp = state.last_timestamp.max(wall_ms());
        for items in items.chunks(book::constants::FEED_ITEMS_MAX) {
            let message = FeedMessage { provider: name.to_string(), sequence: 0, timestamp, items: items.to_vec() };
            self.submit_feed(name, message);
        }
    }

    /// A `BetStop` item for each market `product` owns (one per market, so that one the book
    /// does not have is refused alone).
    fn stop_items(state: &ProviderState, product: u32) -> Vec<FeedItem> {
        state
            .owners
            .iter()
            .filter(|(_, owner)| **owner == product)
            .map(|((event, market), _)| FeedItem::BetStop { event: event.clone(), markets: vec![market.clone()] })
            .collect()
    }

    /// Submits a message of the hub's own (or one it held back) to the book now, in order
    /// before whatever is submitted after this call; its reply is counted when it comes.
    fn submit_feed(&self, name: &str, message: FeedMessage) {
        let timestamp = message.timestamp;
        let origin = Origin::new(Actor::Feed(name.to_string()));
        match self.0.engine.submit_waiting((Command::Feed(message), origin)) {
            Ok(reply) => {
                let (hub, provider) = (self.clone(), name.to_string());
                if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                    runtime.spawn(async move {
                        if let Ok(Ok(reply)) = reply.await {
                            hub.record(&provider, timestamp, &reply);
                        }
                    });
                }
            }
            Err(error) => tracing::error!(provider = %name, %error, "feed message of the hub not submitted"),
        }
    }

    /// Whether the producers the provider's markets wait for are all up. With an API: the
    /// active producers of its producers list (before the list is fetched, or if it shows none
    /// active, nothing can be known to be recovered: the provider stays stale); without one,
    /// every producer heard of.
    fn waited_up(state: &ProviderState) -> bool {
        if state.uof.settings.api.is_none() {
            return !state.producers.values().any(ProducerState::down);
        }
        let Some(list) = &state.uof.listed else { return false };
        let mut active = list.iter().filter(|listed| listed.active).peekable();
        active.peek().is_some()
            && active.all(|listed| state.producers.get(&listed.id).is_some_and(|producer| !producer.down()))
    }

    /// What the book is sent once every producer waited for is up (`waited_up`): the held
    /// `snapshot_complete`, which reopens what the book held for the provider, carrying in the
    /// same message (so that no bet lands between the two) the stop of the markets of each
    /// producer still down that was not waited for, which is held from then on until its own
    /// recovery; then the reopening of the markets of held producers that are up.
    fn release(&self, name: &str, state: &mut ProviderState) -> Vec<FeedMessage> {
        let mut forward = Vec::new();
        if Self::waited_up(state) {
            if let Some(mut snapshot) = state.uof.held_snapshot.take() {
                let still_down: Vec<u32> = state
                    .producers
                    .iter()
                    .filter(|(_, producer)| producer.down() && !producer.held)
                    .map(|(product, _)| *product)
                    .collect();
                let mut stops = Vec::new();
                for product in still_down {
                    if let Some(producer) = state.producers.get_mut(&product) {
                        producer.held = true;
                    }
                    let items = Self::stop_items(state, product);
                    if !items.is_empty() {
                        self.0.metrics.producer_markets_suspended(name, product, items.len() as u64);
                        tracing::warn!(provider = %name, product, markets = items.len(), "feed producer not waited for and not recovered: its markets stay suspended until its own recovery");
                    }
                    stops.extend(items);
                }
                let room = book::constants::FEED_ITEMS_MAX.saturating_sub(snapshot.items.len());
                let rest = stops.split_off(stops.len().min(room));
                snapshot.items.extend(stops);
                forward.push(snapshot);
                let timestamp = state.last_timestamp.max(wall_ms());
                for items in rest.chunks(book::constants::FEED_ITEMS_MAX) {
                    forward.push(FeedMessage {
                        provider: name.to_string(),
                        sequence: 0,
                        timestamp,
                        items: items.to_vec(),
                    });
                }
                state.book_held = false;
                if state.starting {
                    state.starting = false;
                    self.0.metrics.switch(name, "fresh");
                    tracing::info!(provider = %name, "feed provider recovered at start: its markets reopen");
                }
                if state.stale {
                    // The book's snapshot_complete ends its stale state; so does the hub's now,
                    // so a producer that goes down again right away is told to the book again.
                    state.stale = false;
                    self.0.metrics.switch(name, "fresh");
                    tracing::info!(provider = %name, "feed fresh again: every producer recovered");
                }
            }
        }
        // Held markets reopen once the book no longer holds them for the provider's snapshot
        // (it would not reopen them before).
        if !state.book_held {
            let held: Vec<u32> = state
                .producers
                .iter()
                .filter(|(_, producer)| producer.held && !producer.down())
                .map(|(product, _)| *product)
                .collect();
            for product in held {
                forward.extend(self.reopen_producer(name, state, product));
            }
        }
        forward
    }

    /// Asks the provider's API for its producers list on a task of its own; the answer goes
    /// to `producers_listed`.
    fn fetch_producers(&self, name: &str, state: &mut ProviderState) {
        let Some(api) = state.uof.settings.api.clone() else { return };
        // Without a runtime (a hub configured outside one) the watchdog's next pass asks.
        let Ok(runtime) = tokio::runtime::Handle::try_current() else { return };
        state.uof.list_fetch.in_flight = true;
        let (hub, provider) = (self.clone(), name.to_string());
        runtime.spawn(async move {
            let outcome = api.producers().await;
            hub.producers_listed(&provider, outcome);
        });
    }

    /// The provider's producers list, or why it could not be had. Listed: the active producers
    /// are the ones waited for (created if new, each with its recovery window and the name its
    /// `api_url` gives the recovery path); a producer stored or listed before that is not
    /// active now, and was never heard of in this run, is dropped (logged once); the held
    /// `snapshot_complete` goes to the book if every producer waited for is up already. Failed:
    /// logged and counted, asked again after a back-off; the provider stays stale meanwhile.
    fn producers_listed(&self, provider: &str, outcome: Result<Vec<ProducerDescription>, crate::uof_api::ApiError>) {
        let forward = self.with_provider(provider, |state| {
            let fetch = &mut state.uof.list_fetch;
            fetch.in_flight = false;
            let list = match outcome {
                Ok(list) => list,
                Err(error) => {
                    fetch.failures = fetch.failures.saturating_add(1);
                    let config = &state.uof.settings.recovery;
                    let shift = (fetch.failures - 1).min(16);
                    let wait = config.backoff_initial.saturating_mul(1 << shift).min(config.backoff_max);
                    fetch.next_at = Some(Instant::now() + wait);
                    self.0.metrics.producer_list(provider, error.code());
                    tracing::error!(%provider, code = error.code(), %error, retry_in = ?wait, "the provider's producers list not fetched: the producers to wait for are unknown, so the provider stays stale until it is");
                    return Vec::new();
                }
            };
            fetch.failures = 0;
            self.0.metrics.producer_list(provider, "fetched");
            let active: BTreeSet<u32> = list.iter().filter(|listed| listed.active).map(|listed| listed.id).collect();
            let inactive: Vec<u32> = list.iter().filter(|listed| !listed.active).map(|listed| listed.id).collect();
            tracing::info!(%provider, ?active, ?inactive, "the provider's producers list: its markets wait for the active ones");
            if active.is_empty() {
                tracing::error!(%provider, "the provider lists no active producer: nothing can recover its markets, which stay suspended");
            }
            let dropped: Vec<u32> = state
                .producers
                .iter()
                .filter(|(product, producer)| !active.contains(product) && !producer.heard)
                .map(|(product, _)| *product)
                .collect();
            for product in dropped {
                state.producers.remove(&product);
                let listed = if inactive.contains(&product) { "inactive" } else { "not listed" };
                tracing::warn!(%provider, product, listed, "a stored producer the provider no longer offers is dropped: not waited for, not recovered");
            }
            let names = list.iter().filter_map(|listed| listed.path_name().map(|name| (listed.id, name)));
            state.uof.settings.api = state.uof.settings.api.as_ref().map(|api| api.with_producer_names(names));
            for listed in &list {
                if let (Some(producer), Some(window)) = (state.producers.get_mut(&listed.id), listed.recovery_window()) {
                    producer.recovery.set_recovery_window(window);
                }
            }
            state.uof.listed = Some(list);
            for product in &active {
                self.producer_entry(state, *product, false);
            }
            self.release(provider, state)
        });
        for message in forward {
            self.submit_feed(provider, message);
        }
    }

    /// Notes which producer owns the markets of a message it sent (before the book applies it),
    /// and whether it last said they were active.
    fn note_owners(&self, name: &str, state: &mut ProviderState, product: u32, message: &FeedMessage) {
        for item in &message.items {
            match item {
                FeedItem::Markets { event, markets } => {
                    for market in markets {
                        let key = (event.clone(), market.market.clone());
                        match market.status {
                            FeedMarketStatus::HandedOver if state.owners.get(&key) == Some(&product) => {
                                state.active_markets.remove(&key);
                                state.owners.remove(&key);
                            }
                            FeedMarketStatus::HandedOver => {}
                            FeedMarketStatus::Settled | FeedMarketStatus::Cancelled => {
                                state.active_markets.remove(&key);
                                state.owners.remove(&key);
                            }
                            // Owned once priced (the book creates a market with its first
                            // odds), or already known.
                            _ if market.outcomes.iter().any(|outcome| outcome.odds.is_some())
                                || state.owners.contains_key(&key) =>
                            {
                                if state.owners.len() < PRODUCER_MARKETS_MAX || state.owners.contains_key(&key) {
                                    if market.status == FeedMarketStatus::Active {
                                        state.active_markets.insert(key.clone());
                                    } else {
                                        state.active_markets.remove(&key);
                                    }
                                    state.owners.insert(key, product);
                                } else {
                                    self.0.metrics.producer(name, product, "owner_untracked");
                                }
                            }
                            _ => {}
                        }
                    }
                }
                FeedItem::Settlement { event, market, .. } | FeedItem::Cancel { event, market } => {
                    let key = (event.clone(), market.clone());
                    state.active_markets.remove(&key);
                    state.owners.remove(&key);
                }
                // Its bet stop (of the listed markets, or all the event's) ends their active
                // status; the book suspends them.
                FeedItem::BetStop { event, markets } => {
                    let stopped: Vec<(String, String)> = state
                        .active_markets
                        .range((event.clone(), String::new())..)
                        .take_while(|(of, _)| of == event)
                        .filter(|(_, market)| markets.is_empty() || markets.contains(market))
                        .filter(|key| state.owners.get(*key) == Some(&product))
                        .cloned()
                        .collect();
                    for key in stopped {
                        state.active_markets.remove(&key);
                    }
                }
                _ => {}
            }
        }
    }

    /// The producer that owns each market of `provider` the hub tracks, `(event, market)` →
    /// product.
    pub fn market_owners(&self, provider: &str) -> BTreeMap<(String, String), u32> {
        self.with_provider(provider, |state| state.owners.clone())
    }

    /// The provider's answer to a recovery request.
    fn request_done(
        &self,
        provider: &str,
        product: u32,
        request_id: u64,
        outcome: Result<(), crate::uof_api::ApiError>,
    ) {
        let ms = self.now_ms();
        self.with_provider(provider, |state| {
            let Some(producer) = state.producers.get_mut(&product) else { return };
            match outcome {
                Ok(()) => producer.recovery.on_request_sent(ms, request_id),
                Err(error) => {
                    self.0.metrics.producer(provider, product, "recovery_failed");
                    tracing::error!(%provider, product, request_id, code = error.code(), %error, "feed recovery request failed; retried after a back-off");
                    let actions = producer.recovery.on_request_failed(ms, request_id);
                    self.carry_out(provider, state, product, actions);
                }
            }
        });
    }

    /// A message of `product` that the book applied: it advances the producer's `last_good`.
    fn applied(&self, provider: &str, product: u32, timestamp: u64) {
        self.with_provider(provider, |state| {
            if let Some(producer) = state.producers.get_mut(&product) {
                producer.recovery.on_message(timestamp);
            }
        });
    }

    /// The producers' `last_good` to store, if it moved since the last write.
    fn last_good_to_store(name: &str, state: &mut ProviderState) -> Option<(PathBuf, String)> {
        let dir = state.uof.settings.state_dir.as_ref()?;
        let mut current = state.uof.saved.clone();
        for (product, producer) in &state.producers {
            if let Some(at) = producer.recovery.last_good() {
                current.insert(*product, at);
            }
        }
        if current == state.uof.saved {
            return None;
        }
        let text: String = current.iter().map(|(product, at)| format!("{product} {at}\n")).collect();
        state.uof.saved = current;
        Some((recovery_path(dir, name), text))
    }

    /// Runs the watchdog until the hub is dropped by everyone else.
    pub fn spawn_watchdog(&self) -> tokio::task::JoinHandle<()> {
        let weak = Arc::downgrade(&self.0);
        tokio::spawn(async move {
            let mut interval = tokio::time::interval(WATCHDOG_INTERVAL);
            interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                interval.tick().await;
                let Some(inner) = weak.upgrade() else { return };
                let hub = FeedHub(inner);
                for command in hub.check() {
                    // The book must hear of a stale feed even when it is busy.
                    // The watchdog is the feed adapter judging its provider.
                    let origin = match &command {
                        Command::FeedHealth { provider, .. } => Origin::new(Actor::Feed(provider.clone())),
                        _ => Origin::system("feed_watchdog"),
                    };
                    match hub.0.engine.submit_waiting((command, origin)) {
                        Ok(reply) => {
                            if let Ok(Err(error)) = reply.await.map_err(|_| ()) {
                                tracing::error!(%error, "feed health not recorded");
                            }
                        }
                        Err(error) => tracing::error!(%error, "feed health not sent"),
                    }
                }
            }
        })
    }
}

impl SourceHandle {
    pub fn provider(&self) -> &str {
        &self.provider
    }

    /// The provider's names (UOF market descriptions and fixtures), if configured.
    pub fn uof_names(&self) -> Option<Arc<UofNames>> {
        self.hub.uof_names(&self.provider)
    }

    /// The provider's market keys of `event` the book has; `None` if the book cannot be read.
    pub async fn market_keys(&self, event: &str) -> Option<Vec<String>> {
        let (provider, event) = (self.provider.clone(), event.to_string());
        let read = self.hub.0.engine.read_async(move |book| {
            book.feed().markets_of(&provider, &event).map(|(key, _)| key.to_string()).collect::<Vec<_>>()
        });
        match read {
            Ok(receiver) => receiver.await.ok(),
            Err(error) => {
                tracing::error!(provider = %self.provider, %error, "the book's markets not read");
                None
            }
        }
    }

    /// Where the provider's fixtures are fetched and cached, if configured.
    pub fn name_store(&self) -> Option<crate::names::NameStore> {
        self.hub.with_provider(&self.provider, |state| state.uof.settings.store.clone())
    }

    fn update(&self, apply: impl FnOnce(&mut ProviderState, usize)) {
        self.hub.with_provider(&self.provider, |state| apply(state, self.index));
    }

    /// The source (re)connected; a recovery is requested if it is the active one. It has
    /// `stale_after` to send something before it counts as silent.
    pub fn connected(&self) {
        self.update(|state, index| {
            state.sources[index].connected = true;
            state.sources[index].session = true;
            state.sources[index].last_seen = Some(Instant::now());
            if state.active == index {
                self.hub.request_recovery(&self.provider, state);
            }
        });
    }

    /// A connection attempt failed or a session was lost: counted by `code`.
    pub fn connection_failed(&self, code: &str) {
        self.hub.0.metrics.connection_error(&self.provider, code);
    }

    pub fn disconnected(&self) {
        let ms = self.hub.now_ms();
        self.update(|state, index| {
            state.sources[index].connected = false;
            state.sources[index].session = false;
            if state.active != index {
                return;
            }
            let products: Vec<u32> = state.producers.keys().copied().collect();
            for product in products {
                let Some(producer) = state.producers.get_mut(&product) else { continue };
                let actions = producer.recovery.on_disconnected(ms);
                self.hub.carry_out(&self.provider, state, product, actions);
            }
        });
    }

    /// A heartbeat: the source is alive.
    pub fn alive(&self) {
        self.update(|state, index| state.sources[index].last_seen = Some(Instant::now()));
        self.hub.0.metrics.count(&self.provider, "heartbeat");
    }

    /// A message from this source: forwarded to the book if this source is active, and counted
    /// (not forwarded) if it is a standby.
    pub async fn message(&self, message: FeedMessage) {
        self.forward(None, message).await;
    }

    /// A message of producer `product` (UOF): applied, it advances the producer's recovery
    /// point. A producer first heard of here starts down and recovers.
    pub async fn producer_message(&self, product: u32, message: FeedMessage) {
        self.update(|state, _| {
            self.hub.producer(state, product);
        });
        self.forward(Some(product), message).await;
    }

    async fn forward(&self, product: Option<u32>, mut message: FeedMessage) {
        let active = self.hub.with_provider(&self.provider, |state| {
            state.sources[self.index].last_seen = Some(Instant::now());
            let active = state.active == self.index;
            if active {
                state.last_timestamp = state.last_timestamp.max(message.timestamp);
                if let Some(product) = product {
                    self.hub.note_owners(&self.provider, state, product, &message);
                    self.hub.hold(&self.provider, state, product, &mut message);
                }
            }
            active
        });
        if !active {
            self.hub.0.metrics.count(&self.provider, "standby");
            return;
        }
        let timestamp = message.timestamp;
        let origin = Origin::new(Actor::Feed(self.provider.clone()));
        match self.hub.0.engine.submit_waiting((Command::Feed(message), origin)) {
            Ok(receiver) => {
                // Replies are awaited off the source's read loop so that reading keeps pace;
                // the book keeps the submission order.
                let hub = self.hub.clone();
                let provider = self.provider.clone();
                tokio::spawn(async move {
                    match receiver.await {
                        Ok(Ok(reply)) => {
                            let applied = matches!(&reply, Ok(Ack::Feed(FeedApplied { duplicate: false, applied, .. })) if *applied > 0);
                            if let (Some(product), true) = (product, applied) {
                                hub.applied(&provider, product, timestamp);
                            }
                            hub.record(&provider, timestamp, &reply);
                        }
                        Ok(Err(error)) => {
                            hub.0.metrics.count(&provider, "shed");
                            tracing::warn!(%provider, %error, "feed message not applied");
                        }
                        Err(_) => hub.0.metrics.count(&provider, "shed"),
                    }
                });
            }
            Err(error) => {
                self.hub.0.metrics.count(&self.provider, "shed");
                tracing::warn!(provider = %self.provider, %error, "feed message not submitted");
            }
        }
    }

    /// A message that could not be understood.
    pub fn invalid(&self, reason: &str) {
        self.hub.0.metrics.count(&self.provider, "invalid");
        self.hub.0.metrics.refusal(&self.provider, "invalid");
        tracing::warn!(provider = %self.provider, reason, "feed message refused");
    }

    /// A message refused whole, with a stable reason code and the detail.
    pub fn refused(&self, reason: &str, detail: &str) {
        self.hub.0.metrics.count(&self.provider, "invalid");
        self.hub.0.metrics.refusal(&self.provider, reason);
        tracing::warn!(provider = %self.provider, reason, detail, "feed message refused");
    }

    /// A part of a message refused or skipped (the rest applies), with its reason.
    pub fn item_refused(&self, reason: &str, detail: &str) {
        self.hub.0.metrics.refusal(&self.provider, reason);
        tracing::warn!(provider = %self.provider, reason, detail, "feed item refused");
    }

    /// A producer's `alive` (`subscribed == false`: the provider dropped our session, the
    /// producer is down and recovers).
    pub fn producer_alive(&self, product: u32, timestamp: u64, subscribed: bool) {
        let ms = self.hub.now_ms();
        self.update(|state, index| {
            state.sources[index].last_seen = Some(Instant::now());
            if state.active != index {
                return;
            }
            let actions = self.hub.producer(state, product).recovery.on_alive(ms, timestamp, subscribed);
            self.hub.carry_out(&self.provider, state, product, actions);
        });
        self.hub.0.metrics.count(&self.provider, "heartbeat");
    }

    /// A producer's `product_down`: it is down and recovers.
    pub fn product_down(&self, product: u32) {
        let ms = self.hub.now_ms();
        self.update(|state, index| {
            state.sources[index].last_seen = Some(Instant::now());
            if state.active != index {
                return;
            }
            let actions = self.hub.producer(state, product).recovery.on_product_down(ms);
            self.hub.carry_out(&self.provider, state, product, actions);
        });
    }

    /// A producer's `snapshot_complete` for `request_id`: only the one that ends the producer's
    /// pending request counts; the book hears of it (and reopens the provider's markets) once
    /// no producer is down any more, and the producer's held markets that it last said were
    /// active reopen after it. Others are counted and ignored.
    pub async fn snapshot_complete(&self, product: u32, request_id: u64, message: FeedMessage) {
        let ms = self.hub.now_ms();
        let forward = self.hub.with_provider(&self.provider, |state| {
            state.sources[self.index].last_seen = Some(Instant::now());
            if state.active != self.index {
                return Vec::new();
            }
            let actions = self.hub.producer(state, product).recovery.on_snapshot_complete(ms, request_id);
            if actions.is_empty() {
                self.hub.0.metrics.producer(&self.provider, product, "stale_snapshot");
                tracing::warn!(provider = %self.provider, product, request_id, "feed snapshot_complete of no pending request ignored");
                return Vec::new();
            }
            self.hub.0.metrics.producer(&self.provider, product, "snapshot_complete");
            state.last_timestamp = state.last_timestamp.max(message.timestamp);
            state.uof.held_snapshot = Some(message);
            self.hub.carry_out(&self.provider, state, product, actions)
        });
        for message in forward {
            self.message(message).await;
        }
    }
}

fn recovery_path(dir: &std::path::Path, provider: &str) -> PathBuf {
    let file: String =
        provider.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' { c } else { '_' }).take(200).collect();
    dir.join(format!("recovery-{file}.txt"))
}

/// `product last_good` lines; unreadable lines are skipped (the recovery then asks from the
/// producer's window).
fn read_last_good(path: &std::path::Path) -> BTreeMap<u32, u64> {
    let Ok(text) = std::fs::read_to_string(path) else { return BTreeMap::new() };
    text.lines()
        .filter_map(|line| {
            let (product, at) = line.split_once(' ')?;
            Some((product.parse().ok()?, at.parse().ok()?))
        })
        .collect()
}

/// Writes a temporary file, syncs it and renames it into place: a crash leaves the old file or
/// the new one, never a torn one.
fn write_atomically(path: &std::path::Path, text: &str) -> std::io::Result<()> {
    use std::io::Write as _;
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let tmp = path.with_extension("txt.tmp");
    let mut file = std::fs::File::create(&tmp)?;
    file.write_all(text.as_bytes())?;
    file.sync_all()?;
    std::fs::rename(&tmp, path)
}
