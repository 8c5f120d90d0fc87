//! Vulnerable dependencies through OSV.dev: packages read from lock files (`Cargo.lock`,
//! `package-lock.json`), asked about in one `POST /v1/querybatch`, and each advisory found read
//! with `GET /v1/vulns/{id}` for its summary, severity and fixed versions. The base URL is
//! configurable. botfleet's own `Cargo.lock` is built in.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::store::Severity;

/// botfleet's own lock file, as it was built.
pub const OWN_CARGO_LOCK: &str = include_str!("../Cargo.lock");

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct Package {
    pub ecosystem: &'static str,
    pub name: String,
    pub version: String,
}

/// The registry packages of a `Cargo.lock` (path and git dependencies have no advisories).
pub fn parse_cargo_lock(text: &str) -> Result<Vec<Package>, String> {
    let mut out = BTreeSet::new();
    let mut current: HashMap<&str, String> = HashMap::new();
    let mut flush = |current: &mut HashMap<&str, String>| {
        if let (Some(name), Some(version), Some(source)) = (
            current.get("name"),
            current.get("version"),
            current.get("source"),
        ) {
            if source.starts_with("registry+") || source.starts_with("sparse+") {
                out.insert(Package {
                    ecosystem: "crates.io",
                    name: name.clone(),
                    version: version.clone(),
                });
            }
        }
        current.clear();
    };
    let mut packages = 0;
    for line in text.lines() {
        let line = line.trim();
        if line == "[[package]]" {
            flush(&mut current);
            packages += 1;
            continue;
        }
        if line.starts_with('[') {
            flush(&mut current);
            continue;
        }
        if let Some((key, value)) = line.split_once(" = ") {
            let key: &'static str = match key.trim() {
                "name" => "name",
                "version" => "version",
                "source" => "source",
                _ => continue,
            };
            current.insert(key, value.trim().trim_matches('"').to_string());
        }
    }
    flush(&mut current);
    if packages == 0 {
        return Err("no [[package]] entries: this is not a Cargo.lock".into());
    }
    Ok(out.into_iter().collect())
}

/// The packages of a `package-lock.json` (lockfile versions 1, 2 and 3).
pub fn parse_package_lock(text: &str) -> Result<Vec<Package>, String> {
    let doc: Value = serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
    let mut out = BTreeSet::new();
    if let Some(packages) = doc.get("packages").and_then(Value::as_object) {
        for (path, p) in packages {
            let Some(idx) = path.rfind("node_modules/") else {
                continue;
            };
            if p.get("link").and_then(Value::as_bool) == Some(true) {
                continue;
            }
            let name = &path[idx + "node_modules/".len()..];
            if let Some(version) = p.get("version").and_then(Value::as_str) {
                out.insert(Package {
                    ecosystem: "npm",
                    name: name.to_string(),
                    version: version.to_string(),
                });
            }
        }
    } else if let Some(deps) = doc.get("dependencies").and_then(Value::as_object) {
        fn walk(deps: &serde_json::Map<String, Value>, out: &mut BTreeSet<Package>) {
            for (name, d) in deps {
                if let Some(version) = d.get("version").and_then(Value::as_str) {
                    out.insert(Package {
                        ecosystem: "npm",
                        name: name.clone(),
                        version: version.to_string(),
                    });
                }
                if let Some(inner) = d.get("dependencies").and_then(Value::as_object) {
                    walk(inner, out);
                }
            }
        }
        walk(deps, &mut out);
    } else {
        return Err(
            "neither \"packages\" nor \"dependencies\": this is not a package-lock.json".into(),
        );
    }
    Ok(out.into_iter().collect())
}

/// Reads a lock file by its name.
pub fn parse_lock_file(name: &str, text: &str) -> Result<Vec<Package>, String> {
    if name.ends_with("Cargo.lock") {
        parse_cargo_lock(text)
    } else if name.ends_with("package-lock.json") || name.ends_with("npm-shrinkwrap.json") {
        parse_package_lock(text)
    } else {
        Err("only Cargo.lock and package-lock.json are understood".into())
    }
}

/// One advisory, as the report shows it.
#[derive(Debug, Clone, Serialize)]
pub struct Advisory {
    pub id: String,
    pub summary: String,
    pub aliases: Vec<String>,
    pub severity: Option<Severity>,
    pub cvss: Option<String>,
    pub fixed: Vec<String>,
}

#[derive(Deserialize)]
struct BatchResponse {
    results: Vec<BatchResult>,
}

#[derive(Deserialize, Default)]
struct BatchResult {
    #[serde(default)]
    vulns: Vec<VulnRef>,
}

#[derive(Deserialize)]
struct VulnRef {
    id: String,
}

pub struct Osv<'a> {
    pub http: &'a reqwest::Client,
    pub base: String,
    pub timeout: Duration,
}

impl Osv<'_> {
    /// Packages with advisories, and the advisories (fetched once each).
    pub async fn scan(
        &self,
        packages: &[Package],
    ) -> Result<BTreeMap<Package, Vec<Advisory>>, String> {
        let mut hits: BTreeMap<Package, Vec<String>> = BTreeMap::new();
        for chunk in packages.chunks(1000) {
            let queries: Vec<Value> = chunk
                .iter()
                .map(|p| json!({"package": {"name": p.name, "ecosystem": p.ecosystem}, "version": p.version}))
                .collect();
            let url = self.url("/v1/querybatch");
            let resp = self
                .send(
                    self.http.post(&url).json(&json!({ "queries": queries })),
                    &url,
                )
                .await?;
            let body: BatchResponse = resp
                .json()
                .await
                .map_err(|e| format!("OSV's answer was not a querybatch result: {e}"))?;
            if body.results.len() != chunk.len() {
                return Err(format!(
                    "OSV answered {} results for {} queries",
                    body.results.len(),
                    chunk.len()
                ));
            }
            for (p, r) in chunk.iter().zip(body.results) {
                if !r.vulns.is_empty() {
                    hits.insert(p.clone(), r.vulns.into_iter().map(|v| v.id).collect());
                }
            }
        }
        let ids: BTreeSet<&String> = hits.values().flatten().collect();
        let mut details: HashMap<String, Advisory> = HashMap::new();
        for id in ids {
            details.insert(id.clone(), self.vuln(id).await?);
        }
        Ok(hits
            .into_iter()
            .map(|(p, ids)| {
                let advisories = ids
                    .iter()
                    .filter_map(|id| details.get(id).cloned())
                    .collect();
                (p, advisories)
            })
            .collect())
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base.trim_end_matches('/'))
    }

    /// Sends one request with the client's timeout; anything but a 2xx is an error naming the URL.
    async fn send(
        &self,
        req: reqwest::RequestBuilder,
        url: &str,
    ) -> Result<reqwest::Response, String> {
        let resp = req.timeout(self.timeout).send().await.map_err(|e| {
            format!(
                "OSV ({url}) could not be reached: {}",
                crate::error::chain(&e)
            )
        })?;
        if !resp.status().is_success() {
            return Err(format!("OSV ({url}) answered {}", resp.status().as_u16()));
        }
        Ok(resp)
    }

    async fn vuln(&self, id: &str) -> Result<Advisory, String> {
        let url = self.url(&format!("/v1/vulns/{id}"));
        let resp = self.send(self.http.get(&url), &url).await?;
        let v: Value = resp
            .json()
            .await
            .map_err(|e| format!("OSV's advisory {id} was not JSON: {e}"))?;
        Ok(advisory(&v))
    }
}

/// An OSV vulnerability record, reduced to what a finding needs.
pub fn advisory(v: &Value) -> Advisory {
    let cvss = v["severity"]
        .as_array()
        .and_then(|s| {
            s.iter()
                .find(|e| e["type"].as_str().is_some_and(|t| t.starts_with("CVSS_V3")))
        })
        .and_then(|e| e["score"].as_str())
        .map(str::to_string);
    let word = v["database_specific"]["severity"].as_str().and_then(|w| {
        match w.to_ascii_uppercase().as_str() {
            "CRITICAL" => Some(Severity::Critical),
            "HIGH" => Some(Severity::Error),
            "MODERATE" | "MEDIUM" => Some(Severity::Warning),
            "LOW" => Some(Severity::Info),
            _ => None,
        }
    });
    let from_cvss = cvss
        .as_deref()
        .and_then(cvss3_base_score)
        .map(|score| match score {
            s if s >= 9.0 => Severity::Critical,
            s if s >= 7.0 => Severity::Error,
            s if s >= 4.0 => Severity::Warning,
            _ => Severity::Info,
        });
    let mut fixed = BTreeSet::new();
    for a in v["affected"].as_array().into_iter().flatten() {
        for r in a["ranges"].as_array().into_iter().flatten() {
            for e in r["events"].as_array().into_iter().flatten() {
                if let Some(f) = e["fixed"].as_str() {
                    fixed.insert(f.to_string());
                }
            }
        }
    }
    Advisory {
        id: v["id"].as_str().unwrap_or_default().to_string(),
        summary: v["summary"]
            .as_str()
            .or_else(|| v["details"].as_str())
            .unwrap_or("(no summary)")
            .lines()
            .next()
            .unwrap_or_default()
            .to_string(),
        aliases: v["aliases"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|x| x.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default(),
        severity: word.or(from_cvss),
        cvss,
        fixed: fixed.into_iter().collect(),
    }
}

/// The CVSS v3.x base score of a vector such as `CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H`.
pub fn cvss3_base_score(vector: &str) -> Option<f64> {
    let mut parts = vector.split('/');
    if !parts.next()?.starts_with("CVSS:3") {
        return None;
    }
    let m: HashMap<&str, &str> = parts.filter_map(|p| p.split_once(':')).collect();
    let changed = match *m.get("S")? {
        "U" => false,
        "C" => true,
        _ => return None,
    };
    let av = match *m.get("AV")? {
        "N" => 0.85,
        "A" => 0.62,
        "L" => 0.55,
        "P" => 0.2,
        _ => return None,
    };
    let ac = match *m.get("AC")? {
        "L" => 0.77,
        "H" => 0.44,
        _ => return None,
    };
    let pr = match (*m.get("PR")?, changed) {
        ("N", _) => 0.85,
        ("L", false) => 0.62,
        ("L", true) => 0.68,
        ("H", false) => 0.27,
        ("H", true) => 0.5,
        _ => return None,
    };
    let ui = match *m.get("UI")? {
        "N" => 0.85,
        "R" => 0.62,
        _ => return None,
    };
    let cia = |k: &str| -> Option<f64> {
        match *m.get(k)? {
            "H" => Some(0.56),
            "L" => Some(0.22),
            "N" => Some(0.0),
            _ => None,
        }
    };
    let iss = 1.0 - (1.0 - cia("C")?) * (1.0 - cia("I")?) * (1.0 - cia("A")?);
    let impact = if changed {
        7.52 * (iss - 0.029) - 3.25 * (iss - 0.02).powi(15)
    } else {
        6.42 * iss
    };
    if impact <= 0.0 {
        return Some(0.0);
    }
    let exploitability = 8.22 * av * ac * pr * ui;
    let raw = if changed {
        (1.08 * (impact + exploitability)).min(10.0)
    } else {
        (impact + exploitability).min(10.0)
    };
    // The specification's Roundup: the smallest one-decimal number not below the input.
    let int = (raw * 100_000.0).round() as i64;
    Some(if int % 10_000 == 0 {
        int as f64 / 100_000.0
    } else {
        ((int / 10_000) + 1) as f64 / 10.0
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cvss_scores_match_the_specification_examples() {
        assert_eq!(
            cvss3_base_score("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"),
            Some(9.8)
        );
        assert_eq!(
            cvss3_base_score("CVSS:3.1/AV:N/AC:L/PR:N/UI:R/S:C/C:L/I:L/A:N"),
            Some(6.1)
        );
        // 8.22 × 0.55 × 0.44 × 0.27 × 0.62 = 0.333; 6.42 × 0.22 = 1.412; 1.745 rounds up to 1.8.
        assert_eq!(
            cvss3_base_score("CVSS:3.0/AV:L/AC:H/PR:H/UI:R/S:U/C:L/I:N/A:N"),
            Some(1.8)
        );
        assert_eq!(
            cvss3_base_score("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:C/C:H/I:H/A:H"),
            Some(10.0)
        );
        assert_eq!(
            cvss3_base_score("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:N/I:N/A:N"),
            Some(0.0)
        );
        assert_eq!(cvss3_base_score("CVSS:4.0/AV:N/AC:L"), None);
    }

    #[test]
    fn own_lock_file_parses() {
        let p = parse_cargo_lock(OWN_CARGO_LOCK).unwrap();
        assert!(p.iter().any(|p| p.name == "axum"));
        assert!(
            p.iter().all(|p| p.name != "botfleet"),
            "the crate itself has no registry source"
        );
    }

    #[test]
    fn package_locks_of_every_version() {
        let v3 = r#"{"lockfileVersion": 3, "packages": {"": {"name": "app"},
            "node_modules/lodash": {"version": "4.17.20"},
            "node_modules/@scope/pkg": {"version": "1.0.0"},
            "node_modules/a/node_modules/lodash": {"version": "3.0.0"},
            "node_modules/local": {"link": true}}}"#;
        let p = parse_package_lock(v3).unwrap();
        let names: Vec<String> = p
            .iter()
            .map(|p| format!("{}@{}", p.name, p.version))
            .collect();
        assert_eq!(
            names,
            vec!["@scope/pkg@1.0.0", "lodash@3.0.0", "lodash@4.17.20"]
        );
        let v1 = r#"{"dependencies": {"minimist": {"version": "0.0.8", "dependencies": {"x": {"version": "1.0.0"}}}}}"#;
        assert_eq!(parse_package_lock(v1).unwrap().len(), 2);
        assert!(parse_package_lock("{}").is_err());
        assert!(parse_lock_file("yarn.lock", "").is_err());
    }

    #[test]
    fn advisories_take_the_stated_severity_then_the_vector() {
        let a = advisory(
            &json!({"id": "GHSA-1", "summary": "Prototype pollution", "database_specific": {"severity": "MODERATE"},
            "affected": [{"ranges": [{"type": "SEMVER", "events": [{"introduced": "0"}, {"fixed": "4.17.21"}]}]}]}),
        );
        assert_eq!(a.severity, Some(Severity::Warning));
        assert_eq!(a.fixed, vec!["4.17.21"]);
        let b = advisory(
            &json!({"id": "RUSTSEC-1", "details": "Use after free\nmore", "severity": [{"type": "CVSS_V3", "score": "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"}]}),
        );
        assert_eq!(
            (b.severity, b.summary.as_str()),
            (Some(Severity::Critical), "Use after free")
        );
        assert_eq!(advisory(&json!({"id": "X"})).severity, None);
    }
}
