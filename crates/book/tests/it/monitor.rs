//! AML monitoring and markers of harm: each rule just below and at its threshold, one alert per
//! (account, rule, window), the shared-instrument index, the case queue's transitions and a
//! freeze by case, and alerts equal after a restore from parts and a replay (property test).

use book::{
    AccountId, Ack, Actor, AlertKind, BetKind, Book, BookEvent, CaseActionKind, CaseActionRequest, CaseId, CaseStatus,
    Command, Config, LegRequest, MonitoringRules, NewSelection, Period, PlaceBet, PricePolicy, RapidInOut, Rejection,
    Reply, Rule, SelectionId, SharedKey, StaffId, Threshold, TransferId, MILLIS_PER_DAY, MILLIS_PER_HOUR,
};
use domain::{Currency, Money, Odds};
use proptest::prelude::*;

const PLAYER: AccountId = AccountId(1);
/// 2026-03-02T12:00:00Z: noon, outside the night hours.
const NOON: u64 = 1_772_452_800_000;

/// Every rule off: each test turns on the one it tests.
fn off() -> MonitoringRules {
    MonitoringRules {
        deposits: None,
        withdrawals: None,
        turnover: None,
        rapid_in_out: None,
        shared_accounts_max: None,
        deposits_per_day: None,
        night_bets_per_day: None,
        night_start_hour: 0,
        night_end_hour: 6,
        refused_withdrawals: None,
        deposit_while_withdrawal_pending: false,
    }
}

struct Desk {
    book: Book,
    now: u64,
    /// The rules that fired, in order.
    fired: Vec<(AccountId, Rule)>,
    selection: Option<SelectionId>,
    references: u64,
    /// Every command applied, with its time.
    log: Vec<(u64, Command)>,
}

impl Desk {
    fn new(rules: MonitoringRules) -> Desk {
        let mut desk = Desk {
            book: Book::new(Config::default()),
            now: NOON,
            fired: Vec::new(),
            selection: None,
            references: 0,
            log: Vec::new(),
        };
        desk.apply(Command::OpenAccount { currency: Currency::EUR }).expect("account");
        desk.apply(Command::SetMonitoringRules { rules }).expect("rules");
        desk
    }

    fn apply(&mut self, command: Command) -> Reply {
        self.now += 1;
        let mut events = Vec::new();
        let reply = self.book.apply(self.now, &command, &mut events);
        self.book.check_invariants().expect("invariants hold after every command");
        self.log.push((self.now, command));
        for event in events {
            if let BookEvent::Alert(alert) = event {
                self.fired.push((alert.account, alert.rule));
            }
        }
        reply
    }

    fn at(&mut self, now: u64) {
        assert!(now >= self.now);
        self.now = now;
    }

    fn deposit_to(&mut self, account: AccountId, minor: i64) -> Reply {
        self.references += 1;
        self.apply(Command::Deposit {
            account,
            amount: Money::from_minor(minor),
            payment_ref: format!("psp-{}", self.references),
            idempotency: None,
        })
    }

    fn deposit(&mut self, minor: i64) -> Reply {
        self.deposit_to(PLAYER, minor)
    }

    fn withdraw(&mut self, minor: i64) -> TransferId {
        match self.apply(Command::Withdraw { account: PLAYER, amount: Money::from_minor(minor), idempotency: None }) {
            Ok(Ack::Transfer(transfer)) => transfer,
            other => panic!("a withdrawal: {other:?}"),
        }
    }

    fn bet(&mut self, minor: i64) -> Reply {
        let selection = match self.selection {
            Some(selection) => selection,
            None => {
                let Ok(Ack::EventCreated(event)) = self.apply(Command::CreateEvent {
                    name: "Final".to_string(),
                    sport: "football".to_string(),
                    competition: "Cup".to_string(),
                    starts_at: self.now + 300 * MILLIS_PER_DAY,
                }) else {
                    panic!("an event")
                };
                let price = Odds::from_scaled(20_000).expect("odds");
                let Ok(Ack::MarketCreated { selections, .. }) = self.apply(Command::CreateMarket {
                    event,
                    name: "Winner".to_string(),
                    kind: "winner".to_string(),
                    selections: vec![
                        NewSelection { name: "Home".to_string(), price },
                        NewSelection { name: "Away".to_string(), price },
                    ],
                    each_way: None,
                }) else {
                    panic!("a market")
                };
                self.selection = Some(selections[0]);
                selections[0]
            }
        };
        let price = self.book.selection(selection).expect("selection").price;
        self.apply(Command::PlaceBet(PlaceBet {
            account: PLAYER,
            kind: BetKind::Single,
            legs: vec![LegRequest { selection, price }],
            stake: Money::from_minor(minor),
            each_way: false,
            policy: PricePolicy::Any,
            idempotency: None,
        }))
    }

    fn act(&mut self, case: CaseId, action: CaseActionKind, note: Option<&str>, reference: Option<&str>) -> Reply {
        self.apply(Command::CaseAction(CaseActionRequest {
            case,
            action,
            by: Actor::Staff(StaffId(1)),
            reason: "reviewed".to_string(),
            note: note.map(str::to_string),
            reference: reference.map(str::to_string),
        }))
    }

    fn rules_fired(&self) -> Vec<Rule> {
        self.fired.iter().map(|(_, rule)| *rule).collect()
    }
}

fn threshold(minor: i64) -> Option<Threshold> {
    Some(Threshold { period: Period::Day, amount: Money::from_minor(minor) })
}

#[test]
fn deposits_alert_at_the_threshold_once_a_day() {
    let mut desk = Desk::new(MonitoringRules { deposits: threshold(10_000), ..off() });
    desk.deposit(9_999).expect("deposit");
    assert!(desk.fired.is_empty(), "just below the threshold");
    desk.deposit(1).expect("deposit");
    assert_eq!(desk.rules_fired(), [Rule::DepositThreshold], "at the threshold");
    desk.deposit(5_000).expect("deposit");
    assert_eq!(desk.fired.len(), 1, "once per window");
    desk.at(NOON + MILLIS_PER_DAY);
    desk.deposit(9_999).expect("deposit");
    assert_eq!(desk.fired.len(), 1, "a new day counts from zero");
    desk.deposit(1).expect("deposit");
    assert_eq!(desk.fired.len(), 2, "and alerts again at its threshold");
    let case = desk.book.monitor().case_of(PLAYER).expect("a case");
    assert_eq!((case.alerts_total, case.status, case.alerts[0].value), (2, CaseStatus::Open, 10_000));
    assert_eq!(case.alerts[0].kind(), AlertKind::Aml);
}

#[test]
fn withdrawals_and_turnover_alert_at_their_thresholds() {
    let mut desk = Desk::new(MonitoringRules { withdrawals: threshold(3_000), turnover: threshold(2_000), ..off() });
    desk.deposit(100_000).expect("deposit");
    desk.withdraw(2_999);
    desk.bet(1_990).expect("bet");
    assert!(desk.fired.is_empty());
    desk.withdraw(1);
    desk.bet(10).expect("bet");
    assert_eq!(desk.rules_fired(), [Rule::WithdrawalThreshold, Rule::TurnoverThreshold]);
}

#[test]
fn deposit_frequency_is_a_marker_of_harm_at_its_count() {
    let mut desk = Desk::new(MonitoringRules { deposits_per_day: Some(3), ..off() });
    desk.deposit(100).expect("deposit");
    desk.deposit(100).expect("deposit");
    assert!(desk.fired.is_empty());
    desk.deposit(100).expect("deposit");
    assert_eq!(desk.rules_fired(), [Rule::DepositFrequency]);
    assert_eq!(desk.book.monitor().case_of(PLAYER).expect("case").alerts[0].kind(), AlertKind::Harm);
}

#[test]
fn bets_in_the_night_hours_count_and_day_bets_do_not() {
    let mut desk = Desk::new(MonitoringRules { night_bets_per_day: Some(2), ..off() });
    desk.deposit(100_000).expect("deposit");
    desk.bet(100).expect("bet");
    desk.bet(100).expect("bet");
    assert!(desk.fired.is_empty(), "bets at noon are not night bets");
    // 01:00 UTC the next day.
    desk.at(NOON + 13 * MILLIS_PER_HOUR);
    desk.bet(100).expect("bet");
    assert!(desk.fired.is_empty(), "one below");
    desk.bet(100).expect("bet");
    assert_eq!(desk.rules_fired(), [Rule::LateNightPlay]);
    // 06:00 is past the night.
    desk.at(NOON + 18 * MILLIS_PER_HOUR);
    assert!(!desk.book.monitor().rules().is_night(desk.now + 1));
}

#[test]
fn refused_or_failed_withdrawals_alert_within_thirty_days() {
    let mut desk = Desk::new(MonitoringRules { refused_withdrawals: Some(2), ..off() });
    desk.deposit(100_000).expect("deposit");
    let first = desk.withdraw(1_000);
    desk.apply(Command::RefuseWithdrawal { account: PLAYER, withdrawal: first }).expect("refused");
    assert!(desk.fired.is_empty());
    // The next one 31 days later: the first has left the window.
    desk.at(NOON + 31 * MILLIS_PER_DAY);
    let second = desk.withdraw(1_000);
    desk.apply(Command::CompleteWithdrawal { account: PLAYER, withdrawal: second, paid: false }).expect("failed");
    assert!(desk.fired.is_empty(), "the first refusal is older than 30 days");
    let third = desk.withdraw(1_000);
    desk.apply(Command::CompleteWithdrawal { account: PLAYER, withdrawal: third, paid: false }).expect("failed");
    assert_eq!(desk.rules_fired(), [Rule::RefusedWithdrawals]);
    // A paid withdrawal is no marker.
    let paid = desk.withdraw(1_000);
    desk.apply(Command::CompleteWithdrawal { account: PLAYER, withdrawal: paid, paid: true }).expect("paid");
    assert_eq!(desk.fired.len(), 1);
}

#[test]
fn a_deposit_while_a_withdrawal_is_pending_is_a_marker() {
    let mut desk = Desk::new(MonitoringRules { deposit_while_withdrawal_pending: true, ..off() });
    desk.deposit(10_000).expect("deposit");
    desk.bet(500).expect("an open stake is no pending withdrawal");
    desk.deposit(10_000).expect("deposit");
    assert!(desk.fired.is_empty());
    let withdrawal = desk.withdraw(1_000);
    desk.deposit(10_000).expect("deposit");
    assert_eq!(desk.rules_fired(), [Rule::DepositWhileWithdrawalPending]);
    desk.apply(Command::CompleteWithdrawal { account: PLAYER, withdrawal, paid: true }).expect("paid");
}

#[test]
fn rapid_in_and_out_needs_little_play_since_the_deposit() {
    let rapid = Some(RapidInOut { within_hours: 24, turnover_percent: 10 });
    let mut played = Desk::new(MonitoringRules { rapid_in_out: rapid, ..off() });
    played.deposit(10_000).expect("deposit");
    played.bet(1_000).expect("bet: 10% of the deposit");
    played.withdraw(5_000);
    assert!(played.fired.is_empty(), "turnover at the percentage");
    let mut idle = Desk::new(MonitoringRules { rapid_in_out: rapid, ..off() });
    idle.deposit(10_000).expect("deposit");
    idle.bet(999).expect("bet: just below 10%");
    idle.withdraw(5_000);
    assert_eq!(idle.rules_fired(), [Rule::RapidInOut]);
    let mut late = Desk::new(MonitoringRules { rapid_in_out: rapid, ..off() });
    late.deposit(10_000).expect("deposit");
    late.at(NOON + 25 * MILLIS_PER_HOUR);
    late.withdraw(5_000);
    assert!(late.fired.is_empty(), "a withdrawal more than 24 hours after the deposit");
}

#[test]
fn accounts_sharing_an_instrument_past_the_bound_are_each_alerted() {
    let mut desk = Desk::new(MonitoringRules { shared_accounts_max: Some(2), ..off() });
    for _ in 0..3 {
        desk.apply(Command::OpenAccount { currency: Currency::EUR }).expect("account");
    }
    let card = SharedKey::instrument("tok_card_1");
    desk.apply(Command::NoteShared { account: AccountId(1), key: card }).expect("noted");
    desk.apply(Command::NoteShared { account: AccountId(2), key: card }).expect("noted");
    desk.apply(Command::NoteShared { account: AccountId(1), key: card }).expect("noted twice");
    assert!(desk.fired.is_empty(), "two accounts share it: at the bound");
    desk.apply(Command::NoteShared { account: AccountId(3), key: card }).expect("noted");
    let mut fired = desk.fired.clone();
    fired.sort();
    assert_eq!(
        fired,
        [
            (AccountId(1), Rule::SharedInstrument),
            (AccountId(2), Rule::SharedInstrument),
            (AccountId(3), Rule::SharedInstrument)
        ]
    );
    desk.apply(Command::NoteShared { account: AccountId(4), key: card }).expect("noted");
    assert_eq!(desk.fired.last(), Some(&(AccountId(4), Rule::SharedInstrument)), "a newcomer past the bound");
    assert_eq!(desk.fired.len(), 4, "the others were alerted today already");
    assert_eq!(desk.book.monitor().sharing(card).len(), 3, "the index keeps the bound plus one");
    // Another key kind is another rule, and another instrument shares nothing.
    let address = SharedKey::address("1 High St, London");
    assert_eq!(address, SharedKey::address("1 high st london"));
    desk.apply(Command::NoteShared { account: AccountId(1), key: SharedKey::instrument("tok_other") }).expect("noted");
    assert_eq!(desk.fired.len(), 4);
    assert_eq!(desk.apply(Command::NoteShared { account: AccountId(9), key: card }), Err(Rejection::UnknownAccount));
}

#[test]
fn a_case_moves_open_escalated_reported_closed_and_a_freeze_stops_bets() {
    let mut desk = Desk::new(MonitoringRules { deposits: threshold(1_000), ..off() });
    desk.deposit(1_000).expect("deposit");
    let case = desk.book.monitor().case_of(PLAYER).expect("a case").id;
    assert_eq!(desk.act(CaseId(99), CaseActionKind::Escalate, None, None), Err(Rejection::UnknownCase));
    assert!(matches!(desk.act(case, CaseActionKind::Note, None, None), Err(Rejection::InvalidRequest { .. })));
    assert_eq!(desk.act(case, CaseActionKind::Note, Some("called the player"), None), Ok(Ack::Done));
    assert_eq!(desk.act(case, CaseActionKind::Freeze, None, None), Ok(Ack::Done));
    assert_eq!(desk.bet(100), Err(Rejection::AccountFrozen));
    assert_eq!(desk.deposit(100), Err(Rejection::AccountFrozen));
    assert_eq!(desk.act(case, CaseActionKind::Unfreeze, None, None), Ok(Ack::Done));
    assert!(matches!(desk.bet(100), Ok(Ack::BetPlaced { .. })));
    assert_eq!(desk.act(case, CaseActionKind::Escalate, None, None), Ok(Ack::Done));
    assert_eq!(desk.act(case, CaseActionKind::Escalate, None, None), Err(Rejection::InvalidTransition));
    assert!(matches!(desk.act(case, CaseActionKind::MarkReported, None, None), Err(Rejection::InvalidRequest { .. })));
    assert_eq!(desk.act(case, CaseActionKind::MarkReported, None, Some("SAR-123")), Ok(Ack::Done));
    assert_eq!(desk.act(case, CaseActionKind::MarkReported, None, Some("SAR-124")), Err(Rejection::InvalidTransition));
    let held = desk.book.monitor().case(case).expect("held");
    assert_eq!(
        (held.status, held.reference.as_deref(), held.actions.len()),
        (CaseStatus::Reported, Some("SAR-123"), 5)
    );
    // A second alert of the account joins its open case.
    desk.at(NOON + MILLIS_PER_DAY);
    desk.deposit(1_000).expect("deposit");
    assert_eq!(desk.book.monitor().case(case).expect("held").alerts_total, 2);
    assert_eq!(desk.act(case, CaseActionKind::Close, None, None), Ok(Ack::Done));
    assert!(desk.book.monitor().case(case).is_none(), "a closed case leaves the book");
    assert_eq!(desk.act(case, CaseActionKind::Note, Some("late"), None), Err(Rejection::CaseClosed));
    // The next alert opens a new case.
    desk.at(NOON + 2 * MILLIS_PER_DAY);
    desk.deposit(1_000).expect("deposit");
    assert_eq!(desk.book.monitor().case_of(PLAYER).expect("a new case").id, CaseId(case.0 + 1));
}

#[test]
fn rules_out_of_range_are_refused() {
    let mut desk = Desk::new(off());
    for rules in [
        MonitoringRules { shared_accounts_max: Some(0), ..off() },
        MonitoringRules { deposits_per_day: Some(0), ..off() },
        MonitoringRules { night_start_hour: 24, ..off() },
        MonitoringRules { night_start_hour: 3, night_end_hour: 3, ..off() },
        MonitoringRules { deposits: threshold(0), ..off() },
        MonitoringRules { refused_withdrawals: Some(33), ..off() },
        MonitoringRules { rapid_in_out: Some(RapidInOut { within_hours: 0, turnover_percent: 10 }), ..off() },
    ] {
        assert!(matches!(desk.apply(Command::SetMonitoringRules { rules }), Err(Rejection::InvalidRequest { .. })));
    }
    assert_eq!(desk.book.monitor().rules(), &off());
}

#[derive(Clone, Debug)]
enum Step {
    Deposit(i64),
    Withdraw(i64),
    Refuse,
    Bet(i64),
    Wait(u64),
    Share(u64),
    Act(u8),
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        4 => (1i64..30_000).prop_map(Step::Deposit),
        2 => (1i64..20_000).prop_map(Step::Withdraw),
        1 => Just(Step::Refuse),
        4 => (10i64..5_000).prop_map(Step::Bet),
        2 => (1u64..40 * MILLIS_PER_HOUR).prop_map(Step::Wait),
        1 => (1u64..4).prop_map(Step::Share),
        1 => (0u8..6).prop_map(Step::Act),
    ]
}

/// Runs steps on a desk with the default rules (thresholds lowered to fire often) and returns
/// the commands with their times.
fn commands(steps: &[Step]) -> Vec<(u64, Command)> {
    let rules = MonitoringRules {
        deposits: threshold(20_000),
        withdrawals: threshold(10_000),
        turnover: threshold(5_000),
        shared_accounts_max: Some(1),
        deposits_per_day: Some(3),
        night_bets_per_day: Some(2),
        refused_withdrawals: Some(2),
        ..MonitoringRules::default()
    };
    let mut desk = Desk::new(rules);
    desk.apply(Command::OpenAccount { currency: Currency::EUR }).expect("a second account");
    desk.deposit(100_000).expect("deposit");
    desk.bet(10).expect("the market");
    let mut pending = Vec::new();
    for step in steps {
        let command = match step {
            Step::Deposit(minor) => {
                desk.references += 1;
                Command::Deposit {
                    account: PLAYER,
                    amount: Money::from_minor(*minor),
                    payment_ref: format!("p{}", desk.references),
                    idempotency: None,
                }
            }
            Step::Withdraw(minor) => {
                Command::Withdraw { account: PLAYER, amount: Money::from_minor(*minor), idempotency: None }
            }
            Step::Refuse => match pending.pop() {
                Some(withdrawal) => Command::RefuseWithdrawal { account: PLAYER, withdrawal },
                None => Command::Tick,
            },
            Step::Bet(minor) => Command::PlaceBet(PlaceBet {
                account: PLAYER,
                kind: BetKind::Single,
                legs: vec![LegRequest {
                    selection: desk.selection.expect("market"),
                    price: Odds::from_scaled(20_000).expect("odds"),
                }],
                stake: Money::from_minor(*minor),
                each_way: false,
                policy: PricePolicy::Any,
                idempotency: None,
            }),
            Step::Wait(ms) => {
                desk.now += ms;
                Command::Tick
            }
            Step::Share(token) => Command::NoteShared {
                account: AccountId(1 + token % 2),
                key: SharedKey::instrument(&format!("tok{token}")),
            },
            Step::Act(action) => Command::CaseAction(CaseActionRequest {
                case: CaseId(1),
                action: CaseActionKind::ALL[usize::from(*action)],
                by: Actor::Staff(StaffId(1)),
                reason: "r".to_string(),
                note: Some("n".to_string()),
                reference: Some("SAR".to_string()),
            }),
        };
        let is_withdrawal = matches!(command, Command::Withdraw { .. });
        if let Ok(Ack::Transfer(transfer)) = desk.apply(command) {
            if is_withdrawal {
                pending.push(transfer);
            }
        }
    }
    desk.log
}

fn alerts_of(book: &mut Book, commands: &[(u64, Command)]) -> Vec<String> {
    let mut alerts = Vec::new();
    for (now, command) in commands {
        let mut events = Vec::new();
        let _ = book.apply(*now, command, &mut events);
        alerts.extend(events.into_iter().filter_map(|event| match event {
            BookEvent::Alert(alert) => Some(format!("{alert:?}")),
            BookEvent::CaseActed { case, action, status, .. } => Some(format!("{case} {action:?} {status:?}")),
            _ => None,
        }));
    }
    alerts
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// A book restored from its parts anywhere, then given the rest of the commands, raises the
    /// same alerts and takes the same case actions as one that never stopped, and ends equal.
    #[test]
    fn alerts_are_equal_after_a_restore_and_a_replay(steps in prop::collection::vec(step(), 1..80), cut in 0usize..90) {
        let log = commands(&steps);
        let mut straight = Book::new(Config::default());
        let all = alerts_of(&mut straight, &log);
        let cut = cut.min(log.len());
        let mut first = Book::new(Config::default());
        let mut replayed = alerts_of(&mut first, &log[..cut]);
        let mut restored = Book::from_parts(first.to_parts());
        replayed.extend(alerts_of(&mut restored, &log[cut..]));
        prop_assert_eq!(&replayed, &all);
        prop_assert_eq!(format!("{:?}", restored.to_parts()), format!("{:?}", straight.to_parts()));
    }
}

/// Found by the `codec_snapshot` fuzz target: parts that `to_parts` never writes (watches out
/// of account order or empty, shared keys out of order, a key with no accounts or one twice)
/// decoded into a monitor that encoded back differently. They are refused.
#[test]
fn monitor_parts_have_one_encoding() {
    let base = book::MonitorParts {
        rules: MonitoringRules::default(),
        watches: Vec::new(),
        cases: Vec::new(),
        shared: Vec::new(),
        alerts_issued: 0,
        cases_issued: 0,
    };
    let watch = book::Watch { last_deposit: 1, ..book::Watch::default() };
    let ok = book::MonitorParts {
        watches: vec![(AccountId(1), watch.clone()), (AccountId(2), watch.clone())],
        shared: vec![
            (SharedKey::Instrument(1), vec![AccountId(2), AccountId(1)]),
            (SharedKey::Instrument(2), vec![AccountId(1)]),
        ],
        ..base.clone()
    };
    book::Monitor::check_parts(&ok).expect("what to_parts writes");
    let refused = [
        book::MonitorParts {
            watches: vec![(AccountId(2), watch.clone()), (AccountId(1), watch.clone())],
            ..base.clone()
        },
        book::MonitorParts {
            watches: vec![(AccountId(1), watch.clone()), (AccountId(1), watch.clone())],
            ..base.clone()
        },
        book::MonitorParts { watches: vec![(AccountId(1), book::Watch::default())], ..base.clone() },
        book::MonitorParts {
            shared: vec![
                (SharedKey::Instrument(2), vec![AccountId(1)]),
                (SharedKey::Instrument(1), vec![AccountId(1)]),
            ],
            ..base.clone()
        },
        book::MonitorParts { shared: vec![(SharedKey::Instrument(1), vec![])], ..base.clone() },
        book::MonitorParts {
            shared: vec![(SharedKey::Instrument(1), vec![AccountId(1), AccountId(1)])],
            ..base.clone()
        },
    ];
    for parts in refused {
        assert!(book::Monitor::check_parts(&parts).is_err(), "{parts:?}");
    }
}
