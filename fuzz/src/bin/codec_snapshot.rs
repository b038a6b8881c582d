//! Snapshots (`codec::decode_snapshot`): decoding arbitrary bytes is total, including the
//! invariant check of the restored book (a snapshot describing an impossible book is an
//! error, never a panic), and a snapshot that decodes encodes back to the same bytes.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(book) = codec::decode_snapshot(data) else { return };
    let again = codec::encode_snapshot(&book);
    assert_eq!(again.as_slice(), data, "decode then encode changed the snapshot");
    let restored = codec::decode_snapshot(&again).expect("a re-encoded snapshot decodes");
    assert_eq!(codec::digest(&restored), codec::digest(&book));
});
