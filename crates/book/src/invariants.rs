//! Whole-book invariant checks, for tests, the simulator and recovery: the ledger balances and
//! matches its postings, every open bet holds its stake, and every selection's liability is
//! exactly the sum of what its open bets add.

use crate::bet::BetStatus;
use crate::book::Book;
use crate::placement::price;

impl Book {
    /// Checks every invariant; returns a description of the first violation.
    pub fn check_invariants(&self) -> Result<(), String> {
        self.ledger.verify()?;
        let mut liability = vec![0i64; self.selections.len()];
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
                for (leg, added) in bet.legs.iter().zip(pricing.liability) {
                    liability[leg.selection.index()] += added;
                }
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
