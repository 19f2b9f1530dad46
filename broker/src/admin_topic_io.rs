//! `baton admin topic produce`, `consume` and `add-partitions`: records in
//! and out of a topic from a shell, as rpk's `topic produce`/`consume` and
//! kcat's `-P`/`-C` do, through Baton's own producer and consumer; and
//! growing a topic (CreatePartitions) as `kafka-topics --alter
//! --partitions` does.

pub mod format;

use crate::admin_cli::outln;
use anyhow::Context;
use bytes::Bytes;
use clap::Args;
use client::admin::TopicInfo;
use client::{Admin, Consumer, ConsumerConfig, ConsumerRecord, Producer, ProducerConfig, Record};
use serde_json::{json, Value};
use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

/// `topic add-partitions` arguments.
#[derive(Debug, Args)]
pub struct AddPartitionsArgs {
    /// Topic name.
    name: String,
    /// The new total number of partitions (Kafka's `kafka-topics --alter
    /// --partitions`); must be above today's count.
    #[arg(long, required_unless_present = "num", conflicts_with = "num")]
    total: Option<i32>,
    /// How many partitions to add (rpk's `topic add-partitions -n`).
    #[arg(long, short = 'n')]
    num: Option<i32>,
}

/// `topic produce` arguments.
#[derive(Debug, Args)]
pub struct ProduceArgs {
    /// Topic to produce to; records are read from stdin, one per line.
    topic: String,
    /// A key for every record.
    #[arg(long, short = 'k', conflicts_with = "key_delimiter")]
    key: Option<String>,
    /// Split each line at the first DELIM into key and value (kcat's
    /// `-K`); a line without it is a value with no key.
    #[arg(long, short = 'K', value_name = "DELIM")]
    key_delimiter: Option<String>,
    /// A header as name=value for every record (repeatable).
    #[arg(long = "header", short = 'H', value_parser = crate::admin_cli::parse_name_value)]
    headers: Vec<(String, String)>,
    /// The partition to write to [default: by key (murmur2, as Kafka's
    /// default partitioner), round-robin without a key].
    #[arg(long, short = 'p')]
    partition: Option<i32>,
    /// acks: all (-1), 1 or 0. The producer is idempotent with all.
    #[arg(long, default_value = "all", value_parser = parse_acks)]
    acks: i16,
}

/// `topic consume` arguments.
#[derive(Debug, Args)]
pub struct ConsumeArgs {
    /// Topic to consume from.
    topic: String,
    /// A partition to read (repeatable) [default: all].
    #[arg(long = "partition", short = 'p')]
    partitions: Vec<i32>,
    /// Where to start: earliest (or start, beginning), latest (or end), or
    /// an offset.
    #[arg(long, short = 'o', default_value = "earliest", value_parser = parse_start)]
    offset: Start,
    /// Stop after this many records.
    #[arg(long, short = 'n')]
    num: Option<u64>,
    /// Stop at the end of every partition as it was at start (kcat's `-e`).
    #[arg(long, short = 'e')]
    exit: bool,
    /// Output format, kcat's `-f` tokens: %t topic, %p partition, %o
    /// offset, %T timestamp, %k key, %K key length, %s value, %S value
    /// length, %h headers, \n \t escapes [default: "%t %p %o %k %s\n"].
    /// `--json` prints one JSON object per record instead.
    #[arg(long, short = 'f')]
    format: Option<String>,
}

fn parse_acks(text: &str) -> Result<i16, String> {
    match text {
        "all" | "-1" => Ok(-1),
        "1" => Ok(1),
        "0" => Ok(0),
        _ => Err(format!("expected all, -1, 1 or 0, got {text:?}")),
    }
}

/// Where `consume` starts on each partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// The log start.
    Earliest,
    /// The high watermark: only records produced from now on.
    Latest,
    /// This offset (out of range: the log start, as
    /// `auto.offset.reset=earliest`).
    At(i64),
}

/// Parses `--offset`: kcat's `beginning`/`end`, rpk's `start`/`end`,
/// Kafka's `earliest`/`latest`, or an offset.
pub fn parse_start(text: &str) -> Result<Start, String> {
    match text {
        "earliest" | "beginning" | "start" | "oldest" => Ok(Start::Earliest),
        "latest" | "end" | "newest" => Ok(Start::Latest),
        _ => match text.parse::<i64>() {
            Ok(n) if n >= 0 => Ok(Start::At(n)),
            _ => Err(format!(
                "expected earliest, latest or an offset (0 or more), got {text:?}"
            )),
        },
    }
}

/// The total `add-partitions` asks for: `--total`, or today's count plus
/// `--num`. Not checked against today's count: the broker refuses a total
/// that adds nothing with Kafka's INVALID_PARTITIONS.
fn requested_total(current: i32, total: Option<i32>, num: Option<i32>) -> anyhow::Result<i32> {
    match (total, num) {
        (Some(total), _) => Ok(total),
        (None, Some(num)) => current
            .checked_add(num)
            .ok_or_else(|| anyhow::anyhow!("{current} + {num} partitions is too many")),
        (None, None) => anyhow::bail!("give --total or --num"),
    }
}

/// Grows the topic, then describes it (for the caller to print as `topic
/// describe` does).
pub async fn add_partitions(
    admin: &mut Admin,
    args: &AddPartitionsArgs,
) -> anyhow::Result<TopicInfo> {
    let current = match args.num {
        Some(_) => admin.describe_topic(&args.name).await?.partitions.len() as i32,
        None => 0,
    };
    let total = requested_total(current, args.total, args.num)?;
    admin.create_partitions(&args.name, total).await?;
    Ok(admin.describe_topic(&args.name).await?)
}

/// Records acknowledged before their results are printed: a window, so
/// stdin is read ahead of the acknowledgements.
const PRODUCE_WINDOW: usize = 1_000;

/// Produces each line of stdin as a record; prints where each was stored,
/// in input order.
pub async fn produce(admin: &mut Admin, args: ProduceArgs, as_json: bool) -> anyhow::Result<()> {
    if let Some(p) = args.partition {
        // Else the producer would retry a leader that never comes.
        chosen_partitions(admin, &args.topic, &[p]).await?;
    }
    let mut config = ProducerConfig::new(&admin.bootstrap());
    config.acks = args.acks;
    let producer = Producer::new(config)
        .await
        .context("cannot start the producer")?;
    let mut lines = stdin_lines();
    let mut pending = VecDeque::new();
    while let Some(line) = lines.recv().await {
        let record = to_record(&args, &line.context("reading stdin")?);
        pending.push_back(producer.send(record).await?);
        if pending.len() >= PRODUCE_WINDOW {
            print_stored(pending.pop_front().expect("full"), as_json).await?;
        }
    }
    while let Some(delivery) = pending.pop_front() {
        print_stored(delivery, as_json).await?;
    }
    Ok(())
}

/// Stdin's lines, without their `\n`, read on a thread of their own (a
/// blocking read must not stop the runtime that sends the records).
fn stdin_lines() -> tokio::sync::mpsc::Receiver<std::io::Result<Vec<u8>>> {
    let (tx, rx) = tokio::sync::mpsc::channel(PRODUCE_WINDOW);
    std::thread::spawn(move || {
        use std::io::BufRead;
        let mut stdin = std::io::stdin().lock();
        loop {
            let mut line = Vec::new();
            let read = stdin.read_until(b'\n', &mut line).map(|n| {
                if line.last() == Some(&b'\n') {
                    line.pop();
                }
                (n, line)
            });
            let done = !matches!(read, Ok((n, _)) if n > 0);
            let sent = match read {
                Ok((0, _)) => Ok(()),
                Ok((_, line)) => tx.blocking_send(Ok(line)),
                Err(e) => tx.blocking_send(Err(e)),
            };
            if done || sent.is_err() {
                return;
            }
        }
    });
    rx
}

/// One line of input as a record, per `--key`, `--key-delimiter`,
/// `--header` and `--partition`.
fn to_record(args: &ProduceArgs, line: &[u8]) -> Record {
    let (key, value) = split_key(line, args.key.as_deref(), args.key_delimiter.as_deref());
    let mut record = Record::new(&args.topic, Bytes::copy_from_slice(value));
    record.key = key.map(Bytes::copy_from_slice);
    record.partition = args.partition;
    for (name, value) in &args.headers {
        record = record.with_header(name, Bytes::copy_from_slice(value.as_bytes()));
    }
    record
}

/// A line's key and value: the fixed key, or the line split at the first
/// delimiter (no delimiter in it: no key), or no key.
fn split_key<'a>(
    line: &'a [u8],
    key: Option<&'a str>,
    delimiter: Option<&str>,
) -> (Option<&'a [u8]>, &'a [u8]) {
    if let Some(key) = key {
        return (Some(key.as_bytes()), line);
    }
    let Some(d) = delimiter.map(str::as_bytes).filter(|d| !d.is_empty()) else {
        return (None, line);
    };
    match line.windows(d.len()).position(|w| w == d) {
        Some(at) => (Some(&line[..at]), &line[at + d.len()..]),
        None => (None, line),
    }
}

async fn print_stored(delivery: client::Delivery, as_json: bool) -> anyhow::Result<()> {
    let stored = delivery.await?;
    if as_json {
        outln!(
            "{}",
            json!({ "topic": stored.topic, "partition": stored.partition, "offset": stored.offset })
        );
    } else {
        outln!(
            "produced to {}-{} at offset {}",
            stored.topic,
            stored.partition,
            stored.offset
        );
    }
    Ok(())
}

/// How long `consume` keeps polling through errors (a leader moving, a
/// broker restarting) before it gives up.
const CONSUME_RETRY_FOR: Duration = Duration::from_secs(30);

/// Prints the topic's records from `--offset` on, until `--num` records,
/// the ends seen at start (`--exit`), or for ever.
pub async fn consume(admin: &mut Admin, args: ConsumeArgs, as_json: bool) -> anyhow::Result<()> {
    let tokens = format::parse(args.format.as_deref().unwrap_or(format::DEFAULT))
        .map_err(anyhow::Error::msg)?;
    let partitions = chosen_partitions(admin, &args.topic, &args.partitions).await?;
    let keys: Vec<(String, i32)> = partitions
        .iter()
        .map(|p| (args.topic.clone(), *p))
        .collect();
    let starts = match args.offset {
        Start::Earliest => admin.log_start_offsets(&keys).await?,
        Start::Latest => admin.log_end_offsets(&keys).await?,
        Start::At(n) => keys.iter().map(|k| (k.clone(), n)).collect(),
    };
    let ends = match args.exit {
        true => Some(ends_now(admin, &args.topic, &partitions).await?),
        false => None,
    };
    let mut consumer = Consumer::new(ConsumerConfig::new(&admin.bootstrap()))
        .await
        .context("cannot start the consumer")?;
    let topic = args.topic.as_str();
    for p in &partitions {
        let start = starts.get(&(topic.to_string(), *p)).copied().unwrap_or(0);
        consumer.seek(topic, *p, start);
    }
    let mut reading = partitions;
    let mut printed = 0u64;
    let mut failing_since = None;
    loop {
        if let Some(ends) = &ends {
            // Positions, not records printed: a compacted log's position
            // moves past batches whose records were cleaned away.
            reading.retain(|p| consumer.position(topic, *p).is_none_or(|at| at < ends[p]));
            let left: Vec<(&str, i32)> = reading.iter().map(|p| (topic, *p)).collect();
            consumer.assign(&left);
        }
        if reading.is_empty() || args.num.is_some_and(|n| printed >= n) {
            return Ok(());
        }
        let records = match consumer.poll(Duration::from_millis(500)).await {
            Ok(records) => {
                failing_since = None;
                records
            }
            Err(e) if retriable(&e) => {
                let since = *failing_since.get_or_insert_with(Instant::now);
                if since.elapsed() > CONSUME_RETRY_FOR {
                    return Err(e.into());
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
            Err(e) => return Err(e.into()),
        };
        for record in records {
            let end = ends.as_ref().map_or(i64::MAX, |e| e[&record.partition]);
            if record.offset >= end || args.num.is_some_and(|n| printed >= n) {
                continue;
            }
            write_record(&record, &tokens, as_json);
            printed += 1;
        }
        flush_stdout();
    }
}

/// Each partition's high watermark now, for `--exit`.
async fn ends_now(
    admin: &mut Admin,
    topic: &str,
    partitions: &[i32],
) -> anyhow::Result<BTreeMap<i32, i64>> {
    let keys: Vec<(String, i32)> = partitions.iter().map(|p| (topic.to_string(), *p)).collect();
    let ends = admin.log_end_offsets(&keys).await?;
    partitions
        .iter()
        .map(|p| match ends.get(&(topic.to_string(), *p)) {
            Some(end) => Ok((*p, *end)),
            None => anyhow::bail!("no high watermark for {topic}-{p}: its leader did not answer"),
        })
        .collect()
}

/// Whether a poll's error may pass: a lost connection or a retriable
/// Kafka error (a leader moving).
fn retriable(error: &client::ClientError) -> bool {
    match error.kafka_error() {
        Some(kafka) => client::cluster::is_retriable(kafka),
        None => matches!(error, client::ClientError::Io { .. }),
    }
}

/// `--partition`s, checked against the topic, or all of its partitions.
async fn chosen_partitions(
    admin: &mut Admin,
    topic: &str,
    asked: &[i32],
) -> anyhow::Result<Vec<i32>> {
    let described = admin.describe_topic(topic).await?;
    let all: Vec<i32> = described.partitions.iter().map(|p| p.partition).collect();
    if asked.is_empty() {
        return Ok(all);
    }
    for p in asked {
        if !all.contains(p) {
            return Err(client::ClientError::Kafka {
                context: format!("topic {topic} has no partition {p}"),
                error: kafka_protocol::ResponseError::UnknownTopicOrPartition,
            }
            .into());
        }
    }
    let mut asked = asked.to_vec();
    asked.sort_unstable();
    asked.dedup();
    Ok(asked)
}

/// A record as rpk's JSON shows it: key, value and header values as
/// UTF-8 text (invalid bytes replaced), null when absent.
fn record_json(record: &ConsumerRecord) -> Value {
    let text = |b: &Option<Bytes>| b.as_ref().map(|b| String::from_utf8_lossy(b).into_owned());
    let headers: Vec<Value> = record
        .headers
        .iter()
        .map(|(k, v)| json!({ "key": k, "value": text(v) }))
        .collect();
    json!({
        "topic": record.topic,
        "partition": record.partition,
        "offset": record.offset,
        "timestamp": record.timestamp,
        "key": text(&record.key),
        "value": text(&record.value),
        "headers": headers,
    })
}

fn write_record(record: &ConsumerRecord, tokens: &[format::Token], as_json: bool) {
    if as_json {
        outln!("{}", record_json(record));
        return;
    }
    let fields = format::Fields {
        topic: &record.topic,
        partition: record.partition,
        offset: record.offset,
        timestamp: record.timestamp,
        key: record.key.as_ref(),
        value: record.value.as_ref(),
        headers: &record.headers,
    };
    write_raw(&format::render(tokens, &fields));
}

/// Writes bytes (keys and values need not be UTF-8) to stdout; a reader
/// that went away (`| head`) ends the command with exit 0, as `outln!`
/// does.
fn write_raw(bytes: &[u8]) {
    use std::io::Write;
    crate::admin_cli::stdout_written(std::io::stdout().lock().write_all(bytes));
}

fn flush_stdout() {
    use std::io::Write;
    crate::admin_cli::stdout_written(std::io::stdout().lock().flush());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_table() {
        let cases = [
            ("earliest", Ok(Start::Earliest)),
            ("beginning", Ok(Start::Earliest)),
            ("start", Ok(Start::Earliest)),
            ("latest", Ok(Start::Latest)),
            ("end", Ok(Start::Latest)),
            ("0", Ok(Start::At(0))),
            ("42", Ok(Start::At(42))),
            ("-1", Err(())),
            ("stored", Err(())),
            ("", Err(())),
        ];
        for (text, expected) in cases {
            assert_eq!(parse_start(text).map_err(drop), expected, "{text:?}");
        }
    }

    #[test]
    fn split_key_table() {
        type Case<'a> = (
            &'a str,
            Option<&'a str>,
            Option<&'a str>,
            Option<&'a str>,
            &'a str,
        );
        let cases: [Case; 7] = [
            ("v", None, None, None, "v"),
            ("a:b", None, None, None, "a:b"),
            ("a:b", Some("K"), Some(":"), Some("K"), "a:b"),
            ("a:b:c", None, Some(":"), Some("a"), "b:c"),
            ("no delimiter", None, Some(":"), None, "no delimiter"),
            (":v", None, Some(":"), Some(""), "v"),
            ("k::v", None, Some("::"), Some("k"), "v"),
        ];
        for (line, key, delimiter, want_key, want_value) in cases {
            let (k, v) = split_key(line.as_bytes(), key, delimiter);
            assert_eq!(
                (k, v),
                (want_key.map(str::as_bytes), want_value.as_bytes()),
                "{line:?} key {key:?} delimiter {delimiter:?}"
            );
        }
    }

    #[test]
    fn requested_total_table() {
        assert_eq!(requested_total(3, Some(5), None).ok(), Some(5));
        assert_eq!(requested_total(3, None, Some(2)).ok(), Some(5));
        assert_eq!(requested_total(3, None, Some(0)).ok(), Some(3));
        assert!(requested_total(i32::MAX, None, Some(1)).is_err());
        assert!(requested_total(3, None, None).is_err());
    }

    #[test]
    fn acks_table() {
        assert_eq!(parse_acks("all"), Ok(-1));
        assert_eq!(parse_acks("-1"), Ok(-1));
        assert_eq!(parse_acks("1"), Ok(1));
        assert_eq!(parse_acks("0"), Ok(0));
        assert!(parse_acks("2").is_err());
    }
}
