//! FaultyJournal: injected sync failures poison the wrapper like the real backend does.

use std::fs;

use journal::{
    FaultKind, FaultPlan, FaultyJournal, FileJournal, FileJournalOptions, Journal, JournalError, MemoryJournal,
};
use tempfile::TempDir;

use crate::{payloads, sample_payloads, tiny_options};

#[test]
fn sync_failure_at_n_poisons_and_keeps_earlier_records() {
    let memory = MemoryJournal::new();
    let mut journal = FaultyJournal::new(memory.clone(), FaultPlan::fail_sync_at(3));
    let records = sample_payloads(6);
    for (i, record) in records.iter().enumerate().take(3) {
        assert_eq!(journal.append(record).unwrap(), i as u64);
    }
    assert!(matches!(journal.append(&records[3]), Err(JournalError::SyncFailed { .. })));
    assert!(journal.is_poisoned());
    for record in &records[4..] {
        assert!(matches!(journal.append(record), Err(JournalError::Poisoned)));
    }
    assert_eq!(journal.faults_fired(), 1);
    assert_eq!(journal.appends(), 6);
    assert_eq!(journal.next_position(), 3);
    assert_eq!(payloads(&journal), records[..3]);

    // "Reopen": the durable records are exactly the acknowledged ones, and appends continue.
    let mut reopened = memory.clone();
    assert_eq!(payloads(&reopened), records[..3]);
    assert_eq!(reopened.append(b"after restart").unwrap(), 3);
}

#[test]
fn written_but_unacknowledged_record_may_appear_after_reopen() {
    let memory = MemoryJournal::new();
    let plan = FaultPlan::fail_sync_at(1).with_kind(FaultKind::WrittenButUnacknowledged);
    let mut journal = FaultyJournal::new(memory.clone(), plan);
    journal.append(b"a").unwrap();
    assert!(matches!(journal.append(b"b"), Err(JournalError::SyncFailed { .. })));
    assert!(matches!(journal.append(b"c"), Err(JournalError::Poisoned)));
    assert_eq!(memory.records(), vec![b"a".to_vec(), b"b".to_vec()]);
}

#[test]
fn wraps_the_file_backend() {
    let dir = TempDir::new().unwrap();
    let records = sample_payloads(10);
    {
        let (file, _) = FileJournal::open(dir.path(), tiny_options()).unwrap();
        let mut journal = FaultyJournal::new(file, FaultPlan::fail_sync_at(7));
        for record in &records[..7] {
            journal.append(record).unwrap();
        }
        assert!(journal.append(&records[7]).is_err());
        assert!(matches!(journal.append(&records[8]), Err(JournalError::Poisoned)));
    }
    let (journal, report) = FileJournal::open(dir.path(), tiny_options()).unwrap();
    assert_eq!(report.records, 7);
    assert_eq!(payloads(&journal), records[..7]);
}

/// Index of the first failing append under a probability plan, within `limit` appends.
fn first_fault(seed: u64, per_million: u32, limit: u64) -> Option<u64> {
    let mut journal =
        FaultyJournal::new(MemoryJournal::new(), FaultPlan::fail_sync_with_probability(seed, per_million));
    (0..limit).find(|_| matches!(journal.append(b"x"), Err(JournalError::SyncFailed { .. })))
}

#[test]
fn probability_mode_is_deterministic_per_seed() {
    let seeds: Vec<Option<u64>> = (0..20).map(|seed| first_fault(seed, 100_000, 1_000)).collect();
    let again: Vec<Option<u64>> = (0..20).map(|seed| first_fault(seed, 100_000, 1_000)).collect();
    assert_eq!(seeds, again);
    assert!(seeds.iter().all(Option::is_some), "10% faults must fire within 1000 appends");
    let distinct: std::collections::BTreeSet<_> = seeds.iter().collect();
    assert!(distinct.len() > 3, "different seeds must fail at different appends: {seeds:?}");
}

#[test]
fn probability_extremes() {
    assert_eq!(first_fault(42, 0, 10_000), None);
    assert_eq!(first_fault(42, 1_000_000, 10), Some(0));
    assert_eq!(first_fault(42, u32::MAX, 10), Some(0));
}

#[test]
fn no_plan_never_fails() {
    let mut journal = FaultyJournal::new(MemoryJournal::new(), FaultPlan::none());
    for i in 0..100 {
        assert_eq!(journal.append(&[i]).unwrap(), u64::from(i));
    }
    assert_eq!(journal.faults_fired(), 0);
}

/// A full disk at write time does not poison: the disk stays full for the planned attempts,
/// then appends continue at the same position.
#[test]
fn storage_full_refuses_without_poisoning_and_recovers() {
    let memory = MemoryJournal::new();
    let plan = FaultPlan::fail_sync_at(1).with_kind(FaultKind::StorageFull).with_full_attempts(2);
    let mut journal = FaultyJournal::new(memory.clone(), plan);
    journal.append(b"a").unwrap();
    assert!(matches!(journal.append(b"b"), Err(JournalError::StorageFull { .. })));
    assert!(!journal.is_poisoned());
    assert!(journal.is_full());
    assert!(matches!(journal.check_space(10), Err(JournalError::StorageFull { .. })));
    assert!(matches!(journal.append(b"b"), Err(JournalError::StorageFull { .. })));
    assert!(!journal.is_full());
    journal.check_space(10).unwrap();
    assert_eq!(journal.append(b"b").unwrap(), 1);
    assert_eq!(memory.records(), vec![b"a".to_vec(), b"b".to_vec()]);
}

/// A real full disk: a 1 MiB tmpfs (needs root, as the project's machines and CI have; elsewhere
/// it fails saying so). The write fails with ENOSPC, the partial record is
/// cut, the journal is not poisoned, `check_space` says full until room is made, and the next
/// append lands at the next position; a reopen finds exactly the acknowledged records.
#[test]
fn real_enospc_on_a_small_tmpfs_cuts_the_partial_record_and_recovers() {
    let root = TempDir::new().unwrap();
    let mount = root.path().join("disk");
    fs::create_dir(&mount).unwrap();
    let mounted = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=1m", "tmpfs"])
        .arg(&mount)
        .status()
        .is_ok_and(|status| status.success());
    assert!(
        mounted,
        "this test mounts a 1 MiB tmpfs for a real ENOSPC and needs root (as the project's machines and CI run); `mount -t tmpfs` failed"
    );
    struct Unmount(std::path::PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount").arg(&self.0).status();
        }
    }
    let _unmount = Unmount(mount.clone());
    let dir = mount.join("journal");
    let options = FileJournalOptions { segment_bytes_max: 8 << 20, sync: true, min_next_position: 0 };
    let (mut journal, _) = FileJournal::open(&dir, options.clone()).unwrap();
    let filler = mount.join("filler");
    fs::write(&filler, vec![1u8; 600 * 1024]).unwrap();
    let record = vec![7u8; 100 * 1024];
    let mut acknowledged = 0u64;
    let error = loop {
        match journal.append(&record) {
            Ok(position) => {
                assert_eq!(position, acknowledged);
                acknowledged += 1;
            }
            Err(error) => break error,
        }
    };
    assert!(matches!(error, JournalError::StorageFull { .. }), "{error:?}");
    assert!(!journal.is_poisoned());
    assert!(matches!(journal.check_space(record.len()), Err(JournalError::StorageFull { .. })));
    let segment = journal::testing::last_segment(&dir).unwrap();
    assert_eq!(fs::metadata(&segment).unwrap().len(), acknowledged * (24 + record.len() as u64), "partial record cut");
    fs::remove_file(&filler).unwrap();
    journal.check_space(record.len()).unwrap();
    assert_eq!(journal.append(&record).unwrap(), acknowledged);
    drop(journal);
    let (journal, report) = FileJournal::open(&dir, options).unwrap();
    assert_eq!(report.truncated_bytes, 0);
    assert_eq!(payloads(&journal).len() as u64, acknowledged + 1);
}
