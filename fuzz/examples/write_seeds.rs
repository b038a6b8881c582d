//! Writes the seed corpora of the binary-format targets from a real book: journal records and
//! batches of the commands that built it, and its snapshot at a few points. Run it after a
//! format change, from `fuzz/`, as a plain build (an instrumented one lacks libFuzzer's `main`):
//!
//! ```text
//! CARGO_TARGET_DIR=../target/fuzz-seeds cargo run --example write_seeds
//! ```

use std::path::Path;

use book::{AccountId, Command, LegRequest, PlaceBet, PricePolicy, ResultRequest, SelectionId};
use domain::{Money, Odds, Ratio};
use sportsbook_fuzz::{small_book, NOW_MS};

fn write(target: &str, name: &str, bytes: &[u8]) {
    let dir = Path::new("corpus").join(target);
    std::fs::create_dir_all(&dir).expect("corpus directory");
    std::fs::write(dir.join(name), bytes).expect("seed written");
}

fn main() {
    let mut book = small_book();
    let odds = |text: &str| Odds::parse(text).expect("odds");
    let commands = [
        Command::PlaceBet(PlaceBet {
            account: AccountId(1),
            kind: book::BetKind::Multiple,
            legs: vec![
                LegRequest { selection: SelectionId(1), price: odds("2.50") },
                LegRequest { selection: SelectionId(4), price: odds("1.50") },
            ],
            stake: Money::from_minor(1_000),
            each_way: false,
            policy: PricePolicy::Better,
            idempotency: Some(book::Idempotency { key: "bet-1".into(), body_hash: 7 }),
        }),
        Command::PlaceBet(PlaceBet {
            account: AccountId(2),
            kind: book::BetKind::Single,
            legs: vec![LegRequest { selection: SelectionId(2), price: odds("3.20") }],
            stake: Money::from_minor(500),
            each_way: false,
            policy: PricePolicy::None,
            idempotency: None,
        }),
        Command::SetAccountRisk { account: AccountId(2), stake_factor: Ratio::new(1, 2).ok(), frozen: None },
        Command::SettleMarket {
            market: book::MarketId(1),
            results: vec![ResultRequest {
                selection: SelectionId(1),
                outcome: book::Outcome::Win,
                dead_heat: Ratio::new(1, 2).ok(),
                void_factor: None,
            }],
        },
        Command::QuoteCashout { account: AccountId(1), bet: book::BetId(1) },
        Command::Withdraw { account: AccountId(1), amount: Money::from_minor(2_000), idempotency: None },
        Command::SetIdempotencyWindow { window_ms: 60_000 },
        Command::Tick,
    ];
    write("codec_snapshot", "small-book", &codec::encode_snapshot(&book));
    let mut segment = Vec::new();
    let mut events = Vec::new();
    for (index, command) in commands.iter().enumerate() {
        let _ = book.apply(NOW_MS + 1, command, &mut events);
        let mut batch = Vec::new();
        let origin = book::Origin::system("seed");
        codec::encode_batch(index as u64 + 1, NOW_MS + 1, 0x5eed, std::iter::once((command, &origin)), &mut batch);
        write("codec_batch", &format!("batch-{index}"), &batch);
        // `encode_record` clears its buffer: encode alone, then append.
        let mut record = Vec::new();
        journal::record::encode_record(&mut record, index as u64, &batch).expect("a record");
        segment.extend_from_slice(&record);
    }
    let mut all = Vec::new();
    let origins = vec![book::Origin::new(book::Actor::ApiKey(None)).with_reason(Some("seed".into())); commands.len()];
    codec::encode_batch(100, NOW_MS + 2, 1, commands.iter().zip(&origins), &mut all);
    write("codec_batch", "batch-all", &all);
    write("journal_record", "segment", &segment);
    write("journal_record", "empty-record", &{
        let mut record = Vec::new();
        journal::record::encode_record(&mut record, 0, &[]).expect("a record");
        record
    });
    write("codec_snapshot", "after-bets", &codec::encode_snapshot(&book));
    println!("seeds written under fuzz/corpus");
}
