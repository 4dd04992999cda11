//! Request parsing: bodies, path ids and query parameters, each a 4xx that says what is wrong.

use lambda_http::{Request, RequestExt};
use serde::de::DeserializeOwned;

use super::ApiError;

/// Largest request body the public routes accept.
pub const MAX_BODY_BYTES: usize = 4 * 1024;
/// Largest admin body: a product's description may hold 10,000 characters (up to 4 bytes each).
pub const MAX_ADMIN_BODY_BYTES: usize = 64 * 1024;

/// A query-string parameter, if present.
pub fn query<'a>(req: &'a Request, name: &str) -> Option<&'a str> {
    req.query_string_parameters_ref().and_then(|q| q.first(name))
}

/// The body as `T` (which should deny unknown fields), or a 4xx that says what is wrong.
pub fn json_body<T: DeserializeOwned>(req: &Request) -> Result<T, ApiError> {
    json_body_up_to(req, MAX_BODY_BYTES)
}

/// [`json_body`] with its own size limit.
pub fn json_body_up_to<T: DeserializeOwned>(req: &Request, limit: usize) -> Result<T, ApiError> {
    let bytes: &[u8] = req.body().as_ref();
    if bytes.len() > limit {
        return Err(ApiError::PayloadTooLarge { limit });
    }
    match bytes.iter().find(|b| !b.is_ascii_whitespace()) {
        None => return Err(ApiError::InvalidRequest("a JSON body is required".into())),
        // serde would also read a struct from a JSON array; the contract says object.
        Some(b'{') => {}
        Some(_) => return Err(ApiError::InvalidRequest("the body must be a JSON object".into())),
    }
    serde_json::from_slice(bytes).map_err(|e| ApiError::InvalidRequest(format!("invalid JSON body: {e}")))
}

/// A positive integer id from the path.
pub fn path_id(req: &Request, name: &str) -> Result<u64, ApiError> {
    let raw = req
        .path_parameters_ref()
        .and_then(|p| p.first(name))
        .ok_or_else(|| ApiError::InvalidRequest(format!("missing path parameter {name}")))?;
    raw.parse::<u64>()
        .ok()
        .filter(|id| crate::domain::valid_id(*id))
        .ok_or_else(|| ApiError::InvalidRequest(format!("{name} must be an integer between 1 and 2^53-1")))
}

/// Deserializes an id field, refusing 0, negatives and anything above 2^53-1.
pub fn deserialize_id<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    let id = <u64 as serde::Deserialize>::deserialize(d)?;
    if crate::domain::valid_id(id) {
        Ok(id)
    } else {
        Err(serde::de::Error::custom("an id must be between 1 and 2^53-1"))
    }
}
