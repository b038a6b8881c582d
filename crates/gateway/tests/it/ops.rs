//! Black-box tests: ops.
