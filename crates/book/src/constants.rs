//! Every limit of the book in one place. Each collection, batch and string has a `*_MAX`; the
//! relations between them are checked at compile time.

/// Legs of a multiple (accumulator). A system bet's legs are fixed by its kind (at most 8).
pub const LEGS_MAX: usize = 20;
/// Selections of one market.
pub const SELECTIONS_PER_MARKET_MAX: usize = 64;
/// Markets of one event.
pub const MARKETS_PER_EVENT_MAX: usize = 512;
/// Bytes of a name (event, market, selection, sport, competition) or a payment reference.
pub const NAME_BYTES_MAX: usize = 200;
/// Bytes of an idempotency key.
pub const IDEMPOTENCY_KEY_BYTES_MAX: usize = 128;
/// Lines of the largest system bet (a goliath: 247 lines), doubled for each-way.
pub const LINES_MAX: usize = 2 * 247;
/// Hours of a time-out.
pub const TIME_OUT_HOURS_MAX: u32 = 24 * 42;
/// Days of a self-exclusion (five years and a leap day).
pub const SELF_EXCLUSION_DAYS_MAX: u32 = 5 * 365 + 1;
/// Days of the shortest self-exclusion the book accepts (six months, UKGC LCCP 3.5).
pub const SELF_EXCLUSION_DAYS_MIN: u32 = 182;
/// In-play bet delay.
pub const BET_DELAY_SECONDS_MAX: u32 = 60;
/// Results of one settlement command.
pub const RESULTS_MAX: usize = SELECTIONS_PER_MARKET_MAX;

const _: () = assert!(LEGS_MAX >= 8, "the largest system bet (goliath) has 8 legs");
const _: () = assert!(RESULTS_MAX >= SELECTIONS_PER_MARKET_MAX);
/// The highest acceptance throttle of a market, in bets a second.
pub const MARKET_BETS_PER_SECOND_MAX: u32 = 1_000_000;
/// Items in one feed message (an odds change for every market of an event fits).
pub const FEED_ITEMS_MAX: usize = 1024;
/// How many sequences below the highest the book remembers per provider; older ones are
/// treated as duplicates.
pub const FEED_WINDOW: u64 = 128;
/// Content digests of sequence-less feed messages (a UOF feed has no sequence) the book
/// remembers per provider: a message whose digest is among them is a duplicate.
pub const FEED_DIGESTS_MAX: usize = 4096;
/// Cancellation windows (`bet_cancel` with `start_time`/`end_time`) in force on one market.
pub const FEED_CANCEL_WINDOWS_MAX: usize = 64;
/// The bet delay of a market whose feed is stale in `delay` mode, pre-match or in play.
pub const FEED_DELAYED_BET_DELAY_SECONDS: u32 = 5;

// ---- free text: every string a command carries has a named limit, checked by the gateway
// before the book (so a refused request never reaches the journal) and by the book again.

/// Bytes of a payment provider's reference of a deposit (at least 1).
pub const PAYMENT_REF_BYTES_MAX: usize = 200;
/// Bytes of a reason an operator gives (resolving a payment, settling, voiding ...).
pub const REASON_BYTES_MAX: usize = 500;
/// Bytes of an operator API key's name.
pub const API_KEY_NAME_BYTES_MAX: usize = NAME_BYTES_MAX;
/// Bytes of a feed provider's id, and of the provider's ids of events, markets and outcomes.
pub const FEED_ID_BYTES_MAX: usize = NAME_BYTES_MAX;
const _: () = assert!(PAYMENT_REF_BYTES_MAX <= NAME_BYTES_MAX);
