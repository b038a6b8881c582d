//! Mutations of committed fuzz seeds for the decoders' round-trip properties
//! (`snapshot::mutations`, `batch::mutations`): the fuzz targets' checks, run by every `cargo
//! test` from a fixed sequence rather than by chance.

use std::path::PathBuf;

/// The committed corpus of a fuzz target.
pub fn corpus(target: &str) -> PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus").join(target)
}

/// SplitMix64: a fixed, dependency-free sequence, so a failure reproduces.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    pub fn below(&mut self, bound: usize) -> usize {
        (self.next() % bound as u64) as usize
    }
}

const WIDE: [u64; 12] = [
    0,
    1,
    2,
    u64::MAX,
    i64::MAX as u64,
    (i64::MAX - 1) as u64,
    i64::MIN as u64,
    1 << 32,
    1 << 60,
    1_000_000_000_000_001,
    book::TOTAL_MAX as u64 + 1,
    book::TOTAL_MAX as u64,
];
const NARROW: [u32; 6] = [0, 1, 2, 3, u32::MAX, 1 << 20];

pub fn mutate(bytes: &mut [u8], rng: &mut Rng) {
    let len = bytes.len();
    match rng.below(6) {
        0 => bytes[rng.below(len)] ^= 1 << rng.below(8),
        1 => bytes[rng.below(len)] = rng.next() as u8,
        2 if len > 8 => {
            let at = rng.below(len - 8);
            let value = if rng.below(3) == 0 { rng.next() % 16 } else { WIDE[rng.below(WIDE.len())] };
            bytes[at..at + 8].copy_from_slice(&value.to_le_bytes());
        }
        3 if len > 4 => {
            let at = rng.below(len - 4);
            bytes[at..at + 4].copy_from_slice(&NARROW[rng.below(NARROW.len())].to_le_bytes());
        }
        _ => {
            let size = 1 + rng.below(64.min(len / 2));
            let (from, to) = (rng.below(len - size), rng.below(len - size));
            bytes.copy_within(from..from + size, to);
        }
    }
}

/// What decoding a mutated input came to.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    Refused,
    RoundTrips,
}

impl Verdict {
    /// Runs `decode_and_encode` on `bytes`: refused (`None`) or encoded back to exactly
    /// `bytes`; a panic or another encoding fails the test, with the input saved under `name`
    /// in the temporary directory to reproduce it.
    pub fn of(bytes: &[u8], name: &str, decode_and_encode: impl FnOnce() -> Option<Vec<u8>>) -> Verdict {
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(decode_and_encode));
        let saved = || {
            let path = std::env::temp_dir().join(format!("mutation-{name}"));
            std::fs::write(&path, bytes).expect("saving the input");
            path.display().to_string()
        };
        match outcome {
            Err(_) => panic!("decoding a mutated input panicked; the input: {}", saved()),
            Ok(Some(again)) if again == bytes => Verdict::RoundTrips,
            Ok(Some(_)) => panic!("a mutated input decoded but encodes back differently: {}", saved()),
            Ok(None) => Verdict::Refused,
        }
    }
}
