//! The journal record of one sequencer batch: its first command sequence number, the book time
//! the sequencer stamped, a digest of the replies it decided, and the commands, each with its
//! origin (who submitted it, and why when they said).
//!
//! The journal stores commands, not their effects: the book is deterministic, so replaying the
//! commands at the stamped time rebuilds the same state, and the reply digest proves it batch by
//! batch. Events for streams and read models are derived again on replay.

use book::{Command, Origin};

use crate::wire::{DecodeError, Reader, Wire};

/// Version 4: `version u8, first_sequence u64, timestamp u64, reply_digest u64, commands`, each
/// command followed by its `Origin` (actor, optional reason).
/// Version 2 added the `SetFxRates` command; version 3 added `SetResettlementWindow`, the feed
/// items `Announce`, `Markets`, `CancelWindow` and `RollbackCancel` and feed messages without a
/// sequence (`sequence` 0, de-duplicated by content); version 4 added the origin after every
/// command and the `CreateStaff` and `DisableStaff` commands. Older batches are the same layout
/// without them, so all decode; their commands get `Origin::unrecorded()` (the system actor
/// `unrecorded`). Version 5 added the `SetStaffRoles` command and manual adjustments
/// (`RequestAdjustment`, `ApproveAdjustment`, `RejectAdjustment`, `SetAdjustmentLimits`);
/// older batches holding them are refused. Version 6 added payments through the provider
/// (`BeginDeposit`, `SettleDeposit`, `ApproveWithdrawal`) and the `Chargeback` transfer code;
/// older batches holding them are refused. Version 7 added identity verification
/// (`SetKycRules`, `SetKycState`); older batches holding them are refused. Version 8 added
/// AML monitoring (`SetMonitoringRules`, `CaseAction`, `NoteShared`, tags 55 to 57), reality
/// checks and personal details (`SetRealityCheck`, `StartSession`, `AcknowledgeRealityCheck`,
/// `SetPersonalDetails`, tags 60 to 63); older batches holding them are refused. Version 9
/// added `SetIdempotencyWindow` (tag 64); older batches holding it are refused.
pub const BATCH_FORMAT_VERSION: u8 = 9;
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
    /// Who submitted each command, in the same order as `commands`.
    pub origins: Vec<Origin>,
}

/// Bytes before a batch's first command: version, first sequence, timestamp, reply digest and
/// the command count, all fixed width, so the header can be written after the commands
/// (`begin_batch`, `finish_batch`): the sequencer encodes each command as it takes it, to know
/// the batch's exact size before deciding anything.
pub const BATCH_HEADER_BYTES: usize = 1 + 8 + 8 + 8 + 4;

/// Appends the encoding of a batch to `out`: each command with its origin.
pub fn encode_batch<'a>(
    first_sequence: u64,
    timestamp: u64,
    reply_digest: u64,
    commands: impl ExactSizeIterator<Item = (&'a Command, &'a Origin)>,
    out: &mut Vec<u8>,
) {
    debug_assert!(commands.len() <= BATCH_COMMANDS_MAX);
    let start = out.len();
    begin_batch(out);
    let count = commands.len();
    for (command, origin) in commands {
        encode_batch_entry(command, origin, out);
    }
    finish_batch(&mut out[start..], first_sequence, timestamp, reply_digest, count);
}

/// Starts a batch at the end of `out`: a header of `BATCH_HEADER_BYTES` to be filled in by
/// `finish_batch` once the commands are decided.
pub fn begin_batch(out: &mut Vec<u8>) {
    out.resize(out.len() + BATCH_HEADER_BYTES, 0);
}

/// Appends one command with its origin to a batch started with `begin_batch`; returns the bytes
/// it took.
pub fn encode_batch_entry(command: &Command, origin: &Origin, out: &mut Vec<u8>) -> usize {
    let before = out.len();
    command.encode(out);
    origin.encode(out);
    out.len() - before
}

/// Writes the header of a batch into its first `BATCH_HEADER_BYTES` (`batch` starts where
/// `begin_batch` was called and holds `commands` entries after the header).
pub fn finish_batch(batch: &mut [u8], first_sequence: u64, timestamp: u64, reply_digest: u64, commands: usize) {
    debug_assert!(commands <= BATCH_COMMANDS_MAX);
    let mut header = [0u8; BATCH_HEADER_BYTES];
    header[0] = BATCH_FORMAT_VERSION;
    header[1..9].copy_from_slice(&first_sequence.to_le_bytes());
    header[9..17].copy_from_slice(&timestamp.to_le_bytes());
    header[17..25].copy_from_slice(&reply_digest.to_le_bytes());
    header[25..29].copy_from_slice(&(commands as u32).to_le_bytes());
    batch[..BATCH_HEADER_BYTES].copy_from_slice(&header);
}

/// Commands batch format 8 added.
fn uses_version_8(command: &Command) -> bool {
    matches!(
        command,
        Command::SetMonitoringRules { .. }
            | Command::CaseAction(_)
            | Command::NoteShared { .. }
            | Command::SetRealityCheck { .. }
            | Command::StartSession { .. }
            | Command::AcknowledgeRealityCheck { .. }
            | Command::SetPersonalDetails { .. }
    )
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
    let (commands, origins): (Vec<Command>, Vec<Origin>) = if version >= 4 {
        let entries: Vec<(Command, Origin)> = Vec::decode(&mut input)?;
        entries.into_iter().unzip()
    } else {
        let commands: Vec<Command> = Vec::decode(&mut input)?;
        let origins = vec![Origin::unrecorded(); commands.len()];
        (commands, origins)
    };
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
    if version < 4
        && commands.iter().any(|command| matches!(command, Command::CreateStaff { .. } | Command::DisableStaff { .. }))
    {
        return Err(input.error("a staff command in a batch older than version 4"));
    }
    if version < 5 && commands.iter().any(uses_version_5) {
        return Err(input.error("a staff role or adjustment command in a batch older than version 5"));
    }
    if version < 6 && commands.iter().any(uses_version_6) {
        return Err(input.error("a payment command in a batch older than version 6"));
    }
    if version < 7
        && commands.iter().any(|command| matches!(command, Command::SetKycRules { .. } | Command::SetKycState { .. }))
    {
        return Err(input.error("a kyc command in a batch older than version 7"));
    }
    if version < 8 && commands.iter().any(uses_version_8) {
        return Err(
            input.error("a monitoring, reality check or personal details command in a batch older than version 8")
        );
    }
    if version < 9 && commands.iter().any(|command| matches!(command, Command::SetIdempotencyWindow { .. })) {
        return Err(input.error("an idempotency window in a batch older than version 9"));
    }
    input.finish()?;
    Ok(Batch { first_sequence, timestamp, reply_digest, commands, origins })
}

/// Whether a command is one only version 5 batches carry.
fn uses_version_5(command: &Command) -> bool {
    matches!(
        command,
        Command::SetStaffRoles { .. }
            | Command::RequestAdjustment { .. }
            | Command::ApproveAdjustment { .. }
            | Command::RejectAdjustment { .. }
            | Command::SetAdjustmentLimits { .. }
    )
}

/// Whether a command is one only version 6 batches carry.
fn uses_version_6(command: &Command) -> bool {
    matches!(
        command,
        Command::BeginDeposit { .. }
            | Command::SettleDeposit { .. }
            | Command::ApproveWithdrawal { .. }
            | Command::RefuseWithdrawal { .. }
    )
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
    use book::{Command, Origin};
    use domain::{Currency, ExchangeRate};

    use super::*;

    /// A batch in the layout of `version`: before version 4, commands without origins.
    fn with_version(version: u8, commands: &[Command]) -> Vec<u8> {
        let mut bytes = Vec::new();
        if version >= 4 {
            let origins = vec![Origin::system("test"); commands.len()];
            encode_batch(1, 2, 3, commands.iter().zip(&origins), &mut bytes);
            bytes[0] = version;
            return bytes;
        }
        bytes.push(version);
        1u64.encode(&mut bytes);
        2u64.encode(&mut bytes);
        3u64.encode(&mut bytes);
        commands.to_vec().encode(&mut bytes);
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
        assert!(decode_batch(&with_version(BATCH_FORMAT_VERSION + 1, &tick)).is_err());
    }

    /// Version 4 added an origin after every command: older batches decode with the
    /// `unrecorded` system actor, new ones keep each command's actor and reason.
    #[test]
    fn version_4_batches_carry_each_commands_origin() {
        let commands = [Command::Tick, Command::VoidMarket { market: book::MarketId(3) }];
        let old = decode_batch(&with_version(3, &commands)).expect("version 3");
        assert_eq!(old.commands, commands);
        assert_eq!(old.origins, vec![Origin::unrecorded(); 2]);
        let origins = [
            Origin::system("sequencer"),
            Origin::new(book::Actor::Staff(book::StaffId(7))).with_reason(Some("abandoned".to_string())),
        ];
        let mut bytes = Vec::new();
        encode_batch(1, 2, 3, commands.iter().zip(&origins), &mut bytes);
        let new = decode_batch(&bytes).expect("version 4");
        assert_eq!(new.commands, commands);
        assert_eq!(new.origins, origins);
        for actor in [
            book::Actor::ApiKey(None),
            book::Actor::ApiKey(Some(book::ApiKeyId(2))),
            book::Actor::Player(book::AccountId(4)),
            book::Actor::Feed("betradar".to_string()),
        ] {
            let origin = [Origin::new(actor)];
            let mut bytes = Vec::new();
            encode_batch(1, 2, 3, commands[..1].iter().zip(&origin), &mut bytes);
            assert_eq!(decode_batch(&bytes).expect("actor").origins, origin);
        }
        // A reason past its limit is refused.
        let long = [Origin::system("x").with_reason(Some("r".repeat(book::constants::REASON_BYTES_MAX + 1)))];
        let mut bytes = Vec::new();
        encode_batch(1, 2, 3, commands[..1].iter().zip(&long), &mut bytes);
        assert!(decode_batch(&bytes).is_err());
        // Staff commands came with version 4.
        let staff = [Command::DisableStaff { staff: book::StaffId(1) }];
        assert!(decode_batch(&with_version(3, &staff)).is_err());
        assert_eq!(decode_batch(&with_version(4, &staff)).expect("version 4").commands, staff);
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

    /// Version 5 added staff roles and manual adjustments: they round trip, and older
    /// batches holding them are refused while a version 4 batch without them still decodes.
    #[test]
    fn version_5_batches_carry_adjustments() {
        let commands = [
            Command::SetStaffRoles { staff: book::StaffId(2), roles: book::roles::COMPLIANCE },
            Command::RequestAdjustment {
                account: book::AccountId(3),
                amount: domain::Money::from_minor(12_345),
                direction: book::AdjustmentDirection::Debit,
                reason: "goodwill reversed".to_string(),
                staff: book::StaffId(1),
                idempotency: Some(book::Idempotency { key: "k".to_string(), body_hash: 9 }),
            },
            Command::ApproveAdjustment {
                adjustment: book::AdjustmentId(4),
                account: book::AccountId(3),
                staff: book::StaffId(2),
            },
            Command::RejectAdjustment {
                adjustment: book::AdjustmentId(5),
                account: book::AccountId(3),
                staff: book::StaffId(2),
                reason: "no evidence".to_string(),
            },
            Command::SetAdjustmentLimits { limits: book::AdjustmentLimits::default() },
        ];
        assert_eq!(decode_batch(&with_version(5, &commands)).expect("version 5").commands, commands);
        for command in &commands {
            assert!(decode_batch(&with_version(4, std::slice::from_ref(command))).is_err(), "{command:?}");
        }
        let tick = [Command::Tick];
        assert_eq!(decode_batch(&with_version(4, &tick)).expect("version 4").commands, tick);
    }

    /// Version 6 added payments through the provider: they round trip, and older batches
    /// holding them are refused.
    #[test]
    fn version_6_batches_carry_payments() {
        let commands = [
            Command::BeginDeposit {
                account: book::AccountId(3),
                amount: domain::Money::from_minor(2_500),
                payment_ref: "psp_1".to_string(),
                idempotency: Some(book::Idempotency { key: "k".to_string(), body_hash: 9 }),
            },
            Command::SettleDeposit {
                account: book::AccountId(3),
                deposit: book::TransferId(7),
                outcome: book::DepositOutcome::ChargedBack,
            },
            Command::ApproveWithdrawal { account: book::AccountId(3), withdrawal: book::TransferId(8) },
            Command::RefuseWithdrawal { account: book::AccountId(3), withdrawal: book::TransferId(9) },
        ];
        assert_eq!(decode_batch(&with_version(6, &commands)).expect("version 6").commands, commands);
        for command in &commands {
            assert!(decode_batch(&with_version(5, std::slice::from_ref(command))).is_err(), "{command:?}");
        }
    }

    /// Version 7 added identity verification: its commands round trip, and older batches
    /// holding them are refused.
    #[test]
    fn version_7_batches_carry_kyc() {
        let commands = [
            Command::SetKycRules {
                account: book::AccountId(3),
                rules: book::KycRules {
                    deposit_cap: Some(domain::Money::from_minor(20_000)),
                    reverify_above: None,
                    expiry_ms: Some(86_400_000),
                },
            },
            Command::SetKycState {
                account: book::AccountId(3),
                state: book::KycState::Verified,
                reference: Some("kyc_1".to_string()),
            },
            Command::SetKycState { account: book::AccountId(4), state: book::KycState::Expired, reference: None },
        ];
        assert_eq!(decode_batch(&with_version(7, &commands)).expect("version 7").commands, commands);
        for command in &commands {
            assert!(decode_batch(&with_version(6, std::slice::from_ref(command))).is_err(), "{command:?}");
        }
    }

    /// Version 8 added reality checks and personal details: their commands round trip, and
    /// older batches holding them are refused.
    #[test]
    fn version_8_batches_carry_reality_checks_and_personal_details() {
        let account = book::AccountId(3);
        let details = book::PersonalDetails {
            first_name: Some("Ada".to_string()),
            last_name: Some("Lovelace".to_string()),
            email: None,
            postcode: Some("SW1A 1AA".to_string()),
            address: Some("1 Example Street".to_string()),
        };
        let commands = [
            Command::SetRealityCheck { account, interval_minutes: Some(30) },
            Command::SetRealityCheck { account, interval_minutes: None },
            Command::StartSession { account },
            Command::AcknowledgeRealityCheck { account },
            Command::SetPersonalDetails { account, details },
        ];
        assert_eq!(decode_batch(&with_version(8, &commands)).expect("version 8").commands, commands);
        for command in &commands {
            assert!(decode_batch(&with_version(7, std::slice::from_ref(command))).is_err(), "{command:?}");
        }
    }

    /// The header written after the commands (`begin_batch`, `finish_batch`) is the header
    /// `Wire` encodes field by field, `BATCH_HEADER_BYTES` long, and every entry's bytes are
    /// what `encode_batch_entry` says: the sequencer sizes batches by them.
    /// Version 8 added AML monitoring: its commands round trip (the rules, each case action
    /// with a note and a reference, both shared-key kinds), and older batches holding them are
    /// refused.
    #[test]
    fn version_8_batches_carry_monitoring() {
        let mut commands = vec![
            Command::SetMonitoringRules { rules: book::MonitoringRules::default() },
            Command::SetMonitoringRules {
                rules: book::MonitoringRules {
                    deposits: None,
                    rapid_in_out: None,
                    night_start_hour: 22,
                    night_end_hour: 5,
                    ..book::MonitoringRules::default()
                },
            },
            Command::NoteShared { account: book::AccountId(3), key: book::SharedKey::instrument("tok_1") },
            Command::NoteShared { account: book::AccountId(4), key: book::SharedKey::address("1 High St") },
        ];
        for action in book::CaseActionKind::ALL {
            commands.push(Command::CaseAction(book::CaseActionRequest {
                case: book::CaseId(2),
                action,
                by: book::Actor::Staff(book::StaffId(1)),
                reason: "reviewed".to_string(),
                note: Some("a note".to_string()),
                reference: (action == book::CaseActionKind::MarkReported).then(|| "SAR-1".to_string()),
            }));
        }
        assert_eq!(decode_batch(&with_version(8, &commands)).expect("version 8").commands, commands);
        for command in &commands {
            assert!(decode_batch(&with_version(7, std::slice::from_ref(command))).is_err(), "{command:?}");
        }
    }

    #[test]
    fn a_batch_finished_after_its_commands_is_the_wire_layout() {
        let commands = [
            Command::Tick,
            Command::VoidMarket { market: book::MarketId(3) },
            Command::SetResettlementWindow { window_ms: 9 },
        ];
        let origins = [
            Origin::system("sequencer"),
            Origin::new(book::Actor::Staff(book::StaffId(7))).with_reason(Some("abandoned".to_string())),
            Origin::new(book::Actor::Feed("betradar".to_string())),
        ];
        let mut expected = vec![BATCH_FORMAT_VERSION];
        u64::MAX.encode(&mut expected);
        0x0102_0304_0506_0708u64.encode(&mut expected);
        42u64.encode(&mut expected);
        3u32.encode(&mut expected);
        assert_eq!(expected.len(), BATCH_HEADER_BYTES);
        let mut entries = 0;
        for (command, origin) in commands.iter().zip(&origins) {
            command.encode(&mut expected);
            origin.encode(&mut expected);
        }
        let mut out = vec![0xAA];
        begin_batch(&mut out);
        for (command, origin) in commands.iter().zip(&origins) {
            entries += encode_batch_entry(command, origin, &mut out);
        }
        finish_batch(&mut out[1..], u64::MAX, 0x0102_0304_0506_0708, 42, commands.len());
        assert_eq!(out[0], 0xAA, "bytes before the batch untouched");
        assert_eq!(&out[1..], &expected[..]);
        assert_eq!(BATCH_HEADER_BYTES + entries, expected.len());
        let mut whole = Vec::new();
        encode_batch(u64::MAX, 0x0102_0304_0506_0708, 42, commands.iter().zip(&origins), &mut whole);
        assert_eq!(whole, expected);
        let decoded = decode_batch(&whole).expect("decodes");
        assert_eq!(
            (decoded.first_sequence, decoded.timestamp, decoded.reply_digest),
            (u64::MAX, 0x0102_0304_0506_0708, 42)
        );
        assert_eq!(decoded.origins, origins);
        let mut empty = Vec::new();
        encode_batch(1, 2, 3, std::iter::empty::<(&Command, &Origin)>(), &mut empty);
        assert_eq!(empty.len(), BATCH_HEADER_BYTES);
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

    /// Version 9 added `SetIdempotencyWindow`: refused in older batches.
    #[test]
    fn version_9_batches_carry_the_idempotency_window() {
        let window = [Command::SetIdempotencyWindow { window_ms: 60_000 }];
        assert_eq!(decode_batch(&with_version(9, &window)).expect("version 9").commands, window);
        assert!(decode_batch(&with_version(8, &window)).is_err());
    }
}

/// The `codec_batch` fuzz target's property, run by every `cargo test` from fixed seeds
/// (`crate::mutation`): a mutated current-format batch from the committed corpus is refused,
/// or decodes and encodes back to exactly its bytes, and never panics.
#[cfg(test)]
mod mutations {
    use super::*;
    use crate::mutation::{mutate, Rng, Verdict};

    #[test]
    fn mutated_batches_are_refused_or_round_trip_and_never_panic() {
        let corpus = crate::mutation::corpus("codec_batch");
        let mut rng = Rng(0xba7c);
        let (mut decoded, mut cases) = (0, 0);
        for name in ["batch-all", "batch-0", "batch-1", "batch-3"] {
            let seed = std::fs::read(corpus.join(name)).expect("a committed fuzz seed");
            assert_eq!(seed[0], BATCH_FORMAT_VERSION, "{name} is in the current format");
            decode_batch(&seed).expect("the seed decodes");
            for _ in 0..4_000 {
                let mut bytes = seed.clone();
                for _ in 0..1 + rng.below(3) {
                    mutate(&mut bytes, &mut rng);
                }
                // Older versions encode back in the current one (the fuzz target checks them).
                bytes[0] = BATCH_FORMAT_VERSION;
                cases += 1;
                let verdict = Verdict::of(&bytes, &format!("batch-{name}-{cases}"), || {
                    let batch = decode_batch(&bytes).ok()?;
                    let mut again = Vec::new();
                    let entries = batch.commands.iter().zip(&batch.origins);
                    encode_batch(batch.first_sequence, batch.timestamp, batch.reply_digest, entries, &mut again);
                    Some(again)
                });
                decoded += usize::from(verdict == Verdict::RoundTrips);
            }
        }
        assert!(decoded > 0 && decoded < cases, "{decoded} of {cases} mutated batches decoded");
    }
}
