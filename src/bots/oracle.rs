//! oracle: security. Brute force (more than 5 auth failures from one address in 15 minutes),
//! API abuse (more than 1,000 requests a minute from one address, counted by every replica's
//! middleware), refused admin access, and vulnerable dependencies through OSV.dev over lock
//! files (botfleet's own `Cargo.lock` by default). Its fixes block or rate-limit an address.

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::{check, parse_config, Bot, Recheck};
use crate::config::Config;
use crate::engine::{BotError, FindingDraft, PassContext};
use crate::error::FieldError;
use crate::osv::{self, Osv, Package};
use crate::store::Severity;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OracleConfig {
    /// More auth failures than this from one address within the window is brute force.
    #[serde(default = "five")]
    pub brute_force_failures: i64,
    #[serde(default = "fifteen")]
    pub brute_force_window_minutes: i64,
    /// More requests than this from one address in one minute is abuse.
    #[serde(default = "thousand")]
    pub abuse_requests_per_minute: i64,
    /// How far back abuse and refused admin access are looked for (the schedule's interval).
    #[serde(default = "thirty")]
    pub window_minutes: i64,
    #[serde(default = "yes")]
    pub scan_dependencies: bool,
    #[serde(default = "osv_url")]
    pub osv_url: String,
    /// `Cargo.lock` or `package-lock.json` files to scan, besides botfleet's own.
    #[serde(default)]
    pub lock_files: Vec<String>,
    #[serde(default = "yes")]
    pub include_botfleet_lock_file: bool,
    #[serde(default = "twenty_seconds")]
    pub osv_timeout_ms: u64,
}

fn five() -> i64 {
    5
}
fn fifteen() -> i64 {
    15
}
fn thousand() -> i64 {
    1000
}
fn thirty() -> i64 {
    30
}
fn yes() -> bool {
    true
}
fn osv_url() -> String {
    "https://api.osv.dev".into()
}
fn twenty_seconds() -> u64 {
    20_000
}

#[derive(Default)]
pub struct Oracle;

fn address_finding(
    severity: Severity,
    title: &str,
    key: &str,
    address: &str,
    description: String,
    metadata: Value,
) -> FindingDraft {
    let mut metadata = metadata;
    metadata["address"] = json!(address);
    FindingDraft::new(severity, "security", title)
        .component(&format!("address:{address}"))
        .key(key)
        .description(description)
        .metadata(metadata)
}

#[async_trait]
impl Bot for Oracle {
    fn name(&self) -> &'static str {
        "oracle"
    }

    fn display_name(&self) -> &'static str {
        "Oracle"
    }

    fn description(&self) -> &'static str {
        "Security: brute force, API abuse, refused admin access, vulnerable dependencies (OSV.dev)"
    }

    fn default_config(&self, _env: &Config) -> Value {
        json!({
            "brute_force_failures": five(),
            "brute_force_window_minutes": fifteen(),
            "abuse_requests_per_minute": thousand(),
            "window_minutes": thirty(),
            "scan_dependencies": true,
            "osv_url": osv_url(),
            "lock_files": [],
            "include_botfleet_lock_file": true,
            "osv_timeout_ms": twenty_seconds(),
        })
    }

    fn validate_config(&self, config: &Value) -> Vec<FieldError> {
        let c: OracleConfig = match parse_config(config) {
            Ok(c) => c,
            Err(e) => return e,
        };
        let mut errors = Vec::new();
        for (name, v) in [
            ("brute_force_failures", c.brute_force_failures),
            ("brute_force_window_minutes", c.brute_force_window_minutes),
            ("abuse_requests_per_minute", c.abuse_requests_per_minute),
            ("window_minutes", c.window_minutes),
        ] {
            if v < 1 {
                errors.push(FieldError::new(
                    name,
                    format!("must be at least 1, got {v}"),
                ));
            }
        }
        check::http_url(&mut errors, "osv_url", &c.osv_url);
        for (i, f) in c.lock_files.iter().enumerate() {
            if !(f.ends_with("Cargo.lock") || f.ends_with("package-lock.json")) {
                errors.push(FieldError::new(
                    format!("lock_files[{i}]"),
                    "must be a Cargo.lock or a package-lock.json",
                ));
            }
        }
        if c.osv_timeout_ms == 0 || c.osv_timeout_ms > 60_000 {
            errors.push(FieldError::new(
                "osv_timeout_ms",
                "must be from 1 to 60000 milliseconds",
            ));
        }
        errors
    }

    async fn run(&self, ctx: &PassContext) -> Result<(), BotError> {
        let c: OracleConfig = ctx.config_as()?;
        let now = ctx.now();
        let store = ctx.store.as_ref();
        // This process's counts first, so they are in what follows.
        if let Err(e) = crate::security::flush_counts(&ctx.process.addresses, store, now).await {
            ctx.note(format!(
                "this process's request counts could not be written: {e}"
            ));
        }

        let failures = store
            .events_by_address(
                "auth_failure",
                now - chrono::Duration::minutes(c.brute_force_window_minutes),
            )
            .await
            .map_err(|e| BotError(format!("auth failures could not be read: {e}")))?;
        let brute: Vec<_> = failures
            .iter()
            .filter(|f| f.count > c.brute_force_failures)
            .collect();
        ctx.data("auth_failures", json!({"window_minutes": c.brute_force_window_minutes, "addresses": failures.len(), "over_threshold": brute.len()}));
        for f in brute {
            ctx.finding(address_finding(
                Severity::Error,
                "Brute force",
                "brute-force",
                &f.address,
                format!(
                    "{} failed authentications from {} in {} minutes (more than {}); the last at {}",
                    f.count,
                    f.address,
                    c.brute_force_window_minutes,
                    c.brute_force_failures,
                    f.last_at.to_rfc3339()
                ),
                json!({"failures": f.count, "last_at": f.last_at}),
            ));
        }
        ctx.check("security:auth");

        let busy = store
            .busy_addresses(
                now - chrono::Duration::minutes(c.window_minutes),
                c.abuse_requests_per_minute,
            )
            .await
            .map_err(|e| BotError(format!("request counts could not be read: {e}")))?;
        let mut peaks: BTreeMap<&str, (i64, chrono::DateTime<chrono::Utc>)> = BTreeMap::new();
        for m in &busy {
            let e = peaks
                .entry(m.address.as_str())
                .or_insert((0, m.minute_start));
            if m.requests > e.0 {
                *e = (m.requests, m.minute_start);
            }
        }
        ctx.data(
            "abuse",
            json!({"window_minutes": c.window_minutes, "addresses_over_threshold": peaks.len()}),
        );
        for (address, (peak, minute)) in &peaks {
            ctx.finding(address_finding(
                Severity::Warning,
                "API abuse",
                "abuse",
                address,
                format!(
                    "{address} made {peak} requests in the minute from {} (more than {} a minute)",
                    minute.to_rfc3339(),
                    c.abuse_requests_per_minute
                ),
                json!({"peak_requests_per_minute": peak, "minute": minute}),
            ));
        }
        ctx.check("security:requests");

        let refused = store
            .events_by_address(
                "forbidden",
                now - chrono::Duration::minutes(c.window_minutes),
            )
            .await
            .map_err(|e| BotError(format!("refusals could not be read: {e}")))?;
        ctx.data(
            "refused_admin_access",
            json!({"window_minutes": c.window_minutes, "addresses": refused.len()}),
        );
        for r in &refused {
            ctx.finding(address_finding(
                Severity::Warning,
                "Refused admin access",
                "forbidden",
                &r.address,
                format!(
                    "{} requests from {} were refused for too little access in {} minutes; the last at {} (see /api/admin/audit?kind=forbidden)",
                    r.count,
                    r.address,
                    c.window_minutes,
                    r.last_at.to_rfc3339()
                ),
                json!({"refusals": r.count, "last_at": r.last_at}),
            ));
        }
        ctx.check("security:admin");

        if c.scan_dependencies {
            dependencies(ctx, &c).await;
        } else {
            ctx.note("dependency scanning is off (scan_dependencies)");
        }
        Ok(())
    }

    /// A restricted address is contained: that is the fix verified.
    async fn recheck(
        &self,
        ctx: &PassContext,
        finding: &FindingDraft,
    ) -> Result<Recheck, BotError> {
        let Some(address) = finding.metadata["address"].as_str() else {
            return Ok(Recheck::Unknown("the finding names no address".into()));
        };
        let blocks = ctx
            .store
            .list_blocks(ctx.now())
            .await
            .map_err(|e| BotError(format!("blocks could not be read: {e}")))?;
        Ok(if blocks.iter().any(|b| b.address == address) {
            Recheck::Gone
        } else {
            Recheck::Present
        })
    }
}

async fn dependencies(ctx: &PassContext, c: &OracleConfig) {
    let mut files: Vec<(String, Result<Vec<Package>, String>)> = Vec::new();
    if c.include_botfleet_lock_file {
        files.push((
            "botfleet/Cargo.lock".into(),
            osv::parse_cargo_lock(osv::OWN_CARGO_LOCK),
        ));
    }
    for path in &c.lock_files {
        let parsed = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read it: {e}"))
            .and_then(|text| osv::parse_lock_file(path, &text));
        files.push((path.clone(), parsed));
    }
    if files.is_empty() {
        ctx.note("no lock files to scan (lock_files, include_botfleet_lock_file)");
        return;
    }
    let client = Osv {
        http: &ctx.http,
        base: c.osv_url.clone(),
        timeout: Duration::from_millis(c.osv_timeout_ms).min(ctx.remaining()),
    };
    let mut summary = serde_json::Map::new();
    for (name, parsed) in files {
        let packages = match parsed {
            Ok(p) => p,
            Err(why) => {
                ctx.note(format!("{name}: {why}"));
                summary.insert(name, json!({"error": why}));
                continue;
            }
        };
        match client.scan(&packages).await {
            Ok(vulnerable) => {
                summary.insert(
                    name.clone(),
                    json!({"packages": packages.len(), "vulnerable": vulnerable.len()}),
                );
                let component = format!("deps:{name}");
                for (p, advisories) in vulnerable {
                    let severity = advisories
                        .iter()
                        .filter_map(|a| a.severity)
                        .max()
                        .unwrap_or(Severity::Warning);
                    let list = advisories
                        .iter()
                        .map(|a| {
                            let fixed = if a.fixed.is_empty() {
                                "no fixed version yet".into()
                            } else {
                                format!("fixed in {}", a.fixed.join(", "))
                            };
                            format!("{} ({}; {fixed})", a.id, a.summary)
                        })
                        .collect::<Vec<_>>()
                        .join("; ");
                    ctx.finding(
                        FindingDraft::new(severity, "dependencies", "Vulnerable dependency")
                            .component(&component)
                            .key(&format!("{}@{}", p.name, p.version))
                            .description(format!(
                                "{} {} ({}) in {name}: {list}",
                                p.name, p.version, p.ecosystem
                            ))
                            .metadata(
                                json!({"package": p, "advisories": advisories, "lock_file": name}),
                            ),
                    );
                }
                ctx.check(&component);
            }
            Err(why) => {
                ctx.note(format!("{name} was not checked for vulnerabilities: {why}"));
                summary.insert(name, json!({"packages": packages.len(), "error": why}));
            }
        }
    }
    ctx.data("dependencies", summary);
}
