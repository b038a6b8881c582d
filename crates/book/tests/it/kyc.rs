//! Identity verification: the state machine (replays answered once, `expired` only from a
//! verification), withdrawals refused until verified, the deposit cap until verified,
//! re-verification above lifetime deposits, expiry by book time, and untracked players
//! unaffected. The ledger is verified after every command.

use book::{
    AccountId, Ack, Book, Command, Config, KycRules, KycState, Rejection, Reply, TransferId, KYC_REFERENCE_BYTES_MAX,
};
use domain::{Currency, Money};

const PLAYER: AccountId = AccountId(1);

struct Desk {
    book: Book,
    now: u64,
}

impl Desk {
    fn new() -> Desk {
        let mut desk = Desk { book: Book::new(Config::default()), now: 1_000 };
        desk.apply(Command::OpenAccount { currency: Currency::EUR }).expect("account");
        desk
    }

    fn apply(&mut self, command: Command) -> Reply {
        self.now += 1;
        let reply = self.book.apply(self.now, &command, &mut Vec::new());
        self.book.check_invariants().expect("invariants hold after every command");
        reply
    }

    fn rules(&mut self, deposit_cap: Option<i64>, reverify_above: Option<i64>, expiry_ms: Option<u64>) -> Reply {
        let rules = KycRules {
            deposit_cap: deposit_cap.map(Money::from_minor),
            reverify_above: reverify_above.map(Money::from_minor),
            expiry_ms,
        };
        self.apply(Command::SetKycRules { account: PLAYER, rules })
    }

    fn set(&mut self, state: KycState, reference: Option<&str>) -> Reply {
        self.apply(Command::SetKycState { account: PLAYER, state, reference: reference.map(str::to_string) })
    }

    fn state(&self) -> KycState {
        self.book.kyc().get(PLAYER).expect("tracked").effective(self.book.now())
    }

    fn deposit(&mut self, minor: i64, payment_ref: &str) -> Reply {
        self.apply(Command::Deposit {
            account: PLAYER,
            amount: Money::from_minor(minor),
            payment_ref: payment_ref.to_string(),
            idempotency: None,
        })
    }

    fn withdraw(&mut self, minor: i64) -> Reply {
        self.apply(Command::Withdraw { account: PLAYER, amount: Money::from_minor(minor), idempotency: None })
    }
}

#[test]
fn an_untracked_player_deposits_and_withdraws_as_before() {
    let mut desk = Desk::new();
    assert!(desk.book.kyc().get(PLAYER).is_none());
    desk.deposit(10_000, "psp-1").expect("deposit");
    assert!(matches!(desk.withdraw(5_000), Ok(Ack::Transfer(_))));
}

#[test]
fn a_tracked_player_withdraws_only_once_verified() {
    let mut desk = Desk::new();
    desk.rules(None, None, None).expect("tracked");
    assert_eq!(desk.state(), KycState::Unverified);
    desk.deposit(10_000, "psp-1").expect("deposits are allowed without a cap");
    assert_eq!(desk.withdraw(1_000), Err(Rejection::KycRequired));
    desk.set(KycState::Pending, Some("kyc-1")).expect("asked");
    assert_eq!(desk.withdraw(1_000), Err(Rejection::KycRequired));
    desk.set(KycState::Verified, Some("kyc-1")).expect("verified");
    assert!(matches!(desk.withdraw(1_000), Ok(Ack::Transfer(_))));
    desk.set(KycState::Rejected, Some("kyc-2")).expect("rejected later");
    assert_eq!(desk.withdraw(1_000), Err(Rejection::KycRequired));
    let kyc = desk.book.kyc().get(PLAYER).expect("tracked");
    assert_eq!(kyc.reference.as_deref(), Some("kyc-2"));
    assert_eq!(kyc.changed_at, desk.now - 1);
}

#[test]
fn the_state_machine_answers_replays_and_refuses_expiring_what_was_never_verified() {
    let mut desk = Desk::new();
    desk.rules(None, None, None).expect("tracked");
    assert_eq!(desk.set(KycState::Expired, None), Err(Rejection::KycConflict));
    desk.set(KycState::Pending, Some("kyc-1")).expect("pending");
    let changed_at = desk.book.kyc().get(PLAYER).expect("tracked").changed_at;
    // The provider's answer delivered again changes nothing, not even the time.
    desk.set(KycState::Pending, Some("kyc-1")).expect("replay");
    desk.set(KycState::Pending, None).expect("replay without a reference");
    assert_eq!(desk.book.kyc().get(PLAYER).expect("tracked").changed_at, changed_at);
    assert_eq!(desk.set(KycState::Expired, Some("kyc-1")), Err(Rejection::KycConflict));
    desk.set(KycState::Verified, Some("kyc-1")).expect("verified");
    desk.set(KycState::Expired, None).expect("a verification may expire by hand");
    assert_eq!(desk.state(), KycState::Expired);
    let long = "k".repeat(KYC_REFERENCE_BYTES_MAX + 1);
    assert!(matches!(desk.set(KycState::Verified, Some(&long)), Err(Rejection::InvalidRequest { .. })));
    assert!(matches!(desk.set(KycState::Verified, Some("")), Err(Rejection::InvalidRequest { .. })));
    assert_eq!(
        desk.apply(Command::SetKycState { account: AccountId(9), state: KycState::Verified, reference: None }),
        Err(Rejection::UnknownAccount)
    );
    assert!(matches!(desk.rules(Some(-1), None, None), Err(Rejection::InvalidRequest { .. })));
    assert!(matches!(desk.rules(None, None, Some(0)), Err(Rejection::InvalidRequest { .. })));
}

#[test]
fn deposits_are_capped_until_verified() {
    let mut desk = Desk::new();
    desk.rules(Some(20_000), None, None).expect("tracked");
    desk.deposit(15_000, "psp-1").expect("under the cap");
    assert_eq!(desk.deposit(5_001, "psp-2"), Err(Rejection::KycDepositCap { cap: Money::from_minor(20_000) }));
    desk.deposit(5_000, "psp-3").expect("exactly at the cap");
    // A failed pending deposit gives its room back.
    let pending = |minor: i64, payment_ref: &str| Command::BeginDeposit {
        account: PLAYER,
        amount: Money::from_minor(minor),
        payment_ref: payment_ref.to_string(),
        idempotency: None,
    };
    assert!(matches!(desk.apply(pending(1, "psp-4")), Err(Rejection::KycDepositCap { .. })));
    desk.set(KycState::Verified, Some("kyc-1")).expect("verified");
    let Ok(Ack::Transfer(hold)) = desk.apply(pending(30_000, "psp-5")) else { panic!("no cap once verified") };
    desk.apply(Command::SettleDeposit { account: PLAYER, deposit: hold, outcome: book::DepositOutcome::Failed })
        .expect("failed");
    assert_eq!(desk.book.kyc().get(PLAYER).expect("tracked").deposited, 20_000);
}

#[test]
fn crossing_the_reverification_threshold_sends_a_verified_player_back_to_pending() {
    let mut desk = Desk::new();
    desk.rules(None, Some(50_000), None).expect("tracked");
    desk.set(KycState::Verified, Some("kyc-1")).expect("verified");
    desk.deposit(50_000, "psp-1").expect("at the threshold");
    assert_eq!(desk.state(), KycState::Verified);
    desk.deposit(1, "psp-2").expect("past it");
    assert_eq!(desk.state(), KycState::Pending);
    assert_eq!(desk.withdraw(1_000), Err(Rejection::KycRequired));
    // Verified again above the threshold: it does not ask a third time.
    desk.set(KycState::Verified, Some("kyc-2")).expect("verified again");
    desk.deposit(100_000, "psp-3").expect("more");
    assert_eq!(desk.state(), KycState::Verified);
    assert!(matches!(desk.withdraw(1_000), Ok(Ack::Transfer(TransferId(_)))));
}

#[test]
fn a_verification_expires_by_book_time() {
    let mut desk = Desk::new();
    desk.rules(None, None, Some(100)).expect("tracked");
    desk.set(KycState::Verified, Some("kyc-1")).expect("verified");
    desk.deposit(10_000, "psp-1").expect("deposit");
    assert!(matches!(desk.withdraw(1_000), Ok(Ack::Transfer(_))));
    desk.now += 100;
    assert_eq!(desk.withdraw(1_000), Err(Rejection::KycRequired));
    assert_eq!(desk.state(), KycState::Expired);
    assert_eq!(desk.book.kyc().get(PLAYER).expect("tracked").state, KycState::Verified, "set state kept");
    desk.set(KycState::Verified, Some("kyc-2")).expect("verified again");
    assert!(matches!(desk.withdraw(1_000), Ok(Ack::Transfer(_))));
}
