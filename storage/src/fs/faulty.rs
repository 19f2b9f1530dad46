//! An in-memory [`FileSystem`] that injects faults, for tests.
//!
//! It keeps, per file, the bytes written and the bytes last made durable by
//! `sync_data`, and per directory the entries last made durable by
//! `sync_dir`. [`FaultyFs::crash`] throws away what was not made durable, as
//! a power cut would: files created, renamed or removed without a directory
//! sync come back as they were, and appended bytes not synced are lost, or
//! torn at a random byte. [`FaultyFs::fail_after`] makes the Nth mutating
//! operation from now (write, set_len, sync, rename, remove) fail, and every
//! one after it until the next crash, as a dying disk does.
//! [`FaultyFs::hold_next_read`] parks a read until released, to show what
//! may run while a read is in flight.

use super::{FileHandle, FileSystem};
use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

/// What a crash does to bytes that were written but not synced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CrashMode {
    /// All unsynced bytes are lost.
    LoseUnsynced,
    /// A random prefix of each file's unsynced appended bytes survives.
    TearUnsynced,
}

#[derive(Debug, Default)]
struct Inode {
    data: Vec<u8>,
    synced: Vec<u8>,
}

#[derive(Debug, Default)]
struct State {
    inodes: Vec<Inode>,
    names: BTreeMap<PathBuf, usize>,
    durable_names: BTreeMap<PathBuf, usize>,
    dirs: BTreeSet<PathBuf>,
    /// Mutating operations left before the injected failure; `Some(0)` fails.
    fail_countdown: Option<u64>,
    tripped: bool,
    /// Bumped at each crash: handles from before it stop working.
    generation: u64,
    rng: u64,
    syncs: u64,
    sync_delay: Duration,
    /// The next `read_exact_at` parks until released.
    hold_next_read: bool,
    /// A read is parked.
    read_held: bool,
}

impl State {
    fn mutate(&mut self) -> io::Result<()> {
        if self.tripped {
            return Err(io::Error::other("injected fault: disk failed earlier"));
        }
        match self.fail_countdown {
            Some(0) => {
                self.tripped = true;
                Err(io::Error::other("injected fault"))
            }
            Some(n) => {
                self.fail_countdown = Some(n - 1);
                Ok(())
            }
            None => Ok(()),
        }
    }

    fn random(&mut self, bound: usize) -> usize {
        // xorshift64*: deterministic for a seed, good enough to pick a byte.
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        (self.rng.wrapping_mul(0x2545_f491_4f6c_dd1d) % (bound as u64 + 1)) as usize
    }
}

/// The fault-injecting file system. Clones share one state.
#[derive(Debug, Clone)]
pub struct FaultyFs {
    state: Arc<Mutex<State>>,
    /// Signals a parked read's arrival and release.
    read_gate: Arc<Condvar>,
}

impl FaultyFs {
    /// An empty file system; `seed` drives where torn writes are cut.
    pub fn new(seed: u64) -> Self {
        let state = State {
            rng: seed | 1,
            ..State::default()
        };
        Self {
            state: Arc::new(Mutex::new(state)),
            read_gate: Arc::new(Condvar::new()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The `n`th mutating operation from now fails (0: the next one), and all
    /// after it until [`crash`](Self::crash).
    pub fn fail_after(&self, n: u64) {
        self.lock().fail_countdown = Some(n);
    }

    /// Whether an injected failure has happened since the last crash.
    pub fn tripped(&self) -> bool {
        self.lock().tripped
    }

    /// Number of `sync_data` calls that succeeded.
    pub fn sync_count(&self) -> u64 {
        self.lock().syncs
    }

    /// Makes each `sync_data` take this long, as a real disk does.
    pub fn set_sync_delay(&self, delay: Duration) {
        self.lock().sync_delay = delay;
    }

    /// Makes the next `read_exact_at` (on any file) wait, before it reads,
    /// until [`release_held_read`](Self::release_held_read).
    pub fn hold_next_read(&self) {
        self.lock().hold_next_read = true;
    }

    /// Waits up to `timeout` for a read to be parked; whether one is.
    pub fn wait_read_held(&self, timeout: Duration) -> bool {
        let s = self.lock();
        let (s, _) = self
            .read_gate
            .wait_timeout_while(s, timeout, |s| !s.read_held)
            .unwrap_or_else(|e| e.into_inner());
        s.read_held
    }

    /// Lets the parked read go on: it reads the file as it is now.
    pub fn release_held_read(&self) {
        self.lock().read_held = false;
        self.read_gate.notify_all();
    }

    /// Simulates a power cut: only durable state survives. Handles opened
    /// before the crash fail from now on. Clears injected failures.
    pub fn crash(&self, mode: CrashMode) {
        let mut s = self.lock();
        s.generation += 1;
        s.fail_countdown = None;
        s.tripped = false;
        s.names = s.durable_names.clone();
        for i in 0..s.inodes.len() {
            let synced_len = s.inodes[i].synced.len();
            let extends = s.inodes[i].data.starts_with(&s.inodes[i].synced);
            let keep = match mode {
                CrashMode::TearUnsynced if extends => {
                    let extra = s.inodes[i].data.len() - synced_len;
                    synced_len + s.random(extra)
                }
                _ => synced_len,
            };
            let inode = &mut s.inodes[i];
            if extends {
                inode.data.truncate(keep);
            } else {
                inode.data = inode.synced.clone();
            }
            inode.synced = inode.data.clone();
        }
    }

    /// A file's current contents.
    pub fn contents(&self, path: &Path) -> Option<Vec<u8>> {
        let s = self.lock();
        s.names.get(path).map(|&id| s.inodes[id].data.clone())
    }
}

#[derive(Debug)]
struct FaultyFile {
    fs: FaultyFs,
    inode: usize,
    generation: u64,
}

impl FaultyFile {
    fn live(&self) -> io::Result<MutexGuard<'_, State>> {
        let s = self.fs.lock();
        if s.generation != self.generation {
            return Err(io::Error::other("file handle from before a crash"));
        }
        Ok(s)
    }
}

impl FileHandle for FaultyFile {
    fn read_exact_at(&self, buf: &mut [u8], position: u64) -> io::Result<()> {
        let mut s = self.live()?;
        if s.hold_next_read {
            (s.hold_next_read, s.read_held) = (false, true);
            self.fs.read_gate.notify_all();
            while s.read_held {
                s = self.fs.read_gate.wait(s).unwrap_or_else(|e| e.into_inner());
            }
            drop(s);
            s = self.live()?;
        }
        let data = &s.inodes[self.inode].data;
        let start = position as usize;
        let end = start + buf.len();
        if end > data.len() {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        buf.copy_from_slice(&data[start..end]);
        Ok(())
    }

    fn write_all_at(&self, buf: &[u8], position: u64) -> io::Result<()> {
        let mut s = self.live()?;
        let failure = s.mutate();
        // A failing write may still have put a prefix of its bytes down.
        let len = match failure {
            Ok(()) => buf.len(),
            Err(_) => s.random(buf.len().saturating_sub(1)),
        };
        let data = &mut s.inodes[self.inode].data;
        let start = position as usize;
        if data.len() < start + len {
            data.resize(start + len, 0);
        }
        data[start..start + len].copy_from_slice(&buf[..len]);
        failure
    }

    fn len(&self) -> io::Result<u64> {
        Ok(self.live()?.inodes[self.inode].data.len() as u64)
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        let mut s = self.live()?;
        s.mutate()?;
        s.inodes[self.inode].data.resize(len as usize, 0);
        Ok(())
    }

    fn sync_data(&self) -> io::Result<()> {
        let delay = {
            let mut s = self.live()?;
            s.mutate()?;
            let inode = &mut s.inodes[self.inode];
            inode.synced = inode.data.clone();
            s.syncs += 1;
            s.sync_delay
        };
        if !delay.is_zero() {
            std::thread::sleep(delay);
        }
        Ok(())
    }
}

fn parent(path: &Path) -> &Path {
    path.parent().unwrap_or(Path::new(""))
}

impl FileSystem for FaultyFs {
    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        // Directories are durable at once: the log's crash analysis is
        // about the files inside one directory.
        let mut s = self.lock();
        for dir in path.ancestors() {
            s.dirs.insert(dir.to_path_buf());
        }
        Ok(())
    }

    fn list_dir(&self, path: &Path) -> io::Result<Vec<String>> {
        let s = self.lock();
        if !s.dirs.contains(path) {
            return Err(io::ErrorKind::NotFound.into());
        }
        Ok(s.names
            .keys()
            .filter(|p| parent(p) == path)
            .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
            .collect())
    }

    fn open(&self, path: &Path, create: bool) -> io::Result<Arc<dyn FileHandle>> {
        let mut s = self.lock();
        if !s.dirs.contains(parent(path)) {
            return Err(io::ErrorKind::NotFound.into());
        }
        let inode = match s.names.get(path) {
            Some(&id) => id,
            None if create => {
                s.mutate()?;
                s.inodes.push(Inode::default());
                let id = s.inodes.len() - 1;
                s.names.insert(path.to_path_buf(), id);
                id
            }
            None => return Err(io::ErrorKind::NotFound.into()),
        };
        let generation = s.generation;
        Ok(Arc::new(FaultyFile {
            fs: self.clone(),
            inode,
            generation,
        }))
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        let mut s = self.lock();
        s.mutate()?;
        s.names
            .remove(path)
            .map(|_| ())
            .ok_or_else(|| io::ErrorKind::NotFound.into())
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut s = self.lock();
        s.mutate()?;
        let id = s.names.remove(from).ok_or(io::ErrorKind::NotFound)?;
        s.names.insert(to.to_path_buf(), id);
        Ok(())
    }

    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        let mut s = self.lock();
        s.mutate()?;
        let current: Vec<(PathBuf, usize)> = s
            .names
            .iter()
            .filter(|(p, _)| parent(p) == path)
            .map(|(p, &id)| (p.clone(), id))
            .collect();
        s.durable_names.retain(|p, _| parent(p) != path);
        s.durable_names.extend(current);
        Ok(())
    }

    fn exists(&self, path: &Path) -> bool {
        let s = self.lock();
        s.names.contains_key(path) || s.dirs.contains(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crash_forgets_unsynced_bytes_and_entries() {
        let fs = FaultyFs::new(1);
        let dir = Path::new("/d");
        fs.create_dir_all(dir).unwrap();
        let a = fs.open(&dir.join("a"), true).unwrap();
        a.write_all_at(b"hello", 0).unwrap();
        a.sync_data().unwrap();
        fs.sync_dir(dir).unwrap();
        a.write_all_at(b" world", 5).unwrap();
        let b = fs.open(&dir.join("b"), true).unwrap();
        b.write_all_at(b"x", 0).unwrap();
        b.sync_data().unwrap(); // data synced, but the entry is not
        fs.crash(CrashMode::LoseUnsynced);
        assert_eq!(fs.contents(&dir.join("a")).unwrap(), b"hello");
        assert!(!fs.exists(&dir.join("b")));
        assert!(a.len().is_err(), "old handles die with the crash");
    }

    #[test]
    fn unsynced_truncation_is_undone_by_a_crash() {
        let fs = FaultyFs::new(1);
        fs.create_dir_all(Path::new("/d")).unwrap();
        let f = fs.open(Path::new("/d/f"), true).unwrap();
        f.write_all_at(b"abcdef", 0).unwrap();
        f.sync_data().unwrap();
        fs.sync_dir(Path::new("/d")).unwrap();
        f.set_len(2).unwrap();
        fs.crash(CrashMode::TearUnsynced);
        assert_eq!(fs.contents(Path::new("/d/f")).unwrap(), b"abcdef");
    }

    #[test]
    fn the_nth_mutation_fails_and_the_rest_too() {
        let fs = FaultyFs::new(1);
        fs.create_dir_all(Path::new("/d")).unwrap();
        let f = fs.open(Path::new("/d/f"), true).unwrap();
        fs.fail_after(1);
        f.write_all_at(b"ok", 0).unwrap();
        assert!(f.sync_data().is_err());
        assert!(f.write_all_at(b"no", 2).is_err());
        assert!(fs.tripped());
        fs.crash(CrashMode::LoseUnsynced);
        assert!(!fs.exists(Path::new("/d/f")));
    }
}
