//! Checks of the Prometheus text format: our own (always), and `promtool check metrics` where
//! it is installed. CI sets `REQUIRE_PROMTOOL=1`, so there a missing promtool fails.

use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::process::{Command, Stdio};

/// Every sample belongs to a declared family, parses, and appears once.
pub fn check_exposition(text: &str) {
    let mut types: HashMap<String, String> = HashMap::new();
    let mut seen = HashSet::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut parts = rest.split(' ');
            let name = parts.next().unwrap().to_string();
            let kind = parts.next().unwrap().to_string();
            assert!(
                ["counter", "gauge", "histogram"].contains(&kind.as_str()),
                "{line}"
            );
            assert!(
                types.insert(name, kind).is_none(),
                "family declared twice: {line}"
            );
            continue;
        }
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        let (series, value) = line
            .rsplit_once(' ')
            .unwrap_or_else(|| panic!("no value: {line}"));
        assert!(
            value.parse::<f64>().is_ok() || ["+Inf", "-Inf", "NaN"].contains(&value),
            "bad value: {line}"
        );
        let name = series.split('{').next().unwrap();
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| {
                name.strip_suffix(s)
                    .filter(|f| types.get(*f).map(String::as_str) == Some("histogram"))
            })
            .unwrap_or(name);
        assert!(
            types.contains_key(family),
            "sample before its # TYPE: {line}"
        );
        assert!(seen.insert(series.to_string()), "series twice: {series}");
    }
}

pub fn promtool(text: &str) {
    let Ok(mut child) = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    else {
        if std::env::var("REQUIRE_PROMTOOL").is_ok_and(|v| v == "1") {
            panic!("REQUIRE_PROMTOOL=1 but promtool is not installed");
        }
        eprintln!("promtool is not installed: only botfleet's own format check ran");
        return;
    };
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
