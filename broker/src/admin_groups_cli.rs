//! `baton admin group ...`: consumer groups from the command line: list,
//! describe (members, assignments, committed offsets and lag), delete, and
//! offset resets.

use crate::admin_cli::print_table;
use clap::{ArgGroup, Subcommand};
use client::admin_groups::{GroupDescription, PartitionOffsets, ResetTo};
use client::Admin;
use serde_json::json;
use std::collections::BTreeMap;

/// `baton admin group` subcommands.
#[derive(Debug, Subcommand)]
pub enum GroupCommand {
    /// List consumer groups.
    List,
    /// A group's state, members, assignments, committed offsets and lag.
    Describe {
        /// Group id.
        group: String,
    },
    /// Delete a group and its committed offsets (only with no members).
    Delete {
        /// Group id.
        group: String,
    },
    /// Move a group's committed offsets on every partition of a topic
    /// (only with no members).
    #[command(group(ArgGroup::new("to").required(true).args(["to_earliest", "to_latest", "to_offset"])))]
    ResetOffsets {
        /// Group id.
        group: String,
        /// Topic whose partitions to reset.
        #[arg(long)]
        topic: String,
        /// To each partition's log start.
        #[arg(long)]
        to_earliest: bool,
        /// To each partition's high watermark.
        #[arg(long)]
        to_latest: bool,
        /// To this offset (clamped into each partition's range).
        #[arg(long)]
        to_offset: Option<i64>,
    },
}

/// Runs one group command.
pub async fn run(admin: &mut Admin, command: GroupCommand, as_json: bool) -> anyhow::Result<()> {
    match command {
        GroupCommand::List => list(admin, as_json).await,
        GroupCommand::Describe { group } => describe(admin, &group, as_json).await,
        GroupCommand::Delete { group } => {
            admin.delete_group(&group).await?;
            if as_json {
                println!("{}", json!({ "deleted": group }));
            } else {
                println!("deleted group {group}");
            }
            Ok(())
        }
        GroupCommand::ResetOffsets {
            group,
            topic,
            to_earliest,
            to_latest,
            to_offset,
        } => {
            let to = match (to_earliest, to_latest, to_offset) {
                (true, _, _) => ResetTo::Earliest,
                (_, true, _) => ResetTo::Latest,
                (_, _, Some(n)) => ResetTo::Offset(n),
                _ => anyhow::bail!("one of --to-earliest, --to-latest, --to-offset is required"),
            };
            let offsets = admin.reset_offsets(&group, &topic, to).await?;
            print_reset(&group, &topic, &offsets, as_json);
            Ok(())
        }
    }
}

async fn list(admin: &mut Admin, as_json: bool) -> anyhow::Result<()> {
    let groups = admin.list_groups().await?;
    if as_json {
        let list: Vec<_> = groups
            .iter()
            .map(|g| json!({ "group": g.group_id, "protocol_type": g.protocol_type, "state": g.state }))
            .collect();
        println!("{}", serde_json::Value::Array(list));
        return Ok(());
    }
    let rows = groups
        .iter()
        .map(|g| vec![g.group_id.clone(), g.state.clone(), g.protocol_type.clone()])
        .collect();
    print_table(&["GROUP", "STATE", "PROTOCOL_TYPE"], rows);
    Ok(())
}

async fn describe(admin: &mut Admin, group: &str, as_json: bool) -> anyhow::Result<()> {
    let description = admin.describe_group(group).await?;
    let offsets = partition_offsets(admin, group, &description).await?;
    if as_json {
        print_json(&description, &offsets);
        return Ok(());
    }
    println!(
        "group {} state {} protocol {} ({} members)",
        description.group_id,
        description.state,
        if description.protocol.is_empty() {
            "-"
        } else {
            &description.protocol
        },
        description.members.len()
    );
    let rows = description
        .members
        .iter()
        .map(|m| {
            vec![
                m.member_id.clone(),
                m.group_instance_id.clone().unwrap_or_else(|| "-".into()),
                m.client_id.clone(),
                m.client_host.clone(),
                partitions(&m.assignment),
            ]
        })
        .collect();
    print_table(
        &["MEMBER", "INSTANCE", "CLIENT_ID", "HOST", "ASSIGNMENT"],
        rows,
    );
    println!();
    let owner = owners(&description);
    let rows = offsets
        .iter()
        .map(|p| {
            let key = (p.topic.clone(), p.partition);
            vec![
                p.topic.clone(),
                p.partition.to_string(),
                opt(p.committed),
                opt(p.log_end),
                opt(p.lag),
                owner.get(&key).cloned().unwrap_or_else(|| "-".into()),
            ]
        })
        .collect();
    print_table(
        &[
            "TOPIC",
            "PARTITION",
            "COMMITTED",
            "LOG_END",
            "LAG",
            "MEMBER",
        ],
        rows,
    );
    Ok(())
}

/// Committed offsets and lag for every partition with a commit, plus the
/// assigned partitions without one (committed "-").
async fn partition_offsets(
    admin: &mut Admin,
    group: &str,
    description: &GroupDescription,
) -> anyhow::Result<Vec<PartitionOffsets>> {
    let mut offsets = admin.group_offsets(group).await?;
    let uncommitted: Vec<(String, i32)> = owners(description)
        .into_keys()
        .filter(|(t, p)| !offsets.iter().any(|o| &o.topic == t && o.partition == *p))
        .collect();
    let ends = admin.log_end_offsets(&uncommitted).await?;
    for (topic, partition) in uncommitted {
        let log_end = ends.get(&(topic.clone(), partition)).copied();
        offsets.push(PartitionOffsets {
            topic,
            partition,
            committed: None,
            log_end,
            lag: None,
        });
    }
    offsets.sort_by(|a, b| (&a.topic, a.partition).cmp(&(&b.topic, b.partition)));
    Ok(offsets)
}

/// Partition -> the member it is assigned to.
fn owners(description: &GroupDescription) -> BTreeMap<(String, i32), String> {
    description
        .members
        .iter()
        .flat_map(|m| {
            m.assignment
                .iter()
                .map(move |tp| (tp.clone(), m.member_id.clone()))
        })
        .collect()
}

fn print_json(description: &GroupDescription, offsets: &[PartitionOffsets]) {
    let members: Vec<_> = description
        .members
        .iter()
        .map(|m| {
            let assignment: Vec<_> = m
                .assignment
                .iter()
                .map(|(t, p)| json!({ "topic": t, "partition": p }))
                .collect();
            json!({ "member_id": m.member_id, "group_instance_id": m.group_instance_id, "client_id": m.client_id, "client_host": m.client_host, "topics": m.topics, "assignment": assignment })
        })
        .collect();
    let offsets: Vec<_> = offsets
        .iter()
        .map(|p| json!({ "topic": p.topic, "partition": p.partition, "committed": p.committed, "log_end": p.log_end, "lag": p.lag }))
        .collect();
    println!(
        "{}",
        json!({ "group": description.group_id, "state": description.state, "protocol_type": description.protocol_type, "protocol": description.protocol, "members": members, "offsets": offsets })
    );
}

fn print_reset(group: &str, topic: &str, offsets: &[(i32, i64)], as_json: bool) {
    if as_json {
        let list: Vec<_> = offsets
            .iter()
            .map(|(p, o)| json!({ "topic": topic, "partition": p, "offset": o }))
            .collect();
        println!("{}", json!({ "group": group, "offsets": list }));
        return;
    }
    println!("reset group {group} on {topic}:");
    let rows = offsets
        .iter()
        .map(|(p, o)| vec![topic.to_string(), p.to_string(), o.to_string()])
        .collect();
    print_table(&["TOPIC", "PARTITION", "NEW_OFFSET"], rows);
}

/// `[(t,0),(t,1),(u,3)]` -> `t-0,t-1,u-3`.
fn partitions(list: &[(String, i32)]) -> String {
    if list.is_empty() {
        return "-".into();
    }
    list.iter()
        .map(|(t, p)| format!("{t}-{p}"))
        .collect::<Vec<_>>()
        .join(",")
}

fn opt(value: Option<i64>) -> String {
    value.map_or("-".into(), |v| v.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(subcommand)]
        command: GroupCommand,
    }

    #[test]
    fn reset_needs_exactly_one_target() {
        let parse = |args: &[&str]| Cli::try_parse_from(args.iter().copied());
        let ok = parse(&[
            "x",
            "reset-offsets",
            "g",
            "--topic",
            "t",
            "--to-offset",
            "5",
        ])
        .unwrap();
        assert!(matches!(
            ok.command,
            GroupCommand::ResetOffsets {
                to_offset: Some(5),
                ..
            }
        ));
        assert!(parse(&["x", "reset-offsets", "g", "--topic", "t"]).is_err());
        assert!(parse(&[
            "x",
            "reset-offsets",
            "g",
            "--topic",
            "t",
            "--to-earliest",
            "--to-latest"
        ])
        .is_err());
    }

    #[test]
    fn partitions_shown() {
        assert_eq!(partitions(&[("t".into(), 0), ("u".into(), 3)]), "t-0,u-3");
        assert_eq!(partitions(&[]), "-");
    }
}
