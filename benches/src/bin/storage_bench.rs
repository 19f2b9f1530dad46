//! Storage benchmark (placeholder until written).
fn main() {}
