//! Storage benchmark: append and read throughput of one partition log, each
//! figure printed next to the same disk's raw limit measured in the same run.
//!
//! For every batch size and flush policy it appends for a fixed time from
//! several threads (group commit needs concurrent appenders, as a broker has),
//! counts the fdatasyncs the log made through a counting file-system seam,
//! then writes the same number of bytes with plain `write` calls and an
//! fdatasync at the same cadence: the raw limit. Reads are compared with
//! plain sequential 1 MiB reads of the same segment files.

use clap::Parser;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use storage::fs::{FileHandle, FileSystem, OsFs};
use storage::{batch, FlushPolicy, Log, LogConfig, SharedLog};

#[derive(Parser)]
#[command(about = "Partition-log append and read throughput next to the disk's raw limits")]
struct Args {
    /// Directory to benchmark in (on the disk to measure); emptied first.
    #[arg(long, default_value = "target/storage-bench")]
    dir: PathBuf,
    /// Seconds each append case runs.
    #[arg(long, default_value_t = 5)]
    seconds: u64,
    /// Concurrent appenders.
    #[arg(long, default_value_t = 8)]
    threads: usize,
    /// Stop a case after this many MiB even if time remains.
    #[arg(long, default_value_t = 1024)]
    max_mib: u64,
}

/// Counts fdatasyncs of segment files, delegating to the real file system.
#[derive(Debug, Default)]
struct CountingFs {
    syncs: Arc<AtomicU64>,
}

#[derive(Debug)]
struct CountingFile {
    inner: Arc<dyn FileHandle>,
    syncs: Arc<AtomicU64>,
}

impl FileHandle for CountingFile {
    fn read_exact_at(&self, buf: &mut [u8], position: u64) -> std::io::Result<()> {
        self.inner.read_exact_at(buf, position)
    }
    fn write_all_at(&self, buf: &[u8], position: u64) -> std::io::Result<()> {
        self.inner.write_all_at(buf, position)
    }
    fn len(&self) -> std::io::Result<u64> {
        self.inner.len()
    }
    fn set_len(&self, len: u64) -> std::io::Result<()> {
        self.inner.set_len(len)
    }
    fn sync_data(&self) -> std::io::Result<()> {
        self.syncs.fetch_add(1, Ordering::Relaxed);
        self.inner.sync_data()
    }
}

impl FileSystem for CountingFs {
    fn create_dir_all(&self, path: &Path) -> std::io::Result<()> {
        OsFs.create_dir_all(path)
    }
    fn list_dir(&self, path: &Path) -> std::io::Result<Vec<String>> {
        OsFs.list_dir(path)
    }
    fn open(&self, path: &Path, create: bool) -> std::io::Result<Arc<dyn FileHandle>> {
        let inner = OsFs.open(path, create)?;
        if path.extension().is_some_and(|e| e == "log") {
            return Ok(Arc::new(CountingFile {
                inner,
                syncs: self.syncs.clone(),
            }));
        }
        Ok(inner)
    }
    fn remove_file(&self, path: &Path) -> std::io::Result<()> {
        OsFs.remove_file(path)
    }
    fn rename(&self, from: &Path, to: &Path) -> std::io::Result<()> {
        OsFs.rename(from, to)
    }
    fn sync_dir(&self, path: &Path) -> std::io::Result<()> {
        OsFs.sync_dir(path)
    }
    fn exists(&self, path: &Path) -> bool {
        OsFs.exists(path)
    }
}

/// A batch of one record whose whole size is `size` bytes.
fn batch_of(size: usize) -> Vec<u8> {
    let overhead = batch::build_batch(&[b""], 0).len();
    // The record's length varint grows by a byte or two with the value.
    let mut value_len = size - overhead;
    loop {
        let b = batch::build_batch(&[&vec![b'x'; value_len]], 0);
        if b.len() <= size {
            return b;
        }
        value_len -= b.len() - size;
    }
}

struct AppendRun {
    bytes: u64,
    secs: f64,
    syncs: u64,
}

fn mb_s(bytes: u64, secs: f64) -> f64 {
    bytes as f64 / secs / 1e6
}

fn append_case(args: &Args, dir: &Path, batch_size: usize, flush: FlushPolicy) -> AppendRun {
    let _ = std::fs::remove_dir_all(dir);
    let fs = CountingFs::default();
    let syncs = fs.syncs.clone();
    let config = LogConfig {
        flush,
        ..LogConfig::default()
    };
    let log = Arc::new(SharedLog::new(
        Log::open(Arc::new(fs), dir, config).expect("open"),
    ));
    let template = batch_of(batch_size);
    let budget = args.max_mib << 20;
    let written = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs(args.seconds);
    let start = Instant::now();
    let workers: Vec<_> = (0..args.threads)
        .map(|_| {
            let (log, template, written) = (log.clone(), template.clone(), written.clone());
            std::thread::spawn(move || {
                while Instant::now() < deadline && written.load(Ordering::Relaxed) < budget {
                    let now_ms = std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map_or(0, |d| d.as_millis() as i64);
                    log.append(&template, 1, now_ms).expect("append");
                    written.fetch_add(template.len() as u64, Ordering::Relaxed);
                }
            })
        })
        .collect();
    for w in workers {
        w.join().expect("appender");
    }
    let secs = start.elapsed().as_secs_f64();
    AppendRun {
        bytes: written.load(Ordering::Relaxed),
        secs,
        syncs: syncs.load(Ordering::Relaxed),
    }
}

/// Plain sequential writes of `chunk` bytes with an fdatasync every
/// `sync_every` bytes (0: only at the end): the disk's raw limit at the same
/// cadence.
fn raw_write(path: &Path, total: u64, chunk: usize, sync_every: u64) -> f64 {
    let _ = std::fs::remove_file(path);
    let mut f = std::fs::File::create(path).expect("create raw file");
    let buf = vec![b'r'; chunk];
    let (mut done, mut since_sync) = (0u64, 0u64);
    let start = Instant::now();
    while done < total {
        f.write_all(&buf).expect("raw write");
        done += chunk as u64;
        since_sync += chunk as u64;
        if sync_every > 0 && since_sync >= sync_every {
            f.sync_data().expect("raw fdatasync");
            since_sync = 0;
        }
    }
    f.sync_data().expect("raw fdatasync");
    let secs = start.elapsed().as_secs_f64();
    let _ = std::fs::remove_file(path);
    mb_s(done, secs)
}

fn read_case(dir: &Path) -> (u64, f64) {
    let log = Log::open(Arc::new(OsFs), dir, LogConfig::default()).expect("reopen");
    let end = log.log_end_offset();
    let (mut offset, mut bytes) = (log.log_start_offset(), 0u64);
    let start = Instant::now();
    while offset < end {
        let read = log.read(offset, 1 << 20, end).expect("read");
        bytes += read.bytes.len() as u64;
        offset = read.next_offset;
    }
    (bytes, start.elapsed().as_secs_f64())
}

fn raw_read(dir: &Path) -> (u64, f64) {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("list")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect();
    files.sort();
    let mut buf = vec![0u8; 1 << 20];
    let (mut bytes, start) = (0u64, Instant::now());
    for path in files {
        let mut f = std::fs::File::open(path).expect("open segment");
        loop {
            let n = f.read(&mut buf).expect("raw read");
            if n == 0 {
                break;
            }
            bytes += n as u64;
        }
    }
    (bytes, start.elapsed().as_secs_f64())
}

/// Drops the segment files from the page cache so reads hit the disk.
fn evict(dir: &Path) {
    for entry in std::fs::read_dir(dir).expect("list") {
        let path = entry.expect("entry").path();
        let file = std::fs::File::open(&path).expect("open for eviction");
        file.sync_all().expect("sync before eviction");
        rustix::fs::fadvise(&file, 0, None, rustix::fs::Advice::DontNeed).expect("fadvise");
    }
}

/// CRC-32C throughput over a 256 MiB buffer, MB/s.
fn crc_speed() -> f64 {
    let buf = vec![0x5au8; 256 << 20];
    let start = Instant::now();
    let crc = crc32c::crc32c(&buf);
    std::hint::black_box(crc);
    mb_s(buf.len() as u64, start.elapsed().as_secs_f64())
}

fn main() {
    let args = Args::parse();
    std::fs::create_dir_all(&args.dir).expect("bench dir");
    println!(
        "storage-bench: {} appender threads, {} s per case, dir {}",
        args.threads,
        args.seconds,
        args.dir.display()
    );
    println!(
        "{:<9} {:<8} {:>10} {:>12} {:>10} {:>14} {:>7}",
        "batch", "flush", "MB/s", "records/s", "syncs", "raw MB/s", "ratio"
    );
    let policies = [
        ("always", FlushPolicy::Always),
        ("1000ms", FlushPolicy::Interval(Duration::from_secs(1))),
        ("never", FlushPolicy::Never),
    ];
    let log_dir = args.dir.join("bench-0");
    for batch_size in [1024usize, 64 * 1024] {
        for (name, policy) in policies {
            let run = append_case(&args, &log_dir, batch_size, policy);
            let cadence = run.bytes.checked_div(run.syncs).unwrap_or(0);
            let raw = raw_write(&args.dir.join("raw"), run.bytes, batch_size, cadence);
            let ours = mb_s(run.bytes, run.secs);
            println!(
                "{:<9} {:<8} {:>10.1} {:>12.0} {:>10} {:>14.1} {:>6.0}%",
                format!("{} KiB", batch_size / 1024),
                name,
                ours,
                (run.bytes / batch_size as u64) as f64 / run.secs,
                run.syncs,
                raw,
                100.0 * ours / raw
            );
        }
    }
    // The last case left a log of 64 KiB batches: read it back from the disk
    // (evicted from the page cache), then again from the warm cache.
    for cache in ["cold", "warm"] {
        if cache == "cold" {
            evict(&log_dir);
        }
        let (ours_bytes, ours_secs) = read_case(&log_dir);
        if cache == "cold" {
            evict(&log_dir);
        }
        let (raw_bytes, raw_secs) = raw_read(&log_dir);
        let (ours, raw) = (mb_s(ours_bytes, ours_secs), mb_s(raw_bytes, raw_secs));
        println!(
            "sequential read, {cache} cache ({} MB of 64 KiB batches, CRC-32C checked): {ours:.0} MB/s, raw {raw:.0} MB/s, ratio {:.0}%",
            ours_bytes / 1_000_000,
            100.0 * ours / raw
        );
    }
    println!(
        "CRC-32C on this CPU: {:.0} MB/s (bounds warm-cache reads)",
        crc_speed()
    );
    let _ = std::fs::remove_dir_all(&log_dir);
}
