//! Manual balance adjustments by staff: role limits, four-eyes approval, rejection, expiry,
//! debits never below the free cash, and the ledger conserved throughout.

use book::{
    roles, AccountId, Ack, AdjustmentDirection, AdjustmentId, AdjustmentLimit, AdjustmentLimits, Book, Command, Config,
    Rejection, Reply, StaffId, ADJUSTMENT_APPROVAL_WINDOW_MS,
};
use domain::{Currency, ExchangeRate, Money};

struct Desk {
    book: Book,
    now: u64,
}

const SUPPORT: StaffId = StaffId(1);
const COMPLIANCE: StaffId = StaffId(2);
const COMPLIANCE_2: StaffId = StaffId(3);
const TRADER: StaffId = StaffId(4);
const ADMIN: StaffId = StaffId(5);
const PLAYER: AccountId = AccountId(1);

impl Desk {
    /// A EUR player and five staff members: support, two compliance officers, a trader and an
    /// admin (ids in that order), with the default limits.
    fn new() -> Desk {
        let mut desk = Desk { book: Book::new(Config::default()), now: 1_000 };
        desk.ok(Command::OpenAccount { currency: Currency::EUR });
        for (name, role) in [
            ("support", roles::SUPPORT),
            ("compliance", roles::COMPLIANCE),
            ("compliance2", roles::COMPLIANCE),
            ("trader", roles::TRADER),
            ("admin", roles::ADMIN),
        ] {
            desk.ok(Command::CreateStaff {
                username: name.to_string(),
                password_hash: "$argon2id$hash".to_string(),
                totp_secret: "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP".to_string(),
                roles: role,
            });
        }
        desk
    }

    fn apply(&mut self, command: Command) -> Reply {
        self.now += 1;
        let reply = self.book.apply(self.now, &command, &mut Vec::new());
        self.book.check_invariants().expect("invariants hold after every command");
        reply
    }

    fn ok(&mut self, command: Command) -> Ack {
        let described = format!("{command:?}");
        self.apply(command).unwrap_or_else(|rejection| panic!("{described} refused: {rejection}"))
    }

    fn request(&mut self, staff: StaffId, direction: AdjustmentDirection, minor: i64) -> Reply {
        self.apply(Command::RequestAdjustment {
            account: PLAYER,
            amount: Money::from_minor(minor),
            direction,
            reason: "goodwill after an outage".to_string(),
            staff,
            idempotency: None,
        })
    }

    fn approve(&mut self, adjustment: AdjustmentId, staff: StaffId) -> Reply {
        self.apply(Command::ApproveAdjustment { adjustment, account: PLAYER, staff })
    }

    fn balance(&self) -> i64 {
        self.book.wallet(PLAYER).expect("the player").balance.minor()
    }

    /// The operator's adjustments account of EUR: the mirror image of every adjustment.
    fn operator_balance(&self) -> i64 {
        self.book
            .ledger()
            .accounts()
            .iter()
            .filter(|account| account.kind == book::AccountKind::Adjustments)
            .map(|account| account.posted_balance())
            .sum()
    }
}

fn pending_id(reply: Reply) -> AdjustmentId {
    match reply {
        Ok(Ack::AdjustmentPending { adjustment, .. }) => adjustment,
        other => panic!("expected a pending adjustment, got {other:?}"),
    }
}

#[test]
fn within_the_limit_at_once_above_it_four_eyes() {
    use AdjustmentDirection::{Credit, Debit};
    let mut desk = Desk::new();
    // Support may credit up to 50.00 (the base currency is EUR) on their own.
    assert!(matches!(desk.request(SUPPORT, Credit, 5_000), Ok(Ack::AdjustmentCompleted { .. })));
    assert_eq!(desk.balance(), 5_000);
    assert_eq!(desk.operator_balance(), -5_000);
    // 50.01 waits for a second pair of eyes; nothing moves yet.
    let pending = pending_id(desk.request(SUPPORT, Credit, 5_001));
    assert_eq!(desk.balance(), 5_000);
    assert_eq!(desk.book.adjustments().pending.len(), 1);
    // Never the requester, whoever they are; never a role that may not adjust.
    assert_eq!(desk.approve(pending, SUPPORT), Err(Rejection::SelfApproval));
    assert_eq!(desk.approve(pending, TRADER), Err(Rejection::AdjustmentForbidden));
    assert_eq!(
        desk.apply(Command::ApproveAdjustment { adjustment: pending, account: AccountId(2), staff: COMPLIANCE }),
        Err(Rejection::UnknownAdjustment),
        "another account's id"
    );
    let Ok(Ack::AdjustmentCompleted { adjustment, .. }) = desk.approve(pending, COMPLIANCE) else {
        panic!("compliance covers 50.01")
    };
    assert_eq!(adjustment, pending);
    assert_eq!(desk.balance(), 10_001);
    assert_eq!(desk.approve(pending, ADMIN), Err(Rejection::AdjustmentNotPending), "approved once only");
    assert_eq!(desk.approve(AdjustmentId(99), ADMIN), Err(Rejection::UnknownAdjustment));

    // A debit above compliance's limit: the other compliance officer's limit does not cover
    // it either; the admin's does, but not beyond the player's free cash.
    let debit = pending_id(desk.request(COMPLIANCE, Debit, 200_000));
    assert_eq!(desk.approve(debit, COMPLIANCE_2), Err(Rejection::ApprovalLimit));
    assert_eq!(desk.approve(debit, ADMIN), Err(Rejection::InsufficientFunds));
    assert_eq!(desk.book.adjustments().pending.len(), 1, "a refused approval leaves it pending");
    let reject = |reason: &str| Command::RejectAdjustment {
        adjustment: debit,
        account: PLAYER,
        staff: COMPLIANCE_2,
        reason: reason.to_string(),
    };
    assert!(matches!(desk.apply(reject("")), Err(Rejection::InvalidRequest { .. })), "a reason is required");
    assert_eq!(desk.apply(reject("amount mistyped")), Ok(Ack::Done));
    assert_eq!(desk.approve(debit, ADMIN), Err(Rejection::AdjustmentNotPending));

    // Debits take the free cash and no more.
    assert_eq!(desk.request(COMPLIANCE, Debit, 10_002), Err(Rejection::InsufficientFunds));
    assert!(matches!(desk.request(COMPLIANCE, Debit, 10_001), Ok(Ack::AdjustmentCompleted { .. })));
    assert_eq!(desk.balance(), 0);
    assert_eq!(desk.operator_balance(), 0, "credits and debits net out on the operator's account");

    // Traders and settlement may not adjust; nor may a disabled member.
    assert_eq!(desk.request(TRADER, Credit, 1), Err(Rejection::AdjustmentForbidden));
    desk.ok(Command::DisableStaff { staff: SUPPORT });
    assert_eq!(desk.request(SUPPORT, Credit, 1), Err(Rejection::AdjustmentForbidden));
    // A mandatory, bounded reason and a positive amount.
    for (amount, reason) in [(1, String::new()), (1, "r".repeat(501)), (0, "why".to_string())] {
        let refused = desk.apply(Command::RequestAdjustment {
            account: PLAYER,
            amount: Money::from_minor(amount),
            direction: Credit,
            reason,
            staff: ADMIN,
            idempotency: None,
        });
        assert!(matches!(refused, Err(Rejection::InvalidRequest { .. })), "{refused:?}");
    }
}

#[test]
fn pending_requests_expire_after_the_approval_window() {
    let mut desk = Desk::new();
    let pending = pending_id(desk.request(SUPPORT, AdjustmentDirection::Credit, 6_000));
    desk.now += ADJUSTMENT_APPROVAL_WINDOW_MS - 2;
    assert!(desk.book.adjustments().pending.contains_key(&pending));
    assert!(matches!(desk.approve(pending, COMPLIANCE), Ok(Ack::AdjustmentCompleted { .. })), "just inside");
    let late = pending_id(desk.request(SUPPORT, AdjustmentDirection::Credit, 6_000));
    desk.now += ADJUSTMENT_APPROVAL_WINDOW_MS;
    assert_eq!(desk.approve(late, COMPLIANCE), Err(Rejection::AdjustmentNotPending));
    assert!(desk.book.adjustments().pending.is_empty());
    assert_eq!(desk.balance(), 6_000);
}

#[test]
fn limits_are_in_the_base_currency_and_set_by_a_command() {
    let mut desk = Desk::new();
    let gbp = Currency::parse("GBP").expect("GBP");
    desk.ok(Command::SetFxRates {
        base: Currency::EUR,
        rates: vec![(gbp, ExchangeRate::parse("0.85").expect("rate"))],
    });
    desk.ok(Command::OpenAccount { currency: gbp });
    let in_gbp = |minor: i64| Command::RequestAdjustment {
        account: AccountId(2),
        amount: Money::from_minor(minor),
        direction: AdjustmentDirection::Credit,
        reason: "refund".to_string(),
        staff: SUPPORT,
        idempotency: None,
    };
    // 42.50 GBP is 50.00 EUR: within support's limit; 42.51 GBP is above it.
    assert!(matches!(desk.apply(in_gbp(4_250)), Ok(Ack::AdjustmentCompleted { .. })));
    assert!(matches!(desk.apply(in_gbp(4_251)), Ok(Ack::AdjustmentPending { .. })));
    // Narrower limits apply from the command on; support may then adjust nothing.
    let mut limits = AdjustmentLimits::default();
    limits.0[3] = AdjustmentLimit::Forbidden;
    desk.ok(Command::SetAdjustmentLimits { limits });
    assert_eq!(desk.apply(in_gbp(1)), Err(Rejection::AdjustmentForbidden));
    assert_eq!(desk.book.adjustments().limits.for_roles(roles::SUPPORT | roles::COMPLIANCE), limits.0[2]);
    // A role change applies at once.
    desk.ok(Command::SetStaffRoles { staff: SUPPORT, roles: roles::ADMIN });
    assert!(matches!(desk.apply(in_gbp(1_000_000)), Ok(Ack::AdjustmentCompleted { .. })));
}
