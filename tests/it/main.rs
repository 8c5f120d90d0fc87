//! botfleet's test suite: every test body runs on SQLite, and on PostgreSQL when
//! `TEST_DATABASE_URL` is set. One binary, so the crate links once.

mod admin;
mod api;
mod archive;
mod common;
mod compliance;
mod engine;
mod multiprocess;
mod oracle;
mod pulse;
mod sentinel;
mod sentinel_api;
mod sentinel_db;
mod startup;
