//! One campaign run, start to report.

use super::collect;
use super::docker::Cluster;
use super::faults::{self, Target};
use super::recorder::{now_ms, Recorder};
use super::schedule::{schedule, Fault, Plan};
use super::workload::{self, Ctx};
use checker::history::NemesisOp;
use checker::report::{run_summary, timeline_svg, RunSummary};
use checker::{History, Op};
use client::Admin;
use std::path::PathBuf;
use std::process::{Child, Command};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How to run a campaign.
#[derive(Debug, Clone)]
pub struct Config {
    /// The cluster.
    pub cluster: Cluster,
    /// The schedule's plan.
    pub plan: Plan,
    /// How long to keep injecting faults.
    pub duration: Duration,
    /// Pause after healing a fault before waiting for full recovery.
    pub quiet: Duration,
    /// Partitions of the workload's topic.
    pub partitions: i32,
    /// Rust producer tasks.
    pub rust_producers: u64,
    /// Sends a second per producer.
    pub rate: u32,
    /// Whether the librdkafka producer and group member run.
    pub rdkafka: bool,
    /// Session timeout of the group members.
    pub session: Duration,
    /// `scripts/clients`.
    pub clients_dir: PathBuf,
    /// The Python with confluent-kafka (scripts/setup-test-deps.sh).
    pub python: PathBuf,
    /// Where the history and report go.
    pub out: PathBuf,
}

/// What a run found.
pub struct Outcome {
    /// The summary written to `summary.txt`.
    pub summary: RunSummary,
    /// Whether the checker found nothing.
    pub valid: bool,
    /// Faults applied.
    pub faults_applied: usize,
}

/// Runs the campaign and writes `history.jsonl`, `summary.txt`,
/// `summary.json`, `anomalies.json` and `timeline.svg` to `config.out`.
pub async fn run(config: &Config) -> anyhow::Result<Outcome> {
    // A fresh directory: the librdkafka clients append to their files.
    let _ = std::fs::remove_dir_all(&config.out);
    std::fs::create_dir_all(&config.out)?;
    let faults = schedule(&config.plan);
    println!(
        "seed {} ({} faults planned)",
        config.plan.seed,
        faults.len()
    );
    for f in &faults {
        println!("  {f}");
    }
    let cluster = &config.cluster;
    cluster.heal_all()?;
    let stamp = now_ms();
    let topic = format!("campaign-{stamp}");
    let groups = [format!("rust-{stamp}"), format!("rdkafka-{stamp}")];
    create_topic(cluster, &topic, config.partitions).await?;
    let target = Target {
        cluster,
        topic: &topic,
        partitions: config.partitions,
        group: &groups[0],
    };
    faults::await_recovered(&target, Duration::from_secs(60)).await;
    let recorder = Recorder::create(&config.out.join("rust-ops.jsonl"))?;
    let ctx = Ctx {
        bootstrap: cluster.bootstrap(),
        topic: topic.clone(),
        partitions: config.partitions,
        recorder: recorder.clone(),
        stop: Arc::new(AtomicBool::new(false)),
    };
    let (tasks, mut children, client_files) = start_workload(config, &ctx, &groups)?;
    tokio::time::sleep(Duration::from_secs(5)).await;
    let applied = inject(config, &faults, &target, &recorder).await;
    cluster.heal_all()?;
    let recovered = faults::await_recovered(&target, Duration::from_secs(90)).await;
    println!("healed; cluster recovered: {recovered}");
    tokio::time::sleep(Duration::from_secs(5)).await;
    stop_workload(&ctx, tasks, &mut children).await;
    recorder.flush();
    let history = gather(config, &topic, &client_files, stamp).await?;
    let outcome = report(config, &history, applied)?;
    Ok(outcome)
}

async fn create_topic(cluster: &Cluster, topic: &str, partitions: i32) -> anyhow::Result<()> {
    let mut last = None;
    for _ in 0..60 {
        let attempt = async {
            let mut admin = Admin::connect(&cluster.bootstrap()).await?;
            admin
                .create_topic(topic, partitions, 3, &[("min.insync.replicas", "2")])
                .await
        };
        match attempt.await {
            Ok(_) => return Ok(()),
            Err(e) => last = Some(e),
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    anyhow::bail!("create topic {topic}: {last:?}")
}

type Workload = (Vec<tokio::task::JoinHandle<()>>, Vec<Child>, Vec<PathBuf>);

fn start_workload(config: &Config, ctx: &Ctx, groups: &[String; 2]) -> anyhow::Result<Workload> {
    let mut tasks = Vec::new();
    for process in 1..=config.rust_producers {
        tasks.push(tokio::spawn(workload::producer(
            ctx.clone(),
            process,
            config.rate,
        )));
    }
    tasks.push(tokio::spawn(workload::assigned_consumer(ctx.clone(), 100)));
    for process in [201, 202] {
        let group = groups[0].clone();
        tasks.push(tokio::spawn(workload::group_member(
            ctx.clone(),
            process,
            group,
            config.session,
        )));
    }
    let mut children = Vec::new();
    let mut files = Vec::new();
    if config.rdkafka {
        let script = config.clients_dir.join("campaign_client.py");
        let producer_file = config.out.join("rdkafka-producer.jsonl");
        let mut producer = Command::new(&config.python);
        producer
            .arg(&script)
            .args(["producer", &ctx.bootstrap, &ctx.topic]);
        producer
            .arg(ctx.partitions.to_string())
            .arg("300")
            .arg(&producer_file);
        producer.arg(config.rate.to_string());
        producer.stderr(std::fs::File::create(producer_file.with_extension("log"))?);
        children.push(producer.spawn()?);
        files.push(producer_file);
        for (process, name) in [(401, "rdkafka-1"), (402, "rdkafka-2")] {
            let file = config.out.join(format!("{name}.jsonl"));
            let mut member = Command::new(&config.python);
            member
                .arg(&script)
                .args(["member", &ctx.bootstrap, &groups[1], &ctx.topic]);
            member.arg(process.to_string()).arg(name).arg(&file);
            member.arg(config.session.as_millis().to_string());
            // librdkafka logs every connection it loses: kept, not shown.
            member.stderr(std::fs::File::create(file.with_extension("log"))?);
            children.push(member.spawn()?);
            files.push(file);
        }
    }
    Ok((tasks, children, files))
}

/// Applies faults one at a time until the schedule or the time runs out;
/// returns how many were applied.
async fn inject(config: &Config, faults: &[Fault], target: &Target<'_>, rec: &Recorder) -> usize {
    let began = Instant::now();
    let mut applied = 0;
    for fault in faults {
        if began.elapsed() >= config.duration {
            break;
        }
        let start_ms = now_ms();
        let done = match faults::apply(fault, target).await {
            Ok(done) => done,
            Err(e) => {
                println!("  {fault}: skipped ({e})");
                continue;
            }
        };
        tokio::time::sleep(Duration::from_millis(fault.hold_ms)).await;
        if let Err(e) = faults::heal(target.cluster, &done.heal) {
            println!("  {fault}: heal failed ({e}); healing everything");
            let _ = target.cluster.heal_all();
        }
        let end_ms = now_ms();
        let names: Vec<String> = done.targets.iter().map(|n| n.service.clone()).collect();
        println!(
            "  {fault}: {} at +{:.1}s",
            names.join(","),
            began.elapsed().as_secs_f64()
        );
        rec.record(&Op::Nemesis(NemesisOp {
            name: fault.kind.name().to_string(),
            targets: names,
            topic: done.partition.map(|_| target.topic.to_string()),
            partition: done.partition,
            start_ms,
            end_ms,
        }));
        applied += 1;
        tokio::time::sleep(config.quiet).await;
        faults::await_recovered(target, Duration::from_secs(30)).await;
    }
    applied
}

async fn stop_workload(ctx: &Ctx, tasks: Vec<tokio::task::JoinHandle<()>>, children: &mut [Child]) {
    ctx.stop.store(true, Ordering::Relaxed);
    for child in children.iter() {
        let pid = rustix::process::Pid::from_raw(child.id() as i32);
        if let Some(pid) = pid {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
        }
    }
    for task in tasks {
        if tokio::time::timeout(Duration::from_secs(30), task)
            .await
            .is_err()
        {
            println!("a workload task did not stop within 30 s");
        }
    }
    for child in children.iter_mut() {
        let deadline = Instant::now() + Duration::from_secs(30);
        while matches!(child.try_wait(), Ok(None)) && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}

async fn gather(
    config: &Config,
    topic: &str,
    client_files: &[PathBuf],
    since_ms: u64,
) -> anyhow::Result<History> {
    let mut ops = collect::client_file(&config.out.join("rust-ops.jsonl"))?;
    for file in client_files {
        ops.extend(collect::client_file(file)?);
    }
    ops.extend(collect::serve_windows(&config.cluster, since_ms)?);
    let bootstrap = config.cluster.bootstrap();
    ops.extend(collect::final_logs(&bootstrap, topic, config.partitions).await?);
    Ok(History { ops })
}

fn report(config: &Config, history: &History, applied: usize) -> anyhow::Result<Outcome> {
    let lines: Vec<String> = history
        .ops
        .iter()
        .map(serde_json::to_string)
        .collect::<Result<_, _>>()?;
    std::fs::write(config.out.join("history.jsonl"), lines.join("\n") + "\n")?;
    let report = checker::check(history);
    let summary = run_summary(history, &report);
    std::fs::write(
        config.out.join("anomalies.json"),
        serde_json::to_string_pretty(&report.anomalies)?,
    )?;
    std::fs::write(
        config.out.join("summary.json"),
        serde_json::to_string_pretty(&summary)?,
    )?;
    let text = format!(
        "seed {}, {applied} faults applied\n{}",
        config.plan.seed,
        summary.to_text()
    );
    std::fs::write(config.out.join("summary.txt"), &text)?;
    std::fs::write(config.out.join("timeline.svg"), timeline_svg(history))?;
    println!("{text}");
    Ok(Outcome {
        valid: report.is_valid(),
        summary,
        faults_applied: applied,
    })
}
