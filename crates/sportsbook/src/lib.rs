//! The `sportsbook` binary's parts, as a library so that tests can drive them: `serve` (the
//! gateway over the engine, with the live demo), `admin` (operator keys offline), the engine-only
//! `demo`, `verify`, and the feed role (`feeds`: sources, the demo's simulated provider,
//! `feed-sim`).

pub mod admin;
pub mod bench_cluster;
pub mod book_role;
pub mod demo;
pub mod dev_cluster;
pub mod feed_role;
pub mod feeds;
pub mod gateway_role;
mod names;
pub mod output;
pub mod pricing;
pub mod projection;
pub mod projector_role;
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
    verify_with(dir, archive, None, projector::POSTGRES_SCHEMA_DEFAULT)
}

/// `sportsbook verify [--archive DIR] [--store STORE] [--schema NAME]`: `verify_with_archive`,
/// then the book's running totals against the full history in the read models: `store` (`None`:
/// the embedded SQLite models, when the data directory has them). See [`verify_read_models`].
pub fn verify_with(
    dir: &Path,
    archive: Option<&Path>,
    store: Option<&projection::StoreArg>,
    schema: &str,
) -> anyhow::Result<()> {
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
    verify_read_models(dir, archive, store, schema, &book, &report)?;
    // Last, and the digest as the last word: scripts and tests read it there.
    println!("invariants hold; state digest {digest}");
    Ok(())
}

/// The book's running totals against the full history in the read models, read-only: the
/// models' checkpoint gives their journal position; the book is `book` when that is where
/// recovery ended, else recovered again to exactly that position (from a snapshot at or before
/// it). Every ledger account's totals must equal the sums of the `transfers` model, and every
/// player's wallet their last `statements` row (`projector::totals`); a difference fails with
/// the account and both figures. Without models (no `store` and no embedded file) there is
/// nothing to compare; models seeded from a snapshot lack the history before it and are not
/// compared (said so).
pub fn verify_read_models(
    dir: &Path,
    archive: Option<&Path>,
    store: Option<&projection::StoreArg>,
    schema: &str,
    book: &book::Book,
    report: &engine::RecoveryReport,
) -> anyhow::Result<()> {
    let embedded = projection::sqlite_path(dir);
    let (mut models, name): (Box<dyn projector::Store>, String) = match store {
        None if !embedded.exists() => {
            println!("no read models at {}: running totals not compared with a history", embedded.display());
            return Ok(());
        }
        None | Some(projection::StoreArg::Sqlite(None)) => {
            (open_sqlite_reader(&embedded)?, embedded.display().to_string())
        }
        Some(projection::StoreArg::Sqlite(Some(path))) => (open_sqlite_reader(path)?, path.display().to_string()),
        Some(projection::StoreArg::Postgres(url)) => (
            Box::new(
                projector::PostgresStore::connect_reader(url, schema)
                    .with_context(|| format!("opening the read models in {url}, schema {schema}"))?,
            ),
            format!("{url} (schema {schema})"),
        ),
    };
    let Some(checkpoint) = projector::store::checkpoint(models.as_mut())
        .with_context(|| format!("reading the read models' checkpoint in {name}"))?
    else {
        println!("the read models in {name} are empty: running totals not compared");
        return Ok(());
    };
    if checkpoint.base_position > 0 {
        println!(
            "the read models in {name} begin at the snapshot at journal position {} (the journal before it was gone \
             when they were built): they lack the history before it, so running totals are not compared; \
             `sportsbook projector --rebuild` from a journal that begins at 0 makes them comparable",
            checkpoint.base_position
        );
        return Ok(());
    }
    let at = checkpoint.next_position;
    anyhow::ensure!(
        at <= report.position,
        "the read models in {name} stand at journal position {at}, beyond the journal's end {}: they were built \
         from another journal (run `sportsbook projector --rebuild`)",
        report.position
    );
    let earlier;
    let (book, head) = if at == report.position {
        (book, report.chain_head)
    } else {
        earlier = engine::recover_read_only_to(dir, archive, book::Config::default(), at)
            .with_context(|| format!("recovering the book to journal position {at}, where the read models stand"))?;
        (&earlier.book, earlier.report.chain_head)
    };
    anyhow::ensure!(
        head == checkpoint.chain_head,
        "the read models in {name} were built from another journal: their hash-chain head at position {at} is {}, \
         the journal's {} (run `sportsbook projector --rebuild`)",
        hex_head(&checkpoint.chain_head),
        hex_head(&head)
    );
    let comparison = projector::totals::compare(models.as_mut(), book)
        .with_context(|| format!("summing the history in the read models {name}"))?;
    if !comparison.mismatches.is_empty() {
        for mismatch in &comparison.mismatches {
            eprintln!("running totals differ: {mismatch}");
        }
        anyhow::bail!(
            "{} figure(s) of the book at journal position {at} differ from the history in the read models {name} \
             (first: {})",
            comparison.mismatches.len(),
            comparison.mismatches[0]
        );
    }
    println!(
        "running totals match the read models {name} at journal position {at}: {} ledger accounts and {} players \
         against {} transfers of history ({} still in the book)",
        comparison.ledger_accounts, comparison.players, comparison.transfers, comparison.transfers_held
    );
    Ok(())
}

/// The SQLite models, read without writing a byte to the data directory. A store whose
/// projector closed cleanly has no `-wal` file and is opened `immutable` (no `-wal` or `-shm`
/// created, no locks). One with a `-wal` (a projector killed, or running) cannot be read in
/// place without SQLite writing to its `-shm`: the file and its `-wal` are copied into a
/// private temporary directory (removed again when the store is dropped) and read there.
fn open_sqlite_reader(path: &Path) -> anyhow::Result<Box<dyn projector::Store>> {
    anyhow::ensure!(path.exists(), "no read models at {}", path.display());
    let with_suffix = |path: &Path, suffix: &str| {
        let mut name = path.as_os_str().to_owned();
        name.push(suffix);
        std::path::PathBuf::from(name)
    };
    let wal = with_suffix(path, "-wal");
    if !wal.exists() {
        let uri = format!("file:{}?mode=ro&immutable=1", uri_path(path));
        let store = projector::SqliteStore::open_reader(Path::new(&uri))
            .with_context(|| format!("opening the read models {}", path.display()))?;
        return Ok(Box::new(store));
    }
    let copy = TemporaryCopy::new()?;
    let target = copy.dir.join("read-models.sqlite3");
    // The `-wal` first: a checkpoint running meanwhile only moves pages from it into the main
    // file, which is copied after and then holds them too.
    std::fs::copy(&wal, with_suffix(&target, "-wal")).with_context(|| format!("copying {}", wal.display()))?;
    std::fs::copy(path, &target).with_context(|| format!("copying {}", path.display()))?;
    println!(
        "the read models in {} were not closed cleanly (a -wal file): reading a copy in {}",
        path.display(),
        copy.dir.display()
    );
    let store = projector::SqliteStore::open_reader(&target)
        .with_context(|| format!("opening the copy of the read models {}", path.display()))?;
    Ok(Box::new(CopiedStore { store, _copy: copy }))
}

/// A path as the path of a `file:` URI (`%`, `?` and `#` escaped).
fn uri_path(path: &Path) -> String {
    let mut out = String::new();
    for c in path.to_string_lossy().chars() {
        match c {
            '%' => out.push_str("%25"),
            '?' => out.push_str("%3f"),
            '#' => out.push_str("%23"),
            c => out.push(c),
        }
    }
    out
}

/// An owner-only temporary directory, removed on drop.
struct TemporaryCopy {
    dir: std::path::PathBuf,
}

impl TemporaryCopy {
    fn new() -> anyhow::Result<TemporaryCopy> {
        use std::os::unix::fs::DirBuilderExt;
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|elapsed| elapsed.as_nanos())
            .unwrap_or_default();
        let dir = std::env::temp_dir().join(format!("sportsbook-verify-{}-{nanos}", std::process::id()));
        std::fs::DirBuilder::new()
            .mode(journal::file::PRIVATE_DIR_MODE)
            .create(&dir)
            .with_context(|| format!("creating {}", dir.display()))?;
        Ok(TemporaryCopy { dir })
    }
}

impl Drop for TemporaryCopy {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A store read from a temporary copy, which goes when the store does.
struct CopiedStore {
    store: projector::SqliteStore,
    _copy: TemporaryCopy,
}

impl projector::Store for CopiedStore {
    fn kind(&self) -> &'static str {
        self.store.kind()
    }

    fn schema_version(&mut self) -> Result<i64, projector::ProjectorError> {
        self.store.schema_version()
    }

    fn commit(
        &mut self,
        changes: &projector::Changes,
        previous: Option<journal::Position>,
    ) -> Result<(), projector::ProjectorError> {
        self.store.commit(changes, previous)
    }

    fn clear(&mut self) -> Result<(), projector::ProjectorError> {
        self.store.clear()
    }

    fn placeholder(&self, index: usize) -> String {
        self.store.placeholder(index)
    }

    fn select_typed(
        &mut self,
        name: &str,
        types: &[projector::schema::Type],
        sql: &str,
        params: &[projector::schema::Value],
    ) -> Result<Vec<Vec<projector::schema::Value>>, projector::ProjectorError> {
        self.store.select_typed(name, types, sql, params)
    }
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
/// milliseconds within the book's bounds of a resettlement window
/// (`book::RESETTLEMENT_WINDOW_MIN_MS` to `_MAX_MS`).
pub fn parse_window(text: &str) -> Result<u64, String> {
    parse_window_within(text, book::RESETTLEMENT_WINDOW_MIN_MS, book::RESETTLEMENT_WINDOW_MAX_MS)
}

/// [`parse_window`] within the bounds of an idempotency window (`book::IDEMPOTENCY_WINDOW_MIN_MS`
/// to `_MAX_MS`: 30 s to a day).
pub fn parse_idempotency_window(text: &str) -> Result<u64, String> {
    parse_window_within(text, book::IDEMPOTENCY_WINDOW_MIN_MS, book::IDEMPOTENCY_WINDOW_MAX_MS)
}

fn parse_window_within(text: &str, min_ms: u64, max_ms: u64) -> Result<u64, String> {
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
    if !(min_ms..=max_ms).contains(&window) {
        return Err(format!("{text:?}: the window is {} to {}", show_ms(min_ms), show_ms(max_ms)));
    }
    Ok(window)
}

/// A whole number of days, hours, minutes or seconds (`3653d`, `30s`).
fn show_ms(ms: u64) -> String {
    let units = [(book::MILLIS_PER_DAY, "d"), (book::MILLIS_PER_HOUR, "h"), (60 * book::MILLIS_PER_SECOND, "m")];
    match units.iter().find(|(unit, _)| ms >= *unit && ms.is_multiple_of(*unit)) {
        Some((unit, name)) => format!("{}{name}", ms / unit),
        None => format!("{}s", ms / book::MILLIS_PER_SECOND),
    }
}

/// Makes the book's resettlement window `window_ms`: a journaled command when the recovered
/// book's differs (so that every replay, the snapshot follower and the projector decide with
/// the window in force at the time), nothing otherwise.
pub fn set_resettlement_window(engine: &engine::EngineHandle, window_ms: u64) -> anyhow::Result<()> {
    let current = engine.read(|book| book.config().resettlement_window_ms)?;
    set_window(engine, "resettlement", current, window_ms, book::Command::SetResettlementWindow { window_ms })
}

/// Makes the book's idempotency window `window_ms`, like [`set_resettlement_window`].
pub fn set_idempotency_window(engine: &engine::EngineHandle, window_ms: u64) -> anyhow::Result<()> {
    let current = engine.read(|book| book.config().idempotency_window_ms)?;
    set_window(engine, "idempotency", current, window_ms, book::Command::SetIdempotencyWindow { window_ms })
}

fn set_window(
    engine: &engine::EngineHandle,
    name: &str,
    current: u64,
    window_ms: u64,
    command: book::Command,
) -> anyhow::Result<()> {
    if current != window_ms {
        match engine.submit((command, book::Origin::system("serve")))? {
            Ok(_) => tracing::info!(window_ms, previous_ms = current, "{name} window set"),
            Err(rejection) => anyhow::bail!("{name} window refused: {rejection}"),
        }
    }
    Ok(())
}

/// Submits the monitoring rules of a JSON file (`serve --monitoring-rules`) when the book's
/// differ, like the resettlement window: journaled, so replays decide with the rules of the
/// time. Amounts are in the fx table's base currency.
pub fn set_monitoring_rules(engine: &engine::EngineHandle, path: &std::path::Path) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(path)
        .map_err(|error| anyhow::anyhow!("--monitoring-rules {}: {error}", path.display()))?;
    let body = gateway::monitoring::MonitoringRulesBody::from_json(&text)
        .map_err(|error| anyhow::anyhow!("--monitoring-rules {}: {error}", path.display()))?;
    let (current, base) = engine.read(|book| (*book.monitor().rules(), book.fx().base))?;
    let rules = body
        .to_rules(base)
        .map_err(|error| anyhow::anyhow!("--monitoring-rules {}: {}", path.display(), error.message))?;
    if rules != current {
        let command = book::Command::SetMonitoringRules { rules };
        match engine.submit((command, book::Origin::system("serve")))? {
            Ok(_) => tracing::info!(file = %path.display(), "monitoring rules set"),
            Err(rejection) => anyhow::bail!("monitoring rules refused: {rejection}"),
        }
    }
    Ok(())
}

/// The role limits of manual adjustments `serve` runs with: the defaults (trader and
/// settlement none, support 50.00, compliance 1000.00, admin unlimited, as amounts of `base`)
/// with each `ROLE=AMOUNT|none|unlimited` of `overrides` applied.
pub fn adjustment_limits(base: domain::Currency, overrides: &[String]) -> Result<book::AdjustmentLimits, String> {
    let amount = |text: &str| base.parse_amount(text).map_err(|_| format!("{text:?} is not an amount of {base}"));
    let mut limits = book::AdjustmentLimits([
        book::AdjustmentLimit::Forbidden,
        book::AdjustmentLimit::Forbidden,
        book::AdjustmentLimit::UpTo(amount("1000")?),
        book::AdjustmentLimit::UpTo(amount("50")?),
        book::AdjustmentLimit::Unlimited,
    ]);
    for text in overrides {
        let (role, limit) = text.split_once('=').ok_or_else(|| format!("{text:?}: expected ROLE=LIMIT"))?;
        let index = book::roles::NAMES
            .iter()
            .position(|(name, _)| *name == role)
            .ok_or_else(|| format!("{role:?}: roles are trader, settlement, compliance, support and admin"))?;
        limits.0[index] = match limit {
            "none" => book::AdjustmentLimit::Forbidden,
            "unlimited" => book::AdjustmentLimit::Unlimited,
            text => {
                let limit = amount(text)?;
                if limit.minor() < 0 {
                    return Err(format!("{text:?}: a limit is not negative"));
                }
                book::AdjustmentLimit::UpTo(limit)
            }
        };
    }
    Ok(limits)
}

/// Makes the book's adjustment limits those of `overrides` over the defaults, in the book's
/// base currency: a journaled command when they differ (replays decide with the limits in
/// force at the time), nothing otherwise.
pub fn set_adjustment_limits(engine: &engine::EngineHandle, overrides: &[String]) -> anyhow::Result<()> {
    let (base, current) = engine.read(|book| (book.fx().base, book.adjustments().limits))?;
    let limits = adjustment_limits(base, overrides).map_err(|error| anyhow::anyhow!("--adjustment-limit {error}"))?;
    if limits != current {
        let command = book::Command::SetAdjustmentLimits { limits };
        match engine.submit((command, book::Origin::system("serve")))? {
            Ok(_) => tracing::info!(?limits, "adjustment limits set"),
            Err(rejection) => anyhow::bail!("adjustment limits refused: {rejection}"),
        }
    }
    Ok(())
}

#[cfg(test)]
mod adjustment_limit_tests {
    use book::{AdjustmentLimit, AdjustmentLimits};
    use domain::{Currency, Money};

    #[test]
    fn limits_are_amounts_of_the_base_currency_over_the_defaults() {
        assert_eq!(super::adjustment_limits(Currency::EUR, &[]), Ok(AdjustmentLimits::default()));
        let jpy = Currency::parse("JPY").expect("JPY");
        let limits = super::adjustment_limits(jpy, &["support=5000".into(), "admin=none".into()]).expect("limits");
        assert_eq!(limits.0[3], AdjustmentLimit::UpTo(Money::from_minor(5_000)));
        assert_eq!(limits.0[4], AdjustmentLimit::Forbidden);
        assert_eq!(limits.0[2], AdjustmentLimit::UpTo(Money::from_minor(1_000)), "1000 yen, whole units");
        let eur = super::adjustment_limits(Currency::EUR, &["trader=unlimited".into()]).expect("limits");
        assert_eq!(eur.0[0], AdjustmentLimit::Unlimited);
        for bad in ["support", "clerk=1.00", "support=1.001", "support=-1.00", "support=lots"] {
            assert!(super::adjustment_limits(Currency::EUR, &[bad.to_string()]).is_err(), "{bad}");
        }
    }
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
        assert_eq!(super::parse_idempotency_window("30s"), Ok(30_000));
        assert_eq!(super::parse_idempotency_window("1d"), Ok(86_400_000));
        assert_eq!(super::parse_idempotency_window("29s"), Err("\"29s\": the window is 30s to 1d".to_string()));
        assert!(super::parse_idempotency_window("25h").is_err());
        assert_eq!(super::parse_window("0s"), Err("\"0s\": the window is 1s to 3653d".to_string()));
    }
}
