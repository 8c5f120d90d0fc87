//! Configuration from the environment (and an optional `.env`). Every variable is documented in
//! `.env.example`. A bad value stops start-up with one line naming the variable, what is wrong
//! with it and an example of a good value.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone)]
pub struct Config {
    pub database_url: String,
    pub database_max_connections: u32,
    pub bind_addr: SocketAddr,
    pub data_dir: PathBuf,
    /// From the environment; when absent, generated into the data directory (see `secrets`).
    pub cron_secret: Option<String>,
    pub jwt_secret: Option<String>,
    pub site_url: Option<String>,
    /// Paths under `SITE_URL` sentinel watches by default (`SITE_CRITICAL_PATHS`, default `/`).
    pub site_critical_paths: Vec<String>,
    /// More trusted roots for the HTTP probes (`PROBE_CA_FILE`, PEM).
    pub probe_ca_file: Option<PathBuf>,
    pub retention_days: u32,
    /// How long auth failures, refusals and admin changes are kept (`AUDIT_RETENTION_DAYS`).
    pub audit_retention_days: u32,
    /// Proxies whose `X-Forwarded-For` is believed (`TRUSTED_PROXIES`); never blocked.
    pub trusted_proxies: Vec<crate::net::IpNet>,
    /// Addresses oracle never blocks or rate-limits (`NEVER_BLOCK`).
    pub never_block: Vec<crate::net::IpNet>,
    /// A PostgreSQL sentinel-db watches besides botfleet's own, read-only.
    pub monitored_database_url: Option<String>,
    pub db_storage_quota_bytes: Option<u64>,
    pub backup_dir: Option<PathBuf>,
    pub backup_status_url: Option<String>,
    pub status_public: bool,
    pub metrics_token: Option<String>,
    pub log_format: LogFormat,
    pub log_level: String,
    /// `CRONS_FILE`; when unset, `crons.json` in the working directory, else the built-in copy.
    pub crons_file: Option<PathBuf>,
    pub scheduler_internal: bool,
    pub bot_timeout_ms: u64,
    pub lease_grace_ms: u64,
    pub circuit_failure_threshold: u32,
    pub circuit_open_secs: u64,
    pub heal_cooldown_secs: u64,
}

/// A configuration problem, printed as one line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError(pub String);

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigError {}

/// Variables that hold secrets: their values never appear in an error message.
const SECRET_VARS: &[&str] = &["CRON_SECRET", "JWT_SECRET", "METRICS_TOKEN"];

struct Env<'a> {
    lookup: &'a dyn Fn(&str) -> Option<String>,
}

impl Env<'_> {
    /// The value of `name`, with surrounding blanks removed; an empty value counts as unset.
    fn get(&self, name: &str) -> Option<String> {
        (self.lookup)(name)
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
    }

    fn parse<T: FromStr>(
        &self,
        name: &str,
        default: T,
        problem: &str,
        example: &str,
    ) -> Result<T, ConfigError> {
        match self.get(name) {
            None => Ok(default),
            Some(raw) => raw.parse().map_err(|_| bad(name, &raw, problem, example)),
        }
    }

    fn bool(&self, name: &str, default: bool) -> Result<bool, ConfigError> {
        match self.get(name) {
            None => Ok(default),
            Some(raw) => match raw.to_ascii_lowercase().as_str() {
                "true" | "1" | "yes" | "on" => Ok(true),
                "false" | "0" | "no" | "off" => Ok(false),
                _ => Err(bad(
                    name,
                    &raw,
                    "not true or false",
                    &format!("{name}=false"),
                )),
            },
        }
    }
}

fn bad(name: &str, raw: &str, problem: &str, example: &str) -> ConfigError {
    let shown = if SECRET_VARS.contains(&name) {
        "(hidden)".to_string()
    } else {
        format!("{raw:?}")
    };
    ConfigError(format!(
        "invalid {name}={shown}: {problem}; example: {example}"
    ))
}

impl Config {
    /// Reads `.env` (when present) and then the process environment, which wins.
    pub fn from_env() -> Result<Self, ConfigError> {
        load_dotenv(std::path::Path::new(".env"))?;
        Self::from_lookup(&|name| std::env::var(name).ok())
    }

    /// Builds the configuration from any source of variables (tests pass a map).
    pub fn from_lookup(lookup: &dyn Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let env = Env { lookup };

        let data_dir = PathBuf::from(env.get("DATA_DIR").unwrap_or_else(|| "data".into()));

        let database_url = match env.get("DATABASE_URL") {
            None => format!("sqlite://{}/botfleet.db", data_dir.display()),
            Some(url) => {
                let known = ["sqlite:", "postgres://", "postgresql://"];
                if !known.iter().any(|p| url.starts_with(p)) {
                    return Err(bad(
                        "DATABASE_URL",
                        &redact_url(&url),
                        "the scheme must be sqlite: or postgres://",
                        "DATABASE_URL=postgres://botfleet:secret@db.example.com:5432/botfleet",
                    ));
                }
                url
            }
        };
        let database_max_connections = env.parse(
            "DATABASE_MAX_CONNECTIONS",
            10u32,
            "not a whole number of connections",
            "DATABASE_MAX_CONNECTIONS=10",
        )?;
        if database_max_connections == 0 {
            return Err(bad(
                "DATABASE_MAX_CONNECTIONS",
                "0",
                "at least one connection is needed",
                "DATABASE_MAX_CONNECTIONS=10",
            ));
        }

        let bind_addr = match (env.get("BIND_ADDR"), env.get("PORT")) {
            (Some(raw), _) => raw.parse().map_err(|_| {
                bad(
                    "BIND_ADDR",
                    &raw,
                    "not an address and port",
                    "BIND_ADDR=0.0.0.0:3000",
                )
            })?,
            // Hosting platforms set PORT alone and expect the service on every interface.
            (None, Some(raw)) => {
                let port: u16 = raw
                    .parse()
                    .map_err(|_| bad("PORT", &raw, "not a port number (1-65535)", "PORT=3000"))?;
                SocketAddr::from(([0, 0, 0, 0], port))
            }
            (None, None) => SocketAddr::from(([127, 0, 0, 1], 3000)),
        };

        let cron_secret = env.get("CRON_SECRET");
        if let Some(s) = &cron_secret {
            if s.len() < 16 {
                return Err(bad(
                    "CRON_SECRET",
                    s,
                    &format!(
                        "too short to be safe ({} characters, at least 16 needed)",
                        s.len()
                    ),
                    "CRON_SECRET=$(openssl rand -hex 32)",
                ));
            }
        }
        let jwt_secret = env.get("JWT_SECRET");
        if let Some(s) = &jwt_secret {
            if s.len() < 32 {
                return Err(bad(
                    "JWT_SECRET",
                    s,
                    &format!(
                        "too short to be safe ({} characters, at least 32 needed)",
                        s.len()
                    ),
                    "JWT_SECRET=$(openssl rand -hex 32)",
                ));
            }
        }
        let metrics_token = env.get("METRICS_TOKEN");

        let site_url = match env.get("SITE_URL") {
            None => None,
            Some(raw) => {
                let ok = reqwest::Url::parse(&raw)
                    .map(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some())
                    .unwrap_or(false);
                if !ok {
                    return Err(bad(
                        "SITE_URL",
                        &raw,
                        "not an http(s) URL with a host",
                        "SITE_URL=https://www.example.com",
                    ));
                }
                Some(raw.trim_end_matches('/').to_string())
            }
        };

        let site_critical_paths: Vec<String> = match env.get("SITE_CRITICAL_PATHS") {
            None => vec!["/".to_string()],
            Some(raw) => {
                let paths: Vec<String> = raw
                    .split(',')
                    .map(|p| p.trim().to_string())
                    .filter(|p| !p.is_empty())
                    .collect();
                if paths.is_empty() || paths.iter().any(|p| !p.starts_with('/')) {
                    return Err(bad(
                        "SITE_CRITICAL_PATHS",
                        &raw,
                        "must be paths starting with /, separated by commas",
                        "SITE_CRITICAL_PATHS=/,/pricing,/docs",
                    ));
                }
                paths
            }
        };
        let probe_ca_file = env.get("PROBE_CA_FILE").map(PathBuf::from);
        if let Some(path) = &probe_ca_file {
            if let Err(problem) = crate::probes::tls::Tls::new(Some(path)) {
                return Err(ConfigError(format!(
                    "invalid PROBE_CA_FILE={}: {problem}; example: PROBE_CA_FILE=/etc/ssl/private-ca.pem",
                    path.display()
                )));
            }
        }

        let retention_days = env.parse(
            "RETENTION_DAYS",
            30u32,
            "not a whole number of days",
            "RETENTION_DAYS=30",
        )?;
        if retention_days == 0 {
            return Err(bad(
                "RETENTION_DAYS",
                "0",
                "must keep at least one day",
                "RETENTION_DAYS=30",
            ));
        }

        let audit_retention_days = env.parse(
            "AUDIT_RETENTION_DAYS",
            90u32,
            "not a whole number of days",
            "AUDIT_RETENTION_DAYS=90",
        )?;
        if audit_retention_days == 0 {
            return Err(bad(
                "AUDIT_RETENTION_DAYS",
                "0",
                "must keep at least one day",
                "AUDIT_RETENTION_DAYS=90",
            ));
        }
        let nets = |name: &str, example: &str| -> Result<Vec<crate::net::IpNet>, ConfigError> {
            match env.get(name) {
                None => Ok(Vec::new()),
                Some(raw) => crate::net::parse_list(&raw)
                    .map_err(|problem| bad(name, &raw, &problem, example)),
            }
        };
        let trusted_proxies = nets("TRUSTED_PROXIES", "TRUSTED_PROXIES=10.0.0.0/8,172.16.0.1")?;
        let never_block = nets("NEVER_BLOCK", "NEVER_BLOCK=203.0.113.10,198.51.100.0/24")?;
        let monitored_database_url = match env.get("MONITORED_DATABASE_URL") {
            None => None,
            Some(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
                Some(url)
            }
            Some(url) => {
                return Err(bad(
                    "MONITORED_DATABASE_URL",
                    &redact_url(&url),
                    "must be a postgres:// URL",
                    "MONITORED_DATABASE_URL=postgres://readonly:secret@db.example.com:5432/app",
                ))
            }
        };
        let db_storage_quota_bytes = match env.get("DB_STORAGE_QUOTA_BYTES") {
            None => None,
            Some(raw) => Some(raw.parse::<u64>().ok().filter(|b| *b > 0).ok_or_else(|| {
                bad(
                    "DB_STORAGE_QUOTA_BYTES",
                    &raw,
                    "not a positive number of bytes",
                    "DB_STORAGE_QUOTA_BYTES=8589934592",
                )
            })?),
        };
        let backup_dir = env.get("BACKUP_DIR").map(PathBuf::from);
        if let Some(dir) = &backup_dir {
            if !dir.is_dir() {
                return Err(bad(
                    "BACKUP_DIR",
                    &dir.display().to_string(),
                    "is not a directory",
                    "BACKUP_DIR=/var/backups/postgres",
                ));
            }
        }
        let backup_status_url = match env.get("BACKUP_STATUS_URL") {
            None => None,
            Some(raw) => {
                let ok =
                    reqwest::Url::parse(&raw).is_ok_and(|u| matches!(u.scheme(), "http" | "https"));
                if !ok {
                    return Err(bad(
                        "BACKUP_STATUS_URL",
                        &raw,
                        "not an http(s) URL",
                        "BACKUP_STATUS_URL=https://backups.example.com/status.json",
                    ));
                }
                Some(raw)
            }
        };

        let status_public = env.bool("STATUS_PUBLIC", true)?;

        let log_format = match env.get("LOG_FORMAT").as_deref() {
            None | Some("text") => LogFormat::Text,
            Some("json") => LogFormat::Json,
            Some(other) => {
                return Err(bad(
                    "LOG_FORMAT",
                    other,
                    "must be text or json",
                    "LOG_FORMAT=json",
                ))
            }
        };
        let log_level = env
            .get("LOG_LEVEL")
            .or_else(|| env.get("RUST_LOG"))
            .unwrap_or_else(|| "info".into());
        if tracing_subscriber::EnvFilter::try_new(&log_level).is_err() {
            return Err(bad(
                "LOG_LEVEL",
                &log_level,
                "not a level or tracing filter",
                "LOG_LEVEL=info",
            ));
        }

        let crons_file = env.get("CRONS_FILE").map(PathBuf::from);

        let scheduler_internal = match env.get("SCHEDULER").as_deref() {
            None | Some("external") => false,
            Some("internal") => true,
            Some(other) => {
                return Err(bad(
                    "SCHEDULER",
                    other,
                    "must be external (a cron service calls the triggers) or internal",
                    "SCHEDULER=internal",
                ))
            }
        };

        let bot_timeout_ms = env.parse(
            "BOT_TIMEOUT_MS",
            25_000u64,
            "not a whole number of milliseconds",
            "BOT_TIMEOUT_MS=25000",
        )?;
        if !(100..=900_000).contains(&bot_timeout_ms) {
            return Err(bad(
                "BOT_TIMEOUT_MS",
                &bot_timeout_ms.to_string(),
                "must be between 100 and 900000 milliseconds",
                "BOT_TIMEOUT_MS=25000",
            ));
        }
        let lease_grace_ms = env.parse(
            "LEASE_GRACE_MS",
            30_000u64,
            "not a whole number of milliseconds",
            "LEASE_GRACE_MS=30000",
        )?;
        let circuit_failure_threshold = env.parse(
            "CIRCUIT_FAILURE_THRESHOLD",
            5u32,
            "not a whole number of failed passes",
            "CIRCUIT_FAILURE_THRESHOLD=5",
        )?;
        if circuit_failure_threshold == 0 {
            return Err(bad(
                "CIRCUIT_FAILURE_THRESHOLD",
                "0",
                "must be at least 1",
                "CIRCUIT_FAILURE_THRESHOLD=5",
            ));
        }
        let circuit_open_secs = env.parse(
            "CIRCUIT_OPEN_SECS",
            60u64,
            "not a whole number of seconds",
            "CIRCUIT_OPEN_SECS=60",
        )?;
        let heal_cooldown_secs = env.parse(
            "HEAL_COOLDOWN_SECS",
            300u64,
            "not a whole number of seconds",
            "HEAL_COOLDOWN_SECS=300",
        )?;

        Ok(Config {
            database_url,
            database_max_connections,
            bind_addr,
            data_dir,
            cron_secret,
            jwt_secret,
            site_url,
            site_critical_paths,
            probe_ca_file,
            retention_days,
            audit_retention_days,
            trusted_proxies,
            never_block,
            monitored_database_url,
            db_storage_quota_bytes,
            backup_dir,
            backup_status_url,
            status_public,
            metrics_token,
            log_format,
            log_level,
            crons_file,
            scheduler_internal,
            bot_timeout_ms,
            lease_grace_ms,
            circuit_failure_threshold,
            circuit_open_secs,
            heal_cooldown_secs,
        })
    }

    /// A configuration for tests and benchmarks: SQLite under `data_dir`, fixed secrets.
    pub fn for_tests(data_dir: PathBuf, database_url: String) -> Self {
        let mut c = Config::from_lookup(&|_| None).expect("defaults are valid");
        c.data_dir = data_dir;
        c.database_url = database_url;
        c.cron_secret = Some("test-cron-secret-0123456789".into());
        c.jwt_secret = Some("test-jwt-secret-0123456789abcdef0123456789".into());
        c
    }
}

/// Loads `.env` into the process environment without overriding what is already set.
/// A file that exists but cannot be parsed stops start-up, naming the file and the problem.
pub fn load_dotenv(path: &std::path::Path) -> Result<(), ConfigError> {
    if !path.exists() {
        return Ok(());
    }
    match dotenvy::from_path(path) {
        Ok(()) => Ok(()),
        Err(dotenvy::Error::LineParse(line, index)) => Err(ConfigError(format!(
            "invalid {}: cannot parse the line {line:?} (at character {index}); lines look like NAME=value",
            path.display()
        ))),
        Err(e) => Err(ConfigError(format!("cannot read {}: {e}", path.display()))),
    }
}

/// A database URL with its password replaced, for messages.
pub fn redact_url(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        _ => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn with(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_lookup(&move |k| map.get(k).cloned())
    }

    #[test]
    fn defaults_are_sqlite_on_localhost() {
        let c = with(&[]).unwrap();
        assert_eq!(c.database_url, "sqlite://data/botfleet.db");
        assert_eq!(c.bind_addr.to_string(), "127.0.0.1:3000");
        assert_eq!(c.retention_days, 30);
        assert!(c.status_public);
    }

    #[test]
    fn port_alone_binds_every_interface() {
        let c = with(&[("PORT", "8080")]).unwrap();
        assert_eq!(c.bind_addr.to_string(), "0.0.0.0:8080");
        let c = with(&[("PORT", "8080"), ("BIND_ADDR", "127.0.0.1:9000")]).unwrap();
        assert_eq!(c.bind_addr.to_string(), "127.0.0.1:9000");
    }

    #[test]
    fn bad_values_name_the_variable_and_an_example() {
        let e = with(&[("BIND_ADDR", "nowhere")]).unwrap_err().0;
        assert!(e.contains("BIND_ADDR=\"nowhere\""), "{e}");
        assert!(e.contains("example: BIND_ADDR=0.0.0.0:3000"), "{e}");
        let e = with(&[("RETENTION_DAYS", "-3")]).unwrap_err().0;
        assert!(e.starts_with("invalid RETENTION_DAYS"), "{e}");
        let e = with(&[("DATABASE_URL", "mysql://x")]).unwrap_err().0;
        assert!(e.contains("sqlite: or postgres://"), "{e}");
        let e = with(&[("LOG_FORMAT", "yaml")]).unwrap_err().0;
        assert!(e.contains("LOG_FORMAT"), "{e}");
        let e = with(&[("STATUS_PUBLIC", "maybe")]).unwrap_err().0;
        assert!(e.contains("STATUS_PUBLIC"), "{e}");
        let e = with(&[("SITE_URL", "ftp://x")]).unwrap_err().0;
        assert!(e.contains("SITE_URL"), "{e}");
    }

    #[test]
    fn secret_values_are_never_echoed() {
        let e = with(&[("CRON_SECRET", "short")]).unwrap_err().0;
        assert!(e.contains("(hidden)") && !e.contains("short\""), "{e}");
    }

    #[test]
    fn data_dir_moves_the_default_database() {
        let c = with(&[("DATA_DIR", "/var/lib/botfleet")]).unwrap();
        assert_eq!(c.database_url, "sqlite:///var/lib/botfleet/botfleet.db");
    }
}
