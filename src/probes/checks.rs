//! What to expect of an answer: JSON-pointer assertions, a keyword or regex in the body, the
//! content type, a CORS preflight's allow headers, and rate-limit headers.

use axum::http::HeaderMap;
use regex::Regex;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::FieldError;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JsonType {
    String,
    Number,
    Integer,
    Boolean,
    Array,
    Object,
    Null,
}

impl JsonType {
    fn matches(self, v: &Value) -> bool {
        match self {
            JsonType::String => v.is_string(),
            JsonType::Number => v.is_number(),
            JsonType::Integer => v.is_i64() || v.is_u64(),
            JsonType::Boolean => v.is_boolean(),
            JsonType::Array => v.is_array(),
            JsonType::Object => v.is_object(),
            JsonType::Null => v.is_null(),
        }
    }

    fn name(self) -> &'static str {
        match self {
            JsonType::String => "string",
            JsonType::Number => "number",
            JsonType::Integer => "integer",
            JsonType::Boolean => "boolean",
            JsonType::Array => "array",
            JsonType::Object => "object",
            JsonType::Null => "null",
        }
    }

    fn with_article(self) -> String {
        let article = if matches!(self, JsonType::Integer | JsonType::Array | JsonType::Object) {
            "an"
        } else {
            "a"
        };
        format!("{article} {}", self.name())
    }

    fn of(v: &Value) -> &'static str {
        match v {
            Value::String(_) => "string",
            Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
            Value::Number(_) => "number",
            Value::Bool(_) => "boolean",
            Value::Array(_) => "array",
            Value::Object(_) => "object",
            Value::Null => "null",
        }
    }
}

/// A condition on the value at a JSON pointer. Every condition given must hold.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Assertion {
    /// RFC 6901, e.g. `/data/items/0/id`; empty for the whole document.
    pub pointer: String,
    /// `false`: the pointer must lead nowhere.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exists: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub equals: Option<Value>,
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<JsonType>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gt: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gte: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lt: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lte: Option<f64>,
}

impl Assertion {
    pub fn validate(&self, field: &str) -> Vec<FieldError> {
        let mut errors = Vec::new();
        if !(self.pointer.is_empty() || self.pointer.starts_with('/')) {
            errors.push(FieldError::new(
                format!("{field}.pointer"),
                "must be a JSON pointer starting with /, or empty",
            ));
        }
        let any = self.exists.is_some()
            || self.equals.is_some()
            || self.kind.is_some()
            || [self.gt, self.gte, self.lt, self.lte]
                .iter()
                .any(Option::is_some);
        if !any {
            errors.push(FieldError::new(
                field,
                "needs at least one of exists, equals, type, gt, gte, lt, lte",
            ));
        }
        for (name, v) in [
            ("gt", self.gt),
            ("gte", self.gte),
            ("lt", self.lt),
            ("lte", self.lte),
        ] {
            if v.is_some_and(|v| !v.is_finite()) {
                errors.push(FieldError::new(
                    format!("{field}.{name}"),
                    "must be a finite number",
                ));
            }
        }
        errors
    }
}

/// An assertion that did not hold.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Failure {
    pub pointer: String,
    pub expected: String,
    pub actual: String,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let at = if self.pointer.is_empty() {
            "(document)"
        } else {
            &self.pointer
        };
        write!(f, "{at}: expected {}, got {}", self.expected, self.actual)
    }
}

fn show(v: &Value) -> String {
    let mut s = v.to_string();
    if s.len() > 120 {
        let mut cut = 117;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
        s.push_str("...");
    }
    s
}

fn num(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        v.to_string()
    }
}

/// Every assertion that fails on `doc`, naming the pointer, the expectation and what was there.
pub fn check_assertions(doc: &Value, assertions: &[Assertion]) -> Vec<Failure> {
    let mut out = Vec::new();
    for a in assertions {
        let found = doc.pointer(&a.pointer);
        let fail = |expected: String, actual: String| Failure {
            pointer: a.pointer.clone(),
            expected,
            actual,
        };
        if a.exists == Some(false) {
            if let Some(v) = found {
                out.push(fail("nothing there".into(), show(v)));
            }
            continue;
        }
        let Some(v) = found else {
            out.push(fail(
                "a value".into(),
                "nothing (the pointer leads nowhere)".into(),
            ));
            continue;
        };
        if let Some(want) = &a.equals {
            if v != want {
                out.push(fail(show(want), show(v)));
            }
        }
        if let Some(t) = a.kind {
            if !t.matches(v) {
                out.push(fail(
                    t.with_article(),
                    format!("{} {}", JsonType::of(v), show(v)),
                ));
            }
        }
        let bounds = [("> ", a.gt), (">= ", a.gte), ("< ", a.lt), ("<= ", a.lte)];
        if bounds.iter().any(|(_, b)| b.is_some()) {
            match v.as_f64() {
                None => out.push(fail(
                    format!(
                        "a number {}",
                        bounds
                            .iter()
                            .filter_map(|(op, b)| b.map(|b| format!("{op}{}", num(b))))
                            .collect::<Vec<_>>()
                            .join(" and ")
                    ),
                    format!("{} {}", JsonType::of(v), show(v)),
                )),
                Some(n) => {
                    for (op, bound) in bounds {
                        let Some(b) = bound else { continue };
                        let ok = match op {
                            "> " => n > b,
                            ">= " => n >= b,
                            "< " => n < b,
                            _ => n <= b,
                        };
                        if !ok {
                            out.push(fail(format!("{op}{}", num(b)), show(v)));
                        }
                    }
                }
            }
        }
    }
    out
}

/// What must appear in a body.
#[derive(Debug, Clone)]
pub enum BodyMatch {
    Keyword(String),
    Regex(Regex),
}

impl BodyMatch {
    pub fn describe(&self) -> String {
        match self {
            BodyMatch::Keyword(k) => format!("the keyword {k:?}"),
            BodyMatch::Regex(r) => format!("the pattern /{}/", r.as_str()),
        }
    }

    pub fn found_in(&self, body: &[u8]) -> bool {
        let text = String::from_utf8_lossy(body);
        match self {
            BodyMatch::Keyword(k) => text.contains(k.as_str()),
            BodyMatch::Regex(r) => r.is_match(&text),
        }
    }
}

/// Whether a Content-Type header has the expected media type (parameters ignored).
pub fn content_type_matches(actual: Option<&str>, expected: &str) -> bool {
    let media = |s: &str| {
        s.split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase()
    };
    actual.is_some_and(|a| media(a) == media(expected))
}

/// What is wrong with a CORS preflight answer for `origin` making a `method` request with
/// `request_headers`; empty when the browser would let it through.
pub fn cors_problems(
    status: u16,
    headers: &HeaderMap,
    origin: &str,
    method: &str,
    request_headers: &[String],
) -> Vec<String> {
    let get = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
    };
    let mut problems = Vec::new();
    if !(200..300).contains(&status) {
        problems.push(format!("the preflight (OPTIONS) answered {status}"));
    }
    match get("access-control-allow-origin") {
        None => problems.push("no Access-Control-Allow-Origin header".into()),
        Some(o) if o == "*" || o == origin => {}
        Some(o) => problems.push(format!(
            "Access-Control-Allow-Origin is {o:?}, not {origin:?}"
        )),
    }
    let list = |name: &str| -> Vec<String> {
        get(name)
            .map(|v| {
                v.split(',')
                    .map(|s| s.trim().to_ascii_lowercase())
                    .filter(|s| !s.is_empty())
                    .collect()
            })
            .unwrap_or_default()
    };
    let safelisted = ["get", "head", "post"].contains(&method.to_ascii_lowercase().as_str());
    let methods = list("access-control-allow-methods");
    if !safelisted
        && !methods
            .iter()
            .any(|m| m == "*" || m.eq_ignore_ascii_case(method))
    {
        problems.push(format!(
            "Access-Control-Allow-Methods ({}) does not allow {method}",
            if methods.is_empty() {
                "absent".to_string()
            } else {
                methods.join(", ")
            }
        ));
    }
    let allowed = list("access-control-allow-headers");
    let missing: Vec<&String> = request_headers
        .iter()
        .filter(|h| {
            !allowed
                .iter()
                .any(|a| a == "*" || a.eq_ignore_ascii_case(h))
        })
        .collect();
    if !missing.is_empty() {
        problems.push(format!(
            "Access-Control-Allow-Headers does not allow {}",
            missing
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    problems
}

/// A rate-limit budget as the server announced it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct RateLimit {
    pub limit: Option<u64>,
    pub remaining: u64,
}

impl RateLimit {
    /// Remaining share of the limit, in percent, when the limit is known.
    pub fn remaining_percent(&self) -> Option<f64> {
        self.limit
            .filter(|l| *l > 0)
            .map(|l| self.remaining as f64 * 100.0 / l as f64)
    }
}

/// `RateLimit-Remaining`/`X-RateLimit-Remaining` with `…-Limit`, or the structured
/// `RateLimit: limit=100, remaining=50, reset=30`.
pub fn rate_limit(headers: &HeaderMap) -> Option<RateLimit> {
    let get = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let first_int = |s: &str| -> Option<u64> {
        let digits: String = s
            .trim()
            .chars()
            .take_while(|c| c.is_ascii_digit())
            .collect();
        digits.parse().ok()
    };
    let remaining = get("ratelimit-remaining")
        .or_else(|| get("x-ratelimit-remaining"))
        .and_then(first_int);
    if let Some(remaining) = remaining {
        let limit = get("ratelimit-limit")
            .or_else(|| get("x-ratelimit-limit"))
            .and_then(first_int);
        return Some(RateLimit { limit, remaining });
    }
    let structured = get("ratelimit")?;
    let field = |key: &str| {
        structured.split([',', ';']).find_map(|part| {
            let (k, v) = part.split_once('=')?;
            (k.trim().eq_ignore_ascii_case(key))
                .then(|| first_int(v))
                .flatten()
        })
    };
    Some(RateLimit {
        limit: field("limit"),
        remaining: field("remaining")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn a(v: Value) -> Assertion {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn every_assertion_kind_reports_pointer_expected_and_actual() {
        let doc =
            json!({"status": "degraded", "count": 0, "items": [1, 2], "ok": true, "gone": null});
        let failures = check_assertions(
            &doc,
            &[
                a(json!({"pointer": "/status", "equals": "ok"})),
                a(json!({"pointer": "/count", "gt": 0})),
                a(json!({"pointer": "/items", "type": "object"})),
                a(json!({"pointer": "/missing", "exists": true})),
                a(json!({"pointer": "/ok", "exists": false})),
                a(json!({"pointer": "/status", "lte": 3})),
                a(
                    json!({"pointer": "/items/1", "equals": 2, "type": "integer", "gte": 2, "lt": 3}),
                ),
                a(json!({"pointer": "/nope", "exists": false})),
            ],
        );
        let lines: Vec<String> = failures.iter().map(|f| f.to_string()).collect();
        assert_eq!(
            lines,
            vec![
                "/status: expected \"ok\", got \"degraded\"",
                "/count: expected > 0, got 0",
                "/items: expected an object, got array [1,2]",
                "/missing: expected a value, got nothing (the pointer leads nowhere)",
                "/ok: expected nothing there, got true",
                "/status: expected a number <= 3, got string \"degraded\"",
            ]
        );
    }

    #[test]
    fn assertions_must_say_something() {
        assert!(!a(json!({"pointer": "/x"}))
            .validate("assertions[0]")
            .is_empty());
        assert!(!a(json!({"pointer": "x", "exists": true}))
            .validate("assertions[0]")
            .is_empty());
        assert!(a(json!({"pointer": "", "type": "object"}))
            .validate("assertions[0]")
            .is_empty());
    }

    #[test]
    fn cors_preflight_problems() {
        let mut h = HeaderMap::new();
        h.insert(
            "access-control-allow-origin",
            "https://app.example.com".parse().unwrap(),
        );
        h.insert("access-control-allow-methods", "GET, POST".parse().unwrap());
        h.insert(
            "access-control-allow-headers",
            "content-type".parse().unwrap(),
        );
        assert!(cors_problems(
            204,
            &h,
            "https://app.example.com",
            "GET",
            &["content-type".into()]
        )
        .is_empty());
        let p = cors_problems(
            204,
            &h,
            "https://evil.example",
            "PUT",
            &["authorization".into()],
        );
        assert_eq!(p.len(), 3, "{p:?}");
        assert!(p[0].contains("not \"https://evil.example\""));
        assert!(p[1].contains("does not allow PUT"));
        assert!(p[2].contains("authorization"));
        assert!(cors_problems(405, &HeaderMap::new(), "o", "GET", &[])[0].contains("405"));
    }

    #[test]
    fn rate_limit_headers_in_every_spelling() {
        let mut h = HeaderMap::new();
        h.insert("x-ratelimit-limit", "100".parse().unwrap());
        h.insert("x-ratelimit-remaining", "7".parse().unwrap());
        let r = rate_limit(&h).unwrap();
        assert_eq!(
            r,
            RateLimit {
                limit: Some(100),
                remaining: 7
            }
        );
        assert_eq!(r.remaining_percent(), Some(7.0));
        let mut h = HeaderMap::new();
        h.insert(
            "ratelimit",
            "limit=50, remaining=49, reset=10".parse().unwrap(),
        );
        assert_eq!(
            rate_limit(&h).unwrap(),
            RateLimit {
                limit: Some(50),
                remaining: 49
            }
        );
        let mut h = HeaderMap::new();
        h.insert("ratelimit-remaining", "3".parse().unwrap());
        h.insert("ratelimit-limit", "10, 10;w=1".parse().unwrap());
        assert_eq!(rate_limit(&h).unwrap().limit, Some(10));
        assert!(rate_limit(&HeaderMap::new()).is_none());
    }

    #[test]
    fn bodies_and_content_types() {
        assert!(BodyMatch::Keyword("Welcome".into()).found_in(b"<h1>Welcome</h1>"));
        assert!(!BodyMatch::Regex(Regex::new("^Error").unwrap()).found_in(b"all fine"));
        assert!(content_type_matches(
            Some("application/json; charset=utf-8"),
            "application/json"
        ));
        assert!(!content_type_matches(Some("text/html"), "application/json"));
        assert!(!content_type_matches(None, "application/json"));
    }
}
