//! The JWT check the HttpApi authorizer does in AWS, done locally with an HS256 secret.

use std::collections::HashMap;

use jsonwebtoken::{Algorithm, DecodingKey, Validation, decode};
use serde_json::Value;

pub struct JwtCheck {
    key: DecodingKey,
    validation: Validation,
}

/// The local issuer and audience, checked as the HttpApi authorizer checks `JwtIssuer` and
/// `JwtAudience` (template.yaml) in AWS.
pub const LOCAL_ISSUER: &str = "flash-local";
pub const LOCAL_AUDIENCE: &str = "flash-sale";

impl JwtCheck {
    pub fn hs256(secret: &[u8]) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_required_spec_claims(&["exp", "sub", "iss", "aud"]);
        validation.set_issuer(&[LOCAL_ISSUER]);
        validation.set_audience(&[LOCAL_AUDIENCE]);
        validation.validate_nbf = true;
        validation.leeway = 5;
        Self { key: DecodingKey::from_secret(secret), validation }
    }

    /// The claims as API Gateway hands them to a function: every value a string (arrays as
    /// "[a b]", objects as JSON), or `None` for a missing, malformed, forged or expired token.
    pub fn claims(&self, authorization: Option<&str>) -> Option<HashMap<String, String>> {
        // The HttpApi JWT authorizer takes the token with or without the `Bearer ` prefix.
        let raw = authorization?.trim();
        let token = match raw.get(..7) {
            Some(prefix) if prefix.eq_ignore_ascii_case("bearer ") => raw[7..].trim(),
            _ => raw,
        };
        let data = decode::<serde_json::Map<String, Value>>(token, &self.key, &self.validation).ok()?;
        Some(data.claims.into_iter().map(|(k, v)| (k, flatten(v))).collect())
    }
}

fn flatten(v: Value) -> String {
    match v {
        Value::String(s) => s,
        Value::Array(items) => {
            let parts: Vec<String> = items.into_iter().map(flatten).collect();
            format!("[{}]", parts.join(" "))
        }
        other => other.to_string(),
    }
}

/// A token the local runner accepts (HS256 with `LOCAL_JWT_SECRET`): for the README's curl
/// examples, the tests and the benchmark. `scope` "admin" makes an admin token.
pub fn mint(
    secret: &[u8],
    sub: &str,
    scope: Option<&str>,
    ttl: std::time::Duration,
) -> Result<String, jsonwebtoken::errors::Error> {
    let exp = chrono::Utc::now().timestamp() + ttl.as_secs() as i64;
    let mut claims = serde_json::json!({
        "sub": sub,
        "exp": exp,
        "iat": chrono::Utc::now().timestamp(),
        "iss": LOCAL_ISSUER,
        "aud": LOCAL_AUDIENCE,
    });
    if let Some(scope) = scope {
        claims["scope"] = scope.into();
    }
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(secret),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(claims: serde_json::Value) -> String {
        let key = jsonwebtoken::EncodingKey::from_secret(b"s");
        jsonwebtoken::encode(&jsonwebtoken::Header::new(Algorithm::HS256), &claims, &key).expect("encode")
    }

    #[test]
    fn issuer_and_audience_are_checked_and_the_bearer_prefix_is_optional() {
        let check = JwtCheck::hs256(b"s");
        let exp = chrono::Utc::now().timestamp() + 600;
        let good = mint(b"s", "alice", None, std::time::Duration::from_secs(600)).expect("mint");
        assert!(check.claims(Some(&format!("Bearer {good}"))).is_some());
        assert!(check.claims(Some(&good)).is_some(), "a bare token is accepted, as by the HttpApi authorizer");
        let wrong_iss = token(serde_json::json!({"sub": "a", "exp": exp, "iss": "evil", "aud": LOCAL_AUDIENCE}));
        let wrong_aud = token(serde_json::json!({"sub": "a", "exp": exp, "iss": LOCAL_ISSUER, "aud": "other"}));
        let no_aud = token(serde_json::json!({"sub": "a", "exp": exp, "iss": LOCAL_ISSUER}));
        for t in [wrong_iss, wrong_aud, no_aud] {
            assert!(check.claims(Some(&t)).is_none(), "{t}");
        }
    }
}
