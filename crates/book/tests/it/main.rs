//! Integration tests of the book: data-driven scenarios, property tests and memory bounds.

mod adjustments;
mod kyc;
mod memory;
mod monitor;
mod payments;
mod properties;
mod scenarios;
mod script;
