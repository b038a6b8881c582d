//! Settlement, resettlement, voids and cash-out.
//!
//! A market's results are written onto the legs of its bets; a bet settles once every leg has a
//! result, or earlier when one losing leg already decides it. Settling posts the stake hold to
//! the house and pays the payout. Unsettling reverses exactly that: the payout comes back (as a
//! debt where the player's cash no longer covers it), the stake returns and is held again, and
//! the bet is open once more. A market settled again with the same results changes nothing.

use std::collections::BTreeMap;

use domain::{Currency, Money, Multiplier, Ratio, MONEY_MINOR_MAX};

use crate::bet::{leg_multiplier, line_payout, lines, settled_status, BetKind, BetStatus, Settlement};
use crate::book::{Book, Quote};
use crate::catalog::{MarketStatus, Outcome, SelectionResult};
use crate::command::ResultRequest;
use crate::constants::RESULTS_MAX;
use crate::event::{Ack, BookEvent, Reply};
use crate::ids::{AccountId, BetId, MarketId, QuoteId, SelectionId};
use crate::ledger::{TransferCode, TransferRequest};
use crate::placement::price;
use crate::rejection::Rejection;

impl Book {
    /// A market whose results may still change: held, and not past its resettlement window
    /// (`resettlement_window_closed` otherwise, also for a market that already left the book).
    fn resultable_market(&self, market: MarketId) -> Result<&crate::catalog::Market, Rejection> {
        if self.markets.is_forgotten(market.index()) {
            return Err(Rejection::ResettlementWindowClosed);
        }
        let found = self.markets.get(market.index()).ok_or(Rejection::UnknownMarket)?;
        if found.closed_at.is_some_and(|closed| self.window_closed(closed)) {
            return Err(Rejection::ResettlementWindowClosed);
        }
        Ok(found)
    }

    pub(crate) fn settle_market(
        &mut self,
        market: MarketId,
        requests: &[ResultRequest],
        events: &mut Vec<BookEvent>,
    ) -> Reply {
        let found = self.resultable_market(market)?;
        if requests.len() > RESULTS_MAX {
            return Err(Rejection::InvalidRequest { reason: "too many results" });
        }
        let mut results: Vec<SelectionResult> = found
            .selections
            .iter()
            .map(|&selection| SelectionResult {
                selection,
                outcome: Outcome::Lose,
                dead_heat: Ratio::ONE,
                void_factor: Ratio::ZERO,
            })
            .collect();
        for request in requests {
            let slot = results
                .iter_mut()
                .find(|result| result.selection == request.selection)
                .ok_or(Rejection::SelectionUnavailable)?;
            let dead_heat = request.dead_heat.unwrap_or(Ratio::ONE);
            let void_factor = request.void_factor.unwrap_or(Ratio::ZERO);
            if !dead_heat.is_unit_fraction() || void_factor.num() > void_factor.den() {
                return Err(Rejection::InvalidRequest {
                    reason: "dead-heat factor must be in (0, 1] and void factor in [0, 1]",
                });
            }
            if request.outcome == Outcome::Place && found.each_way.is_none() {
                return Err(Rejection::InvalidRequest { reason: "place results need each-way terms" });
            }
            *slot = SelectionResult { selection: request.selection, outcome: request.outcome, dead_heat, void_factor };
        }
        if requests
            .iter()
            .enumerate()
            .any(|(index, request)| requests[..index].iter().any(|other| other.selection == request.selection))
        {
            return Err(Rejection::InvalidRequest { reason: "a selection is resulted twice" });
        }
        match found.status {
            MarketStatus::Settled if found.results == results => return Ok(Ack::Settled { bets: 0 }),
            MarketStatus::Settled | MarketStatus::Voided => return Err(Rejection::AlreadySettled),
            _ => {}
        }
        let changed = self.apply_results(market, results, MarketStatus::Settled, events)?;
        Ok(Ack::Settled { bets: changed })
    }

    pub(crate) fn void_market(&mut self, market: MarketId, events: &mut Vec<BookEvent>) -> Reply {
        let found = self.resultable_market(market)?;
        match found.status {
            MarketStatus::Voided => return Ok(Ack::Settled { bets: 0 }),
            MarketStatus::Settled => return Err(Rejection::AlreadySettled),
            _ => {}
        }
        let results = found
            .selections
            .iter()
            .map(|&selection| SelectionResult {
                selection,
                outcome: Outcome::Void,
                dead_heat: Ratio::ONE,
                void_factor: Ratio::ZERO,
            })
            .collect();
        let changed = self.apply_results(market, results, MarketStatus::Voided, events)?;
        Ok(Ack::Settled { bets: changed })
    }

    /// Writes results onto the market and its bets and settles every bet they decide, unless
    /// the payouts would take a balance past the money maximum.
    fn apply_results(
        &mut self,
        market: MarketId,
        results: Vec<SelectionResult>,
        status: MarketStatus,
        events: &mut Vec<BookEvent>,
    ) -> Result<u32, Rejection> {
        // Bets closed already (a multiple lost on another leg) take these results too.
        self.unpack_market(market);
        self.check_settlement_amounts(market, &results)?;
        let found = &mut self.markets[market.index()];
        found.settlement_version += 1;
        found.results = results;
        let bets = found.bets.clone();
        self.change_market_status(market, status, events);
        self.set_market_closed(market, true);
        let mut changed = 0;
        for bet in bets {
            if self.bets[bet.index()].status == BetStatus::Pending {
                // A bet still in its delay when the market is resulted never stands.
                self.reject_pending(bet, Rejection::MarketClosed, events);
                continue;
            }
            // A bet in a feed cancellation window is void on this market whatever its results.
            let windowed = self.feed.in_cancel_window(market, self.bets[bet.index()].placed_at);
            let results = &self.markets[market.index()].results;
            let found = &mut self.bets[bet.index()];
            for leg in found.legs.iter_mut().filter(|leg| leg.market == market) {
                leg.result = if windowed {
                    Some(SelectionResult {
                        selection: leg.selection,
                        outcome: Outcome::Void,
                        dead_heat: Ratio::ONE,
                        void_factor: Ratio::ZERO,
                    })
                } else {
                    results.iter().find(|result| result.selection == leg.selection).copied()
                };
            }
            if self.try_settle(bet, events) {
                changed += 1;
            }
        }
        Ok(changed)
    }

    /// Refuses results whose payouts would take a player's cash past the money maximum. It
    /// runs before anything changes, so a refused settlement has no effect at all: per player,
    /// the posted cash plus what the settlement pays less the stakes it takes must fit (a
    /// debt repaid from the payouts only lowers the cash further).
    fn check_settlement_amounts(&self, market: MarketId, results: &[SelectionResult]) -> Result<(), Rejection> {
        let mut change: BTreeMap<AccountId, i128> = BTreeMap::new();
        for &bet in &self.markets[market.index()].bets {
            let found = &self.bets[bet.index()];
            if found.status != BetStatus::Accepted {
                continue;
            }
            if let Some((payout, _)) = self.decided_payout(bet, Some((market, results))) {
                *change.entry(found.account).or_default() +=
                    i128::from(payout.minor()) - i128::from(found.total_stake.minor());
            }
        }
        for (account, change) in change {
            let cash = self.ledger.account(self.players[account.index()].cash).posted_balance();
            if i128::from(cash) + change > i128::from(MONEY_MINOR_MAX) {
                return Err(Rejection::AmountTooLarge);
            }
        }
        Ok(())
    }

    /// Refuses an unsettlement whose reversals would take a player's cash or debt, or a
    /// selection's liability, past the money maximum. It runs before anything changes, and
    /// bounds each from above: every reopened bet's stake comes back to the cash, its whole
    /// payout may become debt, and its liability counts again on its selections (the positive
    /// parts only, so no order of the reversals passes the maximum on the way).
    fn check_unsettlement_amounts(&self, market: MarketId) -> Result<(), Rejection> {
        self.check_reversal_amounts(&self.markets[market.index()].bets)
    }

    /// The check of [`Book::check_unsettlement_amounts`] over the settled bets among `bets`:
    /// also run before a feed's cancellation window (or its rollback) reverses settlements.
    pub(crate) fn check_reversal_amounts(&self, bets: &[BetId]) -> Result<(), Rejection> {
        let mut returned: BTreeMap<AccountId, (i128, i128)> = BTreeMap::new();
        // Per selection: the base-currency liability (`None`) and each currency's own.
        let mut liability: BTreeMap<(SelectionId, Option<Currency>), i128> = BTreeMap::new();
        for &bet in bets {
            let found = &self.bets[bet.index()];
            let Some(settlement) = found.settlement.filter(|_| found.status.is_settled_by_result()) else {
                continue;
            };
            let entry = returned.entry(found.account).or_default();
            entry.0 += i128::from(found.total_stake.minor());
            entry.1 += i128::from(settlement.payout.minor());
            let pricing = price(found.kind, &found.legs, found.each_way, found.stake_per_line);
            let currency = self.players[found.account.index()].currency;
            let base = pricing.base_liability(&found.fx, currency);
            for ((leg, added), added_base) in found.legs.iter().zip(pricing.liability).zip(base) {
                *liability.entry((leg.selection, None)).or_default() += i128::from(added_base.max(0));
                *liability.entry((leg.selection, Some(currency))).or_default() += i128::from(added.max(0));
            }
        }
        let max = i128::from(MONEY_MINOR_MAX);
        for (account, (stakes, payouts)) in returned {
            let player = &self.players[account.index()];
            let cash = self.ledger.account(player.cash).posted_balance();
            let owed = -self.ledger.account(player.debt).posted_balance();
            if i128::from(cash) + stakes > max || i128::from(owed) + payouts > max {
                return Err(Rejection::AmountTooLarge);
            }
        }
        for ((selection, currency), added) in liability {
            let found = &self.selections[selection.index()];
            let now = match currency {
                None => found.liability.minor(),
                Some(currency) => {
                    found.liabilities.iter().find(|(listed, _)| *listed == currency).map_or(0, |(_, m)| m.minor())
                }
            };
            if i128::from(now) + added > max {
                return Err(Rejection::AmountTooLarge);
            }
        }
        Ok(())
    }

    pub(crate) fn unsettle_market(&mut self, market: MarketId, events: &mut Vec<BookEvent>) -> Reply {
        let found = self.resultable_market(market)?;
        if !found.status.is_resulted() {
            return Err(Rejection::NotSettled);
        }
        self.unpack_market(market);
        self.check_unsettlement_amounts(market)?;
        let found = &mut self.markets[market.index()];
        found.settlement_version += 1;
        found.results.clear();
        let bets = found.bets.clone();
        // Results are withdrawn; no bets until the market is resettled or reopened.
        self.change_market_status(market, MarketStatus::Closed, events);
        self.set_market_closed(market, false);
        let mut changed = 0;
        for bet in bets {
            if self.feed.in_cancel_window(market, self.bets[bet.index()].placed_at) {
                // Cancelled by the feed for its placement time: withdrawing the market's
                // results does not reopen it.
                continue;
            }
            let found = &mut self.bets[bet.index()];
            if found.status == BetStatus::CashedOut || found.status == BetStatus::Rejected {
                continue;
            }
            for leg in found.legs.iter_mut().filter(|leg| leg.market == market) {
                leg.result = None;
            }
            if found.status.is_settled_by_result() {
                self.reverse_settlement(bet, events);
                changed += 1;
                // Another leg may still decide the bet on its own.
                self.try_settle(bet, events);
            }
        }
        Ok(Ack::Settled { bets: changed })
    }

    /// The multiplier of every leg, for the win part and the place part. `None` for a leg
    /// without a result yet. With `resulting`, legs on that market take those results instead
    /// of their own (results about to be written), except where a feed cancellation window
    /// keeps the bet void on that market.
    fn leg_multipliers(
        &self,
        bet: BetId,
        resulting: Option<(MarketId, &[SelectionResult])>,
    ) -> Vec<Option<(Multiplier, Multiplier)>> {
        let found = &self.bets[bet.index()];
        found
            .legs
            .iter()
            .map(|leg| {
                let result = match resulting {
                    Some((market, results))
                        if leg.market == market && !self.feed.in_cancel_window(market, found.placed_at) =>
                    {
                        results.iter().find(|result| result.selection == leg.selection).copied()
                    }
                    _ => leg.result,
                };
                result.map(|result| {
                    let win = leg_multiplier(&result, Multiplier::odds(leg.odds), None);
                    let place = match leg.each_way {
                        Some(terms) => leg_multiplier(
                            &result,
                            Multiplier::odds(leg.odds),
                            Some(crate::bet::place_odds(leg.odds, terms)),
                        ),
                        None => Multiplier::ZERO,
                    };
                    (win, place)
                })
            })
            .collect()
    }

    /// Settles an accepted bet if its results decide it. Returns whether it settled.
    pub(crate) fn try_settle(&mut self, bet: BetId, events: &mut Vec<BookEvent>) -> bool {
        let found = &self.bets[bet.index()];
        if found.status != BetStatus::Accepted {
            return false;
        }
        let Some((payout, lost_early)) = self.decided_payout(bet, None) else {
            return false;
        };
        let status = if lost_early { BetStatus::Lost } else { settled_status(found, payout) };
        self.pay(bet, payout, status, events);
        true
    }

    /// The payout an accepted bet's results decide, and whether it is lost before every leg
    /// has a result; `None` while they decide nothing yet. `resulting` as `leg_multipliers`.
    fn decided_payout(&self, bet: BetId, resulting: Option<(MarketId, &[SelectionResult])>) -> Option<(Money, bool)> {
        let found = &self.bets[bet.index()];
        let multipliers = self.leg_multipliers(bet, resulting);
        let all_resulted = multipliers.iter().all(Option::is_some);
        // A single or multiple with a leg that pays nothing in any part is lost already.
        let already_lost = !matches!(found.kind, BetKind::System(_))
            && multipliers.iter().flatten().any(|(win, place)| win.num() == 0 && place.num() == 0);
        if !all_resulted && !already_lost {
            return None;
        }
        let payout = if already_lost {
            Money::ZERO
        } else {
            let win: Vec<Multiplier> = multipliers.iter().map(|m| m.map_or(Multiplier::ZERO, |m| m.0)).collect();
            let place: Vec<Multiplier> = multipliers.iter().map(|m| m.map_or(Multiplier::ZERO, |m| m.1)).collect();
            let mut total = 0i64;
            for line in lines(found.kind, found.legs.len(), found.each_way) {
                total += line_payout(found.stake_per_line, line, if line.place { &place } else { &win }).minor();
            }
            Money::from_minor(total)
        };
        Some((payout, already_lost && !all_resulted))
    }

    /// Posts the stake to the house and pays `payout` to the player: the end of an open bet by
    /// result or cash-out.
    fn pay(&mut self, bet: BetId, payout: Money, status: BetStatus, events: &mut Vec<BookEvent>) {
        self.add_liability(bet, -1, events);
        let now = self.now;
        let found = &mut self.bets[bet.index()];
        debug_assert!(found.status == BetStatus::Accepted && found.settlement.is_none(), "a bet is paid at most once");
        let (account, hold) = (found.account, found.hold.take());
        let Some(hold) = hold else {
            debug_assert!(false, "an accepted bet holds its stake");
            return;
        };
        let Ok(stake_posted) = self.ledger.post_pending(hold, now) else {
            debug_assert!(false, "the stake hold of an open bet is open");
            return;
        };
        self.emit_transfer(stake_posted, events);
        let player = &self.players[account.index()];
        let (cash, currency) = (player.cash, player.currency);
        let payout_transfer = if payout.is_positive() {
            let house = self.ledger.house(currency);
            let code = if status == BetStatus::CashedOut { TransferCode::Cashout } else { TransferCode::Payout };
            let request = TransferRequest { debit: house, credit: cash, amount: payout, code, reference: bet.0 };
            self.post(request, events).ok()
        } else {
            None
        };
        let found = &mut self.bets[bet.index()];
        found.status = status;
        found.settlement = Some(Settlement { payout, stake_posted, payout_transfer, at: now });
        self.bet_closing(bet);
        self.open_bets = self.open_bets.saturating_sub(1);
        if status == BetStatus::CashedOut {
            self.bet_closed_alone(bet, now);
        }
        let found = &mut self.bets[bet.index()];
        found.settlement_count += 1;
        found.cashout_quote = None;
        self.players[account.index()].record(now, 0, 0, -payout.minor());
        self.record_net_position(account, payout.minor());
        self.repay_debt(account, events);
        events.push(BookEvent::BetStatusChanged { bet, account, status, payout });
    }

    /// Undoes a settlement exactly: the payout comes back, the posted stake returns and is held
    /// again, and the bet's liability is counted again.
    pub(crate) fn reverse_settlement(&mut self, bet: BetId, events: &mut Vec<BookEvent>) {
        let now = self.now;
        let found = &mut self.bets[bet.index()];
        let Some(settlement) = found.settlement.take() else {
            debug_assert!(false, "only a settled bet is reversed");
            return;
        };
        let (account, stake) = (found.account, found.total_stake);
        let player = &self.players[account.index()];
        let (cash, debt, currency) = (player.cash, player.debt, player.currency);
        let house = self.ledger.house(currency);
        if settlement.payout.is_positive() {
            // Take back what the cash can cover; the rest becomes a debt the player owes.
            let free = self.ledger.account(cash).available().max(0);
            let from_cash = settlement.payout.minor().min(free);
            let shortfall = settlement.payout.minor() - from_cash;
            if from_cash > 0 {
                let request = TransferRequest {
                    debit: cash,
                    credit: house,
                    amount: Money::from_minor(from_cash),
                    code: TransferCode::PayoutReversal,
                    reference: bet.0,
                };
                let _ = self.post(request, events);
            }
            if shortfall > 0 {
                let request = TransferRequest {
                    debit: debt,
                    credit: house,
                    amount: Money::from_minor(shortfall),
                    code: TransferCode::DebtRecognised,
                    reference: bet.0,
                };
                let _ = self.post(request, events);
            }
        }
        let stake_back = TransferRequest {
            debit: house,
            credit: cash,
            amount: stake,
            code: TransferCode::StakeReversal,
            reference: bet.0,
        };
        let _ = self.post(stake_back, events);
        let hold_request =
            TransferRequest { debit: cash, credit: house, amount: stake, code: TransferCode::Stake, reference: bet.0 };
        let hold = self.ledger.hold(hold_request, now).ok();
        debug_assert!(hold.is_some(), "the returned stake covers the new hold");
        if let Some(hold) = hold {
            self.emit_transfer(hold, events);
        }
        let found = &mut self.bets[bet.index()];
        found.hold = hold;
        found.status = BetStatus::Accepted;
        self.open_bets += 1;
        self.players[account.index()].record(now, 0, 0, settlement.payout.minor());
        self.record_net_position(account, -settlement.payout.minor());
        self.add_liability(bet, 1, events);
        events.push(BookEvent::BetStatusChanged { bet, account, status: BetStatus::Accepted, payout: Money::ZERO });
    }

    // ---- cash-out -----------------------------------------------------------------------

    /// The fair value of an open bet at current prices, less the house margin: each open leg
    /// contributes its struck odds over its current odds, each resulted leg its result.
    fn cashout_value(&self, bet: BetId) -> Result<Money, Rejection> {
        let found = &self.bets[bet.index()];
        if found.status != BetStatus::Accepted {
            return Err(Rejection::CashoutUnavailable { reason: "bet is not open" });
        }
        if found.each_way || matches!(found.kind, BetKind::System(_)) {
            return Err(Rejection::CashoutUnavailable { reason: "each-way and system bets cannot be cashed out" });
        }
        let resulted = self.leg_multipliers(bet, None);
        let mut multipliers = Vec::with_capacity(found.legs.len() + 1);
        for (leg, result) in found.legs.iter().zip(resulted) {
            match result {
                Some((win, _)) => multipliers.push(win),
                None => {
                    self.check_market_open(leg.market)
                        .map_err(|_| Rejection::CashoutUnavailable { reason: "a market is not open" })?;
                    let current = self.selections[leg.selection.index()].price;
                    multipliers.push(
                        Multiplier::odds(leg.odds).times(Multiplier::ratio_of(domain::ODDS_SCALE, current.scaled())),
                    );
                }
            }
        }
        multipliers.push(Multiplier::ratio(self.config.cashout_margin.complement()));
        let amount = domain::payout_floor(found.stake_per_line, &multipliers);
        if !amount.is_positive() {
            return Err(Rejection::CashoutUnavailable { reason: "no value to cash out" });
        }
        Ok(amount)
    }

    pub(crate) fn quote_cashout(&mut self, account: AccountId, bet: BetId) -> Reply {
        // A closed bet answers `cashout_unavailable` as ever: unpacked to be looked at.
        self.unpack_bet(bet);
        let found = self.bets.get(bet.index()).filter(|found| found.account == account).ok_or(Rejection::UnknownBet)?;
        let price_versions =
            found.legs.iter().map(|leg| self.selections[leg.selection.index()].price_version).collect();
        let amount = self.cashout_value(bet)?;
        self.quotes_issued += 1;
        let id = QuoteId(self.quotes_issued);
        let expires_at = self.now + self.config.cashout_quote_ttl_ms;
        let found = &mut self.bets[bet.index()];
        if let Some(previous) = found.cashout_quote.replace(id) {
            self.quotes.remove(&previous);
        }
        self.quotes.insert(id, Quote { id, bet, amount, expires_at, price_versions });
        Ok(Ack::CashoutQuote { quote: id, amount, expires_at })
    }

    pub(crate) fn accept_cashout(
        &mut self,
        account: AccountId,
        bet: BetId,
        quote: QuoteId,
        events: &mut Vec<BookEvent>,
    ) -> Reply {
        self.unpack_bet(bet);
        let found = self.bets.get(bet.index()).filter(|found| found.account == account).ok_or(Rejection::UnknownBet)?;
        let offer = self.quotes.get(&quote).filter(|offer| offer.bet == bet).ok_or(Rejection::QuoteExpired)?;
        if offer.expires_at < self.now {
            return Err(Rejection::QuoteExpired);
        }
        if found.status != BetStatus::Accepted {
            return Err(Rejection::CashoutUnavailable { reason: "bet is not open" });
        }
        for (leg, version) in found.legs.iter().zip(&offer.price_versions) {
            let selection = &self.selections[leg.selection.index()];
            if leg.result.is_none() && selection.price_version != *version {
                return Err(Rejection::PriceChanged { selection: selection.id, current_price: selection.price });
            }
            if leg.result.is_none() {
                self.check_market_open(leg.market)
                    .map_err(|_| Rejection::CashoutUnavailable { reason: "a market is not open" })?;
            }
        }
        let amount = offer.amount;
        // A leg resulted since the quote (a dead heat, a void) changes the value without
        // changing any price version: the quote must still be what a fresh one would pay.
        if self.cashout_value(bet)? != amount {
            return Err(Rejection::QuoteExpired);
        }
        let stake = found.total_stake.minor();
        let cash = self.ledger.account(self.players[account.index()].cash).posted_balance();
        if i128::from(cash) + i128::from(amount.minor()) - i128::from(stake) > i128::from(MONEY_MINOR_MAX) {
            return Err(Rejection::AmountTooLarge);
        }
        self.quotes.remove(&quote);
        self.pay(bet, amount, BetStatus::CashedOut, events);
        Ok(Ack::CashedOut { bet, amount })
    }
}
