//! The migrations each backend applies, embedded at build time. Both folders hold the same file
//! names, each written in its own dialect.

pub struct Migration {
    pub version: i64,
    pub name: &'static str,
    pub sql: &'static str,
}

macro_rules! migrations {
    ($dir:literal: $($version:literal => $name:literal),* $(,)?) => {
        &[$(Migration {
            version: $version,
            name: $name,
            sql: include_str!(concat!("../../migrations/", $dir, "/", $name, ".sql")),
        }),*]
    };
}

pub const SQLITE: &[Migration] = migrations!("sqlite":
    1 => "0001_init",
    2 => "0002_seed_knowledge",
    3 => "0003_target_latency_and_purge",
    4 => "0004_security_and_db_health",
);

pub const POSTGRES: &[Migration] = migrations!("postgres":
    1 => "0001_init",
    2 => "0002_seed_knowledge",
    3 => "0003_target_latency_and_purge",
    4 => "0004_security_and_db_health",
);

#[cfg(test)]
mod tests {
    use super::*;

    fn files(dir: &str) -> Vec<String> {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("migrations")
            .join(dir);
        let mut names: Vec<String> = std::fs::read_dir(path)
            .unwrap()
            .map(|e| {
                e.unwrap()
                    .file_name()
                    .to_string_lossy()
                    .trim_end_matches(".sql")
                    .to_string()
            })
            .collect();
        names.sort();
        names
    }

    #[test]
    fn every_file_is_registered_and_both_backends_match() {
        let sqlite: Vec<&str> = SQLITE.iter().map(|m| m.name).collect();
        let postgres: Vec<&str> = POSTGRES.iter().map(|m| m.name).collect();
        assert_eq!(sqlite, postgres);
        assert_eq!(files("sqlite"), sqlite);
        assert_eq!(files("postgres"), postgres);
        for (i, m) in SQLITE.iter().enumerate() {
            assert_eq!(m.version, i as i64 + 1);
            assert!(m.name.starts_with(&format!("{:04}_", m.version)));
        }
    }
}
