//! The node: one process serving WebSocket clients, merchant terminals and REST clients over
//! one domain of users, wallets, message threads and listings.
//!
//! Layers point one way: `api` and `ws` parse and answer; they call the actors (crate `actors`)
//! and the repositories in `store`; nothing below them knows about HTTP. See `docs/` and
//! `README.md` for the map.

pub mod api;
pub mod auth;
pub mod bus;
pub mod clock;
pub mod config;
pub mod conversations;
pub mod fanout;
pub mod metrics;
pub mod notify;
pub mod payments;
pub mod startup;
pub mod stays;
pub mod store;
pub mod telemetry;
pub mod wallets;
pub mod ws;
