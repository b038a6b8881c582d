//! Integration tests of the book: data-driven scenarios and property tests.

mod properties;
mod scenarios;
mod script;
