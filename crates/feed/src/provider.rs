//! Runs the feed simulator as a live provider: price changes at a steady rate, a match-day
//! step (kick-offs, goals, full time) at an interval, heartbeats, and answers to recovery
//! requests, published through one or more outputs (primary and backups carry the same
//! messages with the same sequences, as a real provider's redundant endpoints do).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use book::FeedMessage;
use tokio::sync::mpsc;

use crate::runtime::{Control, SourceHandle};
use crate::simulator::FeedSimulator;
use crate::transport::{AmqpProvider, RecoveryRequest, WebSocketProvider};

/// How often a simulated provider sends a heartbeat.
pub const HEARTBEAT_INTERVAL: Duration = Duration::from_secs(1);

/// Where a simulated provider's messages go.
#[derive(Debug)]
pub enum Output {
    /// Straight to the hub, in this process (the demo).
    InProcess(SourceHandle),
    WebSocket(WebSocketProvider),
    Amqp(Box<AmqpProvider>),
}

impl Output {
    async fn publish(&mut self, messages: &[FeedMessage]) {
        self.publish_replay(messages, None).await;
    }

    /// Publishes messages; `request_id` marks a recovery replay (a UOF producer stamps it on
    /// every message of the replay and on its `snapshot_complete`).
    async fn publish_replay(&mut self, messages: &[FeedMessage], request_id: Option<u64>) {
        match self {
            Output::InProcess(source) => {
                for message in messages {
                    source.message(message.clone()).await;
                }
            }
            Output::WebSocket(provider) => provider.publish(messages),
            Output::Amqp(provider) => {
                for message in messages {
                    if let Err(error) = provider.publish(message, request_id).await {
                        tracing::warn!(%error, "simulated provider could not publish");
                    }
                }
            }
        }
    }

    async fn alive(&mut self, provider: &str, now: u64) {
        match self {
            Output::InProcess(source) => source.alive(),
            Output::WebSocket(server) => server.alive(provider, now),
            Output::Amqp(amqp) => {
                let _ = amqp.alive(now, true).await;
            }
        }
    }

    /// A recovery request, if this output has one waiting (in-process sources get theirs
    /// from the hub's control channel).
    fn take_recovery(&mut self) -> Option<u64> {
        match self {
            Output::InProcess(source) => match source.controls.try_recv() {
                Ok(Control::Recover { request_id, .. }) => Some(request_id),
                Err(_) => None,
            },
            _ => None,
        }
    }
}

/// How fast the simulated provider runs.
#[derive(Clone, Copy, Debug)]
pub struct Pace {
    /// Price changes per second.
    pub price_changes_per_second: u32,
    /// Wall time of one simulated match minute.
    pub minute: Duration,
    /// Stop the first output after this long (the primary dies; its backups go on): for
    /// trying failover.
    pub stop_first_after: Option<Duration>,
}

fn wall_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |elapsed| elapsed.as_millis() as u64)
}

/// Runs until the task is aborted. `recoveries` carries the requests of transport outputs
/// (WebSocket, AMQP); each is answered with a snapshot on every output.
pub async fn run(
    mut simulator: FeedSimulator,
    mut outputs: Vec<Output>,
    mut recoveries: Vec<mpsc::Receiver<RecoveryRequest>>,
    pace: Pace,
) {
    let opening = simulator.start(wall_ms());
    for output in &mut outputs {
        output.publish(&opening).await;
    }
    let tick = Duration::from_millis(10);
    let mut interval = tokio::time::interval(tick);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut last_heartbeat = tokio::time::Instant::now();
    let mut last_minute = tokio::time::Instant::now();
    let mut owed = 0.0f64;
    let started = tokio::time::Instant::now();
    let mut stop_first_after = pace.stop_first_after;
    loop {
        interval.tick().await;
        if stop_first_after.is_some_and(|after| started.elapsed() >= after) && !outputs.is_empty() {
            stop_first_after = None;
            tracing::warn!("simulated provider: the primary output stops now");
            // A WebSocket output's recovery requests come with it; an AMQP provider's come
            // through its HTTP API, which goes on.
            let websocket = matches!(outputs[0], Output::WebSocket(_));
            drop(outputs.remove(0));
            if websocket && !recoveries.is_empty() {
                drop(recoveries.remove(0));
            }
        }
        let now = wall_ms();
        let mut batch = Vec::new();
        let mut recover = None;
        for output in &mut outputs {
            recover = output.take_recovery().or(recover);
        }
        for receiver in &mut recoveries {
            while let Ok(request) = receiver.try_recv() {
                recover = Some(request.request_id);
            }
        }
        if let Some(request_id) = recover {
            let replay = simulator.snapshot(now);
            for output in &mut outputs {
                output.publish_replay(&replay, Some(request_id)).await;
            }
        }
        if last_minute.elapsed() >= pace.minute {
            last_minute = tokio::time::Instant::now();
            batch.extend(simulator.step(now));
        }
        owed += f64::from(pace.price_changes_per_second) * tick.as_secs_f64();
        while owed >= 1.0 {
            owed -= 1.0;
            batch.extend(simulator.price_change(now));
        }
        if !batch.is_empty() {
            for output in &mut outputs {
                output.publish(&batch).await;
            }
        }
        if last_heartbeat.elapsed() >= HEARTBEAT_INTERVAL {
            last_heartbeat = tokio::time::Instant::now();
            let provider = simulator.provider().to_string();
            for output in &mut outputs {
                output.alive(&provider, now).await;
            }
        }
    }
}
