//! Black-box tests: edge.
