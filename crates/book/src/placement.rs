//! Bet placement: the book's hot path. Every check runs against the book's state at commit, in
//! a fixed order, and the first failure is the rejection: account, shape, markets and prices,
//! stake limits, maximum payout, responsible-gambling limits, funds, liability caps.

use domain::{Currency, Money, Multiplier, MONEY_MINOR_MAX};

use crate::bet::{line_payout, lines, place_odds, Bet, BetKind, BetStatus, Leg, PricePolicy, PriceTaken};
use crate::book::Book;
use crate::catalog::{EventState, MarketStatus};
use crate::command::{LegRequest, PlaceBet};
use crate::constants::{FEED_DELAYED_BET_DELAY_SECONDS, LEGS_MAX};
use crate::event::{Ack, BookEvent, Reply};
use crate::fx::AppliedRate;
use crate::ids::{BetId, MarketId, MILLIS_PER_SECOND};
use crate::ledger::{TransferCode, TransferRequest};
use crate::player::LimitKind;
use crate::rejection::Rejection;

/// Potential payout of a bet and the liability it adds to each leg's selection.
pub(crate) struct Pricing {
    pub potential_payout: Money,
    pub liability: [i64; LEGS_MAX],
}

impl Pricing {
    /// Each leg's liability (in the bettor's `currency`) in the base currency of `fx`, rounded
    /// up: the amount counted against the base-currency caps, and later removed again.
    pub(crate) fn base_liability(&self, fx: &AppliedRate, currency: Currency) -> [i64; LEGS_MAX] {
        if currency == fx.base {
            // The hot path: a bet in the base currency converts at one, exactly.
            return self.liability;
        }
        let mut base = [0i64; LEGS_MAX];
        for (slot, added) in base.iter_mut().zip(self.liability).filter(|(_, added)| *added != 0) {
            *slot = fx.to_base(Money::from_minor(added), currency).minor();
        }
        base
    }
}

/// Adds `delta` to the entry of `currency` in a selection's per-currency liabilities, keeping
/// the list sorted and free of zeros.
pub(crate) fn shift_currency_liability(list: &mut Vec<(Currency, Money)>, currency: Currency, delta: i64) {
    match list.binary_search_by_key(&currency, |(listed, _)| *listed) {
        Ok(index) => {
            let sum = list[index].1.minor() + delta;
            if sum == 0 {
                list.remove(index);
            } else {
                list[index].1 = Money::from_minor(sum);
            }
        }
        Err(index) if delta != 0 => list.insert(index, (currency, Money::from_minor(delta))),
        Err(_) => {}
    }
}

/// Prices a bet with every leg winning: each line's payout, summed, and per leg the sum over
/// the lines that include it of the line's payout less its stake (the house's net loss on
/// that line if the leg's selection wins).
pub(crate) fn price(kind: BetKind, legs: &[Leg], each_way: bool, stake_per_line: Money) -> Pricing {
    let mut liability = [0i64; LEGS_MAX];
    if matches!(kind, BetKind::Single | BetKind::Multiple) && !each_way {
        // One line over every leg: the common case, without allocating.
        let mut multipliers = [Multiplier::ONE; LEGS_MAX];
        for (slot, leg) in multipliers.iter_mut().zip(legs) {
            *slot = Multiplier::odds(leg.odds);
        }
        let payout = domain::payout_floor(stake_per_line, &multipliers[..legs.len()]);
        let net = payout.minor() - stake_per_line.minor();
        for slot in liability.iter_mut().take(legs.len()) {
            *slot = net;
        }
        return Pricing { potential_payout: payout, liability };
    }
    let win: Vec<Multiplier> = legs.iter().map(|leg| Multiplier::odds(leg.odds)).collect();
    let place: Vec<Multiplier> =
        legs.iter().map(|leg| leg.each_way.map_or(Multiplier::ZERO, |terms| place_odds(leg.odds, terms))).collect();
    // Sums of line payouts can pass the money maximum even when each line is within it; they
    // are summed wide and clamped, and a clamped payout is refused by placement.
    let mut potential = 0i128;
    let mut wide_liability = [0i128; LEGS_MAX];
    for line in lines(kind, legs.len(), each_way) {
        let multipliers = if line.place { &place } else { &win };
        let payout = i128::from(line_payout(stake_per_line, line, multipliers).minor());
        potential += payout;
        for (index, slot) in wide_liability.iter_mut().enumerate().take(legs.len()) {
            if line.legs & (1 << index) != 0 {
                *slot += payout - i128::from(stake_per_line.minor());
            }
        }
    }
    for (slot, wide) in liability.iter_mut().zip(wide_liability) {
        *slot = wide.clamp(-i128::from(MONEY_MINOR_MAX), i128::from(MONEY_MINOR_MAX)) as i64;
    }
    Pricing { potential_payout: Money::from_minor(potential.min(i128::from(MONEY_MINOR_MAX)) as i64), liability }
}

/// The potential payout of a bet before it saturates at the money maximum: the sum of every
/// line's exact payout (saturating only at `u128::MAX`). Only a refusal's stake hint needs it.
fn potential_wide(kind: BetKind, legs: &[Leg], each_way: bool, stake_per_line: Money) -> u128 {
    let win: Vec<Multiplier> = legs.iter().map(|leg| Multiplier::odds(leg.odds)).collect();
    let place: Vec<Multiplier> =
        legs.iter().map(|leg| leg.each_way.map_or(Multiplier::ZERO, |terms| place_odds(leg.odds, terms))).collect();
    let mut chosen = Vec::with_capacity(legs.len());
    let mut total = 0u128;
    for line in lines(kind, legs.len(), each_way) {
        let multipliers = if line.place { &place } else { &win };
        chosen.clear();
        chosen.extend((0..legs.len()).filter(|index| line.legs & (1 << index) != 0).map(|index| multipliers[index]));
        total = total.saturating_add(domain::payout_floor_wide(stake_per_line, &chosen));
    }
    total
}

/// The stake a `stake_too_high` refusal for the payout offers: the largest stake per line below
/// the refused one whose potential payout is at most `cap`. Payouts never fall as the stake
/// grows, so a search finds it. Scaling a stake down by how far its exact payout is over the cap
/// gives a first guess that fits or is a few minor units over; a guess over the cap becomes the
/// new upper bound and is scaled again, so even payouts far beyond the money maximum take a
/// handful of pricings, and the search upwards from a guess that fits is short.
fn largest_stake_that_fits(kind: BetKind, legs: &[Leg], each_way: bool, refused: Money, cap: i64) -> Money {
    let cap = cap.max(0) as u128;
    let payout_of = |stake: i64| potential_wide(kind, legs, each_way, Money::from_minor(stake));
    // Invariant: `low` fits (a stake of 0 pays 0), `high` does not.
    let (mut low, mut high) = (0i64, refused.minor());
    loop {
        let over = payout_of(high);
        debug_assert!(over > cap, "the upper bound does not fit");
        let guess = ((high as u128).saturating_mul(cap) / over.max(1)) as i64;
        let guess = guess.min(high - 1);
        if guess <= low {
            break;
        }
        if payout_of(guess) <= cap {
            low = guess;
            break;
        }
        high = guess;
    }
    // Gallop up from the stake that fits, then halve the gap.
    let mut step = 1i64;
    while low + step < high {
        if payout_of(low + step) <= cap {
            low += step;
            step = step.saturating_mul(2);
        } else {
            high = low + step;
            break;
        }
    }
    while high - low > 1 {
        let middle = low + (high - low) / 2;
        if payout_of(middle) <= cap {
            low = middle;
        } else {
            high = middle;
        }
    }
    Money::from_minor(low)
}

/// Number of lines of a bet, each struck at the stake per line.
fn line_count(kind: BetKind, leg_count: usize, each_way: bool) -> u32 {
    let base = match kind {
        BetKind::Single | BetKind::Multiple => 1,
        BetKind::System(system) => {
            let all = (1u32 << leg_count) - 1;
            let small = if system.smallest_line() == 2 { leg_count as u32 } else { 0 };
            all - small
        }
    };
    if each_way {
        base * 2
    } else {
        base
    }
}

fn check_shape(place: &PlaceBet) -> Result<(), Rejection> {
    let count = place.legs.len();
    let fits = match place.kind {
        BetKind::Single => count == 1,
        BetKind::Multiple => (2..=LEGS_MAX).contains(&count),
        BetKind::System(system) => count == system.selections(),
    };
    if !fits {
        return Err(Rejection::InvalidBet { reason: "wrong number of legs for the bet type" });
    }
    if !place.stake.is_positive() {
        return Err(Rejection::InvalidBet { reason: "stake must be positive" });
    }
    Ok(())
}

impl Book {
    /// Rejects unless bets may be struck on `market` now.
    pub(crate) fn check_market_open(&self, market: MarketId) -> Result<(), Rejection> {
        let market = &self.markets[market.index()];
        match market.status {
            MarketStatus::Open => {}
            MarketStatus::Suspended => return Err(Rejection::MarketSuspended),
            MarketStatus::Closed | MarketStatus::Settled | MarketStatus::Voided => return Err(Rejection::MarketClosed),
        }
        let event = &self.events[market.event.index()];
        match event.state {
            EventState::Ended => Err(Rejection::MarketClosed),
            // Started but not yet taken in play: nobody is pricing it live.
            EventState::Scheduled if self.now >= event.starts_at && !market.in_play => Err(Rejection::MarketSuspended),
            _ => Ok(()),
        }
    }

    /// Binds a leg to the book's current price under the bettor's policy.
    fn bind_leg(&self, request: &LegRequest, policy: PricePolicy, each_way: bool) -> Result<Leg, Rejection> {
        let selection = self.selections.get(request.selection.index()).ok_or(Rejection::SelectionUnavailable)?;
        self.check_market_open(selection.market)?;
        if self.feed.is_inactive(selection.id) {
            // The feed provider marked the outcome inactive.
            return Err(Rejection::SelectionUnavailable);
        }
        if self.feed.in_cancel_window(selection.market, self.now) {
            // The feed provider cancels the bets placed now (an open-ended bet_cancel).
            return Err(Rejection::MarketSuspended);
        }
        let market = &self.markets[selection.market.index()];
        if each_way && market.each_way.is_none() {
            return Err(Rejection::InvalidBet { reason: "market has no each-way terms" });
        }
        let taken = bind_price(request.price, selection.price, policy)
            .ok_or(Rejection::PriceChanged { selection: selection.id, current_price: selection.price })?;
        Ok(Leg {
            selection: selection.id,
            market: market.id,
            event: market.event,
            requested: request.price,
            odds: selection.price,
            price_version: selection.price_version,
            taken,
            each_way: if each_way { market.each_way } else { None },
            result: None,
        })
    }

    /// The largest stake per line this customer may place on these legs, in their currency: the
    /// base-currency limit converted (rounded down), then scaled by the stake factor.
    fn max_stake(&self, legs: &[Leg], stake_factor: domain::Ratio, fx: &AppliedRate, currency: Currency) -> Money {
        let market_max = legs
            .iter()
            .map(|leg| self.markets[leg.market.index()].risk.max_stake.unwrap_or(self.config.max_stake))
            .min()
            .unwrap_or(self.config.max_stake);
        let market_max = fx.cap_in(market_max, currency);
        let scaled = i128::from(market_max.minor()) * i128::from(stake_factor.num()) / i128::from(stake_factor.den());
        Money::from_minor(scaled.min(i128::from(MONEY_MINOR_MAX)) as i64)
    }

    /// The largest potential payout on these legs, in the bettor's currency (rounded down).
    fn max_payout(&self, legs: &[Leg], fx: &AppliedRate, currency: Currency) -> Money {
        let base = legs
            .iter()
            .map(|leg| self.markets[leg.market.index()].risk.max_payout.unwrap_or(self.config.max_payout))
            .min()
            .unwrap_or(self.config.max_payout);
        fx.cap_in(base, currency)
    }

    /// Rejects when the bet's liability would push a selection over its cap or a market over
    /// its cap (a market's liability is its largest selection liability). Caps are in the base
    /// currency and compared with base-currency liabilities (each bet's converted rounding up).
    fn check_liability(
        &self,
        legs: &[Leg],
        pricing: &Pricing,
        fx: &AppliedRate,
        currency: Currency,
    ) -> Result<(), Rejection> {
        let base = pricing.base_liability(fx, currency);
        for ((leg, added), added_base) in legs.iter().zip(pricing.liability).zip(base) {
            let selection = &self.selections[leg.selection.index()];
            let risk = &self.markets[leg.market.index()].risk;
            let after = i128::from(selection.liability.minor()) + i128::from(added_base);
            let over = |cap: Option<Money>| cap.is_some_and(|cap| after > i128::from(cap.minor()));
            // Beyond the money maximum no cap can be checked; such liability is refused outright,
            // in the base currency and in the bettor's own.
            let own =
                selection.liabilities.iter().find(|(listed, _)| *listed == currency).map_or(0, |(_, m)| m.minor());
            let unrepresentable = after >= i128::from(MONEY_MINOR_MAX)
                || i128::from(own) + i128::from(added) >= i128::from(MONEY_MINOR_MAX);
            if added > 0 && (unrepresentable || over(risk.selection_liability_cap) || over(risk.liability_cap)) {
                return Err(Rejection::LiabilityLimit);
            }
        }
        Ok(())
    }

    pub(crate) fn place_bet(&mut self, place: &PlaceBet, events: &mut Vec<BookEvent>) -> Reply {
        let player = self.player(place.account)?;
        self.check_may_gamble(player)?;
        if self.reality.is_due(place.account) {
            return Err(Rejection::RealityCheckDue);
        }
        check_shape(place)?;
        let mut legs = Vec::with_capacity(place.legs.len());
        for request in &place.legs {
            let leg = self.bind_leg(request, place.policy, place.each_way)?;
            if legs.iter().any(|other: &Leg| other.event == leg.event) {
                return Err(Rejection::InvalidBet { reason: "two legs on the same event" });
            }
            legs.push(leg);
        }
        self.check_trading_mode(&legs)?;
        // Every limit is in the base currency: without a rate none can be applied.
        let currency = player.currency;
        let fx = self.rate_for(currency)?;
        let stake = place.stake;
        let min_stake = fx.floor_in(self.config.min_stake, currency);
        if stake < min_stake {
            return Err(Rejection::StakeTooLow { min_stake });
        }
        let max_stake = self.max_stake(&legs, player.stake_factor, &fx, currency);
        if stake > max_stake {
            return Err(Rejection::StakeTooHigh { max_stake });
        }
        let lines = line_count(place.kind, legs.len(), place.each_way);
        // Offer a stake per line whose total across the lines is within the money range.
        let total_stake = stake.checked_mul(lines).ok_or(Rejection::StakeTooHigh {
            max_stake: max_stake.min(Money::from_minor(MONEY_MINOR_MAX / i64::from(lines))),
        })?;
        let pricing = price(place.kind, &legs, place.each_way, stake);
        let max_payout = self.max_payout(&legs, &fx, currency);
        if pricing.potential_payout > max_payout || pricing.potential_payout.minor() >= MONEY_MINOR_MAX {
            // A payout at the money maximum may be a saturated one: it is refused as too large
            // to represent, and the hint must fit under both bounds.
            let cap = max_payout.minor().min(MONEY_MINOR_MAX - 1);
            let max_stake = largest_stake_that_fits(place.kind, &legs, place.each_way, stake, cap);
            return Err(Rejection::StakeTooHigh { max_stake });
        }
        for kind in [LimitKind::Stake, LimitKind::Loss] {
            if let Some(period) = player.exceeded_limit(kind, total_stake, self.now) {
                return Err(Rejection::LimitReached { limit: kind, period });
            }
        }
        let cash = player.cash;
        if self.ledger.account(cash).available() < total_stake.minor() {
            return Err(Rejection::InsufficientFunds);
        }
        self.check_liability(&legs, &pricing, &fx, currency)?;
        self.admit_to_markets(&legs)?;

        // Every check passed: commit.
        let id = BetId(self.bets.issued() + 1);
        let house = self.ledger.house(currency);
        let request = TransferRequest {
            debit: cash,
            credit: house,
            amount: total_stake,
            code: TransferCode::Stake,
            reference: id.0,
        };
        let hold = self.ledger.hold(request, self.now).map_err(|_| Rejection::InsufficientFunds)?;
        self.emit_transfer(hold, events);
        let delay_seconds = legs.iter().map(|leg| self.in_play_delay_seconds(leg.market)).max().unwrap_or(0);
        let (status, delay_until) = if delay_seconds > 0 {
            (BetStatus::Pending, Some(self.now + u64::from(delay_seconds) * MILLIS_PER_SECOND))
        } else {
            (BetStatus::Accepted, None)
        };
        for leg in &legs {
            self.markets[leg.market.index()].bets.push(id);
        }
        if self.bets_by_account.len() <= place.account.index() {
            self.bets_by_account.resize_with(place.account.index() + 1, Vec::new);
        }
        self.bets_by_account[place.account.index()].push(id);
        self.open_bets += 1;
        self.bets.push(Bet {
            id,
            account: place.account,
            kind: place.kind,
            legs,
            each_way: place.each_way,
            stake_per_line: stake,
            line_count: lines,
            total_stake,
            potential_payout: pricing.potential_payout,
            policy: place.policy,
            status,
            placed_status: status,
            placed_at: self.now,
            delay_until,
            hold: Some(hold),
            settlement: None,
            settlement_count: 0,
            rejection: None,
            cashout_quote: None,
            fx,
        });
        self.players[place.account.index()].record(self.now, 0, total_stake.minor(), total_stake.minor());
        self.record_net_position(place.account, -total_stake.minor());
        self.shift_liability(id, &pricing, 1, events);
        if let Some(due) = delay_until {
            self.delayed.insert((due, id));
        }
        events.push(BookEvent::BetPlaced { bet: id, account: place.account, status });
        self.monitor_bet(place.account, total_stake, events);
        Ok(Ack::BetPlaced { bet: id, status })
    }

    /// The bet delay of a market: in play, its own, else its event's; none before kick-off.
    /// A market whose feed is stale in `delay` mode takes at least the feed delay, pre-match too.
    fn in_play_delay_seconds(&self, market: MarketId) -> u32 {
        let feed_delay = if self.is_delayed(market) { FEED_DELAYED_BET_DELAY_SECONDS } else { 0 };
        let market = &self.markets[market.index()];
        if !market.in_play {
            return feed_delay;
        }
        market.risk.in_play_delay_seconds.unwrap_or(self.events[market.event.index()].bet_delay_seconds).max(feed_delay)
    }

    /// Adds (`sign` 1) or removes (`sign` -1) a bet's liability on its selections. Both
    /// directions price the bet the same way, so what is added is exactly what is removed.
    /// Adding may suspend a market whose liability reached its threshold.
    pub(crate) fn add_liability(&mut self, bet: BetId, sign: i64, events: &mut Vec<BookEvent>) {
        let found = &self.bets[bet.index()];
        let pricing = price(found.kind, &found.legs, found.each_way, found.stake_per_line);
        self.shift_liability(bet, &pricing, sign, events);
    }

    /// `add_liability` with the bet's pricing already computed. The base-currency liability
    /// uses the rate recorded on the bet, so removing a bet removes exactly what it added.
    fn shift_liability(&mut self, bet: BetId, pricing: &Pricing, sign: i64, events: &mut Vec<BookEvent>) {
        let found = &self.bets[bet.index()];
        let currency = self.players[found.account.index()].currency;
        let base = pricing.base_liability(&found.fx, currency);
        let mut to_suspend: [Option<MarketId>; LEGS_MAX] = [None; LEGS_MAX];
        for (index, leg) in found.legs.iter().enumerate() {
            let selection = &mut self.selections[leg.selection.index()];
            selection.liability = Money::from_minor(selection.liability.minor() + sign * base[index]);
            shift_currency_liability(&mut selection.liabilities, currency, sign * pricing.liability[index]);
            let market = &self.markets[leg.market.index()];
            let threshold = market.risk.suspend_at_liability;
            if sign > 0 && market.status == MarketStatus::Open && threshold.is_some_and(|at| selection.liability >= at)
            {
                to_suspend[index] = Some(leg.market);
            }
        }
        for market in to_suspend.into_iter().flatten() {
            self.change_market_status(market, MarketStatus::Suspended, events);
        }
    }

    /// Decides a bet whose in-play delay has ended: it stands if every market is still open and
    /// every price still satisfies the bettor's policy (binding to the price now), and its
    /// risk still fits; otherwise it is rejected and its stake released.
    pub(crate) fn end_delay(&mut self, bet: BetId, events: &mut Vec<BookEvent>) {
        let found = &self.bets[bet.index()];
        if found.status != BetStatus::Pending {
            return;
        }
        let mut rebound = Vec::with_capacity(found.legs.len());
        for leg in &found.legs {
            let request = LegRequest { selection: leg.selection, price: leg.requested };
            match self.bind_leg(&request, found.policy, found.each_way) {
                Ok(new_leg) => rebound.push(new_leg),
                Err(rejection) => return self.reject_pending(bet, rejection, events),
            }
        }
        self.add_liability(bet, -1, events);
        let found = &self.bets[bet.index()];
        let pricing = price(found.kind, &rebound, found.each_way, found.stake_per_line);
        // The same bounds as placement, with the rate recorded at placement: a potential payout
        // at the money maximum may be a saturated one (a price rose during the delay) and would
        // be paid short or not at all.
        let (fx, currency) = (found.fx, self.players[found.account.index()].currency);
        let payout = pricing.potential_payout;
        let verdict = if payout > self.max_payout(&rebound, &fx, currency) || payout.minor() >= MONEY_MINOR_MAX {
            Err(Rejection::StakeTooHigh { max_stake: found.stake_per_line })
        } else {
            self.check_liability(&rebound, &pricing, &fx, currency)
        };
        if let Err(rejection) = verdict {
            // Liability was already released above; reject without releasing it again.
            return self.finish_rejection(bet, rejection, events);
        }
        let found = &mut self.bets[bet.index()];
        found.legs = rebound;
        found.potential_payout = pricing.potential_payout;
        found.status = BetStatus::Accepted;
        found.delay_until = None;
        let account = found.account;
        self.add_liability(bet, 1, events);
        events.push(BookEvent::BetStatusChanged { bet, account, status: BetStatus::Accepted, payout: Money::ZERO });
    }

    /// Rejects a pending bet: releases its liability and its stake.
    pub(crate) fn reject_pending(&mut self, bet: BetId, rejection: Rejection, events: &mut Vec<BookEvent>) {
        self.add_liability(bet, -1, events);
        self.finish_rejection(bet, rejection, events);
    }

    fn finish_rejection(&mut self, bet: BetId, rejection: Rejection, events: &mut Vec<BookEvent>) {
        let now = self.now;
        let found = &mut self.bets[bet.index()];
        debug_assert_eq!(found.status, BetStatus::Pending);
        found.status = BetStatus::Rejected;
        found.rejection = Some(rejection.code());
        let placed_at = found.placed_at;
        self.open_bets = self.open_bets.saturating_sub(1);
        self.bet_closed_alone(bet, placed_at);
        self.bet_closing(bet);
        let found = &mut self.bets[bet.index()];
        let due = found.delay_until.take();
        let (account, hold, stake) = (found.account, found.hold.take(), found.total_stake);
        if let Some(due) = due {
            self.delayed.remove(&(due, bet));
        }
        if let Some(hold) = hold {
            if let Ok(void) = self.ledger.void_pending(hold, now) {
                self.emit_transfer(void, events);
            }
        }
        // The released stake is free cash again, and repays a debt first.
        self.repay_debt(account, events);
        // The stake never counted: take it back out of the usage of the periods it was counted
        // in, where those are still current (a new period starts from zero anyway).
        let placed_at = self.bets[bet.index()].placed_at;
        self.players[account.index()].unrecord_stake(placed_at, now, stake.minor());
        self.record_net_position(account, stake.minor());
        events.push(BookEvent::BetStatusChanged { bet, account, status: BetStatus::Rejected, payout: Money::ZERO });
    }
}

/// How a requested price binds to the book's current one under a policy; `None` rejects.
fn bind_price(requested: domain::Odds, current: domain::Odds, policy: PricePolicy) -> Option<PriceTaken> {
    if current == requested {
        return Some(PriceTaken::Requested);
    }
    match policy {
        PricePolicy::None => None,
        PricePolicy::Better if current > requested => Some(PriceTaken::Better),
        PricePolicy::Better => None,
        PricePolicy::Any if current > requested => Some(PriceTaken::Better),
        PricePolicy::Any => Some(PriceTaken::Changed),
    }
}
