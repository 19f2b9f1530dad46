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

/// Three [`disk_limit`]s and their median: this class of virtual disk
/// varies a lot from second to second. Returns (median, all three sorted).
pub fn disk_limit_median(dir: &Path) -> (f64, [f64; 3]) {
    let mut runs = [disk_limit(dir), disk_limit(dir), disk_limit(dir)];
    runs.sort_by(f64::total_cmp);
    (median(&runs), runs)
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
    use super::median;

    #[test]
    fn median_is_the_middle_of_the_sorted_values() {
        assert_eq!(median(&[5.0, 1.0, 3.0]), 3.0);
        assert_eq!(median(&[2.0, 9.0, 4.0, 7.0]), 7.0);
        assert_eq!(median(&[8.0]), 8.0);
        assert!(median(&[]).is_nan());
    }
}
