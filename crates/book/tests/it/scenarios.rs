//! Data-driven scenarios: every rule of the book as a short script and its transcript. Run
//! `UPDATE_EXPECT=1 cargo test -p book` to rewrite the transcripts after a deliberate change,
//! then read the diff.

use expect_test::{expect, Expect};

fn check(script: &str, expected: Expect) {
    expected.assert_eq(&crate::script::run(script));
}

/// A funded player and a football match with a 1X2 market (sel_1..3) and an over/under market
/// (sel_4..5), plus a second match (sel_6..8) and a third (sel_9..11) and a fourth (sel_12..14).
const SETUP: &str = r#"
open EUR
deposit acc_1 100.00
event "Arsenal v Spurs" football starts=+30d
market evt_1 "1X2" Home=2.50 Draw=3.20 Away=2.80
market evt_1 "Total goals 2.5" Over=1.90 Under=1.90
event "Leeds v Hull" football starts=+30d
market evt_2 "1X2" Home=2.00 Draw=3.40 Away=3.60
event "Lens v Lille" football starts=+30d
market evt_3 "1X2" Home=2.00 Draw=3.00 Away=4.00
event "Roma v Lazio" football starts=+30d
market evt_4 "1X2" Home=1.50 Draw=4.00 Away=6.00
"#;

fn with_setup(script: &str) -> String {
    let transcript = crate::script::run(&format!("{SETUP}\n----\n{script}"));
    transcript.split_once("> ----\n").map_or(transcript.clone(), |(_, rest)| rest.to_string())
}

fn check_setup(script: &str, expected: Expect) {
    expected.assert_eq(&with_setup(script));
}

#[test]
fn journey_deposit_bet_win_withdraw() {
    check(
        r#"
open EUR
deposit acc_1 50.00
event "Arsenal v Spurs" football
market evt_1 "1X2" Home=2.50 Draw=3.20 Away=2.80
bet acc_1 single 10.00 sel_1@2.50
wallet acc_1
settle mkt_1 sel_1=win
wallet acc_1
withdraw acc_1 65.00
wallet acc_1
complete acc_1 trf_5 paid
wallet acc_1
"#,
        expect![[r#"
            > open EUR
              ok acc_1
              - acc_1 opened EUR
            > deposit acc_1 50.00
              ok trf_1
              - trf_1 posted Deposit clearing:EUR -> cash:acc_1 50.00
            > event "Arsenal v Spurs" football
              ok evt_1
              - evt_1 created
            > market evt_1 "1X2" Home=2.50 Draw=3.20 Away=2.80
              ok mkt_1 sel_1 sel_2 sel_3
              - mkt_1 created
            > bet acc_1 single 10.00 sel_1@2.50
              ok bet_1 accepted
              - trf_2 pending Stake cash:acc_1 -> house:EUR 10.00
              - bet_1 placed accepted
            > wallet acc_1
              balance 40.00 available 40.00 pending_stakes 10.00 debt 0.00
            > settle mkt_1 sel_1=win
              ok 1 bets
              - mkt_1 settled
              - trf_3 posts trf_2 Stake cash:acc_1 -> house:EUR 10.00
              - trf_4 posted Payout house:EUR -> cash:acc_1 25.00
              - bet_1 won payout 25.00
            > wallet acc_1
              balance 65.00 available 65.00 pending_stakes 0.00 debt 0.00
            > withdraw acc_1 65.00
              ok trf_5
              - trf_5 pending Withdrawal cash:acc_1 -> clearing:EUR 65.00
            > wallet acc_1
              balance 65.00 available 0.00 pending_stakes 0.00 debt 0.00
            > complete acc_1 trf_5 paid
              ok trf_6
              - trf_6 posts trf_5 Withdrawal cash:acc_1 -> clearing:EUR 65.00
            > wallet acc_1
              balance 0.00 available 0.00 pending_stakes 0.00 debt 0.00
        "#]],
    );
}

#[test]
fn price_change_policies() {
    check_setup(
        r#"
price mkt_1 sel_1=2.60 sel_2=3.00
bet acc_1 single 1 sel_1@2.50                 # none: moved up, rejected
bet acc_1 single 1 sel_1@2.50 policy=better   # better: takes 2.60
bet acc_1 single 1 sel_2@3.20 policy=better   # better: moved down, rejected
bet acc_1 single 1 sel_2@3.20 policy=any      # any: takes 3.00
bet acc_1 single 1 sel_2@3.00                 # the price it saw
show bet_1
show bet_2
show bet_3
"#,
        expect![[r#"
            > price mkt_1 sel_1=2.60 sel_2=3.00
              ok done
              - sel_1 price 2.60 v2
              - sel_2 price 3.00 v2
            > bet acc_1 single 1 sel_1@2.50
              rejected price_changed(sel_1 now 2.60)
            > bet acc_1 single 1 sel_1@2.50 policy=better
              ok bet_1 accepted
              - trf_2 pending Stake cash:acc_1 -> house:EUR 1.00
              - bet_1 placed accepted
            > bet acc_1 single 1 sel_2@3.20 policy=better
              rejected price_changed(sel_2 now 3.00)
            > bet acc_1 single 1 sel_2@3.20 policy=any
              ok bet_2 accepted
              - trf_3 pending Stake cash:acc_1 -> house:EUR 1.00
              - bet_2 placed accepted
            > bet acc_1 single 1 sel_2@3.00
              ok bet_3 accepted
              - trf_4 pending Stake cash:acc_1 -> house:EUR 1.00
              - bet_3 placed accepted
            > show bet_1
              bet_1 accepted stake 1.00 total 1.00 potential 2.60 legs sel_1@2.60(better)
            > show bet_2
              bet_2 accepted stake 1.00 total 1.00 potential 3.00 legs sel_2@3.00(changed)
            > show bet_3
              bet_3 accepted stake 1.00 total 1.00 potential 3.00 legs sel_2@3.00(requested)
        "#]],
    );
}

#[test]
fn market_and_event_states_gate_bets() {
    check_setup(
        r#"
suspend mkt_1
bet acc_1 single 1 sel_1@2.50
resume mkt_1
bet acc_1 single 1 sel_1@2.50
close mkt_2
bet acc_1 single 1 sel_4@1.90
resume mkt_2
bet acc_1 single 1 sel_99@1.90
time +2h                                      # kick-off passes, not in play yet
bet acc_1 single 1 sel_6@2.00
inplay evt_2
bet acc_1 single 1 sel_6@2.00
end evt_2
bet acc_1 single 1 sel_6@2.00
"#,
        expect![[r#"
            > suspend mkt_1
              ok done
              - mkt_1 suspended
            > bet acc_1 single 1 sel_1@2.50
              rejected market_suspended
            > resume mkt_1
              ok done
              - mkt_1 open
            > bet acc_1 single 1 sel_1@2.50
              ok bet_1 accepted
              - trf_2 pending Stake cash:acc_1 -> house:EUR 1.00
              - bet_1 placed accepted
            > close mkt_2
              ok done
              - mkt_2 closed
            > bet acc_1 single 1 sel_4@1.90
              rejected market_closed
            > resume mkt_2
              rejected market_closed
            > bet acc_1 single 1 sel_99@1.90
              rejected selection_unavailable
            > time +2h
            > bet acc_1 single 1 sel_6@2.00
              ok bet_2 accepted
              - trf_3 pending Stake cash:acc_1 -> house:EUR 1.00
              - bet_2 placed accepted
            > inplay evt_2
              ok done
              - evt_2 InPlay
            > bet acc_1 single 1 sel_6@2.00
              ok bet_3 accepted
              - trf_4 pending Stake cash:acc_1 -> house:EUR 1.00
              - bet_3 placed accepted
            > end evt_2
              ok done
              - evt_2 Ended
              - mkt_3 closed
            > bet acc_1 single 1 sel_6@2.00
              rejected market_closed
        "#]],
    );
}

#[test]
fn bet_shapes_are_checked() {
    check_setup(
        r#"
bet acc_1 multiple 1 sel_1@2.50 sel_4@1.90            # same event twice
bet acc_1 multiple 1 sel_1@2.50                       # one leg is not a multiple
bet acc_1 trixie 1 sel_1@2.50 sel_6@2.00              # a trixie takes three
bet acc_1 single 0 sel_1@2.50
bet acc_1 single 1 sel_1@2.50 ew                      # no each-way terms
bet acc_1 multiple 1 sel_1@2.50 sel_6@2.00 sel_9@2.00
show bet_1
"#,
        expect![[r#"
            > bet acc_1 multiple 1 sel_1@2.50 sel_4@1.90
              rejected invalid_bet(two legs on the same event)
            > bet acc_1 multiple 1 sel_1@2.50
              rejected invalid_bet(wrong number of legs for the bet type)
            > bet acc_1 trixie 1 sel_1@2.50 sel_6@2.00
              rejected invalid_bet(wrong number of legs for the bet type)
            > bet acc_1 single 0 sel_1@2.50
              rejected invalid_bet(stake must be positive)
            > bet acc_1 single 1 sel_1@2.50 ew
              rejected invalid_bet(market has no each-way terms)
            > bet acc_1 multiple 1 sel_1@2.50 sel_6@2.00 sel_9@2.00
              ok bet_1 accepted
              - trf_2 pending Stake cash:acc_1 -> house:EUR 1.00
              - bet_1 placed accepted
            > show bet_1
              bet_1 accepted stake 1.00 total 1.00 potential 10.00 legs sel_1@2.50(requested) sel_6@2.00(requested) sel_9@2.00(requested)
        "#]],
    );
}

#[test]
fn stake_limits_stake_factor_and_max_payout() {
    check_setup(
        r#"
bet acc_1 single 0.05 sel_1@2.50
risk mkt_1 max_stake=20.00
bet acc_1 single 20.01 sel_1@2.50
account-risk acc_1 factor=0.5
bet acc_1 single 10.01 sel_1@2.50
bet acc_1 single 10.00 sel_1@2.50
account-risk acc_1 factor=1
risk mkt_1 max_payout=30.00
bet acc_1 single 12.00 sel_1@2.50               # pays exactly 30.00
bet acc_1 single 12.01 sel_1@2.50
bet acc_1 single 100.00 sel_6@2.00                    # more than the balance
"#,
        expect![[r#"
            > bet acc_1 single 0.05 sel_1@2.50
              rejected stake_too_low(min 10)
            > risk mkt_1 max_stake=20.00
              ok done
            > bet acc_1 single 20.01 sel_1@2.50
              rejected stake_too_high(max 2000)
            > account-risk acc_1 factor=0.5
              ok done
              - acc_1 restricted
            > bet acc_1 single 10.01 sel_1@2.50
              rejected stake_too_high(max 1000)
            > bet acc_1 single 10.00 sel_1@2.50
              ok bet_1 accepted
              - trf_2 pending Stake cash:acc_1 -> house:EUR 10.00
              - bet_1 placed accepted
            > account-risk acc_1 factor=1
              ok done
              - acc_1 restricted
            > risk mkt_1 max_payout=30.00
              ok done
            > bet acc_1 single 12.00 sel_1@2.50
              ok bet_2 accepted
              - trf_3 pending Stake cash:acc_1 -> house:EUR 12.00
              - bet_2 placed accepted
            > bet acc_1 single 12.01 sel_1@2.50
              rejected stake_too_high(max 1200)
            > bet acc_1 single 100.00 sel_6@2.00
              rejected insufficient_funds
        "#]],
    );
}

#[test]
fn liability_caps_and_automatic_suspension() {
    check_setup(
        r#"
risk mkt_1 selection_cap=30.00 suspend_at=20.00
bet acc_1 single 10 sel_1@2.50        # adds 15.00
bet acc_1 single 10 sel_1@2.50        # would make 30.00: allowed, and suspends at 20
exposure
bet acc_1 single 1 sel_2@3.20
resume mkt_1
bet acc_1 single 1 sel_1@2.50         # 31.50 > 30.00
risk mkt_3 liability_cap=5.00
bet acc_1 single 5 sel_6@2.00         # 5.00 is allowed
bet acc_1 single 1 sel_6@2.00         # 6.00 is not
bet acc_1 single 5 sel_7@3.40         # another selection: 12.00 > 5.00
"#,
        expect![[r#"
            > risk mkt_1 selection_cap=30.00 suspend_at=20.00
              ok done
            > bet acc_1 single 10 sel_1@2.50
              ok bet_1 accepted
              - trf_2 pending Stake cash:acc_1 -> house:EUR 10.00
              - bet_1 placed accepted
            > bet acc_1 single 10 sel_1@2.50
              ok bet_2 accepted
              - trf_3 pending Stake cash:acc_1 -> house:EUR 10.00
              - mkt_1 suspended
              - bet_2 placed accepted
            > exposure
              sel_1 30.00
              total 30.00
            > bet acc_1 single 1 sel_2@3.20
              rejected market_suspended
            > resume mkt_1
              ok done
              - mkt_1 open
            > bet acc_1 single 1 sel_1@2.50
              rejected liability_limit
            > risk mkt_3 liability_cap=5.00
              ok done
            > bet acc_1 single 5 sel_6@2.00
              ok bet_3 accepted
              - trf_4 pending Stake cash:acc_1 -> house:EUR 5.00
              - bet_3 placed accepted
            > bet acc_1 single 1 sel_6@2.00
              rejected liability_limit
            > bet acc_1 single 5 sel_7@3.40
              rejected liability_limit
        "#]],
    );
}

#[test]
fn in_play_delay_accepts_or_rejects_when_it_ends() {
    check_setup(
        r#"
inplay evt_1 delay=5
bet acc_1 single 10 sel_1@2.50
wallet acc_1
time +5s
tick                                  # the delay ends: nothing changed, accepted
bet acc_1 single 10 sel_1@2.50
price mkt_1 sel_1=2.20                # a goal: the price shortens
time +5s
tick                                  # rejected, stake released
bet acc_1 single 10 sel_2@3.20 policy=any
price mkt_1 sel_2=3.50
time +5s
tick                                  # any: accepted at 3.50
bet acc_1 single 10 sel_2@3.50
suspend mkt_1
time +5s
bet acc_1 single 1 sel_6@2.00         # a later command also ends due delays
show bet_3
wallet acc_1
exposure
"#,
        expect![[r#"
            > inplay evt_1 delay=5
              ok done
              - evt_1 InPlay
            > bet acc_1 single 10 sel_1@2.50
              ok bet_1 pending
              - trf_2 pending Stake cash:acc_1 -> house:EUR 10.00
              - bet_1 placed pending
            > wallet acc_1
              balance 90.00 available 90.00 pending_stakes 10.00 debt 0.00
            > time +5s
            > tick
              ok done
              - bet_1 accepted payout 0.00
            > bet acc_1 single 10 sel_1@2.50
              ok bet_2 pending
              - trf_3 pending Stake cash:acc_1 -> house:EUR 10.00
              - bet_2 placed pending
            > price mkt_1 sel_1=2.20
              ok done
              - sel_1 price 2.20 v2
            > time +5s
            > tick
              ok done
              - trf_4 voids trf_3 Stake cash:acc_1 -> house:EUR 10.00
              - bet_2 rejected payout 0.00
            > bet acc_1 single 10 sel_2@3.20 policy=any
              ok bet_3 pending
              - trf_5 pending Stake cash:acc_1 -> house:EUR 10.00
              - bet_3 placed pending
            > price mkt_1 sel_2=3.50
              ok done
              - sel_2 price 3.50 v2
            > time +5s
            > tick
              ok done
              - bet_3 accepted payout 0.00
            > bet acc_1 single 10 sel_2@3.50
              ok bet_4 pending
              - trf_6 pending Stake cash:acc_1 -> house:EUR 10.00
              - bet_4 placed pending
            > suspend mkt_1
              ok done
              - mkt_1 suspended
            > time +5s
            > bet acc_1 single 1 sel_6@2.00
              ok bet_5 accepted
              - trf_7 voids trf_6 Stake cash:acc_1 -> house:EUR 10.00
              - bet_4 rejected payout 0.00
              - trf_8 pending Stake cash:acc_1 -> house:EUR 1.00
              - bet_5 placed accepted
            > show bet_3
              bet_3 accepted stake 10.00 total 10.00 potential 35.00 legs sel_2@3.50(better)
            > wallet acc_1
              balance 79.00 available 79.00 pending_stakes 21.00 debt 0.00
            > exposure
              sel_1 15.00
              sel_2 25.00
              sel_6 1.00
              total 41.00
        "#]],
    );
}

#[test]
fn a_payment_reference_credits_at_most_once() {
    check(
        r#"
open EUR
open EUR
deposit acc_1 50 ref=psp-7 key=a
deposit acc_1 50 ref=psp-7 key=a              # a retry with its key: the first reply
deposit acc_1 50 ref=psp-7 key=b              # the same payment under another key: refused
deposit acc_1 50 ref=psp-7                    # or none
deposit acc_2 50 ref=psp-7                    # references are per account
deposit acc_1 50 ref=""                       # a reference is 1 to 200 bytes
wallet acc_1
"#,
        expect![[r#"
            > open EUR
              ok acc_1
              - acc_1 opened EUR
            > open EUR
              ok acc_2
              - acc_2 opened EUR
            > deposit acc_1 50 ref=psp-7 key=a
              ok trf_1
              - trf_1 posted Deposit clearing:EUR -> cash:acc_1 50.00
            > deposit acc_1 50 ref=psp-7 key=a
              ok trf_1
              - acc_1 replayed an idempotent command
            > deposit acc_1 50 ref=psp-7 key=b
              rejected duplicate_payment_ref
            > deposit acc_1 50 ref=psp-7
              rejected duplicate_payment_ref
            > deposit acc_2 50 ref=psp-7
              ok trf_2
              - trf_2 posted Deposit clearing:EUR -> cash:acc_2 50.00
            > deposit acc_1 50 ref=""
              rejected invalid_request(payment reference missing)
            > wallet acc_1
              balance 50.00 available 50.00 pending_stakes 0.00 debt 0.00
        "#]],
    );
}

#[test]
fn idempotency_keys_return_the_first_reply() {
    check_setup(
        r#"
bet acc_1 single 10 sel_1@2.50 key=k1
bet acc_1 single 10 sel_1@2.50 key=k1          # same body: same bet, nothing new
bet acc_1 single 20 sel_1@2.50 key=k1          # other body: rejected
bet acc_1 single 999 sel_1@2.50 key=k2         # a rejection is remembered too
deposit acc_1 1000 key=k2                      # the key with another body
deposit acc_1 10 key=d1
deposit acc_1 10 key=d1
wallet acc_1
time +24h
bet acc_1 single 10 sel_1@2.50 key=k1          # forgotten after the retention window
bet acc_1 single 10 sel_1@2.50 key=xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx
"#,
        expect![[r#"
            > bet acc_1 single 10 sel_1@2.50 key=k1
              ok bet_1 accepted
              - trf_2 pending Stake cash:acc_1 -> house:EUR 10.00
              - bet_1 placed accepted
            > bet acc_1 single 10 sel_1@2.50 key=k1
              ok bet_1 accepted
              - acc_1 replayed an idempotent command
            > bet acc_1 single 20 sel_1@2.50 key=k1
              rejected idempotency_key_reused
              - acc_1 replayed an idempotent command
            > bet acc_1 single 999 sel_1@2.50 key=k2
              rejected insufficient_funds
            > deposit acc_1 1000 key=k2
              rejected idempotency_key_reused
              - acc_1 replayed an idempotent command
            > deposit acc_1 10 key=d1
              ok trf_3
              - trf_3 posted Deposit clearing:EUR -> cash:acc_1 10.00
            > deposit acc_1 10 key=d1
              ok trf_3
              - acc_1 replayed an idempotent command
            > wallet acc_1
              balance 100.00 available 100.00 pending_stakes 10.00 debt 0.00
            > time +24h
            > bet acc_1 single 10 sel_1@2.50 key=k1
              ok bet_2 accepted
              - trf_4 pending Stake cash:acc_1 -> house:EUR 10.00
              - bet_2 placed accepted
            > bet acc_1 single 10 sel_1@2.50 key=xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx
              rejected invalid_request(idempotency keys are 1 to 128 bytes)
        "#]],
    );
}

/// The idempotency window is a journaled setting within bounds; a shorter one forgets the
/// older keys at the next command (their retries are then the read models').
#[test]
fn the_idempotency_window_is_set_within_bounds_and_a_shorter_one_forgets_older_keys() {
    check_setup(
        r#"
idempotency-window 29999
idempotency-window 86400001
bet acc_1 single 10 sel_1@2.50 key=k1
time +2m
bet acc_1 single 10 sel_1@2.50 key=k1          # within the default 10 minutes: the first reply
idempotency-window 60000
bet acc_1 single 10 sel_1@2.50 key=k1          # two minutes old, past one: decided again
bet acc_1 single 10 sel_1@2.50 key=k3
time +59s
bet acc_1 single 10 sel_1@2.50 key=k3          # 59 s old: still remembered
"#,
        expect![[r#"
            > idempotency-window 29999
              rejected invalid_request(idempotency window out of range)
            > idempotency-window 86400001
              rejected invalid_request(idempotency window out of range)
            > bet acc_1 single 10 sel_1@2.50 key=k1
              ok bet_1 accepted
              - trf_2 pending Stake cash:acc_1 -> house:EUR 10.00
              - bet_1 placed accepted
            > time +2m
            > bet acc_1 single 10 sel_1@2.50 key=k1
              ok bet_1 accepted
              - acc_1 replayed an idempotent command
            > idempotency-window 60000
              ok done
            > bet acc_1 single 10 sel_1@2.50 key=k1
              ok bet_2 accepted
              - trf_3 pending Stake cash:acc_1 -> house:EUR 10.00
              - bet_2 placed accepted
            > bet acc_1 single 10 sel_1@2.50 key=k3
              ok bet_3 accepted
              - trf_4 pending Stake cash:acc_1 -> house:EUR 10.00
              - bet_3 placed accepted
            > time +59s
            > bet acc_1 single 10 sel_1@2.50 key=k3
              ok bet_3 accepted
              - acc_1 replayed an idempotent command
        "#]],
    );
}

#[test]
fn deposit_limits_decrease_now_and_increase_after_cooling_off() {
    check(
        r#"
open EUR
limits acc_1 deposit.day=50.00
deposit acc_1 50.00
deposit acc_1 0.01
limits acc_1 deposit.day=80.00                 # an increase waits 24h
deposit acc_1 0.01
time +23h
deposit acc_1 0.01
time +1h
deposit acc_1 60.00                            # 80.00 is in force now
limits acc_1 deposit.day=40.00 deposit.week=120.00
deposit acc_1 0.01                             # 60.01 today > 40.00
time +1d
deposit acc_1 10.00                            # Friday: the week (from Monday) is at 120.01
limits acc_1 deposit.week=none                 # a removal also waits
deposit acc_1 1.00
time +24h
deposit acc_1 40.00
time +3d
deposit acc_1 40.00                            # a new week
deposit acc_1 0.01
"#,
        expect![[r#"
            > open EUR
              ok acc_1
              - acc_1 opened EUR
            > limits acc_1 deposit.day=50.00
              ok done
              - acc_1 limits changed
            > deposit acc_1 50.00
              ok trf_1
              - trf_1 posted Deposit clearing:EUR -> cash:acc_1 50.00
            > deposit acc_1 0.01
              rejected limit_reached(deposit day)
            > limits acc_1 deposit.day=80.00
              ok done
              - acc_1 limits changed
            > deposit acc_1 0.01
              rejected limit_reached(deposit day)
            > time +23h
            > deposit acc_1 0.01
              ok trf_2
              - trf_2 posted Deposit clearing:EUR -> cash:acc_1 0.01
            > time +1h
            > deposit acc_1 60.00
              ok trf_3
              - trf_3 posted Deposit clearing:EUR -> cash:acc_1 60.00
            > limits acc_1 deposit.day=40.00 deposit.week=120.00
              ok done
              - acc_1 limits changed
            > deposit acc_1 0.01
              rejected limit_reached(deposit day)
            > time +1d
            > deposit acc_1 10.00
              rejected limit_reached(deposit week)
            > limits acc_1 deposit.week=none
              ok done
              - acc_1 limits changed
            > deposit acc_1 1.00
              ok trf_4
              - trf_4 posted Deposit clearing:EUR -> cash:acc_1 1.00
            > time +24h
            > deposit acc_1 40.00
              ok trf_5
              - trf_5 posted Deposit clearing:EUR -> cash:acc_1 40.00
            > time +3d
            > deposit acc_1 40.00
              ok trf_6
              - trf_6 posted Deposit clearing:EUR -> cash:acc_1 40.00
            > deposit acc_1 0.01
              rejected limit_reached(deposit day)
        "#]],
    );
}

#[test]
fn stake_and_loss_limits() {
    check_setup(
        r#"
limits acc_1 stake.day=15.00 loss.week=25.00
bet acc_1 single 10 sel_1@2.50
bet acc_1 single 6 sel_6@2.00                  # 16 staked today
time +1d
bet acc_1 single 10 sel_6@2.00                 # new day; the week has lost at most 20 so far
bet acc_1 single 6 sel_9@2.00                  # 16 > 15 staked today
limits acc_1 stake.day=none
bet acc_1 single 6 sel_9@2.00                  # the removal waits 24h
time +1d
bet acc_1 single 6 sel_9@2.00                  # the week could lose 26 > 25
settle mkt_1 sel_1=win                         # wins 25: the week's net loss is -5
bet acc_1 single 6 sel_9@2.00
"#,
        expect![[r#"
            > limits acc_1 stake.day=15.00 loss.week=25.00
              ok done
              - acc_1 limits changed
            > bet acc_1 single 10 sel_1@2.50
              ok bet_1 accepted
              - trf_2 pending Stake cash:acc_1 -> house:EUR 10.00
              - bet_1 placed accepted
            > bet acc_1 single 6 sel_6@2.00
              rejected limit_reached(stake day)
            > time +1d
            > bet acc_1 single 10 sel_6@2.00
              ok bet_2 accepted
              - trf_3 pending Stake cash:acc_1 -> house:EUR 10.00
              - bet_2 placed accepted
            > bet acc_1 single 6 sel_9@2.00
              rejected limit_reached(stake day)
            > limits acc_1 stake.day=none
              ok done
              - acc_1 limits changed
            > bet acc_1 single 6 sel_9@2.00
              rejected limit_reached(stake day)
            > time +1d
            > bet acc_1 single 6 sel_9@2.00
              rejected limit_reached(loss week)
            > settle mkt_1 sel_1=win
              ok 1 bets
              - mkt_1 settled
              - trf_4 posts trf_2 Stake cash:acc_1 -> house:EUR 10.00
              - trf_5 posted Payout house:EUR -> cash:acc_1 25.00
              - bet_1 won payout 25.00
            > bet acc_1 single 6 sel_9@2.00
              ok bet_3 accepted
              - trf_6 pending Stake cash:acc_1 -> house:EUR 6.00
              - bet_3 placed accepted
        "#]],
    );
}

#[test]
fn time_out_self_exclusion_and_freeze() {
    check_setup(
        r#"
timeout acc_1 24
bet acc_1 single 1 sel_1@2.50
deposit acc_1 1
withdraw acc_1 1                                # withdrawals stay possible
time +24h
bet acc_1 single 1 sel_1@2.50
exclude acc_1 30                                # too short
exclude acc_1 182
bet acc_1 single 1 sel_1@2.50
deposit acc_1 1
withdraw acc_1 1
open EUR
deposit acc_2 10
account-risk acc_2 frozen=true
bet acc_2 single 1 sel_1@2.50
withdraw acc_2 1
account-risk acc_2 frozen=false
bet acc_2 single 1 sel_1@2.50
"#,
        expect![[r#"
            > timeout acc_1 24
              ok done
              - acc_1 restricted
            > bet acc_1 single 1 sel_1@2.50
              rejected timed_out
            > deposit acc_1 1
              rejected timed_out
            > withdraw acc_1 1
              ok trf_2
              - trf_2 pending Withdrawal cash:acc_1 -> clearing:EUR 1.00
            > time +24h
            > bet acc_1 single 1 sel_1@2.50
              ok bet_1 accepted
              - trf_3 pending Stake cash:acc_1 -> house:EUR 1.00
              - bet_1 placed accepted
            > exclude acc_1 30
              rejected invalid_request(self-exclusion days out of range)
            > exclude acc_1 182
              ok done
              - acc_1 restricted
            > bet acc_1 single 1 sel_1@2.50
              rejected self_excluded
            > deposit acc_1 1
              rejected self_excluded
            > withdraw acc_1 1
              ok trf_4
              - trf_4 pending Withdrawal cash:acc_1 -> clearing:EUR 1.00
            > open EUR
              ok acc_2
              - acc_2 opened EUR
            > deposit acc_2 10
              ok trf_5
              - trf_5 posted Deposit clearing:EUR -> cash:acc_2 10.00
            > account-risk acc_2 frozen=true
              ok done
              - acc_2 restricted
            > bet acc_2 single 1 sel_1@2.50
              rejected account_frozen
            > withdraw acc_2 1
              rejected account_frozen
            > account-risk acc_2 frozen=false
              ok done
              - acc_2 restricted
            > bet acc_2 single 1 sel_1@2.50
              ok bet_2 accepted
              - trf_6 pending Stake cash:acc_2 -> house:EUR 1.00
              - bet_2 placed accepted
        "#]],
    );
}

#[test]
fn withdrawals_hold_then_post_or_release() {
    check_setup(
        r#"
withdraw acc_1 100.01
withdraw acc_1 60.00
bet acc_1 single 50 sel_1@2.50                 # 40.00 available
complete acc_1 trf_2 failed
wallet acc_1
complete acc_1 trf_2 paid                      # already released
withdraw acc_1 0
"#,
        expect![[r#"
            > withdraw acc_1 100.01
              rejected insufficient_funds
            > withdraw acc_1 60.00
              ok trf_2
              - trf_2 pending Withdrawal cash:acc_1 -> clearing:EUR 60.00
            > bet acc_1 single 50 sel_1@2.50
              rejected insufficient_funds
            > complete acc_1 trf_2 failed
              ok trf_3
              - trf_3 voids trf_2 Withdrawal cash:acc_1 -> clearing:EUR 60.00
            > wallet acc_1
              balance 100.00 available 100.00 pending_stakes 0.00 debt 0.00
            > complete acc_1 trf_2 paid
              rejected unknown_withdrawal
            > withdraw acc_1 0
              rejected invalid_request(withdrawal amount must be positive)
        "#]],
    );
}

#[test]
fn settlement_win_lose_void_dead_heat_and_quarter_lines() {
    check_setup(
        r#"
bet acc_1 single 10 sel_1@2.50
bet acc_1 single 10 sel_2@3.20
bet acc_1 single 10 sel_3@2.80
settle mkt_1 sel_1=win/dh=1/2 sel_2=void      # sel_3 loses by default
bet acc_1 single 10 sel_4@1.90                # a settled market takes no bets
bet acc_1 single 10 sel_6@2.00
bet acc_1 single 10 sel_7@3.40
bet acc_1 single 10 sel_8@3.60
settle mkt_3 sel_6=win/vf=1/2 sel_7=lose/vf=1/2 sel_8=lose
wallet acc_1
"#,
        expect![[r#"
            > bet acc_1 single 10 sel_1@2.50
              ok bet_1 accepted
              - trf_2 pending Stake cash:acc_1 -> house:EUR 10.00
              - bet_1 placed accepted
            > bet acc_1 single 10 sel_2@3.20
              ok bet_2 accepted
              - trf_3 pending Stake cash:acc_1 -> house:EUR 10.00
              - bet_2 placed accepted
            > bet acc_1 single 10 sel_3@2.80
              ok bet_3 accepted
              - trf_4 pending Stake cash:acc_1 -> house:EUR 10.00
              - bet_3 placed accepted
            > settle mkt_1 sel_1=win/dh=1/2 sel_2=void
              ok 3 bets
              - mkt_1 settled
              - trf_5 posts trf_2 Stake cash:acc_1 -> house:EUR 10.00
              - trf_6 posted Payout house:EUR -> cash:acc_1 12.50
              - bet_1 won payout 12.50
              - trf_7 posts trf_3 Stake cash:acc_1 -> house:EUR 10.00
              - trf_8 posted Payout house:EUR -> cash:acc_1 10.00
              - bet_2 void payout 10.00
              - trf_9 posts trf_4 Stake cash:acc_1 -> house:EUR 10.00
              - bet_3 lost payout 0.00
            > bet acc_1 single 10 sel_4@1.90
              ok bet_4 accepted
              - trf_10 pending Stake cash:acc_1 -> house:EUR 10.00
              - bet_4 placed accepted
            > bet acc_1 single 10 sel_6@2.00
              ok bet_5 accepted
              - trf_11 pending Stake cash:acc_1 -> house:EUR 10.00
              - bet_5 placed accepted
            > bet acc_1 single 10 sel_7@3.40
              ok bet_6 accepted
              - trf_12 pending Stake cash:acc_1 -> house:EUR 10.00
              - bet_6 placed accepted
            > bet acc_1 single 10 sel_8@3.60
              ok bet_7 accepted
              - trf_13 pending Stake cash:acc_1 -> house:EUR 10.00
              - bet_7 placed accepted
            > settle mkt_3 sel_6=win/vf=1/2 sel_7=lose/vf=1/2 sel_8=lose
              ok 3 bets
              - mkt_3 settled
              - trf_14 posts trf_11 Stake cash:acc_1 -> house:EUR 10.00
              - trf_15 posted Payout house:EUR -> cash:acc_1 15.00
              - bet_5 half_won payout 15.00
              - trf_16 posts trf_12 Stake cash:acc_1 -> house:EUR 10.00
              - trf_17 posted Payout house:EUR -> cash:acc_1 5.00
              - bet_6 half_lost payout 5.00
              - trf_18 posts trf_13 Stake cash:acc_1 -> house:EUR 10.00
              - bet_7 lost payout 0.00
            > wallet acc_1
              balance 72.50 available 72.50 pending_stakes 10.00 debt 0.00
        "#]],
    );
}

#[test]
fn multiples_settle_void_legs_at_odds_one_and_lose_early() {
    check_setup(
        r#"
bet acc_1 multiple 10 sel_1@2.50 sel_6@2.00 sel_9@2.00
bet acc_1 multiple 10 sel_2@3.20 sel_7@3.40
settle mkt_1 sel_1=win                        # bet_2 lost already, bet_1 waits
settle mkt_3 sel_6=void
settle mkt_4 sel_9=win                        # 10 x 2.50 x 1 x 2.00
wallet acc_1
"#,
        expect![[r#"
            > bet acc_1 multiple 10 sel_1@2.50 sel_6@2.00 sel_9@2.00
              ok bet_1 accepted
              - trf_2 pending Stake cash:acc_1 -> house:EUR 10.00
              - bet_1 placed accepted
            > bet acc_1 multiple 10 sel_2@3.20 sel_7@3.40
              ok bet_2 accepted
              - trf_3 pending Stake cash:acc_1 -> house:EUR 10.00
              - bet_2 placed accepted
            > settle mkt_1 sel_1=win
              ok 1 bets
              - mkt_1 settled
              - trf_4 posts trf_3 Stake cash:acc_1 -> house:EUR 10.00
              - bet_2 lost payout 0.00
            > settle mkt_3 sel_6=void
              ok 0 bets
              - mkt_3 settled
            > settle mkt_4 sel_9=win
              ok 1 bets
              - mkt_4 settled
              - trf_5 posts trf_2 Stake cash:acc_1 -> house:EUR 10.00
              - trf_6 posted Payout house:EUR -> cash:acc_1 50.00
              - bet_1 won payout 50.00
            > wallet acc_1
              balance 130.00 available 130.00 pending_stakes 0.00 debt 0.00
        "#]],
    );
}

#[test]
fn system_bets_expand_into_lines() {
    check_setup(
        r#"
bet acc_1 trixie 1 sel_1@2.50 sel_6@2.00 sel_9@2.00
bet acc_1 patent 1 sel_1@2.50 sel_6@2.00 sel_9@2.00
bet acc_1 yankee 1 sel_1@2.50 sel_6@2.00 sel_9@2.00 sel_12@1.50
bet acc_1 lucky15 1 sel_1@2.50 sel_6@2.00 sel_9@2.00 sel_12@1.50
show bet_1
show bet_2
show bet_3
show bet_4
settle mkt_1 sel_1=win
settle mkt_3 sel_6=win
settle mkt_4 sel_9=lose
settle mkt_5 sel_12=void
show bet_1
show bet_2
show bet_3
show bet_4
"#,
        expect![[r#"
            > bet acc_1 trixie 1 sel_1@2.50 sel_6@2.00 sel_9@2.00
              ok bet_1 accepted
              - trf_2 pending Stake cash:acc_1 -> house:EUR 4.00
              - bet_1 placed accepted
            > bet acc_1 patent 1 sel_1@2.50 sel_6@2.00 sel_9@2.00
              ok bet_2 accepted
              - trf_3 pending Stake cash:acc_1 -> house:EUR 7.00
              - bet_2 placed accepted
            > bet acc_1 yankee 1 sel_1@2.50 sel_6@2.00 sel_9@2.00 sel_12@1.50
              ok bet_3 accepted
              - trf_4 pending Stake cash:acc_1 -> house:EUR 11.00
              - bet_3 placed accepted
            > bet acc_1 lucky15 1 sel_1@2.50 sel_6@2.00 sel_9@2.00 sel_12@1.50
              ok bet_4 accepted
              - trf_5 pending Stake cash:acc_1 -> house:EUR 15.00
              - bet_4 placed accepted
            > show bet_1
              bet_1 accepted stake 1.00 total 4.00 potential 24.00 legs sel_1@2.50(requested) sel_6@2.00(requested) sel_9@2.00(requested)
            > show bet_2
              bet_2 accepted stake 1.00 total 7.00 potential 30.50 legs sel_1@2.50(requested) sel_6@2.00(requested) sel_9@2.00(requested)
            > show bet_3
              bet_3 accepted stake 1.00 total 11.00 potential 69.75 legs sel_1@2.50(requested) sel_6@2.00(requested) sel_9@2.00(requested) sel_12@1.50(requested)
            > show bet_4
              bet_4 accepted stake 1.00 total 15.00 potential 77.75 legs sel_1@2.50(requested) sel_6@2.00(requested) sel_9@2.00(requested) sel_12@1.50(requested)
            > settle mkt_1 sel_1=win
              ok 0 bets
              - mkt_1 settled
            > settle mkt_3 sel_6=win
              ok 0 bets
              - mkt_3 settled
            > settle mkt_4 sel_9=lose
              ok 2 bets
              - mkt_4 settled
              - trf_6 posts trf_2 Stake cash:acc_1 -> house:EUR 4.00
              - trf_7 posted Payout house:EUR -> cash:acc_1 5.00
              - bet_1 won payout 5.00
              - trf_8 posts trf_3 Stake cash:acc_1 -> house:EUR 7.00
              - trf_9 posted Payout house:EUR -> cash:acc_1 9.50
              - bet_2 won payout 9.50
            > settle mkt_5 sel_12=void
              ok 2 bets
              - mkt_5 settled
              - trf_10 posts trf_4 Stake cash:acc_1 -> house:EUR 11.00
              - trf_11 posted Payout house:EUR -> cash:acc_1 14.50
              - bet_3 won payout 14.50
              - trf_12 posts trf_5 Stake cash:acc_1 -> house:EUR 15.00
              - trf_13 posted Payout house:EUR -> cash:acc_1 20.00
              - bet_4 won payout 20.00
            > show bet_1
              bet_1 won stake 1.00 total 4.00 potential 24.00 legs sel_1@2.50(requested) sel_6@2.00(requested) sel_9@2.00(requested) paid 5.00
            > show bet_2
              bet_2 won stake 1.00 total 7.00 potential 30.50 legs sel_1@2.50(requested) sel_6@2.00(requested) sel_9@2.00(requested) paid 9.50
            > show bet_3
              bet_3 won stake 1.00 total 11.00 potential 69.75 legs sel_1@2.50(requested) sel_6@2.00(requested) sel_9@2.00(requested) sel_12@1.50(requested) paid 14.50
            > show bet_4
              bet_4 won stake 1.00 total 15.00 potential 77.75 legs sel_1@2.50(requested) sel_6@2.00(requested) sel_9@2.00(requested) sel_12@1.50(requested) paid 20.00
        "#]],
    );
}

#[test]
fn larger_system_bets_have_the_right_line_counts() {
    let mut script = String::from("open EUR\ndeposit acc_1 10000\n");
    for event in 1..=8 {
        script.push_str(&format!(
            "event \"Match {event}\" football starts=+30d\nmarket evt_{event} \"Winner\" A=2.00 B=2.00\n"
        ));
    }
    let legs: Vec<String> = (0..8).map(|event| format!("sel_{}@2.00", event * 2 + 1)).collect();
    for (kind, count) in [("canadian", 5), ("heinz", 6), ("super_heinz", 7), ("goliath", 8)] {
        script.push_str(&format!("bet acc_1 {kind} 1 {}\n", legs[..count].join(" ")));
    }
    for bet in 1..=4 {
        script.push_str(&format!("show bet_{bet}\n"));
    }
    let transcript = crate::script::run(&script);
    let shown: Vec<&str> = transcript.lines().filter(|line| line.contains(" stake ")).collect();
    expect![[r#"
        [
            "  bet_1 accepted stake 1.00 total 26.00 potential 232.00 legs sel_1@2.00(requested) sel_3@2.00(requested) sel_5@2.00(requested) sel_7@2.00(requested) sel_9@2.00(requested)",
            "  bet_2 accepted stake 1.00 total 57.00 potential 716.00 legs sel_1@2.00(requested) sel_3@2.00(requested) sel_5@2.00(requested) sel_7@2.00(requested) sel_9@2.00(requested) sel_11@2.00(requested)",
            "  bet_3 accepted stake 1.00 total 120.00 potential 2172.00 legs sel_1@2.00(requested) sel_3@2.00(requested) sel_5@2.00(requested) sel_7@2.00(requested) sel_9@2.00(requested) sel_11@2.00(requested) sel_13@2.00(requested)",
            "  bet_4 accepted stake 1.00 total 247.00 potential 6544.00 legs sel_1@2.00(requested) sel_3@2.00(requested) sel_5@2.00(requested) sel_7@2.00(requested) sel_9@2.00(requested) sel_11@2.00(requested) sel_13@2.00(requested) sel_15@2.00(requested)",
        ]
    "#]].assert_debug_eq(&shown);
}

#[test]
fn each_way_pays_the_place_part_at_the_fraction() {
    check(
        r#"
open EUR
deposit acc_1 100
event "2:30 Cheltenham" horse_racing starts=+30d
market evt_1 "Win" Ace=6.00 Bolt=11.00 Comet=4.00 Dash=9.00 Echo=13.00 ew=3@1/5
bet acc_1 single 5 sel_1@6.00 ew              # 10.00 total: 5 to win at 6, 5 to place at 2.00
bet acc_1 single 5 sel_2@11.00 ew
bet acc_1 single 5 sel_3@4.00 ew
show bet_1
settle mkt_1 sel_1=win sel_2=place sel_4=place
wallet acc_1
"#,
        expect![[r#"
            > open EUR
              ok acc_1
              - acc_1 opened EUR
            > deposit acc_1 100
              ok trf_1
              - trf_1 posted Deposit clearing:EUR -> cash:acc_1 100.00
            > event "2:30 Cheltenham" horse_racing starts=+30d
              ok evt_1
              - evt_1 created
            > market evt_1 "Win" Ace=6.00 Bolt=11.00 Comet=4.00 Dash=9.00 Echo=13.00 ew=3@1/5
              ok mkt_1 sel_1 sel_2 sel_3 sel_4 sel_5
              - mkt_1 created
            > bet acc_1 single 5 sel_1@6.00 ew
              ok bet_1 accepted
              - trf_2 pending Stake cash:acc_1 -> house:EUR 10.00
              - bet_1 placed accepted
            > bet acc_1 single 5 sel_2@11.00 ew
              ok bet_2 accepted
              - trf_3 pending Stake cash:acc_1 -> house:EUR 10.00
              - bet_2 placed accepted
            > bet acc_1 single 5 sel_3@4.00 ew
              ok bet_3 accepted
              - trf_4 pending Stake cash:acc_1 -> house:EUR 10.00
              - bet_3 placed accepted
            > show bet_1
              bet_1 accepted stake 5.00 total 10.00 potential 40.00 legs sel_1@6.00(requested)
            > settle mkt_1 sel_1=win sel_2=place sel_4=place
              ok 3 bets
              - mkt_1 settled
              - trf_5 posts trf_2 Stake cash:acc_1 -> house:EUR 10.00
              - trf_6 posted Payout house:EUR -> cash:acc_1 40.00
              - bet_1 won payout 40.00
              - trf_7 posts trf_3 Stake cash:acc_1 -> house:EUR 10.00
              - trf_8 posted Payout house:EUR -> cash:acc_1 15.00
              - bet_2 won payout 15.00
              - trf_9 posts trf_4 Stake cash:acc_1 -> house:EUR 10.00
              - bet_3 lost payout 0.00
            > wallet acc_1
              balance 125.00 available 125.00 pending_stakes 0.00 debt 0.00
        "#]],
    );
}

#[test]
fn resettlement_reverses_exactly_and_never_pays_twice() {
    check_setup(
        r#"
bet acc_1 single 10 sel_1@2.50
bet acc_1 single 10 sel_2@3.20
settle mkt_1 sel_1=win
settle mkt_1 sel_1=win                         # the same results: nothing changes
settle mkt_1 sel_2=win                         # different results need an unsettle first
wallet acc_1
unsettle mkt_1
wallet acc_1
exposure
settle mkt_1 sel_2=win
wallet acc_1
unsettle mkt_2                                 # nothing to unsettle
"#,
        expect![[r#"
            > bet acc_1 single 10 sel_1@2.50
              ok bet_1 accepted
              - trf_2 pending Stake cash:acc_1 -> house:EUR 10.00
              - bet_1 placed accepted
            > bet acc_1 single 10 sel_2@3.20
              ok bet_2 accepted
              - trf_3 pending Stake cash:acc_1 -> house:EUR 10.00
              - bet_2 placed accepted
            > settle mkt_1 sel_1=win
              ok 2 bets
              - mkt_1 settled
              - trf_4 posts trf_2 Stake cash:acc_1 -> house:EUR 10.00
              - trf_5 posted Payout house:EUR -> cash:acc_1 25.00
              - bet_1 won payout 25.00
              - trf_6 posts trf_3 Stake cash:acc_1 -> house:EUR 10.00
              - bet_2 lost payout 0.00
            > settle mkt_1 sel_1=win
              ok 0 bets
            > settle mkt_1 sel_2=win
              rejected already_settled
            > wallet acc_1
              balance 105.00 available 105.00 pending_stakes 0.00 debt 0.00
            > unsettle mkt_1
              ok 2 bets
              - mkt_1 closed
              - trf_7 posted PayoutReversal cash:acc_1 -> house:EUR 25.00
              - trf_8 posted StakeReversal house:EUR -> cash:acc_1 10.00
              - trf_9 pending Stake cash:acc_1 -> house:EUR 10.00
              - bet_1 accepted payout 0.00
              - trf_10 posted StakeReversal house:EUR -> cash:acc_1 10.00
              - trf_11 pending Stake cash:acc_1 -> house:EUR 10.00
              - bet_2 accepted payout 0.00
            > wallet acc_1
              balance 80.00 available 80.00 pending_stakes 20.00 debt 0.00
            > exposure
              sel_1 15.00
              sel_2 22.00
              total 37.00
            > settle mkt_1 sel_2=win
              ok 2 bets
              - mkt_1 settled
              - trf_12 posts trf_9 Stake cash:acc_1 -> house:EUR 10.00
              - bet_1 lost payout 0.00
              - trf_13 posts trf_11 Stake cash:acc_1 -> house:EUR 10.00
              - trf_14 posted Payout house:EUR -> cash:acc_1 32.00
              - bet_2 won payout 32.00
            > wallet acc_1
              balance 112.00 available 112.00 pending_stakes 0.00 debt 0.00
            > unsettle mkt_2
              rejected not_settled
        "#]],
    );
}

#[test]
fn resettlement_after_a_withdrawal_records_a_debt() {
    check_setup(
        r#"
bet acc_1 single 100 sel_1@2.50
settle mkt_1 sel_1=win
withdraw acc_1 250
complete acc_1 trf_5 paid
unsettle mkt_1                                 # 250 to take back, nothing left in cash
wallet acc_1
settle mkt_1 sel_1=lose
deposit acc_1 300                              # repays the 250 owed; the rest is free
wallet acc_1
"#,
        expect![[r#"
            > bet acc_1 single 100 sel_1@2.50
              ok bet_1 accepted
              - trf_2 pending Stake cash:acc_1 -> house:EUR 100.00
              - bet_1 placed accepted
            > settle mkt_1 sel_1=win
              ok 1 bets
              - mkt_1 settled
              - trf_3 posts trf_2 Stake cash:acc_1 -> house:EUR 100.00
              - trf_4 posted Payout house:EUR -> cash:acc_1 250.00
              - bet_1 won payout 250.00
            > withdraw acc_1 250
              ok trf_5
              - trf_5 pending Withdrawal cash:acc_1 -> clearing:EUR 250.00
            > complete acc_1 trf_5 paid
              ok trf_6
              - trf_6 posts trf_5 Withdrawal cash:acc_1 -> clearing:EUR 250.00
            > unsettle mkt_1
              ok 1 bets
              - mkt_1 closed
              - trf_7 posted DebtRecognised debt:acc_1 -> house:EUR 250.00
              - trf_8 posted StakeReversal house:EUR -> cash:acc_1 100.00
              - trf_9 pending Stake cash:acc_1 -> house:EUR 100.00
              - bet_1 accepted payout 0.00
            > wallet acc_1
              balance 0.00 available 0.00 pending_stakes 100.00 debt 250.00
            > settle mkt_1 sel_1=lose
              ok 1 bets
              - mkt_1 settled
              - trf_10 posts trf_9 Stake cash:acc_1 -> house:EUR 100.00
              - bet_1 lost payout 0.00
            > deposit acc_1 300
              ok trf_11
              - trf_11 posted Deposit clearing:EUR -> cash:acc_1 300.00
              - trf_12 posted DebtRepaid cash:acc_1 -> debt:acc_1 250.00
            > wallet acc_1
              balance 50.00 available 50.00 pending_stakes 0.00 debt 0.00
        "#]],
    );
}

#[test]
fn market_void_returns_stakes_and_rejects_delayed_bets() {
    check_setup(
        r#"
bet acc_1 single 10 sel_1@2.50
bet acc_1 multiple 10 sel_2@3.20 sel_6@2.00
inplay evt_1 delay=5
bet acc_1 single 10 sel_3@2.80
void mkt_1
void mkt_1
settle mkt_3 sel_6=win
wallet acc_1
settle mkt_1 sel_1=win                         # voided: settled already
unsettle mkt_1
settle mkt_1 sel_1=win
wallet acc_1
"#,
        expect![[r#"
            > bet acc_1 single 10 sel_1@2.50
              ok bet_1 accepted
              - trf_2 pending Stake cash:acc_1 -> house:EUR 10.00
              - bet_1 placed accepted
            > bet acc_1 multiple 10 sel_2@3.20 sel_6@2.00
              ok bet_2 accepted
              - trf_3 pending Stake cash:acc_1 -> house:EUR 10.00
              - bet_2 placed accepted
            > inplay evt_1 delay=5
              ok done
              - evt_1 InPlay
            > bet acc_1 single 10 sel_3@2.80
              ok bet_3 pending
              - trf_4 pending Stake cash:acc_1 -> house:EUR 10.00
              - bet_3 placed pending
            > void mkt_1
              ok 1 bets
              - mkt_1 voided
              - trf_5 posts trf_2 Stake cash:acc_1 -> house:EUR 10.00
              - trf_6 posted Payout house:EUR -> cash:acc_1 10.00
              - bet_1 void payout 10.00
              - trf_7 voids trf_4 Stake cash:acc_1 -> house:EUR 10.00
              - bet_3 rejected payout 0.00
            > void mkt_1
              ok 0 bets
            > settle mkt_3 sel_6=win
              ok 1 bets
              - mkt_3 settled
              - trf_8 posts trf_3 Stake cash:acc_1 -> house:EUR 10.00
              - trf_9 posted Payout house:EUR -> cash:acc_1 20.00
              - bet_2 won payout 20.00
            > wallet acc_1
              balance 110.00 available 110.00 pending_stakes 0.00 debt 0.00
            > settle mkt_1 sel_1=win
              rejected already_settled
            > unsettle mkt_1
              ok 2 bets
              - mkt_1 closed
              - trf_10 posted PayoutReversal cash:acc_1 -> house:EUR 10.00
              - trf_11 posted StakeReversal house:EUR -> cash:acc_1 10.00
              - trf_12 pending Stake cash:acc_1 -> house:EUR 10.00
              - bet_1 accepted payout 0.00
              - trf_13 posted PayoutReversal cash:acc_1 -> house:EUR 20.00
              - trf_14 posted StakeReversal house:EUR -> cash:acc_1 10.00
              - trf_15 pending Stake cash:acc_1 -> house:EUR 10.00
              - bet_2 accepted payout 0.00
            > settle mkt_1 sel_1=win
              ok 2 bets
              - mkt_1 settled
              - trf_16 posts trf_12 Stake cash:acc_1 -> house:EUR 10.00
              - trf_17 posted Payout house:EUR -> cash:acc_1 25.00
              - bet_1 won payout 25.00
              - trf_18 posts trf_15 Stake cash:acc_1 -> house:EUR 10.00
              - bet_2 lost payout 0.00
            > wallet acc_1
              balance 105.00 available 105.00 pending_stakes 0.00 debt 0.00
        "#]],
    );
}

#[test]
fn cash_out_quotes_bind_to_price_versions() {
    check_setup(
        r#"
bet acc_1 single 10 sel_1@2.50
price mkt_1 sel_1=1.25                        # the bet is now likely to win
quote acc_1 bet_1                             # 10 x 2.50 / 1.25 x 0.95 = 19.00
cashout acc_1 bet_1 quo_1
wallet acc_1
bet acc_1 single 10 sel_6@2.00
quote acc_1 bet_2
price mkt_3 sel_6=2.10
cashout acc_1 bet_2 quo_2                     # the price moved
quote acc_1 bet_2
time +6s
cashout acc_1 bet_2 quo_3                     # too late
quote acc_1 bet_2
cashout acc_1 bet_2 quo_3                     # an old quote
suspend mkt_3
quote acc_1 bet_2
quote acc_1 bet_1                             # cashed out already
open EUR
quote acc_2 bet_2                             # not their bet
"#,
        expect![[r#"
            > bet acc_1 single 10 sel_1@2.50
              ok bet_1 accepted
              - trf_2 pending Stake cash:acc_1 -> house:EUR 10.00
              - bet_1 placed accepted
            > price mkt_1 sel_1=1.25
              ok done
              - sel_1 price 1.25 v2
            > quote acc_1 bet_1
              ok quo_1 19.00 expires +5000ms
            > cashout acc_1 bet_1 quo_1
              ok bet_1 cashed out 19.00
              - trf_3 posts trf_2 Stake cash:acc_1 -> house:EUR 10.00
              - trf_4 posted Cashout house:EUR -> cash:acc_1 19.00
              - bet_1 cashed_out payout 19.00
            > wallet acc_1
              balance 109.00 available 109.00 pending_stakes 0.00 debt 0.00
            > bet acc_1 single 10 sel_6@2.00
              ok bet_2 accepted
              - trf_5 pending Stake cash:acc_1 -> house:EUR 10.00
              - bet_2 placed accepted
            > quote acc_1 bet_2
              ok quo_2 9.50 expires +5000ms
            > price mkt_3 sel_6=2.10
              ok done
              - sel_6 price 2.10 v2
            > cashout acc_1 bet_2 quo_2
              rejected price_changed(sel_6 now 2.10)
            > quote acc_1 bet_2
              ok quo_3 9.04 expires +5000ms
            > time +6s
            > cashout acc_1 bet_2 quo_3
              rejected quote_expired
            > quote acc_1 bet_2
              ok quo_4 9.04 expires +5000ms
            > cashout acc_1 bet_2 quo_3
              rejected quote_expired
            > suspend mkt_3
              ok done
              - mkt_3 suspended
            > quote acc_1 bet_2
              rejected cashout_unavailable(a market is not open)
            > quote acc_1 bet_1
              rejected cashout_unavailable(bet is not open)
            > open EUR
              ok acc_2
              - acc_2 opened EUR
            > quote acc_2 bet_2
              rejected unknown_bet
        "#]],
    );
}

#[test]
fn registration_checks_age_and_unique_usernames() {
    check(
        r#"
register alice 2008-11-25 GB                   # 18 today
register bob 2008-11-26 GB                     # 18 tomorrow
register ALICE 1990-01-01 GB                   # usernames ignore case
register al 1990-01-01 GB
register carol 1990-01-01 gb
time +1d
register bob 2008-11-26 GB
apikey trader 0000000000000000000000000000000000000000000000000000000000000001 1
apikey again 0000000000000000000000000000000000000000000000000000000000000001 1
apikey short 00 1
revoke key_1
"#,
        expect![[r#"
            > register alice 2008-11-25 GB
              ok acc_1
              - acc_1 opened EUR
            > register bob 2008-11-26 GB
              rejected underage
            > register ALICE 1990-01-01 GB
              rejected username_taken
            > register al 1990-01-01 GB
              rejected invalid_request(usernames are 3 to 32 of a-z, 0-9, _ . -)
            > register carol 1990-01-01 gb
              rejected invalid_request(country must be an ISO 3166-1 alpha-2 code)
            > time +1d
            > register bob 2008-11-26 GB
              ok acc_2
              - acc_2 opened EUR
            > apikey trader 0000000000000000000000000000000000000000000000000000000000000001 1
              ok key_1
              - api keys changed
            > apikey again 0000000000000000000000000000000000000000000000000000000000000001 1
              rejected invalid_request(API key refused)
            > apikey short 00 1
              rejected invalid_request(an API key needs a SHA-256 hash and known scopes)
            > revoke key_1
              ok done
              - api keys changed
        "#]],
    );
}

#[test]
fn staff_members_have_unique_names_known_roles_and_a_base32_secret() {
    check(
        r#"
staff Ops.Anna JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP 1
staff ops.anna JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP 2  # staff usernames ignore case
staff ops.ben jbswy3dpehpk3pxp 2                  # base32 is upper case
staff ops.ben JBSWY3DP 2                          # too short
staff ops.ben JBSWY3DPEHPK3PXP 32                 # no such role
staff ops.ben JBSWY3DPEHPK3PXP 0
staff ops.ben JBSWY3DPEHPK3PXP 24
disable stf_1
disable stf_9
"#,
        expect![[r#"
            > staff Ops.Anna JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP 1
              ok stf_1
              - staff changed
            > staff ops.anna JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP 2
              rejected username_taken
            > staff ops.ben jbswy3dpehpk3pxp 2
              rejected invalid_request(a TOTP secret is 16 to 64 base32 characters)
            > staff ops.ben JBSWY3DP 2
              rejected invalid_request(a TOTP secret is 16 to 64 base32 characters)
            > staff ops.ben JBSWY3DPEHPK3PXP 32
              rejected invalid_request(a staff member needs known roles)
            > staff ops.ben JBSWY3DPEHPK3PXP 0
              rejected invalid_request(a staff member needs known roles)
            > staff ops.ben JBSWY3DPEHPK3PXP 24
              ok stf_2
              - staff changed
            > disable stf_1
              ok done
              - staff changed
            > disable stf_9
              rejected invalid_request(unknown staff member)
        "#]],
    );
}

#[test]
fn api_key_hashes_are_unique_in_any_letter_case() {
    // Hashes are stored in lower case; the same hash in upper case is the same key.
    check(
        r#"
apikey desk 00000000000000000000000000000000000000000000000000000000000000ab 1
apikey shout 00000000000000000000000000000000000000000000000000000000000000AB 3
apikey mixed 00000000000000000000000000000000000000000000000000000000000000Ab 3
apikey other 00000000000000000000000000000000000000000000000000000000000000AC 3
"#,
        expect![[r#"
            > apikey desk 00000000000000000000000000000000000000000000000000000000000000ab 1
              ok key_1
              - api keys changed
            > apikey shout 00000000000000000000000000000000000000000000000000000000000000AB 3
              rejected invalid_request(API key refused)
            > apikey mixed 00000000000000000000000000000000000000000000000000000000000000Ab 3
              rejected invalid_request(API key refused)
            > apikey other 00000000000000000000000000000000000000000000000000000000000000AC 3
              ok key_2
              - api keys changed
        "#]],
    );
}

/// Three events whose markets may pay up to the money maximum (10 trillion), for bets whose
/// potential payout reaches it.
const WHALE_SETUP: &str = r#"
open EUR
deposit acc_1 100.00
event "A" football starts=+30d
market evt_1 "Winner" A=10000 B=1.01
event "B" football starts=+30d
market evt_2 "Winner" C=10000 D=1.01
event "C" football starts=+30d
market evt_3 "Winner" E=5000 F=1.01
risk mkt_1 max_payout=10000000000000.00
risk mkt_2 max_payout=10000000000000.00
risk mkt_3 max_payout=10000000000000.00
"#;

#[test]
fn a_price_rise_during_the_delay_cannot_take_a_payout_to_the_money_maximum() {
    // 10.00 × 10000 × 10000 × 5000 is half the money maximum when placed. The third leg's
    // price doubles during the delay: at the end of it the payout would be exactly the
    // maximum, which placement refuses too, so the bet is rejected and its stake released.
    let transcript = crate::script::run(&format!(
        r#"{WHALE_SETUP}
----
inplay evt_3 delay=5
bet acc_1 multiple 10.00 sel_1@10000 sel_3@10000 sel_5@5000 policy=better
price mkt_3 sel_5=10000
time +5s
tick
show bet_1
wallet acc_1
"#
    ));
    let (_, after) = transcript.split_once("> ----\n").expect("the setup is separate");
    expect![[r#"
        > inplay evt_3 delay=5
          ok done
          - evt_3 InPlay
        > bet acc_1 multiple 10.00 sel_1@10000 sel_3@10000 sel_5@5000 policy=better
          ok bet_1 pending
          - trf_2 pending Stake cash:acc_1 -> house:EUR 10.00
          - bet_1 placed pending
        > price mkt_3 sel_5=10000
          ok done
          - sel_5 price 10000.00 v2
        > time +5s
        > tick
          ok done
          - trf_3 voids trf_2 Stake cash:acc_1 -> house:EUR 10.00
          - bet_1 rejected payout 0.00
        > show bet_1
          bet_1 rejected stake 10.00 total 10.00 potential 5000000000000.00 legs sel_1@10000.00(requested) sel_3@10000.00(requested) sel_5@5000.00(requested)
        > wallet acc_1
          balance 100.00 available 100.00 pending_stakes 0.00 debt 0.00
    "#]].assert_eq(after);
}

#[test]
fn a_stake_hint_fits_when_the_payout_saturates() {
    // 20.00 at 10000 × 10000 × 10000 would pay twice the money maximum: the payout saturates
    // at the maximum and is refused. The offered stake is the largest whose payout is below
    // the maximum, and it is accepted. A trixie's lines sum past the maximum the same way.
    let transcript = crate::script::run(&format!(
        r#"{WHALE_SETUP}
----
bet acc_1 multiple 20.00 sel_1@10000 sel_3@10000 sel_5@5000
price mkt_3 sel_5=10000
bet acc_1 multiple 20.00 sel_1@10000 sel_3@10000 sel_5@10000
bet acc_1 trixie 10.00 sel_1@10000 sel_3@10000 sel_5@10000
bet acc_1 multiple 9.99 sel_1@10000 sel_3@10000 sel_5@10000
"#
    ));
    let (_, after) = transcript.split_once("> ----\n").expect("the setup is separate");
    expect![[r#"
        > bet acc_1 multiple 20.00 sel_1@10000 sel_3@10000 sel_5@5000
          rejected stake_too_high(max 1999)
        > price mkt_3 sel_5=10000
          ok done
          - sel_5 price 10000.00 v2
        > bet acc_1 multiple 20.00 sel_1@10000 sel_3@10000 sel_5@10000
          rejected stake_too_high(max 999)
        > bet acc_1 trixie 10.00 sel_1@10000 sel_3@10000 sel_5@10000
          rejected stake_too_high(max 999)
        > bet acc_1 multiple 9.99 sel_1@10000 sel_3@10000 sel_5@10000
          ok bet_1 accepted
          - trf_2 pending Stake cash:acc_1 -> house:EUR 9.99
          - bet_1 placed accepted
    "#]]
    .assert_eq(after);
}

#[test]
fn a_player_in_debt_repays_from_released_holds_and_cannot_withdraw() {
    // A win is paid, withdrawn, then taken back by a resettlement: the player's cash is all
    // held, so the payout becomes a debt. Every hold released afterwards (a delayed bet
    // rejected, a withdrawal the provider failed) repays the debt before the player may
    // withdraw anything.
    check_setup(
        r#"
bet acc_1 single 10.00 sel_1@2.50
inplay evt_2 delay=5
bet acc_1 single 20.00 sel_6@2.00
withdraw acc_1 70.00
settle mkt_1 sel_1=win
withdraw acc_1 25.00
unsettle mkt_1
wallet acc_1
price mkt_3 sel_6=1.80
time +5s
tick
wallet acc_1
withdraw acc_1 1.00
complete acc_1 trf_4 failed
wallet acc_1
withdraw acc_1 65.01
withdraw acc_1 65.00
"#,
        expect![[r#"
            > bet acc_1 single 10.00 sel_1@2.50
              ok bet_1 accepted
              - trf_2 pending Stake cash:acc_1 -> house:EUR 10.00
              - bet_1 placed accepted
            > inplay evt_2 delay=5
              ok done
              - evt_2 InPlay
            > bet acc_1 single 20.00 sel_6@2.00
              ok bet_2 pending
              - trf_3 pending Stake cash:acc_1 -> house:EUR 20.00
              - bet_2 placed pending
            > withdraw acc_1 70.00
              ok trf_4
              - trf_4 pending Withdrawal cash:acc_1 -> clearing:EUR 70.00
            > settle mkt_1 sel_1=win
              ok 1 bets
              - mkt_1 settled
              - trf_5 posts trf_2 Stake cash:acc_1 -> house:EUR 10.00
              - trf_6 posted Payout house:EUR -> cash:acc_1 25.00
              - bet_1 won payout 25.00
            > withdraw acc_1 25.00
              ok trf_7
              - trf_7 pending Withdrawal cash:acc_1 -> clearing:EUR 25.00
            > unsettle mkt_1
              ok 1 bets
              - mkt_1 closed
              - trf_8 posted DebtRecognised debt:acc_1 -> house:EUR 25.00
              - trf_9 posted StakeReversal house:EUR -> cash:acc_1 10.00
              - trf_10 pending Stake cash:acc_1 -> house:EUR 10.00
              - bet_1 accepted payout 0.00
            > wallet acc_1
              balance 95.00 available 0.00 pending_stakes 30.00 debt 25.00
            > price mkt_3 sel_6=1.80
              ok done
              - sel_6 price 1.80 v2
            > time +5s
            > tick
              ok done
              - trf_11 voids trf_3 Stake cash:acc_1 -> house:EUR 20.00
              - trf_12 posted DebtRepaid cash:acc_1 -> debt:acc_1 20.00
              - bet_2 rejected payout 0.00
            > wallet acc_1
              balance 95.00 available 0.00 pending_stakes 10.00 debt 5.00
            > withdraw acc_1 1.00
              rejected insufficient_funds
            > complete acc_1 trf_4 failed
              ok trf_13
              - trf_13 voids trf_4 Withdrawal cash:acc_1 -> clearing:EUR 70.00
              - trf_14 posted DebtRepaid cash:acc_1 -> debt:acc_1 5.00
            > wallet acc_1
              balance 90.00 available 65.00 pending_stakes 10.00 debt 0.00
            > withdraw acc_1 65.01
              rejected insufficient_funds
            > withdraw acc_1 65.00
              ok trf_15
              - trf_15 pending Withdrawal cash:acc_1 -> clearing:EUR 65.00
        "#]],
    );
}

/// A book whose limits let amounts reach the money maximum (10 trillion): deposits, stakes
/// and payouts up to it.
fn whale_config() -> book::Config {
    book::Config {
        max_stake: domain::Money::from_minor(domain::MONEY_MINOR_MAX),
        max_payout: domain::Money::from_minor(domain::MONEY_MINOR_MAX),
        deposit_max: domain::Money::from_minor(domain::MONEY_MINOR_MAX),
        ..book::Config::default()
    }
}

fn check_whale(script: &str, expected: Expect) {
    let mut runner = crate::script::Script::new(whale_config());
    runner.run(script);
    expected.assert_eq(runner.output());
}

#[test]
fn no_deposit_takes_a_balance_past_the_money_maximum() {
    check_whale(
        r#"
open EUR
deposit acc_1 9999999999999.99
deposit acc_1 0.02
deposit acc_1 0.01
wallet acc_1
deposit acc_1 0.01
"#,
        expect![[r#"
            > open EUR
              ok acc_1
              - acc_1 opened EUR
            > deposit acc_1 9999999999999.99
              ok trf_1
              - trf_1 posted Deposit clearing:EUR -> cash:acc_1 9999999999999.99
            > deposit acc_1 0.02
              rejected amount_too_large
            > deposit acc_1 0.01
              ok trf_2
              - trf_2 posted Deposit clearing:EUR -> cash:acc_1 0.01
            > wallet acc_1
              balance 10000000000000.00 available 10000000000000.00 pending_stakes 0.00 debt 0.00
            > deposit acc_1 0.01
              rejected amount_too_large
        "#]],
    );
}

#[test]
fn a_settlement_that_would_overflow_a_balance_is_refused_whole() {
    // acc_2 holds nearly the maximum; its win would pass it. The whole settlement is refused,
    // acc_1's win included, and nothing changes until acc_2's balance makes room.
    check_whale(
        r#"
open EUR
open EUR
deposit acc_1 100.00
deposit acc_2 9999999999500.00
event "Derby" football starts=+30d
market evt_1 "1X2" Home=2.00 Draw=3.00 Away=4.00
bet acc_1 single 10.00 sel_1@2.00
bet acc_2 single 1000.00 sel_1@2.00
settle mkt_1 sel_1=win
show bet_1
wallet acc_1
wallet acc_2
withdraw acc_2 1000.00
complete acc_2 trf_5 paid
settle mkt_1 sel_1=win
wallet acc_2
"#,
        expect![[r#"
            > open EUR
              ok acc_1
              - acc_1 opened EUR
            > open EUR
              ok acc_2
              - acc_2 opened EUR
            > deposit acc_1 100.00
              ok trf_1
              - trf_1 posted Deposit clearing:EUR -> cash:acc_1 100.00
            > deposit acc_2 9999999999500.00
              ok trf_2
              - trf_2 posted Deposit clearing:EUR -> cash:acc_2 9999999999500.00
            > event "Derby" football starts=+30d
              ok evt_1
              - evt_1 created
            > market evt_1 "1X2" Home=2.00 Draw=3.00 Away=4.00
              ok mkt_1 sel_1 sel_2 sel_3
              - mkt_1 created
            > bet acc_1 single 10.00 sel_1@2.00
              ok bet_1 accepted
              - trf_3 pending Stake cash:acc_1 -> house:EUR 10.00
              - bet_1 placed accepted
            > bet acc_2 single 1000.00 sel_1@2.00
              ok bet_2 accepted
              - trf_4 pending Stake cash:acc_2 -> house:EUR 1000.00
              - bet_2 placed accepted
            > settle mkt_1 sel_1=win
              rejected amount_too_large
            > show bet_1
              bet_1 accepted stake 10.00 total 10.00 potential 20.00 legs sel_1@2.00(requested)
            > wallet acc_1
              balance 90.00 available 90.00 pending_stakes 10.00 debt 0.00
            > wallet acc_2
              balance 9999999998500.00 available 9999999998500.00 pending_stakes 1000.00 debt 0.00
            > withdraw acc_2 1000.00
              ok trf_5
              - trf_5 pending Withdrawal cash:acc_2 -> clearing:EUR 1000.00
            > complete acc_2 trf_5 paid
              ok trf_6
              - trf_6 posts trf_5 Withdrawal cash:acc_2 -> clearing:EUR 1000.00
            > settle mkt_1 sel_1=win
              ok 2 bets
              - mkt_1 settled
              - trf_7 posts trf_3 Stake cash:acc_1 -> house:EUR 10.00
              - trf_8 posted Payout house:EUR -> cash:acc_1 20.00
              - bet_1 won payout 20.00
              - trf_9 posts trf_4 Stake cash:acc_2 -> house:EUR 1000.00
              - trf_10 posted Payout house:EUR -> cash:acc_2 2000.00
              - bet_2 won payout 2000.00
            > wallet acc_2
              balance 9999999999500.00 available 9999999999500.00 pending_stakes 0.00 debt 0.00
        "#]],
    );
}

#[test]
fn an_unsettlement_that_would_overflow_a_balance_is_refused_whole() {
    // A lost stake would come back to a balance that has since filled up to the maximum.
    check_whale(
        r#"
open EUR
deposit acc_1 1000.00
event "Derby" football starts=+30d
market evt_1 "1X2" Home=2.00 Draw=3.00 Away=4.00
bet acc_1 single 1000.00 sel_1@2.00
settle mkt_1 sel_2=win
deposit acc_1 9999999999999.99
unsettle mkt_1
show bet_1
wallet acc_1
withdraw acc_1 9999999999000.00
complete acc_1 trf_5 paid
unsettle mkt_1
wallet acc_1
"#,
        expect![[r#"
            > open EUR
              ok acc_1
              - acc_1 opened EUR
            > deposit acc_1 1000.00
              ok trf_1
              - trf_1 posted Deposit clearing:EUR -> cash:acc_1 1000.00
            > event "Derby" football starts=+30d
              ok evt_1
              - evt_1 created
            > market evt_1 "1X2" Home=2.00 Draw=3.00 Away=4.00
              ok mkt_1 sel_1 sel_2 sel_3
              - mkt_1 created
            > bet acc_1 single 1000.00 sel_1@2.00
              ok bet_1 accepted
              - trf_2 pending Stake cash:acc_1 -> house:EUR 1000.00
              - bet_1 placed accepted
            > settle mkt_1 sel_2=win
              ok 1 bets
              - mkt_1 settled
              - trf_3 posts trf_2 Stake cash:acc_1 -> house:EUR 1000.00
              - bet_1 lost payout 0.00
            > deposit acc_1 9999999999999.99
              ok trf_4
              - trf_4 posted Deposit clearing:EUR -> cash:acc_1 9999999999999.99
            > unsettle mkt_1
              rejected amount_too_large
            > show bet_1
              bet_1 lost stake 1000.00 total 1000.00 potential 2000.00 legs sel_1@2.00(requested) paid 0.00
            > wallet acc_1
              balance 9999999999999.99 available 9999999999999.99 pending_stakes 0.00 debt 0.00
            > withdraw acc_1 9999999999000.00
              ok trf_5
              - trf_5 pending Withdrawal cash:acc_1 -> clearing:EUR 9999999999000.00
            > complete acc_1 trf_5 paid
              ok trf_6
              - trf_6 posts trf_5 Withdrawal cash:acc_1 -> clearing:EUR 9999999999000.00
            > unsettle mkt_1
              ok 1 bets
              - mkt_1 closed
              - trf_7 posted StakeReversal house:EUR -> cash:acc_1 1000.00
              - trf_8 pending Stake cash:acc_1 -> house:EUR 1000.00
              - bet_1 accepted payout 0.00
            > wallet acc_1
              balance 999.99 available 999.99 pending_stakes 1000.00 debt 0.00
        "#]],
    );
}

#[test]
fn an_unsettlement_that_would_overflow_a_liability_is_refused_whole() {
    // A double loses on its second leg, so its liability leaves the first leg's selection,
    // which then takes a bet up to nearly the money maximum. Reopening the double would put
    // its liability back past the maximum: the unsettlement is refused.
    check_whale(
        r#"
open EUR
deposit acc_1 1000100000.00
event "Derby" football starts=+30d
market evt_1 "1X2" Home=2.00 Draw=3.00 Away=4.00
event "Cup" football starts=+30d
market evt_2 "Winner" A=10000 B=1.01
bet acc_1 multiple 100000.00 sel_4@10000 sel_1@2.00
settle mkt_1 sel_2=win
bet acc_1 single 999999999.00 sel_4@10000
exposure
unsettle mkt_1
exposure
show bet_1
"#,
        expect![[r#"
            > open EUR
              ok acc_1
              - acc_1 opened EUR
            > deposit acc_1 1000100000.00
              ok trf_1
              - trf_1 posted Deposit clearing:EUR -> cash:acc_1 1000100000.00
            > event "Derby" football starts=+30d
              ok evt_1
              - evt_1 created
            > market evt_1 "1X2" Home=2.00 Draw=3.00 Away=4.00
              ok mkt_1 sel_1 sel_2 sel_3
              - mkt_1 created
            > event "Cup" football starts=+30d
              ok evt_2
              - evt_2 created
            > market evt_2 "Winner" A=10000 B=1.01
              ok mkt_2 sel_4 sel_5
              - mkt_2 created
            > bet acc_1 multiple 100000.00 sel_4@10000 sel_1@2.00
              ok bet_1 accepted
              - trf_2 pending Stake cash:acc_1 -> house:EUR 100000.00
              - bet_1 placed accepted
            > settle mkt_1 sel_2=win
              ok 1 bets
              - mkt_1 settled
              - trf_3 posts trf_2 Stake cash:acc_1 -> house:EUR 100000.00
              - bet_1 lost payout 0.00
            > bet acc_1 single 999999999.00 sel_4@10000
              ok bet_2 accepted
              - trf_4 pending Stake cash:acc_1 -> house:EUR 999999999.00
              - bet_2 placed accepted
            > exposure
              sel_4 9998999990001.00
              total 9998999990001.00
            > unsettle mkt_1
              rejected amount_too_large
            > exposure
              sel_4 9998999990001.00
              total 9998999990001.00
            > show bet_1
              bet_1 lost stake 100000.00 total 100000.00 potential 2000000000.00 legs sel_4@10000.00(requested) sel_1@2.00(requested) paid 0.00
        "#]],
    );
}

#[test]
fn a_cash_out_that_would_overflow_a_balance_is_refused() {
    check_whale(
        r#"
open EUR
deposit acc_1 9999999999500.00
event "Derby" football starts=+30d
market evt_1 "1X2" Home=2.00 Draw=3.00 Away=4.00
bet acc_1 single 1000.00 sel_1@2.00
price mkt_1 sel_1=1.01
quote acc_1 bet_1
cashout acc_1 bet_1 quo_1
show bet_1
"#,
        expect![[r#"
            > open EUR
              ok acc_1
              - acc_1 opened EUR
            > deposit acc_1 9999999999500.00
              ok trf_1
              - trf_1 posted Deposit clearing:EUR -> cash:acc_1 9999999999500.00
            > event "Derby" football starts=+30d
              ok evt_1
              - evt_1 created
            > market evt_1 "1X2" Home=2.00 Draw=3.00 Away=4.00
              ok mkt_1 sel_1 sel_2 sel_3
              - mkt_1 created
            > bet acc_1 single 1000.00 sel_1@2.00
              ok bet_1 accepted
              - trf_2 pending Stake cash:acc_1 -> house:EUR 1000.00
              - bet_1 placed accepted
            > price mkt_1 sel_1=1.01
              ok done
              - sel_1 price 1.01 v2
            > quote acc_1 bet_1
              ok quo_1 1881.18 expires +5000ms
            > cashout acc_1 bet_1 quo_1
              rejected amount_too_large
            > show bet_1
              bet_1 accepted stake 1000.00 total 1000.00 potential 2000.00 legs sel_1@2.00(requested)
        "#]],
    );
}

/// Money in every currency: risk settings are in the base currency (EUR); a KRW stake counts
/// against a EUR cap at its converted value (rounded up), a JPY stake limit is the base limit
/// converted (rounded down) and shown in yen, the minimum stake converts rounding up, a
/// currency without a rate cannot bet, and a bet's liability leaves exactly as it came, with
/// the rate it was placed at, even after the rates change.
#[test]
fn currencies_convert_through_the_operator_rates() {
    check(
        r#"
open KRW
deposit acc_1 1000000KRW                # no rate yet: the deposit cap cannot apply
event "Arsenal v Spurs" football starts=+30d
market evt_1 "1X2" Home=2.00 Draw=3.20 Away=2.80
bet acc_1 single 10000KRW sel_1@2.00   # no rate yet
fx EUR GBP=0.85 JPY=160.00 KRW=1540.5 BHD=0.41
fx GBP JPY=190.00                     # the base is fixed once a market exists
deposit acc_1 1000000KRW
open EUR
open GBP
open JPY
open BHD
deposit acc_2 500.00
deposit acc_3 500.00GBP
deposit acc_4 100000JPY
deposit acc_5 100.000BHD
deposit acc_4 16000001JPY             # the €100,000.00 deposit cap is ¥16,000,000
deposit acc_5 41000.001BHD            # and 41,000.000 BHD
deposit acc_5 41000.000BHD
risk mkt_1 liability_cap=100.00
market evt_1 "Total goals 2.5" Over=1.90 Under=1.90
risk mkt_2 max_stake=100.00
bet acc_1 single 10000KRW sel_1@2.00  # ₩10,000 of liability is €6.50 (6.4914 rounded up)
exposure
bet acc_2 single 93.50 sel_1@2.00     # the EUR bettor still has €93.50 of room
bet acc_2 single 0.10 sel_1@2.00
exposure
bet acc_4 single 16000JPY sel_4@1.90  # €100.00 is ¥16,000
bet acc_4 single 16001JPY sel_4@1.90
bet acc_4 single 20000JPY sel_4@1.90
bet acc_5 single 41.001BHD sel_4@1.90 # €100.00 is 41.000 BHD
bet acc_3 single 85.01GBP sel_4@1.90  # €100.00 is £85.00
bet acc_1 single 154KRW sel_4@1.90    # €0.10 is ₩154.05: the minimum rounds up to ₩155
bet acc_1 single 155KRW sel_4@1.90
fx EUR GBP=0.85 JPY=160.00 KRW=1000 BHD=0.41
exposure
fx EUR GBP=0.85 JPY=160.00 BHD=0.41
bet acc_1 single 10000KRW sel_4@1.90  # KRW has no rate any more
settle mkt_1 sel_2=win
settle mkt_2 sel_5=win
exposure
wallet acc_1
wallet acc_4
"#,
        expect![[r#"
            > open KRW
              ok acc_1
              - acc_1 opened KRW
            > deposit acc_1 1000000KRW
              rejected fx_rate_missing
            > event "Arsenal v Spurs" football starts=+30d
              ok evt_1
              - evt_1 created
            > market evt_1 "1X2" Home=2.00 Draw=3.20 Away=2.80
              ok mkt_1 sel_1 sel_2 sel_3
              - mkt_1 created
            > bet acc_1 single 10000KRW sel_1@2.00
              rejected fx_rate_missing
            > fx EUR GBP=0.85 JPY=160.00 KRW=1540.5 BHD=0.41
              ok done
            > fx GBP JPY=190.00
              rejected invalid_request(the base currency is fixed once a market exists)
            > deposit acc_1 1000000KRW
              ok trf_1
              - trf_1 posted Deposit clearing:KRW -> cash:acc_1 1000000
            > open EUR
              ok acc_2
              - acc_2 opened EUR
            > open GBP
              ok acc_3
              - acc_3 opened GBP
            > open JPY
              ok acc_4
              - acc_4 opened JPY
            > open BHD
              ok acc_5
              - acc_5 opened BHD
            > deposit acc_2 500.00
              ok trf_2
              - trf_2 posted Deposit clearing:EUR -> cash:acc_2 500.00
            > deposit acc_3 500.00GBP
              ok trf_3
              - trf_3 posted Deposit clearing:GBP -> cash:acc_3 500.00
            > deposit acc_4 100000JPY
              ok trf_4
              - trf_4 posted Deposit clearing:JPY -> cash:acc_4 100000
            > deposit acc_5 100.000BHD
              ok trf_5
              - trf_5 posted Deposit clearing:BHD -> cash:acc_5 100.000
            > deposit acc_4 16000001JPY
              rejected invalid_request(deposit amount out of range)
            > deposit acc_5 41000.001BHD
              rejected invalid_request(deposit amount out of range)
            > deposit acc_5 41000.000BHD
              ok trf_6
              - trf_6 posted Deposit clearing:BHD -> cash:acc_5 41000.000
            > risk mkt_1 liability_cap=100.00
              ok done
            > market evt_1 "Total goals 2.5" Over=1.90 Under=1.90
              ok mkt_2 sel_4 sel_5
              - mkt_2 created
            > risk mkt_2 max_stake=100.00
              ok done
            > bet acc_1 single 10000KRW sel_1@2.00
              ok bet_1 accepted
              - trf_7 pending Stake cash:acc_1 -> house:KRW 10000
              - bet_1 placed accepted
            > exposure
              sel_1 6.50 (KRW 10000)
              total 6.50
            > bet acc_2 single 93.50 sel_1@2.00
              ok bet_2 accepted
              - trf_8 pending Stake cash:acc_2 -> house:EUR 93.50
              - bet_2 placed accepted
            > bet acc_2 single 0.10 sel_1@2.00
              rejected liability_limit
            > exposure
              sel_1 100.00 (EUR 93.50, KRW 10000)
              total 100.00
            > bet acc_4 single 16000JPY sel_4@1.90
              ok bet_3 accepted
              - trf_9 pending Stake cash:acc_4 -> house:JPY 16000
              - bet_3 placed accepted
            > bet acc_4 single 16001JPY sel_4@1.90
              rejected stake_too_high(max 16000)
            > bet acc_4 single 20000JPY sel_4@1.90
              rejected stake_too_high(max 16000)
            > bet acc_5 single 41.001BHD sel_4@1.90
              rejected stake_too_high(max 41000)
            > bet acc_3 single 85.01GBP sel_4@1.90
              rejected stake_too_high(max 8500)
            > bet acc_1 single 154KRW sel_4@1.90
              rejected stake_too_low(min 155)
            > bet acc_1 single 155KRW sel_4@1.90
              ok bet_4 accepted
              - trf_10 pending Stake cash:acc_1 -> house:KRW 155
              - bet_4 placed accepted
            > fx EUR GBP=0.85 JPY=160.00 KRW=1000 BHD=0.41
              ok done
            > exposure
              sel_1 100.00 (EUR 93.50, KRW 10000)
              sel_4 90.10 (JPY 14400, KRW 139)
              total 190.10
            > fx EUR GBP=0.85 JPY=160.00 BHD=0.41
              ok done
            > bet acc_1 single 10000KRW sel_4@1.90
              rejected fx_rate_missing
            > settle mkt_1 sel_2=win
              ok 2 bets
              - mkt_1 settled
              - trf_11 posts trf_7 Stake cash:acc_1 -> house:KRW 10000
              - bet_1 lost payout 0.00
              - trf_12 posts trf_8 Stake cash:acc_2 -> house:EUR 93.50
              - bet_2 lost payout 0.00
            > settle mkt_2 sel_5=win
              ok 2 bets
              - mkt_2 settled
              - trf_13 posts trf_9 Stake cash:acc_4 -> house:JPY 16000
              - bet_3 lost payout 0.00
              - trf_14 posts trf_10 Stake cash:acc_1 -> house:KRW 155
              - bet_4 lost payout 0.00
            > exposure
              total 0.00
            > wallet acc_1
              balance 989845 available 989845 pending_stakes 0 debt 0
            > wallet acc_4
              balance 84000 available 84000 pending_stakes 0 debt 0
        "#]],
    );
}

/// The automatic suspension threshold is in the base currency too: a small stake in a currency
/// with many minor units to the euro does not suspend a market, a EUR-sized one does.
#[test]
fn a_cheap_currency_cannot_suspend_a_market() {
    check(
        r#"
fx EUR KRW=1540.5
open KRW
open EUR
deposit acc_1 1000000KRW
deposit acc_2 500.00
event "Arsenal v Spurs" football starts=+30d
market evt_1 "1X2" Home=2.00 Draw=3.20 Away=2.80
risk mkt_1 suspend_at=100.00
bet acc_1 single 100000KRW sel_1@2.00   # ₩100,000 of liability is €64.92 (64.9139 rounded up)
exposure
bet acc_2 single 35.08 sel_1@2.00       # €35.08 more reaches €100.00: the market suspends
exposure
bet acc_1 single 1000KRW sel_2@3.20
"#,
        expect![[r#"
            > fx EUR KRW=1540.5
              ok done
            > open KRW
              ok acc_1
              - acc_1 opened KRW
            > open EUR
              ok acc_2
              - acc_2 opened EUR
            > deposit acc_1 1000000KRW
              ok trf_1
              - trf_1 posted Deposit clearing:KRW -> cash:acc_1 1000000
            > deposit acc_2 500.00
              ok trf_2
              - trf_2 posted Deposit clearing:EUR -> cash:acc_2 500.00
            > event "Arsenal v Spurs" football starts=+30d
              ok evt_1
              - evt_1 created
            > market evt_1 "1X2" Home=2.00 Draw=3.20 Away=2.80
              ok mkt_1 sel_1 sel_2 sel_3
              - mkt_1 created
            > risk mkt_1 suspend_at=100.00
              ok done
            > bet acc_1 single 100000KRW sel_1@2.00
              ok bet_1 accepted
              - trf_3 pending Stake cash:acc_1 -> house:KRW 100000
              - bet_1 placed accepted
            > exposure
              sel_1 64.92 (KRW 100000)
              total 64.92
            > bet acc_2 single 35.08 sel_1@2.00
              ok bet_2 accepted
              - trf_4 pending Stake cash:acc_2 -> house:EUR 35.08
              - mkt_1 suspended
              - bet_2 placed accepted
            > exposure
              sel_1 100.00 (EUR 35.08, KRW 100000)
              total 100.00
            > bet acc_1 single 1000KRW sel_2@3.20
              rejected market_suspended
        "#]],
    );
}

#[test]
fn reality_checks_fall_due_pause_bets_and_count_the_net_position() {
    check_setup(
        r#"
reality acc_1 5                       # below the 10 minutes minimum
reality acc_1 241                     # above the 240 minutes maximum
acknowledge acc_1                     # no interval: nothing due
reality acc_1 10
reality-check acc_1
bet acc_1 single 10.00 sel_1@2.50
bet acc_1 single 5.00 sel_4@1.90
settle mkt_1 sel_1=win sel_2=lose sel_3=lose
reality-check acc_1
time 9m
tick
acknowledge acc_1                     # not due yet
time 1m
tick                                  # ten minutes after the choice: due
reality-check acc_1
bet acc_1 single 1.00 sel_6@2.00      # paused until acknowledged
acknowledge acc_1
reality-check acc_1
bet acc_1 single 1.00 sel_6@2.00
time 20m
session acc_1                         # a login: a new session, counted from zero; still due
reality-check acc_1
bet acc_1 single 1.00 sel_6@2.00      # logging in again is no way around the pause
acknowledge acc_1
session acc_1
reality-check acc_1
reality acc_1 none
reality-check acc_1
"#,
        expect![[r#"
            > reality acc_1 5
              rejected invalid_request(reality check interval out of range)
            > reality acc_1 241
              rejected invalid_request(reality check interval out of range)
            > acknowledge acc_1
              rejected no_reality_check_due
            > reality acc_1 10
              ok done
            > reality-check acc_1
              every 10m session +0ms net 0 next in 600000ms
            > bet acc_1 single 10.00 sel_1@2.50
              ok bet_1 accepted
              - trf_2 pending Stake cash:acc_1 -> house:EUR 10.00
              - bet_1 placed accepted
            > bet acc_1 single 5.00 sel_4@1.90
              ok bet_2 accepted
              - trf_3 pending Stake cash:acc_1 -> house:EUR 5.00
              - bet_2 placed accepted
            > settle mkt_1 sel_1=win sel_2=lose sel_3=lose
              ok 1 bets
              - mkt_1 settled
              - trf_4 posts trf_2 Stake cash:acc_1 -> house:EUR 10.00
              - trf_5 posted Payout house:EUR -> cash:acc_1 25.00
              - bet_1 won payout 25.00
            > reality-check acc_1
              every 10m session +0ms net 1000 next in 600000ms
            > time 9m
            > tick
              ok done
            > acknowledge acc_1
              rejected no_reality_check_due
            > time 1m
            > tick
              ok done
              - acc_1 reality check due
            > reality-check acc_1
              every 10m session +600000ms net 1000 due
            > bet acc_1 single 1.00 sel_6@2.00
              rejected reality_check_due
            > acknowledge acc_1
              ok done
            > reality-check acc_1
              every 10m session +600000ms net 1000 next in 600000ms
            > bet acc_1 single 1.00 sel_6@2.00
              ok bet_3 accepted
              - trf_6 pending Stake cash:acc_1 -> house:EUR 1.00
              - bet_3 placed accepted
            > time 20m
            > session acc_1
              ok done
              - acc_1 reality check due
            > reality-check acc_1
              every 10m session +0ms net 0 due
            > bet acc_1 single 1.00 sel_6@2.00
              rejected reality_check_due
            > acknowledge acc_1
              ok done
            > session acc_1
              ok done
            > reality-check acc_1
              every 10m session +0ms net 0 next in 600000ms
            > reality acc_1 none
              ok done
            > reality-check acc_1
              none
        "#]],
    );
}
