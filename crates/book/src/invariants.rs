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
        /// Held records: ids strictly increasing, none above the count issued.
        fn held_ids<T>(items: &[T], issued: u64, id: impl Fn(&T) -> u64, what: &str) -> Result<Vec<u64>, String> {
            let mut ids = Vec::with_capacity(items.len());
            for item in items {
                let id = id(item);
                if id == 0 || id > issued || ids.last().is_some_and(|last| *last >= id) {
                    return Err(format!("{what} {id} out of order or never issued"));
                }
                ids.push(id);
            }
            Ok(ids)
        }
        in_order(&self.players, |player| player.id.0, "player")?;
        let event_ids = held_ids(&self.events, self.events_issued, |event| event.id.0, "event")?;
        let market_ids = held_ids(&self.markets, self.markets_issued, |market| market.id.0, "market")?;
        let selection_ids =
            held_ids(&self.selections, self.selections_issued, |selection| selection.id.0, "selection")?;
        let bet_ids = held_ids(&self.bets, self.bets_issued, |bet| bet.id.0, "bet")?;
        let known = |id: u64, count: usize| id >= 1 && id <= count as u64;
        let accounts = self.ledger.accounts().len();
        let transfers_issued = self.ledger.transfers().issued();
        let event_held = |id: u64| event_ids.binary_search(&id).is_ok();
        let market_held = |id: u64| market_ids.binary_search(&id).is_ok();
        let selection_held = |id: u64| selection_ids.binary_search(&id).is_ok();
        let bet_held = |id: u64| bet_ids.binary_search(&id).is_ok();
        let transfer_issued = |id: u64| id >= 1 && id <= transfers_issued;
        for player in &self.players {
            if !known(player.cash.0, accounts) || !known(player.debt.0, accounts) {
                return Err(format!("{} has unknown ledger accounts", player.id));
            }
        }
        for event in &self.events {
            if !event.markets.iter().all(|market| market_held(market.0)) {
                return Err(format!("{} lists an unknown market", event.id));
            }
        }
        for market in &self.markets {
            let selections_known = market.selections.iter().all(|selection| selection_held(selection.0))
                && market.results.iter().all(|result| selection_held(result.selection.0));
            if !event_held(market.event.0) || !selections_known || !market.bets.iter().all(|bet| bet_held(bet.0)) {
                return Err(format!("{} refers to an unknown event, selection or bet", market.id));
            }
        }
        for selection in &self.selections {
            if !market_held(selection.market.0) {
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
            let legs_known = bet
                .legs
                .iter()
                .all(|leg| selection_held(leg.selection.0) && market_held(leg.market.0) && event_held(leg.event.0));
            // A held bet's markets are held; its hold is an open transfer (so held), its
            // settlement's transfers may have left already.
            let transfers_known = bet.hold.is_none_or(|hold| self.ledger.is_open_pending(hold))
                && bet.settlement.is_none_or(|settlement| {
                    transfer_issued(settlement.stake_posted.0)
                        && settlement.payout_transfer.is_none_or(|payout| transfer_issued(payout.0))
                });
            if !known(bet.account.0, self.players.len()) || !legs_fit || !legs_known || !transfers_known {
                return Err(format!("{} refers to unknown ids or has legs its kind cannot take", bet.id));
            }
            if !bet.stake_per_line.is_positive() || bet.total_stake.minor() < 0 {
                return Err(format!("{} has a stake that is not positive", bet.id));
            }
        }
        if let Some((_, bet)) = self.delayed.iter().find(|(_, bet)| !bet_held(bet.0)) {
            return Err(format!("delayed {bet} does not exist"));
        }
        if let Some(quote) = self.quotes.iter().find(|quote| !bet_held(quote.bet.0)) {
            return Err(format!("{} quotes an unknown bet", quote.id));
        }
        // Idempotency keys: one entry per key hash, in the order they were stored (expiry
        // walks them front to back).
        let mut keys = std::collections::BTreeSet::new();
        let mut stored_at = 0;
        for (hash, remembered) in &self.idempotency {
            if !keys.insert(*hash) || remembered.at < stored_at {
                return Err(format!("idempotency key {hash:032x} repeated or out of order"));
            }
            stored_at = remembered.at;
        }
        self.feed.check_structure(&event_held, &market_held, &selection_held)?;
        self.degraded.check_structure(&market_held)?;
        // In their one order, each once, of known accounts.
        if !self.payment_refs.windows(2).all(|pair| pair[0] < pair[1]) {
            return Err("payment references out of order or repeated".to_string());
        }
        if let Some((account, _)) = self.payment_refs.iter().find(|(account, _)| !known(account.0, self.players.len()))
        {
            return Err(format!("a payment reference of unknown {account}"));
        }
        // Pending adjustments: under their map key, issued, of known accounts and staff, with
        // a positive amount (approving one posts it).
        for (id, pending) in &self.adjustments.pending {
            if pending.id != *id || id.0 == 0 || id.0 > self.adjustments.issued {
                return Err(format!("adjustment {id} out of order or never issued"));
            }
            if !known(pending.account.0, self.players.len()) || !known(pending.requested_by.0, self.staff.len()) {
                return Err(format!("adjustment {id} of an unknown account or staff member"));
            }
            if !pending.amount.is_positive() {
                return Err(format!("adjustment {id} is not positive"));
            }
        }
        // Deposits of known accounts; a pending one's hold open, approved withdrawals open.
        crate::payments::PaymentBook::check_parts(&self.payments)?;
        for deposit in &self.payments.deposits {
            if !known(deposit.account.0, self.players.len()) {
                return Err(format!("deposit {} of an unknown account", deposit.id));
            }
            let open = self.ledger.is_open_pending(deposit.id);
            if (deposit.state == crate::payments::DepositState::Pending) != open {
                return Err(format!("deposit {} is {} but its hold open is {open}", deposit.id, deposit.state.name()));
            }
        }
        if let Some(id) = self.payments.approved.iter().find(|id| !self.ledger.is_open_pending(**id)) {
            return Err(format!("approved withdrawal {id} is not an open hold"));
        }
        // Verifications of known accounts.
        crate::kyc::KycBook::check_parts(&self.kyc)?;
        crate::reality::RealityChecks::check_parts(&self.reality_checks)?;
        if let Some((account, _)) =
            self.reality_checks.iter().find(|(account, _)| !known(account.0, self.players.len()))
        {
            return Err(format!("reality check of unknown account {account}"));
        }
        if let Some((account, _)) = self.kyc.iter().find(|(account, _)| !known(account.0, self.players.len())) {
            return Err(format!("kyc record of unknown account {account}"));
        }
        crate::monitor::Monitor::check_parts(&self.monitor)?;
        let players = self.players.len();
        if let Some(case) = self.monitor.cases.iter().find(|case| !known(case.account.0, players)) {
            return Err(format!("case {} of unknown account {}", case.id, case.account));
        }
        if let Some((account, _)) = self.monitor.watches.iter().find(|(account, _)| !known(account.0, players)) {
            return Err(format!("monitor watch of unknown account {account}"));
        }
        let sharer_unknown =
            |accounts: &Vec<crate::ids::AccountId>| accounts.iter().any(|account| !known(account.0, players));
        if self.monitor.shared.iter().any(|(_, accounts)| sharer_unknown(accounts)) {
            return Err("a shared key of an unknown account".into());
        }
        Ok(())
    }
}

impl Book {
    /// Checks every invariant; returns a description of the first violation.
    pub fn check_invariants(&self) -> Result<(), String> {
        self.ledger.verify()?;
        self.check_feed_invariants()?;
        let mut liability: std::collections::BTreeMap<crate::ids::SelectionId, i64> =
            self.selections.iter().map(|selection| (selection.id, 0)).collect();
        let mut liabilities: std::collections::BTreeMap<crate::ids::SelectionId, Vec<(domain::Currency, Money)>> =
            self.selections.iter().map(|selection| (selection.id, Vec::new())).collect();
        let mut open_bets = 0;
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
                open_bets += 1;
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
                    let (Some(sum), Some(list)) =
                        (liability.get_mut(&leg.selection), liabilities.get_mut(&leg.selection))
                    else {
                        return Err(format!("{} has a leg on {}, which is not held", bet.id, leg.selection));
                    };
                    *sum += added_base;
                    shift_currency_liability(list, currency, added);
                }
            }
        }
        if open_bets != self.open_bets {
            return Err(format!("{} bets are open but the book counts {}", open_bets, self.open_bets));
        }
        self.check_window_invariants()?;
        for (selection, expected) in self.selections.iter().zip(liabilities.values()) {
            if selection.liabilities != *expected {
                return Err(format!(
                    "{} liabilities {:?} but its open bets add up to {expected:?}",
                    selection.id, selection.liabilities
                ));
            }
        }
        for (selection, expected) in self.selections.iter().zip(liability.values()) {
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

    /// The resettlement window holds: nothing past it that could leave is still held, every
    /// held record refers only to held ones, and the closing queues list what will leave.
    fn check_window_invariants(&self) -> Result<(), String> {
        for market in &self.markets {
            if let Some(closed) = market.closed_at {
                let past = self.window_closed(closed);
                if past && market.bets.is_empty() {
                    return Err(format!("{} is past its resettlement window without bets but held", market.id));
                }
                if !past && !self.closing_markets.contains(&(closed, market.id)) {
                    return Err(format!("{} closed at {closed} but is not waiting out its window", market.id));
                }
            }
            if !market.bets.iter().all(|bet| self.bets.contains(bet.index())) {
                return Err(format!("{} lists a bet that left the book", market.id));
            }
            if !self.events.contains(market.event.index()) {
                return Err(format!("{} belongs to an event that left the book", market.id));
            }
        }
        for bet in &self.bets {
            if let Some(closed) = crate::book::closed_alone_at(&bet) {
                if self.window_closed(closed) {
                    return Err(format!("{} closed at {closed}, past its window, but is held", bet.id));
                }
            }
            if !bet.legs.iter().all(|leg| self.markets.contains(leg.market.index())) {
                return Err(format!("{} has a leg on a market that left the book", bet.id));
            }
        }
        if self.closing_markets.len() > self.markets.len() || self.closing_bets.len() > self.bets.len() {
            return Err("the closing queues list more than the book holds".to_string());
        }
        Ok(())
    }

    /// Total liability of every open bet: the exposure the house carries.
    pub fn exposure(&self) -> i64 {
        self.selections.iter().map(|selection| selection.liability.minor()).sum()
    }
}
