//! Identifiers the book assigns. Each is a dense counter starting at 1, so state can live in
//! vectors indexed by id and replay assigns the same ids again.

use std::fmt;

macro_rules! id_type {
    ($(#[$meta:meta])* $name:ident, $prefix:literal) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(pub u64);

        impl $name {
            /// Position in the vector that stores this kind of record.
            pub fn index(self) -> usize {
                (self.0 as usize).wrapping_sub(1)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(formatter, concat!($prefix, "{}"), self.0)
            }
        }
    };
}

id_type!(
    /// A player account.
    AccountId, "acc_"
);
id_type!(
    /// A fixture.
    EventId, "evt_"
);
id_type!(
    /// A market of an event.
    MarketId, "mkt_"
);
id_type!(
    /// A selection (outcome) of a market.
    SelectionId, "sel_"
);
id_type!(
    /// A bet.
    BetId, "bet_"
);
id_type!(
    /// A ledger transfer.
    TransferId, "trf_"
);
id_type!(
    /// A ledger account (player cash, player debt, house, payment clearing).
    LedgerAccountId, "led_"
);
id_type!(
    /// An operator API key.
    ApiKeyId, "key_"
);
id_type!(
    /// A staff member (an operator's employee who logs in).
    StaffId, "stf_"
);
id_type!(
    /// A manual balance adjustment by staff.
    AdjustmentId, "adj_"
);
id_type!(
    /// A cash-out quote.
    QuoteId, "quo_"
);

/// Book time: milliseconds since the Unix epoch, stamped by the sequencer. The book never reads
/// a clock; every command is decided at the time it is given.
pub type Timestamp = u64;

pub const MILLIS_PER_SECOND: u64 = 1_000;
pub const MILLIS_PER_HOUR: u64 = 3_600 * MILLIS_PER_SECOND;
pub const MILLIS_PER_DAY: u64 = 24 * MILLIS_PER_HOUR;
