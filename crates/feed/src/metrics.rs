//! The feed's metrics, registered into the gateway's registry so one `/metrics` shows them.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ProviderLabel {
    pub provider: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabel {
    pub provider: String,
    /// `applied`, `duplicate`, `stale`, `partial`, `refused`, `heartbeat`, `invalid`,
    /// `standby` (from a source that is not the active one) or `shed` (the book was full).
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SwitchLabel {
    pub provider: String,
    /// `failover` (to another source), `stale` (no fresh source: markets suspended or
    /// delayed), `fresh` (the provider is back), `recovery` (a snapshot was requested).
    pub kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    pub provider: String,
    /// Why a message or an item of one was refused or skipped: the adapter's reason
    /// (`uof::Refusal::reason`, `unknown_message`) or the book's rejection code prefixed
    /// `book_` (`book_unknown_market`).
    pub reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ProducerLabel {
    pub provider: String,
    pub product: u32,
    /// `down` (no alive in time, alive with subscribed=0, product_down, connection lost), `up`
    /// (its recovery completed), `recovery` (a recovery was asked of it), `recovery_failed`,
    /// `snapshot_complete` (its replay ended), `stale_snapshot` (of no pending request),
    /// `markets_suspended` (markets it owned, suspended as it went down), `markets_held` (an
    /// active status it sent while down, forwarded as suspended), `markets_reopened` (markets
    /// reopened once it was up again), `owner_untracked`;
    /// in `recoveries`, the `RecoveryCounts` kinds.
    pub kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FallbackLabel {
    pub provider: String,
    /// `unknown_market`, `unknown_outcome`, `unfilled`, `malformed` (see `names::FallbackCounts`).
    pub reason: String,
}

#[derive(Clone, Debug)]
pub struct FeedMetrics {
    /// Market and outcome names that fell back to placeholders, by reason (since start).
    pub name_fallbacks: Family<FallbackLabel, Gauge>,
    /// Refused messages and refused items, by reason.
    pub refusals: Family<ReasonLabel, Counter>,
    /// Producer (UOF `product`) state changes.
    pub producers: Family<ProducerLabel, Counter>,
    /// Each producer's recovery counts (`recovery::RecoveryCounts`) by provider, product and
    /// kind: requests, request_failures, replay_timeouts, after_clamped, stale_snapshots,
    /// completed. Gauges set from the state machines (which count since the process started).
    pub recoveries: Family<ProducerLabel, Gauge>,
    /// Fetches of a UOF provider's producers list, by provider and outcome: `fetched`, or the
    /// API error's code (`uof_api::ApiError::code`).
    pub producer_lists: Family<ReasonLabel, Counter>,
    /// Failed or lost connections of sources, by provider and code (`transport::AmqpFailure`).
    pub connection_errors: Family<ReasonLabel, Counter>,
    pub staleness_ms: Family<ProviderLabel, Gauge>,
    pub messages: Family<OutcomeLabel, Counter>,
    pub switches: Family<SwitchLabel, Counter>,
    pub stale_providers: Gauge,
    /// From the provider's timestamp to the book's durable reply.
    pub feed_to_book_seconds: Histogram,
}

impl Default for FeedMetrics {
    fn default() -> FeedMetrics {
        FeedMetrics::new()
    }
}

impl FeedMetrics {
    pub fn new() -> FeedMetrics {
        FeedMetrics {
            name_fallbacks: Family::default(),
            refusals: Family::default(),
            producers: Family::default(),
            connection_errors: Family::default(),
            producer_lists: Family::default(),
            recoveries: Family::default(),
            staleness_ms: Family::default(),
            messages: Family::default(),
            switches: Family::default(),
            stale_providers: Gauge::default(),
            feed_to_book_seconds: Histogram::new(exponential_buckets(0.000_5, 2.0, 16)),
        }
    }

    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "sportsbook_feed_staleness_milliseconds",
            "Milliseconds since the last message or heartbeat of each provider's active source",
            self.staleness_ms.clone(),
        );
        registry.register(
            "sportsbook_feed_name_fallbacks",
            "UOF market and outcome names that fell back to placeholders, by provider and reason",
            self.name_fallbacks.clone(),
        );
        registry.register("sportsbook_feed_messages", "Feed messages by provider and outcome", self.messages.clone());
        registry.register(
            "sportsbook_feed_refusals",
            "Refused or skipped feed messages and items, by provider and reason",
            self.refusals.clone(),
        );
        registry.register(
            "sportsbook_feed_producer_changes",
            "Producer state changes (down, up, recovery, snapshot_complete) by provider and product",
            self.producers.clone(),
        );
        registry.register(
            "sportsbook_feed_producer_recoveries",
            "UOF recovery requests and their outcomes (requests, request_failures, replay_timeouts, after_clamped, stale_snapshots, completed) by provider and product, since start",
            self.recoveries.clone(),
        );
        registry.register(
            "sportsbook_feed_producer_lists",
            "Fetches of UOF providers' producers lists by provider and outcome (fetched, or the API error code)",
            self.producer_lists.clone(),
        );
        registry.register(
            "sportsbook_feed_connection_errors",
            "Failed or lost feed connections (refused, certificate, missing exchange ...) by provider and code",
            self.connection_errors.clone(),
        );
        registry.register(
            "sportsbook_feed_switches",
            "Source failovers, stale and fresh transitions, and recovery requests by provider",
            self.switches.clone(),
        );
        registry.register(
            "sportsbook_feed_stale_providers",
            "Providers with no fresh source now",
            self.stale_providers.clone(),
        );
        registry.register(
            "sportsbook_feed_to_book_seconds",
            "Delay from a feed message's provider timestamp to the book's durable decision",
            self.feed_to_book_seconds.clone(),
        );
    }

    pub fn count(&self, provider: &str, outcome: &str) {
        self.messages
            .get_or_create(&OutcomeLabel { provider: provider.to_string(), outcome: outcome.to_string() })
            .inc();
    }

    pub fn refusal(&self, provider: &str, reason: &str) {
        self.refusals.get_or_create(&ReasonLabel { provider: provider.to_string(), reason: reason.to_string() }).inc();
    }

    /// How many refusals of `reason` were counted for `provider`.
    pub fn refusals_of(&self, provider: &str, reason: &str) -> u64 {
        self.refusals.get_or_create(&ReasonLabel { provider: provider.to_string(), reason: reason.to_string() }).get()
    }

    pub fn connection_error(&self, provider: &str, code: &str) {
        self.connection_errors
            .get_or_create(&ReasonLabel { provider: provider.to_string(), reason: code.to_string() })
            .inc();
    }

    /// How many connection errors of `code` were counted for `provider`.
    pub fn connection_errors_of(&self, provider: &str, code: &str) -> u64 {
        self.connection_errors
            .get_or_create(&ReasonLabel { provider: provider.to_string(), reason: code.to_string() })
            .get()
    }

    pub fn producer_list(&self, provider: &str, outcome: &str) {
        self.producer_lists
            .get_or_create(&ReasonLabel { provider: provider.to_string(), reason: outcome.to_string() })
            .inc();
    }

    /// How many producers-list fetches of `outcome` were counted for `provider`.
    pub fn producer_lists_of(&self, provider: &str, outcome: &str) -> u64 {
        self.producer_lists
            .get_or_create(&ReasonLabel { provider: provider.to_string(), reason: outcome.to_string() })
            .get()
    }

    /// How many producer changes of `kind` were counted for `provider`'s `product`.
    pub fn producer_changes_of(&self, provider: &str, product: u32, kind: &str) -> u64 {
        self.producers
            .get_or_create(&ProducerLabel { provider: provider.to_string(), product, kind: kind.to_string() })
            .get()
    }

    /// Sets a producer's recovery counts.
    pub fn recoveries(&self, provider: &str, product: u32, counts: &crate::recovery::RecoveryCounts) {
        for (kind, count) in [
            ("requests", counts.requests),
            ("request_failures", counts.request_failures),
            ("replay_timeouts", counts.replay_timeouts),
            ("after_clamped", counts.after_clamped),
            ("stale_snapshots", counts.stale_snapshots),
            ("completed", counts.completed),
        ] {
            let label = ProducerLabel { provider: provider.to_string(), product, kind: kind.to_string() };
            self.recoveries.get_or_create(&label).set(count as i64);
        }
    }

    /// A producer's recovery count of `kind` as last exported.
    pub fn recoveries_of(&self, provider: &str, product: u32, kind: &str) -> i64 {
        self.recoveries
            .get_or_create(&ProducerLabel { provider: provider.to_string(), product, kind: kind.to_string() })
            .get()
    }

    /// Markets a producer going down suspended (kind `markets_suspended`).
    pub fn producer_markets_suspended(&self, provider: &str, product: u32, count: u64) {
        self.producer_markets(provider, product, "markets_suspended", count);
    }

    /// Adds `count` markets to a producer's `kind` (`markets_suspended`, `markets_held`,
    /// `markets_reopened`).
    pub fn producer_markets(&self, provider: &str, product: u32, kind: &str, count: u64) {
        self.producers
            .get_or_create(&ProducerLabel { provider: provider.to_string(), product, kind: kind.to_string() })
            .inc_by(count);
    }

    pub fn producer(&self, provider: &str, product: u32, kind: &str) {
        self.producers
            .get_or_create(&ProducerLabel { provider: provider.to_string(), product, kind: kind.to_string() })
            .inc();
    }

    /// Sets the name fallbacks of `provider` from its namer's counts.
    pub fn name_fallbacks(&self, provider: &str, counts: &crate::names::FallbackCounts) {
        use std::sync::atomic::Ordering;
        for (reason, count) in [
            ("unknown_market", &counts.unknown_market),
            ("unknown_outcome", &counts.unknown_outcome),
            ("unfilled", &counts.unfilled),
            ("malformed", &counts.malformed),
        ] {
            let label = FallbackLabel { provider: provider.to_string(), reason: reason.to_string() };
            self.name_fallbacks.get_or_create(&label).set(count.load(Ordering::Relaxed) as i64);
        }
    }

    pub fn switch(&self, provider: &str, kind: &str) {
        self.switches.get_or_create(&SwitchLabel { provider: provider.to_string(), kind: kind.to_string() }).inc();
    }
}
