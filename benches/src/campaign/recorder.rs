//! The history file: every operation of the Rust workload as one JSON line
//! in the checker's format, written as it completes.

use checker::Op;
use std::io::Write;
use std::path::Path;
use std::sync::{Arc, Mutex};

/// Wall-clock unix milliseconds: the one clock of every history line (the
/// brokers' serve windows use it too, on the same host).
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Appends operations to a history file; cheap to clone.
#[derive(Clone)]
pub struct Recorder(Arc<Mutex<std::io::BufWriter<std::fs::File>>>);

impl Recorder {
    /// Creates (truncates) `path`.
    pub fn create(path: &Path) -> std::io::Result<Recorder> {
        let file = std::fs::File::create(path)?;
        Ok(Recorder(Arc::new(Mutex::new(std::io::BufWriter::new(
            file,
        )))))
    }

    /// Records one operation.
    pub fn record(&self, op: &Op) {
        let line = serde_json::to_string(op).expect("ops serialize");
        let mut out = self.0.lock().unwrap_or_else(|e| e.into_inner());
        // A history that cannot be written makes the whole run worthless.
        writeln!(out, "{line}").expect("write history");
    }

    /// Flushes buffered lines to the file.
    pub fn flush(&self) {
        let mut out = self.0.lock().unwrap_or_else(|e| e.into_inner());
        out.flush().expect("flush history");
    }
}
