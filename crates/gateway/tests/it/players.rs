//! The player journey and the errors of player routes.
