//! Who is calling: the JWT claims the HttpApi authorizer (or the local runner, identically) put
//! in the request context.

use lambda_http::{Request, RequestExt, request::RequestContext};

use super::ApiError;
use crate::domain::UserId;

/// The JWT claims the HttpApi authorizer (or the local runner, identically) put in the
/// request context.
fn claims(req: &Request) -> Option<&std::collections::HashMap<String, String>> {
    match req.request_context_ref()? {
        RequestContext::ApiGatewayV2(ctx) => Some(&ctx.authorizer.as_ref()?.jwt.as_ref()?.claims),
        #[allow(unreachable_patterns)]
        _ => None,
    }
}

/// The calling user (`sub`), or 401.
pub fn user(req: &Request) -> Result<UserId, ApiError> {
    let sub = claims(req).and_then(|c| c.get("sub")).ok_or(ApiError::Unauthenticated)?;
    UserId::parse(sub).ok_or(ApiError::Unauthenticated)
}

/// The claims that carry scopes, as issuers name them: `scope` (OAuth, Cognito access tokens),
/// `scp` (Okta, Entra ID), `scopes`.
const SCOPE_CLAIMS: [&str; 3] = ["scope", "scp", "scopes"];

/// Whether the claims grant `wanted`, exactly, as the HttpApi authorizer decides it. API
/// Gateway hands a function every claim as a string: a space-separated `scope` stays as it
/// is, an array claim becomes `[a b]` (with commas from some issuers' arrays).
pub fn has_scope(claims: &std::collections::HashMap<String, String>, wanted: &str) -> bool {
    SCOPE_CLAIMS.iter().filter_map(|name| claims.get(*name)).any(|value| {
        value
            .trim()
            .trim_start_matches('[')
            .trim_end_matches(']')
            .split(|c: char| c.is_whitespace() || c == ',')
            .map(|s| s.trim_matches('"'))
            .any(|s| s == wanted)
    })
}

/// 401 without a user, 403 without the admin scope (`ADMIN_SCOPE`).
pub fn require_admin(req: &Request, admin_scope: &str) -> Result<UserId, ApiError> {
    let user = user(req)?;
    if claims(req).is_some_and(|c| has_scope(c, admin_scope)) { Ok(user) } else { Err(ApiError::Forbidden) }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::has_scope;

    fn claims(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    #[test]
    fn scopes_are_read_from_scope_scp_and_scopes_as_api_gateway_delivers_them() {
        assert!(has_scope(&claims(&[("scope", "openid admin")]), "admin"));
        assert!(has_scope(&claims(&[("scp", "[read admin]")]), "admin"));
        assert!(has_scope(&claims(&[("scopes", "[\"read\",\"admin\"]")]), "admin"));
        assert!(has_scope(&claims(&[("scope", "flash/admin")]), "flash/admin"));
    }

    #[test]
    fn the_scope_must_match_exactly() {
        assert!(!has_scope(&claims(&[("scope", "flash/admin")]), "admin"));
        assert!(!has_scope(&claims(&[("scope", "administrator")]), "admin"));
        assert!(!has_scope(&claims(&[("sub", "admin")]), "admin"));
        assert!(!has_scope(&claims(&[]), "admin"));
    }
}
