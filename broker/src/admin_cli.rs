//! `baton admin`: topic and cluster administration from the command line,
//! through Baton's own admin client. Tables by default, `--json` for tools;
//! any failure is an error message and a non-zero exit.

use clap::{Args, Subcommand};
use client::admin::TopicInfo;
use client::Admin;
use serde_json::json;

/// `baton admin` arguments.
#[derive(Debug, Args)]
pub struct AdminArgs {
    /// A broker to bootstrap from (host:port, comma-separated for several).
    #[arg(long, default_value = "127.0.0.1:9092")]
    bootstrap: String,
    /// Print JSON instead of tables.
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
        #[arg(long = "config", value_parser = parse_config)]
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

fn parse_config(text: &str) -> Result<(String, String), String> {
    text.split_once('=')
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .ok_or_else(|| format!("expected name=value, got {text:?}"))
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
    let mut admin = Admin::connect(&args.bootstrap)
        .await
        .map_err(|e| anyhow::anyhow!("cannot reach {}: {e}", args.bootstrap))?;
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
                println!(
                    "{}",
                    json!({ "name": name, "id": id.to_string(), "partitions": partitions })
                );
            } else {
                println!("created topic {name} ({partitions} partitions, id {id})");
            }
        }
        AdminCommand::Topic(TopicCommand::List) => {
            let topics = admin.list_topics().await?;
            if args.json {
                let list: Vec<_> = topics.iter().map(|t| json!({ "name": t.name, "id": t.id.to_string(), "partitions": t.partitions.len() })).collect();
                println!("{}", serde_json::Value::Array(list));
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
                println!("{}", json!({ "deleted": name }));
            } else {
                println!("deleted topic {name}");
            }
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
                println!("{}", json!({ "leaders_changed": leaders_changed }));
            } else {
                println!("preferred-leader election: {leaders_changed} partitions changed leader");
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
        println!("{out}");
        return;
    }
    if let Some(c) = cluster {
        println!("cluster {}", c.cluster_id);
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

fn print_topic(topic: &TopicInfo, as_json: bool) {
    if as_json {
        let partitions: Vec<_> = topic
            .partitions
            .iter()
            .map(|p| json!({ "partition": p.partition, "leader": p.leader, "leader_epoch": p.leader_epoch, "replicas": p.replicas, "isr": p.isr }))
            .collect();
        println!(
            "{}",
            json!({ "name": topic.name, "id": topic.id.to_string(), "partitions": partitions })
        );
        return;
    }
    println!("topic {} (id {})", topic.name, topic.id);
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
        println!("{}", json!(list));
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
        println!("{}", padded.join("  ").trim_end());
    };
    line(headers.to_vec());
    for row in &rows {
        line(row.iter().map(String::as_str).collect());
    }
}
