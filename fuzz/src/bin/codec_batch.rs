//! Journal batches (`codec::decode_batch`): decoding arbitrary bytes is total, and a batch that
//! decodes encodes back to exactly the bytes it came from (the format has one encoding per
//! value), so replay reads what the sequencer wrote. An older format version that still
//! decodes encodes back in the current version: versions 1 to 3 (the same layout without the
//! newer commands) with every other byte the same; versions before 4 carry no origins, so
//! theirs decode as `Origin::unrecorded()` and encode back to a batch that decodes the same.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(batch) = codec::decode_batch(data) else { return };
    let mut again = Vec::new();
    let entries = batch.commands.iter().zip(&batch.origins);
    codec::encode_batch(batch.first_sequence, batch.timestamp, batch.reply_digest, entries, &mut again);
    assert_eq!(again[0], codec::BATCH_FORMAT_VERSION);
    assert!(data[0] <= codec::BATCH_FORMAT_VERSION, "a newer version decoded");
    if data[0] >= 4 {
        assert_eq!(&again[1..], &data[1..], "decode then encode changed the batch");
    } else {
        assert!(batch.origins.iter().all(|origin| *origin == book::Origin::unrecorded()));
    }
    assert_eq!(codec::decode_batch(&again).as_ref(), Ok(&batch));
});
