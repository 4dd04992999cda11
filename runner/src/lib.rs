//! The local runner: hosts every function in one process the way `template.yaml` wires them.
//!
//! HTTP: each route of the HttpApi becomes the same API Gateway HTTP API (payload 2.0) event
//! Lambda would deliver, with the JWT authorizer's claims in `requestContext.authorizer.jwt`,
//! and goes through `lambda_http`'s own event-to-request conversion into the function's
//! handler. Tokens are HS256, signed with `LOCAL_JWT_SECRET`, checked like the HttpApi JWT
//! authorizer would (signature, `exp`, `nbf`; admin routes need the `admin` scope).
//!
//! Layout: [`routes`] is the wiring table, [`auth`] the JWT check, [`gateway`] the event
//! building and the server.

pub mod auth;
pub mod demo;
pub mod gateway;
pub mod routes;

pub use gateway::{App, serve};
