//! A tiny script language for data-driven book tests: one command per line in, the reply and
//! the events out, as text to compare with an `expect!` snapshot. The invariants of the whole
//! book are checked after every line.
//!
//! ```text
//! open EUR                                   # acc_1
//! deposit acc_1 100.00 key=k1
//! event "Derby" football starts=+2h          # evt_1
//! market evt_1 "1X2" Home=2.50 Draw=3.20 Away=2.80 ew=3@1/4
//! bet acc_1 single 10 sel_1@2.50 policy=better key=b1
//! settle mkt_1 sel_1=win sel_2=lose/dh=1/2/vf=1/2
//! time +5s
//! ```

use book::{
    AccountId, AccountKind, Ack, BetId, BetKind, Book, BookEvent, Command, Config, EachWayTerms, EventId, Idempotency,
    LegRequest, LimitChange, LimitKind, MarketAction, MarketId, MarketRiskChange, NewSelection, Outcome, Period,
    PlaceBet, PricePolicy, QuoteId, ResultRequest, SelectionId, SystemKind, Timestamp, TransferId, TransferKind,
};
use domain::{Currency, Money, Odds, Ratio};

/// 2026-11-25T12:00:00Z.
pub const START: Timestamp = 1_795_608_000_000;

pub struct Script {
    pub book: Book,
    pub now: Timestamp,
    output: String,
}

impl Default for Script {
    fn default() -> Script {
        Script::new(Config::default())
    }
}

/// Runs a script on a fresh book and returns its transcript.
pub fn run(script: &str) -> String {
    let mut runner = Script::default();
    runner.run(script);
    runner.output
}

fn id(text: &str, prefix: &str) -> u64 {
    text.strip_prefix(prefix)
        .and_then(|digits| digits.parse().ok())
        .unwrap_or_else(|| panic!("expected {prefix}N, got {text:?}"))
}

/// An amount in EUR (`"10.00"`), or in the currency written after it (`"20000JPY"`).
fn money(text: &str) -> Money {
    let (amount, currency) = match text.len().checked_sub(3).map(|at| text.split_at(at)) {
        Some((amount, code)) if code.bytes().all(|byte| byte.is_ascii_uppercase()) => {
            (amount, Currency::parse(code).unwrap_or_else(|_| panic!("unknown currency in {text:?}")))
        }
        _ => (text, Currency::EUR),
    };
    currency.parse_amount(amount).unwrap_or_else(|error| panic!("bad amount {text:?}: {error}"))
}

fn show(amount: Money) -> String {
    Currency::EUR.format(amount)
}

fn duration(text: &str) -> Timestamp {
    let text = text.strip_prefix('+').unwrap_or(text);
    let (number, unit) = text.split_at(text.len() - 1);
    let number: u64 = number.parse().unwrap_or_else(|_| panic!("bad duration {text:?}"));
    number
        * match unit {
            "s" => 1_000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            _ => panic!("bad duration unit in {text:?}"),
        }
}

/// Splits a line into words, keeping "quoted strings" whole.
fn words(line: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut current = String::new();
    let mut quoted = false;
    for character in line.chars() {
        match character {
            '"' => quoted = !quoted,
            ' ' if !quoted => {
                if !current.is_empty() {
                    words.push(std::mem::take(&mut current));
                }
            }
            _ => current.push(character),
        }
    }
    if !current.is_empty() {
        words.push(current);
    }
    words
}

/// `key=value` options after the positional words.
fn option<'a>(words: &'a [String], key: &str) -> Option<&'a str> {
    words.iter().find_map(|word| word.strip_prefix(key).and_then(|rest| rest.strip_prefix('=')))
}

fn key(words: &[String], body: &str) -> Option<Idempotency> {
    option(words, "key").map(|key| Idempotency { key: key.to_string(), body_hash: fnv(body) })
}

/// The body hash of an idempotent command: here simply its text without the key.
fn fnv(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325u64, |hash, byte| (hash ^ u64::from(byte)).wrapping_mul(0x100_0000_01b3))
}

impl Script {
    pub fn new(config: Config) -> Script {
        Script { book: Book::new(config), now: START, output: String::new() }
    }

    /// The transcript so far.
    pub fn output(&self) -> &str {
        &self.output
    }

    pub fn run(&mut self, script: &str) {
        for line in script.lines() {
            let line = line.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            self.output.push_str(&format!("> {line}\n"));
            if line == "----" {
                continue;
            }
            self.line(line);
            if let Err(violation) = self.book.check_invariants() {
                panic!("invariant broken after {line:?}: {violation}\n{}", self.output);
            }
        }
    }

    fn line(&mut self, line: &str) {
        let words = words(line);
        let body: String = words.iter().filter(|word| !word.starts_with("key=")).cloned().collect::<Vec<_>>().join(" ");
        let command = match words[0].as_str() {
            "time" => {
                self.now += duration(&words[1]);
                return;
            }
            "wallet" => {
                let account = AccountId(id(&words[1], "acc_"));
                let wallet = self.book.wallet(account).expect("wallet of a known account");
                let show = |amount: Money| wallet.currency.format(amount);
                self.output.push_str(&format!(
                    "  balance {} available {} pending_stakes {} debt {}\n",
                    show(wallet.balance),
                    show(wallet.available),
                    show(wallet.pending_stakes),
                    show(wallet.debt)
                ));
                return;
            }
            "exposure" => {
                // In the base currency; the per-currency amounts when any bet is in another.
                let base = self.book.fx().base;
                for selection in self.book.selections().iter().filter(|s| s.liability.minor() != 0) {
                    let by_currency = if selection.liabilities.iter().all(|(currency, _)| *currency == base) {
                        String::new()
                    } else {
                        let amounts: Vec<String> = selection
                            .liabilities
                            .iter()
                            .map(|(currency, amount)| format!("{currency} {}", currency.format(*amount)))
                            .collect();
                        format!(" ({})", amounts.join(", "))
                    };
                    self.output.push_str(&format!("  {} {}{by_currency}\n", selection.id, show(selection.liability)));
                }
                self.output.push_str(&format!("  total {}\n", show(Money::from_minor(self.book.exposure()))));
                return;
            }
            "reality-check" => {
                let account = AccountId(id(&words[1], "acc_"));
                let line = match self.book.reality_checks().get(account) {
                    None => "  none\n".to_string(),
                    Some(check) => format!(
                        "  every {}m session +{}ms net {} {}\n",
                        check.interval_minutes,
                        self.now - check.session_started_at,
                        check.net_minor,
                        match check.next_due_at {
                            Some(due) => format!("next in {}ms", due - self.now),
                            None => "due".to_string(),
                        }
                    ),
                };
                self.output.push_str(&line);
                return;
            }
            "show" => {
                let bet = self.book.bet(BetId(id(&words[1], "bet_"))).expect("known bet");
                let legs: Vec<String> = bet
                    .legs
                    .iter()
                    .map(|leg| format!("{}@{}({})", leg.selection, leg.odds, leg.taken.as_str()))
                    .collect();
                self.output.push_str(&format!(
                    "  {} {} stake {} total {} potential {} legs {}{}\n",
                    bet.id,
                    bet.status.as_str(),
                    show(bet.stake_per_line),
                    show(bet.total_stake),
                    show(bet.potential_payout),
                    legs.join(" "),
                    bet.settlement.map(|s| format!(" paid {}", show(s.payout))).unwrap_or_default(),
                ));
                return;
            }
            "open" => Command::OpenAccount { currency: Currency::parse(&words[1]).expect("currency") },
            "register" => Command::RegisterPlayer {
                username: words[1].clone(),
                password_hash: "$argon2id$test".to_string(),
                date_of_birth: domain::Date::parse(&words[2]).expect("date of birth"),
                country: words[3].clone(),
                currency: Currency::EUR,
            },
            "apikey" => Command::CreateApiKey {
                name: words[1].clone(),
                key_hash: words[2].clone(),
                scopes: words[3].parse().expect("scope bits"),
            },
            "revoke" => Command::RevokeApiKey { key: book::ApiKeyId(id(&words[1], "key_")) },
            // `staff NAME SECRET ROLE_BITS`: the password hash is a placeholder (made at the edge).
            "staff" => Command::CreateStaff {
                username: words[1].clone(),
                password_hash: "$argon2id$placeholder".to_string(),
                totp_secret: words[2].clone(),
                roles: words[3].parse().expect("role bits"),
            },
            "disable" => Command::DisableStaff { staff: book::StaffId(id(&words[1], "stf_")) },
            "deposit" => Command::Deposit {
                account: AccountId(id(&words[1], "acc_")),
                amount: money(&words[2]),
                // A fresh reference unless the line names one: each payment credits once.
                payment_ref: option(&words, "ref")
                    .map_or_else(|| format!("psp-{}", self.book.ledger().transfers().len() + 1), str::to_string),
                idempotency: key(&words, &body),
            },
            "withdraw" => Command::Withdraw {
                account: AccountId(id(&words[1], "acc_")),
                amount: money(&words[2]),
                idempotency: key(&words, &body),
            },
            "complete" => Command::CompleteWithdrawal {
                account: AccountId(id(&words[1], "acc_")),
                withdrawal: TransferId(id(&words[2], "trf_")),
                paid: words[3] == "paid",
            },
            "limits" => Command::SetLimits {
                account: AccountId(id(&words[1], "acc_")),
                changes: words[2..]
                    .iter()
                    .map(|word| {
                        let (name, value) = word.split_once('=').expect("kind.period=value");
                        let (kind, period) = name.split_once('.').expect("kind.period");
                        let kind = LimitKind::ALL.into_iter().find(|k| k.as_str() == kind).expect("limit kind");
                        let period = Period::ALL.into_iter().find(|p| p.as_str() == period).expect("period");
                        let value = if value == "none" { None } else { Some(money(value)) };
                        LimitChange { kind, period, value }
                    })
                    .collect(),
            },
            "timeout" => {
                Command::TimeOut { account: AccountId(id(&words[1], "acc_")), hours: words[2].parse().expect("hours") }
            }
            "reality" => Command::SetRealityCheck {
                account: AccountId(id(&words[1], "acc_")),
                interval_minutes: (words[2] != "none").then(|| words[2].parse().expect("minutes")),
            },
            "session" => Command::StartSession { account: AccountId(id(&words[1], "acc_")) },
            "acknowledge" => Command::AcknowledgeRealityCheck { account: AccountId(id(&words[1], "acc_")) },
            "exclude" => Command::SelfExclude {
                account: AccountId(id(&words[1], "acc_")),
                days: words[2].parse().expect("days"),
            },
            "account-risk" => Command::SetAccountRisk {
                account: AccountId(id(&words[1], "acc_")),
                stake_factor: option(&words, "factor").map(|f| Ratio::parse(f).expect("factor")),
                frozen: option(&words, "frozen").map(|f| f == "true"),
            },
            "event" => Command::CreateEvent {
                name: words[1].clone(),
                sport: words[2].clone(),
                competition: option(&words, "competition").unwrap_or("").to_string(),
                starts_at: self.now + option(&words, "starts").map_or(2 * 3_600_000, duration),
            },
            "market" => Command::CreateMarket {
                event: EventId(id(&words[1], "evt_")),
                name: words[2].clone(),
                kind: option(&words, "kind").unwrap_or("").to_string(),
                selections: words[3..]
                    .iter()
                    .filter(|word| !word.starts_with("ew=") && !word.starts_with("kind="))
                    .map(|word| {
                        let (name, price) = word.split_once('=').expect("name=price");
                        NewSelection { name: name.to_string(), price: Odds::parse(price).expect("odds") }
                    })
                    .collect(),
                each_way: option(&words, "ew").map(|terms| {
                    let (places, fraction) = terms.split_once('@').expect("places@fraction");
                    EachWayTerms {
                        places: places.parse().expect("places"),
                        fraction: Ratio::parse(fraction).expect("fraction"),
                    }
                }),
            },
            "price" => Command::SetPrices {
                market: MarketId(id(&words[1], "mkt_")),
                prices: words[2..]
                    .iter()
                    .map(|word| {
                        let (selection, price) = word.split_once('=').expect("sel=price");
                        (SelectionId(id(selection, "sel_")), Odds::parse(price).expect("odds"))
                    })
                    .collect(),
            },
            "suspend" | "resume" | "close" => Command::SetMarketStatus {
                market: MarketId(id(&words[1], "mkt_")),
                action: match words[0].as_str() {
                    "suspend" => MarketAction::Suspend,
                    "resume" => MarketAction::Resume,
                    _ => MarketAction::Close,
                },
            },
            "inplay" => Command::SetInPlay {
                event: EventId(id(&words[1], "evt_")),
                bet_delay_seconds: option(&words, "delay").map_or(0, |d| d.parse().expect("delay")),
            },
            "end" => Command::EndEvent { event: EventId(id(&words[1], "evt_")) },
            "risk" => {
                let money_option =
                    |name: &str| option(&words, name).map(|v| if v == "none" { None } else { Some(money(v)) });
                Command::SetMarketRisk {
                    market: MarketId(id(&words[1], "mkt_")),
                    change: MarketRiskChange {
                        max_stake: money_option("max_stake"),
                        liability_cap: money_option("liability_cap"),
                        selection_liability_cap: money_option("selection_cap"),
                        suspend_at_liability: money_option("suspend_at"),
                        in_play_delay_seconds: option(&words, "delay").map(|d| Some(d.parse().expect("delay"))),
                        max_payout: money_option("max_payout"),
                    },
                }
            }
            "bet" => {
                let kind = match words[2].as_str() {
                    "single" => BetKind::Single,
                    "multiple" => BetKind::Multiple,
                    other => BetKind::System(SystemKind::parse(other).expect("bet kind")),
                };
                let legs = words[4..]
                    .iter()
                    .filter(|word| word.starts_with("sel_"))
                    .map(|word| {
                        let (selection, price) = word.split_once('@').expect("sel@price");
                        LegRequest {
                            selection: SelectionId(id(selection, "sel_")),
                            price: Odds::parse(price).expect("odds"),
                        }
                    })
                    .collect();
                Command::PlaceBet(PlaceBet {
                    account: AccountId(id(&words[1], "acc_")),
                    kind,
                    legs,
                    stake: money(&words[3]),
                    each_way: words.iter().any(|w| w == "ew"),
                    policy: match option(&words, "policy").unwrap_or("none") {
                        "better" => PricePolicy::Better,
                        "any" => PricePolicy::Any,
                        _ => PricePolicy::None,
                    },
                    idempotency: key(&words, &body),
                })
            }
            "quote" => {
                Command::QuoteCashout { account: AccountId(id(&words[1], "acc_")), bet: BetId(id(&words[2], "bet_")) }
            }
            "cashout" => Command::AcceptCashout {
                account: AccountId(id(&words[1], "acc_")),
                bet: BetId(id(&words[2], "bet_")),
                quote: QuoteId(id(&words[3], "quo_")),
                idempotency: key(&words, &body),
            },
            "settle" => Command::SettleMarket {
                market: MarketId(id(&words[1], "mkt_")),
                results: words[2..]
                    .iter()
                    .map(|word| {
                        // sel_1=win or sel_1=win/dh=1/3/vf=1/2
                        let (selection, rest) = word.split_once('=').expect("sel=outcome");
                        let mut parts = rest.split('/');
                        let outcome = match parts.next().expect("outcome") {
                            "win" => Outcome::Win,
                            "lose" => Outcome::Lose,
                            "void" => Outcome::Void,
                            "place" => Outcome::Place,
                            other => panic!("bad outcome {other}"),
                        };
                        let remainder: Vec<&str> = parts.collect();
                        let factor = |name: &str| {
                            remainder.iter().position(|part| part.starts_with(name)).map(|index| {
                                let value = remainder[index].split_once('=').expect("factor=value").1;
                                let value = match remainder.get(index + 1) {
                                    Some(den) if !den.contains('=') => format!("{value}/{den}"),
                                    _ => value.to_string(),
                                };
                                Ratio::parse(&value).expect("factor")
                            })
                        };
                        ResultRequest {
                            selection: SelectionId(id(selection, "sel_")),
                            outcome,
                            dead_heat: factor("dh"),
                            void_factor: factor("vf"),
                        }
                    })
                    .collect(),
            },
            "unsettle" => Command::UnsettleMarket { market: MarketId(id(&words[1], "mkt_")) },
            "void" => Command::VoidMarket { market: MarketId(id(&words[1], "mkt_")) },
            "tick" => Command::Tick,
            // idempotency-window 60000
            "idempotency-window" => {
                Command::SetIdempotencyWindow { window_ms: words[1].parse().expect("milliseconds") }
            }
            // fx EUR JPY=160.00 KRW=1540.5
            "fx" => Command::SetFxRates {
                base: Currency::parse(&words[1]).expect("base currency"),
                rates: words[2..]
                    .iter()
                    .map(|word| {
                        let (code, rate) = word.split_once('=').expect("CODE=rate");
                        (
                            Currency::parse(code).expect("currency"),
                            domain::ExchangeRate::parse(rate).expect("exchange rate"),
                        )
                    })
                    .collect(),
            },
            other => panic!("unknown script command {other:?}"),
        };
        let mut events = Vec::new();
        let reply = self.book.apply(self.now, &command, &mut events);
        let rendered = match reply {
            Ok(ack) => format!("  ok {}\n", self.ack(&ack)),
            Err(rejection) => format!("  rejected {rejection}\n"),
        };
        self.output.push_str(&rendered);
        for event in &events {
            // The monitor's alerts and cases have tests of their own (`monitor.rs`); the
            // scenarios' transcripts show what the rules they test do.
            if matches!(event, BookEvent::Alert(_) | BookEvent::CaseActed { .. } | BookEvent::CaseChanged(_)) {
                continue;
            }
            let line = self.event(event);
            self.output.push_str(&format!("  - {line}\n"));
        }
    }

    fn ack(&self, ack: &Ack) -> String {
        match ack {
            Ack::AccountOpened(account) => account.to_string(),
            Ack::ApiKeyCreated(key) => key.to_string(),
            Ack::StaffCreated(staff) => staff.to_string(),
            Ack::Transfer(transfer) => transfer.to_string(),
            Ack::EventCreated(event) => event.to_string(),
            Ack::MarketCreated { market, selections } => {
                format!("{market} {}", selections.iter().map(ToString::to_string).collect::<Vec<_>>().join(" "))
            }
            Ack::BetPlaced { bet, status } => format!("{bet} {}", status.as_str()),
            Ack::CashoutQuote { quote, amount, expires_at } => {
                format!("{quote} {} expires +{}ms", show(*amount), expires_at - self.now)
            }
            Ack::CashedOut { bet, amount } => format!("{bet} cashed out {}", show(*amount)),
            Ack::Settled { bets } => format!("{bets} bets"),
            Ack::Done => "done".to_string(),
            Ack::Feed(applied) => format!(
                "feed duplicate={} applied={} stale={} ignored={}",
                applied.duplicate,
                applied.applied,
                applied.stale,
                applied.ignored.len()
            ),
            Ack::AdjustmentCompleted { adjustment, transfer } => format!("{adjustment} completed {transfer}"),
            Ack::AdjustmentPending { adjustment, expires_at } => {
                format!("{adjustment} pending expires +{}ms", expires_at - self.now)
            }
        }
    }

    fn ledger_account(&self, id: book::LedgerAccountId) -> String {
        let account = self.book.ledger().account(id);
        match account.kind {
            AccountKind::PlayerCash(player) => format!("cash:{player}"),
            AccountKind::PlayerDebt(player) => format!("debt:{player}"),
            AccountKind::House => format!("house:{}", account.currency),
            AccountKind::PaymentClearing => format!("clearing:{}", account.currency),
            AccountKind::Adjustments => format!("operator:adjustments:{}", account.currency),
        }
    }

    fn event(&self, event: &BookEvent) -> String {
        match event {
            BookEvent::AccountOpened { account, currency } => format!("{account} opened {currency}"),
            BookEvent::Transferred(transfer) => {
                let kind = match transfer.kind {
                    TransferKind::Posted => "posted".to_string(),
                    TransferKind::Pending => "pending".to_string(),
                    TransferKind::PostPending(id) => format!("posts {id}"),
                    TransferKind::VoidPending(id) => format!("voids {id}"),
                };
                format!(
                    "{} {kind} {:?} {} -> {} {}",
                    transfer.id,
                    transfer.code,
                    self.ledger_account(transfer.debit),
                    self.ledger_account(transfer.credit),
                    self.book.ledger().account(transfer.debit).currency.format(transfer.amount)
                )
            }
            BookEvent::EventCreated { event } => format!("{event} created"),
            BookEvent::EventStateChanged { event, state } => format!("{event} {state:?}"),
            BookEvent::MarketCreated { market } => format!("{market} created"),
            BookEvent::MarketStatusChanged { market, status } => format!("{market} {}", status.as_str()),
            BookEvent::PriceChanged { selection, price, version, .. } => {
                format!("{selection} price {price} v{version}")
            }
            BookEvent::BetPlaced { bet, status, .. } => format!("{bet} placed {}", status.as_str()),
            BookEvent::BetStatusChanged { bet, status, payout, .. } => {
                format!("{bet} {} payout {}", status.as_str(), show(*payout))
            }
            BookEvent::AccountRestricted { account } => format!("{account} restricted"),
            BookEvent::ApiKeysChanged => "api keys changed".to_string(),
            BookEvent::StaffChanged => "staff changed".to_string(),
            BookEvent::IdempotentReplay { account } => format!("{account} replayed an idempotent command"),
            BookEvent::LimitsChanged { account } => format!("{account} limits changed"),
            BookEvent::RealityCheckDue { account } => format!("{account} reality check due"),
            BookEvent::Alert(alert) => format!("{} {} {}", alert.id, alert.account, alert.rule.as_str()),
            BookEvent::CaseActed { case, action, .. } => format!("{case} {}", action.action.as_str()),
            BookEvent::CaseChanged(summary) => format!("{} {}", summary.id, summary.status.as_str()),
        }
    }
}
