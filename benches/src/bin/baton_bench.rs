//! Broker throughput benchmark: produce, consume and end-to-end latency
//! through Baton's Rust client, each figure next to this machine's own limits
//! measured in the same run (loopback TCP throughput, and the disk's
//! sequential write-plus-fdatasync rate). The produce workload also runs with
//! librdkafka (kcat) as the producer, so the broker's figure does not rest on
//! one client.
//!
//! Without `--bootstrap` it starts `baton` (the binary next to this one)
//! on a free port with a temporary data directory under `--dir`.

use baton_benches::limits::disk_limit;
use clap::{Parser, ValueEnum};
use client::{Admin, Consumer, ConsumerConfig, Producer, ProducerConfig, Record};
use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressStyle};
use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[derive(Clone, Copy, Debug, ValueEnum, PartialEq)]
enum Workload {
    /// Produce as fast as possible, then at half that rate for latency.
    Produce,
    /// Consume what `produce` wrote.
    Consume,
    /// Produce and consume at once: latency from send to receipt.
    E2e,
    /// All three.
    All,
    /// The peak produce with the idempotent producer on and off, in
    /// alternating rounds of the same run (the cost of claim 8).
    Idempotence,
}

#[derive(Parser, Debug, Clone)]
#[command(about = "Baton produce/consume throughput and latency next to the machine's limits")]
struct Args {
    /// What to run.
    #[arg(value_enum, default_value = "all")]
    workload: Workload,
    /// A running broker; without it the benchmark starts its own.
    #[arg(long)]
    bootstrap: Option<String>,
    /// Where a started broker keeps its data (on the disk to measure).
    #[arg(long, default_value = "target/baton-bench")]
    dir: PathBuf,
    /// Records to produce.
    #[arg(long, default_value_t = 300_000)]
    records: usize,
    /// Produce for this long instead of `--records` (the peak produce only:
    /// a long saturated run; the other workloads are skipped).
    #[arg(long)]
    duration_secs: Option<u64>,
    /// Bytes of value per record.
    #[arg(long, default_value_t = 1024)]
    record_size: usize,
    /// Producer batch.size in bytes.
    #[arg(long, default_value_t = 64 * 1024)]
    batch_size: usize,
    /// Producer linger.ms.
    #[arg(long, default_value_t = 5)]
    linger_ms: u64,
    /// acks: 0, 1 or -1 (all).
    #[arg(long, default_value_t = -1, allow_hyphen_values = true)]
    acks: i16,
    /// The Rust producer's enable.idempotence (it applies with acks=all).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    enable_idempotence: bool,
    /// Rounds of each setting for `idempotence`.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Partitions of the benchmark topic.
    #[arg(long, default_value_t = 1)]
    partitions: i32,
    /// Broker flush policy when the benchmark starts its own broker.
    #[arg(long, default_value = "always")]
    flush: String,
    /// Replication factor of the benchmark topics (3 on the compose
    /// cluster: `--bootstrap 172.28.0.11:9092`).
    #[arg(long, default_value_t = 1)]
    replication_factor: i16,
    /// Topic configs of the benchmark topics, `key=value`, repeatable
    /// (e.g. `retention.bytes=1073741824` for a long run).
    #[arg(long = "topic-config", value_parser = parse_config)]
    topic_configs: Vec<(String, String)>,
}

fn parse_config(s: &str) -> Result<(String, String), String> {
    let (k, v) = s.split_once('=').ok_or("expected key=value")?;
    Ok((k.to_string(), v.to_string()))
}

/// Creates a benchmark topic with the run's partitions, replication factor
/// and configs.
async fn create(admin: &mut Admin, args: &Args, topic: &str, partitions: i32) {
    let configs: Vec<(&str, &str)> = args
        .topic_configs
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    admin
        .create_topic(topic, partitions, args.replication_factor, &configs)
        .await
        .expect("create topic");
}

/// Each partition's leader epoch, to count leader changes over a run.
async fn leader_epochs(admin: &mut Admin, topic: &str) -> Vec<i32> {
    let info = admin.describe_topic(topic).await.expect("describe topic");
    info.partitions.iter().map(|p| p.leader_epoch).collect()
}

struct Broker {
    child: Option<Child>,
    addr: String,
}

impl Drop for Broker {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn start_broker(args: &Args) -> Broker {
    if let Some(addr) = &args.bootstrap {
        return Broker {
            child: None,
            addr: addr.clone(),
        };
    }
    let exe = std::env::current_exe()
        .expect("own path")
        .with_file_name("baton");
    assert!(
        exe.exists(),
        "{} not found: build it with cargo build --release",
        exe.display()
    );
    let data = args.dir.join("data");
    let _ = std::fs::remove_dir_all(&data);
    let mut child = Command::new(exe)
        .args([
            "--data-dir",
            data.to_str().expect("utf-8"),
            "--listen",
            "127.0.0.1:0",
            "--flush",
            &args.flush,
        ])
        .env("BATON_LOG", "warn")
        .stdout(Stdio::piped())
        .spawn()
        .expect("start baton");
    let stdout = child.stdout.take().expect("stdout");
    let mut line = String::new();
    std::io::BufReader::new(stdout)
        .read_line(&mut line)
        .expect("baton output");
    let addr = line
        .trim()
        .strip_prefix("baton listening on ")
        .expect("listening line")
        .to_string();
    Broker {
        child: Some(child),
        addr,
    }
}

fn bar(len: u64, what: &str) -> ProgressBar {
    let bar = ProgressBar::new(len);
    bar.set_style(
        ProgressStyle::with_template("{msg:>12} [{bar:40}] {pos}/{len} {per_sec}")
            .expect("template"),
    );
    bar.set_message(what.to_string());
    bar
}

fn mb_s(bytes: f64, secs: f64) -> f64 {
    bytes / secs / 1e6
}

fn percentiles(h: &Histogram<u64>) -> String {
    let ms = |v: u64| v as f64 / 1000.0;
    format!(
        "p50 {:.2} ms, p99 {:.2} ms, p99.9 {:.2} ms, max {:.2} ms",
        ms(h.value_at_quantile(0.5)),
        ms(h.value_at_quantile(0.99)),
        ms(h.value_at_quantile(0.999)),
        ms(h.max())
    )
}

/// Produces `args.records` records; `rate` limits records per second.
/// Returns (seconds, latency histogram in µs).
/// Produces `args.records` (or for `args.duration_secs`): (seconds,
/// latencies, records sent).
async fn produce(
    args: &Args,
    addr: &str,
    topic: &str,
    rate: Option<f64>,
) -> (f64, Histogram<u64>, usize) {
    let mut config = ProducerConfig::new(addr).enable_idempotence(args.enable_idempotence);
    config.acks = args.acks;
    config.batch_size = args.batch_size;
    config.linger = Duration::from_millis(args.linger_ms);
    let producer = Arc::new(Producer::new(config).await.expect("producer"));
    let latencies = Arc::new(Mutex::new(
        Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("histogram"),
    ));
    let value = vec![b'x'; args.record_size];
    let progress = bar(
        args.records as u64,
        if rate.is_some() {
            "half rate"
        } else {
            "produce"
        },
    );
    // One collector awaits deliveries in send order (they complete in order
    // per partition), instead of a task per record.
    let (tx, mut rx) = tokio::sync::mpsc::channel::<(Instant, client::Delivery)>(100_000);
    let collector = {
        let (latencies, progress) = (latencies.clone(), progress.clone());
        tokio::spawn(async move {
            while let Some((sent_at, delivery)) = rx.recv().await {
                delivery.await.expect("delivery");
                let us = sent_at.elapsed().as_micros() as u64;
                latencies
                    .lock()
                    .expect("histogram")
                    .record(us.max(1))
                    .expect("record");
                progress.inc(1);
            }
        })
    };
    let start = Instant::now();
    let deadline = args.duration_secs.map(|d| start + Duration::from_secs(d));
    let records = if deadline.is_some() {
        usize::MAX
    } else {
        args.records
    };
    let mut sent = 0;
    for i in 0..records {
        if deadline.is_some_and(|d| Instant::now() >= d) {
            break;
        }
        sent += 1;
        if let Some(rate) = rate {
            let due = start + Duration::from_secs_f64(i as f64 / rate);
            tokio::time::sleep_until(due.into()).await;
        }
        let record = Record::new(topic, value.clone()).with_partition(i as i32 % args.partitions);
        let sent_at = Instant::now();
        let delivery = producer.send(record).await.expect("send");
        tx.send((sent_at, delivery)).await.expect("collector");
    }
    drop(tx);
    collector.await.expect("collector");
    let secs = start.elapsed().as_secs_f64();
    progress.finish_and_clear();
    let h = latencies.lock().expect("histogram").clone();
    (secs, h, sent)
}

async fn consume(args: &Args, addr: &str, topic: &str) -> (f64, u64) {
    let mut consumer = Consumer::new(ConsumerConfig::new(addr))
        .await
        .expect("consumer");
    let assignment: Vec<(&str, i32)> = (0..args.partitions).map(|p| (topic, p)).collect();
    consumer.assign(&assignment);
    for p in 0..args.partitions {
        consumer.seek(topic, p, 0);
    }
    let progress = bar(args.records as u64, "consume");
    let (start, mut count, mut bytes) = (Instant::now(), 0usize, 0u64);
    while count < args.records {
        for r in consumer.poll(Duration::from_secs(1)).await.expect("poll") {
            bytes += r.value.map_or(0, |v| v.len() as u64);
            count += 1;
        }
        progress.set_position(count as u64);
    }
    progress.finish_and_clear();
    (start.elapsed().as_secs_f64(), bytes)
}

/// Send-to-receipt latency with producer and consumer running together.
async fn end_to_end(args: &Args, addr: &str, topic: &str) -> Histogram<u64> {
    let clock = Instant::now();
    let records = args.records.min(50_000);
    let consumer_topic = topic.to_string();
    let addr_c = addr.to_string();
    let reader = tokio::spawn(async move {
        let mut consumer = Consumer::new(ConsumerConfig::new(&addr_c))
            .await
            .expect("consumer");
        consumer.assign(&[(&consumer_topic, 0)]);
        consumer.seek(&consumer_topic, 0, 0);
        let mut h = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("histogram");
        let mut seen = 0;
        while seen < records {
            for r in consumer
                .poll(Duration::from_millis(100))
                .await
                .expect("poll")
            {
                let value = r.value.expect("value");
                let sent = u64::from_be_bytes(value[..8].try_into().expect("stamp"));
                let now = clock.elapsed().as_micros() as u64;
                h.record(now.saturating_sub(sent).max(1)).expect("record");
                seen += 1;
            }
        }
        h
    });
    let producer = Producer::new(ProducerConfig::new(addr))
        .await
        .expect("producer");
    let rate = 10_000.0;
    let start = Instant::now();
    for i in 0..records {
        tokio::time::sleep_until((start + Duration::from_secs_f64(i as f64 / rate)).into()).await;
        let mut value = (clock.elapsed().as_micros() as u64).to_be_bytes().to_vec();
        value.resize(args.record_size.max(8), b'x');
        // Delivery is observed by the consumer side; the future is not awaited.
        drop(
            producer
                .send(Record::new(topic, value).with_partition(0))
                .await
                .expect("send"),
        );
    }
    reader.await.expect("reader")
}

/// Same records through librdkafka (kcat): (seconds, records) or why not.
fn kcat_produce(args: &Args, addr: &str, topic: &str) -> Result<f64, String> {
    let input = args.dir.join("kcat-input");
    let mut file =
        std::io::BufWriter::new(std::fs::File::create(&input).map_err(|e| e.to_string())?);
    let line = vec![b'x'; args.record_size];
    for _ in 0..args.records {
        file.write_all(&line)
            .and_then(|()| file.write_all(b"\n"))
            .map_err(|e| e.to_string())?;
    }
    file.flush().map_err(|e| e.to_string())?;
    drop(file);
    let acks = if args.acks == -1 {
        "all".to_string()
    } else {
        args.acks.to_string()
    };
    let start = Instant::now();
    let status = Command::new("kcat")
        .args([
            "-b",
            addr,
            "-P",
            "-t",
            topic,
            "-l",
            input.to_str().expect("utf-8"),
        ])
        .args([
            "-X",
            &format!("acks={acks}"),
            "-X",
            &format!("linger.ms={}", args.linger_ms),
        ])
        .args([
            "-X",
            &format!("batch.size={}", args.batch_size),
            "-X",
            "enable.idempotence=false",
        ])
        .status()
        .map_err(|e| format!("kcat not runnable ({e}): run scripts/setup-test-deps.sh"))?;
    let secs = start.elapsed().as_secs_f64();
    let _ = std::fs::remove_file(&input);
    if !status.success() {
        return Err(format!("kcat exited with {status}"));
    }
    Ok(secs)
}

/// Loopback TCP throughput: one connection, 64 KiB writes, 2 GB.
async fn loopback_limit() -> f64 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let total: u64 = 2_000_000_000;
    let sink = tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.expect("accept");
        let mut buf = vec![0u8; 1 << 16];
        let mut got = 0u64;
        while got < total {
            let n = s.read(&mut buf).await.expect("read");
            if n == 0 {
                break;
            }
            got += n as u64;
        }
    });
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let chunk = vec![7u8; 1 << 16];
    let start = Instant::now();
    let mut sent = 0u64;
    while sent < total {
        s.write_all(&chunk).await.expect("write");
        sent += chunk.len() as u64;
    }
    sink.await.expect("sink");
    mb_s(total as f64, start.elapsed().as_secs_f64())
}

/// The peak produce with idempotence on and off, alternating, `rounds`
/// times each on fresh topics: the medians, and on's share of off's.
async fn idempotence_cost(args: &Args, addr: &str, admin: &mut Admin, topic: &str, limit: f64) {
    let mut rates: [Vec<f64>; 2] = [Vec::new(), Vec::new()];
    for round in 0..args.rounds {
        for (i, on) in [true, false].into_iter().enumerate() {
            let run = Args {
                enable_idempotence: on,
                ..args.clone()
            };
            let round_topic = format!("{topic}-{round}-{on}");
            create(admin, &run, &round_topic, run.partitions).await;
            let (secs, h, sent) = produce(&run, addr, &round_topic, None).await;
            let mb = mb_s((sent * run.record_size) as f64, secs);
            println!(
                "round {round}, idempotence {on}: {mb:.1} MB/s, {:.0} records/s; {}",
                sent as f64 / secs,
                percentiles(&h)
            );
            rates[i].push(mb);
        }
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (on, off) = (median(&mut rates[0]), median(&mut rates[1]));
    println!(
        "produce, idempotence on: median {on:.1} MB/s; off: median {off:.1} MB/s; on/off {:.3} (target >= 0.95); lower machine limit {limit:.0} MB/s",
        on / off
    );
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    std::fs::create_dir_all(&args.dir).expect("bench dir");
    let broker = start_broker(&args);
    let loopback = loopback_limit().await;
    // This class of virtual disk varies a lot from second to second: take
    // the median of three measurements (a fourth, after the run, is shown).
    let mut disks = [
        disk_limit(&args.dir),
        disk_limit(&args.dir),
        disk_limit(&args.dir),
    ];
    disks.sort_by(f64::total_cmp);
    let disk = disks[1];
    let limit = loopback.min(disk);
    println!("baton-bench: {} records of {} B, batch {} B, linger {} ms, acks {}, {} partition(s), replication factor {}, flush {}",
        args.records, args.record_size, args.batch_size, args.linger_ms, args.acks, args.partitions, args.replication_factor, args.flush);
    println!(
        "machine limits (same run): loopback TCP {loopback:.0} MB/s, disk write+fdatasync (1 MiB) median {disk:.0} MB/s (of {:.0}, {:.0}, {:.0})",
        disks[0], disks[1], disks[2]
    );
    let bytes = (args.records * args.record_size) as f64;
    let mut admin = Admin::connect(&broker.addr).await.expect("admin");
    let topic = format!("bench-{}", std::process::id());
    create(&mut admin, &args, &topic, args.partitions).await;
    let epochs_before = leader_epochs(&mut admin, &topic).await;
    if args.workload == Workload::Idempotence {
        return idempotence_cost(&args, &broker.addr, &mut admin, &topic, limit).await;
    }
    let mut peak = None;
    if matches!(
        args.workload,
        Workload::Produce | Workload::All | Workload::Consume
    ) {
        let (secs, h, sent) = produce(&args, &broker.addr, &topic, None).await;
        let bytes = (sent * args.record_size) as f64;
        let rate = sent as f64 / secs;
        peak = Some(rate);
        let epochs_after = leader_epochs(&mut admin, &topic).await;
        let changes: i32 = epochs_after
            .iter()
            .zip(&epochs_before)
            .map(|(a, b)| a - b)
            .sum();
        println!(
            "leader changes during the peak produce ({secs:.0} s): {changes} (leader epochs {epochs_before:?} -> {epochs_after:?})"
        );
        println!(
            "produce (baton client): {:.1} MB/s, {:.0} records/s, {:.0}% of the lower limit; {}",
            mb_s(bytes, secs),
            rate,
            100.0 * mb_s(bytes, secs) / limit,
            percentiles(&h)
        );
    }
    if args.duration_secs.is_some() {
        return;
    }
    if matches!(args.workload, Workload::Produce | Workload::All) {
        let half_topic = format!("{topic}-half");
        create(&mut admin, &args, &half_topic, args.partitions).await;
        let rate = peak.expect("peak measured") / 2.0;
        let (secs, h, _) = produce(&args, &broker.addr, &half_topic, Some(rate)).await;
        println!(
            "produce at half of peak ({:.0} records/s): {:.1} MB/s; {}",
            rate,
            mb_s(bytes, secs),
            percentiles(&h)
        );
        let kcat_topic = format!("{topic}-kcat");
        create(&mut admin, &args, &kcat_topic, args.partitions).await;
        match kcat_produce(&args, &broker.addr, &kcat_topic) {
            Ok(secs) => println!("produce (librdkafka via kcat, same workload): {:.1} MB/s, {:.0} records/s, {:.0}% of the lower limit",
                mb_s(bytes, secs), args.records as f64 / secs, 100.0 * mb_s(bytes, secs) / limit),
            Err(why) => println!("produce (librdkafka via kcat): not run: {why}"),
        }
    }
    if matches!(args.workload, Workload::Consume | Workload::All) {
        let (secs, read) = consume(&args, &broker.addr, &topic).await;
        println!(
            "consume (baton client): {:.1} MB/s, {:.0} records/s, {:.0}% of loopback",
            mb_s(read as f64, secs),
            args.records as f64 / secs,
            100.0 * mb_s(read as f64, secs) / loopback
        );
    }
    if matches!(args.workload, Workload::E2e | Workload::All) {
        let e2e_topic = format!("{topic}-e2e");
        create(&mut admin, &args, &e2e_topic, 1).await;
        let h = end_to_end(&args, &broker.addr, &e2e_topic).await;
        println!(
            "end-to-end at 10k records/s (send to consumer receipt): {}",
            percentiles(&h)
        );
    }
    println!(
        "disk write+fdatasync (1 MiB) after the run: {:.0} MB/s",
        disk_limit(&args.dir)
    );
}
