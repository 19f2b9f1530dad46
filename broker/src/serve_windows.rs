//! Serve windows: for each partition and leader epoch, the first and last
//! wall-clock millisecond at which this broker let a request act on the
//! partition as its leader. Written to `<data-dir>/serve-windows.json` every
//! maintenance tick (100 ms; not synced: this is evidence for tests and
//! operators, not state), so windows from several brokers on one clock can
//! be compared: claim 2 says no two brokers' windows for a partition ever
//! overlap. Loaded again at startup, so the file covers every run of the
//! broker on that data directory (the fault campaign restarts brokers).

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Mutex;

/// File name in the data directory.
pub const FILE: &str = "serve-windows.json";

/// One window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Window {
    /// Leader epoch.
    pub leader_epoch: i32,
    /// First request acted on, wall-clock ms.
    pub first_ms: i64,
    /// Last request acted on, wall-clock ms.
    pub last_ms: i64,
}

/// The windows of one broker, by topic and partition (nested, so the
/// per-request lookup borrows the topic name instead of building a key).
#[derive(Debug, Default)]
pub struct ServeWindows {
    windows: Mutex<BTreeMap<String, BTreeMap<i32, Vec<Window>>>>,
    dirty: std::sync::atomic::AtomicBool,
}

impl ServeWindows {
    /// The windows a previous run of this broker wrote to `data_dir`, so a
    /// restart adds to the evidence instead of overwriting it. A missing or
    /// unreadable file starts empty: it is evidence, not state.
    pub fn load(data_dir: &Path) -> ServeWindows {
        let mut windows: BTreeMap<String, BTreeMap<i32, Vec<Window>>> = BTreeMap::new();
        for (key, list) in read(data_dir).unwrap_or_default() {
            // Topic names may contain '-': the partition follows the last one.
            let Some((topic, partition)) = key.rsplit_once('-') else {
                continue;
            };
            let Ok(partition) = partition.parse() else {
                continue;
            };
            windows
                .entry(topic.to_string())
                .or_default()
                .insert(partition, list);
        }
        ServeWindows {
            windows: Mutex::new(windows),
            dirty: Default::default(),
        }
    }

    /// Records that a request acts on `topic`-`partition` as leader in
    /// `epoch` at `now_ms`.
    pub fn served(&self, topic: &str, partition: i32, epoch: i32, now_ms: i64) {
        let mut windows = self.windows.lock().unwrap_or_else(|e| e.into_inner());
        if !windows.contains_key(topic) {
            windows.insert(topic.to_string(), BTreeMap::new());
        }
        let by_partition = windows.get_mut(topic).expect("inserted above");
        let list = by_partition.entry(partition).or_default();
        match list.last_mut() {
            Some(w) if w.leader_epoch == epoch => w.last_ms = w.last_ms.max(now_ms),
            _ => list.push(Window {
                leader_epoch: epoch,
                first_ms: now_ms,
                last_ms: now_ms,
            }),
        }
        self.dirty.store(true, std::sync::atomic::Ordering::Relaxed);
    }

    /// Writes the windows to `data_dir` if they changed (rename over the
    /// old file, so a reader never sees half of one).
    pub fn write(&self, data_dir: &Path) -> std::io::Result<()> {
        if !self.dirty.swap(false, std::sync::atomic::Ordering::Relaxed) {
            return Ok(());
        }
        let json = {
            let windows = self.windows.lock().unwrap_or_else(|e| e.into_inner());
            let flat: BTreeMap<String, &Vec<Window>> = windows
                .iter()
                .flat_map(|(t, ps)| ps.iter().map(move |(p, w)| (format!("{t}-{p}"), w)))
                .collect();
            serde_json::to_vec(&flat).map_err(std::io::Error::other)?
        };
        let tmp = data_dir.join(format!("{FILE}.tmp"));
        std::fs::write(&tmp, json)?;
        std::fs::rename(tmp, data_dir.join(FILE))
    }
}

/// Reads a broker's windows file.
pub fn read(data_dir: &Path) -> std::io::Result<BTreeMap<String, Vec<Window>>> {
    let bytes = std::fs::read(data_dir.join(FILE))?;
    serde_json::from_slice(&bytes).map_err(std::io::Error::other)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_restart_keeps_the_windows_of_the_previous_run() {
        let dir = tempfile::tempdir().unwrap();
        let first = ServeWindows::default();
        first.served("my-topic", 2, 1, 100);
        first.write(dir.path()).unwrap();
        let second = ServeWindows::load(dir.path());
        second.served("my-topic", 2, 4, 500);
        second.write(dir.path()).unwrap();
        let epochs: Vec<i32> = read(dir.path()).unwrap()["my-topic-2"]
            .iter()
            .map(|w| w.leader_epoch)
            .collect();
        assert_eq!(epochs, vec![1, 4]);
        assert_eq!(
            ServeWindows::load(&dir.path().join("absent"))
                .windows
                .lock()
                .unwrap()
                .len(),
            0
        );
    }

    #[test]
    fn windows_grow_per_epoch_and_survive_a_write() {
        let w = ServeWindows::default();
        w.served("t", 0, 1, 100);
        w.served("t", 0, 1, 150);
        w.served("t", 0, 3, 900);
        w.served("t", 1, 2, 120);
        let dir = tempfile::tempdir().unwrap();
        w.write(dir.path()).unwrap();
        let read = read(dir.path()).unwrap();
        assert_eq!(
            read["t-0"],
            vec![
                Window {
                    leader_epoch: 1,
                    first_ms: 100,
                    last_ms: 150
                },
                Window {
                    leader_epoch: 3,
                    first_ms: 900,
                    last_ms: 900
                },
            ]
        );
        assert_eq!(read["t-1"].len(), 1);
    }
}
