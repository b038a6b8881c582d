//! The book engine's journal on a replicated NATS JetStream stream ([`NatsJournal`]), and a
//! launcher of local `nats-server` clusters for tests and development ([`cluster`]).
//!
//! One journal record is one message on one stream (position = stream sequence - 1). Every
//! append carries a de-duplication id (`Nats-Msg-Id`, the writer's id and the position) and the
//! sequence the stream must end at (`Nats-Expected-Last-Sequence`, the position): a writer whose
//! idea of the end is stale, because another writer has appended since, is refused by the
//! stream's leader and gets [`JournalError::Fenced`]; a retry of an append whose answer was lost
//! is recognised by its id and never stored twice. The stream denies deletes and purges, so
//! positions never get gaps.
//!
//! Durability: JetStream acknowledges a message once a majority of the stream's replicas has
//! stored it (2 of 3), so the loss of any one server loses no acknowledged record. "Stored"
//! means written to the server's files, not synced: the servers fsync on a timer (nats-server
//! 2.9: every 2 minutes, not configurable; 2.10 and later: `jetstream { sync_interval }`,
//! default 2 minutes, `always` to sync before acknowledging), so a simultaneous power loss or
//! kernel crash of a majority can lose the acknowledged records of the last interval. A crash
//! of the server processes alone loses nothing written (the data is in the page cache).
//! `docs/journal-nats.md` states the claim in full.
//!
//! The trait is synchronous and called from the engine's sequencer thread; the journal runs the
//! async client on a private single-worker tokio runtime. Do not call it from inside a tokio
//! runtime.
//!
//! Records are at most [`PAYLOAD_BYTES_MAX`] (31 MiB, JetStream's file store limit), below the
//! file journal's 64 MiB. Servers must accept messages of that size plus headers:
//! `max_payload` at least [`SERVER_MAX_PAYLOAD_MIN`] (`max_payload: 32MB`; `max_pending`, 64 MB
//! by default, must not be below it). [`NatsJournal::open`] refuses a server with less.

use std::fmt::Display;
use std::time::{Duration, Instant};

use async_nats::jetstream::consumer::pull::OrderedConfig;
use async_nats::jetstream::consumer::DeliverPolicy;
use async_nats::jetstream::context::{CreateStreamErrorKind, GetStreamErrorKind, PublishErrorKind};
use async_nats::jetstream::message::PublishMessage;
use async_nats::jetstream::stream::{self, RawMessageErrorKind, StorageType};
use async_nats::jetstream::ErrorCode;
use bytes::Bytes;
use futures_util::StreamExt;
use journal::{Journal, JournalError, Position, RECORD_PAYLOAD_BYTES_MAX};

pub mod cluster;

/// Stream the journal lives in unless the options say otherwise.
pub const STREAM_DEFAULT: &str = "SPORTSBOOK_JOURNAL";

/// Subject of the journal's messages unless the options say otherwise.
pub const SUBJECT_DEFAULT: &str = "sportsbook.journal";

/// Replicas of a stream the journal creates: a majority of 3 survives the loss of one server.
pub const REPLICAS_DEFAULT: usize = 3;

/// Most replicas JetStream allows for a stream.
pub const REPLICAS_MAX: usize = 5;

/// The largest record this journal stores, below the journal format's
/// [`journal::RECORD_PAYLOAD_BYTES_MAX`] (64 MiB): JetStream's file store takes any record over
/// 32 MiB (its `rlBadThresh`, in every version to date) for a corrupt one when it reads it back
/// from disk. Measured on nats-server 2.9.10 with 3 replicas: a 33 MiB message is acknowledged
/// and then, after the servers restart, not found; a 64 MiB one is never acknowledged (the
/// followers fail to store it in their Raft logs). 1 MiB below the limit leaves room for the
/// headers and the Raft framing. Reported by [`Journal::payload_bytes_max`].
pub const PAYLOAD_BYTES_MAX: usize = 31 * 1024 * 1024;
const _: () = assert!(PAYLOAD_BYTES_MAX <= RECORD_PAYLOAD_BYTES_MAX);

/// Room for the headers of a record's message (de-duplication id, expected last sequence).
pub const HEADER_BYTES_MAX: usize = 1024;

/// The smallest `max_payload` a server must allow: the largest record plus its headers.
pub const SERVER_MAX_PAYLOAD_MIN: usize = PAYLOAD_BYTES_MAX + HEADER_BYTES_MAX;

/// Longest writer id; it is part of every message's de-duplication id.
pub const WRITER_ID_BYTES_MAX: usize = 64;

/// Reads of at most this many records fetch each by sequence (one request each) rather than
/// through a consumer (one request to create it, then a stream of messages).
const DIRECT_READ_RECORDS_MAX: u64 = 4;

/// How often [`NatsJournal::follow`] asks whether to go on while no record arrives.
pub const FOLLOW_CHECK_INTERVAL: Duration = Duration::from_millis(50);

/// Records a read fetches one by one (by sequence) after a consumer could not be made, before
/// it tries a consumer again (`Journal::read_from`).
const DIRECT_READ_FALLBACK_RECORDS: u64 = 256;

/// Pause between two attempts of a request whose answer was an error that may pass (no stream
/// leader during an election, a lost connection).
const RETRY_PAUSE: Duration = Duration::from_millis(100);

/// Where the journal lives and how long it waits.
#[derive(Debug, Clone)]
pub struct NatsJournalOptions {
    /// Server URLs (`nats://host:port`); the client fails over between them and the servers
    /// the cluster announces.
    pub servers: Vec<String>,
    /// JetStream stream name; created on first open if missing.
    pub stream: String,
    /// The stream's only subject.
    pub subject: String,
    /// Replicas of the stream: 3 for a 3-node cluster, 1 for a single server. An existing
    /// stream must have this many.
    pub replicas: usize,
    /// Names this writer in every message's de-duplication id; a fresh random id when `None`.
    /// Two journals open at once must not share one.
    pub writer_id: Option<String>,
    /// Deadline of one request to a server (connecting, one publish, one stream query).
    pub request_timeout: Duration,
    /// Deadline of one append including its retries (a stream leader election after a server
    /// loss takes a few seconds), of the wait for each record while reading, and of creating
    /// the stream (its replicas elect a leader too). Past it an append fails with
    /// [`JournalError::Remote`] and poisons the journal.
    pub append_timeout: Duration,
}

impl NatsJournalOptions {
    /// The defaults for these servers.
    pub fn new<S: Into<String>>(servers: impl IntoIterator<Item = S>) -> Self {
        Self {
            servers: servers.into_iter().map(Into::into).collect(),
            stream: STREAM_DEFAULT.to_owned(),
            subject: SUBJECT_DEFAULT.to_owned(),
            replicas: REPLICAS_DEFAULT,
            writer_id: None,
            request_timeout: Duration::from_secs(2),
            append_timeout: Duration::from_secs(30),
        }
    }

    fn validate(&self) -> Result<(), JournalError> {
        let invalid = |reason: String| Err(JournalError::InvalidOptions { reason });
        if self.servers.is_empty() {
            return invalid("no NATS server URL given".into());
        }
        let token_ok = |s: &str| {
            !s.is_empty() && s.bytes().all(|b| b.is_ascii_graphic() && !matches!(b, b'.' | b'*' | b'>' | b'/' | b'\\'))
        };
        if !token_ok(&self.stream) {
            return invalid(format!(
                "stream name {:?} must be non-empty printable ASCII without '.', '*', '>', '/', '\\\\' or spaces",
                self.stream
            ));
        }
        if self.subject.is_empty() || !self.subject.split('.').all(token_ok) {
            return invalid(format!(
                "subject {:?} must be dot-separated non-empty tokens without wildcards or spaces",
                self.subject
            ));
        }
        if !(1..=REPLICAS_MAX).contains(&self.replicas) {
            return invalid(format!("replicas must be 1 to {REPLICAS_MAX}, got {}", self.replicas));
        }
        if let Some(id) = &self.writer_id {
            if id.is_empty() || id.len() > WRITER_ID_BYTES_MAX || !id.bytes().all(|b| b.is_ascii_graphic()) {
                return invalid(format!(
                    "writer id {id:?} must be 1 to {WRITER_ID_BYTES_MAX} printable ASCII characters"
                ));
            }
        }
        if self.request_timeout.is_zero() || self.append_timeout.is_zero() {
            return invalid("timeouts must be positive".into());
        }
        Ok(())
    }
}

/// Whether this writer may still append.
#[derive(Debug, Clone)]
enum WriterState {
    Writing,
    /// Another writer appended; the reason the stream gave.
    Fenced(String),
    /// An append's outcome is unknown.
    Poisoned,
}

/// A journal on a JetStream stream. See the crate documentation.
pub struct NatsJournal {
    context: async_nats::jetstream::Context,
    stream: stream::Stream,
    subject: String,
    writer_id: String,
    next: Position,
    state: WriterState,
    append_timeout: Duration,
    // Last: the client's handles above are dropped first (fields drop in order), while the
    // runtime that runs their tasks still exists.
    runtime: tokio::runtime::Runtime,
}

impl std::fmt::Debug for NatsJournal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NatsJournal")
            .field("stream", &self.stream.cached_info().config.name)
            .field("writer_id", &self.writer_id)
            .field("next", &self.next)
            .field("state", &self.state)
            .finish_non_exhaustive()
    }
}

impl NatsJournal {
    /// Connects, creates the stream if it does not exist (or checks the existing one) and
    /// reads where it ends: the next append goes right after the last record any writer
    /// stored. Fails with [`JournalError::Remote`] when no server answers and with
    /// [`JournalError::InvalidOptions`] for options, a server or a stream the journal cannot
    /// work with.
    pub fn open(options: NatsJournalOptions) -> Result<Self, JournalError> {
        options.validate()?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("journal-nats")
            .enable_all()
            .build()
            .map_err(|err| remote("start its runtime", err))?;
        let writer_id = options.writer_id.clone().unwrap_or_else(|| format!("w{:016x}", rand::random::<u64>()));
        let (context, stream) = runtime.block_on(connect_and_check(&options))?;
        let info = stream.cached_info();
        let next = info.state.last_sequence;
        Ok(Self {
            runtime,
            context,
            stream,
            subject: options.subject,
            writer_id,
            next,
            state: WriterState::Writing,
            append_timeout: options.append_timeout,
        })
    }

    /// This writer's id, part of every de-duplication id it sends.
    pub fn writer_id(&self) -> &str {
        &self.writer_id
    }

    /// The stream's current end as the servers see it (the next position any writer would
    /// append at), which is past [`Journal::next_position`] once another writer appended.
    pub fn stream_next_position(&self) -> Result<Position, JournalError> {
        let info = self.runtime.block_on(self.stream.get_info()).map_err(|err| remote("stream info", err))?;
        Ok(info.state.last_sequence)
    }

    /// The stream's leader (the server that orders appends) and its other replicas, as the
    /// leader reports them.
    pub fn stream_cluster(&self) -> Result<StreamCluster, JournalError> {
        let info = self.runtime.block_on(self.stream.get_info()).map_err(|err| remote("stream info", err))?;
        let cluster = info.cluster.unwrap_or_default();
        Ok(StreamCluster {
            leader: cluster.leader,
            followers: cluster
                .replicas
                .into_iter()
                .map(|peer| Follower { name: peer.name, current: peer.current, lag: peer.lag.unwrap_or(0) })
                .collect(),
        })
    }

    async fn append_once(&self, position: Position, payload: Bytes) -> Result<(), AppendFailure> {
        let msg_id = format!("{}-{position}", self.writer_id);
        let deadline = Instant::now() + self.append_timeout;
        let mut last_error = String::from("no attempt finished in time");
        loop {
            let publish =
                PublishMessage::build().payload(payload.clone()).message_id(&msg_id).expected_last_sequence(position);
            let attempt = async {
                let ack = self.context.send_publish(self.subject.clone(), publish).await?;
                ack.await
            };
            let remaining = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(remaining, attempt).await {
                Err(_) => break,
                // A retry of a stored append is answered "duplicate" with the original
                // sequence, which is still ours at `position`.
                Ok(Ok(ack)) if ack.sequence == position + 1 => return Ok(()),
                Ok(Ok(ack)) => {
                    return Err(AppendFailure::Unknown(format!(
                        "the stream stored the record of position {position} at sequence {} (duplicate: {})",
                        ack.sequence, ack.duplicate
                    )))
                }
                Ok(Err(err)) if err.kind() == PublishErrorKind::WrongLastSequence => {
                    // Either another writer appended, or an earlier attempt of this very append
                    // was stored and its answer lost (whether the server then answers
                    // "duplicate" or "wrong last sequence" depends on which check it makes
                    // first): the id of the record at `position` tells.
                    match self.stream.get_raw_message(position + 1).await {
                        Ok(stored) if stored.headers.get("Nats-Msg-Id").map(|id| id.as_str()) == Some(&msg_id) => {
                            return Ok(())
                        }
                        Ok(_) => return Err(self.fenced_or_lost(position, &err).await),
                        Err(get) if get.kind() == RawMessageErrorKind::NoMessageFound => {
                            return Err(self.fenced_or_lost(position, &err).await)
                        }
                        Err(get) => last_error = format!("{err}; then reading sequence {}: {get}", position + 1),
                    }
                }
                Ok(Err(err)) if err.kind() == PublishErrorKind::MaxPayloadExceeded => {
                    return Err(AppendFailure::Refused(err.to_string()))
                }
                Ok(Err(err)) => last_error = err.to_string(),
            }
            if Instant::now() + RETRY_PAUSE >= deadline {
                break;
            }
            tokio::time::sleep(RETRY_PAUSE).await;
        }
        Err(AppendFailure::Unknown(format!("no answer within {:?}; the last error: {last_error}", self.append_timeout)))
    }

    /// After a wrong-last-sequence answer for a record not ours: fenced when the stream is
    /// longer than this writer knows, lost records when it is shorter.
    async fn fenced_or_lost(&self, position: Position, err: &impl Display) -> AppendFailure {
        match self.stream.get_info().await {
            Ok(info) if info.state.last_sequence < position => AppendFailure::Unknown(format!(
                "the stream ends at position {} but this writer appended up to {}: acknowledged records were lost ({err})",
                info.state.last_sequence, position
            )),
            Ok(info) => AppendFailure::Fenced(format!(
                "the stream {} now ends at position {} ({err})",
                info.config.name, info.state.last_sequence
            )),
            Err(info_err) => AppendFailure::Fenced(format!("{err} (the stream's end is unknown: {info_err})")),
        }
    }

    // The visitor's type as the trait spells it.
    #[allow(clippy::type_complexity)]
    async fn read(
        &self,
        from: Position,
        visit: &mut dyn FnMut(Position, &[u8]) -> Result<(), JournalError>,
    ) -> Result<(), JournalError> {
        let wait = self.append_timeout;
        let info = retry(wait, "read the stream's state", || self.stream.get_info()).await?;
        let end = info.state.last_sequence;
        if from >= end {
            return Ok(());
        }
        if info.state.first_sequence > from + 1 {
            return Err(JournalError::Pruned { requested: from, first_available: info.state.first_sequence - 1 });
        }
        if end - from <= DIRECT_READ_RECORDS_MAX {
            for position in from..end {
                let message = retry(wait, "read", || self.stream.get_raw_message(position + 1)).await?;
                visit(position, &message.payload)?;
            }
            return Ok(());
        }
        // An ordered consumer from `position`; made again from where it stopped whenever it
        // fails (its server lost, a JetStream leader election), until no record arrived for
        // `wait`.
        let mut position = from;
        let mut deadline = Instant::now() + wait;
        let mut last_error = String::new();
        while position < end {
            if Instant::now() >= deadline {
                return Err(remote(
                    "read",
                    format!("no record at position {position} within {wait:?}; the last error: {last_error}"),
                ));
            }
            if !last_error.is_empty() {
                tokio::time::sleep(RETRY_PAUSE).await;
            }
            let config = OrderedConfig {
                deliver_policy: DeliverPolicy::ByStartSequence { start_sequence: position + 1 },
                ..Default::default()
            };
            let mut messages = match self.stream.create_consumer(config).await {
                Ok(consumer) => match consumer.messages().await {
                    Ok(messages) => messages,
                    Err(err) => {
                        last_error = format!("reading from a consumer: {err}");
                        continue;
                    }
                },
                Err(err) => {
                    last_error = format!("creating a consumer: {err}");
                    // Creating a consumer goes through the cluster's meta leader, which may be
                    // electing (it was on the node just lost) or slow to answer on a busy
                    // machine; fetching a record by its sequence needs only the stream's leader.
                    // Read a run of records that way, then try a consumer again.
                    let run_end = end.min(position + DIRECT_READ_FALLBACK_RECORDS);
                    while position < run_end {
                        match self.stream.get_raw_message(position + 1).await {
                            Ok(message) => {
                                visit(position, &message.payload)?;
                                position += 1;
                                deadline = Instant::now() + wait;
                            }
                            Err(err) => {
                                last_error = format!("{last_error}; reading record {position} directly: {err}");
                                break;
                            }
                        }
                    }
                    continue;
                }
            };
            while position < end {
                let remaining = deadline.saturating_duration_since(Instant::now());
                let message = match tokio::time::timeout(remaining, messages.next()).await {
                    Err(_) => break,
                    Ok(None) => {
                        last_error = "the consumer ended".into();
                        break;
                    }
                    Ok(Some(Err(err))) => {
                        last_error = err.to_string();
                        break;
                    }
                    Ok(Some(Ok(message))) => message,
                };
                let sequence = message.info().map_err(|err| remote("read", err))?.stream_sequence;
                if sequence != position + 1 {
                    return Err(remote(
                        "read",
                        format!(
                            "expected the record of position {position} (sequence {}), got sequence {sequence}: \
                             the stream has a gap",
                            position + 1
                        ),
                    ));
                }
                visit(position, &message.payload)?;
                position += 1;
                deadline = Instant::now() + wait;
            }
        }
        Ok(())
    }
}

impl NatsJournal {
    /// Follows the stream from `from` as records are stored, calling `visit` for each in order,
    /// until `keep_going()` answers false; returns the position after the last record visited.
    /// For standbys that keep a book warm: unlike [`Journal::read_from`], it does not stop at
    /// the end the stream had when called. `keep_going` is asked between records and at least
    /// every [`FOLLOW_CHECK_INTERVAL`] while none arrives. The ordered consumer under it is
    /// made again from the next position whenever it fails (its server lost, an election, a
    /// follower that paused too long); it fails only with `visit`'s error, or with
    /// [`JournalError::Remote`] when no consumer could be made for `append_timeout`.
    // The visitor's type as the trait spells it.
    #[allow(clippy::type_complexity)]
    pub fn follow(
        &self,
        from: Position,
        keep_going: &dyn Fn() -> bool,
        visit: &mut dyn FnMut(Position, &[u8]) -> Result<(), JournalError>,
    ) -> Result<Position, JournalError> {
        self.runtime.block_on(self.follow_async(from, keep_going, visit))
    }

    #[allow(clippy::type_complexity)]
    async fn follow_async(
        &self,
        from: Position,
        keep_going: &dyn Fn() -> bool,
        visit: &mut dyn FnMut(Position, &[u8]) -> Result<(), JournalError>,
    ) -> Result<Position, JournalError> {
        let mut position = from;
        let mut failing_since: Option<Instant> = None;
        let mut last_error = String::new();
        while keep_going() {
            if let Some(since) = failing_since {
                if since.elapsed() >= self.append_timeout {
                    return Err(remote(
                        "follow",
                        format!("no consumer from position {position} for {:?}: {last_error}", self.append_timeout),
                    ));
                }
                tokio::time::sleep(RETRY_PAUSE).await;
            }
            let config = OrderedConfig {
                deliver_policy: DeliverPolicy::ByStartSequence { start_sequence: position + 1 },
                ..Default::default()
            };
            let consumer = match self.stream.create_consumer(config).await {
                Ok(consumer) => consumer,
                Err(err) => {
                    last_error = format!("creating a consumer: {err}");
                    failing_since.get_or_insert_with(Instant::now);
                    continue;
                }
            };
            let mut messages = match consumer.messages().await {
                Ok(messages) => messages,
                Err(err) => {
                    last_error = format!("reading from a consumer: {err}");
                    failing_since.get_or_insert_with(Instant::now);
                    continue;
                }
            };
            while keep_going() {
                let message = match tokio::time::timeout(FOLLOW_CHECK_INTERVAL, messages.next()).await {
                    // Quiet, and the consumer reported nothing wrong: it works.
                    Err(_) => {
                        failing_since = None;
                        continue;
                    }
                    Ok(None) => {
                        last_error = "the consumer ended".into();
                        failing_since.get_or_insert_with(Instant::now);
                        break;
                    }
                    Ok(Some(Err(err))) => {
                        last_error = err.to_string();
                        failing_since.get_or_insert_with(Instant::now);
                        break;
                    }
                    Ok(Some(Ok(message))) => message,
                };
                let sequence = message.info().map_err(|err| remote("follow", err))?.stream_sequence;
                if sequence != position + 1 {
                    return Err(remote(
                        "follow",
                        format!(
                            "expected the record of position {position} (sequence {}), got sequence {sequence}: \
                             the stream has a gap",
                            position + 1
                        ),
                    ));
                }
                visit(position, &message.payload)?;
                position += 1;
                failing_since = None;
            }
        }
        Ok(position)
    }
}

/// Who holds the stream: see [`NatsJournal::stream_cluster`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamCluster {
    /// Server name of the leader; `None` during an election (or without JetStream clustering).
    pub leader: Option<String>,
    /// The replicas other than the leader.
    pub followers: Vec<Follower>,
}

/// A replica other than the stream's leader.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Follower {
    /// Server name.
    pub name: String,
    /// Whether it holds everything the leader has committed.
    pub current: bool,
    /// Raft entries it is behind.
    pub lag: u64,
}

enum AppendFailure {
    /// Another writer has appended.
    Fenced(String),
    /// Refused before anything was sent.
    Refused(String),
    /// It is unknown whether the record was stored.
    Unknown(String),
}

impl Journal for NatsJournal {
    fn append(&mut self, payload: &[u8]) -> Result<Position, JournalError> {
        if payload.len() > PAYLOAD_BYTES_MAX {
            return Err(JournalError::RecordTooLarge { len: payload.len(), max: PAYLOAD_BYTES_MAX });
        }
        match &self.state {
            WriterState::Writing => {}
            WriterState::Fenced(reason) => {
                return Err(JournalError::Fenced { position: self.next, reason: reason.clone() })
            }
            WriterState::Poisoned => return Err(JournalError::Poisoned),
        }
        let position = self.next;
        match self.runtime.block_on(self.append_once(position, Bytes::copy_from_slice(payload))) {
            Ok(()) => {
                self.next += 1;
                Ok(position)
            }
            Err(AppendFailure::Fenced(reason)) => {
                self.state = WriterState::Fenced(reason.clone());
                Err(JournalError::Fenced { position, reason })
            }
            Err(AppendFailure::Refused(reason)) => Err(remote("append", reason)),
            Err(AppendFailure::Unknown(reason)) => {
                self.state = WriterState::Poisoned;
                Err(remote("append", reason))
            }
        }
    }

    fn next_position(&self) -> Position {
        self.next
    }

    fn payload_bytes_max(&self) -> usize {
        PAYLOAD_BYTES_MAX
    }

    fn read_from(
        &self,
        from: Position,
        visit: &mut dyn FnMut(Position, &[u8]) -> Result<(), JournalError>,
    ) -> Result<(), JournalError> {
        self.runtime.block_on(self.read(from, visit))
    }
}

async fn connect_and_check(
    options: &NatsJournalOptions,
) -> Result<(async_nats::jetstream::Context, stream::Stream), JournalError> {
    let client = async_nats::ConnectOptions::new()
        .name("sportsbook-journal")
        .connection_timeout(options.request_timeout)
        .request_timeout(Some(options.request_timeout))
        .connect(options.servers.as_slice())
        .await
        .map_err(|err| remote("connect", format!("to {}: {err}", options.servers.join(", "))))?;
    let max_payload = client.server_info().max_payload;
    if max_payload < SERVER_MAX_PAYLOAD_MIN {
        return Err(JournalError::InvalidOptions {
            reason: format!(
                "the NATS server allows messages of {max_payload} bytes, the journal needs {SERVER_MAX_PAYLOAD_MIN} \
                 (set max_payload and max_pending to at least that in the server's configuration)"
            ),
        });
    }
    let mut context = async_nats::jetstream::new(client);
    context.set_timeout(options.request_timeout);
    let stream = match context.get_stream(&options.stream).await {
        Ok(stream) => stream,
        Err(err) if matches!(err.kind(), GetStreamErrorKind::JetStream(js) if js.error_code() == ErrorCode::STREAM_NOT_FOUND) =>
        {
            // Creating a replicated stream waits for its replicas to elect a leader, which on a
            // busy machine takes longer than one request: it gets the append's deadline.
            let mut admin = context.clone();
            admin.set_timeout(options.append_timeout.max(options.request_timeout));
            match admin.create_stream(stream_config(options)).await {
                Ok(stream) => stream,
                // Another writer created it at the same time.
                Err(err) if matches!(err.kind(), CreateStreamErrorKind::JetStream(js) if js.error_code() == ErrorCode::STREAM_NAME_EXIST) => {
                    context.get_stream(&options.stream).await.map_err(|err| remote("open the stream", err))?
                }
                // A creation whose answer timed out may still have happened: look once more.
                Err(err) => context.get_stream(&options.stream).await.map_err(|_| remote("create the stream", err))?,
            }
        }
        Err(err) => return Err(remote("open the stream", err)),
    };
    check_stream(options, stream.cached_info())?;
    Ok((context, stream))
}

fn stream_config(options: &NatsJournalOptions) -> stream::Config {
    stream::Config {
        name: options.stream.clone(),
        description: Some("sportsbook journal: one message per record, position = sequence - 1".into()),
        subjects: vec![options.subject.clone()],
        storage: StorageType::File,
        num_replicas: options.replicas,
        // Positions are sequences: no message may ever go away.
        deny_delete: true,
        deny_purge: true,
        allow_direct: false,
        // JetStream's default window (2 minutes) for recognising a retried append.
        duplicate_window: Duration::from_secs(120),
        ..Default::default()
    }
}

fn check_stream(options: &NatsJournalOptions, info: &stream::Info) -> Result<(), JournalError> {
    let config = &info.config;
    let problem = if config.subjects != [options.subject.clone()] {
        Some(format!("has subjects {:?}, the journal needs exactly [{:?}]", config.subjects, options.subject))
    } else if config.num_replicas != options.replicas {
        Some(format!("has {} replicas, the options say {}", config.num_replicas, options.replicas))
    } else if !config.deny_delete || !config.deny_purge {
        Some("allows deleting or purging messages, which would leave gaps in the positions".into())
    } else if config.storage != StorageType::File {
        Some("is kept in memory, not in files".into())
    } else if info.state.messages != info.state.last_sequence {
        Some(format!("holds {} messages up to sequence {}: it has gaps", info.state.messages, info.state.last_sequence))
    } else {
        None
    };
    match problem {
        Some(problem) => {
            Err(JournalError::InvalidOptions { reason: format!("the existing stream {} {problem}", config.name) })
        }
        None => Ok(()),
    }
}

/// Runs `request` until it succeeds or `wait` has passed (then the last error).
async fn retry<T, E: Display, F: std::future::Future<Output = Result<T, E>>>(
    wait: Duration,
    op: &'static str,
    mut request: impl FnMut() -> F,
) -> Result<T, JournalError> {
    let deadline = Instant::now() + wait;
    loop {
        let remaining = deadline.saturating_duration_since(Instant::now());
        let error = match tokio::time::timeout(remaining, request()).await {
            Ok(Ok(value)) => return Ok(value),
            Ok(Err(err)) => err.to_string(),
            Err(_) => "no answer".to_owned(),
        };
        if Instant::now() + RETRY_PAUSE >= deadline {
            return Err(remote(op, format!("{error} (retried for {wait:?})")));
        }
        tokio::time::sleep(RETRY_PAUSE).await;
    }
}

fn remote(op: &'static str, err: impl Display) -> JournalError {
    JournalError::Remote { op, reason: err.to_string() }
}

/// A reader of the journal's stream for a process that follows it at its own pace and stops
/// between records (the projector): unlike [`NatsJournal::follow`] it returns to its caller
/// after each call, and unlike [`Journal::read_from`] it keeps its ordered consumer between
/// calls, so following a busy stream costs one stream query per call rather than a consumer
/// made each time. It never appends and never creates the stream.
pub struct NatsReader {
    stream: stream::Stream,
    /// The consumer and the position of the next record it delivers.
    consumer: Option<(Position, async_nats::jetstream::consumer::pull::Ordered)>,
    wait: Duration,
    // Last: the client's handles above are dropped first, while the runtime exists.
    runtime: tokio::runtime::Runtime,
}

impl std::fmt::Debug for NatsReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NatsReader")
            .field("stream", &self.stream.cached_info().config.name)
            .field("next", &self.consumer.as_ref().map(|(next, _)| *next))
            .finish_non_exhaustive()
    }
}

impl NatsReader {
    /// Connects and opens the existing stream (checked as [`NatsJournal::open`] checks it).
    /// Fails with [`JournalError::Remote`] when no server answers or the stream does not exist
    /// yet (no book has opened the journal): the caller retries.
    pub fn open(options: NatsJournalOptions) -> Result<NatsReader, JournalError> {
        options.validate()?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("journal-nats-reader")
            .enable_all()
            .build()
            .map_err(|err| remote("start its runtime", err))?;
        let stream = runtime.block_on(async {
            let client = async_nats::ConnectOptions::new()
                .name("sportsbook-journal-reader")
                .connection_timeout(options.request_timeout)
                .request_timeout(Some(options.request_timeout))
                .connect(options.servers.as_slice())
                .await
                .map_err(|err| remote("connect", format!("to {}: {err}", options.servers.join(", "))))?;
            let mut context = async_nats::jetstream::new(client);
            context.set_timeout(options.request_timeout);
            let stream = context
                .get_stream(&options.stream)
                .await
                .map_err(|err| remote("open the stream", format!("{}: {err}", options.stream)))?;
            Ok::<_, JournalError>(stream)
        })?;
        check_stream(&options, stream.cached_info())?;
        Ok(NatsReader { stream, consumer: None, wait: options.append_timeout, runtime })
    }

    /// `(first, end)`: the first position the stream holds and the position after its last
    /// record (`first == end` when it holds none).
    pub fn bounds(&self) -> Result<(Position, Position), JournalError> {
        let info = self.runtime.block_on(retry(self.wait, "read the stream's state", || self.stream.get_info()))?;
        let end = info.state.last_sequence;
        let first = if info.state.messages == 0 { end } else { info.state.first_sequence.saturating_sub(1) };
        Ok((first, end))
    }

    /// Reads the records from `from` up to `end` (exclusive) in order, calling `visit` for
    /// each, and stops early after a record for which `visit` answers false; returns the
    /// position after the last record visited. The consumer is kept for the next call when it
    /// starts where this one stopped, and made again from the next position whenever it fails
    /// (its server lost, an election); past `append_timeout` without a record it fails with
    /// [`JournalError::Remote`].
    #[allow(clippy::type_complexity)]
    pub fn read_range(
        &mut self,
        from: Position,
        end: Position,
        visit: &mut dyn FnMut(Position, &[u8]) -> Result<bool, JournalError>,
    ) -> Result<Position, JournalError> {
        let runtime = self.runtime.handle().clone();
        runtime.block_on(self.read_range_async(from, end, visit))
    }

    #[allow(clippy::type_complexity)]
    async fn read_range_async(
        &mut self,
        from: Position,
        end: Position,
        visit: &mut dyn FnMut(Position, &[u8]) -> Result<bool, JournalError>,
    ) -> Result<Position, JournalError> {
        let mut position = from;
        let mut deadline = Instant::now() + self.wait;
        let mut last_error = String::new();
        if self.consumer.as_ref().is_some_and(|(next, _)| *next != from) {
            self.consumer = None;
        }
        while position < end {
            if Instant::now() >= deadline {
                return Err(remote(
                    "read",
                    format!("no record at position {position} within {:?}; the last error: {last_error}", self.wait),
                ));
            }
            let mut messages = match self.consumer.take() {
                Some((_, messages)) => messages,
                None => {
                    if !last_error.is_empty() {
                        tokio::time::sleep(RETRY_PAUSE).await;
                    }
                    let config = OrderedConfig {
                        deliver_policy: DeliverPolicy::ByStartSequence { start_sequence: position + 1 },
                        ..Default::default()
                    };
                    match self.stream.create_consumer(config).await {
                        Ok(consumer) => match consumer.messages().await {
                            Ok(messages) => messages,
                            Err(err) => {
                                last_error = format!("reading from a consumer: {err}");
                                continue;
                            }
                        },
                        Err(err) => {
                            last_error = format!("creating a consumer: {err}");
                            continue;
                        }
                    }
                }
            };
            let mut healthy = true;
            while position < end {
                let remaining = deadline.saturating_duration_since(Instant::now());
                let message = match tokio::time::timeout(remaining, messages.next()).await {
                    Err(_) => {
                        last_error = "no message in time".into();
                        healthy = false;
                        break;
                    }
                    Ok(None) => {
                        last_error = "the consumer ended".into();
                        healthy = false;
                        break;
                    }
                    Ok(Some(Err(err))) => {
                        last_error = err.to_string();
                        healthy = false;
                        break;
                    }
                    Ok(Some(Ok(message))) => message,
                };
                let sequence = message.info().map_err(|err| remote("read", err))?.stream_sequence;
                if sequence != position + 1 {
                    return Err(remote(
                        "read",
                        format!(
                            "expected the record of position {position} (sequence {}), got sequence {sequence}: \
                             the stream has a gap",
                            position + 1
                        ),
                    ));
                }
                let go_on = visit(position, &message.payload)?;
                position += 1;
                deadline = Instant::now() + self.wait;
                if !go_on {
                    break;
                }
            }
            if healthy {
                self.consumer = Some((position, messages));
                return Ok(position);
            }
        }
        Ok(position)
    }
}
