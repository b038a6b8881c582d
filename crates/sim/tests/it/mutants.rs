//! Mutants: bugs injected from outside the book, which the simulator must catch. Each test
//! runs a few seeds with one bug and asserts that the run fails, with a message that says what
//! went wrong.

use std::sync::Arc;

use book::{Command, PricePolicy};
use journal::{Journal, JournalError, Position};
use sim::{CommandTransform, Failure, JournalKind, JournalWrapper, SimOptions};

const OPS: u64 = 2_000;

/// Runs seeds until one fails; panics when none does.
fn first_failure(mutate: impl Fn(&mut SimOptions)) -> Failure {
    for seed in 1..=4 {
        let mut options = SimOptions::new(seed, OPS);
        mutate(&mut options);
        if let Err(failure) = sim::run(options) {
            return failure;
        }
    }
    panic!("the mutant survived every seed")
}

fn transform(change: impl Fn(&mut Command) + Send + Sync + 'static) -> CommandTransform {
    Arc::new(move |command: &Command| {
        let mut command = command.clone();
        change(&mut command);
        command
    })
}

#[test]
fn a_dead_heat_paid_at_full_odds_is_caught() {
    // The engine never sees dead-heat factors, so it pays a dead heat at full odds.
    let failure = first_failure(|options| {
        options.command_transform = Some(transform(|command| {
            if let Command::SettleMarket { results, .. } = command {
                for result in results {
                    result.dead_heat = None;
                }
            }
        }));
    });
    let message = failure.to_string();
    assert!(message.starts_with("FAILED at seed "), "{message}");
    assert!(message.contains("differ"), "{message}");
}

#[test]
fn a_skipped_void_factor_is_caught() {
    // An Asian quarter line settled as a plain win or loss.
    let failure = first_failure(|options| {
        options.command_transform = Some(transform(|command| {
            if let Command::SettleMarket { results, .. } = command {
                for result in results {
                    result.void_factor = None;
                }
            }
        }));
    });
    assert!(failure.to_string().contains("differ"), "{failure}");
}

#[test]
fn a_price_accepted_against_the_bettors_policy_is_caught() {
    // Bets that asked for the price they saw take whatever the book offers.
    let failure = first_failure(|options| {
        options.command_transform = Some(transform(|command| {
            if let Command::PlaceBet(place) = command {
                if place.policy == PricePolicy::None {
                    place.policy = PricePolicy::Any;
                }
            }
        }));
    });
    assert!(failure.to_string().contains("reply differs"), "{failure}");
}

/// A journal that acknowledges every append but silently drops every `every`-th record, as a
/// backend that replies before its write is durable would after a crash.
struct LyingJournal {
    inner: Box<dyn Journal>,
    every: u64,
    appends: u64,
}

impl Journal for LyingJournal {
    fn append(&mut self, payload: &[u8]) -> Result<Position, JournalError> {
        self.appends += 1;
        if self.appends.is_multiple_of(self.every) {
            return Ok(self.inner.next_position());
        }
        self.inner.append(payload)
    }

    fn next_position(&self) -> Position {
        self.inner.next_position()
    }

    fn read_from(
        &self,
        from: Position,
        visit: &mut dyn FnMut(Position, &[u8]) -> Result<(), JournalError>,
    ) -> Result<(), JournalError> {
        self.inner.read_from(from, visit)
    }
}

fn lying(every: u64) -> JournalWrapper {
    Arc::new(move |inner| Box::new(LyingJournal { inner, every, appends: 0 }))
}

#[test]
fn an_acknowledged_command_lost_by_the_journal_is_caught() {
    for journal in [JournalKind::Memory, JournalKind::File] {
        let failure = first_failure(|options| {
            options.journal = journal;
            options.journal_wrapper = Some(lying(97));
            // The recovery's own check; the read models catch it earlier (the test below).
            options.read_models = false;
        });
        let message = failure.to_string();
        // Caught either by the check after the run, or (when a full disk makes the engine
        // rebuild its book from the journal mid-run) by the recovery's sequence check, which
        // finds the gap the lost command left; which comes first depends on how the engine
        // happened to batch.
        assert!(
            message.contains("is missing from the journal")
                || (message.contains("rebuilding the book failed") && message.contains("starts at sequence")),
            "{journal:?}: {message}"
        );
    }
}

#[test]
fn the_lost_command_is_caught_without_any_injected_fault() {
    // Even with faults off, the final recovery checks the journal against what was acknowledged.
    let failure = first_failure(|options| {
        options.faults = false;
        options.read_models = false;
        options.journal_wrapper = Some(lying(500));
    });
    assert_eq!(failure.step, OPS, "{failure}");
    assert!(failure.to_string().contains("is missing from the journal"), "{failure}");
}

#[test]
fn the_lost_command_is_missing_from_the_read_models_before_the_end() {
    // With the projector beside the engine, the read models miss the acknowledged command at
    // the first check after it was lost, long before the final recovery.
    let failure = first_failure(|options| {
        options.faults = false;
        options.journal = JournalKind::File;
        options.read_model_check_every = 100;
        options.journal_wrapper = Some(lying(500));
    });
    assert!(failure.step < OPS, "{failure}");
    assert!(failure.to_string().contains("the read models differ from the auditor's prediction"), "{failure}");
}

#[test]
fn a_book_that_counts_minor_units_across_currencies_is_caught() {
    // The bug: a yen, a won or a fils counted as a euro cent. The engine is given rates
    // that make every minor unit worth one of the base currency's; the model keeps the real ones.
    let failure = first_failure(|options| {
        options.command_transform = Some(transform(|command| {
            if let Command::SetFxRates { base, rates } = command {
                for (currency, rate) in rates.iter_mut() {
                    let (from, to) = (i32::from(currency.exponent()), i32::from(base.exponent()));
                    *rate = if from >= to {
                        domain::ExchangeRate::new(10u64.pow((from - to) as u32), 0)
                    } else {
                        domain::ExchangeRate::new(1, (to - from) as u8)
                    }
                    .expect("a rate in range");
                }
            }
        }));
    });
    let message = failure.to_string();
    assert!(message.starts_with("FAILED at seed "), "{message}");
}

#[test]
fn a_payment_reference_credited_twice_is_caught() {
    // Each reference made unique on its way to the book: a payment sent again credits again.
    let failure = first_failure(|options| {
        options.command_transform = Some(transform(|command| {
            if let Command::Deposit { payment_ref, amount, .. } = command {
                payment_ref.push_str(&format!("-{}", amount.minor()));
            }
        }));
    });
    assert!(failure.to_string().contains("differ"), "{failure}");
}

#[test]
fn a_failed_deposit_credited_is_caught() {
    // The provider's failure reaches the book as a completion: money that never arrived.
    let failure = first_failure(|options| {
        options.command_transform = Some(transform(|command| {
            if let Command::SettleDeposit { outcome, .. } = command {
                if *outcome == book::DepositOutcome::Failed {
                    *outcome = book::DepositOutcome::Completed;
                }
            }
        }));
    });
    assert!(failure.to_string().contains("differ"), "{failure}");
}

#[test]
fn a_chargeback_that_takes_nothing_is_caught() {
    // Chargebacks lost on their way to the book: the player keeps money the bank took back.
    let failure = first_failure(|options| {
        options.command_transform = Some(transform(|command| {
            if let Command::SettleDeposit { account, outcome: book::DepositOutcome::ChargedBack, .. } = command {
                *command =
                    Command::Withdraw { account: *account, amount: domain::Money::from_minor(0), idempotency: None };
            }
        }));
    });
    assert!(failure.to_string().contains("differ"), "{failure}");
}

#[test]
fn an_approval_lost_on_its_way_is_caught() {
    // Approvals of withdrawals never reach the book.
    let failure = first_failure(|options| {
        options.command_transform = Some(transform(|command| {
            if let Command::ApproveWithdrawal { account, withdrawal } = command {
                *command = Command::ApproveWithdrawal {
                    account: *account,
                    withdrawal: book::TransferId(withdrawal.0 + 1_000_000),
                };
            }
        }));
    });
    assert!(failure.to_string().contains("differ"), "{failure}");
}

#[test]
fn a_withdrawal_hold_left_open_by_a_lost_completion_is_caught() {
    // The book never hears the payments step: a hold whose client hung up stays pending.
    let failure = first_failure(|options| {
        options.command_transform = Some(transform(|command| {
            if let Command::CompleteWithdrawal { withdrawal, .. } = command {
                withdrawal.0 += 1_000_000;
            }
        }));
    });
    assert!(failure.to_string().contains("differ"), "{failure}");
}

#[test]
fn a_deposit_cap_dropped_on_its_way_is_caught() {
    // The jurisdiction's rules reach the book without their cap: unverified players deposit
    // past it.
    let failure = first_failure(|options| {
        options.command_transform = Some(transform(|command| {
            if let Command::SetKycRules { rules, .. } = command {
                rules.deposit_cap = None;
            }
        }));
    });
    assert!(failure.to_string().contains("differ"), "{failure}");
}

#[test]
fn a_rejection_delivered_as_a_verification_is_caught() {
    // The provider's rejection reaches the book as a verification: the player withdraws.
    let failure = first_failure(|options| {
        options.command_transform = Some(transform(|command| {
            if let Command::SetKycState { state, .. } = command {
                if *state == book::KycState::Rejected {
                    *state = book::KycState::Verified;
                }
            }
        }));
    });
    assert!(failure.to_string().contains("differ"), "{failure}");
}

/// A transform of the feed messages the engine is given (the translation of the provider's
/// XML): the auditor still applies what the provider meant.
fn feed_transform(change: impl Fn(&mut book::FeedItem) + Send + Sync + 'static) -> CommandTransform {
    transform(move |command| {
        if let Command::Feed(message) = command {
            message.items.iter_mut().for_each(&change);
        }
    })
}

#[test]
fn a_cancellation_window_off_by_one_is_caught() {
    // The end of every window taken as inclusive: a bet placed exactly at `end_time` is voided
    // too (the withdrawal of the window is shifted alike, so only the boundary differs).
    let failure = first_failure(|options| {
        options.command_transform = Some(feed_transform(|item| {
            if let book::FeedItem::CancelWindow { from, to: Some(to), .. }
            | book::FeedItem::RollbackCancel { from, to: Some(to), .. } = item
            {
                // Empty windows are refused either way: only the boundary of real ones moves.
                if from.is_none_or(|from| from < *to) {
                    *to += 1;
                }
            }
        }));
    });
    assert!(failure.to_string().contains("differ"), "{failure}");
}

#[test]
fn a_dead_heat_factor_applied_twice_is_caught() {
    // A provider's dead heat of 1/n paid at 1/n².
    let failure = first_failure(|options| {
        options.command_transform = Some(feed_transform(|item| {
            if let book::FeedItem::Settlement { results, .. } = item {
                for result in results {
                    if let Some(factor) = result.dead_heat {
                        result.dead_heat = Some(
                            domain::Ratio::new(factor.num() * factor.num(), factor.den() * factor.den())
                                .expect("a unit fraction squared"),
                        );
                    }
                }
            }
        }));
    });
    assert!(failure.to_string().contains("differ"), "{failure}");
}

#[test]
fn a_rollback_that_leaves_the_payout_is_caught() {
    // `rollback_bet_settlement` taken for a `rollback_bet_cancel` of the whole market: a settled
    // market keeps its results and every payout stays paid.
    let failure = first_failure(|options| {
        options.command_transform = Some(feed_transform(|item| {
            if let book::FeedItem::Rollback { event, market } = item {
                *item = book::FeedItem::RollbackCancel {
                    event: event.clone(),
                    market: market.clone(),
                    from: None,
                    to: None,
                };
            }
        }));
    });
    assert!(failure.to_string().contains("differ"), "{failure}");
}

#[test]
fn a_cancellation_that_forgets_its_window_is_caught() {
    // Every `bet_cancel` with a window voids the whole market instead.
    let failure = first_failure(|options| {
        options.command_transform = Some(feed_transform(|item| {
            if let book::FeedItem::CancelWindow { from, to, .. } = item {
                if from.zip(*to).is_none_or(|(from, to)| from < to) {
                    (*from, *to) = (None, None);
                }
            }
        }));
    });
    assert!(failure.to_string().contains("differ"), "{failure}");
}

#[test]
fn an_adjustment_of_a_wrong_amount_is_caught() {
    // The engine posts every manual adjustment one minor unit more than the staff member asked.
    let failure = first_failure(|options| {
        options.command_transform = Some(transform(|command| {
            if let Command::RequestAdjustment { amount, .. } = command {
                *amount = domain::Money::from_minor(amount.minor() + 1);
            }
        }));
    });
    let message = failure.to_string();
    assert!(message.contains("differ"), "{message}");
}

#[test]
fn an_approval_by_the_requester_is_caught() {
    // Four eyes lost: the engine takes every approval as the requester's own (who may never
    // approve), so the model's approvals by someone else post money the book refuses.
    let failure = first_failure(|options| {
        options.command_transform = Some(transform(|command| {
            if let Command::ApproveAdjustment { staff, .. } = command {
                *staff = book::StaffId(1);
            }
        }));
    });
    let message = failure.to_string();
    assert!(message.contains("differ"), "{message}");
}
