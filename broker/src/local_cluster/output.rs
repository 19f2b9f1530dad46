//! The started processes' output, each line prefixed with its node
//! (`[controller 1] `, `[broker 2] `) on local-cluster's stderr.
//!
//! A child must never wait on local-cluster: its pipes are read at once,
//! always, and lines go through a bounded queue to one writer thread. If
//! nobody reads local-cluster's stderr (the queue is full), lines are
//! dropped and counted, and the count is said once output flows again.
//! Each node also keeps its last lines, to say why it died.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};

/// Lines waiting for the writer, all nodes together.
const QUEUE_LINES: usize = 4096;

/// Lines each node keeps for an error report.
pub const TAIL_LINES: usize = 20;

/// Sends prefixed lines to one writer thread; clones share it.
#[derive(Clone)]
pub struct Output {
    tx: SyncSender<String>,
    dropped: Arc<AtomicU64>,
}

impl Output {
    /// Starts the writer thread on `sink` (local-cluster's stderr).
    pub fn start(sink: impl Write + Send + 'static) -> Output {
        Self::with_capacity(sink, QUEUE_LINES)
    }

    fn with_capacity(sink: impl Write + Send + 'static, capacity: usize) -> Output {
        let (tx, rx) = sync_channel(capacity);
        let dropped = Arc::new(AtomicU64::new(0));
        let counter = dropped.clone();
        std::thread::spawn(move || write_lines(rx, sink, &counter));
        Output { tx, dropped }
    }

    /// Queues one line; never waits. A full queue drops it (counted).
    pub fn line(&self, prefix: &str, line: &str) {
        match self.tx.try_send(format!("[{prefix}] {line}\n")) {
            Ok(()) | Err(TrySendError::Disconnected(_)) => {}
            Err(TrySendError::Full(_)) => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Reads `pipe` to its end on a thread of its own, queueing each line
    /// with `prefix` (unless `keep` returns false for it) and keeping the
    /// last ones in `tail`. The handle ends at the pipe's end.
    pub fn forward(
        &self,
        prefix: String,
        pipe: impl Read + Send + 'static,
        tail: Tail,
        keep: impl Fn(&str) -> bool + Send + 'static,
    ) -> std::thread::JoinHandle<()> {
        let output = self.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                if keep(&line) {
                    output.line(&prefix, &line);
                    tail.push(line);
                }
            }
        })
    }
}

/// Writes queued lines until every sender is gone. A failed write (nobody
/// reads) is ignored: the lines are lost, the children go on.
fn write_lines(rx: Receiver<String>, mut sink: impl Write, dropped: &AtomicU64) {
    for line in rx {
        let lost = dropped.swap(0, Ordering::Relaxed);
        if lost > 0 {
            let note =
                format!("[local-cluster] {lost} lines of output dropped: stderr was not read\n");
            let _ = sink.write_all(note.as_bytes());
        }
        let _ = sink.write_all(line.as_bytes());
    }
    let _ = sink.flush();
}

/// A node's last lines, and the error it exited with.
#[derive(Clone, Default)]
pub struct Tail(Arc<Mutex<Kept>>);

/// What a [`Tail`] keeps.
#[derive(Default)]
struct Kept {
    lines: VecDeque<String>,
    /// The last `Error: ...` line (what `main` returning an error prints),
    /// kept apart: with `RUST_BACKTRACE` set, the backtrace after it is
    /// longer than the tail.
    error: Option<String>,
}

impl Tail {
    fn push(&self, line: String) {
        let mut kept = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if line.starts_with("Error: ") {
            kept.error = Some(line.clone());
        }
        if kept.lines.len() == TAIL_LINES {
            kept.lines.pop_front();
        }
        kept.lines.push_back(line);
    }

    /// The kept lines, oldest first, led by the exit error if it is no
    /// longer among them.
    pub fn lines(&self) -> Vec<String> {
        let kept = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let error = kept.error.iter().filter(|e| !kept.lines.contains(e));
        error.chain(kept.lines.iter()).cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    /// A sink that takes lines into a shared buffer.
    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);

    impl Write for Buffer {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// A sink nobody reads: every write waits for ever (it says when the
    /// first one starts).
    struct Stuck(std::sync::mpsc::Sender<()>);

    impl Write for Stuck {
        fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
            let _ = self.0.send(());
            loop {
                std::thread::park();
            }
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn lines_are_prefixed_and_the_tail_kept() {
        let buffer = Buffer::default();
        let output = Output::start(buffer.clone());
        let text: String = (0..30).map(|i| format!("line {i}\n")).collect();
        let tail = Tail::default();
        output
            .forward(
                "broker 2".into(),
                std::io::Cursor::new(text),
                tail.clone(),
                |l| l != "line 3",
            )
            .join()
            .unwrap();
        drop(output);
        let deadline = Instant::now() + Duration::from_secs(5);
        let expected: String = (0..30)
            .filter(|i| *i != 3)
            .map(|i| format!("[broker 2] line {i}\n"))
            .collect();
        while *buffer.0.lock().unwrap() != expected.as_bytes() {
            assert!(Instant::now() < deadline, "not written");
            std::thread::sleep(Duration::from_millis(10));
        }
        let last: Vec<String> = (10..30).map(|i| format!("line {i}")).collect();
        assert_eq!(tail.lines(), last);
    }

    /// With `RUST_BACKTRACE` set, the backtrace after a node's exit error
    /// is longer than the tail: the error still leads what is shown, once.
    #[test]
    fn the_exit_error_outlives_a_long_backtrace() {
        let tail = Tail::default();
        tail.push("Error: data directory /d: File exists".into());
        for i in 0..TAIL_LINES {
            tail.push(format!("   {i}: frame"));
        }
        let lines = tail.lines();
        assert_eq!(lines.len(), TAIL_LINES + 1);
        assert_eq!(lines[0], "Error: data directory /d: File exists");
        assert_eq!(lines[TAIL_LINES], format!("   {}: frame", TAIL_LINES - 1));

        let short = Tail::default();
        short.push("Error: boom".into());
        short.push("trailing".into());
        assert_eq!(short.lines(), ["Error: boom", "trailing"], "shown once");
    }

    #[test]
    fn a_sink_nobody_reads_never_blocks_the_reader() {
        let (stuck, writing) = std::sync::mpsc::channel();
        let output = Output::with_capacity(Stuck(stuck), 2);
        // The writer takes a first line and blocks on it for good.
        output.line("controller 1", "first");
        writing.recv().expect("the writer writes");
        let text: String = (0..10_000).map(|i| format!("line {i}\n")).collect();
        let started = Instant::now();
        output
            .forward(
                "controller 1".into(),
                std::io::Cursor::new(text),
                Tail::default(),
                |_| true,
            )
            .join()
            .unwrap();
        assert!(started.elapsed() < Duration::from_secs(5));
        // Two queued, the rest counted.
        assert_eq!(output.dropped.load(Ordering::Relaxed), 10_000 - 2);
    }
}
