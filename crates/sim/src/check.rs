//! Comparisons of the real book with the auditor's model, and the book's own invariants: what
//! the simulator checks after every step (wallets) and at every full check, crash and the end
//! (everything).

use std::collections::BTreeMap;

use book::{AccountId, AccountKind, BetStatus, Book, PriceTaken, Wallet};
use domain::Currency;

use crate::auditor::{Auditor, PlayerModel};

fn ensure(holds: bool, what: impl FnOnce() -> String) -> Result<(), String> {
    if holds {
        Ok(())
    } else {
        Err(what())
    }
}

/// A player's wallet as the model expects it.
pub fn expected_wallet(player: &PlayerModel) -> Wallet {
    Wallet {
        currency: player.currency,
        balance: domain::Money::from_minor(player.cash - player.pending_stakes),
        available: domain::Money::from_minor(player.available()),
        pending_stakes: domain::Money::from_minor(player.pending_stakes),
        debt: domain::Money::from_minor(player.debt),
    }
}

/// Every wallet, the book's against the model's.
pub fn compare_wallets(wallets: &[Option<Wallet>], auditor: &Auditor) -> Result<(), String> {
    ensure(wallets.len() == auditor.players.len(), || {
        format!("the book has {} accounts, the model {}", wallets.len(), auditor.players.len())
    })?;
    for (wallet, player) in wallets.iter().zip(&auditor.players) {
        let expected = expected_wallet(player);
        ensure(*wallet == Some(expected), || {
            format!("acc_{} wallet is {wallet:?}, the model says {expected:?}", player.id)
        })?;
        let money = wallet.as_ref().map_or(0, |wallet| wallet.available.minor());
        ensure(money >= 0, || format!("acc_{} has a negative balance: {wallet:?}", player.id))?;
    }
    Ok(())
}

/// The book's own invariants and money conservation computed here from the ledger accounts:
/// every currency's posted balances sum to zero, pending debits equal pending credits, and no
/// player's cash is negative.
pub fn check_book(book: &Book) -> Result<(), String> {
    book.check_invariants().map_err(|violation| format!("book invariant: {violation}"))?;
    let mut sums: BTreeMap<Currency, (i64, i64, i64)> = BTreeMap::new();
    for account in book.ledger().accounts() {
        let sum = sums.entry(account.currency).or_default();
        sum.0 += account.posted_balance();
        sum.1 += account.debits_pending;
        sum.2 += account.credits_pending;
        if matches!(account.kind, AccountKind::PlayerCash(_)) {
            ensure(account.available() >= 0, || format!("{} is negative: {account:?}", account.id))?;
        }
    }
    for (currency, (posted, debits_pending, credits_pending)) in sums {
        ensure(posted == 0 && debits_pending == credits_pending, || {
            format!("{currency} is not conserved: posted {posted}, pending debits {debits_pending}, credits {credits_pending}")
        })?;
    }
    Ok(())
}

/// Every amount the book holds as `Money` is within the money range, which the codec enforces
/// when it reads a snapshot back (and `Money::from_minor` asserts in debug builds).
pub fn check_amounts(book: &Book) -> Result<(), String> {
    let out_of_range = |minor: i64| minor.abs() > domain::MONEY_MINOR_MAX;
    for selection in book.selections() {
        ensure(!out_of_range(selection.liability.minor()), || {
            format!("{} liability {} is beyond the money maximum", selection.id, selection.liability.minor())
        })?;
    }
    for bet in book.bets() {
        let payout = bet.settlement.map_or(0, |settlement| settlement.payout.minor());
        ensure(!out_of_range(bet.potential_payout.minor()) && !out_of_range(payout), || {
            format!(
                "{} potential payout {} or payout {payout} is beyond the money maximum",
                bet.id,
                bet.potential_payout.minor()
            )
        })?;
    }
    for account in book.ledger().accounts() {
        if matches!(account.kind, AccountKind::PlayerCash(_) | AccountKind::PlayerDebt(_)) {
            ensure(!out_of_range(account.posted_balance()), || {
                format!("{} balance {} is beyond the money maximum", account.id, account.posted_balance())
            })?;
        }
    }
    Ok(())
}

/// Everything the model knows, compared with the book.
pub fn compare_all(book: &Book, auditor: &Auditor) -> Result<(), String> {
    check_book(book)?;
    check_amounts(book)?;
    auditor.self_check()?;
    ensure(book.now() == auditor.now, || format!("book time {} but model time {}", book.now(), auditor.now))?;
    compare_players(book, auditor)?;
    compare_ledger(book, auditor)?;
    compare_catalog(book, auditor)?;
    compare_bets(book, auditor)?;
    compare_feed(book, auditor)?;
    ensure(book.exposure() == auditor.exposure(), || {
        format!("exposure {} but open liabilities add up to {}", book.exposure(), auditor.exposure())
    })?;
    let keys: Vec<(String, bool)> = book.api_keys().iter().map(|key| (key.key_hash.clone(), key.revoked)).collect();
    ensure(keys == auditor.api_keys, || format!("API keys {keys:?}, the model has {:?}", auditor.api_keys))
}

fn compare_players(book: &Book, auditor: &Auditor) -> Result<(), String> {
    let wallets: Vec<Option<Wallet>> = (1..=book.players().len() as u64).map(|id| book.wallet(AccountId(id))).collect();
    compare_wallets(&wallets, auditor)?;
    for (player, model) in book.players().iter().zip(&auditor.players) {
        let restrictions = (player.frozen, player.timed_out_until, player.excluded_until, player.stake_factor);
        let expected = (model.frozen, model.timed_out_until, model.excluded_until, model.stake_factor);
        ensure(restrictions == expected, || {
            format!("{} restrictions {restrictions:?}, model {expected:?}", player.id)
        })?;
        for (kind_index, kind) in
            [book::LimitKind::Deposit, book::LimitKind::Loss, book::LimitKind::Stake].iter().enumerate()
        {
            for (period_index, period) in book::Period::ALL.iter().enumerate() {
                let slot = player.limits[kind.slot()][period.slot()];
                let found = (
                    slot.current.map(|money| money.minor()),
                    slot.pending.map(|pending| (pending.value.map(|money| money.minor()), pending.effective_at)),
                );
                let limit = model.limits[kind_index][period_index];
                ensure(found == (limit.current, limit.pending), || {
                    format!(
                        "{} {} limit per {} is {found:?}, model {limit:?}",
                        player.id,
                        kind.as_str(),
                        period.as_str()
                    )
                })?;
            }
        }
        for period in book::Period::ALL {
            let usage = player.usage(period, book.now());
            let found = (usage.deposited, usage.staked, usage.net_loss);
            let expected = auditor.usage_now(model.id, period);
            let expected = (expected.deposited, expected.staked, expected.net_loss);
            ensure(found == expected, || {
                format!(
                    "{} usage this {} (deposited, staked, net loss) {found:?}, model {expected:?}",
                    player.id,
                    period.as_str()
                )
            })?;
        }
    }
    Ok(())
}

fn compare_ledger(book: &Book, auditor: &Auditor) -> Result<(), String> {
    // Transfers issued, not held: a settled bet's transfers leave the ledger at once
    // (`Ledger::let_go`), and `Ledger::verify` checks what left through its folded totals.
    let transfers = book.ledger().transfers().issued();
    ensure(transfers == auditor.transfers, || {
        format!("{transfers} transfers issued, the model counts {}", auditor.transfers)
    })?;
    for (currency, expected) in &auditor.system {
        let balance = |wanted: AccountKind| {
            book.ledger()
                .accounts()
                .iter()
                .find(|account| account.kind == wanted && account.currency == *currency)
                .map_or(0, |account| account.posted_balance())
        };
        let found =
            (balance(AccountKind::House), balance(AccountKind::PaymentClearing), balance(AccountKind::Adjustments));
        let model = (expected.house, expected.clearing, expected.adjustments);
        ensure(found == model, || format!("{currency} house, clearing and adjustments {found:?}, model {model:?}"))?;
    }
    Ok(())
}

fn compare_catalog(book: &Book, auditor: &Auditor) -> Result<(), String> {
    ensure(book.events().len() == auditor.events.len(), || {
        format!("{} events, model {}", book.events().len(), auditor.events.len())
    })?;
    for (event, model) in book.events().iter().zip(&auditor.events) {
        ensure((event.state, event.bet_delay_seconds) == (model.state, model.delay_seconds), || {
            format!(
                "{} is {:?}, model {:?}",
                event.id,
                (event.state, event.bet_delay_seconds),
                (model.state, model.delay_seconds)
            )
        })?;
    }
    ensure(book.markets().len() == auditor.markets.len(), || {
        format!("{} markets, model {}", book.markets().len(), auditor.markets.len())
    })?;
    for (market, model) in book.markets().iter().zip(&auditor.markets) {
        let found = (market.status, market.in_play, market.settlement_version, market.each_way, market.risk);
        let expected = (model.status, model.in_play, model.settlement_version, model.each_way, model.risk);
        ensure(found == expected, || format!("{} is {found:?}, model {expected:?}", market.id))?;
        let results: Vec<_> = market
            .results
            .iter()
            .map(|result| (result.selection.0, result.outcome, result.dead_heat, result.void_factor))
            .collect();
        let expected: Vec<_> = model
            .results
            .iter()
            .map(|result| (result.selection, result.outcome, result.dead_heat, result.void_factor))
            .collect();
        ensure(results == expected, || format!("{} results {results:?}, model {expected:?}", market.id))?;
    }
    ensure(book.selections().len() == auditor.selections.len(), || {
        format!("{} selections, model {}", book.selections().len(), auditor.selections.len())
    })?;
    for (selection, model) in book.selections().iter().zip(&auditor.selections) {
        let by_currency: Vec<(Currency, i64)> =
            selection.liabilities.iter().map(|(currency, amount)| (*currency, amount.minor())).collect();
        let found = (selection.price.scaled(), selection.price_version, selection.liability.minor(), by_currency);
        let expected = (
            model.price,
            model.version,
            model.liability,
            model.by_currency.iter().map(|(currency, amount)| (*currency, *amount)).collect::<Vec<_>>(),
        );
        ensure(found == expected, || {
            format!("{} (price, version, liability, by currency) {found:?}, model {expected:?}", selection.id)
        })?;
    }
    let fx = book.fx();
    let found = (fx.base, fx.version, fx.set_at, fx.rates.clone());
    let expected = (
        auditor.fx.base,
        auditor.fx.version,
        auditor.fx.set_at,
        auditor.fx.rates.iter().map(|(currency, rate)| (*currency, *rate)).collect::<Vec<_>>(),
    );
    ensure(found == expected, || format!("exchange rates {found:?}, model {expected:?}"))?;
    Ok(())
}

/// The feed's mapping of the provider's ids, the odds stamps, the inactive outcomes and the
/// cancellation windows in force, against the model's.
fn compare_feed(book: &Book, auditor: &Auditor) -> Result<(), String> {
    let parts = book.feed().to_parts();
    let model = &auditor.feed;
    let events: Vec<_> = parts.events.iter().map(|(provider, event, id)| ((provider, event), id.0)).collect();
    let expected: Vec<_> = model.events.iter().map(|((provider, event), id)| ((provider, event), *id)).collect();
    ensure(events == expected, || format!("feed events {events:?}, model {expected:?}"))?;
    let markets: Vec<_> =
        parts.markets.iter().map(|(provider, event, market, id)| ((provider, event, market), id.0)).collect();
    let expected: Vec<_> =
        model.markets.iter().map(|((provider, event, market), id)| ((provider, event, market), *id)).collect();
    ensure(markets == expected, || format!("feed markets {markets:?}, model {expected:?}"))?;
    let selections: Vec<_> = parts.selections.iter().map(|(market, outcome, id)| ((market.0, outcome), id.0)).collect();
    let expected: Vec<_> = model.selections.iter().map(|((market, outcome), id)| ((*market, outcome), *id)).collect();
    ensure(selections == expected, || format!("feed outcomes {selections:?}, model {expected:?}"))?;
    let stamps: Vec<_> = parts.odds_stamps.iter().map(|(market, at, _)| (market.0, *at)).collect();
    let expected: Vec<_> = model.stamps.iter().map(|(market, at)| (*market, *at)).collect();
    ensure(stamps == expected, || format!("feed odds stamps {stamps:?}, model {expected:?}"))?;
    let inactive: Vec<u64> = parts.inactive.iter().map(|selection| selection.0).collect();
    let expected: Vec<u64> = model.inactive.iter().copied().collect();
    ensure(inactive == expected, || format!("feed inactive outcomes {inactive:?}, model {expected:?}"))?;
    let windows: Vec<_> = parts.windows.iter().map(|(market, windows)| (market.0, windows.clone())).collect();
    let expected: Vec<_> = model.windows.iter().map(|(market, windows)| (*market, windows.clone())).collect();
    ensure(windows == expected, || format!("feed cancellation windows {windows:?}, model {expected:?}"))
}

fn compare_bets(book: &Book, auditor: &Auditor) -> Result<(), String> {
    ensure(book.bets().len() == auditor.bets.len(), || {
        format!("{} bets, model {}", book.bets().len(), auditor.bets.len())
    })?;
    for (bet, model) in book.bets().iter().zip(&auditor.bets) {
        let found = (
            bet.account.0,
            bet.kind,
            bet.each_way,
            bet.status,
            bet.stake_per_line.minor(),
            bet.line_count,
            bet.total_stake.minor(),
            bet.potential_payout.minor(),
            bet.settlement.map(|settlement| settlement.payout.minor()),
            bet.settlement_count,
            bet.rejection,
            bet.delay_until,
        );
        let expected = (
            model.account,
            model.kind,
            model.each_way,
            model.status,
            model.stake_per_line,
            model.line_count,
            model.total_stake,
            model.potential_payout,
            model.payout,
            model.settlements,
            model.rejection,
            model.delay_until,
        );
        ensure(found == expected, || {
            format!(
                "{} (account, kind, each-way, status, stake per line, lines, stake, potential, payout, settlements, \
                 rejection, delay) {found:?}, model {expected:?}",
                bet.id
            )
        })?;
        let open = matches!(bet.status, BetStatus::Pending | BetStatus::Accepted);
        ensure(open == bet.hold.is_some(), || format!("{} is {:?} with hold {:?}", bet.id, bet.status, bet.hold))?;
        let legs: Vec<_> = bet
            .legs
            .iter()
            .map(|leg| (leg.selection.0, leg.requested.scaled(), leg.odds.scaled(), leg.price_version, leg.taken))
            .collect();
        let expected: Vec<_> = model
            .legs
            .iter()
            .map(|leg| {
                let taken = if leg.odds == leg.requested {
                    PriceTaken::Requested
                } else if leg.odds > leg.requested {
                    PriceTaken::Better
                } else {
                    PriceTaken::Changed
                };
                (leg.selection, leg.requested, leg.odds, leg.version, taken)
            })
            .collect();
        ensure(legs == expected, || format!("{} legs {legs:?}, model {expected:?}", bet.id))?;
        let found = (bet.fx.base, bet.fx.version, bet.fx.rate);
        let expected = (model.fx.base, model.fx.version, model.fx.rate);
        ensure(found == expected, || format!("{} converted with {found:?}, model {expected:?}", bet.id))?;
    }
    Ok(())
}
