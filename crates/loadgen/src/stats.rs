//! Bookkeeping of a run: every request's outcome and its latency from the intended send time,
//! per phase (HDR histograms) and per second of the run (for the plot), and the reports built
//! from them.

use std::collections::BTreeMap;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

/// The largest latency the histograms tell apart; longer ones are recorded as this.
pub const LATENCY_MICROS_MAX: u64 = 120_000_000;
/// Significant decimal digits of the per-phase histograms (0.1% resolution).
pub(crate) const PHASE_SIGNIFICANT_DIGITS: u8 = 3;
/// The per-second histograms only feed a plot: 1% resolution is plenty and keeps a long soak
/// (one histogram per second) small.
pub(crate) const SECOND_SIGNIFICANT_DIGITS: u8 = 2;

/// How one request ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// 201 (or a committed baseline transaction).
    Accepted,
    /// 202: taken, in an in-play delay.
    Pending,
    /// A business rejection or a bad request: 4xx other than 429, with the body's code.
    Rejected { code: String },
    /// Shed by the server: 429 or 503, with the body's code, and whether `Retry-After` came
    /// with it (the API promises it does).
    Shed { code: String, retry_after_seconds: Option<u64> },
    /// Anything else the API does not promise: another 5xx, an unreadable body ...
    Unexpected { code: String },
    /// No answer within the request timeout.
    Timeout,
    /// The connection failed.
    Transport,
}

pub(crate) fn latency_histogram(digits: u8) -> Histogram<u64> {
    Histogram::new_with_bounds(1, LATENCY_MICROS_MAX, digits).expect("valid histogram bounds")
}

pub(crate) fn micros(latency: Duration) -> u64 {
    u64::try_from(latency.as_micros()).unwrap_or(u64::MAX).clamp(1, LATENCY_MICROS_MAX)
}

#[derive(Clone, Debug)]
struct PhaseStats {
    /// Latency of accepted (and pending) requests, in microseconds from the intended time.
    accepted: Histogram<u64>,
    /// Latency of every answered request, whatever the answer.
    answered: Histogram<u64>,
    counts: Counts,
}

#[derive(Clone, Debug, Default)]
struct Counts {
    sent: u64,
    accepted: u64,
    pending: u64,
    rejected: BTreeMap<String, u64>,
    shed: BTreeMap<String, u64>,
    shed_without_retry_after: u64,
    retry_after_seconds_total: u64,
    unexpected: BTreeMap<String, u64>,
    timeouts: u64,
    transport_errors: u64,
    /// Scheduled but never sent: the dispatcher was still waiting for a free slot when the
    /// sending window closed.
    missed_sends: u64,
    /// Sent more than `LATE_SEND_THRESHOLD` after their intended time.
    late_sends: u64,
    /// When the last accepted bet of the phase was answered, from the start of the run.
    last_accepted_answer: Duration,
}

/// A send this much after its intended time counts as late (the generator itself fell behind,
/// or the concurrency cap was reached). Their latency still counts from the intended time.
pub const LATE_SEND_THRESHOLD: Duration = Duration::from_millis(5);

#[derive(Clone, Debug)]
struct SecondStats {
    sent: u64,
    accepted: u64,
    shed: u64,
    rejected: u64,
    failed: u64,
    latency: Histogram<u64>,
}

impl SecondStats {
    fn new() -> SecondStats {
        SecondStats {
            sent: 0,
            accepted: 0,
            shed: 0,
            rejected: 0,
            failed: 0,
            latency: latency_histogram(SECOND_SIGNIFICANT_DIGITS),
        }
    }
}

/// Everything recorded during one run.
#[derive(Clone, Debug)]
pub struct Recorder {
    phase_names: Vec<String>,
    phase_bounds: Vec<(Duration, Duration)>,
    phases: Vec<PhaseStats>,
    seconds: Vec<SecondStats>,
}

impl Recorder {
    /// `phases`: name, start and end offset of each phase; `horizon`: the latest an answer can
    /// come (the end of the schedule, the sending grace and the request timeout), so that the
    /// per-second buckets also show how a target drains what it queued.
    pub fn new(phases: Vec<(String, Duration, Duration)>, horizon: Duration) -> Recorder {
        let total = phases.last().map_or(Duration::ZERO, |phase| phase.2).max(horizon);
        Recorder {
            phase_names: phases.iter().map(|phase| phase.0.clone()).collect(),
            phase_bounds: phases.iter().map(|phase| (phase.1, phase.2)).collect(),
            phases: phases
                .iter()
                .map(|_| PhaseStats {
                    accepted: latency_histogram(PHASE_SIGNIFICANT_DIGITS),
                    answered: latency_histogram(PHASE_SIGNIFICANT_DIGITS),
                    counts: Counts::default(),
                })
                .collect(),
            seconds: (0..total.as_secs() + 1).map(|_| SecondStats::new()).collect(),
        }
    }

    /// A request of phase `phase` intended at `intended` (from the start) was sent `send_delay`
    /// after that and answered `latency` after its intended time.
    pub fn record(
        &mut self,
        phase: usize,
        intended: Duration,
        send_delay: Duration,
        latency: Duration,
        outcome: &Outcome,
    ) {
        let stats = &mut self.phases[phase];
        let counts = &mut stats.counts;
        counts.sent += 1;
        if send_delay > LATE_SEND_THRESHOLD {
            counts.late_sends += 1;
        }
        let latency_micros = micros(latency);
        // Per second of the answer: the plot shows what the server delivered when.
        let second_index = ((intended + latency).as_secs() as usize).min(self.seconds.len() - 1);
        let second = &mut self.seconds[second_index];
        second.sent += 1;
        match outcome {
            Outcome::Accepted | Outcome::Pending => {
                if *outcome == Outcome::Accepted {
                    counts.accepted += 1;
                } else {
                    counts.pending += 1;
                }
                stats.accepted.saturating_record(latency_micros);
                counts.last_accepted_answer = counts.last_accepted_answer.max(intended + latency);
                second.accepted += 1;
                second.latency.saturating_record(latency_micros);
            }
            Outcome::Rejected { code } => {
                *counts.rejected.entry(code.clone()).or_default() += 1;
                second.rejected += 1;
            }
            Outcome::Shed { code, retry_after_seconds } => {
                *counts.shed.entry(code.clone()).or_default() += 1;
                match retry_after_seconds {
                    Some(seconds) => counts.retry_after_seconds_total += seconds,
                    None => counts.shed_without_retry_after += 1,
                }
                second.shed += 1;
            }
            Outcome::Unexpected { code } => {
                *counts.unexpected.entry(code.clone()).or_default() += 1;
                second.failed += 1;
            }
            Outcome::Timeout => {
                counts.timeouts += 1;
                second.failed += 1;
            }
            Outcome::Transport => {
                counts.transport_errors += 1;
                second.failed += 1;
            }
        }
        if !matches!(outcome, Outcome::Timeout | Outcome::Transport) {
            stats.answered.saturating_record(latency_micros);
        }
    }

    /// A request of phase `phase` that was never sent.
    pub fn record_missed(&mut self, phase: usize) {
        self.phases[phase].counts.missed_sends += 1;
    }

    pub fn phase_reports(&self) -> Vec<PhaseReport> {
        self.phases
            .iter()
            .enumerate()
            .map(|(index, stats)| {
                let (start, end) = self.phase_bounds[index];
                let counts = &stats.counts;
                // Over the phase, or until its last accepted bet was answered if that was later:
                // a target that queues bets and answers them after the phase is not credited
                // with the phase's rate.
                let seconds = (end - start).max(counts.last_accepted_answer.saturating_sub(start)).as_secs_f64();
                PhaseReport {
                    name: self.phase_names[index].clone(),
                    start_s: start.as_secs_f64(),
                    end_s: end.as_secs_f64(),
                    scheduled: counts.sent + counts.missed_sends,
                    sent: counts.sent,
                    late_sends: counts.late_sends,
                    missed_sends: counts.missed_sends,
                    accepted: counts.accepted,
                    pending: counts.pending,
                    accepted_per_second: if seconds > 0.0 { counts.accepted as f64 / seconds } else { 0.0 },
                    latency_ms: Percentiles::of(&stats.accepted),
                    answered_latency_ms: Percentiles::of(&stats.answered),
                    rejections: counts.rejected.clone(),
                    shed: counts.shed.clone(),
                    shed_without_retry_after: counts.shed_without_retry_after,
                    retry_after_seconds_total: counts.retry_after_seconds_total,
                    unexpected: counts.unexpected.clone(),
                    timeouts: counts.timeouts,
                    transport_errors: counts.transport_errors,
                }
            })
            .collect()
    }

    /// The whole run as one phase.
    pub fn total_report(&self, name: &str) -> PhaseReport {
        let mut merged = self.phases[0].clone();
        for stats in &self.phases[1..] {
            merged.accepted.add(&stats.accepted).expect("same bounds");
            merged.answered.add(&stats.answered).expect("same bounds");
            let (into, from) = (&mut merged.counts, &stats.counts);
            into.sent += from.sent;
            into.accepted += from.accepted;
            into.pending += from.pending;
            into.shed_without_retry_after += from.shed_without_retry_after;
            into.retry_after_seconds_total += from.retry_after_seconds_total;
            into.timeouts += from.timeouts;
            into.transport_errors += from.transport_errors;
            into.missed_sends += from.missed_sends;
            into.late_sends += from.late_sends;
            into.last_accepted_answer = into.last_accepted_answer.max(from.last_accepted_answer);
            for (map, other) in [
                (&mut into.rejected, &from.rejected),
                (&mut into.shed, &from.shed),
                (&mut into.unexpected, &from.unexpected),
            ] {
                for (code, count) in other {
                    *map.entry(code.clone()).or_default() += count;
                }
            }
        }
        let end = self.phase_bounds.last().map_or(Duration::ZERO, |bounds| bounds.1);
        let one = Recorder {
            phase_names: vec![name.to_string()],
            phase_bounds: vec![(Duration::ZERO, end)],
            phases: vec![merged],
            seconds: Vec::new(),
        };
        one.phase_reports().remove(0)
    }

    /// Every second up to the last one in which an answer came.
    pub fn second_reports(&self) -> Vec<SecondReport> {
        let used = self.seconds.iter().rposition(|second| second.sent > 0).map_or(0, |last| last + 1);
        self.seconds[..used]
            .iter()
            .enumerate()
            .map(|(second, stats)| SecondReport {
                second: second as u64,
                sent: stats.sent,
                accepted: stats.accepted,
                shed: stats.shed,
                rejected: stats.rejected,
                failed: stats.failed,
                p50_ms: quantile_ms(&stats.latency, 0.50),
                p99_ms: quantile_ms(&stats.latency, 0.99),
                max_ms: if stats.latency.is_empty() { 0.0 } else { stats.latency.max() as f64 / 1_000.0 },
            })
            .collect()
    }
}

pub(crate) fn quantile_ms(histogram: &Histogram<u64>, quantile: f64) -> f64 {
    if histogram.is_empty() {
        return 0.0;
    }
    histogram.value_at_quantile(quantile) as f64 / 1_000.0
}

/// Latency percentiles in milliseconds (0 when nothing was recorded).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Percentiles {
    pub count: u64,
    pub p50: f64,
    pub p95: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
    pub mean: f64,
}

impl Percentiles {
    pub(crate) fn of(histogram: &Histogram<u64>) -> Percentiles {
        Percentiles {
            count: histogram.len(),
            p50: quantile_ms(histogram, 0.50),
            p95: quantile_ms(histogram, 0.95),
            p99: quantile_ms(histogram, 0.99),
            p999: quantile_ms(histogram, 0.999),
            max: if histogram.is_empty() { 0.0 } else { histogram.max() as f64 / 1_000.0 },
            mean: if histogram.is_empty() { 0.0 } else { histogram.mean() / 1_000.0 },
        }
    }
}

/// One phase of a run, as written to the JSON result.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PhaseReport {
    pub name: String,
    pub start_s: f64,
    pub end_s: f64,
    /// Requests the schedule asked for: `sent` + `missed_sends`.
    pub scheduled: u64,
    pub sent: u64,
    pub late_sends: u64,
    pub missed_sends: u64,
    pub accepted: u64,
    pub pending: u64,
    /// Accepted bets over the phase's length, or over the time until the last of them was
    /// answered if that was longer (a target that falls behind is not credited with the rate
    /// it was offered).
    pub accepted_per_second: f64,
    /// Latency of accepted bets, from the intended send time to the end of the response.
    pub latency_ms: Percentiles,
    /// Latency of every answered request (accepted, rejected or shed).
    pub answered_latency_ms: Percentiles,
    /// Business rejections and bad requests by error code.
    pub rejections: BTreeMap<String, u64>,
    /// 429/503 answers by error code.
    pub shed: BTreeMap<String, u64>,
    /// Shed answers that came without `Retry-After` (the API promises one).
    pub shed_without_retry_after: u64,
    /// The `Retry-After` seconds the shed answers asked for, added up.
    pub retry_after_seconds_total: u64,
    /// Answers the API does not promise (500, 502, an unreadable body ...), by code.
    pub unexpected: BTreeMap<String, u64>,
    pub timeouts: u64,
    pub transport_errors: u64,
}

impl PhaseReport {
    /// Errors other than explicit rejections and 429/503 with `Retry-After`: what the derby
    /// aim allows none of.
    pub fn unexplained_failures(&self) -> u64 {
        self.unexpected.values().sum::<u64>()
            + self.timeouts
            + self.transport_errors
            + self.shed_without_retry_after
            + self.missed_sends
    }
}

/// One second of a run (by the time answers arrived), for the plot.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SecondReport {
    pub second: u64,
    pub sent: u64,
    pub accepted: u64,
    pub shed: u64,
    pub rejected: u64,
    pub failed: u64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(value: u64) -> Duration {
        Duration::from_millis(value)
    }

    #[test]
    fn outcomes_land_in_their_phase_and_second() {
        let mut recorder = Recorder::new(
            vec![("calm".to_string(), ms(0), ms(2_000)), ("spike".to_string(), ms(2_000), ms(3_000))],
            ms(5_000),
        );
        for index in 0..100 {
            recorder.record(0, ms(10 * index), Duration::ZERO, ms(index + 1), &Outcome::Accepted);
        }
        recorder.record(0, ms(1_500), ms(50), ms(700), &Outcome::Pending);
        recorder.record(1, ms(2_100), Duration::ZERO, ms(3), &Outcome::Rejected { code: "price_changed".to_string() });
        recorder.record(1, ms(2_100), Duration::ZERO, ms(3), &Outcome::Rejected { code: "price_changed".to_string() });
        recorder.record(
            1,
            ms(2_200),
            Duration::ZERO,
            ms(1),
            &Outcome::Shed { code: "overloaded".to_string(), retry_after_seconds: Some(2) },
        );
        recorder.record(
            1,
            ms(2_200),
            Duration::ZERO,
            ms(1),
            &Outcome::Shed { code: "rate_limited".to_string(), retry_after_seconds: None },
        );
        recorder.record(1, ms(2_300), Duration::ZERO, ms(10_000), &Outcome::Timeout);
        recorder.record_missed(1);

        let phases = recorder.phase_reports();
        let calm = &phases[0];
        assert_eq!((calm.sent, calm.accepted, calm.pending, calm.late_sends), (101, 100, 1, 1));
        // The pending bet was answered at 2.2 s: the phase's bets took 2.2 s, not 2.
        assert!((calm.accepted_per_second - 100.0 / 2.2).abs() < 1e-9, "{}", calm.accepted_per_second);
        let latency = &calm.latency_ms;
        assert_eq!(latency.count, 101);
        assert!((50.0..=51.1).contains(&latency.p50), "{latency:?}");
        assert!(latency.p50 <= latency.p95 && latency.p95 <= latency.p99 && latency.p99 <= latency.p999);
        assert!((699.0..=701.0).contains(&latency.max), "{latency:?}");

        let spike = &phases[1];
        assert_eq!(spike.rejections.get("price_changed"), Some(&2));
        assert_eq!(spike.shed.get("overloaded"), Some(&1));
        assert_eq!(spike.shed.get("rate_limited"), Some(&1));
        assert_eq!((spike.shed_without_retry_after, spike.retry_after_seconds_total), (1, 2));
        assert_eq!((spike.timeouts, spike.missed_sends, spike.scheduled), (1, 1, 6));
        assert_eq!(spike.accepted, 0);
        assert_eq!(spike.latency_ms.p99, 0.0, "no accepted bets, no latency");
        assert_eq!(spike.unexplained_failures(), 3, "the timeout, the shed without Retry-After, the missed send");

        let total = recorder.total_report("total");
        assert_eq!((total.sent, total.accepted, total.scheduled), (106, 100, 107));
        assert_eq!(total.rejections.get("price_changed"), Some(&2));

        let seconds = recorder.second_reports();
        assert_eq!(seconds.len(), 6);
        // 100 accepted in the first second (answers by 1 s), the pending one answered at 2.2 s.
        assert_eq!(seconds[0].accepted + seconds[1].accepted, 100);
        assert_eq!(seconds[2].accepted, 1);
        assert_eq!(seconds[2].rejected, 2);
        // The timeout (answered at 12.3 s, past the horizon) is clamped into the last second.
        assert_eq!(seconds[5].failed, 1);
        assert!(seconds.iter().all(|second| second.p50_ms <= second.p99_ms && second.p99_ms <= second.max_ms));
    }
}
