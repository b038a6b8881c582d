//! The bets the book holds (`BetStore`), open ones as `Bet`s and closed ones packed, and the
//! readers' view of them (`Bets`, from `Book::bets`).
//!
//! A bet that is no longer open (settled, cashed out, rejected) stays in the book only so that
//! a resettlement within its window can reverse it, and nothing decides by it until then. It
//! is kept packed (`pack`): every field of the bet in one allocation of variable-length
//! integers, about 60 bytes for a single against 240 for the boxed `Bet` and 112 for its legs
//! (measured: `book it memory`). The packing is lossless: `unpack` gives back the very `Bet`, so
//! snapshots (which hold every bet in full, `Bets::to_vec`) and replays are unchanged.
//!
//! The book's own code indexes full bets only (`Index`, `full`, `full_mut`): a command that may
//! change a closed bet unpacks it first (`Book::unpack_bet`, `Book::unpack_market`), and the end
//! of every command packs again whatever it unpacked or closed (`Book::pack_closed`). Readers
//! outside the book get a `Cow`: borrowed for an open bet, unpacked for a closed one.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::ops::{Index, IndexMut};

use domain::{Currency, ExchangeRate, Money, Odds, Ratio};

use crate::bet::{Bet, BetKind, BetStatus, Leg, PricePolicy, PriceTaken, Settlement, SystemKind};
use crate::catalog::{EachWayTerms, Outcome, SelectionResult};
use crate::fx::AppliedRate;
use crate::ids::{AccountId, BetId, EventId, MarketId, QuoteId, SelectionId, TransferId};
use crate::records::Records;

#[derive(Clone, Debug, Default)]
pub(crate) struct BetStore {
    full: Records<Bet>,
    /// Closed bets by index (`id - 1`), packed.
    packed: BTreeMap<usize, Box<[u8]>>,
}

impl BetStore {
    /// Every bet held, in full, and the count of ids issued; closed bets are packed.
    pub(crate) fn from_parts(issued: u64, bets: Vec<Bet>) -> BetStore {
        let mut found = BetStore {
            full: Records::from_parts(issued, Vec::new(), |bet: &Bet| bet.id.index()),
            ..BetStore::default()
        };
        for bet in bets {
            let index = bet.id.index();
            match (!bet.status.is_open()).then(|| pack_checked(&bet)).flatten() {
                Some(bytes) => {
                    found.packed.insert(index, bytes);
                }
                None => found.full.put(index, bet),
            }
        }
        found
    }

    /// How many ids were ever assigned: the next bet gets id `issued + 1`.
    pub fn issued(&self) -> u64 {
        self.full.issued()
    }

    /// How many bets are held, open and closed.
    pub fn len(&self) -> usize {
        self.full.len() + self.packed.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn contains(&self, index: usize) -> bool {
        self.full.contains(index) || self.packed.contains_key(&index)
    }

    /// True when the id was issued but the bet has left the book.
    pub fn is_forgotten(&self, index: usize) -> bool {
        self.full.is_forgotten(index) && !self.packed.contains_key(&index)
    }

    /// The bet at `index` (`id.index()`), if held: borrowed when open, unpacked when closed.
    pub fn get(&self, index: usize) -> Option<Cow<'_, Bet>> {
        if let Some(bet) = self.full.get(index) {
            return Some(Cow::Borrowed(bet));
        }
        let bytes = self.packed.get(&index)?;
        unpack(BetId(index as u64 + 1), bytes).map(Cow::Owned)
    }

    /// Every bet held, in id order (closed ones unpacked one by one).
    pub fn iter(&self) -> impl Iterator<Item = Cow<'_, Bet>> + '_ {
        self.range_from(0)
    }

    /// Bets held from `index` on, in id order.
    pub fn range_from(&self, index: usize) -> impl Iterator<Item = Cow<'_, Bet>> + '_ {
        let mut full = self.full.entries_from(index).peekable();
        let mut packed = self.packed.range(index..).peekable();
        std::iter::from_fn(move || {
            let take_full = match (full.peek(), packed.peek()) {
                (Some((a, _)), Some((b, _))) => *a < **b,
                (Some(_), None) => true,
                (None, Some(_)) => false,
                (None, None) => return None,
            };
            if take_full {
                full.next().map(|(_, bet)| Some(Cow::Borrowed(bet)))
            } else {
                packed.next().map(|(at, bytes)| unpack(BetId(*at as u64 + 1), bytes).map(Cow::Owned))
            }
        })
        .flatten()
    }

    /// Every bet held, in full and in id order (snapshots).
    pub fn to_vec(&self) -> Vec<Bet> {
        self.iter().map(Cow::into_owned).collect()
    }

    pub(crate) fn full_mut(&mut self, index: usize) -> Option<&mut Bet> {
        self.full.get_mut(index)
    }

    /// Whether the bet at `index` is held packed. An open bet is answered from `full` alone
    /// (a lookup by subtraction), never from the larger B-tree of closed ones.
    pub(crate) fn is_packed(&self, index: usize) -> bool {
        !self.full.contains(index) && self.packed.contains_key(&index)
    }

    /// Stores a new bet under the next index and returns that index.
    pub(crate) fn push(&mut self, bet: Bet) -> usize {
        self.full.push(bet)
    }

    /// Removes a bet, packed or not.
    pub(crate) fn remove(&mut self, index: usize) -> Option<Bet> {
        if let Some(bet) = self.full.remove(index) {
            return Some(bet);
        }
        let bytes = self.packed.remove(&index)?;
        unpack(BetId(index as u64 + 1), &bytes)
    }

    /// Unpacks a closed bet so that the book may change it; true when it was packed.
    pub(crate) fn unpack(&mut self, index: usize) -> bool {
        let Some(bytes) = self.packed.remove(&index) else { return false };
        match unpack(BetId(index as u64 + 1), &bytes) {
            Some(bet) => {
                self.full.put(index, bet);
                true
            }
            None => {
                // Cannot happen: the book packed these bytes itself. Keep them rather than lose the bet.
                debug_assert!(false, "a packed bet does not unpack");
                self.packed.insert(index, bytes);
                false
            }
        }
    }

    /// Packs the bet at `index` if it is held in full and no longer open.
    pub(crate) fn pack(&mut self, index: usize) {
        if self.full.get(index).is_none_or(|bet| bet.status.is_open()) {
            return;
        }
        let Some(bytes) = self.full.get(index).and_then(pack_checked) else { return };
        self.full.remove(index);
        self.packed.insert(index, bytes);
    }
}

/// The bet packed, if its packed form unpacks to the very same bet; else `None`, and the bet
/// stays in full. Readers treat a packed form that does not unpack as absent, so a bet whose
/// packing lost something (a value a constructor re-validates on the way back, a field added to
/// `Bet` and not to `pack`) would vanish from snapshots and resettlements without a word: the
/// check costs one unpack per bet closed and makes that impossible.
fn pack_checked(bet: &Bet) -> Option<Box<[u8]>> {
    let bytes = pack(bet);
    if unpack(bet.id, &bytes).as_ref() == Some(bet) {
        return Some(bytes);
    }
    // A bug in this module, not bad input: loud in tests and fuzzing; in production the bet
    // costs its full size and nothing else.
    debug_assert!(false, "bet {:?} does not survive packing", bet.id);
    None
}

impl<'a> IntoIterator for &'a BetStore {
    type Item = Cow<'a, Bet>;
    type IntoIter = Box<dyn Iterator<Item = Cow<'a, Bet>> + 'a>;

    fn into_iter(self) -> Self::IntoIter {
        Box::new(self.iter())
    }
}

impl Index<usize> for BetStore {
    type Output = Bet;

    /// An open or unpacked bet; the book unpacks a closed one before it indexes it (a bug
    /// otherwise, not bad input).
    fn index(&self, index: usize) -> &Bet {
        &self.full[index]
    }
}

impl IndexMut<usize> for BetStore {
    fn index_mut(&mut self, index: usize) -> &mut Bet {
        &mut self.full[index]
    }
}

/// The bets a book holds, for readers (`Book::bets`): every one by id or in id order, open
/// ones borrowed and closed ones unpacked.
#[derive(Clone, Copy, Debug)]
pub struct Bets<'a>(pub(crate) &'a BetStore);

impl<'a> Bets<'a> {
    /// How many ids were ever assigned: the next bet gets id `issued + 1`.
    pub fn issued(&self) -> u64 {
        self.0.issued()
    }

    /// How many bets are held, open and closed.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn contains(&self, index: usize) -> bool {
        self.0.contains(index)
    }

    /// True when the id was issued but the bet has left the book.
    pub fn is_forgotten(&self, index: usize) -> bool {
        self.0.is_forgotten(index)
    }

    /// The bet at `index` (`id.index()`), if held.
    pub fn get(&self, index: usize) -> Option<Cow<'a, Bet>> {
        self.0.get(index)
    }

    /// Every bet held, in id order.
    pub fn iter(&self) -> impl Iterator<Item = Cow<'a, Bet>> + 'a {
        self.0.iter()
    }

    /// Bets held from `index` on, in id order.
    pub fn range_from(&self, index: usize) -> impl Iterator<Item = Cow<'a, Bet>> + 'a {
        self.0.range_from(index)
    }

    /// Every bet held, in full and in id order.
    pub fn to_vec(&self) -> Vec<Bet> {
        self.0.to_vec()
    }
}

impl<'a> IntoIterator for Bets<'a> {
    type Item = Cow<'a, Bet>;
    type IntoIter = Box<dyn Iterator<Item = Cow<'a, Bet>> + 'a>;

    fn into_iter(self) -> Self::IntoIter {
        Box::new(self.0.iter())
    }
}

// ---- the packed form: LEB128 integers, zigzag for signed ones --------------------------------

const KINDS: [BetKind; 10] = [
    BetKind::Single,
    BetKind::Multiple,
    BetKind::System(SystemKind::Trixie),
    BetKind::System(SystemKind::Patent),
    BetKind::System(SystemKind::Yankee),
    BetKind::System(SystemKind::Lucky15),
    BetKind::System(SystemKind::Canadian),
    BetKind::System(SystemKind::Heinz),
    BetKind::System(SystemKind::SuperHeinz),
    BetKind::System(SystemKind::Goliath),
];
const STATUSES: [BetStatus; 9] = [
    BetStatus::Pending,
    BetStatus::Accepted,
    BetStatus::Rejected,
    BetStatus::Won,
    BetStatus::Lost,
    BetStatus::Void,
    BetStatus::HalfWon,
    BetStatus::HalfLost,
    BetStatus::CashedOut,
];
const POLICIES: [PricePolicy; 3] = [PricePolicy::None, PricePolicy::Better, PricePolicy::Any];
const TAKEN: [PriceTaken; 3] = [PriceTaken::Requested, PriceTaken::Better, PriceTaken::Changed];
const OUTCOMES: [Outcome; 4] = [Outcome::Win, Outcome::Lose, Outcome::Void, Outcome::Place];

fn position<T: PartialEq>(all: &[T], value: &T) -> u64 {
    all.iter().position(|candidate| candidate == value).unwrap_or(0) as u64
}

struct Out(Vec<u8>);

impl Out {
    fn u64(&mut self, mut value: u64) {
        while value >= 0x80 {
            self.0.push((value as u8) | 0x80);
            value >>= 7;
        }
        self.0.push(value as u8);
    }

    fn i64(&mut self, value: i64) {
        self.u64(((value << 1) ^ (value >> 63)) as u64);
    }

    /// An optional unsigned number: a 0 tag for none, else a 1 tag and the number.
    fn option(&mut self, value: Option<u64>) {
        match value {
            None => self.u64(0),
            Some(value) => {
                self.u64(1);
                self.u64(value);
            }
        }
    }

    fn ratio(&mut self, ratio: Ratio) {
        self.u64(u64::from(ratio.num()));
        self.u64(u64::from(ratio.den()));
    }
}

struct In<'a>(&'a [u8]);

impl In<'_> {
    fn u64(&mut self) -> Option<u64> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let (&byte, rest) = self.0.split_first()?;
            self.0 = rest;
            value |= u64::from(byte & 0x7f) << shift;
            if byte < 0x80 {
                return Some(value);
            }
        }
        None
    }

    fn i64(&mut self) -> Option<i64> {
        let value = self.u64()?;
        Some(((value >> 1) as i64) ^ -((value & 1) as i64))
    }

    fn u32(&mut self) -> Option<u32> {
        u32::try_from(self.u64()?).ok()
    }

    fn option(&mut self) -> Option<Option<u64>> {
        match self.u64()? {
            0 => Some(None),
            1 => self.u64().map(Some),
            _ => None,
        }
    }

    fn pick<T: Copy>(&mut self, all: &[T]) -> Option<T> {
        all.get(usize::try_from(self.u64()?).ok()?).copied()
    }

    fn ratio(&mut self) -> Option<Ratio> {
        Ratio::new(self.u32()?, self.u32()?).ok()
    }

    fn money(&mut self) -> Option<Money> {
        Some(Money::from_minor(self.i64()?))
    }
}

/// Every field of `bet` but its id (the key it is stored under).
fn pack(bet: &Bet) -> Box<[u8]> {
    let mut out = Out(Vec::with_capacity(64 + 40 * bet.legs.len()));
    out.u64(bet.account.0);
    out.u64(position(&KINDS, &bet.kind));
    out.u64(u64::from(bet.each_way));
    out.i64(bet.stake_per_line.minor());
    out.u64(u64::from(bet.line_count));
    out.i64(bet.total_stake.minor());
    out.i64(bet.potential_payout.minor());
    out.u64(position(&POLICIES, &bet.policy));
    out.u64(position(&STATUSES, &bet.status));
    out.u64(position(&STATUSES, &bet.placed_status));
    out.u64(bet.placed_at);
    out.option(bet.delay_until);
    out.option(bet.hold.map(|hold| hold.0));
    match &bet.settlement {
        None => out.u64(0),
        Some(settlement) => {
            out.u64(1);
            out.i64(settlement.payout.minor());
            out.u64(settlement.stake_posted.0);
            out.option(settlement.payout_transfer.map(|payout| payout.0));
            out.u64(settlement.at);
        }
    }
    out.u64(u64::from(bet.settlement_count));
    // A rejection code is one of the book's stable codes: stored by its place in `CODES`.
    out.option(bet.rejection.map(|code| position(crate::rejection::CODES, &code)));
    out.option(bet.cashout_quote.map(|quote| quote.0));
    out.0.extend_from_slice(bet.fx.base.code().as_bytes());
    out.u64(bet.fx.version);
    out.u64(bet.fx.rate.mantissa());
    out.u64(u64::from(bet.fx.rate.scale()));
    out.u64(bet.legs.len() as u64);
    for leg in &bet.legs {
        out.u64(leg.selection.0);
        out.u64(leg.market.0);
        out.u64(leg.event.0);
        out.u64(u64::from(leg.requested.scaled()));
        out.u64(u64::from(leg.odds.scaled()));
        out.u64(leg.price_version);
        out.u64(position(&TAKEN, &leg.taken));
        match leg.each_way {
            None => out.u64(0),
            Some(terms) => {
                out.u64(1);
                out.u64(u64::from(terms.places));
                out.ratio(terms.fraction);
            }
        }
        match leg.result {
            None => out.u64(0),
            Some(result) => {
                out.u64(1);
                out.u64(result.selection.0);
                out.u64(position(&OUTCOMES, &result.outcome));
                out.ratio(result.dead_heat);
                out.ratio(result.void_factor);
            }
        }
    }
    out.0.into_boxed_slice()
}

/// The bet `pack` packed; `None` only for bytes `pack` did not write.
fn unpack(id: BetId, bytes: &[u8]) -> Option<Bet> {
    let mut input = In(bytes);
    let account = AccountId(input.u64()?);
    let kind = input.pick(&KINDS)?;
    let each_way = input.u64()? != 0;
    let stake_per_line = input.money()?;
    let line_count = input.u32()?;
    let total_stake = input.money()?;
    let potential_payout = input.money()?;
    let policy = input.pick(&POLICIES)?;
    let status = input.pick(&STATUSES)?;
    let placed_status = input.pick(&STATUSES)?;
    let placed_at = input.u64()?;
    let delay_until = input.option()?;
    let hold = input.option()?.map(TransferId);
    let settlement = match input.u64()? {
        0 => None,
        _ => Some(Settlement {
            payout: input.money()?,
            stake_posted: TransferId(input.u64()?),
            payout_transfer: input.option()?.map(TransferId),
            at: input.u64()?,
        }),
    };
    let settlement_count = input.u32()?;
    let rejection = match input.option()? {
        None => None,
        Some(code) => Some(*crate::rejection::CODES.get(usize::try_from(code).ok()?)?),
    };
    let cashout_quote = input.option()?.map(QuoteId);
    let (code, rest) = input.0.split_at_checked(3)?;
    input.0 = rest;
    let base = Currency::parse(std::str::from_utf8(code).ok()?).ok()?;
    let version = input.u64()?;
    let rate = ExchangeRate::new(input.u64()?, u8::try_from(input.u64()?).ok()?).ok()?;
    let leg_count = usize::try_from(input.u64()?).ok()?;
    let mut legs = Vec::with_capacity(leg_count.min(crate::constants::LEGS_MAX));
    for _ in 0..leg_count {
        let selection = SelectionId(input.u64()?);
        let market = MarketId(input.u64()?);
        let event = EventId(input.u64()?);
        let requested = Odds::from_scaled(input.u32()?).ok()?;
        let odds = Odds::from_scaled(input.u32()?).ok()?;
        let price_version = input.u64()?;
        let taken = input.pick(&TAKEN)?;
        let each_way = match input.u64()? {
            0 => None,
            _ => Some(EachWayTerms { places: input.u32()?, fraction: input.ratio()? }),
        };
        let result = match input.u64()? {
            0 => None,
            _ => Some(SelectionResult {
                selection: SelectionId(input.u64()?),
                outcome: input.pick(&OUTCOMES)?,
                dead_heat: input.ratio()?,
                void_factor: input.ratio()?,
            }),
        };
        legs.push(Leg { selection, market, event, requested, odds, price_version, taken, each_way, result });
    }
    if !input.0.is_empty() {
        return None;
    }
    Some(Bet {
        id,
        account,
        kind,
        legs,
        each_way,
        stake_per_line,
        line_count,
        total_stake,
        potential_payout,
        policy,
        status,
        placed_status,
        placed_at,
        delay_until,
        hold,
        settlement,
        settlement_count,
        rejection,
        cashout_quote,
        fx: AppliedRate { base, version, rate },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers_round_trip_at_their_limits() {
        let values = [0u64, 1, 127, 128, 16_383, 16_384, u64::from(u32::MAX), u64::MAX - 1, u64::MAX];
        let signed = [0i64, 1, -1, 63, -64, 64, i64::MAX, i64::MIN];
        let mut out = Out(Vec::new());
        values.iter().for_each(|value| out.u64(*value));
        signed.iter().for_each(|value| out.i64(*value));
        let mut input = In(&out.0);
        for value in values {
            assert_eq!(input.u64(), Some(value));
        }
        for value in signed {
            assert_eq!(input.i64(), Some(value));
        }
        assert!(input.0.is_empty());
        assert_eq!(In(&[0x80, 0x80]).u64(), None, "a cut integer");
    }

    /// Every field a bet can carry comes back from its packed form, field for field.
    #[test]
    fn a_packed_bet_unpacks_to_the_same_bet() {
        let ratio = |num, den| Ratio::new(num, den).expect("a ratio");
        let leg = |n: u64, result: Option<SelectionResult>| Leg {
            selection: SelectionId(n),
            market: MarketId(n + 100),
            event: EventId(n + 1_000),
            requested: Odds::from_scaled(25_000).expect("odds"),
            odds: Odds::from_scaled(27_500).expect("odds"),
            price_version: 1 << 40,
            taken: PriceTaken::Better,
            each_way: Some(EachWayTerms { places: 3, fraction: ratio(1, 5) }),
            result,
        };
        let result = SelectionResult {
            selection: SelectionId(7),
            outcome: Outcome::Place,
            dead_heat: ratio(1, 3),
            void_factor: ratio(1, 2),
        };
        let bet = Bet {
            id: BetId(42),
            account: AccountId(u64::MAX),
            kind: BetKind::System(SystemKind::Goliath),
            legs: vec![leg(7, Some(result)), leg(8, None)],
            each_way: true,
            stake_per_line: Money::from_minor(-5),
            line_count: 247,
            total_stake: Money::from_minor(domain::MONEY_MINOR_MAX),
            potential_payout: Money::from_minor(-domain::MONEY_MINOR_MAX),
            policy: PricePolicy::Any,
            status: BetStatus::HalfLost,
            placed_status: BetStatus::Pending,
            placed_at: 1_767_225_600_123,
            delay_until: Some(1_767_225_605_000),
            hold: None,
            settlement: Some(Settlement {
                payout: Money::from_minor(1),
                stake_posted: TransferId(9),
                payout_transfer: Some(TransferId(10)),
                at: u64::MAX,
            }),
            settlement_count: 3,
            rejection: Some("market_closed"),
            cashout_quote: Some(QuoteId(5)),
            fx: AppliedRate {
                base: Currency::parse("GBP").expect("GBP"),
                version: 2,
                rate: ExchangeRate::new(85, 2).expect("a rate"),
            },
        };
        assert_eq!(unpack(bet.id, &pack(&bet)), Some(bet.clone()));
        let plain = Bet { legs: vec![leg(1, None)], rejection: None, settlement: None, cashout_quote: None, ..bet };
        assert_eq!(unpack(plain.id, &pack(&plain)), Some(plain.clone()));
        let packed = pack(&plain);
        assert_eq!(unpack(plain.id, &packed[..packed.len() - 1]), None, "cut short");
    }
}
