//! Container log files in the CRI format (`<RFC3339Nano> <stream> <P|F> <content>`), and how
//! `kubectl logs` options select and render them.

/// One parsed record.
#[derive(Debug, PartialEq, Eq)]
pub struct Record<'a> {
    pub timestamp: &'a str,
    pub stream: &'a str,
    /// `false` for a partial record (`P`): no newline follows its content.
    pub full: bool,
    pub content: &'a [u8],
}

/// Parses one line (without its trailing newline).
pub fn parse(line: &[u8]) -> Option<Record<'_>> {
    let mut parts = line.splitn(4, |b| *b == b' ');
    let ts = std::str::from_utf8(parts.next()?).ok()?;
    let stream = std::str::from_utf8(parts.next()?).ok()?;
    let tag = parts.next()?;
    let content = parts.next().unwrap_or(b"");
    Some(Record {
        timestamp: ts,
        stream,
        full: tag != b"P",
        content,
    })
}

/// Renders records as kubectl shows them: the content, plus the newline for full records,
/// prefixed with the timestamp when asked.
pub fn render(rec: &Record<'_>, timestamps: bool, out: &mut Vec<u8>) {
    if timestamps {
        out.extend_from_slice(rec.timestamp.as_bytes());
        out.push(b' ');
    }
    out.extend_from_slice(rec.content);
    if rec.full {
        out.push(b'\n');
    }
}

/// Renders a whole file's bytes; `tail` keeps only the last N lines (full records end lines).
pub fn render_file(data: &[u8], tail: Option<usize>, timestamps: bool) -> Vec<u8> {
    let lines: Vec<&[u8]> = data
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .collect();
    let recs: Vec<Record<'_>> = lines.iter().filter_map(|l| parse(l)).collect();
    // A logical line is a run of partial records closed by a full one.
    let mut groups: Vec<usize> = Vec::new();
    let mut begin = 0;
    for (i, r) in recs.iter().enumerate() {
        if r.full {
            groups.push(begin);
            begin = i + 1;
        }
    }
    if begin < recs.len() {
        groups.push(begin);
    }
    let start = match tail {
        None => 0,
        Some(0) => recs.len(),
        Some(n) if n >= groups.len() => 0,
        Some(n) => groups[groups.len() - n],
    };
    let mut out = Vec::new();
    for r in &recs[start..] {
        render(r, timestamps, &mut out);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOG: &[u8] = b"2026-01-01T00:00:00.000000001Z stdout F one\n\
2026-01-01T00:00:01.000000001Z stderr F two\n\
2026-01-01T00:00:02.000000001Z stdout P thr\n\
2026-01-01T00:00:02.000000002Z stdout F ee\n";

    #[test]
    fn renders_content_and_timestamps() {
        assert_eq!(render_file(LOG, None, false), b"one\ntwo\nthree\n");
        assert_eq!(
            render_file(LOG, Some(1), true),
            b"2026-01-01T00:00:02.000000001Z thr2026-01-01T00:00:02.000000002Z ee\n".to_vec()
        );
        assert_eq!(render_file(LOG, Some(2), false), b"two\nthree\n");
        assert_eq!(render_file(LOG, Some(0), false), b"");
        assert_eq!(render_file(LOG, Some(10), false), b"one\ntwo\nthree\n");
    }
}
