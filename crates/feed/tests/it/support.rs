//! A real engine on a temporary data directory, with a hub over it.

use std::time::Duration;

use book::{Book, Command, Reply};
use engine::{EngineHandle, EngineOptions, SystemClock};
use feed::{FeedHub, FeedMetrics, ProviderSettings};

pub struct Stack {
    pub engine: EngineHandle,
    pub hub: FeedHub,
    _dir: Option<tempfile::TempDir>,
}

impl Stack {
    pub fn start(settings: ProviderSettings) -> Stack {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut stack = Stack::start_in(dir.path(), settings);
        stack._dir = Some(dir);
        stack
    }

    /// A stack on the data directory `dir`, which the caller keeps: a restart is a new stack
    /// on the same directory once the old one is dropped.
    pub fn start_in(dir: &std::path::Path, settings: ProviderSettings) -> Stack {
        let (engine, _) =
            engine::open_data_dir(dir, book::Config::default(), Box::new(SystemClock), EngineOptions::default())
                .expect("engine");
        let hub = FeedHub::new(engine.clone(), FeedMetrics::new(), settings);
        hub.spawn_watchdog();
        Stack { engine, hub, _dir: None }
    }

    pub fn submit(&self, command: Command) -> Reply {
        self.engine.submit(command).expect("engine")
    }

    pub fn read<R: Send + 'static>(&self, read: impl FnOnce(&Book) -> R + Send + 'static) -> R {
        self.engine.read(read).expect("read")
    }

    /// Waits until `check` holds on the book, or fails with `what`.
    pub async fn until(&self, what: &str, check: impl Fn(&Book) -> bool + Send + Sync + Clone + 'static) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
        loop {
            let check = check.clone();
            if self.engine.read(move |book| check(book)).expect("read") {
                return;
            }
            assert!(tokio::time::Instant::now() < deadline, "timed out waiting: {what}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        self.engine.shutdown();
    }
}

impl Stack {
    /// A player with 100.00 EUR.
    pub fn funded_player(&self) -> book::AccountId {
        let Ok(book::Ack::AccountOpened(player)) =
            self.submit(Command::OpenAccount { currency: domain::Currency::EUR })
        else {
            panic!("open an account")
        };
        let deposit = Command::Deposit {
            account: player,
            amount: domain::Money::from_minor(10_000),
            payment_ref: "d".into(),
            idempotency: None,
        };
        assert!(self.submit(deposit).is_ok(), "deposit");
        player
    }
}

/// A single at `price` on `selection`, taking any price change.
pub fn single(account: book::AccountId, selection: book::SelectionId, price: domain::Odds, minor: i64) -> Command {
    Command::PlaceBet(book::PlaceBet {
        account,
        kind: book::BetKind::Single,
        legs: vec![book::LegRequest { selection, price }],
        stake: domain::Money::from_minor(minor),
        each_way: false,
        policy: book::PricePolicy::Any,
        idempotency: None,
    })
}

pub fn wall_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_millis() as u64
}
