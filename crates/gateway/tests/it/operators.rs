//! Black-box tests: operators.
