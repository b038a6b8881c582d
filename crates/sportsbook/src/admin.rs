//! `sportsbook admin`: operator API keys issued and listed offline, straight on a data
//! directory. The journal's directory lock makes this fail cleanly while a server holds it.

use std::path::Path;

use anyhow::{bail, Context};
use book::{scopes, Ack, Command};

use crate::open_engine;

/// Parses scope names (`trading`, `settlement`, `feed`, `compliance`, `admin`, or `all`) into
/// the book's scope bits.
pub fn parse_scopes(names: &[String]) -> anyhow::Result<u8> {
    let mut bits = 0u8;
    for name in names.iter().map(|name| name.trim()).filter(|name| !name.is_empty()) {
        if name == "all" {
            bits |= scopes::ALL;
            continue;
        }
        match scopes::NAMES.iter().find(|(known, _)| *known == name) {
            Some((_, bit)) => bits |= bit,
            None => bail!(
                "unknown scope `{name}`; scopes are {} or all",
                scopes::NAMES.iter().map(|(known, _)| *known).collect::<Vec<_>>().join(", ")
            ),
        }
    }
    if bits == 0 {
        bail!("name at least one scope");
    }
    Ok(bits)
}

/// The names of the scope bits, comma separated.
pub fn scope_names(bits: u8) -> String {
    scopes::NAMES.iter().filter(|(_, bit)| bits & bit != 0).map(|(name, _)| *name).collect::<Vec<_>>().join(",")
}

fn require_data_dir(dir: &Path) -> anyhow::Result<()> {
    if !dir.is_dir() {
        bail!("no data directory at {} (create it, or start `sportsbook serve` on it first)", dir.display());
    }
    Ok(())
}

/// Issues a key: prints it once; the book keeps only its SHA-256.
pub fn create_key(dir: &Path, name: &str, scope_bits: u8) -> anyhow::Result<()> {
    require_data_dir(dir)?;
    let (engine, _) = open_engine(dir)?;
    let key = format!("{}{}", gateway::API_KEY_PREFIX, gateway::random_token());
    let command = Command::CreateApiKey {
        name: name.to_string(),
        key_hash: gateway::sha256_hex(key.as_bytes()),
        scopes: scope_bits,
    };
    // Whoever runs the command at the console: the platform's own tool.
    let reply = engine.submit((command, book::Origin::system("admin_cli")));
    engine.shutdown();
    match reply.context("the engine refused the key")? {
        Ok(Ack::ApiKeyCreated(id)) => {
            println!("created API key {id} \"{name}\" with scopes {}", scope_names(scope_bits));
            println!("{key}");
            println!("keep it now: only its hash is stored. A running server loads new keys when it starts.");
            Ok(())
        }
        Ok(other) => bail!("unexpected reply {other:?}"),
        Err(rejection) => bail!("the book refused the key: {rejection}"),
    }
}

pub fn list_keys(dir: &Path) -> anyhow::Result<()> {
    require_data_dir(dir)?;
    let (engine, _) = open_engine(dir)?;
    let keys = engine.read(|book| book.api_keys().to_vec());
    engine.shutdown();
    let keys = keys.context("reading the keys")?;
    if keys.is_empty() {
        println!("no API keys (SPORTSBOOK_ADMIN_KEY, when set, is not stored)");
    }
    for key in keys {
        println!(
            "{}\t{}\t{}\tcreated {}{}",
            key.id,
            key.name,
            scope_names(key.scopes),
            gateway::format_rfc3339(key.created_at),
            if key.revoked { "\trevoked" } else { "" }
        );
    }
    Ok(())
}
