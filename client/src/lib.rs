//! Baton's Rust client for the Kafka protocol.
//!
//! [`Connection`] speaks any request at any version to one broker; the
//! producer, consumer and admin client are built on it.

pub mod connection;

pub use connection::{ClientError, Connection};
pub mod admin;
pub mod admin_groups;
pub mod admin_producers;
pub mod cluster;
pub mod consumer;
pub mod group;
pub mod idempotence;
pub mod producer;

pub use admin::Admin;
pub use consumer::{Consumer, ConsumerConfig, ConsumerRecord, OffsetReset};
pub use group::{GroupConsumer, GroupConsumerConfig, RebalanceListener};
pub use producer::{Delivery, Producer, ProducerConfig, Record, RecordMetadata};
