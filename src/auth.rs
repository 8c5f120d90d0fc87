//! Who may call what (DESIGN §3). The cron secret may trigger passes and nothing else; JWTs
//! (HS256) carry a role: viewer reads, operator acts, admin configures. A handler's signature
//! says who may call it (`Viewer`, `Operator`, `Admin`, `Trigger`). Every refusal is recorded.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use chrono::{DateTime, Duration, Utc};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;

use crate::error::ApiError;
use crate::secrets::Secrets;
use crate::state::AppState;
use crate::store::NewSecurityEvent;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Viewer,
    Operator,
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Operator => "operator",
            Role::Admin => "admin",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "viewer" => Some(Role::Viewer),
            "operator" => Some(Role::Operator),
            "admin" => Some(Role::Admin),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    pub sub: String,
    pub role: Role,
    pub exp: i64,
    pub iat: i64,
}

/// The checked identity of a caller.
#[derive(Debug, Clone)]
pub enum Caller {
    /// Presented the cron secret.
    Cron,
    Token {
        sub: String,
        role: Role,
    },
}

impl Caller {
    /// Who, for the audit log and `triggered_by`.
    pub fn subject(&self) -> String {
        match self {
            Caller::Cron => "cron".into(),
            Caller::Token { sub, .. } => format!("token:{sub}"),
        }
    }
}

pub struct AuthKeys {
    cron_secret: Vec<u8>,
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
}

impl AuthKeys {
    pub fn new(secrets: &Secrets) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_required_spec_claims(&["exp", "sub"]);
        validation.leeway = 30;
        Self {
            cron_secret: secrets.cron_secret.as_bytes().to_vec(),
            encoding: EncodingKey::from_secret(secrets.jwt_secret.as_bytes()),
            decoding: DecodingKey::from_secret(secrets.jwt_secret.as_bytes()),
            validation,
        }
    }

    /// Mints a token (`botfleet token`, tests).
    pub fn mint(&self, sub: &str, role: Role, ttl: Duration, now: DateTime<Utc>) -> String {
        let claims = Claims {
            sub: sub.to_string(),
            role,
            iat: now.timestamp(),
            exp: (now + ttl).timestamp(),
        };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .expect("HS256 encoding cannot fail")
    }

    /// Constant-time comparison (the length of the secret is all a timing could reveal).
    pub fn is_cron_secret(&self, presented: &str) -> bool {
        let p = presented.as_bytes();
        p.len() == self.cron_secret.len() && bool::from(p.ct_eq(&self.cron_secret))
    }

    pub fn decode(&self, token: &str) -> Result<Claims, String> {
        use jsonwebtoken::errors::ErrorKind;
        jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .map(|d| d.claims)
            .map_err(|e| match e.kind() {
                ErrorKind::ExpiredSignature => "the token has expired".into(),
                ErrorKind::InvalidSignature => "the token's signature does not match".into(),
                ErrorKind::InvalidAlgorithm => "the token is not signed with HS256".into(),
                ErrorKind::MissingRequiredClaim(c) => format!("the token has no {c} claim"),
                ErrorKind::Json(_) => {
                    "the token's claims are not botfleet's (sub, role, exp)".into()
                }
                _ => "the credentials are neither the cron secret nor a valid token".into(),
            })
    }
}

pub use crate::net::client_addr;

fn bearer(parts: &Parts) -> Result<Option<&str>, &'static str> {
    let Some(value) = parts.headers.get(axum::http::header::AUTHORIZATION) else {
        return Ok(None);
    };
    let value = value
        .to_str()
        .map_err(|_| "the Authorization header is not text")?;
    let (scheme, token) = value
        .split_once(' ')
        .ok_or("the Authorization header is not `Bearer <token>`")?;
    if !scheme.eq_ignore_ascii_case("bearer") || token.trim().is_empty() {
        return Err("the Authorization header is not `Bearer <token>`");
    }
    Ok(Some(token.trim()))
}

/// What a route needs.
#[derive(Clone, Copy)]
enum Need {
    Role(Role),
    Trigger,
}

async fn record(
    state: &AppState,
    parts: &Parts,
    kind: &'static str,
    reason: &str,
    subject: Option<String>,
) {
    let event = NewSecurityEvent {
        kind,
        address: client_addr(parts, &state.config.trusted_proxies),
        method: Some(parts.method.to_string()),
        route: Some(parts.uri.path().to_string()),
        reason: Some(reason.to_string()),
        subject,
        target: None,
        before: None,
        after: None,
        at: state.clock.now(),
    };
    if let Err(e) = state.store.record_security_event(&event).await {
        tracing::error!(error = %e, "could not record an auth failure");
    }
    tracing::warn!(kind, reason, address = ?event.address, route = %parts.uri.path(), "request refused");
}

async fn authorize(parts: &Parts, state: &AppState, need: Need) -> Result<Caller, ApiError> {
    let token = match bearer(parts) {
        Ok(Some(t)) => t,
        Ok(None) => {
            record(state, parts, "auth_failure", "no credentials", None).await;
            return Err(ApiError::unauthorized(
                "this route needs credentials: Authorization: Bearer <cron secret or token>",
            ));
        }
        Err(why) => {
            record(state, parts, "auth_failure", why, None).await;
            return Err(ApiError::unauthorized(why));
        }
    };
    let caller = if state.auth.is_cron_secret(token) {
        Caller::Cron
    } else {
        match state.auth.decode(token) {
            Ok(c) => Caller::Token {
                sub: c.sub,
                role: c.role,
            },
            Err(why) => {
                record(state, parts, "auth_failure", &why, None).await;
                return Err(ApiError::unauthorized(why));
            }
        }
    };
    let refusal = match (&caller, need) {
        (Caller::Cron, Need::Trigger) => None,
        (Caller::Cron, Need::Role(_)) => {
            Some("the cron secret may only trigger passes; use a token".to_string())
        }
        (Caller::Token { role, .. }, Need::Trigger) if *role < Role::Operator => Some(format!(
            "triggering a pass needs the operator role; this token has {}",
            role.as_str()
        )),
        (Caller::Token { role, .. }, Need::Role(min)) if *role < min => Some(format!(
            "this route needs the {} role; this token has {}",
            min.as_str(),
            role.as_str()
        )),
        _ => None,
    };
    if let Some(why) = refusal {
        record(state, parts, "forbidden", &why, Some(caller.subject())).await;
        return Err(ApiError::forbidden(why));
    }
    Ok(caller)
}

macro_rules! extractor {
    ($(#[$doc:meta])* $name:ident, $need:expr) => {
        $(#[$doc])*
        pub struct $name(pub Caller);

        impl FromRequestParts<AppState> for $name {
            type Rejection = ApiError;

            async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
                authorize(parts, state, $need).await.map($name)
            }
        }
    };
}

extractor!(
    /// Any token (viewer or better).
    Viewer,
    Need::Role(Role::Viewer)
);
extractor!(
    /// A token with the operator role or better.
    Operator,
    Need::Role(Role::Operator)
);
extractor!(
    /// A token with the admin role.
    Admin,
    Need::Role(Role::Admin)
);
extractor!(
    /// The cron secret, or a token with the operator role or better.
    Trigger,
    Need::Trigger
);

/// Records a refused request that did not go through the extractors (metrics token, status).
pub async fn record_refusal(state: &AppState, parts: &Parts, kind: &'static str, reason: &str) {
    record(state, parts, kind, reason, None).await;
}

/// Checks `METRICS_TOKEN` when one is set.
pub fn metrics_token_ok(state: &AppState, parts: &Parts) -> Result<(), &'static str> {
    let Some(expected) = &state.config.metrics_token else {
        return Ok(());
    };
    match bearer(parts) {
        Ok(Some(t))
            if t.len() == expected.len() && bool::from(t.as_bytes().ct_eq(expected.as_bytes())) =>
        {
            Ok(())
        }
        Ok(Some(_)) => Err("the metrics token does not match"),
        Ok(None) => Err("no credentials; METRICS_TOKEN is set"),
        Err(why) => Err(why),
    }
}

/// Parses a TTL such as `30m`, `24h`, `7d`, `1w` or `3600s`.
pub fn parse_ttl(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: i64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a duration like 30m, 24h, 7d"))?;
    let d = match unit {
        "s" | "" => Duration::seconds(n),
        "m" => Duration::minutes(n),
        "h" => Duration::hours(n),
        "d" => Duration::days(n),
        "w" => Duration::weeks(n),
        _ => return Err(format!("{s:?}: the unit must be s, m, h, d or w")),
    };
    if n <= 0 {
        return Err(format!("{s:?}: a token must live for some time"));
    }
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> AuthKeys {
        AuthKeys::new(&Secrets {
            cron_secret: "0123456789abcdef0123".into(),
            jwt_secret: "an-hs256-secret-that-is-long-enough-0123".into(),
        })
    }

    #[test]
    fn tokens_round_trip_and_expire() {
        let k = keys();
        let now = Utc::now();
        let t = k.mint("alice", Role::Operator, Duration::hours(1), now);
        let c = k.decode(&t).unwrap();
        assert_eq!((c.sub.as_str(), c.role), ("alice", Role::Operator));
        let old = k.mint(
            "alice",
            Role::Admin,
            Duration::hours(1),
            now - Duration::hours(3),
        );
        assert_eq!(k.decode(&old).unwrap_err(), "the token has expired");
        let other = AuthKeys::new(&Secrets {
            cron_secret: "x".repeat(20),
            jwt_secret: "another-secret-entirely-0123456789abcdef".into(),
        });
        let forged = other.mint("mallory", Role::Admin, Duration::hours(1), now);
        assert!(k.decode(&forged).unwrap_err().contains("signature"));
    }

    #[test]
    fn cron_secret_must_match_exactly() {
        let k = keys();
        assert!(k.is_cron_secret("0123456789abcdef0123"));
        assert!(!k.is_cron_secret("0123456789abcdef012"));
        assert!(!k.is_cron_secret("0123456789abcdef0124"));
    }

    #[test]
    fn ttls() {
        assert_eq!(parse_ttl("24h").unwrap(), Duration::hours(24));
        assert_eq!(parse_ttl("30m").unwrap(), Duration::minutes(30));
        assert_eq!(parse_ttl("7d").unwrap(), Duration::days(7));
        assert!(parse_ttl("soon").is_err());
        assert!(parse_ttl("0h").is_err());
        assert!(parse_ttl("3y").is_err());
    }
}
