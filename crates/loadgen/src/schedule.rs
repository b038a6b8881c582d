//! The arrival schedule of an open-loop run: phases of constant or linearly changing rate, and
//! the intended send time of every request in them.
//!
//! The schedule is fixed before the run starts and does not depend on how fast the server
//! answers: that is what makes the generator open-loop. A request's latency is measured from
//! its intended time here, so time it spends waiting in the generator (for a connection, for a
//! concurrency slot, for the dispatcher to catch up) counts against the server, as it would for
//! a real client (wrk2's and HdrHistogram's "coordinated omission" correction, done by
//! construction instead of after the fact).

use std::time::Duration;

/// Requests per second a schedule may ask for in any phase.
pub const RATE_PER_SECOND_MAX: f64 = 200_000.0;
/// Length of a whole run.
pub const RUN_DURATION_MAX: Duration = Duration::from_secs(6 * 3_600);
/// Requests in one run, whatever the rates and durations say.
pub const REQUESTS_MAX: u64 = 50_000_000;

/// One phase: a rate that goes linearly from `rate_start` to `rate_end` over `duration`.
#[derive(Clone, Debug, PartialEq)]
pub struct Phase {
    pub name: String,
    pub duration: Duration,
    pub rate_start: f64,
    pub rate_end: f64,
}

impl Phase {
    pub fn constant(name: &str, duration: Duration, rate: f64) -> Phase {
        Phase { name: name.to_string(), duration, rate_start: rate, rate_end: rate }
    }

    pub fn ramp(name: &str, duration: Duration, rate_start: f64, rate_end: f64) -> Phase {
        Phase { name: name.to_string(), duration, rate_start, rate_end }
    }

    /// Expected requests in the phase: the integral of its rate.
    pub fn expected_requests(&self) -> f64 {
        (self.rate_start + self.rate_end) / 2.0 * self.duration.as_secs_f64()
    }
}

/// The load profiles of `sportsbook loadgen --profile`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProfileKind {
    /// One phase at a constant rate.
    Steady,
    /// Calm at the base rate, a ramp to `spike_factor` times it, a hold, a decay back, calm again.
    Derby,
    /// One long phase at a moderate constant rate.
    Soak,
}

impl ProfileKind {
    pub fn name(self) -> &'static str {
        match self {
            ProfileKind::Steady => "steady",
            ProfileKind::Derby => "derby",
            ProfileKind::Soak => "soak",
        }
    }
}

/// The shape of a derby night. Durations are in seconds of the run.
#[derive(Clone, Debug, PartialEq)]
pub struct DerbyShape {
    pub spike_factor: f64,
    /// At the base rate before the spike, and again after it.
    pub calm: Duration,
    /// From the base rate to the spike rate.
    pub ramp: Duration,
    /// At the spike rate.
    pub hold: Duration,
    /// From the spike rate back to the base rate.
    pub decay: Duration,
}

impl Default for DerbyShape {
    fn default() -> DerbyShape {
        DerbyShape {
            spike_factor: 15.0,
            calm: Duration::from_secs(10),
            ramp: Duration::from_secs(5),
            hold: Duration::from_secs(20),
            decay: Duration::from_secs(10),
        }
    }
}

/// The phases of a profile at `rate` (the derby's base rate) for `duration` (steady and soak).
pub fn phases(kind: ProfileKind, rate: f64, duration: Duration, derby: &DerbyShape) -> Vec<Phase> {
    match kind {
        ProfileKind::Steady => vec![Phase::constant("steady", duration, rate)],
        ProfileKind::Soak => vec![Phase::constant("soak", duration, rate)],
        ProfileKind::Derby => {
            let spike = rate * derby.spike_factor;
            vec![
                Phase::constant("calm", derby.calm, rate),
                Phase::ramp("ramp", derby.ramp, rate, spike),
                Phase::constant("spike", derby.hold, spike),
                Phase::ramp("decay", derby.decay, spike, rate),
                Phase::constant("after", derby.calm, rate),
            ]
        }
    }
}

#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum ScheduleError {
    #[error("a schedule needs at least one phase")]
    Empty,
    #[error("phase {phase}: rate {rate}/s is outside 0..={max}/s")]
    Rate { phase: String, rate: f64, max: f64 },
    #[error("the run lasts {seconds:.0} s, more than the {max_seconds} s allowed")]
    TooLong { seconds: f64, max_seconds: u64 },
}

/// When one request is meant to be sent.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Arrival {
    /// 0, 1, 2 ... in send order; the workload draws the request from it.
    pub sequence: u64,
    /// Intended send time from the start of the run.
    pub offset: Duration,
    /// Index of the phase it belongs to.
    pub phase: usize,
}

/// Validated phases plus a cap on the number of requests.
#[derive(Clone, Debug)]
pub struct Schedule {
    phases: Vec<Phase>,
    requests_max: u64,
}

impl Schedule {
    pub fn new(phases: Vec<Phase>, requests_max: u64) -> Result<Schedule, ScheduleError> {
        if phases.is_empty() {
            return Err(ScheduleError::Empty);
        }
        for phase in &phases {
            for rate in [phase.rate_start, phase.rate_end] {
                if !(0.0..=RATE_PER_SECOND_MAX).contains(&rate) || rate.is_nan() {
                    return Err(ScheduleError::Rate { phase: phase.name.clone(), rate, max: RATE_PER_SECOND_MAX });
                }
            }
        }
        let seconds: f64 = phases.iter().map(|phase| phase.duration.as_secs_f64()).sum();
        if seconds > RUN_DURATION_MAX.as_secs_f64() {
            return Err(ScheduleError::TooLong { seconds, max_seconds: RUN_DURATION_MAX.as_secs() });
        }
        Ok(Schedule { phases, requests_max: requests_max.min(REQUESTS_MAX) })
    }

    pub fn phases(&self) -> &[Phase] {
        &self.phases
    }

    pub fn duration(&self) -> Duration {
        self.phases.iter().map(|phase| phase.duration).sum()
    }

    /// Start and end offsets of phase `index`.
    pub fn phase_bounds(&self, index: usize) -> (Duration, Duration) {
        let start: Duration = self.phases[..index].iter().map(|phase| phase.duration).sum();
        (start, start + self.phases[index].duration)
    }

    /// Every arrival, in order. The n-th arrival (from 0) is where the cumulative expected
    /// count, the integral of the rate from the start, reaches n.
    pub fn arrivals(&self) -> Arrivals<'_> {
        Arrivals { schedule: self, phase: 0, phase_start: Duration::ZERO, count_at_phase_start: 0.0, next: 0 }
    }

    /// How many arrivals the schedule has (walks it; cheap next to sending them).
    pub fn len(&self) -> u64 {
        self.arrivals().count() as u64
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

pub struct Arrivals<'a> {
    schedule: &'a Schedule,
    phase: usize,
    phase_start: Duration,
    /// The integral of the rate from the start of the run to the start of `phase`.
    count_at_phase_start: f64,
    next: u64,
}

impl Iterator for Arrivals<'_> {
    type Item = Arrival;

    fn next(&mut self) -> Option<Arrival> {
        if self.next >= self.schedule.requests_max {
            return None;
        }
        while let Some(phase) = self.schedule.phases.get(self.phase) {
            let wanted = self.next as f64 - self.count_at_phase_start;
            if wanted < phase.expected_requests() {
                let offset = self.phase_start + Duration::from_secs_f64(time_of_count(phase, wanted));
                let arrival = Arrival { sequence: self.next, offset, phase: self.phase };
                self.next += 1;
                return Some(arrival);
            }
            self.count_at_phase_start += phase.expected_requests();
            self.phase_start += phase.duration;
            self.phase += 1;
        }
        None
    }
}

/// The time into a phase at which its expected count reaches `count` (0 <= count < total).
/// With rate a + b·t the count is a·t + b·t²/2; the root is written as 2c / (a + sqrt(a² + 2bc))
/// which stays exact when b is 0 and does not cancel when b is small.
fn time_of_count(phase: &Phase, count: f64) -> f64 {
    let seconds = phase.duration.as_secs_f64();
    let a = phase.rate_start;
    let b = (phase.rate_end - phase.rate_start) / seconds;
    let denominator = a + (a * a + 2.0 * b * count).max(0.0).sqrt();
    if denominator <= 0.0 {
        return 0.0;
    }
    (2.0 * count / denominator).clamp(0.0, seconds)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offsets(schedule: &Schedule) -> Vec<f64> {
        schedule.arrivals().map(|arrival| arrival.offset.as_secs_f64()).collect()
    }

    #[test]
    fn constant_rate_is_evenly_spaced_and_independent_of_anything_else() {
        let schedule =
            Schedule::new(vec![Phase::constant("steady", Duration::from_secs(2), 100.0)], u64::MAX).expect("schedule");
        let times = offsets(&schedule);
        assert_eq!(times.len(), 200);
        for (index, time) in times.iter().enumerate() {
            assert!((time - index as f64 * 0.01).abs() < 1e-9, "arrival {index} at {time}");
        }
        // Open loop: the schedule is the same every time it is walked.
        assert_eq!(times, offsets(&schedule));
    }

    #[test]
    fn derby_ramps_to_fifteen_times_within_the_ramp_and_back() {
        let shape = DerbyShape::default();
        let schedule =
            Schedule::new(phases(ProfileKind::Derby, 100.0, Duration::ZERO, &shape), u64::MAX).expect("schedule");
        let mut per_second = vec![0u64; schedule.duration().as_secs() as usize];
        let mut per_phase = [0u64; 5];
        for arrival in schedule.arrivals() {
            per_second[arrival.offset.as_secs() as usize] += 1;
            per_phase[arrival.phase] += 1;
        }
        // calm 10 s at 100/s, ramp 5 s from 100 to 1500 (800 on average), hold 20 s at 1500,
        // decay 10 s back (800 on average), calm 10 s.
        assert_eq!(per_phase, [1_000, 4_000, 30_000, 8_000, 1_000]);
        assert!((99..=101).contains(&per_second[5]));
        // The ramp's seconds rise strictly, the first near the base, the last near the spike.
        let ramp = &per_second[10..15];
        assert!(ramp.windows(2).all(|pair| pair[0] < pair[1]), "{ramp:?}");
        assert!((238..=242).contains(&ramp[0]), "{ramp:?}");
        assert!((1_358..=1_362).contains(&ramp[4]), "{ramp:?}");
        // Fifteen times the base, reached by the end of the five-second ramp.
        assert!(per_second[15..35].iter().all(|&count| (1_499..=1_501).contains(&count)), "{:?}", &per_second[15..35]);
        let decay = &per_second[35..45];
        assert!(decay.windows(2).all(|pair| pair[0] > pair[1]), "{decay:?}");
        assert!((99..=101).contains(&per_second[50]));
        let times = offsets(&schedule);
        assert!(times.windows(2).all(|pair| pair[0] <= pair[1]), "arrivals go forward in time");
    }

    #[test]
    fn requests_max_and_limits_are_enforced() {
        let schedule =
            Schedule::new(vec![Phase::constant("steady", Duration::from_secs(10), 1_000.0)], 123).expect("schedule");
        assert_eq!(schedule.len(), 123);
        let too_fast = Schedule::new(vec![Phase::constant("x", Duration::from_secs(1), 1e9)], 10);
        assert!(matches!(too_fast, Err(ScheduleError::Rate { .. })));
        let too_long = Schedule::new(vec![Phase::constant("x", RUN_DURATION_MAX * 2, 1.0)], 10);
        assert!(matches!(too_long, Err(ScheduleError::TooLong { .. })));
        assert_eq!(Schedule::new(vec![], 10).err(), Some(ScheduleError::Empty));
        let idle = Schedule::new(vec![Phase::constant("idle", Duration::from_secs(5), 0.0)], 10).expect("schedule");
        assert!(idle.is_empty());
    }
}
