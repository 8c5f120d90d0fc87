//! Database health checks for sentinel-db, per backend: what PostgreSQL's statistics views
//! say (`postgres.rs`) and what SQLite's pragmas say (`sqlite.rs`). Each reports figures,
//! findings, and — by name, with the reason — what it could not measure.

pub mod postgres;
pub mod sqlite;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::engine::{round1, FindingDraft, PassContext};
use crate::store::Severity;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Thresholds {
    #[serde(default = "eighty")]
    pub storage_warning_percent: f64,
    #[serde(default = "ninety_five")]
    pub storage_critical_percent: f64,
    #[serde(default = "eighty")]
    pub connections_warning_percent: f64,
    #[serde(default = "ninety_five")]
    pub connections_critical_percent: f64,
    /// An active query running longer than this is reported.
    #[serde(default = "one_second")]
    pub long_query_ms: f64,
    /// A statement whose mean time (pg_stat_statements) is over this is reported.
    #[serde(default = "one_second")]
    pub slow_query_mean_ms: f64,
    #[serde(default = "five_minutes")]
    pub idle_in_transaction_secs: f64,
    #[serde(default = "five_minutes")]
    pub replication_lag_secs: f64,
    #[serde(default = "twenty")]
    pub dead_tuple_percent: f64,
    /// Tables with fewer dead tuples than this are not worth a vacuum.
    #[serde(default = "thousand")]
    pub dead_tuple_min: i64,
    #[serde(default = "twenty")]
    pub free_page_percent: f64,
}

impl Default for Thresholds {
    fn default() -> Self {
        serde_json::from_value(Value::Object(Map::new())).expect("every field has a default")
    }
}

fn eighty() -> f64 {
    80.0
}
fn ninety_five() -> f64 {
    95.0
}
fn one_second() -> f64 {
    1000.0
}
fn five_minutes() -> f64 {
    300.0
}
fn twenty() -> f64 {
    20.0
}
fn thousand() -> i64 {
    1000
}

/// Figures and unmeasured figures of one database, reported under `data[section]`.
pub struct Report<'a> {
    pub ctx: &'a PassContext,
    pub section: &'static str,
    pub component: &'static str,
    not_measured: Map<String, Value>,
}

impl<'a> Report<'a> {
    pub fn new(ctx: &'a PassContext, section: &'static str, component: &'static str) -> Self {
        Self {
            ctx,
            section,
            component,
            not_measured: Map::new(),
        }
    }

    pub fn figure(&self, name: &str, value: impl Serialize) {
        self.ctx.data_in(self.section, name, value);
    }

    /// A figure that could not be measured, and why.
    pub fn not_measured(&mut self, name: &str, why: impl Into<String>) {
        self.not_measured
            .insert(name.to_string(), Value::String(why.into()));
        self.ctx.data_in(
            self.section,
            "not_measured",
            Value::Object(self.not_measured.clone()),
        );
    }

    pub fn finding(
        &self,
        severity: Severity,
        category: &str,
        title: &str,
        key: &str,
        description: String,
        metadata: Value,
    ) {
        self.ctx.finding(
            FindingDraft::new(severity, category, title)
                .component(self.component)
                .key(key)
                .description(description)
                .metadata(metadata),
        );
    }

    pub fn checked(&self) {
        self.ctx.check(self.component);
    }
}

/// Size against the quota, when one is set.
pub fn storage(r: &mut Report<'_>, size: u64, quota: Option<u64>, th: &Thresholds, what: &str) {
    r.figure("size_bytes", size);
    let Some(quota) = quota else {
        r.not_measured("size_percent_of_quota", "DB_STORAGE_QUOTA_BYTES is not set");
        return;
    };
    let pct = size as f64 * 100.0 / quota as f64;
    r.figure("quota_bytes", quota);
    r.figure("size_percent_of_quota", round1(pct));
    let severity = Severity::grade(
        pct,
        th.storage_warning_percent,
        th.storage_critical_percent,
        Severity::Critical,
    );
    if let Some(severity) = severity {
        r.finding(
            severity,
            "db",
            "Storage near quota",
            "size",
            format!(
                "{what} is {size} bytes, {pct:.1}% of the {quota}-byte quota (warning above {}%, critical above {}%)",
                th.storage_warning_percent, th.storage_critical_percent
            ),
            serde_json::json!({"size_bytes": size, "quota_bytes": quota, "percent": round1(pct)}),
        );
    }
}
