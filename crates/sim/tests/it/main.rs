//! Integration tests of the simulator: a few seeds with every fault, and mutants that must be
//! caught.

mod mutants;
mod read_models;
mod seeds;
