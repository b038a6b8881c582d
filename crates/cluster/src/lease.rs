//! The leader's lease: one key in a JetStream key-value bucket, taken with `create` (refused
//! while the key holds a value) and renewed with `update` on the revision the holder last
//! wrote (compare-and-set: refused once anyone else wrote the key). The bucket's `max_age`
//! is the lease: the server removes a value that long after it was written, so a dead
//! leader's lease lapses on the servers' clock alone, and no node trusts another node's clock.
//! The servers' wall clocks do matter: a server whose clock steps ahead by more than the
//! holder's margin (a sixth of the lease, see below) expires the value early and may let a
//! standby in while the holder still believes it leads. Only the journal's fencing (below)
//! keeps that case safe; keep the NATS servers' clocks synchronised (NTP, slewed, not stepped).
//!
//! A holder renews every third of the lease. It counts its lease from the moment it SENT the
//! last renewal that succeeded (the server wrote it later, so the server's expiry is later
//! still) and stops leading before that count runs out ([`SELF_FENCE_SHARE`]): a leader that
//! cannot renew steps down before any other node could have taken the lease. Nothing in the
//! book's safety rests on this timing, though: the journal refuses every append of a deposed
//! leader once its successor appended (`journal_nats` fencing), and a new leader appends
//! first thing (`crate::node`). The lease decides who should lead; the journal who can.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use async_nats::jetstream::kv::{self, CreateErrorKind, Operation, UpdateErrorKind};
use async_nats::jetstream::stream::{self, DiscardPolicy, StorageType};
use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::ClusterError;

/// The lease unless the options say otherwise.
pub const LEASE_DEFAULT: Duration = Duration::from_secs(3);

/// The shortest lease: JetStream checks ages about once a second at best, and a lease much
/// shorter than the time to renew across three servers would lapse under load.
pub const LEASE_MIN: Duration = Duration::from_millis(1000);

/// The longest lease: a dead leader is replaced after up to this long.
pub const LEASE_MAX: Duration = Duration::from_secs(60);

/// Bucket of the lease unless the options say otherwise.
pub const LEASE_BUCKET_DEFAULT: &str = "sportsbook_book_lease";

/// The lease's key in its bucket.
pub const LEASE_KEY: &str = "leader";

/// Share of the lease (in sixths) after the last renewal was sent at which a holder that could
/// not renew since stops leading: 5/6, leaving a sixth of the lease for clock rates and the
/// time the holder takes to stop.
pub const SELF_FENCE_SHARE: u32 = 5;

/// What the lease's key holds: who leads, and where it was when it renewed. JSON, so that an
/// operator reads it with `nats kv get`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseRecord {
    /// The leading node's id.
    pub node: String,
    /// Its process id.
    pub pid: u32,
    /// Its journal position when it renewed.
    pub position: u64,
    /// The lease in milliseconds.
    pub lease_ms: u64,
    /// Wall-clock time of the renewal, milliseconds since the Unix epoch (for display: the
    /// servers' expiry decides, not this).
    pub renewed_at_ms: u64,
}

impl LeaseRecord {
    /// When the lease lapses unless renewed, by the holder's wall clock (for display).
    pub fn expires_at_ms(&self) -> u64 {
        self.renewed_at_ms + self.lease_ms
    }
}

/// A lease this node holds: the revision it last wrote and when it sent that write.
#[derive(Clone, Copy, Debug)]
pub struct Grant {
    pub revision: u64,
    /// When the write that made `revision` was sent: the lease runs from here.
    pub sent_at: Instant,
    /// Wall-clock time of that write (milliseconds since the epoch), for display.
    pub renewed_at_ms: u64,
}

/// Why a renewal did not succeed.
#[derive(Debug, thiserror::Error)]
pub enum RenewError {
    /// Another node holds the lease now (or it lapsed): this node must not lead.
    #[error("the lease was lost: {0}")]
    Lost(String),
    /// No answer or a server error: the lease may still be ours; try again until it runs out.
    #[error("the lease could not be renewed: {0}")]
    Unavailable(String),
}

/// The lease bucket, for one node.
#[derive(Clone)]
pub struct Lease {
    store: kv::Store,
    lease: Duration,
    node: String,
    pid: u32,
}

impl std::fmt::Debug for Lease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lease").field("lease", &self.lease).field("node", &self.node).finish_non_exhaustive()
    }
}

impl Lease {
    /// Opens the bucket (creating it with `replicas` replicas and `lease` as its values'
    /// maximum age). An existing bucket with another maximum age is refused: nodes must agree
    /// on the lease.
    pub async fn open(
        jetstream: &async_nats::jetstream::Context,
        bucket: &str,
        lease: Duration,
        replicas: usize,
        node: &str,
    ) -> Result<Lease, ClusterError> {
        if !(LEASE_MIN..=LEASE_MAX).contains(&lease) {
            return Err(ClusterError::InvalidOptions(format!(
                "the lease must be {LEASE_MIN:?} to {LEASE_MAX:?}, got {lease:?}"
            )));
        }
        let store = open_bucket(jetstream, bucket, lease, replicas, "the book's leader lease").await?;
        Ok(Lease { store, lease, node: node.to_owned(), pid: std::process::id() })
    }

    pub fn duration(&self) -> Duration {
        self.lease
    }

    /// The instant before which a holder whose last renewal was sent at `sent_at` must have
    /// stopped leading.
    pub fn self_fence_at(&self, sent_at: Instant) -> Instant {
        sent_at + self.lease * SELF_FENCE_SHARE / 6
    }

    /// Who holds the lease now, with the revision; `None` when nobody does.
    pub async fn holder(&self) -> Result<Option<(LeaseRecord, u64)>, ClusterError> {
        let entry = self.store.entry(LEASE_KEY).await.map_err(|err| ClusterError::nats("read the lease", err))?;
        let Some(entry) = entry.filter(|entry| entry.operation == Operation::Put) else {
            return Ok(None);
        };
        let record = serde_json::from_slice(&entry.value)
            .map_err(|err| ClusterError::Nats { op: "read the lease", reason: format!("not a lease record: {err}") })?;
        Ok(Some((record, entry.revision)))
    }

    /// Takes the lease if nobody holds it: `Some` when this node now leads.
    pub async fn try_acquire(&self, position: u64) -> Result<Option<Grant>, ClusterError> {
        let sent_at = Instant::now();
        let (value, renewed_at_ms) = self.record(position);
        match self.store.create(LEASE_KEY, value).await {
            Ok(revision) => Ok(Some(Grant { revision, sent_at, renewed_at_ms })),
            // Held: by another node, or by this one through an earlier attempt whose answer was
            // lost (it landed, the caller saw an error). Then the lease is ours: adopt it rather
            // than wait a whole lease for our own value to lapse.
            Err(err) if err.kind() == CreateErrorKind::AlreadyExists => {
                Ok(self.ours().await?.map(|(record, revision)| {
                    // That write was sent when its record says, by this machine's wall clock; the
                    // lease runs from there (never later than now).
                    let age = Duration::from_millis(wall_clock_ms().saturating_sub(record.renewed_at_ms));
                    let sent_at = Instant::now().checked_sub(age).unwrap_or(sent_at).min(Instant::now());
                    Grant { revision, sent_at, renewed_at_ms: record.renewed_at_ms }
                }))
            }
            Err(err) => Err(ClusterError::nats("take the lease", err)),
        }
    }

    /// The lease's value and revision if this process wrote it (same node id and pid).
    async fn ours(&self) -> Result<Option<(LeaseRecord, u64)>, ClusterError> {
        Ok(self.holder().await?.filter(|(record, _)| record.node == self.node && record.pid == self.pid))
    }

    /// Renews a lease this node holds (compare-and-set on the revision it last wrote).
    pub async fn renew(&self, grant: &Grant, position: u64) -> Result<Grant, RenewError> {
        let sent_at = Instant::now();
        let (value, renewed_at_ms) = self.record(position);
        match self.store.update(LEASE_KEY, value, grant.revision).await {
            Ok(revision) => Ok(Grant { revision, sent_at, renewed_at_ms }),
            Err(err) if err.kind() == UpdateErrorKind::WrongLastRevision => {
                // Someone wrote after our last known revision: another node, or this one, by an
                // earlier renewal whose answer was lost (it landed, the caller saw an error).
                // Ours: adopt that revision, keeping the last confirmed `sent_at` (the lease
                // cannot have started earlier than that), so the next renewal succeeds.
                match self.ours().await {
                    Ok(Some((record, revision))) if revision > grant.revision => {
                        Ok(Grant { revision, sent_at: grant.sent_at, renewed_at_ms: record.renewed_at_ms })
                    }
                    Ok(_) => Err(RenewError::Lost(err.to_string())),
                    Err(read) => Err(RenewError::Unavailable(format!("{err}; reading the lease: {read}"))),
                }
            }
            Err(err) => Err(RenewError::Unavailable(err.to_string())),
        }
    }

    /// Gives the lease up (a clean stop), so that a standby takes over at once rather than
    /// after the lease lapses. Only deletes the value this node last wrote.
    pub async fn release(&self, grant: &Grant) -> Result<(), ClusterError> {
        self.store
            .delete_expect_revision(LEASE_KEY, Some(grant.revision))
            .await
            .map_err(|err| ClusterError::nats("release the lease", err))
    }

    fn record(&self, position: u64) -> (Bytes, u64) {
        let renewed_at_ms = wall_clock_ms();
        let record = LeaseRecord {
            node: self.node.clone(),
            pid: self.pid,
            position,
            lease_ms: self.lease.as_millis() as u64,
            renewed_at_ms,
        };
        let value = serde_json::to_vec(&record).expect("a lease record serialises");
        (Bytes::from(value), renewed_at_ms)
    }
}

/// How long creating a bucket's stream may take (its replicas elect a leader first).
pub const BUCKET_CREATE_TIMEOUT: Duration = Duration::from_secs(30);

/// Opens a key-value bucket whose values live `max_age`, creating it if missing; refuses an
/// existing one with another `max_age` or replica count.
pub(crate) async fn open_bucket(
    jetstream: &async_nats::jetstream::Context,
    bucket: &str,
    max_age: Duration,
    replicas: usize,
    description: &str,
) -> Result<kv::Store, ClusterError> {
    let store = match jetstream.get_key_value(bucket).await {
        Ok(store) => store,
        // Missing (or the request failed: creating tells which).
        Err(_) => {
            // The bucket's stream, as `create_key_value` would make it: that call first asks
            // for the account's information, which async-nats 0.52 cannot parse from the 2.9
            // servers of Debian 12.
            let config = stream::Config {
                name: format!("KV_{bucket}"),
                description: Some(description.to_owned()),
                subjects: vec![format!("$KV.{bucket}.>")],
                max_messages_per_subject: 1,
                max_age,
                storage: StorageType::File,
                num_replicas: replicas,
                allow_rollup: true,
                deny_delete: true,
                allow_direct: true,
                discard: DiscardPolicy::New,
                ..Default::default()
            };
            // Creating a replicated stream waits for its replicas to elect a leader, which on a
            // busy machine takes longer than one request.
            let mut admin = jetstream.clone();
            admin.set_timeout(BUCKET_CREATE_TIMEOUT);
            if let Err(create) = admin.create_stream(config).await {
                // Another node may have created it at the same moment (or with another
                // configuration, which the check below reports).
                if jetstream.get_key_value(bucket).await.is_err() {
                    return Err(ClusterError::nats("create a bucket", create));
                }
            }
            jetstream.get_key_value(bucket).await.map_err(|err| ClusterError::nats("open a bucket", err))?
        }
    };
    let status = store.status().await.map_err(|err| ClusterError::nats("read a bucket's configuration", err))?;
    let config = &status.info.config;
    if config.max_age != max_age || config.num_replicas != replicas {
        return Err(ClusterError::InvalidOptions(format!(
            "the bucket {bucket} keeps values {:?} on {} replicas, this node wants {max_age:?} on {replicas} (every \
             node of a cluster must be started with the same lease and replicas)",
            config.max_age, config.num_replicas
        )));
    }
    Ok(store)
}

/// Milliseconds since the Unix epoch by this machine's clock.
pub fn wall_clock_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |since| since.as_millis() as u64)
}
