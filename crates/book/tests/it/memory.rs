//! What a book costs in memory: resident bytes per open bet, per settled bet held for the
//! resettlement window and per remembered idempotency key, in the shape of the soak (issue 12):
//! singles and one double in ten on three-way markets, one key per bet. Each figure is measured
//! in a child process of its own (this test binary run again on `memory::child`), as the growth
//! of its resident memory (`VmRSS`) while the book grows, so that other tests and memory freed
//! earlier do not blur it.

use book::{
    Ack, BetKind, Book, Command, Config, EventId, Idempotency, LegRequest, MarketId, NewSelection, Outcome, PlaceBet,
    PricePolicy, ResultRequest, SelectionId,
};
use domain::{Currency, Money, Odds};

const START: u64 = 1_767_225_600_000;

struct Soak {
    book: Book,
    now: u64,
    accounts: Vec<book::AccountId>,
    events: Vec<book::BookEvent>,
    bets_placed: u64,
    keys: bool,
}

impl Soak {
    fn new(config: Config, players: usize) -> Soak {
        let mut soak = Soak {
            book: Book::new(config),
            now: START,
            accounts: Vec::new(),
            events: Vec::new(),
            bets_placed: 0,
            keys: false,
        };
        let rates = vec![(Currency::parse("GBP").expect("GBP"), domain::ExchangeRate::parse("0.85").expect("a rate"))];
        soak.ok(Command::SetFxRates { base: Currency::EUR, rates });
        for _ in 0..players {
            let Ack::AccountOpened(account) = soak.ok(Command::OpenAccount { currency: Currency::EUR }) else {
                panic!("an account")
            };
            soak.accounts.push(account);
            soak.ok(Command::Deposit {
                account,
                amount: Money::from_minor(10_000_000),
                payment_ref: format!("seed-{}", account.0),
                idempotency: None,
            });
        }
        soak
    }

    fn ok(&mut self, command: Command) -> Ack {
        self.events.clear();
        match self.book.apply(self.now, &command, &mut self.events) {
            Ok(ack) => ack,
            Err(rejection) => panic!("{command:?} refused: {rejection:?}"),
        }
    }

    /// A market of three selections on an event of its own.
    fn market(&mut self) -> (MarketId, Vec<SelectionId>) {
        let Ack::EventCreated(event) = self.ok(Command::CreateEvent {
            name: "Soak match".to_string(),
            sport: "football".to_string(),
            competition: "Soak".to_string(),
            starts_at: self.now + 86_400_000,
        }) else {
            panic!("an event")
        };
        let selections = ["Home", "Draw", "Away"]
            .iter()
            .zip([25_000, 32_000, 28_000])
            .map(|(name, price)| NewSelection {
                name: name.to_string(),
                price: Odds::from_scaled(price).expect("odds"),
            })
            .collect();
        let Ack::MarketCreated { market, selections } = self.ok(Command::CreateMarket {
            event: EventId(event.0),
            name: "Match result".to_string(),
            kind: "1x2".to_string(),
            selections,
            each_way: None,
        }) else {
            panic!("a market")
        };
        (market, selections)
    }

    /// `count` bets on `markets`, every tenth a double over two of them.
    fn bets(&mut self, markets: &[(MarketId, Vec<SelectionId>)], count: u64) {
        for _ in 0..count {
            let sequence = self.bets_placed;
            self.bets_placed += 1;
            let first = &markets[(sequence as usize) % markets.len()];
            let mut legs = vec![self.leg(first, sequence)];
            if sequence % 10 == 9 && markets.len() > 1 {
                legs.push(self.leg(&markets[(sequence as usize + 1) % markets.len()], sequence / 3));
            }
            let account = self.accounts[(sequence as usize * 7) % self.accounts.len()];
            self.ok(Command::PlaceBet(PlaceBet {
                account,
                kind: if legs.len() == 1 { BetKind::Single } else { BetKind::Multiple },
                legs,
                stake: Money::from_minor(100 + (sequence % 9_900) as i64),
                each_way: false,
                policy: PricePolicy::None,
                idempotency: self
                    .keys
                    .then(|| Idempotency { key: format!("soak-run-{sequence}"), body_hash: sequence * 31 }),
            }));
        }
    }

    fn leg(&self, market: &(MarketId, Vec<SelectionId>), pick: u64) -> LegRequest {
        let selection = market.1[(pick % 3) as usize];
        let price = self.book.selection(selection).expect("a selection").price;
        LegRequest { selection, price }
    }

    fn settle(&mut self, market: MarketId, winner: SelectionId) {
        self.ok(Command::SettleMarket {
            market,
            results: vec![ResultRequest {
                selection: winner,
                outcome: Outcome::Win,
                dead_heat: None,
                void_factor: None,
            }],
        });
    }
}

/// Bets each child places: enough that the book's growth dwarfs the allocator's noise.
const BETS: u64 = 100_000;
const MARKETS: usize = 100;
const PLAYERS: usize = 10_000;

/// The child's side: builds the book the `MEMORY_CHILD` scenario names and prints the growth
/// of resident memory per bet. Run by `settled_bets_and_keys_are_compact`.
#[test]
#[ignore = "a child process of memory::settled_bets_and_keys_are_compact"]
fn child() {
    let Ok(scenario) = std::env::var("MEMORY_CHILD") else { return };
    let keys = scenario.contains("keys");
    let mut soak = Soak::new(Config::default(), PLAYERS);
    soak.keys = keys;
    let markets: Vec<_> = (0..MARKETS).map(|_| soak.market()).collect();
    let before = resident_bytes();
    if scenario.starts_with("settled") {
        // Market after market, as the soak does: its bets placed (the doubles also on the
        // next market), then it is settled. The memory an open bet took is free again for the
        // next market's, so the growth is what the settled bets held cost.
        for index in 0..MARKETS {
            soak.bets(&markets[index..(index + 2).min(MARKETS)], BETS / MARKETS as u64);
            let (market, selections) = &markets[index];
            soak.settle(*market, selections[0]);
        }
        assert_eq!(soak.book.sizes().closed_bets, BETS);
    } else {
        soak.bets(&markets, BETS);
        assert_eq!(soak.book.sizes().open_bets, BETS);
    }
    let grown = resident_bytes() - before;
    soak.book.check_invariants().expect("invariants");
    println!("MEMORY {scenario} {} {}", grown / BETS as i64, soak.book.sizes().transfers);
}

/// Resident bytes of this process (`/proc/self/status`, `VmRSS`).
fn resident_bytes() -> i64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let line = status.lines().find(|line| line.starts_with("VmRSS:")).expect("a VmRSS line");
    let kib: i64 = line.split_whitespace().nth(1).and_then(|kib| kib.parse().ok()).expect("VmRSS in kB");
    kib * 1024
}

/// Runs the child on `scenario` and returns (resident bytes per bet, transfers held).
fn measure(scenario: &str) -> (i64, u64) {
    let output = std::process::Command::new(std::env::current_exe().expect("the test binary"))
        .args(["--exact", "memory::child", "--include-ignored", "--nocapture", "--test-threads=1"])
        .env("MEMORY_CHILD", scenario)
        .output()
        .expect("the child runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "child {scenario} failed: {stdout}{}", String::from_utf8_lossy(&output.stderr));
    // The harness prints the test's name on the same line before the figures.
    let figures = stdout.split("MEMORY ").nth(1).expect("the child's figures");
    let fields: Vec<&str> = figures.split_whitespace().collect();
    (fields[1].parse().expect("bytes"), fields[2].parse().expect("transfers"))
}

/// Resident bytes per bet the book holds, open and settled (kept for the 7-day window),
/// with and without an idempotency key each; the breakdown is printed
/// (`cargo test -p book --test it memory -- --nocapture`) and held to the bounds below.
#[test]
fn settled_bets_and_keys_are_compact() {
    let (open, _) = measure("open");
    let (settled, transfers) = measure("settled");
    let (settled_keys, _) = measure("settled-keys");
    let key = settled_keys - settled;
    eprintln!(
        "resident bytes per bet: open {open}, settled and held {settled} ({transfers} transfers held for {BETS} bets), its idempotency key {key}"
    );
    assert!(settled <= SETTLED_BET_BYTES_MAX, "a settled bet held costs {settled} bytes");
    assert!(key <= KEY_BYTES_MAX, "an idempotency key costs {key} bytes");
}

/// The bounds, measured with room for the allocator (`docs/benchmarks.md`, "Where the memory
/// is"). Before the compact forms: 1,006 bytes a settled bet (2.4 transfers held each, in
/// B-tree nodes a little over half full of 232-byte entries) and 136 a key; after: about 590
/// (no transfer held, records boxed) and 81 (a 32-byte `Kept` beside its hash).
const SETTLED_BET_BYTES_MAX: i64 = 700;
const KEY_BYTES_MAX: i64 = 100;
