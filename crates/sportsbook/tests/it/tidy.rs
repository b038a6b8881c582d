//! Tidy checks run with the tests: every Rust file says what it is for, and the core crates
//! depend on nothing that could bring IO, clocks or async into them.

use std::path::{Path, PathBuf};

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn rust_files(dir: &Path, files: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("readable directory").flatten() {
        let path = entry.path();
        if path.is_dir() {
            if !path.ends_with("target") {
                rust_files(&path, files);
            }
        } else if path.extension().is_some_and(|extension| extension == "rs") {
            files.push(path);
        }
    }
}

#[test]
fn every_rust_file_opens_with_a_doc_line() {
    let mut files = Vec::new();
    rust_files(&workspace().join("crates"), &mut files);
    assert!(files.len() > 20);
    for file in files {
        let text = std::fs::read_to_string(&file).expect("readable file");
        assert!(text.starts_with("//!"), "{} does not open with a //! line", file.display());
    }
}

/// The dependencies a crate may have: the book stays pure. `sha2` is pure computation: the
/// book hashes idempotency keys with it (`book::idempotency_key_hash`, stable and
/// collision-resistant, see ARCHITECTURE.md "Dependencies and why").
#[test]
fn core_crates_have_only_allowed_dependencies() {
    let allowed: &[(&str, &[&str])] = &[("domain", &["thiserror", "num-bigint"]), ("book", &["domain", "sha2"])];
    for (crate_name, allowed) in allowed {
        let manifest =
            std::fs::read_to_string(workspace().join("crates").join(crate_name).join("Cargo.toml")).expect("manifest");
        let dependencies =
            manifest.split("[dependencies]").nth(1).map(|rest| rest.split("\n[").next().unwrap_or("")).unwrap_or("");
        for line in dependencies.lines().filter(|line| line.contains('=')) {
            let name = line.split('=').next().unwrap_or("").trim();
            assert!(allowed.contains(&name), "{crate_name} must not depend on {name}");
        }
    }
}
