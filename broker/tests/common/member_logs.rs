//! Reading the JSON-lines logs `scripts/clients/group_member.py` (and the
//! Rust `group-member` example) write, and the checks a group must pass
//! from its members' own view.

use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// One member's log, parsed.
#[derive(Debug, Default, Clone)]
pub struct MemberLog {
    /// Ownership intervals: (partition, from ms, to ms or None if still owned).
    pub owned: Vec<(i32, i64, Option<i64>)>,
    /// Consumed (partition, offset) -> value.
    pub consumed: BTreeMap<(i32, i64), String>,
    /// Successful commits: (partition, offset).
    pub commits: Vec<(i32, i64)>,
    /// Failed commit messages.
    pub commit_failures: Vec<String>,
}

impl MemberLog {
    /// Reads `path` (missing: empty). A torn last line (a killed writer)
    /// is ignored.
    pub fn read(path: &Path) -> MemberLog {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let mut log = MemberLog::default();
        let mut open: BTreeMap<i32, i64> = BTreeMap::new();
        for line in text.lines() {
            let Ok(e) = serde_json::from_str::<Value>(line) else {
                continue;
            };
            let t = e["t"].as_i64().unwrap_or(0);
            let partitions = || -> Vec<i32> {
                e["partitions"]
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .filter_map(|tp| tp[1].as_i64())
                            .map(|p| p as i32)
                            .collect()
                    })
                    .unwrap_or_default()
            };
            match e["ev"].as_str().unwrap_or("") {
                "assigned" => {
                    for p in partitions() {
                        open.entry(p).or_insert(t);
                    }
                }
                "revoked" => {
                    for p in partitions() {
                        if let Some(from) = open.remove(&p) {
                            log.owned.push((p, from, Some(t)));
                        }
                    }
                }
                "consumed" => {
                    let key = (
                        e["p"].as_i64().unwrap_or(-1) as i32,
                        e["o"].as_i64().unwrap_or(-1),
                    );
                    log.consumed
                        .insert(key, e["v"].as_str().unwrap_or("").to_string());
                }
                "committed" => {
                    for pair in e["offsets"].as_array().into_iter().flatten() {
                        let (p, o) = (
                            pair[0].as_i64().unwrap_or(-1),
                            pair[1].as_i64().unwrap_or(-1),
                        );
                        log.commits.push((p as i32, o));
                    }
                }
                "commit_failed" => log
                    .commit_failures
                    .push(e["error"].as_str().unwrap_or("").to_string()),
                _ => {}
            }
        }
        for (p, from) in open {
            log.owned.push((p, from, None));
        }
        log
    }

    /// The partitions owned now (intervals still open).
    pub fn current(&self) -> BTreeSet<i32> {
        self.owned
            .iter()
            .filter(|(_, _, to)| to.is_none())
            .map(|(p, _, _)| *p)
            .collect()
    }
}

/// Two members owning one partition at once: each pair of overlapping
/// ownership intervals, as text. A member that died at `ended[i]` owns
/// nothing after it.
pub fn overlaps(logs: &[MemberLog], ended: &[Option<i64>]) -> Vec<String> {
    let mut intervals: Vec<(i32, i64, i64, usize)> = Vec::new();
    for (i, log) in logs.iter().enumerate() {
        for &(p, from, to) in &log.owned {
            let end = to.or(ended[i]).unwrap_or(i64::MAX);
            intervals.push((p, from, end, i));
        }
    }
    let mut found = Vec::new();
    for (a, x) in intervals.iter().enumerate() {
        for y in &intervals[a + 1..] {
            let same = x.0 == y.0 && x.3 != y.3;
            if same && x.1 < y.2 && y.1 < x.2 {
                found.push(format!(
                    "partition {}: member {} [{}, {}) and member {} [{}, {})",
                    x.0, x.3, x.1, x.2, y.3, y.1, y.2
                ));
            }
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owned(v: &[(i32, i64, Option<i64>)]) -> MemberLog {
        MemberLog {
            owned: v.to_vec(),
            ..MemberLog::default()
        }
    }

    #[test]
    fn overlap_check_flags_only_real_overlaps() {
        let handover = [owned(&[(0, 0, Some(10))]), owned(&[(0, 10, None)])];
        assert!(overlaps(&handover, &[None, None]).is_empty());
        let clash = [owned(&[(0, 0, Some(11))]), owned(&[(0, 10, None)])];
        assert_eq!(overlaps(&clash, &[None, None]).len(), 1);
        let died = [owned(&[(0, 0, None)]), owned(&[(0, 10, None)])];
        assert!(overlaps(&died, &[Some(5), None]).is_empty());
        assert_eq!(overlaps(&died, &[Some(12), None]).len(), 1);
    }
}
