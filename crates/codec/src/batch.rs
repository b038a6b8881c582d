//! The journal record of one sequencer batch: its first command sequence number, the book time
//! the sequencer stamped, a digest of the replies it decided, and the commands.
//!
//! The journal stores commands, not their effects: the book is deterministic, so replaying the
//! commands at the stamped time rebuilds the same state, and the reply digest proves it batch by
//! batch. Events for streams and read models are derived again on replay.

use book::Command;

use crate::wire::{DecodeError, Reader, Wire};

/// Version 3: `version u8, first_sequence u64, timestamp u64, reply_digest u64, commands`.
/// Version 2 added the `SetFxRates` command; version 3 added `SetResettlementWindow`, the feed
/// items `Announce`, `Markets`, `CancelWindow` and `RollbackCancel` and feed messages without a
/// sequence (`sequence` 0, de-duplicated by content). Older batches are the same layout without
/// them, so all decode.
pub const BATCH_FORMAT_VERSION: u8 = 3;
/// The oldest batch format still decoded.
pub const BATCH_FORMAT_VERSION_MIN: u8 = 1;
/// Commands in one batch.
pub const BATCH_COMMANDS_MAX: usize = 16_384;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Batch {
    pub first_sequence: u64,
    pub timestamp: u64,
    pub reply_digest: u64,
    pub commands: Vec<Command>,
}

/// Appends the encoding of a batch to `out`.
pub fn encode_batch<'a>(
    first_sequence: u64,
    timestamp: u64,
    reply_digest: u64,
    commands: impl ExactSizeIterator<Item = &'a Command>,
    out: &mut Vec<u8>,
) {
    debug_assert!(commands.len() <= BATCH_COMMANDS_MAX);
    out.push(BATCH_FORMAT_VERSION);
    first_sequence.encode(out);
    timestamp.encode(out);
    reply_digest.encode(out);
    (commands.len() as u32).encode(out);
    for command in commands {
        command.encode(out);
    }
}

pub fn decode_batch(bytes: &[u8]) -> Result<Batch, DecodeError> {
    let mut input = Reader::new(bytes);
    let version = u8::decode(&mut input)?;
    if !(BATCH_FORMAT_VERSION_MIN..=BATCH_FORMAT_VERSION).contains(&version) {
        return Err(input.error(format!("unsupported batch format version {version}")));
    }
    let first_sequence = u64::decode(&mut input)?;
    let timestamp = u64::decode(&mut input)?;
    let reply_digest = u64::decode(&mut input)?;
    let commands: Vec<Command> = Vec::decode(&mut input)?;
    if commands.len() > BATCH_COMMANDS_MAX {
        return Err(input.error(format!("{} commands exceed the batch maximum", commands.len())));
    }
    if version < 2 && commands.iter().any(|command| matches!(command, Command::SetFxRates { .. })) {
        return Err(input.error("exchange rates in a version 1 batch"));
    }
    if version < 3 && commands.iter().any(uses_version_3_feed) {
        return Err(input.error("a version 3 feed message in an older batch"));
    }
    if version < 3 && commands.iter().any(|command| matches!(command, Command::SetResettlementWindow { .. })) {
        return Err(input.error("a resettlement window in a version 1 or 2 batch"));
    }
    input.finish()?;
    Ok(Batch { first_sequence, timestamp, reply_digest, commands })
}

/// Whether a command is a feed message only version 3 batches carry.
fn uses_version_3_feed(command: &Command) -> bool {
    let Command::Feed(message) = command else { return false };
    message.sequence == 0
        || message.items.iter().any(|item| {
            matches!(
                item,
                book::FeedItem::Announce { .. }
                    | book::FeedItem::Markets { .. }
                    | book::FeedItem::CancelWindow { .. }
                    | book::FeedItem::RollbackCancel { .. }
            )
        })
}

#[cfg(test)]
mod tests {
    use book::Command;
    use domain::{Currency, ExchangeRate};

    use super::*;

    fn with_version(version: u8, commands: &[Command]) -> Vec<u8> {
        let mut bytes = Vec::new();
        encode_batch(1, 2, 3, commands.iter(), &mut bytes);
        bytes[0] = version;
        bytes
    }

    /// Version 2 only added a command: a version 1 batch still decodes, but not one holding
    /// the new command, and unknown versions are refused.
    #[test]
    fn version_1_batches_decode_without_exchange_rates() {
        let tick = [Command::Tick];
        assert_eq!(decode_batch(&with_version(1, &tick)).expect("version 1").commands, tick);
        let rates = [Command::SetFxRates {
            base: Currency::EUR,
            rates: vec![(Currency::parse("JPY").expect("JPY"), ExchangeRate::parse("160.00").expect("rate"))],
        }];
        assert_eq!(decode_batch(&with_version(2, &rates)).expect("version 2").commands, rates);
        assert!(decode_batch(&with_version(1, &rates)).is_err());
        assert!(decode_batch(&with_version(0, &tick)).is_err());
        assert!(decode_batch(&with_version(4, &tick)).is_err());
    }

    /// Version 3 added sequence-less feed messages and new feed items: older batches holding
    /// them are refused, a version 2 batch of sequenced feed messages still decodes.
    #[test]
    fn version_2_batches_decode_without_sequence_less_feed_messages() {
        let message = |sequence: u64, items: Vec<book::FeedItem>| {
            [Command::Feed(book::FeedMessage { provider: "p".to_string(), sequence, timestamp: 5, items })]
        };
        let old = message(1, vec![book::FeedItem::SnapshotComplete]);
        assert_eq!(decode_batch(&with_version(2, &old)).expect("version 2").commands, old);
        let sequence_less = message(0, vec![book::FeedItem::SnapshotComplete]);
        assert!(decode_batch(&with_version(2, &sequence_less)).is_err());
        assert_eq!(decode_batch(&with_version(3, &sequence_less)).expect("version 3").commands, sequence_less);
        let window = message(
            7,
            vec![book::FeedItem::CancelWindow {
                event: "e".to_string(),
                market: "m".to_string(),
                from: Some(1),
                to: None,
            }],
        );
        assert!(decode_batch(&with_version(2, &window)).is_err());
        assert_eq!(decode_batch(&with_version(3, &window)).expect("version 3").commands, window);
    }

    /// Version 3 also added `SetResettlementWindow`: refused in older batches.
    #[test]
    fn version_3_batches_carry_the_resettlement_window() {
        let window = [Command::SetResettlementWindow { window_ms: 2_000 }];
        assert_eq!(decode_batch(&with_version(3, &window)).expect("version 3").commands, window);
        assert!(decode_batch(&with_version(2, &window)).is_err());
        let tick = [Command::Tick];
        assert_eq!(decode_batch(&with_version(2, &tick)).expect("version 2").commands, tick);
    }
}
