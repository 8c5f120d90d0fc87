//! `block_ip` and `rate_limit`: restrict the address a finding names, for a while. Every
//! replica's middleware enforces it within seconds. Trusted proxies and `NEVER_BLOCK` addresses
//! are never restricted.

use std::net::IpAddr;

use async_trait::async_trait;
use serde::Deserialize;
use serde_json::{json, Value};

use super::{Action, ActionContext};
use crate::error::FieldError;
use crate::store::{BlockRow, NewSecurityEvent};

pub struct BlockIp;
pub struct RateLimit;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Params {
    #[serde(default = "an_hour")]
    duration_secs: i64,
    #[serde(default)]
    requests_per_minute: Option<i64>,
}

fn an_hour() -> i64 {
    3600
}

fn validate(params: &Value, rate: bool) -> Vec<FieldError> {
    match crate::bots::parse_config::<Params>(params) {
        Err(e) => e,
        Ok(p) => {
            let mut errors = Vec::new();
            if !(60..=30 * 86_400).contains(&p.duration_secs) {
                errors.push(FieldError::new(
                    "duration_secs",
                    "must be from 60 seconds to 30 days",
                ));
            }
            match (rate, p.requests_per_minute) {
                (true, Some(n)) if n > 0 => {}
                (true, _) => errors.push(FieldError::new(
                    "requests_per_minute",
                    "a rate limit needs a positive requests_per_minute",
                )),
                (false, Some(_)) => errors.push(FieldError::new(
                    "requests_per_minute",
                    "block_ip blocks; use rate_limit for a limit",
                )),
                (false, None) => {}
            }
            errors
        }
    }
}

async fn restrict(cx: &ActionContext<'_>, params: &Value, rate: bool) -> Result<String, String> {
    let p: Params = serde_json::from_value(params.clone()).map_err(|e| e.to_string())?;
    let address = cx.finding.metadata["address"]
        .as_str()
        .ok_or("the finding names no address")?;
    let ip: IpAddr = address
        .parse()
        .map_err(|_| format!("{address:?} is not an IP address"))?;
    let env = &cx.pass.env;
    if crate::net::any_contains(&env.never_block, ip) {
        return Err(format!(
            "{ip} is in NEVER_BLOCK; it is never blocked or limited"
        ));
    }
    if crate::net::any_contains(&env.trusted_proxies, ip) {
        return Err(format!(
            "{ip} is a trusted proxy (TRUSTED_PROXIES); it is never blocked or limited"
        ));
    }
    let now = cx.pass.now();
    let until = now + chrono::Duration::seconds(p.duration_secs);
    let block = BlockRow {
        address: ip.to_string(),
        kind: if rate { "rate_limit" } else { "block" }.into(),
        requests_per_minute: if rate { p.requests_per_minute } else { None },
        reason: cx.finding.subject(),
        created_by: format!("{} (self-healing)", cx.pass.bot),
        created_at: now,
        expires_at: until,
        finding_id: cx.finding_id.map(str::to_string),
    };
    cx.pass
        .store
        .put_block(&block)
        .await
        .map_err(|e| format!("the block could not be recorded: {e}"))?;
    cx.pass.process.blocks.invalidate();
    let what = if rate {
        "address.rate_limit"
    } else {
        "address.block"
    };
    let event = NewSecurityEvent {
        kind: "admin_change",
        address: None,
        method: None,
        route: None,
        reason: Some(what.into()),
        subject: Some(format!("bot:{}", cx.pass.bot)),
        target: Some(ip.to_string()),
        before: None,
        after: Some(json!(block)),
        at: now,
    };
    if let Err(e) = cx.pass.store.record_security_event(&event).await {
        tracing::error!(error = %e, "the block was made but could not be audited");
    }
    let when = until.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    Ok(if rate {
        format!(
            "limited {ip} to {} requests a minute until {when}",
            p.requests_per_minute.unwrap_or(0)
        )
    } else {
        format!("blocked {ip} until {when}: 403 on every route but liveness")
    })
}

#[async_trait]
impl Action for BlockIp {
    fn name(&self) -> &'static str {
        "block_ip"
    }

    fn validate_params(&self, params: &Value) -> Vec<FieldError> {
        validate(params, false)
    }

    async fn apply(&self, cx: &ActionContext<'_>, params: &Value) -> Result<String, String> {
        restrict(cx, params, false).await
    }
}

#[async_trait]
impl Action for RateLimit {
    fn name(&self) -> &'static str {
        "rate_limit"
    }

    fn validate_params(&self, params: &Value) -> Vec<FieldError> {
        validate(params, true)
    }

    async fn apply(&self, cx: &ActionContext<'_>, params: &Value) -> Result<String, String> {
        restrict(cx, params, true).await
    }
}
