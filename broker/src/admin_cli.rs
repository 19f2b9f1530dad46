//! `baton admin`: topic and cluster administration from the command line,
//! through Baton's own admin client. Tables by default, `--json` for tools;
//! any failure is an error message (a JSON document under `--json`) and a
//! non-zero exit code that says what kind of failure it was
//! ([`errors`]).

pub mod errors;

use clap::{Args, Subcommand};
use client::admin::TopicInfo;
use client::Admin;
use errors::{exit, report};
use serde_json::{json, Value};

/// Writes one line to stdout. A reader that went away (`baton admin topic
/// list | head -1`) ends the command at once with exit 0, as the reader
/// chose to stop: `println!` would panic instead.
pub(crate) fn out(line: std::fmt::Arguments) {
    stdout_written(write_line(line));
}

/// What a write to stdout came to: a reader that went away (`| head`)
/// ends the command with exit 0; another error ends it with exit 1.
pub(crate) fn stdout_written(written: std::io::Result<()>) {
    use std::io::Write;
    match written {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => std::process::exit(exit::OK),
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "Error: writing to stdout: {e}");
            std::process::exit(exit::FAILURE);
        }
    }
}

fn write_line(line: std::fmt::Arguments) -> std::io::Result<()> {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_fmt(line)
        .and_then(|()| stdout.write_all(b"\n"))
}

/// `println!` for admin commands: see [`out`].
macro_rules! outln {
    ($($arg:tt)*) => {
        $crate::admin_cli::out(format_args!($($arg)*))
    };
}
pub(crate) use outln;

/// Writes one line to stderr, ignoring a closed stderr (warnings must not
/// stop a command).
pub(crate) fn warn(line: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "{line}");
}

/// `baton admin` arguments.
#[derive(Debug, Args)]
pub struct AdminArgs {
    /// Brokers to bootstrap from (host:port, comma-separated for several).
    /// Accepted before or after the subcommand.
    #[arg(
        long,
        global = true,
        env = "BATON_BOOTSTRAP",
        default_value = "127.0.0.1:9092"
    )]
    bootstrap: String,
    /// Print JSON instead of tables; errors too, as
    /// {"error":{"code":...,"message":...}} on stdout.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: AdminCommand,
}

#[derive(Debug, Subcommand)]
enum AdminCommand {
    /// Create, list, describe or delete topics.
    #[command(subcommand)]
    Topic(TopicCommand),
    /// Describe the cluster.
    #[command(subcommand)]
    Cluster(ClusterCommand),
    /// List, describe, delete consumer groups, or reset their offsets.
    #[command(subcommand)]
    Group(crate::admin_groups_cli::GroupCommand),
    /// The idempotent producers partition leaders know.
    #[command(subcommand)]
    Producers(ProducersCommand),
    /// Move leadership of every partition back to its preferred replica
    /// (the first one) where that replica is alive and in the ISR.
    ElectLeaders {
        /// Preferred-leader election (the only kind there is).
        #[arg(long, required = true)]
        preferred: bool,
        /// Controller addresses (host:port, comma-separated) to ask instead
        /// of finding them through a broker.
        #[arg(long, value_delimiter = ',')]
        controllers: Vec<String>,
    },
}

#[derive(Debug, Subcommand)]
enum TopicCommand {
    /// Create a topic.
    Create {
        /// Topic name.
        name: String,
        /// Number of partitions.
        #[arg(long, default_value_t = 1)]
        partitions: i32,
        /// Replicas per partition [default: the broker's
        /// default.replication.factor, at most the number of brokers].
        #[arg(long, default_value_t = -1, allow_negative_numbers = true)]
        replication_factor: i16,
        /// Topic config as name=value (repeatable), e.g. retention.ms=86400000.
        #[arg(long = "config", value_parser = parse_name_value)]
        configs: Vec<(String, String)>,
    },
    /// List topics.
    List,
    /// Describe a topic's partitions.
    Describe {
        /// Topic name.
        name: String,
    },
    /// Delete a topic.
    Delete {
        /// Topic name.
        name: String,
    },
    /// Add partitions to a topic: --total N (the new total, as
    /// kafka-topics --alter --partitions) or --num N (how many to add).
    AddPartitions(crate::admin_topic_io::AddPartitionsArgs),
    /// Produce stdin's lines as records, one per line.
    Produce(crate::admin_topic_io::ProduceArgs),
    /// Print a topic's records.
    Consume(crate::admin_topic_io::ConsumeArgs),
}

#[derive(Debug, Subcommand)]
enum ProducersCommand {
    /// Each partition's producers (DescribeProducers, asked of its
    /// leader): producer id, epoch, last sequence, last batch's timestamp.
    Describe {
        /// Topic name.
        topic: String,
    },
}

#[derive(Debug, Subcommand)]
enum ClusterCommand {
    /// Cluster id, the controllers (Raft role, term, last log index) and
    /// the brokers (epoch, fenced, last heartbeat age).
    Describe {
        /// Controller addresses (host:port, comma-separated) to ask
        /// directly, without a broker (then only the quorum is shown).
        #[arg(long, value_delimiter = ',')]
        controllers: Vec<String>,
    },
}

/// `name=value`, as `--config` and `--header` take it.
pub(crate) fn parse_name_value(text: &str) -> Result<(String, String), String> {
    text.split_once('=')
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .ok_or_else(|| format!("expected name=value, got {text:?}"))
}

/// Runs one admin command on its own runtime and returns the process exit
/// code (see [`errors`]), having reported any error: as JSON on
/// stdout under `--json`, else as text on stderr.
pub fn main(args: AdminArgs) -> i32 {
    let as_json = args.json;
    let result = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(anyhow::Error::from)
        .and_then(|runtime| runtime.block_on(run(args)));
    match result {
        Ok(()) => exit::OK,
        Err(error) => report(&error, as_json),
    }
}

/// Runs one admin command.
pub async fn run(args: AdminArgs) -> anyhow::Result<()> {
    match &args.command {
        AdminCommand::Cluster(ClusterCommand::Describe { controllers })
            if !controllers.is_empty() =>
        {
            let (cs, bs) = describe_quorum(controllers).await?;
            print_quorum(None, &cs, &bs, args.json);
            return Ok(());
        }
        AdminCommand::ElectLeaders { controllers, .. } if !controllers.is_empty() => {
            return elect_preferred(controllers, args.json).await;
        }
        _ => {}
    }
    let mut admin = {
        use anyhow::Context;
        Admin::connect(&args.bootstrap)
            .await
            .with_context(|| format!("cannot reach {}", args.bootstrap))?
    };
    match args.command {
        AdminCommand::Topic(TopicCommand::Create {
            name,
            partitions,
            replication_factor,
            configs,
        }) => {
            let configs: Vec<(&str, &str)> = configs
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            let id = admin
                .create_topic(&name, partitions, replication_factor, &configs)
                .await?;
            if args.json {
                // The topic object, with what is known at creation: leaders
                // and ISRs are not (yet) part of the answer.
                let partitions: Vec<Value> =
                    (0..partitions).map(|p| json!({ "partition": p })).collect();
                outln!(
                    "{}",
                    json!({ "name": name, "id": id.to_string(), "partitions": partitions })
                );
            } else {
                outln!("created topic {name} ({partitions} partitions, id {id})");
            }
        }
        AdminCommand::Topic(TopicCommand::List) => {
            let topics = admin.list_topics().await?;
            if args.json {
                let list: Vec<Value> = topics.iter().map(topic_json).collect();
                outln!("{}", Value::Array(list));
            } else {
                let rows = topics
                    .iter()
                    .map(|t| {
                        vec![
                            t.name.clone(),
                            t.partitions.len().to_string(),
                            t.id.to_string(),
                        ]
                    })
                    .collect();
                print_table(&["TOPIC", "PARTITIONS", "ID"], rows);
            }
        }
        AdminCommand::Topic(TopicCommand::Describe { name }) => {
            let topic = admin.describe_topic(&name).await?;
            print_topic(&topic, args.json);
        }
        AdminCommand::Topic(TopicCommand::Delete { name }) => {
            admin.delete_topic(&name).await?;
            if args.json {
                outln!("{}", json!({ "name": name, "deleted": true }));
            } else {
                outln!("deleted topic {name}");
            }
        }
        AdminCommand::Topic(TopicCommand::AddPartitions(a)) => {
            let topic = crate::admin_topic_io::add_partitions(&mut admin, &a).await?;
            print_topic(&topic, args.json);
        }
        AdminCommand::Topic(TopicCommand::Produce(a)) => {
            crate::admin_topic_io::produce(&mut admin, a, args.json).await?;
        }
        AdminCommand::Topic(TopicCommand::Consume(a)) => {
            crate::admin_topic_io::consume(&mut admin, a, args.json).await?;
        }
        AdminCommand::Cluster(ClusterCommand::Describe { .. }) => {
            let cluster = admin.describe_cluster().await?;
            let addrs = controller_addrs(&mut admin).await?;
            let (cs, bs) = describe_quorum(&addrs).await?;
            print_quorum(Some(&cluster), &cs, &bs, args.json);
        }
        AdminCommand::ElectLeaders { .. } => {
            let addrs = controller_addrs(&mut admin).await?;
            elect_preferred(&addrs, args.json).await?;
        }
        AdminCommand::Group(command) => {
            crate::admin_groups_cli::run(&mut admin, command, args.json).await?;
        }
        AdminCommand::Producers(ProducersCommand::Describe { topic }) => {
            print_producers(&admin.describe_producers(&topic).await?, args.json);
        }
    }
    Ok(())
}

/// The controllers' addresses, from a broker (DescribeCluster, KIP-919).
async fn controller_addrs(admin: &mut Admin) -> anyhow::Result<Vec<String>> {
    let controllers = admin.describe_controllers().await?;
    Ok(controllers
        .brokers
        .iter()
        .map(|c| format!("{}:{}", c.host, c.port))
        .collect())
}

/// Runs a preferred-leader election on the active controller.
async fn elect_preferred(addrs: &[String], as_json: bool) -> anyhow::Result<()> {
    use controller::commands::CommandResult;
    use controller::service::{call_active, ControllerRequest, ControllerResponse};
    let within = std::time::Duration::from_secs(10);
    match call_active(addrs, ControllerRequest::ElectPreferredLeaders, within).await {
        Some(ControllerResponse::Committed(CommandResult::Ok {
            leaders_changed, ..
        })) => {
            if as_json {
                outln!("{}", json!({ "leaders_changed": leaders_changed }));
            } else {
                outln!("preferred-leader election: {leaders_changed} partitions changed leader");
            }
            Ok(())
        }
        Some(other) => anyhow::bail!("election refused: {other:?}"),
        None => anyhow::bail!("no active controller at {} answered", addrs.join(",")),
    }
}

type Controllers = Vec<(String, Option<controller::service::ControllerInfo>)>;
type Sessions = Vec<controller::service::BrokerInfo>;

/// Asks every controller for its view; brokers come from the active one.
async fn describe_quorum(addrs: &[String]) -> anyhow::Result<(Controllers, Sessions)> {
    use controller::service::{call, ControllerRequest, ControllerResponse};
    let mut controllers = Vec::new();
    let mut brokers = Vec::new();
    for addr in addrs {
        match call(addr, ControllerRequest::DescribeQuorum).await {
            Ok(ControllerResponse::Quorum {
                controller,
                brokers: seen,
            }) => {
                if controller.leader == Some(controller.id) {
                    brokers = seen;
                }
                controllers.push((addr.clone(), Some(controller)));
            }
            Ok(other) => anyhow::bail!("unexpected answer from {addr}: {other:?}"),
            Err(_) => controllers.push((addr.clone(), None)),
        }
    }
    if controllers.iter().all(|(_, c)| c.is_none()) {
        anyhow::bail!("no controller reachable at {}", addrs.join(","));
    }
    Ok((controllers, brokers))
}

/// Prints the cluster (when asked through a broker), the controllers and
/// the broker sessions.
fn print_quorum(
    cluster: Option<&client::admin::ClusterInfo>,
    controllers: &Controllers,
    brokers: &Sessions,
    as_json: bool,
) {
    if as_json {
        let cs: Vec<_> = controllers
            .iter()
            .map(|(addr, c)| match c {
                Some(c) => json!({ "address": addr, "id": c.id, "role": c.role, "term": c.term, "last_log_index": c.last_log_index, "leader": c.leader }),
                None => json!({ "address": addr, "reachable": false }),
            })
            .collect();
        let bs: Vec<_> = brokers
            .iter()
            .map(|b| {
                let (host, port) = b.endpoint.rsplit_once(':').unwrap_or((&b.endpoint, "0"));
                let port: i64 = port.parse().unwrap_or(0);
                json!({ "id": b.id, "epoch": b.epoch, "endpoint": b.endpoint, "host": host, "port": port, "fenced": b.fenced, "heartbeat_age_ms": b.heartbeat_age_ms })
            })
            .collect();
        let mut out = json!({ "controllers": cs, "brokers": bs });
        if let Some(c) = cluster {
            out["cluster_id"] = json!(c.cluster_id);
            out["controller"] = json!(c.controller);
        }
        outln!("{out}");
        return;
    }
    if let Some(c) = cluster {
        outln!("cluster {}", c.cluster_id);
    }
    let rows = controllers
        .iter()
        .map(|(addr, c)| match c {
            Some(c) => vec![
                c.id.to_string(),
                addr.clone(),
                c.role.clone(),
                c.term.to_string(),
                c.last_log_index.map_or("-".into(), |i| i.to_string()),
            ],
            None => vec![
                "?".into(),
                addr.clone(),
                "unreachable".into(),
                "-".into(),
                "-".into(),
            ],
        })
        .collect();
    print_table(
        &["CONTROLLER", "ADDRESS", "ROLE", "TERM", "LAST_LOG_INDEX"],
        rows,
    );
    let rows = brokers
        .iter()
        .map(|b| {
            vec![
                b.id.to_string(),
                b.epoch.to_string(),
                b.endpoint.clone(),
                b.fenced.to_string(),
                b.heartbeat_age_ms.map_or("-".into(), |a| format!("{a} ms")),
            ]
        })
        .collect();
    print_table(
        &["BROKER", "EPOCH", "ENDPOINT", "FENCED", "LAST_HEARTBEAT"],
        rows,
    );
}

fn ids(ids: &[i32]) -> String {
    ids.iter()
        .map(|i| i.to_string())
        .collect::<Vec<_>>()
        .join(",")
}

/// A topic as JSON, the same object in `topic list` and `topic describe`
/// (`topic create` prints the subset known at creation).
fn topic_json(topic: &TopicInfo) -> Value {
    let partitions: Vec<Value> = topic
        .partitions
        .iter()
        .map(|p| json!({ "partition": p.partition, "leader": p.leader, "leader_epoch": p.leader_epoch, "replicas": p.replicas, "isr": p.isr }))
        .collect();
    json!({ "name": topic.name, "id": topic.id.to_string(), "partitions": partitions })
}

fn print_topic(topic: &TopicInfo, as_json: bool) {
    if as_json {
        outln!("{}", topic_json(topic));
        return;
    }
    outln!("topic {} (id {})", topic.name, topic.id);
    let rows = topic
        .partitions
        .iter()
        .map(|p| {
            vec![
                p.partition.to_string(),
                p.leader.to_string(),
                p.leader_epoch.to_string(),
                ids(&p.replicas),
                ids(&p.isr),
            ]
        })
        .collect();
    print_table(
        &["PARTITION", "LEADER", "LEADER_EPOCH", "REPLICAS", "ISR"],
        rows,
    );
}

fn print_producers(partitions: &[client::admin_producers::PartitionProducers], as_json: bool) {
    if as_json {
        let list: Vec<_> = partitions
            .iter()
            .flat_map(|p| {
                p.producers.iter().map(move |a| json!({ "partition": p.partition, "leader": p.leader, "producer_id": a.producer_id, "producer_epoch": a.producer_epoch, "last_sequence": a.last_sequence, "last_timestamp": a.last_timestamp }))
            })
            .collect();
        outln!("{}", json!(list));
        return;
    }
    let rows = partitions
        .iter()
        .flat_map(|p| {
            p.producers.iter().map(move |a| {
                vec![
                    p.partition.to_string(),
                    p.leader.to_string(),
                    a.producer_id.to_string(),
                    a.producer_epoch.to_string(),
                    a.last_sequence.to_string(),
                    a.last_timestamp.to_string(),
                ]
            })
        })
        .collect();
    let headers = [
        "PARTITION",
        "LEADER",
        "PRODUCER_ID",
        "EPOCH",
        "LAST_SEQUENCE",
        "LAST_TIMESTAMP",
    ];
    print_table(&headers, rows);
}

/// Prints `rows` under `headers`, columns padded to their widest cell.
pub(crate) fn print_table(headers: &[&str], rows: Vec<Vec<String>>) {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.len());
        }
    }
    let line = |cells: Vec<&str>| {
        let padded: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        outln!("{}", padded.join("  ").trim_end());
    };
    line(headers.to_vec());
    for row in &rows {
        line(row.iter().map(String::as_str).collect());
    }
}
