//! Integration tests of the book: data-driven scenarios and property tests.

mod adjustments;
mod properties;
mod scenarios;
mod script;
