//! Where the server's secrets come from: the JWT signing secret (the environment, a file, or
//! one generated once and kept in the data directory) and the bootstrap operator key. Never
//! from the repository.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};

pub const JWT_SECRET_ENV: &str = "SPORTSBOOK_JWT_SECRET";
pub const JWT_SECRET_FILE_ENV: &str = "SPORTSBOOK_JWT_SECRET_FILE";
pub const ADMIN_KEY_ENV: &str = "SPORTSBOOK_ADMIN_KEY";
/// The generated secret's file in the data directory.
pub const JWT_SECRET_FILE_NAME: &str = "jwt-secret";
/// Bytes of a JWT secret: HS256 wants at least as many as its 256-bit output.
pub const JWT_SECRET_BYTES_MIN: usize = 32;
/// Bytes of a secret file read at start-up.
const SECRET_FILE_BYTES_MAX: u64 = 64 * 1024;
/// Below this length a bootstrap key is accepted but logged as fit for a demo only.
pub const ADMIN_KEY_BYTES_RECOMMENDED: usize = 32;

/// Where the JWT secret came from, for the start-up log (never the secret itself).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SecretSource {
    Environment,
    File(PathBuf),
    Generated(PathBuf),
    DataDirectory(PathBuf),
}

impl std::fmt::Display for SecretSource {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SecretSource::Environment => write!(formatter, "${JWT_SECRET_ENV}"),
            SecretSource::File(path) => write!(formatter, "{} (${JWT_SECRET_FILE_ENV})", path.display()),
            SecretSource::Generated(path) => write!(formatter, "{} (generated now)", path.display()),
            SecretSource::DataDirectory(path) => write!(formatter, "{}", path.display()),
        }
    }
}

/// The value of an environment variable; unset and empty are the same.
pub fn env_value(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|value| !value.is_empty())
}

fn checked(secret: Vec<u8>, source: SecretSource) -> anyhow::Result<(Vec<u8>, SecretSource)> {
    if secret.len() < JWT_SECRET_BYTES_MIN {
        bail!(
            "the JWT secret from {source} has {} bytes; it needs at least {JWT_SECRET_BYTES_MIN} (for example `openssl rand -hex 32`)",
            secret.len()
        );
    }
    Ok((secret, source))
}

fn read_secret_file(path: &Path) -> anyhow::Result<Vec<u8>> {
    let metadata =
        std::fs::metadata(path).with_context(|| format!("reading the JWT secret file {}", path.display()))?;
    if metadata.len() > SECRET_FILE_BYTES_MAX {
        bail!("the JWT secret file {} is larger than {SECRET_FILE_BYTES_MAX} bytes", path.display());
    }
    let mut secret = std::fs::read(path).with_context(|| format!("reading the JWT secret file {}", path.display()))?;
    // A trailing newline from `echo` or an editor is not part of the secret.
    while secret.last().is_some_and(u8::is_ascii_whitespace) {
        secret.pop();
    }
    Ok(secret)
}

/// The JWT secret: `SPORTSBOOK_JWT_SECRET`, or the file `SPORTSBOOK_JWT_SECRET_FILE` names, or
/// `DIR/jwt-secret`, created on first start with 32 random bytes (hex) and mode 0600 so that
/// tokens survive restarts.
pub fn jwt_secret(
    from_env: Option<String>,
    file_from_env: Option<PathBuf>,
    data_dir: &Path,
) -> anyhow::Result<(Vec<u8>, SecretSource)> {
    match (from_env, file_from_env) {
        (Some(_), Some(_)) => bail!("set either {JWT_SECRET_ENV} or {JWT_SECRET_FILE_ENV}, not both"),
        (Some(secret), None) => checked(secret.into_bytes(), SecretSource::Environment),
        (None, Some(path)) => checked(read_secret_file(&path)?, SecretSource::File(path)),
        (None, None) => {
            let path = data_dir.join(JWT_SECRET_FILE_NAME);
            let generated = create_secret_file(&path)?;
            let source = if generated {
                SecretSource::Generated(path.clone())
            } else {
                SecretSource::DataDirectory(path.clone())
            };
            checked(read_secret_file(&path)?, source)
        }
    }
}

/// Creates `path` with a fresh secret unless it exists; true when it created it.
fn create_secret_file(path: &Path) -> anyhow::Result<bool> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = match options.open(path) {
        Ok(file) => file,
        Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => return Ok(false),
        Err(error) => return Err(error).with_context(|| format!("creating {}", path.display())),
    };
    // 32 random bytes from the operating system's generator, kept as hex text.
    let secret = gateway::random_token();
    file.write_all(secret.as_bytes())
        .and_then(|()| file.write_all(b"\n"))
        .and_then(|()| file.sync_all())
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(true)
}

/// The bootstrap operator key from `SPORTSBOOK_ADMIN_KEY`: it must carry the API key prefix so
/// that it is never mistaken for a player's token.
pub fn admin_key(from_env: Option<String>) -> anyhow::Result<Option<String>> {
    let Some(key) = from_env else { return Ok(None) };
    let prefix = gateway::API_KEY_PREFIX;
    if !key.starts_with(prefix) || key.len() == prefix.len() {
        bail!("{ADMIN_KEY_ENV} must start with `{prefix}` and have more after it (for example `{prefix}` followed by `openssl rand -hex 32`); refusing to start");
    }
    if !key.bytes().all(|byte| byte.is_ascii_graphic()) {
        bail!("{ADMIN_KEY_ENV} must be printable ASCII without spaces; refusing to start");
    }
    Ok(Some(key))
}
