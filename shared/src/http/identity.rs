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

/// Whether a `scope` claim (space-separated, or API Gateway's "[a b]" form) grants `admin`.
/// Cognito names custom scopes `<resource server>/<scope>`, so `…/admin` counts too.
pub fn has_admin_scope(scope: &str) -> bool {
    scope.trim_matches(|c| c == '[' || c == ']').split_whitespace().any(|s| s == "admin" || s.ends_with("/admin"))
}

/// 401 without a user, 403 without the `admin` scope.
pub fn require_admin(req: &Request) -> Result<UserId, ApiError> {
    let user = user(req)?;
    let scope = claims(req).and_then(|c| c.get("scope")).map(String::as_str).unwrap_or("");
    if has_admin_scope(scope) { Ok(user) } else { Err(ApiError::Forbidden) }
}
