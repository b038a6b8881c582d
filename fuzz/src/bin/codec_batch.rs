//! Journal batches (`codec::decode_batch`): decoding arbitrary bytes is total, and a batch that
//! decodes encodes back to exactly the bytes it came from (the format has one encoding per
//! value), so replay reads what the sequencer wrote.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(batch) = codec::decode_batch(data) else { return };
    let mut again = Vec::new();
    codec::encode_batch(batch.first_sequence, batch.timestamp, batch.reply_digest, batch.commands.iter(), &mut again);
    assert_eq!(again.as_slice(), data, "decode then encode changed the batch");
    assert_eq!(codec::decode_batch(&again).as_ref(), Ok(&batch));
});
