//! `baton admin group ...`: consumer groups from the command line: list,
//! describe (members, assignments, committed offsets and lag), delete, and
//! offset resets (a dry run unless `--execute`, as Kafka's tool).

use crate::admin_cli::{outln, print_table, warn};
use clap::{ArgGroup, Subcommand};
use client::admin_groups::reset::{plan, PlannedReset, ResetTo, TopicSelection};
use client::admin_groups::{GroupDescription, PartitionOffsets};
use client::{Admin, ClientError};
use kafka_protocol::ResponseError;
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
    /// Plan new committed offsets for a group and, with --execute, commit
    /// them (Kafka's --reset-offsets): a dry run by default. Executing
    /// needs a group with no members.
    #[command(group(ArgGroup::new("to").required(true).args(["to_earliest", "to_latest", "to_offset", "to_datetime", "shift_by"])))]
    #[command(group(ArgGroup::new("mode").args(["dry_run", "execute"])))]
    #[command(group(ArgGroup::new("scope").required(true).args(["topics", "all_topics"])))]
    ResetOffsets {
        /// Group id.
        group: String,
        /// Topic to reset: every partition, or some as topic:0,2
        /// (repeatable).
        #[arg(long = "topic", value_name = "TOPIC[:PARTITIONS]", value_parser = parse_selection)]
        topics: Vec<TopicSelection>,
        /// Every partition the group has a committed offset on.
        #[arg(long)]
        all_topics: bool,
        /// To each partition's log start.
        #[arg(long)]
        to_earliest: bool,
        /// To each partition's high watermark.
        #[arg(long)]
        to_latest: bool,
        /// To this offset; outside [log start, high watermark] it is moved
        /// to the nearest end, with a warning.
        #[arg(long, value_name = "OFFSET", allow_negative_numbers = true)]
        to_offset: Option<i64>,
        /// To the first offset at or after this time:
        /// YYYY-MM-DDTHH:mm:SS.sss, then Z or +hh:mm, else local time.
        #[arg(long, value_name = "DATETIME", value_parser = parse_datetime_arg)]
        to_datetime: Option<i64>,
        /// Move each committed offset by N (negative: back), clamped as
        /// --to-offset.
        #[arg(long, value_name = "N", allow_negative_numbers = true)]
        shift_by: Option<i64>,
        /// Only print the plan (the default).
        #[arg(long)]
        dry_run: bool,
        /// Commit the plan.
        #[arg(long)]
        execute: bool,
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
                outln!("{}", json!({ "group": group, "deleted": true }));
            } else {
                outln!("deleted group {group}");
            }
            Ok(())
        }
        GroupCommand::ResetOffsets {
            group,
            mut topics,
            all_topics,
            to_earliest,
            to_latest,
            to_offset,
            to_datetime,
            shift_by,
            execute,
            ..
        } => {
            let to = match (to_earliest, to_latest, to_offset, to_datetime, shift_by) {
                (true, ..) => ResetTo::Earliest,
                (_, true, ..) => ResetTo::Latest,
                (_, _, Some(n), ..) => ResetTo::Offset(n),
                (_, _, _, Some(ms), _) => ResetTo::Datetime(ms),
                (.., Some(n)) => ResetTo::ShiftBy(n),
                _ => anyhow::bail!("one of --to-earliest, --to-latest, --to-offset, --to-datetime, --shift-by is required"),
            };
            if all_topics {
                topics = committed_selection(admin, &group).await?;
            }
            reset(admin, &group, &topics, to, execute, as_json).await
        }
    }
}

/// The partitions the group has committed offsets on, by topic (Kafka's
/// `--all-topics`).
async fn committed_selection(
    admin: &mut Admin,
    group: &str,
) -> anyhow::Result<Vec<TopicSelection>> {
    let mut by_topic: BTreeMap<String, Vec<i32>> = BTreeMap::new();
    for (topic, partition) in admin.committed_offsets(group).await?.into_keys() {
        by_topic.entry(topic).or_default().push(partition);
    }
    Ok(by_topic
        .into_iter()
        .map(|(topic, partitions)| TopicSelection {
            topic,
            partitions: Some(partitions),
        })
        .collect())
}

/// Plans a reset, prints its warnings, commits it when `execute`, and
/// prints the plan.
async fn reset(
    admin: &mut Admin,
    group: &str,
    topics: &[TopicSelection],
    to: ResetTo,
    execute: bool,
    as_json: bool,
) -> anyhow::Result<()> {
    let datetime = match to {
        ResetTo::Datetime(ms) => Some(ms),
        _ => None,
    };
    let positions = admin.reset_positions(group, topics, datetime).await?;
    let rows = plan(to, &positions)?;
    for row in &rows {
        if let Some(w) = &row.warning {
            warn(&format!("WARN: {w}"));
        }
    }
    if execute {
        admin.commit_reset(group, &rows).await?;
    } else {
        let members = admin.describe_group(group).await?.members.len();
        if members > 0 {
            warn(&format!("WARN: group {group} has {members} members: --execute will be refused until they stop"));
        }
    }
    print_reset(group, &rows, execute, as_json);
    if !execute && !as_json {
        warn("dry run: no offsets changed (add --execute to apply)");
    }
    Ok(())
}

async fn list(admin: &mut Admin, as_json: bool) -> anyhow::Result<()> {
    let groups = admin.list_groups().await?;
    if as_json {
        // The same keys as in `group describe`.
        let list: Vec<_> = groups
            .iter()
            .map(|g| json!({ "group": g.group_id, "state": g.state, "protocol_type": g.protocol_type }))
            .collect();
        outln!("{}", serde_json::Value::Array(list));
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
    if description.state == "Dead" {
        // DescribeGroups answers "Dead" for a group it does not know.
        return Err(ClientError::Kafka {
            context: format!("consumer group '{group}' does not exist"),
            error: ResponseError::GroupIdNotFound,
        }
        .into());
    }
    let offsets = partition_offsets(admin, group, &description).await?;
    if as_json {
        print_json(&description, &offsets);
        return Ok(());
    }
    outln!(
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
    outln!("");
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
    outln!(
        "{}",
        json!({ "group": description.group_id, "state": description.state, "protocol_type": description.protocol_type, "protocol": description.protocol, "members": members, "offsets": offsets })
    );
}

/// The plan, as Kafka's tool prints it (with the current offset too), or
/// as JSON: `{"group", "executed", "partitions": [row...]}`.
fn print_reset(group: &str, rows: &[PlannedReset], executed: bool, as_json: bool) {
    if as_json {
        let list: Vec<_> = rows
            .iter()
            .map(|r| json!({ "topic": r.topic, "partition": r.partition, "committed": r.committed, "log_start": r.log_start, "log_end": r.log_end, "requested": r.requested, "new_offset": r.new_offset, "clamped": r.clamped, "warning": r.warning }))
            .collect();
        outln!(
            "{}",
            json!({ "group": group, "executed": executed, "partitions": list })
        );
        return;
    }
    let rows = rows
        .iter()
        .map(|r| {
            vec![
                group.to_string(),
                r.topic.clone(),
                r.partition.to_string(),
                opt(r.committed),
                r.new_offset.to_string(),
            ]
        })
        .collect();
    print_table(
        &[
            "GROUP",
            "TOPIC",
            "PARTITION",
            "CURRENT_OFFSET",
            "NEW_OFFSET",
        ],
        rows,
    );
}

/// `orders` (every partition) or `orders:0,2`, as Kafka's `--topic`.
fn parse_selection(text: &str) -> Result<TopicSelection, String> {
    let Some((topic, list)) = text.split_once(':') else {
        return Ok(TopicSelection {
            topic: text.to_string(),
            partitions: None,
        });
    };
    let partitions = list
        .split(',')
        .map(|p| {
            p.trim()
                .parse::<i32>()
                .map_err(|_| format!("bad partition {p:?} in {text:?}: expected topic:0,1"))
        })
        .collect::<Result<Vec<i32>, String>>()?;
    Ok(TopicSelection {
        topic: topic.to_string(),
        partitions: Some(partitions),
    })
}

fn parse_datetime_arg(text: &str) -> Result<i64, String> {
    parse_datetime(text, &chrono::Local)
}

/// Kafka's `--to-datetime` format, `YYYY-MM-DDTHH:mm:SS.sss` (milliseconds
/// optional), then `Z` or an offset such as `+05:00`; without one, the
/// time is in `local`, as Kafka's tool reads it in the JVM's time zone.
/// Milliseconds since the epoch.
fn parse_datetime<Tz: chrono::TimeZone>(text: &str, local: &Tz) -> Result<i64, String> {
    use chrono::{DateTime, NaiveDateTime};
    let bad = || {
        format!("{text:?} is not a datetime like 2024-05-01T13:00:00.000 (optionally ending in Z or +hh:mm)")
    };
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Ok(t.timestamp_millis());
    }
    if let Ok(t) = DateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S%.f%z") {
        return Ok(t.timestamp_millis());
    }
    let naive = NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S%.f").map_err(|_| bad())?;
    local
        .from_local_datetime(&naive)
        .earliest()
        .map(|t| t.timestamp_millis())
        .ok_or_else(|| format!("{text:?} does not exist in the local time zone"))
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
    fn reset_parses_kafkas_options() {
        let parse = |args: &[&str]| {
            let mut all = vec!["x", "reset-offsets", "g"];
            all.extend(args);
            Cli::try_parse_from(all).map(|c| c.command)
        };
        let shift = parse(&["--topic", "t:0,2", "--topic", "u", "--shift-by", "-3"]).unwrap();
        let GroupCommand::ResetOffsets {
            topics,
            shift_by,
            execute,
            ..
        } = shift
        else {
            panic!("{shift:?}")
        };
        assert_eq!(shift_by, Some(-3));
        assert!(!execute, "a dry run unless --execute");
        assert_eq!(topics[0].partitions, Some(vec![0, 2]));
        assert_eq!(
            (topics[1].topic.as_str(), &topics[1].partitions),
            ("u", &None)
        );
        let to_date = ["--topic", "t", "--to-datetime", "2024-05-01T00:00:00.000Z"];
        assert!(matches!(
            parse(&to_date),
            Ok(GroupCommand::ResetOffsets {
                to_datetime: Some(1_714_521_600_000),
                ..
            })
        ));
        let to = ["--topic", "t", "--to-latest"];
        assert!(parse(&[&to[..], &["--dry-run"]].concat()).is_ok());
        assert!(parse(&[&to[..], &["--execute"]].concat()).is_ok());
        assert!(parse(&[&to[..], &["--dry-run", "--execute"]].concat()).is_err());
        assert!(parse(&["--topic", "t:x", "--to-latest"]).is_err());
        assert!(parse(&["--to-latest"]).is_err(), "--topic or --all-topics");
        assert!(parse(&["--all-topics", "--to-latest"]).is_ok());
    }

    #[test]
    fn datetimes_in_kafkas_format() {
        let plus2 = chrono::FixedOffset::east_opt(2 * 3600).unwrap();
        // (text, milliseconds since the epoch; None: refused)
        let cases = [
            ("2024-05-01T00:00:00.000Z", Some(1_714_521_600_000)),
            ("2024-05-01T00:00:00.250Z", Some(1_714_521_600_250)),
            ("2024-05-01T00:00:00Z", Some(1_714_521_600_000)),
            ("2024-05-01T02:00:00.000+02:00", Some(1_714_521_600_000)),
            ("2024-05-01T02:00:00.000+0200", Some(1_714_521_600_000)),
            ("2024-04-30T19:00:00.000-05:00", Some(1_714_521_600_000)),
            // No zone: local time (here +02:00).
            ("2024-05-01T02:00:00.000", Some(1_714_521_600_000)),
            ("2024-05-01T02:00:00", Some(1_714_521_600_000)),
            ("2024-05-01", None),
            ("yesterday", None),
            ("2024-13-01T00:00:00.000", None),
        ];
        for (text, want) in cases {
            assert_eq!(parse_datetime(text, &plus2).ok(), want, "{text}");
        }
    }

    #[test]
    fn partitions_shown() {
        assert_eq!(partitions(&[("t".into(), 0), ("u".into(), 3)]), "t-0,u-3");
        assert_eq!(partitions(&[]), "-");
    }
}
