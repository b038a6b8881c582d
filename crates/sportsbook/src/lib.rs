//! The `sportsbook` binary's parts, as a library so that tests can drive them: `serve` (the
//! gateway over the engine, with the live demo), `admin` (operator keys offline), the engine-only
//! `demo`, `verify`, and the feed role (`feeds`: sources, the demo's simulated provider,
//! `feed-sim`).

pub mod admin;
pub mod demo;
pub mod feeds;
mod names;
pub mod output;
pub mod pricing;
pub mod projection;
pub mod secrets;
pub mod serve;
pub mod simulation;

use std::path::Path;

use anyhow::Context;
use engine::{EngineError, EngineHandle, EngineOptions, RecoveryReport, SystemClock};

/// Opens a data directory on the real clock. A directory another process holds (a running
/// server) is refused with a message that says so; a corrupt journal with the position and the
/// operator's way forward (`sportsbook repair`).
pub fn open_engine(dir: &Path) -> anyhow::Result<(EngineHandle, RecoveryReport)> {
    open_engine_with(dir, EngineOptions::default())
}

/// `open_engine` with options (the server passes the gateway's commit hook). Corrupt snapshots
/// passed over and permissions tightened are logged as warnings.
pub fn open_engine_with(dir: &Path, options: EngineOptions) -> anyhow::Result<(EngineHandle, RecoveryReport)> {
    match engine::open_data_dir_detailed(dir, book::Config::default(), Box::new(SystemClock), options) {
        Ok((engine, report, findings)) => {
            for skipped in &findings.skipped_snapshots {
                tracing::warn!(
                    path = %skipped.path.display(),
                    position = skipped.position,
                    reason = %skipped.reason,
                    "corrupt snapshot skipped; recovered from an older snapshot and the journal"
                );
            }
            for path in &findings.tightened {
                tracing::warn!(path = %path.display(), "permissions were looser than owner-only; tightened");
            }
            Ok((engine, report))
        }
        Err(error) => Err(explain_open_error(dir, error)),
    }
}

/// An operator's message for a data directory that cannot be opened.
fn explain_open_error(dir: &Path, error: EngineError) -> anyhow::Error {
    match error {
        EngineError::Journal(journal::JournalError::Locked { .. }) => anyhow::anyhow!(
            "the data directory {} is in use by another process (is a sportsbook server running on it?); stop it first",
            dir.display()
        ),
        EngineError::Journal(
            ref corrupt @ (journal::JournalError::Corrupt { position, .. }
            | journal::JournalError::UnsupportedVersion { position, .. }),
        ) => anyhow::anyhow!(
            "the journal in {} is corrupt, refusing to start so that no acknowledged record is silently dropped:\n  \
             {corrupt}\n\
             Nothing was changed. To go on without the records from position {position} on, back up the data \
             directory, then run\n  \
             sportsbook repair --data-dir {} --truncate-at {position}\n\
             which copies everything it cuts into the data directory first (a snapshot that covers them keeps \
             their effect; otherwise the operations in them are lost and must be redone from the copy).",
            dir.display(),
            dir.display()
        ),
        error => anyhow::Error::new(error).context(format!("opening the data directory {}", dir.display())),
    }
}

/// Recovers a data directory (latest snapshot plus journal) without writing anything to it,
/// checks every invariant and prints the state digest. A torn tail is reported, not cut; a
/// corrupt journal or snapshot makes it fail (non-zero exit).
pub fn verify(dir: &Path) -> anyhow::Result<()> {
    verify_with_archive(dir, None)
}

/// `sportsbook verify --archive DIR`: `verify`, reading the journal's archive in `archive`
/// (`None`: DATA_DIR/archive). Besides recovering, it recomputes the journal's hash chain from
/// position 0 across the archived and the live segments and compares it with the recovered
/// head (stored in the snapshot, extended by replay): a record changed, lost or corrupt
/// anywhere, archives included, fails it with the file and the position.
pub fn verify_with_archive(dir: &Path, archive: Option<&Path>) -> anyhow::Result<()> {
    let recovered = engine::recover_read_only_with_archive(dir, archive, book::Config::default())
        .map_err(|error| explain_open_error(dir, error))?;
    let report = recovered.report;
    println!(
        "recovered {} (read-only): snapshot at {:?}, {} batches ({} commands) replayed, journal ends at position {}",
        dir.display(),
        report.snapshot_position,
        report.replayed_batches,
        report.replayed_commands,
        report.position
    );
    if report.truncated_bytes > 0 {
        println!(
            "torn tail: {} bytes after the last record (an unacknowledged write); the next start cuts them",
            report.truncated_bytes
        );
    }
    for skipped in &recovered.skipped_snapshots {
        println!("warning: corrupt snapshot {} skipped: {}", skipped.path.display(), skipped.reason);
    }
    let archive_dir = engine::archive_dir(dir, archive);
    let history = journal::History::new(&dir.join("journal"), Some(&archive_dir));
    let chain = engine::verify_history(&history, report.chain_head, report.position).with_context(|| {
        format!("reading the journal of {} and its archive {}", dir.display(), archive_dir.display())
    })?;
    let first_live = history.first_live()?.unwrap_or(report.position);
    if let Some(reason) = &chain.reason {
        anyhow::bail!(
            "the journal's hash chain does not verify after {} records: {reason} (recomputed head {}, recovered head {})",
            chain.records,
            hex_head(&chain.head),
            hex_head(&chain.expected_head)
        );
    }
    println!(
        "hash chain verified over {} records from position 0 ({} archived in {}, {} live): head {}",
        chain.records,
        first_live,
        archive_dir.display(),
        chain.records - first_live.min(chain.records),
        hex_head(&chain.head)
    );
    let book = recovered.book;
    book.check_invariants().map_err(|violation| anyhow::anyhow!("invariant violated: {violation}"))?;
    let digest = codec::digest(&book);
    anyhow::ensure!(
        recovered.skipped_snapshots.is_empty(),
        "{} corrupt snapshot(s) skipped (see above); invariants hold, state digest {digest}",
        recovered.skipped_snapshots.len()
    );
    println!("invariants hold; state digest {digest}");
    Ok(())
}

fn hex_head(head: &engine::ChainHead) -> String {
    head.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// `sportsbook repair --truncate-at POSITION`: cuts the journal so that its next record gets
/// `position`, after copying everything cut into `DIR/journal-cut-<position>-<unix seconds>`.
/// Run only after a backup, with the server stopped; never run automatically.
pub fn repair(dir: &Path, position: journal::Position) -> anyhow::Result<()> {
    let seconds = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| elapsed.as_secs())
        .unwrap_or_default();
    let backup = dir.join(format!("journal-cut-{position}-{seconds}"));
    let report = journal::repair::truncate_at(&dir.join("journal"), &dir.join("snapshots"), position, &backup)
        .map_err(|error| match error {
            journal::JournalError::Locked { .. } => explain_open_error(dir, EngineError::Journal(error)),
            error => anyhow::Error::new(error).context(format!("repairing the journal in {}", dir.display())),
        })?;
    println!(
        "cut the journal at position {}: {} bytes copied to {}",
        report.cut_at,
        report.bytes_cut,
        report.backup_dir.display()
    );
    if report.covered_by_snapshot() {
        println!(
            "the snapshot at position {} holds the effect of every cut record: nothing acknowledged is lost; \
             the journal continues at position {}",
            report.snapshot_position, report.next_position
        );
    } else {
        println!(
            "no snapshot covers the cut records: the operations in them are no longer in the book (the copy has \
             them); the journal continues at position {}",
            report.next_position
        );
    }
    Ok(())
}

/// Creates the data directory owner-only (0700) if missing; tightens it, and the secrets kept
/// in it, when they are looser (with a warning): the journal and snapshots hold password
/// hashes and dates of birth.
pub fn secure_data_dir(dir: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(journal::file::PRIVATE_DIR_MODE)
        .create(dir)
        .with_context(|| format!("creating the data directory {}", dir.display()))?;
    let files = [secrets::JWT_SECRET_FILE_NAME, serve::DEMO_CREDENTIALS_FILE_NAME];
    let mut paths = vec![(dir.to_owned(), journal::file::PRIVATE_DIR_MODE)];
    paths.extend(
        files
            .iter()
            .map(|name| dir.join(name))
            .filter(|path| path.exists())
            .map(|path| (path, journal::file::PRIVATE_FILE_MODE)),
    );
    for (path, mode) in paths {
        if journal::file::tighten(&path, mode)? {
            tracing::warn!(path = %path.display(), "permissions were looser than owner-only; tightened");
        }
    }
    Ok(())
}

/// Parses a window: a whole number with a unit, `s`, `m`, `h` or `d` (`5s`, `90m`, `7d`), into
/// milliseconds within the book's bounds (`book::RESETTLEMENT_WINDOW_MIN_MS` to `_MAX_MS`).
pub fn parse_window(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: u64 = number.parse().map_err(|_| format!("{text:?}: expected a number and a unit, e.g. 7d"))?;
    let unit_ms = match unit {
        "s" => book::MILLIS_PER_SECOND,
        "m" => 60 * book::MILLIS_PER_SECOND,
        "h" => book::MILLIS_PER_HOUR,
        "d" => book::MILLIS_PER_DAY,
        _ => return Err(format!("{text:?}: the unit is s, m, h or d")),
    };
    let window = number.checked_mul(unit_ms).ok_or_else(|| format!("{text:?} is too long"))?;
    if !(book::RESETTLEMENT_WINDOW_MIN_MS..=book::RESETTLEMENT_WINDOW_MAX_MS).contains(&window) {
        return Err(format!("{text:?}: the window is 1s to 3653d"));
    }
    Ok(window)
}

/// Makes the book's resettlement window `window_ms`: a journaled command when the recovered
/// book's differs (so that every replay, the snapshot follower and the projector decide with
/// the window in force at the time), nothing otherwise.
pub fn set_resettlement_window(engine: &engine::EngineHandle, window_ms: u64) -> anyhow::Result<()> {
    let current = engine.read(|book| book.config().resettlement_window_ms)?;
    if current != window_ms {
        let command = book::Command::SetResettlementWindow { window_ms };
        match engine.submit((command, book::Origin::system("serve")))? {
            Ok(_) => tracing::info!(window_ms, previous_ms = current, "resettlement window set"),
            Err(rejection) => anyhow::bail!("resettlement window refused: {rejection}"),
        }
    }
    Ok(())
}

#[cfg(test)]
mod window_tests {
    #[test]
    fn windows_parse_with_their_unit_and_bounds() {
        assert_eq!(super::parse_window("5s"), Ok(5_000));
        assert_eq!(super::parse_window("7d"), Ok(7 * 86_400_000));
        assert_eq!(super::parse_window("90m"), Ok(5_400_000));
        assert!(super::parse_window("0s").is_err());
        assert!(super::parse_window("7").is_err());
        assert!(super::parse_window("7w").is_err());
        assert!(super::parse_window("99999999999999999d").is_err());
    }
}
