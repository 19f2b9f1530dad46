//! Broker settings: defaults, then a TOML file, then `BATON_*` environment
//! variables, then command-line flags, each overriding the one before.

use clap::Args;
use controller::rules::lease::LeaseConfig;
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;
use storage::{FlushPolicy, LogConfig};

/// `BATON_*` variables that are not broker settings: the log filter and
/// the admin commands' bootstrap list. A broker started in a shell where
/// an operator exported `BATON_BOOTSTRAP` for `baton admin` ignores it.
pub const NOT_BROKER_SETTINGS: &[&str] = &["BATON_LOG", "BATON_BOOTSTRAP"];

/// One layer of settings; every field optional so layers can be merged.
/// The same names serve as TOML keys, `BATON_<NAME>` variables and
/// `--<name>` flags.
#[derive(Debug, Clone, Default, Deserialize, Args)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// Directory holding the partition logs and the metadata image [default: ./data].
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Address the Kafka listener binds [default: 127.0.0.1:9092].
    #[arg(long)]
    pub listen: Option<String>,
    /// host:port clients are told to connect to [default: the listen address].
    #[arg(long)]
    pub advertised_listener: Option<String>,
    /// This broker's node id [default: 1].
    #[arg(long)]
    pub node_id: Option<i32>,
    /// Create a topic when a client asks for an unknown one (Kafka's
    /// auto.create.topics.enable) [default: true].
    #[arg(long)]
    pub auto_create_topics: Option<bool>,
    /// Partitions of an auto-created topic (num.partitions) [default: 1].
    #[arg(long)]
    pub num_partitions: Option<i32>,
    /// Largest request accepted, in bytes (socket.request.max.bytes) [default: 104857600].
    #[arg(long)]
    pub socket_request_max_bytes: Option<u32>,
    /// When appends are synced: "always" (group commit), "never", or a
    /// number of milliseconds [default: always].
    #[arg(long)]
    pub flush: Option<String>,
    /// segment.bytes of new logs [default: 1073741824].
    #[arg(long)]
    pub segment_bytes: Option<u32>,
    /// retention.ms of new logs; -1 keeps everything [default: 604800000].
    #[arg(long)]
    pub retention_ms: Option<i64>,
    /// retention.bytes of new logs; -1 is unlimited [default: -1].
    #[arg(long)]
    pub retention_bytes: Option<i64>,
    /// max.message.bytes: the largest record batch accepted [default: 1048588].
    #[arg(long)]
    pub max_message_bytes: Option<u32>,
    /// Replicas of a topic created without a replication factor
    /// (default.replication.factor), at most the number of registered
    /// brokers [default: 3].
    #[arg(long)]
    pub default_replication_factor: Option<i16>,
    /// Replicas that must have a write before acks=all succeeds
    /// (min.insync.replicas; a topic config overrides it), at most the
    /// topic's replication factor [default: 2].
    #[arg(long)]
    pub min_insync_replicas: Option<i32>,
    /// A follower not caught up for this long leaves the ISR
    /// (replica.lag.time.max.ms) [default: 10000].
    #[arg(long)]
    pub replica_lag_time_max_ms: Option<u64>,
    /// The leader lease (leader.lease.enable): a leader serves only while
    /// its controller session is live. `false` gives Kafka's behaviour: a
    /// leader cut off from the controllers keeps serving until it learns
    /// of its successor, so two may serve at once [default: true].
    #[arg(long)]
    pub leader_lease_enable: Option<bool>,
    /// The controller quorum's addresses, host:port comma-separated. Unset:
    /// combined mode, a one-member controller quorum in this process
    /// [default: unset].
    #[arg(long)]
    pub controllers: Option<String>,
    /// Combined mode only: where the in-process controller listens
    /// [default: 127.0.0.1:0, a free port].
    #[arg(long)]
    pub controller_listen: Option<String>,
    /// Combined mode only: broker.session.timeout.ms of the in-process
    /// controller (a separate controller sends its own at registration)
    /// [default: 800].
    #[arg(long)]
    pub session_timeout_ms: Option<u64>,
    /// Combined mode only: the clock drift margin, in parts per million
    /// [default: 10000].
    #[arg(long)]
    pub max_clock_drift_ppm: Option<u64>,
    /// Partitions of `__consumer_offsets`, fixed when it is first created
    /// (offsets.topic.num.partitions) [default: 10].
    #[arg(long)]
    pub offsets_topic_num_partitions: Option<i32>,
    /// Shortest session timeout a group member may ask for
    /// (group.min.session.timeout.ms) [default: 1000].
    #[arg(long)]
    pub group_min_session_timeout_ms: Option<i32>,
    /// Longest session timeout a group member may ask for
    /// (group.max.session.timeout.ms) [default: 1800000].
    #[arg(long)]
    pub group_max_session_timeout_ms: Option<i32>,
    /// How long an empty group's first rebalance waits for more members
    /// (group.initial.rebalance.delay.ms) [default: 3000].
    #[arg(long)]
    pub group_initial_rebalance_delay_ms: Option<i32>,
    /// Time between log-cleaner passes over compacted partitions
    /// (log.cleaner.backoff.ms) [default: 15000].
    #[arg(long)]
    pub log_cleaner_backoff_ms: Option<u64>,
    /// How often retention looks for segments past `retention.ms` or
    /// `retention.bytes` (log.retention.check.interval.ms) [default: 300000].
    #[arg(long)]
    pub log_retention_check_interval_ms: Option<u64>,
    /// How long a partition keeps an idle idempotent producer's state
    /// (producer.id.expiration.ms) [default: 86400000, one day].
    #[arg(long)]
    pub producer_id_expiration_ms: Option<u64>,
    /// How often idle producers are looked for
    /// (producer.id.expiration.check.interval.ms) [default: 600000].
    #[arg(long)]
    pub producer_id_expiration_check_interval_ms: Option<u64>,
}

/// A setting that cannot be used, with the reason.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The config file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The config file or environment holds a bad or unknown setting.
    #[error("invalid settings in {origin}: {message}")]
    Parse {
        /// Where: a file path or "environment".
        origin: String,
        /// What the parser said.
        message: String,
    },
    /// The session timeout and drift margin leave no safe lease.
    #[error(transparent)]
    Lease(controller::rules::lease::LeaseConfigError),
    /// A value is out of range.
    #[error("invalid value for {name}: {value:?}: {why}")]
    Value {
        /// The setting.
        name: &'static str,
        /// The value.
        value: String,
        /// What is allowed.
        why: &'static str,
    },
}

macro_rules! merge_fields {
    ($self:ident, $over:ident, $($f:ident),*) => {
        Settings { $($f: $over.$f.or($self.$f)),* }
    };
}

impl Settings {
    /// `over`'s values where set, else this layer's.
    pub fn overridden_by(self, over: Settings) -> Settings {
        merge_fields!(
            self,
            over,
            data_dir,
            listen,
            advertised_listener,
            node_id,
            auto_create_topics,
            num_partitions,
            socket_request_max_bytes,
            flush,
            segment_bytes,
            retention_ms,
            retention_bytes,
            max_message_bytes,
            default_replication_factor,
            min_insync_replicas,
            replica_lag_time_max_ms,
            leader_lease_enable,
            controllers,
            controller_listen,
            session_timeout_ms,
            max_clock_drift_ppm,
            offsets_topic_num_partitions,
            group_min_session_timeout_ms,
            group_max_session_timeout_ms,
            group_initial_rebalance_delay_ms,
            log_cleaner_backoff_ms,
            log_retention_check_interval_ms,
            producer_id_expiration_ms,
            producer_id_expiration_check_interval_ms
        )
    }

    /// Reads a TOML file.
    pub fn from_file(path: &std::path::Path) -> Result<Settings, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        toml::from_str(&text).map_err(|e| ConfigError::Parse {
            origin: path.display().to_string(),
            message: e.to_string(),
        })
    }

    /// Reads `BATON_*` variables (`BATON_DATA_DIR` sets `data_dir`). An
    /// unknown `BATON_` variable is an error, so a typo is not ignored;
    /// the [`NOT_BROKER_SETTINGS`] are skipped.
    pub fn from_env(vars: impl Iterator<Item = (String, String)>) -> Result<Settings, ConfigError> {
        let mut table = toml::Table::new();
        for (key, value) in vars {
            if NOT_BROKER_SETTINGS.contains(&key.as_str()) {
                continue;
            }
            let Some(name) = key.strip_prefix("BATON_") else {
                continue;
            };
            let parsed = value
                .parse::<i64>()
                .map(toml::Value::Integer)
                .or_else(|_| value.parse::<bool>().map(toml::Value::Boolean))
                .unwrap_or(toml::Value::String(value));
            table.insert(name.to_ascii_lowercase(), parsed);
        }
        let fix_strings = [
            "flush",
            "listen",
            "advertised_listener",
            "data_dir",
            "controllers",
            "controller_listen",
        ];
        for key in fix_strings {
            if let Some(v) = table.get_mut(key) {
                if !v.is_str() {
                    *v = toml::Value::String(v.to_string());
                }
            }
        }
        table
            .try_into()
            .map_err(|e: toml::de::Error| ConfigError::Parse {
                origin: "environment (BATON_*)".into(),
                message: e.to_string(),
            })
    }

    /// Fills in defaults and checks every value.
    pub fn resolve(self) -> Result<BrokerConfig, ConfigError> {
        let groups = group_config(&self)?;
        let bad = |name, value: String, why| ConfigError::Value { name, value, why };
        let listen_text = self.listen.unwrap_or_else(|| "127.0.0.1:9092".into());
        let listen: SocketAddr = listen_text
            .parse()
            .map_err(|_| bad("listen", listen_text.clone(), "expected IP:PORT"))?;
        let advertised = self
            .advertised_listener
            .unwrap_or_else(|| listen_text.clone());
        let (host, port) = advertised
            .rsplit_once(':')
            .and_then(|(h, p)| Some((h.to_string(), p.parse::<u16>().ok()?)))
            .ok_or_else(|| {
                bad(
                    "advertised_listener",
                    advertised.clone(),
                    "expected HOST:PORT",
                )
            })?;
        let num_partitions = self.num_partitions.unwrap_or(1);
        if num_partitions < 1 {
            return Err(bad(
                "num_partitions",
                num_partitions.to_string(),
                "must be at least 1",
            ));
        }
        let mut log = LogConfig::default();
        if let Some(flush) = self.flush {
            log.flush = match flush.as_str() {
                "always" => FlushPolicy::Always,
                "never" => FlushPolicy::Never,
                ms => match ms.parse::<u64>() {
                    Ok(ms) if ms > 0 => FlushPolicy::Interval(Duration::from_millis(ms)),
                    _ => {
                        return Err(bad(
                            "flush",
                            flush,
                            "expected always, never or milliseconds > 0",
                        ))
                    }
                },
            };
        }
        if let Some(v) = self.segment_bytes {
            log.segment_bytes = v;
        }
        if let Some(v) = self.max_message_bytes {
            log.max_batch_bytes = v;
        }
        log.retention_ms = match self.retention_ms {
            Some(ms) if ms < 0 => None,
            Some(ms) => Some(Duration::from_millis(ms as u64)),
            None => log.retention_ms,
        };
        log.retention_bytes = self.retention_bytes.and_then(|b| u64::try_from(b).ok());
        log.validate()
            .map_err(|e| bad("log", e.to_string(), "see the message"))?;
        let socket_request_max_bytes = self.socket_request_max_bytes.unwrap_or(100 * 1024 * 1024);
        if socket_request_max_bytes < 1024 {
            return Err(bad(
                "socket_request_max_bytes",
                socket_request_max_bytes.to_string(),
                "must be at least 1024",
            ));
        }
        let default_replication_factor = self.default_replication_factor.unwrap_or(3);
        if default_replication_factor < 1 {
            return Err(bad(
                "default_replication_factor",
                default_replication_factor.to_string(),
                "must be at least 1",
            ));
        }
        let mut controllers = Vec::new();
        for part in self.controllers.unwrap_or_default().split(',') {
            if part.is_empty() {
                continue;
            }
            // `id=host:port` (the controllers' own --quorum) or `host:port`.
            let parsed = match part.split_once('=') {
                Some((id, addr)) => id.parse::<u64>().ok().map(|id| (Some(id), addr)),
                None => Some((None, part)),
            };
            match parsed {
                Some((id, addr)) if addr.contains(':') => controllers.push((id, addr.to_string())),
                _ => {
                    return Err(bad(
                        "controllers",
                        part.to_string(),
                        "expected ID=HOST:PORT or HOST:PORT, comma-separated",
                    ))
                }
            }
        }
        let controller_text = self
            .controller_listen
            .unwrap_or_else(|| "127.0.0.1:0".into());
        let controller_listen: SocketAddr = controller_text.parse().map_err(|_| {
            bad(
                "controller_listen",
                controller_text.clone(),
                "expected IP:PORT",
            )
        })?;
        let lease = LeaseConfig {
            session_timeout_ms: self
                .session_timeout_ms
                .unwrap_or(controller::rules::lease::DEFAULT_SESSION_TIMEOUT_MS),
            max_clock_drift_ppm: self.max_clock_drift_ppm.unwrap_or(10_000),
        };
        if let Err(e) = lease.validate() {
            return Err(ConfigError::Lease(e));
        }
        let min_insync_replicas = self.min_insync_replicas.unwrap_or(2);
        if min_insync_replicas < 1 {
            return Err(bad(
                "min_insync_replicas",
                min_insync_replicas.to_string(),
                "must be at least 1",
            ));
        }
        let offsets_topic_num_partitions = self.offsets_topic_num_partitions.unwrap_or(10);
        if offsets_topic_num_partitions < 1 {
            return Err(bad(
                "offsets_topic_num_partitions",
                offsets_topic_num_partitions.to_string(),
                "must be at least 1",
            ));
        }
        let log_cleaner_backoff_ms = self.log_cleaner_backoff_ms.unwrap_or(15_000);
        if log_cleaner_backoff_ms < 100 {
            return Err(bad(
                "log_cleaner_backoff_ms",
                log_cleaner_backoff_ms.to_string(),
                "must be at least 100",
            ));
        }
        let log_retention_check_interval_ms =
            self.log_retention_check_interval_ms.unwrap_or(300_000);
        if log_retention_check_interval_ms < 1 {
            return Err(bad(
                "log_retention_check_interval_ms",
                log_retention_check_interval_ms.to_string(),
                "must be at least 1",
            ));
        }
        Ok(BrokerConfig {
            log_cleaner_backoff_ms,
            log_retention_check_interval_ms,
            producer_id_expiration_ms: self
                .producer_id_expiration_ms
                .unwrap_or(storage::producer_state::PRODUCER_ID_EXPIRATION_MS_DEFAULT),
            producer_id_expiration_check_interval_ms: self
                .producer_id_expiration_check_interval_ms
                .unwrap_or(600_000),
            offsets_topic_num_partitions,
            groups,
            leader_lease_enable: self.leader_lease_enable.unwrap_or(true),
            min_insync_replicas: min_insync_replicas as usize,
            replica_lag_time_max_ms: self.replica_lag_time_max_ms.unwrap_or(10_000),
            default_replication_factor,
            controllers,
            controller_listen,
            lease,
            data_dir: self.data_dir.unwrap_or_else(|| PathBuf::from("data")),
            listen,
            advertised_host: host,
            advertised_port: port,
            node_id: self.node_id.unwrap_or(1),
            auto_create_topics: self.auto_create_topics.unwrap_or(true),
            num_partitions,
            socket_request_max_bytes,
            log,
        })
    }
}

/// The broker's resolved configuration.
#[derive(Debug, Clone)]
pub struct BrokerConfig {
    /// Root of the data directory.
    pub data_dir: PathBuf,
    /// Listener address.
    pub listen: SocketAddr,
    /// Host clients are told to connect to.
    pub advertised_host: String,
    /// Port clients are told to connect to.
    pub advertised_port: u16,
    /// Node id.
    pub node_id: i32,
    /// Kafka's auto.create.topics.enable.
    pub auto_create_topics: bool,
    /// Partitions of auto-created topics.
    pub num_partitions: i32,
    /// Largest request frame accepted.
    pub socket_request_max_bytes: u32,
    /// Settings of every partition log.
    pub log: LogConfig,
    /// Kafka's default.replication.factor.
    pub default_replication_factor: i16,
    /// Kafka's min.insync.replicas (broker default).
    pub min_insync_replicas: usize,
    /// Kafka's replica.lag.time.max.ms.
    pub replica_lag_time_max_ms: u64,
    /// Whether leaders honour the lease (claim 2).
    pub leader_lease_enable: bool,
    /// The controller quorum (id if given, `host:port`); empty in combined
    /// mode until the in-process controller is bound.
    pub controllers: Vec<(Option<u64>, String)>,
    /// Combined mode: the in-process controller's listener.
    pub controller_listen: SocketAddr,
    /// Combined mode: the in-process controller's lease settings.
    pub lease: LeaseConfig,
    /// Kafka's log.cleaner.backoff.ms.
    pub log_cleaner_backoff_ms: u64,
    /// Kafka's log.retention.check.interval.ms.
    pub log_retention_check_interval_ms: u64,
    /// Kafka's producer.id.expiration.ms.
    pub producer_id_expiration_ms: u64,
    /// Kafka's producer.id.expiration.check.interval.ms.
    pub producer_id_expiration_check_interval_ms: u64,
    /// Kafka's offsets.topic.num.partitions.
    pub offsets_topic_num_partitions: i32,
    /// The group coordinator's limits (session timeouts, initial delay).
    pub groups: groups::GroupConfig,
}

/// The group.* settings, checked.
fn group_config(s: &Settings) -> Result<groups::GroupConfig, ConfigError> {
    let defaults = groups::GroupConfig::default();
    let config = groups::GroupConfig {
        min_session_timeout_ms: s
            .group_min_session_timeout_ms
            .unwrap_or(defaults.min_session_timeout_ms),
        max_session_timeout_ms: s
            .group_max_session_timeout_ms
            .unwrap_or(defaults.max_session_timeout_ms),
        initial_rebalance_delay_ms: s
            .group_initial_rebalance_delay_ms
            .unwrap_or(defaults.initial_rebalance_delay_ms),
        ..defaults
    };
    let valid = 0 < config.min_session_timeout_ms
        && config.min_session_timeout_ms <= config.max_session_timeout_ms
        && config.initial_rebalance_delay_ms >= 0;
    if !valid {
        return Err(ConfigError::Value {
            name: "group_min_session_timeout_ms",
            value: format!(
                "min {} max {} initial delay {}",
                config.min_session_timeout_ms,
                config.max_session_timeout_ms,
                config.initial_rebalance_delay_ms
            ),
            why: "need 0 < min <= max and a delay >= 0",
        });
    }
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> impl Iterator<Item = (String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect::<Vec<_>>()
            .into_iter()
    }

    #[test]
    fn layers_override_in_order() {
        let file: Settings =
            toml::from_str("listen = \"127.0.0.1:9000\"\nnode_id = 4\nflush = \"never\"").unwrap();
        let env = Settings::from_env(env(&[
            ("BATON_NODE_ID", "5"),
            ("BATON_LOG_RETENTION_CHECK_INTERVAL_MS", "500"),
            ("PATH", "/bin"),
        ]))
        .unwrap();
        let cli = Settings {
            flush: Some("250".into()),
            ..Settings::default()
        };
        let c = Settings::default()
            .overridden_by(file)
            .overridden_by(env)
            .overridden_by(cli)
            .resolve()
            .unwrap();
        assert_eq!(c.listen.port(), 9000);
        assert_eq!(c.node_id, 5);
        assert_eq!(c.log_retention_check_interval_ms, 500);
        assert_eq!(
            c.log.flush,
            FlushPolicy::Interval(Duration::from_millis(250))
        );
        assert_eq!(
            (c.advertised_host.as_str(), c.advertised_port),
            ("127.0.0.1", 9000)
        );
    }

    #[test]
    fn bad_settings_are_named() {
        assert!(
            Settings::from_env(env(&[("BATON_LISTEN_ON", "x")])).is_err(),
            "unknown variable"
        );
        let skipped = env(&[("BATON_BOOTSTRAP", "h:1"), ("BATON_LOG", "debug")]);
        assert!(
            Settings::from_env(skipped).is_ok(),
            "the admin bootstrap and the log filter are not broker settings"
        );
        assert!(
            toml::from_str::<Settings>("nodeid = 1").is_err(),
            "unknown key"
        );
        let cases = [
            Settings {
                listen: Some("nowhere".into()),
                ..Settings::default()
            },
            Settings {
                advertised_listener: Some("host".into()),
                ..Settings::default()
            },
            Settings {
                flush: Some("sometimes".into()),
                ..Settings::default()
            },
            Settings {
                num_partitions: Some(0),
                ..Settings::default()
            },
            Settings {
                segment_bytes: Some(3),
                ..Settings::default()
            },
            Settings {
                log_retention_check_interval_ms: Some(0),
                ..Settings::default()
            },
        ];
        for case in cases {
            assert!(case.clone().resolve().is_err(), "{case:?}");
        }
        let defaults = Settings::default().resolve().unwrap();
        assert_eq!(defaults.listen.to_string(), "127.0.0.1:9092");
        assert_eq!(defaults.data_dir, PathBuf::from("data"));
        assert!(defaults.auto_create_topics);
        assert_eq!(defaults.log_retention_check_interval_ms, 300_000);
        assert_eq!(
            defaults.groups.initial_rebalance_delay_ms, 3000,
            "Kafka's group.initial.rebalance.delay.ms"
        );
    }
}
