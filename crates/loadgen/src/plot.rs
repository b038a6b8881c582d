//! A hand-rolled SVG of one or more runs over time: accepted bets per second on top, p50 and
//! p99 latency per second below on a logarithmic scale (a few milliseconds and tens of seconds
//! must both be readable when a run is compared with a baseline that collapses), one colour
//! per run; with subscribers, their price delay p99 per second dotted in the latency panel.
//! A few hundred lines of plotting library
//! would cost more compile time than this whole file.

use std::fmt::Write;

use crate::stats::SecondReport;
use crate::subscribers::StreamSecondReport;

const WIDTH: f64 = 900.0;
const PANEL_HEIGHT: f64 = 240.0;
const MARGIN_LEFT: f64 = 70.0;
const MARGIN_RIGHT: f64 = 20.0;
const MARGIN_TOP: f64 = 40.0;
const PANEL_GAP: f64 = 60.0;
const COLOURS: [&str; 4] = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd"];
/// The bottom of the latency axis: 0.1 ms (and where an empty second is drawn).
const LATENCY_FLOOR_MS: f64 = 0.1;

/// How values map onto a panel's height.
#[derive(Clone, Copy)]
enum Scale {
    Linear {
        max: f64,
    },
    /// Powers of ten from `LATENCY_FLOOR_MS` to `max`.
    Log {
        max: f64,
    },
}

impl Scale {
    fn fraction(self, value: f64) -> f64 {
        match self {
            Scale::Linear { max } => value / max,
            Scale::Log { max } => {
                let low = LATENCY_FLOOR_MS.log10();
                (value.max(LATENCY_FLOOR_MS).log10() - low) / (max.log10() - low)
            }
        }
    }

    fn ticks(self) -> Vec<f64> {
        match self {
            Scale::Linear { max } => (0..=4).map(|step| max * f64::from(step) / 4.0).collect(),
            Scale::Log { max } => {
                let mut ticks = vec![LATENCY_FLOOR_MS];
                while ticks.last().is_some_and(|&tick| tick * 10.0 <= max * 1.000_001) {
                    let next = ticks.last().map_or(1.0, |&tick| tick * 10.0);
                    ticks.push(next);
                }
                ticks
            }
        }
    }
}

/// One line of the plot: a run's name and its seconds.
pub struct Series<'a> {
    pub name: &'a str,
    pub seconds: &'a [SecondReport],
    /// The subscribers' seconds, if the run had any.
    pub stream: &'a [StreamSecondReport],
}

/// The SVG document.
pub fn svg(title: &str, series: &[Series<'_>]) -> String {
    let seconds = series.iter().map(|one| one.seconds.len()).max().unwrap_or(0).max(1) as f64;
    let throughput_max = nice_ceiling(
        series.iter().flat_map(|one| one.seconds.iter().map(|second| second.accepted as f64)).fold(0.0, f64::max),
    );
    let throughput = Scale::Linear { max: throughput_max };
    // Up to the next power of ten, at least 10 ms.
    let latency_max = 10f64.powf(
        series
            .iter()
            .flat_map(|one| {
                one.seconds
                    .iter()
                    .map(|second| second.p99_ms)
                    .chain(one.stream.iter().map(|second| second.delay_p99_ms))
            })
            .fold(10.0, f64::max)
            .log10()
            .ceil(),
    );
    let latency = Scale::Log { max: latency_max };
    let height = MARGIN_TOP + 2.0 * PANEL_HEIGHT + PANEL_GAP + 50.0;
    let mut out = String::new();
    let _ = writeln!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" viewBox="0 0 {WIDTH} {height}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(out, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(out, r#"<text x="{MARGIN_LEFT}" y="20" font-size="14">{}</text>"#, escape(title));
    let top = MARGIN_TOP;
    let bottom = MARGIN_TOP + PANEL_HEIGHT + PANEL_GAP;
    axes(&mut out, top, seconds, throughput, "accepted bets / s");
    let label = if series.iter().any(|one| !one.stream.is_empty()) {
        "latency ms, log scale (solid p99, dashed p50; dotted: subscribers' price delay p99)"
    } else {
        "latency ms, log scale (solid p99, dashed p50)"
    };
    axes(&mut out, bottom, seconds, latency, label);
    for (index, one) in series.iter().enumerate() {
        let colour = COLOURS[index % COLOURS.len()];
        let accepted: Vec<(f64, f64)> =
            one.seconds.iter().map(|second| (second.second as f64, second.accepted as f64)).collect();
        polyline(&mut out, top, seconds, throughput, &accepted, colour, SOLID);
        let p99: Vec<(f64, f64)> = one.seconds.iter().map(|second| (second.second as f64, second.p99_ms)).collect();
        polyline(&mut out, bottom, seconds, latency, &p99, colour, SOLID);
        let p50: Vec<(f64, f64)> = one.seconds.iter().map(|second| (second.second as f64, second.p50_ms)).collect();
        polyline(&mut out, bottom, seconds, latency, &p50, colour, DASHED);
        let delay: Vec<(f64, f64)> =
            one.stream.iter().map(|second| (second.second as f64, second.delay_p99_ms)).collect();
        polyline(&mut out, bottom, seconds, latency, &delay, colour, DOTTED);
        let legend_x = WIDTH - MARGIN_RIGHT - 220.0;
        let legend_y = 20.0 + 16.0 * index as f64;
        let _ = writeln!(
            out,
            r#"<line x1="{legend_x}" y1="{}" x2="{}" y2="{}" stroke="{colour}" stroke-width="2"/><text x="{}" y="{}">{}</text>"#,
            legend_y - 4.0,
            legend_x + 20.0,
            legend_y - 4.0,
            legend_x + 26.0,
            legend_y,
            escape(one.name)
        );
    }
    let _ = writeln!(
        out,
        r#"<text x="{}" y="{}" text-anchor="middle">seconds of the run</text>"#,
        MARGIN_LEFT + (WIDTH - MARGIN_LEFT - MARGIN_RIGHT) / 2.0,
        height - 10.0
    );
    out.push_str("</svg>\n");
    out
}

fn x_of(second: f64, seconds: f64) -> f64 {
    MARGIN_LEFT + second / seconds * (WIDTH - MARGIN_LEFT - MARGIN_RIGHT)
}

fn y_of(value: f64, top: f64, scale: Scale) -> f64 {
    top + PANEL_HEIGHT - scale.fraction(value).clamp(0.0, 1.0) * PANEL_HEIGHT
}

fn axes(out: &mut String, top: f64, seconds: f64, scale: Scale, label: &str) {
    let left = MARGIN_LEFT;
    let right = WIDTH - MARGIN_RIGHT;
    let bottom = top + PANEL_HEIGHT;
    let _ = writeln!(
        out,
        r##"<rect x="{left}" y="{top}" width="{}" height="{PANEL_HEIGHT}" fill="none" stroke="#888"/>"##,
        right - left
    );
    for value in scale.ticks() {
        let y = y_of(value, top, scale);
        let _ = writeln!(
            out,
            r##"<line x1="{left}" y1="{y}" x2="{right}" y2="{y}" stroke="#eee"/><text x="{}" y="{}" text-anchor="end">{}</text>"##,
            left - 6.0,
            y + 4.0,
            format_tick(value)
        );
    }
    let tick_every = nice_ceiling(seconds / 10.0).max(1.0);
    let mut second = 0.0;
    while second <= seconds {
        let x = x_of(second, seconds);
        let _ = writeln!(out, r#"<text x="{x}" y="{}" text-anchor="middle">{second}</text>"#, bottom + 16.0);
        second += tick_every;
    }
    let _ = writeln!(out, r#"<text x="{left}" y="{}">{}</text>"#, top - 6.0, escape(label));
}

const SOLID: &str = "";
const DASHED: &str = r#" stroke-dasharray="4 3""#;
const DOTTED: &str = r#" stroke-dasharray="1 3""#;

fn polyline(out: &mut String, top: f64, seconds: f64, scale: Scale, points: &[(f64, f64)], colour: &str, dash: &str) {
    if points.is_empty() {
        return;
    }
    let coordinates: Vec<String> = points
        .iter()
        .map(|&(second, value)| format!("{:.1},{:.1}", x_of(second + 0.5, seconds), y_of(value, top, scale)))
        .collect();
    let _ = writeln!(
        out,
        r#"<polyline points="{}" fill="none" stroke="{colour}" stroke-width="1.5"{dash}/>"#,
        coordinates.join(" ")
    );
}

/// The next of 1, 2, 5 × 10^k at or above `value` (1 for nothing).
fn nice_ceiling(value: f64) -> f64 {
    if value <= 0.0 || !value.is_finite() {
        return 1.0;
    }
    let magnitude = 10f64.powf(value.log10().floor());
    for step in [1.0, 2.0, 5.0, 10.0] {
        if step * magnitude >= value {
            return step * magnitude;
        }
    }
    10.0 * magnitude
}

fn format_tick(value: f64) -> String {
    if value < 1.0 && value > 0.0 {
        format!("{value}")
    } else if value >= 1_000.0 && value % 1_000.0 == 0.0 {
        format!("{:.0}k", value / 1_000.0)
    } else if value >= 1_000.0 {
        format!("{:.1}k", value / 1_000.0)
    } else if value >= 10.0 || value == 0.0 {
        format!("{value:.0}")
    } else {
        format!("{value:.1}")
    }
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn second(index: u64, accepted: u64, p99_ms: f64) -> SecondReport {
        SecondReport {
            second: index,
            sent: accepted,
            accepted,
            shed: 0,
            rejected: 0,
            failed: 0,
            p50_ms: p99_ms / 2.0,
            p99_ms,
            max_ms: p99_ms,
        }
    }

    #[test]
    fn a_plot_has_a_line_per_run_and_metric() {
        let ours: Vec<SecondReport> = (0..10).map(|index| second(index, 1_000 + index * 100, 3.0)).collect();
        let theirs: Vec<SecondReport> = (0..10).map(|index| second(index, 200, 40.0)).collect();
        let stream: Vec<StreamSecondReport> = (0..10)
            .map(|index| StreamSecondReport { second: index, messages: 50, delay_p50_ms: 1.0, delay_p99_ms: 4.0 })
            .collect();
        let document = svg(
            "steady <test>",
            &[
                Series { name: "sportsbook", seconds: &ours, stream: &stream },
                Series { name: "postgres", seconds: &theirs, stream: &[] },
            ],
        );
        assert!(document.starts_with("<svg") && document.trim_end().ends_with("</svg>"));
        assert_eq!(document.matches("<polyline").count(), 7, "three lines a run, and the subscribers' delay");
        assert_eq!(document.matches(r#"stroke-dasharray="1 3""#).count(), 1);
        assert!(document.contains("subscribers' price delay p99"));
        assert!(document.contains("steady &lt;test&gt;"));
        // Throughput rounded up to 2k bets/s; latency in powers of ten from 0.1 ms to 100 ms.
        assert!(document.contains(">2k<"), "{document}");
        for tick in [">0.1<", ">1.0<", ">10<", ">100<"] {
            assert!(document.contains(tick), "{tick} in {document}");
        }
        let ticks = Scale::Log { max: 100.0 }.ticks();
        assert_eq!(ticks.len(), 4, "{ticks:?}");
        assert!((ticks[3] - 100.0).abs() < 1e-9, "{ticks:?}");
    }

    #[test]
    fn nice_ceilings() {
        assert_eq!(nice_ceiling(0.0), 1.0);
        assert_eq!(nice_ceiling(1_900.0), 2_000.0);
        assert_eq!(nice_ceiling(2_100.0), 5_000.0);
        assert_eq!(nice_ceiling(7.0), 10.0);
    }
}
