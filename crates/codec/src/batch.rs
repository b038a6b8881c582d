//! The journal record of one sequencer batch: its first command sequence number, the book time
//! the sequencer stamped, a digest of the replies it decided, and the commands.
//!
//! The journal stores commands, not their effects: the book is deterministic, so replaying the
//! commands at the stamped time rebuilds the same state, and the reply digest proves it batch by
//! batch. Events for streams and read models are derived again on replay.

use book::Command;

use crate::wire::{DecodeError, Reader, Wire};

/// Version 3: `version u8, first_sequence u64, timestamp u64, reply_digest u64, commands`.
/// Version 2 added the `SetFxRates` command and version 3 `SetResettlementWindow`; older
/// batches are the same layout without them, so all three decode.
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
    if version < 3 && commands.iter().any(|command| matches!(command, Command::SetResettlementWindow { .. })) {
        return Err(input.error("a resettlement window in a version 1 or 2 batch"));
    }
    input.finish()?;
    Ok(Batch { first_sequence, timestamp, reply_digest, commands })
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

    /// Version 3 only added `SetResettlementWindow`: refused in older batches.
    #[test]
    fn version_3_batches_carry_the_resettlement_window() {
        let window = [Command::SetResettlementWindow { window_ms: 2_000 }];
        assert_eq!(decode_batch(&with_version(3, &window)).expect("version 3").commands, window);
        assert!(decode_batch(&with_version(2, &window)).is_err());
        let tick = [Command::Tick];
        assert_eq!(decode_batch(&with_version(2, &tick)).expect("version 2").commands, tick);
    }
}
