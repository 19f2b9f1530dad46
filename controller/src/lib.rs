//! Baton's controller: the cluster metadata (brokers, topics, partition
//! leadership) and the rules that change it. The rules are pure functions
//! of the metadata and of time passed in (`rules`); the Raft quorum that
//! replicates the metadata is built on `openraft`.

pub mod broker_session;
pub mod commands;
pub mod events;
pub mod metadata;
pub mod metadata_feed;
pub mod raft;
pub mod rules;
pub mod service;
