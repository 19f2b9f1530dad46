//! CPU time of a running process, read from `/proc/<pid>/stat` (Linux):
//! what a broker spent, measured from outside it, so the figure includes
//! every thread and cannot flatter the code being measured.

use std::process::Command;
use std::time::Duration;

/// The clock ticks Linux reports CPU times in when `getconf` cannot tell:
/// `USER_HZ`, 100 on every mainstream architecture.
pub const CLOCK_TICKS_DEFAULT: u64 = 100;

/// `utime + stime` in clock ticks from one `/proc/<pid>/stat` line: the
/// CPU the whole thread group spent in user and kernel mode.
///
/// The second field, the command name, is in parentheses and may itself
/// hold spaces and `)`, so fields are counted from the last `)`: after it
/// come field 3 (state) onwards, and utime, stime are fields 14 and 15.
///
/// `"42 (baton) S 1 42 42 0 -1 4194560 9 0 0 0 250 70 0 0 20 0 9 0"` →
/// `Some(320)`.
pub fn cpu_ticks(stat: &str) -> Option<u64> {
    let (_, after_name) = stat.rsplit_once(')')?;
    let mut fields = after_name.split_whitespace().skip(14 - 3);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

/// Clock ticks per second (`sysconf(_SC_CLK_TCK)`), asked of `getconf`
/// once: the benches take no libc dependency for one number.
pub fn clock_ticks_per_second() -> u64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|out| String::from_utf8(out.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .filter(|&ticks| ticks > 0)
        .unwrap_or(CLOCK_TICKS_DEFAULT)
}

/// Reads the CPU time of a set of processes.
pub struct CpuClock {
    /// Ticks per second, read once.
    ticks_per_second: u64,
}

impl CpuClock {
    /// Asks the system for its clock tick once.
    pub fn new() -> CpuClock {
        CpuClock {
            ticks_per_second: clock_ticks_per_second(),
        }
    }

    /// The CPU time process `pid` has spent so far.
    pub fn cpu_time(&self, pid: u32) -> std::io::Result<Duration> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
        let ticks = cpu_ticks(&stat).ok_or_else(|| {
            std::io::Error::new(std::io::ErrorKind::InvalidData, "bad /proc stat line")
        })?;
        Ok(Duration::from_secs_f64(
            ticks as f64 / self.ticks_per_second as f64,
        ))
    }

    /// The CPU time of each of `pids`, in their order.
    pub fn sample(&self, pids: &[u32]) -> Vec<Duration> {
        pids.iter()
            .map(|&pid| self.cpu_time(pid).expect("read /proc/<pid>/stat"))
            .collect()
    }
}

impl Default for CpuClock {
    fn default() -> CpuClock {
        CpuClock::new()
    }
}

/// Seconds of CPU each process spent between two [`CpuClock::sample`]s.
pub fn spent(before: &[Duration], after: &[Duration]) -> Vec<f64> {
    assert_eq!(before.len(), after.len(), "samples of the same processes");
    before
        .iter()
        .zip(after)
        .map(|(b, a)| a.saturating_sub(*b).as_secs_f64())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utime_plus_stime_from_a_stat_line() {
        // Fields 14 (utime) and 15 (stime) are 250 and 70; the fields
        // around them (13: cmajflt, 16: cutime) differ so a shifted
        // index gives another sum.
        let line = "42 (baton) S 1 42 42 0 -1 4194560 9 0 11 0 250 70 5 3 20 0 9 0 123 4096 77";
        assert_eq!(cpu_ticks(line), Some(320));
    }

    #[test]
    fn a_name_with_spaces_and_parentheses_does_not_shift_the_fields() {
        let line = "7 (a) b (c) R 1 7 7 0 -1 0 0 0 0 0 12 30 0 0 20 0 1 0";
        assert_eq!(cpu_ticks(line), Some(42));
    }

    #[test]
    fn a_truncated_or_garbled_line_is_none() {
        assert_eq!(cpu_ticks(""), None);
        assert_eq!(cpu_ticks("7 (a) R 1 7 7 0 -1 0 0 0 0 0 12"), None);
        assert_eq!(cpu_ticks("7 (a) R 1 7 7 0 -1 0 0 0 0 0 x 30"), None);
    }

    #[test]
    fn this_process_has_spent_some_cpu() {
        let clock = CpuClock::new();
        let start = std::time::Instant::now();
        let mut x = 0u64;
        while start.elapsed() < Duration::from_millis(50) {
            x = x.wrapping_mul(31).wrapping_add(1);
        }
        std::hint::black_box(x);
        let spent = clock.cpu_time(std::process::id()).expect("own stat");
        assert!(spent >= Duration::from_millis(20), "{spent:?}");
    }

    #[test]
    fn spent_is_after_minus_before_per_process() {
        let s = |ms: u64| Duration::from_millis(ms);
        assert_eq!(
            spent(&[s(100), s(2_000)], &[s(350), s(2_000)]),
            vec![0.25, 0.0]
        );
    }
}
