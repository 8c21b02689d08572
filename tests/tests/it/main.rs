//! Every integration test of oms, in one test binary (one link of sqlx, redis and axum
//! instead of one per area), with a module per area. Run one area with
//! `cargo test -p oms-tests --test it -- delivery::`.
//!
//! Each test builds its own `TestEnv` (a database and a Redis prefix of its own, removed
//! on drop), so the tests of every area run in parallel with each other.

mod admin;
mod alerting;
mod api;
mod archive;
mod audit;
mod cluster;
mod dead_counts;
mod delivery;
mod durability;
mod faults;
mod fence;
mod foundation;
mod galera;
mod hardening;
mod history;
mod import;
mod observability;
mod read_models;
mod recovery;
mod rewind;
mod security;
mod traces;
mod untrusted;
mod wait_outages;
mod workflow;
