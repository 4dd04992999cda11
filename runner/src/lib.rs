//! The local runner: hosts every function in one process the way `template.yaml` wires them.
//!
//! HTTP: each route of the HttpApi becomes the same API Gateway HTTP API (payload 2.0) event
//! Lambda would deliver, with the JWT authorizer's claims in `requestContext.authorizer.jwt`,
//! and goes through `lambda_http`'s own event-to-request conversion into the function's
//! handler. Tokens are HS256, signed with `LOCAL_JWT_SECRET`, checked like the HttpApi JWT
//! authorizer would (signature, `exp`, `nbf`; admin routes need the `admin` scope).
//!
//! SQS: each event source mapping is a set of long-polling tasks that hand batches to the
//! function as an `SqsEvent`, delete what succeeded and leave the reported failures to come
//! back after the visibility timeout. Schedules invoke their function on a fixed interval.
//!
//! Layout: [`routes`] is the wiring table, [`auth`] the JWT check, [`cors`] the HttpApi's CORS
//! answers, [`gateway`] the event building and the server, [`events`] the SQS pollers and
//! schedules.

#![recursion_limit = "256"] // the futures that reach the library's rebuild paths nest deeply (release builds)

pub mod auth;
pub mod cors;
pub mod demo;
pub mod events;
pub mod gateway;
pub mod routes;
pub mod wiring;

pub use gateway::{App, Functions, serve};
