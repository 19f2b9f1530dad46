//! Baton's Rust client for the Kafka protocol.
//!
//! [`Connection`] speaks any request at any version to one broker; the
//! producer, consumer and admin client are built on it.

pub mod connection;

pub use connection::{ClientError, Connection};
