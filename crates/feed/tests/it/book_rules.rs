//! The feed rules the book enforces, decided by the real `Book`: de-duplication, stale odds,
//! bet stops, staleness and recovery, settlement and rollback. Every step checks the book's
//! invariants, and the feed state survives a snapshot round trip.

use book::{
    Ack, BetKind, BetStatus, Book, Command, Config, FeedApplied, FeedItem, FeedMessage, FeedOdds, FeedResult,
    FeedSelection, LegRequest, MarketStatus, Outcome, PlaceBet, PricePolicy, Rejection, Reply, StaleMode,
};
use domain::{Currency, Money, Odds};

struct World {
    book: Book,
    now: u64,
    sequence: u64,
    player: book::AccountId,
}

fn odds(text: &str) -> Odds {
    Odds::parse_decimal(text).expect("odds")
}

impl World {
    fn new() -> World {
        let mut world =
            World { book: Book::new(Config::default()), now: 1_000, sequence: 0, player: book::AccountId(0) };
        let Ok(Ack::AccountOpened(player)) = world.apply(Command::OpenAccount { currency: Currency::EUR }) else {
            panic!("open")
        };
        world.player = player;
        let deposit = Command::Deposit {
            account: player,
            amount: Money::from_minor(100_000),
            payment_ref: "d".into(),
            idempotency: None,
        };
        assert!(world.apply(deposit).is_ok());
        world
    }

    fn apply(&mut self, command: Command) -> Reply {
        self.now += 10;
        let reply = self.book.apply(self.now, &command, &mut Vec::new());
        self.book.check_invariants().expect("invariants");
        reply
    }

    /// A message with the next sequence, stamped `timestamp`.
    fn feed_at(&mut self, timestamp: u64, items: Vec<FeedItem>) -> FeedApplied {
        self.sequence += 1;
        let message = FeedMessage { provider: "p".into(), sequence: self.sequence, timestamp, items };
        match self.apply(Command::Feed(message)) {
            Ok(Ack::Feed(applied)) => applied,
            other => panic!("feed reply {other:?}"),
        }
    }

    fn feed(&mut self, items: Vec<FeedItem>) -> FeedApplied {
        let timestamp = self.now;
        self.feed_at(timestamp, items)
    }

    fn fixture(&mut self) {
        let applied = self.feed(vec![
            FeedItem::Fixture {
                event: "e1".into(),
                name: "A v B".into(),
                sport: "football".into(),
                competition: "L".into(),
                starts_at: 10_000_000,
            },
            FeedItem::Market {
                event: "e1".into(),
                market: "1x2".into(),
                name: "Match".into(),
                kind: "1x2".into(),
                selections: vec![
                    FeedSelection { id: "1".into(), name: "A".into(), price: odds("2.0") },
                    FeedSelection { id: "2".into(), name: "B".into(), price: odds("3.0") },
                ],
                each_way: None,
            },
        ]);
        assert_eq!((applied.applied, applied.ignored.len()), (2, 0));
    }

    fn market(&self) -> book::MarketId {
        self.book.feed().market("p", "e1", "1x2").expect("mapped")
    }

    fn selection(&self, outcome: &str) -> book::SelectionId {
        self.book.feed().selection(self.market(), outcome).expect("mapped")
    }

    fn price(&self, outcome: &str) -> Odds {
        self.book.selection(self.selection(outcome)).expect("selection").price
    }

    fn odds_item(&self, price: &str) -> FeedItem {
        FeedItem::Odds {
            event: "e1".into(),
            markets: vec![FeedOdds { market: "1x2".into(), prices: vec![("1".into(), odds(price))], active: None }],
        }
    }

    fn bet(&mut self, price: Odds) -> Reply {
        let selection = self.selection("1");
        self.apply(Command::PlaceBet(PlaceBet {
            account: self.player,
            kind: BetKind::Single,
            legs: vec![LegRequest { selection, price }],
            stake: Money::from_minor(1_000),
            each_way: false,
            policy: PricePolicy::Any,
            idempotency: None,
        }))
    }
}

#[test]
fn a_sequence_applies_once_and_older_odds_never_overwrite_newer() {
    let mut world = World::new();
    world.fixture();
    let applied = world.feed_at(5_000, vec![world.odds_item("2.5")]);
    assert_eq!(applied.applied, 1);
    let duplicate = FeedMessage {
        provider: "p".into(),
        sequence: world.sequence,
        timestamp: 5_000,
        items: vec![world.odds_item("9.0")],
    };
    assert_eq!(
        world.apply(Command::Feed(duplicate)),
        Ok(Ack::Feed(FeedApplied { duplicate: true, applied: 0, stale: 0, ignored: vec![] }))
    );
    assert_eq!(world.price("1"), odds("2.5"));
    // A later sequence with an older provider time (a reordering, or a slow backup): ignored.
    let stale = world.feed_at(4_000, vec![world.odds_item("1.5")]);
    assert_eq!((stale.applied, stale.stale), (0, 1));
    assert_eq!(world.price("1"), odds("2.5"));
    // A sequence that arrives late but is newer in time applies; one below the window is a duplicate.
    let newer = world.feed_at(6_000, vec![world.odds_item("2.6")]);
    assert_eq!(newer.applied, 1);
    world.sequence += 200;
    world.feed_at(7_000, vec![world.odds_item("2.7")]);
    let ancient =
        FeedMessage { provider: "p".into(), sequence: 3, timestamp: 8_000, items: vec![world.odds_item("5.0")] };
    assert!(matches!(world.apply(Command::Feed(ancient)), Ok(Ack::Feed(FeedApplied { duplicate: true, .. }))));
    assert_eq!(world.price("1"), odds("2.7"));
}

#[test]
fn a_bet_stop_blocks_bets_at_once_and_odds_reopen_the_market() {
    let mut world = World::new();
    world.fixture();
    assert!(matches!(world.bet(odds("2.0")), Ok(Ack::BetPlaced { status: BetStatus::Accepted, .. })));
    world.feed(vec![FeedItem::BetStop { event: "e1".into(), markets: vec![] }]);
    assert_eq!(world.book.market(world.market()).expect("market").status, MarketStatus::Suspended);
    assert_eq!(world.bet(odds("2.0")), Err(Rejection::MarketSuspended));
    let reopen = FeedItem::Odds {
        event: "e1".into(),
        markets: vec![FeedOdds { market: "1x2".into(), prices: vec![("1".into(), odds("1.8"))], active: Some(true) }],
    };
    world.feed(vec![reopen]);
    assert!(matches!(world.bet(odds("1.8")), Ok(Ack::BetPlaced { .. })));
}

#[test]
fn a_stale_provider_suspends_its_markets_until_its_snapshot_completes() {
    let mut world = World::new();
    world.fixture();
    assert_eq!(
        world.apply(Command::FeedHealth { provider: "p".into(), stale: Some(StaleMode::Suspend) }),
        Ok(Ack::Done)
    );
    assert_eq!(world.bet(odds("2.0")), Err(Rejection::MarketSuspended));
    // Fresh again, and prices arrive, with `active`: still held until the snapshot completes.
    world.apply(Command::FeedHealth { provider: "p".into(), stale: None }).expect("fresh");
    let reopen = FeedItem::Odds {
        event: "e1".into(),
        markets: vec![FeedOdds { market: "1x2".into(), prices: vec![("1".into(), odds("2.2"))], active: Some(true) }],
    };
    world.feed(vec![reopen]);
    assert_eq!(world.bet(odds("2.2")), Err(Rejection::MarketSuspended));
    world.feed(vec![FeedItem::SnapshotComplete]);
    assert!(matches!(world.bet(odds("2.2")), Ok(Ack::BetPlaced { status: BetStatus::Accepted, .. })));
}

#[test]
fn a_stale_provider_in_delay_mode_keeps_markets_open_with_a_bet_delay() {
    let mut world = World::new();
    world.fixture();
    world.apply(Command::FeedHealth { provider: "p".into(), stale: Some(StaleMode::Delay) }).expect("stale");
    assert!(world.book.feed().is_delayed(world.market()));
    let Ok(Ack::BetPlaced { bet, status: BetStatus::Pending }) = world.bet(odds("2.0")) else {
        panic!("a delayed market's bet waits")
    };
    world.now += 6_000;
    world.apply(Command::Tick).expect("tick");
    assert_eq!(world.book.bet(bet).expect("bet").status, BetStatus::Accepted);
    world.feed(vec![FeedItem::SnapshotComplete]);
    assert!(!world.book.feed().is_delayed(world.market()));
    assert!(matches!(world.bet(odds("2.0")), Ok(Ack::BetPlaced { status: BetStatus::Accepted, .. })));
}

#[test]
fn a_settlement_pays_a_rollback_reverses_it_and_a_cancel_voids() {
    let mut world = World::new();
    world.fixture();
    let Ok(Ack::BetPlaced { bet, .. }) = world.bet(odds("2.0")) else { panic!("bet") };
    let before = world.book.wallet(world.player).expect("wallet").balance;
    let settle = |outcome| FeedItem::Settlement {
        event: "e1".into(),
        market: "1x2".into(),
        results: vec![
            FeedResult { selection: "1".into(), outcome, dead_heat: None, void_factor: None },
            FeedResult { selection: "2".into(), outcome: Outcome::Lose, dead_heat: None, void_factor: None },
        ],
    };
    world.feed(vec![settle(Outcome::Win)]);
    assert_eq!(world.book.bet(bet).expect("bet").status, BetStatus::Won);
    assert_eq!(world.book.wallet(world.player).expect("wallet").balance.minor(), before.minor() + 2_000);
    world.feed(vec![FeedItem::Rollback { event: "e1".into(), market: "1x2".into() }]);
    assert_eq!(world.book.bet(bet).expect("bet").status, BetStatus::Accepted);
    assert_eq!(world.book.wallet(world.player).expect("wallet").balance, before);
    world.feed(vec![FeedItem::Cancel { event: "e1".into(), market: "1x2".into() }]);
    assert_eq!(world.book.bet(bet).expect("bet").status, BetStatus::Void);
    assert_eq!(world.book.wallet(world.player).expect("wallet").balance.minor(), before.minor() + 1_000);
}

#[test]
fn unknown_ids_are_refused_item_by_item_and_the_rest_applies() {
    let mut world = World::new();
    world.fixture();
    let applied = world.feed(vec![
        FeedItem::Settlement { event: "e1".into(), market: "nope".into(), results: vec![] },
        world.odds_item("3.3"),
        FeedItem::InPlay { event: "missing".into(), bet_delay_seconds: 5 },
    ]);
    assert_eq!(applied.applied, 1);
    assert_eq!(applied.ignored, vec![(0, Rejection::UnknownMarket), (2, Rejection::UnknownEvent)]);
    assert_eq!(world.price("1"), odds("3.3"));
    // A message without a sequence (0) is identified by its content: once, then a duplicate.
    let sequence_less =
        || Command::Feed(FeedMessage { provider: "p".into(), sequence: 0, timestamp: 1, items: vec![] });
    assert!(matches!(world.apply(sequence_less()), Ok(Ack::Feed(FeedApplied { duplicate: false, .. }))));
    assert!(matches!(world.apply(sequence_less()), Ok(Ack::Feed(FeedApplied { duplicate: true, .. }))));
    let too_long = Command::Feed(FeedMessage { provider: "p".repeat(201), sequence: 0, timestamp: 1, items: vec![] });
    assert!(matches!(world.apply(too_long), Err(Rejection::InvalidRequest { .. })));
}

#[test]
fn the_feed_state_survives_a_snapshot_round_trip() {
    let mut world = World::new();
    world.fixture();
    world.feed_at(9_000, vec![world.odds_item("2.5")]);
    world.apply(Command::FeedHealth { provider: "p".into(), stale: Some(StaleMode::Delay) }).expect("stale");
    let restored = codec::decode_snapshot(&codec::encode_snapshot(&world.book)).expect("decode");
    assert_eq!(restored.feed(), world.book.feed());
    assert_eq!(codec::digest(&restored), codec::digest(&world.book));
}

#[test]
fn a_settlement_is_bounded_by_what_it_pays_not_by_a_cancelled_legs_results() {
    // A double whose leg on the feed market is void by a cancellation window does not settle
    // with that market's results (its other leg is open): the bound on the player's cash must
    // not count it as lost. Here the player's single on the same market wins, which would take
    // the cash past the money maximum: the settlement is refused whole.
    let config = Config {
        max_stake: Money::from_minor(10_000_000_000_000),
        max_payout: Money::from_minor(domain::MONEY_MINOR_MAX),
        deposit_max: Money::from_minor(10_000_000_000_000),
        ..Config::default()
    };
    let mut world = World { book: Book::new(config), now: 1_000, sequence: 0, player: book::AccountId(0) };
    let Ok(Ack::AccountOpened(player)) = world.apply(Command::OpenAccount { currency: Currency::EUR }) else {
        panic!("open")
    };
    world.player = player;
    let stake = 10_000_000_000_000;
    // Cash such that the single's win (two stakes) passes the maximum, and would not if the
    // double's stake were counted as lost.
    let mut deposits = vec![stake; 98];
    deposits.push(1);
    for (index, amount) in deposits.into_iter().enumerate() {
        let deposit = Command::Deposit {
            account: player,
            amount: Money::from_minor(amount),
            payment_ref: format!("d{index}"),
            idempotency: None,
        };
        assert!(world.apply(deposit).is_ok(), "deposit {index}");
    }
    world.fixture();
    let Ok(Ack::EventCreated(other)) = world.apply(Command::CreateEvent {
        name: "C v D".into(),
        sport: "football".into(),
        competition: "L".into(),
        starts_at: 10_000_000,
    }) else {
        panic!("event")
    };
    let Ok(Ack::MarketCreated { selections, .. }) = world.apply(Command::CreateMarket {
        event: other,
        name: "Match".into(),
        kind: "1x2".into(),
        selections: vec![book::NewSelection { name: "C".into(), price: odds("2.0") }],
        each_way: None,
    }) else {
        panic!("market")
    };
    let place = |legs: Vec<LegRequest>, kind| {
        Command::PlaceBet(PlaceBet {
            account: player,
            kind,
            legs,
            stake: Money::from_minor(stake),
            each_way: false,
            policy: PricePolicy::Any,
            idempotency: None,
        })
    };
    let leg = |selection| LegRequest { selection, price: odds("2.0") };
    let double = place(vec![leg(world.selection("1")), leg(selections[0])], BetKind::Multiple);
    let Ok(Ack::BetPlaced { bet: double, .. }) = world.apply(double) else { panic!("double") };
    let single = place(vec![LegRequest { selection: world.selection("2"), price: odds("3.0") }], BetKind::Single);
    let Ok(Ack::BetPlaced { .. }) = world.apply(single) else { panic!("single") };
    let placed = world.book.bet(double).expect("double").placed_at;
    let window =
        FeedItem::CancelWindow { event: "e1".into(), market: "1x2".into(), from: Some(placed), to: Some(placed + 1) };
    assert_eq!(world.feed(vec![window]).applied, 1);
    assert_eq!(world.book.bet(double).expect("double").status, BetStatus::Accepted, "its other leg is open");
    let settle = FeedItem::Settlement {
        event: "e1".into(),
        market: "1x2".into(),
        results: vec![
            FeedResult { selection: "1".into(), outcome: Outcome::Lose, dead_heat: None, void_factor: None },
            FeedResult { selection: "2".into(), outcome: Outcome::Win, dead_heat: None, void_factor: None },
        ],
    };
    assert_eq!(world.feed(vec![settle]).ignored, vec![(0, Rejection::AmountTooLarge)]);
    assert_eq!(world.book.market(world.market()).expect("market").status, MarketStatus::Open);
}
