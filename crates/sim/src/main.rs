//! `sim`: runs the deterministic simulation for one seed or a range of seeds and prints what
//! it did; exits non-zero with `FAILED at seed S step K: ...` on the first violation.

use std::process::ExitCode;
use std::time::Instant;

use clap::Parser;
use sim::{JournalKind, Report, SimOptions};

#[derive(Parser, Debug)]
#[command(about = "Deterministic simulation of the book engine with faults, crashes and a reference auditor")]
struct Arguments {
    /// One seed to run.
    #[arg(long, conflicts_with = "seeds")]
    seed: Option<u64>,
    /// A range of seeds, `FIRST..END` (end excluded) or `FIRST..=LAST`.
    #[arg(long)]
    seeds: Option<String>,
    /// Steps per seed.
    #[arg(long, default_value_t = 10_000)]
    ops: u64,
    /// `memory`, `file`, or `alternate` (by seed parity).
    #[arg(long, default_value = "alternate")]
    journal: String,
    /// Run without failed syncs, crashes and torn tails.
    #[arg(long)]
    no_faults: bool,
    /// Run without the projector and its read-model checks (file journal runs have them).
    #[arg(long)]
    no_read_models: bool,
    /// Print only failures and a summary line per seed.
    #[arg(long)]
    quiet: bool,
}

fn parse_seeds(arguments: &Arguments) -> Result<std::ops::Range<u64>, String> {
    if let Some(seed) = arguments.seed {
        return Ok(seed..seed + 1);
    }
    let Some(text) = &arguments.seeds else {
        return Ok(1..2);
    };
    let parse = |part: &str| part.trim().parse::<u64>().map_err(|_| format!("bad seed range {text:?}"));
    if let Some((first, last)) = text.split_once("..=") {
        Ok(parse(first)?..parse(last)? + 1)
    } else if let Some((first, end)) = text.split_once("..") {
        Ok(parse(first)?..parse(end)?)
    } else {
        let seed = parse(text)?;
        Ok(seed..seed + 1)
    }
}

fn print_report(report: &Report, seconds: f64) {
    println!("seed {} done: {} steps on the {} journal in {seconds:.1} s", report.seed, report.steps, report.journal);
    let list = |map: &std::collections::BTreeMap<&'static str, u64>| {
        map.iter().map(|(name, count)| format!("{name} {count}")).collect::<Vec<_>>().join(", ")
    };
    println!("  operations: {}", list(&report.ops_by_kind));
    println!("  replies:    {}", list(&report.replies_by_code));
    let published: Vec<String> = report.published.iter().map(|(name, count)| format!("{name} {count}")).collect();
    println!("  published:  {}", published.join(", "));
    println!("  faults:     {}", if report.faults.is_empty() { "none".to_string() } else { list(&report.faults) });
    println!(
        "  crashes {}, recoveries {}, full checks {}, bets {}",
        report.crashes, report.recoveries, report.full_checks, report.bets
    );
    if report.read_model_checks > 0 {
        println!(
            "  read models: {} checks against the auditor, {} rows compared",
            report.read_model_checks, report.read_model_rows
        );
    }
    println!("  final digest {}", report.final_digest);
}

fn main() -> ExitCode {
    let arguments = Arguments::parse();
    let seeds = match parse_seeds(&arguments) {
        Ok(seeds) => seeds,
        Err(message) => {
            eprintln!("{message}");
            return ExitCode::from(2);
        }
    };
    let started = Instant::now();
    let mut passed = 0u64;
    for seed in seeds.clone() {
        let mut options = SimOptions::new(seed, arguments.ops);
        options.faults = !arguments.no_faults;
        options.read_models = !arguments.no_read_models;
        options.journal = match arguments.journal.as_str() {
            "memory" => JournalKind::Memory,
            "file" => JournalKind::File,
            _ => options.journal,
        };
        if !arguments.quiet {
            println!("seed {seed}: {} steps on the {} journal", arguments.ops, options.journal.as_str());
            options.progress = Some(Box::new(move |step, report| {
                println!(
                    "  seed {seed} step {step}: {} crashes, {} faults, {} full checks",
                    report.crashes,
                    report.faults.values().sum::<u64>(),
                    report.full_checks
                );
            }));
        }
        let seed_started = Instant::now();
        match sim::run(options) {
            Ok(report) => {
                passed += 1;
                if arguments.quiet {
                    println!("seed {seed} ok: {} steps, digest {}", report.steps, report.final_digest);
                } else {
                    print_report(&report, seed_started.elapsed().as_secs_f64());
                }
            }
            Err(failure) => {
                println!("{failure}");
                println!("reproduce with: cargo run --release -p sim -- --seed {seed} --ops {}", arguments.ops);
                return ExitCode::FAILURE;
            }
        }
    }
    println!("{passed} seeds passed in {:.1} s", started.elapsed().as_secs_f64());
    ExitCode::SUCCESS
}
