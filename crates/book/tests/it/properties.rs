//! Property tests of the book: random workloads conserve money and never drive a player
//! balance negative.
