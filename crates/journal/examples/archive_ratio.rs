//! What journal retention would do to a journal's disk usage: every segment of `JOURNAL_DIR`
//! encoded as its archive (`journal::archive::encode_archive`, the archiver's own encoder) and
//! checked by reading it back, without writing anything.
//!
//!     cargo run --release -p journal --example archive_ratio -- DATA_DIR/journal

use std::time::Instant;

use journal::archive::encode_archive;
use journal::file::list_segments;

fn main() {
    let Some(dir) = std::env::args().nth(1) else {
        eprintln!("usage: archive_ratio JOURNAL_DIR");
        std::process::exit(2);
    };
    let segments = list_segments(std::path::Path::new(&dir)).expect("list segments");
    let (mut raw_total, mut archived_total, mut records_total) = (0u64, 0u64, 0u64);
    let began = Instant::now();
    for (first, path) in &segments {
        let raw = std::fs::read(path).expect("read segment");
        let scan = journal::record::scan_segment(&raw, *first).expect("scan segment");
        let archive = encode_archive(*first, scan.records, &raw[..scan.valid_bytes as usize]).expect("encode");
        raw_total += scan.valid_bytes;
        archived_total += archive.len() as u64;
        records_total += scan.records;
    }
    let seconds = began.elapsed().as_secs_f64().max(1e-9);
    println!(
        "{} segments, {records_total} records: {raw_total} bytes live, {archived_total} bytes archived \
         (ratio {:.2}x, {:.1}% of the size), compressed at {:.0} MB/s",
        segments.len(),
        raw_total as f64 / archived_total.max(1) as f64,
        100.0 * archived_total as f64 / raw_total.max(1) as f64,
        raw_total as f64 / 1e6 / seconds
    );
}
