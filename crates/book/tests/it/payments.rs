//! Payments through the provider: deposits pending until the provider's word, credited once,
//! failed without a trace on the balance, charged back into debt after the money was staked;
//! withdrawal approvals. The ledger is verified and money conserved after every command.

use book::{
    AccountId, Ack, BetKind, Book, Command, Config, DepositOutcome, DepositState, LegRequest, LimitChange, LimitKind,
    NewSelection, Period, PlaceBet, PricePolicy, Rejection, Reply, TransferId, CHARGEBACK_WINDOW_MS,
};
use domain::{Currency, Money, Odds};

const PLAYER: AccountId = AccountId(1);

struct Till {
    book: Book,
    now: u64,
}

impl Till {
    fn new() -> Till {
        let mut till = Till { book: Book::new(Config::default()), now: 1_000 };
        till.ok(Command::OpenAccount { currency: Currency::EUR });
        till
    }

    fn apply(&mut self, command: Command) -> Reply {
        self.now += 1;
        let reply = self.book.apply(self.now, &command, &mut Vec::new());
        self.book.check_invariants().expect("invariants hold after every command");
        self.book.ledger().verify().expect("the ledger verifies");
        reply
    }

    fn ok(&mut self, command: Command) -> Ack {
        let described = format!("{command:?}");
        self.apply(command).unwrap_or_else(|rejection| panic!("{described} refused: {rejection}"))
    }

    fn transfer(&mut self, command: Command) -> TransferId {
        match self.ok(command) {
            Ack::Transfer(transfer) => transfer,
            other => panic!("expected a transfer, got {other:?}"),
        }
    }

    fn begin(&mut self, minor: i64, payment_ref: &str) -> TransferId {
        self.transfer(Command::BeginDeposit {
            account: PLAYER,
            amount: Money::from_minor(minor),
            payment_ref: payment_ref.to_string(),
            idempotency: None,
        })
    }

    fn settle(&mut self, deposit: TransferId, outcome: DepositOutcome) -> Reply {
        self.apply(Command::SettleDeposit { account: PLAYER, deposit, outcome })
    }

    fn wallet(&self) -> book::Wallet {
        self.book.wallet(PLAYER).expect("the player")
    }

    fn state(&self, deposit: TransferId) -> DepositState {
        self.book.payments().deposit(deposit).expect("remembered").state
    }

    /// The EUR payment-clearing account's posted balance: the mirror of what players hold
    /// from deposits.
    fn clearing(&self) -> i64 {
        let ledger = self.book.ledger();
        ledger.system_currencies().map(|(_, _, clearing)| ledger.account(clearing).posted_balance()).sum()
    }
}

#[test]
fn a_pending_deposit_is_credited_once_on_completion() {
    let mut till = Till::new();
    let deposit = till.begin(5_000, "psp_1");
    assert_eq!(till.state(deposit), DepositState::Pending);
    // Nothing to spend yet: the hold is a pending credit.
    assert_eq!((till.wallet().balance.minor(), till.wallet().available.minor()), (0, 0));
    let completed = till.settle(deposit, DepositOutcome::Completed).expect("completed");
    assert_eq!(till.wallet().available.minor(), 5_000);
    assert_eq!(till.clearing(), -5_000);
    // The provider's retry: the same answer, no second credit.
    assert_eq!(till.settle(deposit, DepositOutcome::Completed), Ok(completed));
    assert_eq!(till.wallet().available.minor(), 5_000);
    // A failure after the completion contradicts it.
    assert_eq!(till.settle(deposit, DepositOutcome::Failed), Err(Rejection::PaymentConflict));
    // The payment reference credits once, whichever way it comes.
    let again = Command::Deposit {
        account: PLAYER,
        amount: Money::from_minor(5_000),
        payment_ref: "psp_1".to_string(),
        idempotency: None,
    };
    assert_eq!(till.apply(again), Err(Rejection::DuplicatePaymentRef));
    assert_eq!(till.settle(TransferId(999), DepositOutcome::Completed), Err(Rejection::UnknownPayment));
}

#[test]
fn a_failed_deposit_credits_nothing_and_frees_the_deposit_limit() {
    let mut till = Till::new();
    till.ok(Command::SetLimits {
        account: PLAYER,
        changes: vec![LimitChange {
            kind: LimitKind::Deposit,
            period: Period::Day,
            value: Some(Money::from_minor(6_000)),
        }],
    });
    let deposit = till.begin(5_000, "psp_fail");
    // The pending deposit counts against the limit.
    let over = Command::BeginDeposit {
        account: PLAYER,
        amount: Money::from_minor(2_000),
        payment_ref: "psp_2".to_string(),
        idempotency: None,
    };
    assert!(matches!(till.apply(over.clone()), Err(Rejection::LimitReached { .. })));
    let failed = till.settle(deposit, DepositOutcome::Failed).expect("failed");
    assert_eq!(till.state(deposit), DepositState::Failed);
    assert_eq!((till.wallet().balance.minor(), till.clearing()), (0, 0));
    assert_eq!(till.settle(deposit, DepositOutcome::Failed), Ok(failed));
    assert_eq!(till.settle(deposit, DepositOutcome::Completed), Err(Rejection::PaymentConflict));
    assert_eq!(till.settle(deposit, DepositOutcome::ChargedBack), Err(Rejection::PaymentConflict));
    // Nothing arrived, so the limit has room again.
    till.ok(over);
}

#[test]
fn a_chargeback_after_the_money_was_staked_leaves_the_player_in_debt() {
    let mut till = Till::new();
    let deposit = till.begin(10_000, "psp_cb");
    till.settle(deposit, DepositOutcome::Completed).expect("completed");
    let Ack::EventCreated(event) = till.ok(Command::CreateEvent {
        name: "Final".to_string(),
        sport: "football".to_string(),
        competition: "Cup".to_string(),
        starts_at: till.now + 86_400_000,
    }) else {
        panic!("an event")
    };
    let selections = vec![
        NewSelection { name: "Home".to_string(), price: Odds::from_scaled(20_000).expect("odds") },
        NewSelection { name: "Away".to_string(), price: Odds::from_scaled(20_000).expect("odds") },
    ];
    let Ack::MarketCreated { selections, .. } = till.ok(Command::CreateMarket {
        event,
        name: "Winner".to_string(),
        kind: "winner".to_string(),
        selections,
        each_way: None,
    }) else {
        panic!("a market")
    };
    let price = till.book.selection(selections[0]).expect("selection").price;
    till.ok(Command::PlaceBet(PlaceBet {
        account: PLAYER,
        kind: BetKind::Single,
        legs: vec![LegRequest { selection: selections[0], price }],
        stake: Money::from_minor(7_000),
        each_way: false,
        policy: PricePolicy::None,
        idempotency: None,
    }));
    assert_eq!(till.wallet().available.minor(), 3_000);
    let chargeback = till.settle(deposit, DepositOutcome::ChargedBack).expect("charged back");
    assert_eq!(till.state(deposit), DepositState::ChargedBack);
    // The free 30.00 went back; the 70.00 at stake is owed.
    let wallet = till.wallet();
    assert_eq!((wallet.available.minor(), wallet.pending_stakes.minor(), wallet.debt.minor()), (0, 7_000, 7_000));
    assert_eq!(till.clearing(), 0, "the provider has its money back");
    // A replayed chargeback changes nothing.
    assert_eq!(till.settle(deposit, DepositOutcome::ChargedBack), Ok(chargeback));
    assert_eq!(till.settle(deposit, DepositOutcome::Completed).map(|_| ()), Ok(()));
    assert_eq!(till.wallet().debt.minor(), 7_000);
    // The next deposit repays the debt first.
    let next = till.begin(5_000, "psp_next");
    till.settle(next, DepositOutcome::Completed).expect("completed");
    let wallet = till.wallet();
    assert_eq!((wallet.available.minor(), wallet.debt.minor()), (0, 2_000));
    // A withdrawal cannot take money the player owes.
    let withdraw = Command::Withdraw { account: PLAYER, amount: Money::from_minor(1), idempotency: None };
    assert_eq!(till.apply(withdraw), Err(Rejection::InsufficientFunds));
}

#[test]
fn a_chargeback_before_completion_is_a_conflict() {
    let mut till = Till::new();
    let deposit = till.begin(1_000, "psp_early");
    assert_eq!(till.settle(deposit, DepositOutcome::ChargedBack), Err(Rejection::PaymentConflict));
    assert_eq!(till.state(deposit), DepositState::Pending);
}

#[test]
fn settled_deposits_are_forgotten_after_the_chargeback_window_pending_ones_never() {
    let mut till = Till::new();
    let settled = till.begin(1_000, "psp_old");
    till.settle(settled, DepositOutcome::Completed).expect("completed");
    let pending = till.begin(1_000, "psp_waiting");
    till.now += CHARGEBACK_WINDOW_MS;
    till.ok(Command::Tick);
    assert!(till.book.payments().deposit(settled).is_none());
    assert_eq!(till.state(pending), DepositState::Pending);
    assert_eq!(till.settle(settled, DepositOutcome::ChargedBack), Err(Rejection::UnknownPayment));
    till.settle(pending, DepositOutcome::Completed).expect("completed late");
    assert_eq!(till.wallet().available.minor(), 2_000);
}

#[test]
fn withdrawals_are_approved_once_and_the_approval_ends_with_the_hold() {
    let mut till = Till::new();
    let deposit = till.begin(4_000, "psp_w");
    till.settle(deposit, DepositOutcome::Completed).expect("completed");
    let withdrawal =
        till.transfer(Command::Withdraw { account: PLAYER, amount: Money::from_minor(2_500), idempotency: None });
    assert!(!till.book.payments().is_approved(withdrawal));
    let approve = Command::ApproveWithdrawal { account: PLAYER, withdrawal };
    assert_eq!(till.apply(approve.clone()), Ok(Ack::Transfer(withdrawal)));
    assert_eq!(till.apply(approve.clone()), Ok(Ack::Transfer(withdrawal)));
    assert!(till.book.payments().is_approved(withdrawal));
    till.ok(Command::CompleteWithdrawal { account: PLAYER, withdrawal, paid: true });
    assert!(!till.book.payments().is_approved(withdrawal));
    assert_eq!(till.apply(approve), Err(Rejection::UnknownWithdrawal));
    assert_eq!(till.wallet().available.minor(), 1_500);
    // Refusal: only of a hold not approved; an approved one may be with the provider.
    let waiting =
        till.transfer(Command::Withdraw { account: PLAYER, amount: Money::from_minor(500), idempotency: None });
    let approved =
        till.transfer(Command::Withdraw { account: PLAYER, amount: Money::from_minor(400), idempotency: None });
    till.ok(Command::ApproveWithdrawal { account: PLAYER, withdrawal: approved });
    assert_eq!(
        till.apply(Command::RefuseWithdrawal { account: PLAYER, withdrawal: approved }),
        Err(Rejection::PaymentConflict)
    );
    till.ok(Command::RefuseWithdrawal { account: PLAYER, withdrawal: waiting });
    assert_eq!(till.wallet().available.minor(), 1_100);
    assert_eq!(
        till.apply(Command::RefuseWithdrawal { account: PLAYER, withdrawal: waiting }),
        Err(Rejection::UnknownWithdrawal)
    );
    // A deposit is not a withdrawal to approve.
    assert_eq!(
        till.apply(Command::ApproveWithdrawal { account: PLAYER, withdrawal: deposit }),
        Err(Rejection::UnknownWithdrawal)
    );
}
