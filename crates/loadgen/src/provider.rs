//! The run's odds provider (`--price-route feed`, the default): creates the load's fixtures and
//! markets with `fixture` and `market` items on `POST /v1/feed/messages`, then moves prices
//! with `odds_change` messages the way a push provider streams them: on a fixed schedule, the
//! changes due in each `--feed-batch-ms` interval in one request (one message, one sequence,
//! per change), every request sent without waiting for the one before; and an `alive`
//! heartbeat every second, so the server never judges the provider stale and suspends its
//! markets.
//!
//! The messages are the feed crate's own `JsonMessage` and `JsonItem`. The provider is
//! `loadgen` on every run, its sequences start at the wall clock in microseconds (so a run's
//! sequences are above the last run's, which the book would take for duplicates otherwise),
//! and setup ends with `snapshot_complete`: a provider that went stale after an earlier run
//! gets its markets back only from that.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ::feed::json::{JsonItem, JsonMessage, JsonOdds, JsonPrice, JsonSelection};
use hdrhistogram::Histogram;
use reqwest::Client;
use serde::Serialize;
use serde_json::Value;
use tokio::task::JoinSet;

use crate::http::{with_causes, Market, SportsbookTarget};
use crate::stats::{latency_histogram, Percentiles, PHASE_SIGNIFICANT_DIGITS};
use crate::subscribers::SendTimes;
use crate::workload::{format_price, Leg, PriceMoves, PriceTable, Workload, SELECTIONS_PER_MARKET};
use crate::LoadgenError;

/// The provider's name in every message.
pub const FEED_PROVIDER: &str = "loadgen";
/// An `alive` heartbeat this often: well inside the server's default `--feed-stale-after` of
/// 10 s.
pub const HEARTBEAT_INTERVAL: Duration = Duration::from_secs(1);
/// The shortest and longest batching interval of price changes.
pub const FEED_BATCH_MIN: Duration = Duration::from_millis(1);
pub const FEED_BATCH_MAX: Duration = Duration::from_secs(1);
/// Fixtures (two messages' worth of items each) per setup request.
const SETUP_FIXTURES_PER_REQUEST: usize = 100;
/// Price requests in flight at once; beyond it the driver waits and its next request carries
/// more changes (the schedule is kept by changes, not by requests).
const FEED_REQUESTS_IN_FLIGHT_MAX: usize = 256;
/// Events per page while finding the ids the book gave the feed's markets (the API's maximum).
const EVENTS_PAGE: usize = 200;
/// How long one feed request may take.
const FEED_REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// The provider's ids of a market and its selections.
const FEED_MARKET: &str = "1x2";
const FEED_SELECTIONS: [(&str, &str); SELECTIONS_PER_MARKET] = [("home", "Home"), ("draw", "Draw"), ("away", "Away")];
const _: () = assert!(HEARTBEAT_INTERVAL.as_secs() * 5 <= 10, "heartbeats well inside the default stale limit");

fn now_millis() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |since| since.as_millis() as u64)
}

/// The provider's id of the event of Zipf rank `rank` in run `run_id`.
fn feed_event(run_id: &str, rank: usize) -> String {
    format!("{run_id}-{rank}")
}

/// The event's name, the same as the admin route gives it (and how the book's ids are found).
pub(crate) fn event_name(run_id: &str, rank: usize) -> String {
    format!("Loadgen {run_id} match {rank}")
}

#[derive(Serialize)]
struct FeedBatch<'a> {
    messages: &'a [JsonMessage],
}

/// Pushes messages for the provider, numbering them.
#[derive(Debug)]
pub struct FeedProvider {
    client: Client,
    url: String,
    authorization: String,
    sequence: AtomicU64,
    heartbeats: AtomicU64,
    heartbeats_failed: AtomicU64,
    heartbeat_task: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl FeedProvider {
    pub fn new(client: Client, base_url: &str, key: &str) -> FeedProvider {
        let start = SystemTime::now().duration_since(UNIX_EPOCH).map_or(1, |since| since.as_micros() as u64);
        FeedProvider {
            client,
            url: format!("{}/v1/feed/messages", base_url.trim_end_matches('/')),
            authorization: format!("Bearer {key}"),
            sequence: AtomicU64::new(start),
            heartbeats: AtomicU64::new(0),
            heartbeats_failed: AtomicU64::new(0),
            heartbeat_task: Mutex::new(None),
        }
    }

    /// The next message, stamped now.
    pub fn message(&self, items: Vec<JsonItem>) -> JsonMessage {
        JsonMessage {
            provider: FEED_PROVIDER.to_string(),
            sequence: self.sequence.fetch_add(1, Ordering::Relaxed) + 1,
            timestamp: now_millis(),
            items,
        }
    }

    /// Sends a batch; the status of each message (`applied`, `duplicate`, `stale`, `partial`,
    /// `refused`, `heartbeat`) in order.
    pub async fn push(&self, messages: &[JsonMessage]) -> Result<Vec<String>, String> {
        let response = self
            .client
            .post(&self.url)
            .header(reqwest::header::AUTHORIZATION, &self.authorization)
            .json(&FeedBatch { messages })
            .timeout(FEED_REQUEST_TIMEOUT)
            .send()
            .await
            .map_err(|error| with_causes(&error))?;
        let status = response.status();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        if !status.is_success() {
            return Err(format!("POST /v1/feed/messages: {status} {body}"));
        }
        let results: Vec<String> = body["results"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|result| result["status"].as_str().unwrap_or("unknown").to_string())
            .collect();
        if results.len() != messages.len() {
            return Err(format!("POST /v1/feed/messages: {} results for {} messages", results.len(), messages.len()));
        }
        Ok(results)
    }

    /// Sends an `alive` heartbeat every `HEARTBEAT_INTERVAL` until `stop_heartbeats`.
    pub fn start_heartbeats(self: &Arc<Self>) {
        let provider = self.clone();
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(HEARTBEAT_INTERVAL);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let alive = provider.message(vec![JsonItem::Alive {}]);
                provider.heartbeats.fetch_add(1, Ordering::Relaxed);
                // Not awaited in line: a heartbeat stuck behind a busy server must not delay the next.
                let sender = provider.clone();
                tokio::spawn(async move {
                    if sender.push(std::slice::from_ref(&alive)).await.is_err() {
                        sender.heartbeats_failed.fetch_add(1, Ordering::Relaxed);
                    }
                });
            }
        });
        if let Some(old) = self.heartbeat_task.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).replace(task) {
            old.abort();
        }
    }

    pub fn stop_heartbeats(&self) {
        if let Some(task) = self.heartbeat_task.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).take() {
            task.abort();
        }
    }
}

/// Creates one fixture with one match-result market per Zipf rank through the feed, completes
/// the provider's snapshot, and finds the ids the book gave them in `GET /v1/events`.
pub(crate) async fn create_markets(
    provider: &FeedProvider,
    base_url: &str,
    run_id: &str,
    count: usize,
    prices: &PriceTable,
    progress: &indicatif::ProgressBar,
) -> Result<Vec<Market>, LoadgenError> {
    // A day ahead: pre-match all run long.
    let starts_at = now_millis() + 86_400_000;
    let ranks: Vec<usize> = (0..count).collect();
    for chunk in ranks.chunks(SETUP_FIXTURES_PER_REQUEST) {
        let messages: Vec<JsonMessage> = chunk
            .iter()
            .map(|&rank| {
                let event = feed_event(run_id, rank);
                let selections = FEED_SELECTIONS
                    .iter()
                    .enumerate()
                    .map(|(selection, (id, name))| JsonSelection {
                        id: id.to_string(),
                        name: name.to_string(),
                        price: format_price(prices.get(Leg { market: rank, selection })),
                    })
                    .collect();
                provider.message(vec![
                    JsonItem::Fixture {
                        event: event.clone(),
                        name: event_name(run_id, rank),
                        sport: "football".to_string(),
                        competition: "Loadgen".to_string(),
                        starts_at,
                    },
                    JsonItem::Market {
                        event,
                        market: FEED_MARKET.to_string(),
                        name: "Match result".to_string(),
                        kind: "1x2".to_string(),
                        selections,
                        each_way: None,
                    },
                ])
            })
            .collect();
        let results = provider.push(&messages).await.map_err(LoadgenError::Setup)?;
        if let Some(refused) = results.iter().find(|status| *status != "applied") {
            return Err(LoadgenError::Setup(format!("a fixture through the feed was answered {refused}")));
        }
        progress.inc(chunk.len() as u64);
    }
    let complete = provider.message(vec![JsonItem::SnapshotComplete {}]);
    let results = provider.push(std::slice::from_ref(&complete)).await.map_err(LoadgenError::Setup)?;
    if results[0] != "applied" {
        return Err(LoadgenError::Setup(format!("snapshot_complete was answered {}", results[0])));
    }
    find_markets(&provider.client, base_url, run_id, count).await
}

/// The book's ids of the run's markets, in rank order, from the catalog's pages.
async fn find_markets(
    client: &Client,
    base_url: &str,
    run_id: &str,
    count: usize,
) -> Result<Vec<Market>, LoadgenError> {
    let mut found: HashMap<String, Market> = HashMap::with_capacity(count);
    let mut cursor: Option<String> = None;
    let prefix = format!("Loadgen {run_id} match ");
    loop {
        let mut url = format!("{base_url}/v1/events?limit={EVENTS_PAGE}");
        if let Some(cursor) = &cursor {
            url.push_str(&format!("&cursor={cursor}"));
        }
        let page: Value = async { client.get(&url).send().await?.error_for_status()?.json().await }
            .await
            .map_err(|error: reqwest::Error| LoadgenError::Setup(format!("GET /v1/events: {}", with_causes(&error))))?;
        for event in page["items"].as_array().into_iter().flatten() {
            let Some(name) = event["name"].as_str().filter(|name| name.starts_with(&prefix)) else { continue };
            let market = &event["markets"][0];
            let ids: Vec<String> = market["selections"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|selection| selection["id"].as_str().map(str::to_string))
                .collect();
            let (Some(id), Ok(selections)) = (market["id"].as_str(), <[String; SELECTIONS_PER_MARKET]>::try_from(ids))
            else {
                return Err(LoadgenError::Setup(format!("event {name}: not one market of three selections")));
            };
            found.insert(name.to_string(), Market { id: id.to_string(), selections });
        }
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_string()),
            None => break,
        }
    }
    (0..count)
        .map(|rank| {
            found.remove(&event_name(run_id, rank)).ok_or_else(|| {
                LoadgenError::Setup(format!("the feed's market of rank {rank} is not in GET /v1/events"))
            })
        })
        .collect()
}

/// What the feed price driver sent and what the book made of it.
#[derive(Clone, Debug, Serialize)]
pub struct FeedDriverReport {
    /// Requests of price changes, and those that failed whole (transport, timeout, non-200).
    pub requests: u64,
    pub failed_requests: u64,
    /// Changes (one `odds_change` message each) sent, and each message's result.
    pub changes: u64,
    pub applied: u64,
    pub duplicate: u64,
    /// Older odds than the book already had for the market: a request overtaken by a later one.
    pub stale: u64,
    /// Refused whole or in part (`refused`, `partial`), or any other answer.
    pub refused: u64,
    pub heartbeats: u64,
    pub heartbeats_failed: u64,
    /// From sending a request to its answer: the changes are durable in the book.
    pub reply_ms: Percentiles,
}

#[derive(Debug)]
struct FeedCounts {
    requests: u64,
    failed_requests: u64,
    changes: u64,
    applied: u64,
    duplicate: u64,
    stale: u64,
    refused: u64,
    replies: Histogram<u64>,
    /// Per market, the sequence of the change the price table holds: answers come back in any
    /// order, and an older change must not overwrite a newer one.
    table_sequences: Vec<u64>,
}

/// Pushes `per_second` price changes through the feed until `stop`, batching every `batch`.
pub async fn drive_feed_prices(
    target: Arc<SportsbookTarget>,
    workload: Arc<Workload>,
    per_second: f64,
    batch: Duration,
    send_times: Arc<SendTimes>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> Option<FeedDriverReport> {
    let provider = target.feed()?.clone();
    let counts = Arc::new(Mutex::new(FeedCounts {
        requests: 0,
        failed_requests: 0,
        changes: 0,
        applied: 0,
        duplicate: 0,
        stale: 0,
        refused: 0,
        replies: latency_histogram(PHASE_SIGNIFICANT_DIGITS),
        table_sequences: vec![0; workload.options().markets],
    }));
    let mut moves = PriceMoves::new(workload.options().seed);
    let mut in_flight = JoinSet::new();
    if per_second > 0.0 {
        let mut tick = tokio::time::interval(batch.clamp(FEED_BATCH_MIN, FEED_BATCH_MAX));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let started = tokio::time::Instant::now();
        let mut sent = 0u64;
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = stop.changed() => break,
            }
            // The changes due by now on a constant rate, however late this tick is.
            let due = (started.elapsed().as_secs_f64() * per_second) as u64;
            if due <= sent {
                continue;
            }
            let mut changes = Vec::with_capacity((due - sent) as usize);
            let mut messages = Vec::with_capacity(changes.capacity());
            for _ in sent..due {
                let (market, moved) = moves.next(&workload, target.prices());
                let prices = FEED_SELECTIONS
                    .iter()
                    .zip(moved)
                    .map(|((selection, _), price)| JsonPrice {
                        selection: selection.to_string(),
                        price: format_price(price),
                    })
                    .collect();
                let odds = JsonOdds { market: FEED_MARKET.to_string(), prices, active: None };
                let message = provider.message(vec![JsonItem::OddsChange {
                    event: feed_event(target.run_id(), market),
                    markets: vec![odds],
                }]);
                changes.push((market, message.sequence, moved));
                messages.push(message);
            }
            sent = due;
            while in_flight.len() >= FEED_REQUESTS_IN_FLIGHT_MAX {
                in_flight.join_next().await;
            }
            while in_flight.try_join_next().is_some() {}
            send_times.mark(changes.iter().flat_map(|(_, _, moved)| *moved));
            let (provider, target, counts) = (provider.clone(), target.clone(), counts.clone());
            in_flight.spawn(async move {
                let sent_at = tokio::time::Instant::now();
                let results = provider.push(&messages).await;
                let took = sent_at.elapsed();
                let mut counts = counts.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
                counts.requests += 1;
                counts.changes += changes.len() as u64;
                let _ = counts.replies.record(crate::stats::micros(took));
                let Ok(results) = results else {
                    counts.failed_requests += 1;
                    return;
                };
                for ((market, sequence, moved), status) in changes.into_iter().zip(results) {
                    match status.as_str() {
                        "applied" => {
                            counts.applied += 1;
                            // Bets name the price the book has now.
                            if counts.table_sequences[market] < sequence {
                                counts.table_sequences[market] = sequence;
                                for (selection, price) in moved.into_iter().enumerate() {
                                    target.prices().set(Leg { market, selection }, price);
                                }
                            }
                        }
                        "duplicate" => counts.duplicate += 1,
                        "stale" => counts.stale += 1,
                        _ => counts.refused += 1,
                    }
                }
            });
        }
    } else {
        let _ = stop.changed().await;
    }
    while in_flight.join_next().await.is_some() {}
    let counts = counts.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    Some(FeedDriverReport {
        requests: counts.requests,
        failed_requests: counts.failed_requests,
        changes: counts.changes,
        applied: counts.applied,
        duplicate: counts.duplicate,
        stale: counts.stale,
        refused: counts.refused,
        heartbeats: provider.heartbeats.load(Ordering::Relaxed),
        heartbeats_failed: provider.heartbeats_failed.load(Ordering::Relaxed),
        reply_ms: Percentiles::of(&counts.replies),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_the_feed_crates_and_number_upwards() {
        let provider = FeedProvider::new(Client::new(), "http://127.0.0.1:1/", "sk_x");
        assert_eq!(provider.url, "http://127.0.0.1:1/v1/feed/messages");
        let first = provider.message(vec![JsonItem::Alive {}]);
        let second = provider.message(vec![JsonItem::SnapshotComplete {}]);
        assert_eq!(second.sequence, first.sequence + 1);
        assert!(first.is_heartbeat() && !second.is_heartbeat());
        // Sequences start at the wall clock in microseconds: above any earlier run's.
        let micros = SystemTime::now().duration_since(UNIX_EPOCH).expect("after 1970").as_micros() as u64;
        assert!(first.sequence <= micros && micros - first.sequence < 60_000_000);
        let text = serde_json::to_string(&FeedBatch { messages: &[first] }).expect("serializes");
        assert!(text.starts_with(r#"{"messages":[{"provider":"loadgen","sequence":"#), "{text}");
        assert!(text.ends_with(r#""items":[{"type":"alive"}]}]}"#), "{text}");
    }
}
