//! Whole-book invariant checks, for tests, the simulator and recovery: the ledger balances and
//! matches its postings, every open bet holds its stake, and every selection's liability is
//! exactly the sum of what its open bets add.

use crate::bet::{BetKind, BetStatus};
use crate::book::{Book, BookParts};
use crate::constants::LEGS_MAX;
use crate::placement::{price, shift_currency_liability};
use domain::Money;

impl BookParts {
    /// Checks that the parts refer only to what they contain and that every bet has a shape
    /// the book can price: ids in storage order, every reference to an account, event,
    /// market, selection, bet or transfer a known one, legs as many as the bet's kind takes,
    /// stakes positive. `check_invariants` indexes by these ids and prices every open bet, so
    /// a decoded snapshot is checked with this first (and its ledger with
    /// `Ledger::check_parts`): a corrupt one is an error, never a panic.
    pub fn check_structure(&self) -> Result<(), String> {
        fn in_order<T>(items: &[T], id: impl Fn(&T) -> u64, what: &str) -> Result<(), String> {
            match items.iter().enumerate().find(|(index, item)| id(item) != *index as u64 + 1) {
                Some((index, item)) => Err(format!("{what} {} stored at index {index}", id(item))),
                None => Ok(()),
            }
        }
        in_order(&self.players, |player| player.id.0, "player")?;
        in_order(&self.events, |event| event.id.0, "event")?;
        in_order(&self.markets, |market| market.id.0, "market")?;
        in_order(&self.selections, |selection| selection.id.0, "selection")?;
        in_order(&self.bets, |bet| bet.id.0, "bet")?;
        let known = |id: u64, count: usize| id >= 1 && id <= count as u64;
        let accounts = self.ledger.accounts().len();
        let transfers = self.ledger.transfers().len();
        let (events, markets, selections, bets) =
            (self.events.len(), self.markets.len(), self.selections.len(), self.bets.len());
        for player in &self.players {
            if !known(player.cash.0, accounts) || !known(player.debt.0, accounts) {
                return Err(format!("{} has unknown ledger accounts", player.id));
            }
        }
        for event in &self.events {
            if !event.markets.iter().all(|market| known(market.0, markets)) {
                return Err(format!("{} lists an unknown market", event.id));
            }
        }
        for market in &self.markets {
            let selections_known = market.selections.iter().all(|selection| known(selection.0, selections))
                && market.results.iter().all(|result| known(result.selection.0, selections));
            if !known(market.event.0, events) || !selections_known || !market.bets.iter().all(|bet| known(bet.0, bets))
            {
                return Err(format!("{} refers to an unknown event, selection or bet", market.id));
            }
        }
        for selection in &self.selections {
            if !known(selection.market.0, markets) {
                return Err(format!("{} is in an unknown market", selection.id));
            }
            let sorted = selection.liabilities.windows(2).all(|pair| pair[0].0 < pair[1].0);
            if !sorted || selection.liabilities.iter().any(|(_, amount)| amount.minor() == 0) {
                return Err(format!("{} has per-currency liabilities out of order or zero", selection.id));
            }
        }
        // Exchange rates: sorted by currency, one each, none for the base currency.
        let rates = &self.fx.rates;
        if !rates.windows(2).all(|pair| pair[0].0 < pair[1].0)
            || rates.iter().any(|(currency, _)| *currency == self.fx.base)
        {
            return Err("exchange rates out of order, repeated or for the base currency".to_string());
        }
        for bet in &self.bets {
            let legs_fit = match bet.kind {
                BetKind::Single => bet.legs.len() == 1,
                BetKind::Multiple => (2..=LEGS_MAX).contains(&bet.legs.len()),
                BetKind::System(system) => bet.legs.len() == system.selections(),
            };
            let legs_known = bet.legs.iter().all(|leg| {
                known(leg.selection.0, selections) && known(leg.market.0, markets) && known(leg.event.0, events)
            });
            let transfers_known = bet.hold.is_none_or(|hold| known(hold.0, transfers))
                && bet.settlement.is_none_or(|settlement| {
                    known(settlement.stake_posted.0, transfers)
                        && settlement.payout_transfer.is_none_or(|payout| known(payout.0, transfers))
                });
            if !known(bet.account.0, self.players.len()) || !legs_fit || !legs_known || !transfers_known {
                return Err(format!("{} refers to unknown ids or has legs its kind cannot take", bet.id));
            }
            if !bet.stake_per_line.is_positive() || bet.total_stake.minor() < 0 {
                return Err(format!("{} has a stake that is not positive", bet.id));
            }
        }
        if let Some((_, bet)) = self.delayed.iter().find(|(_, bet)| !known(bet.0, bets)) {
            return Err(format!("delayed {bet} does not exist"));
        }
        if let Some(quote) = self.quotes.iter().find(|quote| !known(quote.bet.0, bets)) {
            return Err(format!("{} quotes an unknown bet", quote.id));
        }
        // Idempotency keys: one entry per (account, key), in the order they were stored (expiry
        // walks them front to back). The account may be unknown: a refusal is remembered too.
        let mut keys = std::collections::BTreeSet::new();
        let mut stored_at = 0;
        for (account, key, remembered) in &self.idempotency {
            if !keys.insert((account.0, key.as_str())) || remembered.at < stored_at {
                return Err(format!("idempotency key {key:?} of {account} repeated or out of order"));
            }
            stored_at = remembered.at;
        }
        self.feed.check_structure(events, markets, selections)?;
        self.degraded.check_structure(markets)?;
        // In their one order, each once, of known accounts.
        if !self.payment_refs.windows(2).all(|pair| pair[0] < pair[1]) {
            return Err("payment references out of order or repeated".to_string());
        }
        match self.payment_refs.iter().find(|(account, _)| !known(account.0, self.players.len())) {
            Some((account, _)) => Err(format!("a payment reference of unknown {account}")),
            None => Ok(()),
        }
    }
}

impl Book {
    /// Checks every invariant; returns a description of the first violation.
    pub fn check_invariants(&self) -> Result<(), String> {
        self.ledger.verify()?;
        self.check_feed_invariants()?;
        let mut liability = vec![0i64; self.selections.len()];
        let mut liabilities: Vec<Vec<(domain::Currency, Money)>> = vec![Vec::new(); self.selections.len()];
        let mut pending_stakes = vec![0i64; self.players.len()];
        for bet in &self.bets {
            let open = bet.status.is_open();
            if open != bet.hold.is_some_and(|hold| self.ledger.is_open_pending(hold)) {
                return Err(format!("{} is {} but its stake hold is {:?}", bet.id, bet.status.as_str(), bet.hold));
            }
            if bet.status.is_settled_by_result() || bet.status == BetStatus::CashedOut {
                if bet.settlement.is_none() {
                    return Err(format!("{} is {} without a settlement", bet.id, bet.status.as_str()));
                }
            } else if bet.settlement.is_some() {
                return Err(format!("{} is {} but carries a settlement", bet.id, bet.status.as_str()));
            }
            if open {
                pending_stakes[bet.account.index()] += bet.total_stake.minor();
                let pricing = price(bet.kind, &bet.legs, bet.each_way, bet.stake_per_line);
                let currency = self.players[bet.account.index()].currency;
                if bet.fx.base != self.fx.base {
                    return Err(format!(
                        "{} is open under base {} but the base is {}",
                        bet.id, bet.fx.base, self.fx.base
                    ));
                }
                let base = pricing.base_liability(&bet.fx, currency);
                for ((leg, added), added_base) in bet.legs.iter().zip(pricing.liability).zip(base) {
                    liability[leg.selection.index()] += added_base;
                    shift_currency_liability(&mut liabilities[leg.selection.index()], currency, added);
                }
            }
        }
        for (selection, expected) in self.selections.iter().zip(&liabilities) {
            if selection.liabilities != *expected {
                return Err(format!(
                    "{} liabilities {:?} but its open bets add up to {expected:?}",
                    selection.id, selection.liabilities
                ));
            }
        }
        for (selection, expected) in self.selections.iter().zip(&liability) {
            if selection.liability.minor() != *expected {
                return Err(format!(
                    "{} liability {} but its open bets add up to {expected}",
                    selection.id,
                    selection.liability.minor()
                ));
            }
        }
        for (player, expected) in self.players.iter().zip(&pending_stakes) {
            let held = self.ledger.account(player.cash).debits_pending_stakes;
            if held != *expected {
                return Err(format!("{} holds {held} for stakes but its open bets stake {expected}", player.id));
            }
            // Free cash repays a debt as soon as it appears.
            let owed = -self.ledger.account(player.debt).posted_balance();
            let free = self.ledger.account(player.cash).available();
            if owed > 0 && free > 0 {
                return Err(format!("{} owes {owed} and keeps {free} of free cash", player.id));
            }
        }
        // The derived indexes, rebuilt in one pass each and compared.
        let mut bets_by_account: Vec<Vec<crate::ids::BetId>> = vec![Vec::new(); self.players.len()];
        for bet in &self.bets {
            bets_by_account[bet.account.index()].push(bet.id);
        }
        let mut postings: Vec<Vec<crate::ids::TransferId>> = vec![Vec::new(); self.ledger.accounts().len()];
        for transfer in self.ledger.transfers() {
            for account in [transfer.debit, transfer.credit] {
                if matches!(
                    self.ledger.account(account).kind,
                    crate::ledger::AccountKind::PlayerCash(_) | crate::ledger::AccountKind::PlayerDebt(_)
                ) {
                    postings[account.index()].push(transfer.id);
                }
            }
        }
        for player in &self.players {
            if self.bets_of(player.id) != bets_by_account[player.id.index()].as_slice() {
                return Err(format!("the bet index of {} differs from the bets", player.id));
            }
            for account in [player.cash, player.debt] {
                if self.ledger.postings_of(account) != postings[account.index()].as_slice() {
                    return Err(format!("the posting index of {account} differs from the transfers"));
                }
            }
        }
        for (due, bet) in &self.delayed {
            let found = self.bets.get(bet.index()).ok_or_else(|| format!("delayed {bet} does not exist"))?;
            if found.status != BetStatus::Pending || found.delay_until != Some(*due) {
                return Err(format!("delayed {bet} is {} due {:?}", found.status.as_str(), found.delay_until));
            }
        }
        Ok(())
    }

    /// Total liability of every open bet: the exposure the house carries.
    pub fn exposure(&self) -> i64 {
        self.selections.iter().map(|selection| selection.liability.minor()).sum()
    }
}
