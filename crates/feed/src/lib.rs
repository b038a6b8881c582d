//! The feed role: odds providers in, book commands out.
//!
//! - `json`: the native JSON feed (`POST /v1/feed/messages`, a provider's WebSocket stream);
//! - `uof`: a Sportradar-UOF-style XML adapter;
//! - `runtime`: the supervisor that follows each provider's primary and backup sources, fails
//!   over, suspends a stale provider's markets and asks for a recovery snapshot;
//! - `transport`: the WebSocket and AMQP sources, and the provider side the simulator uses;
//! - `simulator`: a provider that makes up fixtures, prices, goals and results;
//! - `recovery`: the UOF producer recovery state machine (pure; the runtime drives it);
//! - `uof_api`: the UOF provider's HTTP API (recovery requests, descriptions, fixtures);
//! - `provider_api`: the simulated provider's HTTP API (recovery requests, descriptions);
//! - `producers`: the provider's producers list (`producers.xml`);
//! - `names`: market, outcome and event names from the provider's descriptions and fixtures.
mod error;
pub mod json;
pub mod metrics;
pub mod names;
pub mod producers;
pub mod provider;
pub mod provider_api;
pub mod recovery;
pub mod runtime;
pub mod simulator;
pub mod transport;
pub mod uof;
pub mod uof_api;

pub use error::FeedError;
pub use metrics::FeedMetrics;
pub use runtime::{Control, FeedHub, ProviderSettings, ProviderView, SourceHandle, UofSettings};
