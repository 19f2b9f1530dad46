//! The fault campaign against the compose cluster (`campaign` binary).
//!
//! A run: create a fresh topic (RF 3, `min.insync.replicas` 2); start the
//! workload (Rust and librdkafka producers with acks=all, a Rust consumer
//! of assigned partitions, Rust and librdkafka consumer groups); apply the
//! seeded schedule of faults one at a time, each held, healed, then the
//! cluster given time to recover; heal everything, stop the workload; read
//! the final logs and the brokers' serve windows; check the history and
//! write the report.
//!
//! - [`schedule`]: the seeded plan (pure).
//! - [`docker`]: containers, firewall rules and volumes.
//! - [`faults`]: one fault applied to the live cluster, and its healing.
//! - [`workload`]: the Rust clients; [`recorder`]: the history file.
//! - [`collect`]: final logs, serve windows, librdkafka files.
//! - [`run`]: the whole run.

pub mod collect;
pub mod docker;
pub mod faults;
pub mod recorder;
pub mod run;
pub mod schedule;
pub mod workload;
