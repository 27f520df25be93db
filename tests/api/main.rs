//! Black-box tests: each boots a real node on a free port with its own database and drives it
//! over HTTP and WebSocket as a client would.
//!
//! Backends: SQLite and the in-process bus by default. With `TEST_DATABASE_URL` (a PostgreSQL
//! URL of a database the tests may create databases from) every test gets a fresh PostgreSQL
//! database; with `TEST_REDIS_URL` every node uses Redis pub/sub. `.ci/run` runs the suite both
//! ways.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod helpers;
#[path = "../support/redis_pause.rs"]
mod redis_pause;

mod auth;
mod booking;
mod booking_records;
mod catalog;
mod catalog_texts;
mod evergreen_history;
mod evergreen_merchant;
mod health;
mod journal;
mod messaging;
mod notification;
mod pavillion;
mod reviews;
mod shutdown;
mod wallet_races;
mod ws;
mod ws_wallet;
