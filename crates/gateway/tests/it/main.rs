//! Black-box tests of the HTTP API over a real socket: each test starts the whole stack (engine
//! on a fresh data directory, gateway on port 0) with `spawn_app`. With
//! `SPORTSBOOK_TEST_CLUSTER=1` they run against a cluster gateway instead (`harness.rs`).

mod actors;
mod adjustments;
mod auth;
mod catalog;
mod compliance;
mod connections;
mod currencies;
mod degraded;
mod edge;
mod edge_state;
mod feed;
mod harness;
mod idempotency;
mod kyc;
mod monitoring;
mod openapi;
mod operators;
mod ops;
mod payments;
mod players;
mod provider;
mod reads;
mod reality;
mod register;
mod staff;
mod stream;
