//! Checkpoint files in Kafka's text format: a version line, a count line,
//! then one entry per line of space-separated integers.
//!
//! ```text
//! 0
//! 2
//! 1 0
//! 4 1500
//! ```
//!
//! Parsing and rendering are pure; files are written with
//! [`crate::fs::write_atomically`].

/// The only version written and read.
const VERSION: i64 = 0;

/// Why a checkpoint file was not understood.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed checkpoint: {0}")]
pub struct MalformedCheckpoint(pub String);

/// Renders entries of `width` integers each.
pub fn render(entries: &[Vec<i64>]) -> Vec<u8> {
    let mut out = format!("{VERSION}\n{}\n", entries.len());
    for e in entries {
        let line: Vec<String> = e.iter().map(|v| v.to_string()).collect();
        out.push_str(&line.join(" "));
        out.push('\n');
    }
    out.into_bytes()
}

/// Parses a checkpoint whose entries have `width` integers each.
pub fn parse(bytes: &[u8], width: usize) -> Result<Vec<Vec<i64>>, MalformedCheckpoint> {
    let bad = |why: &str| MalformedCheckpoint(why.to_string());
    let text = std::str::from_utf8(bytes).map_err(|_| bad("not UTF-8"))?;
    let mut lines = text.lines();
    let mut number = |what: &str| -> Result<i64, MalformedCheckpoint> {
        lines
            .next()
            .and_then(|l| l.trim().parse().ok())
            .ok_or_else(|| bad(what))
    };
    if number("missing version")? != VERSION {
        return Err(bad("unknown version"));
    }
    let count = number("missing count")?;
    let count = usize::try_from(count).map_err(|_| bad("negative count"))?;
    let mut entries = Vec::with_capacity(count.min(1 << 16));
    for line in lines.by_ref().take(count) {
        let fields: Result<Vec<i64>, _> = line.split_whitespace().map(str::parse).collect();
        let fields = fields.map_err(|_| bad("entry is not integers"))?;
        if fields.len() != width {
            return Err(bad("entry has the wrong number of fields"));
        }
        entries.push(fields);
    }
    if entries.len() != count {
        return Err(bad("fewer entries than the count"));
    }
    if lines.any(|l| !l.trim().is_empty()) {
        return Err(bad("trailing data"));
    }
    Ok(entries)
}

/// Parses a checkpoint holding one offset (high watermark, recovery point).
pub fn parse_offset(bytes: &[u8]) -> Result<i64, MalformedCheckpoint> {
    match parse(bytes, 1)?.as_slice() {
        [entry] => Ok(entry[0]),
        _ => Err(MalformedCheckpoint("expected exactly one entry".into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let entries = vec![vec![1, 0], vec![4, 1500]];
        let text = render(&entries);
        assert_eq!(text, b"0\n2\n1 0\n4 1500\n");
        assert_eq!(parse(&text, 2).unwrap(), entries);
        assert_eq!(parse_offset(&render(&[vec![77]])).unwrap(), 77);
    }

    #[test]
    fn malformed_inputs_are_errors() {
        let cases: [&[u8]; 8] = [
            b"",
            b"1\n0\n",
            b"0\n-1\n",
            b"0\n2\n1 0\n",
            b"0\n1\n1\n",
            b"0\n1\n1 x\n",
            b"0\n1\n1 2\n3 4\n",
            b"\xff\xfe",
        ];
        for case in cases {
            assert!(
                parse(case, 2).is_err(),
                "{:?}",
                String::from_utf8_lossy(case)
            );
        }
    }
}
