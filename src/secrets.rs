//! The cron secret and the JWT signing secret. Taken from the environment when set; otherwise
//! generated on first start into `DATA_DIR/secrets/` (directory 0700, files 0600) and read from
//! there on every later start. Botfleet never runs without auth.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::config::{Config, ConfigError};

#[derive(Clone)]
pub struct Secrets {
    pub cron_secret: String,
    pub jwt_secret: String,
}

impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secrets(hidden)")
    }
}

/// Where a secret came from, so start-up can say so once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    Environment,
    File(PathBuf),
    Generated(PathBuf),
}

pub struct Loaded {
    pub secrets: Secrets,
    pub cron_origin: Origin,
    pub jwt_origin: Origin,
}

pub fn secrets_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("secrets")
}

/// Resolves both secrets, generating what is missing.
pub fn load_or_generate(config: &Config) -> Result<Loaded, ConfigError> {
    let dir = secrets_dir(&config.data_dir);
    let (cron_secret, cron_origin) = resolve(&config.cron_secret, &dir, "cron_secret")?;
    let (jwt_secret, jwt_origin) = resolve(&config.jwt_secret, &dir, "jwt_secret")?;
    Ok(Loaded {
        secrets: Secrets {
            cron_secret,
            jwt_secret,
        },
        cron_origin,
        jwt_origin,
    })
}

fn resolve(
    from_env: &Option<String>,
    dir: &Path,
    file: &str,
) -> Result<(String, Origin), ConfigError> {
    if let Some(v) = from_env {
        return Ok((v.clone(), Origin::Environment));
    }
    let path = dir.join(file);
    if path.exists() {
        let meta = fs::metadata(&path).map_err(|e| io_err(&path, e))?;
        if meta.permissions().mode() & 0o077 != 0 {
            tracing::warn!(path = %path.display(), "secret file was readable by others; restricting it to its owner");
            fs::set_permissions(&path, fs::Permissions::from_mode(0o600))
                .map_err(|e| io_err(&path, e))?;
        }
        let value = fs::read_to_string(&path).map_err(|e| io_err(&path, e))?;
        let value = value.trim().to_string();
        if value.len() < 16 {
            return Err(ConfigError(format!(
                "invalid {}: the secret in it is too short; delete the file to have a new one generated",
                path.display()
            )));
        }
        return Ok((value, Origin::File(path)));
    }
    create_private_dir(dir)?;
    let value = random_hex(32)?;
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .map_err(|e| io_err(&path, e))?;
    f.write_all(value.as_bytes())
        .map_err(|e| io_err(&path, e))?;
    f.write_all(b"\n").map_err(|e| io_err(&path, e))?;
    f.sync_all().map_err(|e| io_err(&path, e))?;
    Ok((value, Origin::Generated(path)))
}

fn create_private_dir(dir: &Path) -> Result<(), ConfigError> {
    if !dir.exists() {
        fs::create_dir_all(dir).map_err(|e| io_err(dir, e))?;
    }
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700)).map_err(|e| io_err(dir, e))
}

fn io_err(path: &Path, e: std::io::Error) -> ConfigError {
    ConfigError(format!("cannot use {}: {e}", path.display()))
}

/// `bytes` random bytes from the operating system, as lowercase hex.
pub fn random_hex(bytes: usize) -> Result<String, ConfigError> {
    let mut buf = vec![0u8; bytes];
    getrandom::getrandom(&mut buf)
        .map_err(|e| ConfigError(format!("the operating system gave no randomness: {e}")))?;
    Ok(buf.iter().map(|b| format!("{b:02x}")).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generates_once_then_reads_back_with_owner_only_permissions() {
        let dir = tempfile::tempdir().unwrap();
        let config = Config::for_tests(dir.path().to_path_buf(), "sqlite::memory:".into());
        let config = Config {
            cron_secret: None,
            jwt_secret: None,
            ..config
        };
        let first = load_or_generate(&config).unwrap();
        assert!(matches!(first.cron_origin, Origin::Generated(_)));
        assert_eq!(first.secrets.cron_secret.len(), 64);
        let path = secrets_dir(dir.path()).join("cron_secret");
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let dir_mode = fs::metadata(secrets_dir(dir.path()))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(dir_mode & 0o777, 0o700);
        let second = load_or_generate(&config).unwrap();
        assert!(matches!(second.cron_origin, Origin::File(_)));
        assert_eq!(first.secrets.cron_secret, second.secrets.cron_secret);
        assert_ne!(first.secrets.cron_secret, first.secrets.jwt_secret);
    }
}
