//! Unified Odds Feed XML, shaped as the provider's schema has it, translated and decided by the
//! real `Book`: de-duplication by content, ordering by the producer's time, market statuses
//! and outcome `active`, outcomes priced later, and a bet's money through settlement,
//! rollback, cancellation in and out of a time window and settlement again. Every step checks
//! the book's invariants; the feed state survives a snapshot round trip.

use book::{Ack, BetStatus, Book, Command, Config, FeedApplied, MarketStatus, Reply};
use domain::{Currency, Money, Odds};
use feed::uof::{UofEvent, UofTranslator};

const EVENT: &str = "sr:match:1";

struct World {
    book: Book,
    now: u64,
    player: book::AccountId,
    translator: UofTranslator,
}

fn odds(text: &str) -> Odds {
    Odds::parse_decimal(text).expect("odds")
}

impl World {
    fn new() -> World {
        let mut world = World {
            book: Book::new(Config::default()),
            now: 1_000_000,
            player: book::AccountId(0),
            translator: UofTranslator::new("uof", 5),
        };
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

    /// Translates and applies one XML message (`{now}` in it becomes the book's time).
    fn xml(&mut self, xml: &str) -> FeedApplied {
        let xml = xml.replace("{now}", &self.now.to_string());
        let translation = self.translator.translate(&xml, None).expect("translates");
        let message = match translation.event {
            UofEvent::Feed { message, .. } | UofEvent::SnapshotComplete { message, .. } => message,
            other => panic!("not for the book: {other:?}"),
        };
        match self.apply(Command::Feed(message)) {
            Ok(Ack::Feed(applied)) => applied,
            other => panic!("feed reply {other:?}"),
        }
    }

    fn market(&self, key: &str) -> book::MarketId {
        self.book.feed().market("uof", EVENT, key).expect("market")
    }

    fn selection(&self, key: &str, outcome: &str) -> Option<book::SelectionId> {
        self.book.feed().selection(self.market(key), outcome)
    }

    fn status(&self, key: &str) -> MarketStatus {
        self.book.market(self.market(key)).expect("market").status
    }

    fn bet(&mut self, outcome: &str, price: &str, minor: i64) -> Result<book::BetId, book::Rejection> {
        let selection = self.selection("1", outcome).expect("selection");
        match self.apply(crate::support::single(self.player, selection, odds(price), minor))? {
            Ack::BetPlaced { bet, status: BetStatus::Accepted } => Ok(bet),
            other => panic!("placed {other:?}"),
        }
    }

    fn balance(&self) -> i64 {
        self.book.wallet(self.player).expect("wallet").balance.minor()
    }

    fn bet_status(&self, bet: book::BetId) -> BetStatus {
        self.book.bet(bet).expect("bet").status
    }

    /// Restores the book from its snapshot and checks it is the same book.
    fn snapshot_round_trip(&mut self) {
        let bytes = codec::encode_snapshot(&self.book);
        let restored = codec::decode_snapshot(&bytes).expect("decodes");
        assert_eq!(codec::digest(&restored), codec::digest(&self.book));
        self.book = restored;
    }
}

fn fixture(world: &mut World) {
    let applied = world.xml(&format!(
        r#"<fixture_change product="3" event_id="{EVENT}" timestamp="{{now}}" change_type="1" start_time="{}"/>"#,
        world.now + 86_400_000
    ));
    assert_eq!(applied.applied, 1);
}

#[test]
fn a_bet_is_paid_exactly_through_settlement_rollback_windowed_cancel_and_settlement_again() {
    let mut world = World::new();
    fixture(&mut world);
    // Outcome 2 is listed without odds: it is not offered yet, and that is no refusal.
    let applied = world.xml(&format!(
        r#"<odds_change product="3" event_id="{EVENT}" timestamp="{{now}}"><odds><market id="1" status="1">
        <outcome id="1" odds="2.0" active="1"/><outcome id="2" active="1"/><outcome id="3" odds="4.00004" active="1"/>
        </market></odds></odds_change>"#
    ));
    assert!(applied.ignored.is_empty(), "{applied:?}");
    assert_eq!(world.selection("1", "2"), None);
    assert_eq!(
        world.book.selection(world.selection("1", "3").expect("3")).expect("3").price,
        odds("4.0"),
        "rounded down"
    );
    let a = world.bet("1", "2.0", 1_000).expect("bet on 1");
    // Outcome 2 is priced later: it becomes a selection, and takes bets.
    let applied = world.xml(&format!(
        r#"<odds_change product="3" event_id="{EVENT}" timestamp="{{now}}"><odds><market id="1" status="1">
        <outcome id="1" odds="2.0" active="1"/><outcome id="2" odds="3.5" active="1"/><outcome id="3" odds="4.0" active="1"/>
        </market></odds></odds_change>"#
    ));
    assert!(applied.ignored.is_empty() && applied.applied == 2, "{applied:?}");
    let window_start = world.now + 5;
    let b = world.bet("2", "3.5", 1_000).expect("bet on 2");
    let window_end = world.now + 5;
    let c = world.bet("3", "4.0", 1_000).expect("bet on 3");
    assert_eq!(world.balance(), 97_000);

    // Settled: 1 wins (A paid 20.00), 2 and 3 lose.
    let settle = format!(
        r#"<bet_settlement product="3" event_id="{EVENT}" timestamp="{{now}}" certainty="2"><outcomes><market id="1">
        <outcome id="1" result="1"/><outcome id="2" result="0"/><outcome id="3" result="0"/></market></outcomes></bet_settlement>"#
    );
    let settle = settle.replace("{now}", &(world.now + 1).to_string());
    assert_eq!(world.xml(&settle).applied, 1);
    assert_eq!(
        (world.bet_status(a), world.bet_status(b), world.bet_status(c)),
        (BetStatus::Won, BetStatus::Lost, BetStatus::Lost)
    );
    assert_eq!(world.balance(), 99_000);
    // The same message redelivered is a duplicate: nothing is paid twice.
    assert!(world.xml(&settle).duplicate);
    assert_eq!(world.balance(), 99_000);

    // Rolled back: every bet is open again, the payout taken back.
    world.xml(&format!(
        r#"<rollback_bet_settlement product="3" event_id="{EVENT}" timestamp="{{now}}"><market id="1"/></rollback_bet_settlement>"#
    ));
    assert!([a, b, c].iter().all(|bet| world.bet_status(*bet) == BetStatus::Accepted));
    assert_eq!(world.balance(), 97_000);

    // Cancelled out of any bet's window: nothing changes.
    let applied = world.xml(&format!(
        r#"<bet_cancel product="3" event_id="{EVENT}" timestamp="{{now}}" start_time="1" end_time="2"><market id="1" void_reason="1"/></bet_cancel>"#
    ));
    assert!(applied.ignored.is_empty());
    assert_eq!(world.balance(), 97_000);
    // Cancelled in B's window: B alone is void, its stake back.
    let cancel_b = format!(
        r#"<bet_cancel product="3" event_id="{EVENT}" timestamp="{{now}}" start_time="{window_start}" end_time="{window_end}"><market id="1" void_reason="1"/></bet_cancel>"#
    );
    assert!(world.xml(&cancel_b).ignored.is_empty());
    assert_eq!(
        (world.bet_status(a), world.bet_status(b), world.bet_status(c)),
        (BetStatus::Accepted, BetStatus::Void, BetStatus::Accepted)
    );
    assert_eq!(world.balance(), 98_000);
    world.snapshot_round_trip();

    // Settled again: 2 wins but B stays void (its window is in force); 3 wins in a dead heat
    // of two (C paid 10.00 x 4.0 / 2 = 20.00); A loses.
    world.xml(&format!(
        r#"<bet_settlement product="3" event_id="{EVENT}" timestamp="{{now}}" certainty="2"><outcomes><market id="1">
        <outcome id="1" result="0"/><outcome id="2" result="1"/><outcome id="3" result="1" dead_heat_factor="0.5"/></market></outcomes></bet_settlement>"#
    ));
    assert_eq!(
        (world.bet_status(a), world.bet_status(b), world.bet_status(c)),
        (BetStatus::Lost, BetStatus::Void, BetStatus::Won)
    );
    assert_eq!(world.balance(), 100_000);

    // The window's cancellation is withdrawn: B takes the market's result, 2 won at 3.5.
    world.xml(&format!(
        r#"<rollback_bet_cancel product="3" event_id="{EVENT}" timestamp="{{now}}" start_time="{window_start}" end_time="{window_end}"><market id="1"/></rollback_bet_cancel>"#
    ));
    assert_eq!(world.bet_status(b), BetStatus::Won);
    assert_eq!(world.balance(), 100_000 - 1_000 + 3_500);
    world.snapshot_round_trip();

    // A rollback of the settlement reopens everything, and the whole market can be cancelled.
    world.xml(&format!(
        r#"<rollback_bet_settlement product="3" event_id="{EVENT}" timestamp="{{now}}"><market id="1"/></rollback_bet_settlement>"#
    ));
    assert_eq!(world.balance(), 97_000);
    world.xml(&format!(
        r#"<bet_cancel product="3" event_id="{EVENT}" timestamp="{{now}}"><market id="1" void_reason="1"/></bet_cancel>"#
    ));
    assert!([a, b, c].iter().all(|bet| world.bet_status(*bet) == BetStatus::Void));
    assert_eq!(world.balance(), 100_000);
    assert_eq!(world.status("1"), MarketStatus::Voided);
    // A rollback_bet_cancel without a window withdraws the cancellation.
    world.xml(&format!(
        r#"<rollback_bet_cancel product="3" event_id="{EVENT}" timestamp="{{now}}"><market id="1"/></rollback_bet_cancel>"#
    ));
    assert_eq!(world.balance(), 97_000);
    world.snapshot_round_trip();
}

#[test]
fn an_undecided_outcome_settles_nothing() {
    let mut world = World::new();
    fixture(&mut world);
    world.xml(&format!(
        r#"<odds_change product="1" event_id="{EVENT}" timestamp="{{now}}"><odds><market id="1" status="1"><outcome id="1" odds="2.0" active="1"/><outcome id="2" odds="2.0" active="1"/></market></odds></odds_change>"#
    ));
    let bet = world.bet("1", "2.0", 1_000).expect("bet");
    world.xml(&format!(
        r#"<bet_settlement product="1" event_id="{EVENT}" timestamp="{{now}}" certainty="1"><outcomes><market id="1"><outcome id="1" result="-1"/><outcome id="2" result="0"/></market></outcomes></bet_settlement>"#
    ));
    assert_eq!(world.bet_status(bet), BetStatus::Accepted);
    assert_eq!(world.balance(), 99_000);
}

#[test]
fn market_statuses_and_inactive_outcomes_follow_the_provider() {
    let mut world = World::new();
    fixture(&mut world);
    let market = |status: &str, active: &str| {
        format!(
            r#"<odds_change product="1" event_id="{EVENT}" timestamp="{{now}}"><odds><market id="1" status="{status}"><outcome id="1" odds="2.0" active="{active}"/><outcome id="2" odds="1.8" active="1"/></market></odds></odds_change>"#
        )
    };
    world.xml(&market("1", "1"));
    assert_eq!(world.status("1"), MarketStatus::Open);
    for status in ["0", "-1", "-3", "-4"] {
        world.xml(&market(status, "1"));
        assert_eq!(world.status("1"), MarketStatus::Suspended, "status {status}");
        assert_eq!(world.bet("1", "2.0", 100), Err(book::Rejection::MarketSuspended));
        world.xml(&market("1", "1"));
        assert_eq!(world.status("1"), MarketStatus::Open);
    }
    // Handed over: this producer's word on the market no longer counts.
    world.xml(&market("-2", "1").replace("2.0", "9.0"));
    assert_eq!(world.status("1"), MarketStatus::Open);
    assert_eq!(world.book.selection(world.selection("1", "1").expect("1")).expect("1").price, odds("2.0"));
    // An inactive outcome takes no bets; active again, it does.
    world.xml(&market("1", "0"));
    assert_eq!(world.bet("1", "2.0", 100), Err(book::Rejection::SelectionUnavailable));
    assert!(world.bet("2", "1.8", 100).is_ok());
    world.snapshot_round_trip();
    world.xml(&market("1", "1"));
    assert!(world.bet("1", "2.0", 100).is_ok());
    // bet_stop with groups stops every market of the event.
    world.xml(&format!(
        r#"<bet_stop product="1" event_id="{EVENT}" timestamp="{{now}}" groups="goals" market_status="-1"/>"#
    ));
    assert_eq!(world.status("1"), MarketStatus::Suspended);
}

#[test]
fn odds_apply_in_the_producers_time_order_and_once() {
    let mut world = World::new();
    fixture(&mut world);
    let prices = |at: u64, price: &str| {
        format!(
            r#"<odds_change product="1" event_id="{EVENT}" timestamp="{at}"><odds><market id="1" status="1"><outcome id="1" odds="{price}" active="1"/></market></odds></odds_change>"#
        )
    };
    let price = |world: &World| world.book.selection(world.selection("1", "1").expect("1")).expect("1").price;
    let t = world.now;
    assert_eq!(world.xml(&prices(t + 100, "2.0")).applied, 2);
    // Older than the last applied: stale.
    let older = world.xml(&prices(t + 50, "3.0"));
    assert_eq!((older.duplicate, older.stale), (false, 1));
    assert_eq!(price(&world), odds("2.0"));
    // The same millisecond, other content: applies in arrival order.
    world.xml(&prices(t + 100, "2.2"));
    assert_eq!(price(&world), odds("2.2"));
    // Redelivered: a duplicate.
    assert!(world.xml(&prices(t + 100, "2.2")).duplicate);
    // A recovery replay of it (with request_id) is the same content.
    let replay = prices(t + 100, "2.2").replace(r#"timestamp="#, r#"request_id="7" timestamp="#);
    assert!(world.xml(&replay).duplicate);
    world.snapshot_round_trip();
    assert!(world.xml(&prices(t + 100, "2.2")).duplicate, "remembered across a snapshot");
}

#[test]
fn fixture_changes_move_the_start_and_a_cancelled_fixture_stops_its_markets() {
    let mut world = World::new();
    fixture(&mut world);
    world.xml(&format!(
        r#"<odds_change product="3" event_id="{EVENT}" timestamp="{{now}}"><odds><market id="1" status="1"><outcome id="1" odds="2.0" active="1"/></market></odds></odds_change>"#
    ));
    let event = world.book.feed().event("uof", EVENT).expect("event");
    let start = world.now + 172_800_000;
    world.xml(&format!(
        r#"<fixture_change product="3" event_id="{EVENT}" timestamp="{{now}}" change_type="2" start_time="{start}"/>"#
    ));
    assert_eq!(world.book.events()[event.index()].starts_at, start);
    world.xml(&format!(
        r#"<fixture_change product="3" event_id="{EVENT}" timestamp="{{now}}" change_type="3" start_time="{start}"/>"#
    ));
    assert_eq!(world.status("1"), MarketStatus::Suspended);
}

#[test]
fn an_open_ended_cancellation_voids_later_bets_too_and_takes_no_more() {
    let mut world = World::new();
    fixture(&mut world);
    world.xml(&format!(
        r#"<odds_change product="1" event_id="{EVENT}" timestamp="{{now}}"><odds><market id="1" status="1"><outcome id="1" odds="2.0" active="1"/><outcome id="2" odds="2.0" active="1"/></market></odds></odds_change>"#
    ));
    let before = world.bet("1", "2.0", 1_000).expect("bet before");
    let start = world.now + 5;
    let during = world.bet("2", "2.0", 1_000).expect("bet in the window");
    world.xml(&format!(
        r#"<bet_cancel product="1" event_id="{EVENT}" timestamp="{{now}}" start_time="{start}"><market id="1"/></bet_cancel>"#
    ));
    assert_eq!((world.bet_status(before), world.bet_status(during)), (BetStatus::Accepted, BetStatus::Void));
    // From start_time on, bets would be cancelled: none are taken.
    assert_eq!(world.bet("1", "2.0", 1_000), Err(book::Rejection::MarketSuspended));
    world.xml(&format!(
        r#"<bet_settlement product="1" event_id="{EVENT}" timestamp="{{now}}" certainty="2"><outcomes><market id="1"><outcome id="1" result="1"/><outcome id="2" result="1" void_factor="0.5"/></market></outcomes></bet_settlement>"#
    ));
    assert_eq!((world.bet_status(before), world.bet_status(during)), (BetStatus::Won, BetStatus::Void));
    assert_eq!(world.balance(), 100_000 - 1_000 + 2_000);
    world.snapshot_round_trip();
}
