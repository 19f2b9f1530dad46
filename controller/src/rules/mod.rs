//! Decision logic, pure: no I/O, no clock, no async. Time is a parameter.

pub mod election;
pub mod lease;
pub mod sessions;
