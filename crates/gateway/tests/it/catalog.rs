//! Black-box tests: catalog.
