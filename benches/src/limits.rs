//! The machine's own limits, measured in the same run as the figure they
//! are set against.

use std::io::Write;
use std::path::Path;
use std::time::Instant;

/// Disk limit in MB/s: sequential 1 MiB writes, each followed by
/// fdatasync, 256 MiB, in a file under `dir` (the disk the data lives on).
pub fn disk_limit(dir: &Path) -> f64 {
    let path = dir.join("disk-limit");
    let mut f = std::fs::File::create(&path).expect("create");
    let chunk = vec![9u8; 1 << 20];
    let start = Instant::now();
    for _ in 0..256 {
        f.write_all(&chunk).expect("write");
        f.sync_data().expect("fdatasync");
    }
    let result = (256u64 << 20) as f64 / start.elapsed().as_secs_f64() / 1e6;
    let _ = std::fs::remove_file(path);
    result
}

/// How a disk takes a long run of synced appends: this class of virtual
/// disk writes the first one to two gigabytes of a run at full speed, then
/// falls to a much lower sustained rate.
#[derive(Debug, Clone, Copy)]
pub struct DiskProfile {
    /// MB/s over the first [`STEP`] bytes.
    pub burst_mb_s: f64,
    /// MB/s over the second half of the bytes written.
    pub sustained_mb_s: f64,
    /// Bytes written before a step first ran below half the burst rate
    /// (all of them if none did).
    pub burst_bytes: u64,
}

/// The step a [`DiskProfile`] is timed in.
pub const STEP: u64 = 256 << 20;

/// Sequential 1 MiB appends, each followed by fdatasync, `total` bytes in
/// one new file under `dir`, timed per [`STEP`].
pub fn disk_profile(dir: &Path, total: u64) -> DiskProfile {
    let path = dir.join("disk-profile");
    let mut f = std::fs::File::create(&path).expect("create");
    let chunk = vec![9u8; 1 << 20];
    let mut steps = Vec::new();
    let mut step_start = Instant::now();
    for i in 1..=total >> 20 {
        f.write_all(&chunk).expect("write");
        f.sync_data().expect("fdatasync");
        if (i << 20) % STEP == 0 {
            steps.push(step_start.elapsed().as_secs_f64());
            step_start = Instant::now();
        }
    }
    let _ = std::fs::remove_file(path);
    profile_of(&steps)
}

/// The profile of per-[`STEP`] write times in seconds.
///
/// `[0.2, 0.2, 2.0, 2.0]` → burst 1342 MB/s, sustained 134 MB/s, burst
/// bytes 2 steps.
pub fn profile_of(step_secs: &[f64]) -> DiskProfile {
    let rate = |secs: &[f64]| (secs.len() as u64 * STEP) as f64 / secs.iter().sum::<f64>() / 1e6;
    let Some(first) = step_secs.first() else {
        return DiskProfile {
            burst_mb_s: f64::NAN,
            sustained_mb_s: f64::NAN,
            burst_bytes: 0,
        };
    };
    let burst_mb_s = rate(&[*first]);
    let fast = step_secs
        .iter()
        .take_while(|s| rate(&[**s]) >= burst_mb_s / 2.0)
        .count();
    DiskProfile {
        burst_mb_s,
        sustained_mb_s: rate(&step_secs[step_secs.len() / 2..]),
        burst_bytes: fast as u64 * STEP,
    }
}

/// The middle value (the upper middle of an even count); NaN of none.
///
/// `[5.0, 1.0, 3.0]` → `3.0`.
pub fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted.get(sorted.len() / 2).copied().unwrap_or(f64::NAN)
}

#[cfg(test)]
mod tests {
    use super::{median, profile_of, STEP};

    #[test]
    fn median_is_the_middle_of_the_sorted_values() {
        assert_eq!(median(&[5.0, 1.0, 3.0]), 3.0);
        assert_eq!(median(&[2.0, 9.0, 4.0, 7.0]), 7.0);
        assert_eq!(median(&[8.0]), 8.0);
        assert!(median(&[]).is_nan());
    }

    #[test]
    fn a_profile_splits_the_burst_from_the_sustained_rate() {
        let p = profile_of(&[0.2, 0.2, 2.0, 2.0]);
        let step_mb = STEP as f64 / 1e6;
        assert!((p.burst_mb_s - step_mb / 0.2).abs() < 1e-6);
        assert!((p.sustained_mb_s - step_mb / 2.0).abs() < 1e-6);
        assert_eq!(p.burst_bytes, 2 * STEP);
        // A disk that never slows: all of it is burst.
        let even = profile_of(&[0.5, 0.5, 0.5]);
        assert_eq!(even.burst_bytes, 3 * STEP);
        assert!((even.sustained_mb_s - even.burst_mb_s).abs() < 1e-6);
        // A dip that is not below half does not end the burst; one just
        // below half does.
        assert_eq!(profile_of(&[0.2, 0.39, 0.2, 1.0]).burst_bytes, 3 * STEP);
        assert_eq!(profile_of(&[0.2, 0.45, 0.2]).burst_bytes, STEP);
        assert!(profile_of(&[]).burst_mb_s.is_nan());
    }
}
