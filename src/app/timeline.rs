//! The timeline of rule changes: every time a node's kube-proxy rules change, an entry (when,
//! which side and node, how many rule lines came and went) that keeps the rules before and
//! after, so the Diff pane can show what that change was. Built from the rule dumps as they
//! arrive, so a replayed recording has the same entries as the session it recorded.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use crate::model::Side;

/// How many entries are kept (the oldest go first).
pub const KEEP: usize = 100;

/// One change of one node's rules.
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    /// Unique in a session; counts up.
    pub id: u64,
    /// Session time of the change.
    pub at: Duration,
    pub side: Side,
    pub node: String,
    /// Rule lines that came and went.
    pub added: usize,
    pub removed: usize,
    pub before: Arc<str>,
    pub after: Arc<str>,
}

#[derive(Debug, Clone, Default)]
pub struct Timeline {
    pub entries: VecDeque<Change>,
    next: u64,
}

impl Timeline {
    /// Record a node's new rules (its `before` rules known): an entry when a rule line came or
    /// went (a change of counters alone is none). Returns whether one was added.
    pub fn record(
        &mut self,
        at: Duration,
        side: Side,
        node: &str,
        before: &Arc<str>,
        after: &Arc<str>,
    ) -> bool {
        let (added, removed) = changed_rules(before, after);
        if added == 0 && removed == 0 {
            return false;
        }
        self.next += 1;
        self.entries.push_back(Change {
            id: self.next,
            at,
            side,
            node: node.to_string(),
            added,
            removed,
            before: before.clone(),
            after: after.clone(),
        });
        if self.entries.len() > KEEP {
            self.entries.pop_front();
        }
        true
    }

    pub fn by_id(&self, id: u64) -> Option<(usize, &Change)> {
        self.entries.iter().enumerate().find(|(_, c)| c.id == id)
    }
}

/// A rule line of a dump, as compared between two dumps of one node: iptables rules (`-A ...`)
/// and nftables statements, without packet counters; table and chain headers, comments and
/// blank lines are not rules.
fn rule(line: &str) -> Option<&str> {
    let t = line.trim();
    if t.is_empty() || t.starts_with('#') || t.starts_with('*') || t.starts_with(':') {
        return None;
    }
    if t == "COMMIT" || t == "}" || t.ends_with('{') {
        return None;
    }
    // iptables-save -c: "[12:345] -A ..."
    let t = match t.strip_prefix('[') {
        Some(r) => r.split_once("] ").map_or(t, |(_, rest)| rest),
        None => t,
    };
    // nft's counters change as traffic flows: the rule is what comes before them.
    static COUNTER: std::sync::LazyLock<memchr::memmem::Finder<'static>> =
        std::sync::LazyLock::new(|| memchr::memmem::Finder::new(" counter packets "));
    Some(match COUNTER.find(t.as_bytes()) {
        Some(i) => &t[..i],
        None => t,
    })
}

/// The first line of `t` and the rest; `None` when `t` is empty.
fn first_line(t: &str) -> Option<(&str, &str)> {
    if t.is_empty() {
        return None;
    }
    Some(match memchr::memchr(b'\n', t.as_bytes()) {
        Some(i) => (&t[..i], &t[i + 1..]),
        None => (t, ""),
    })
}

/// The last line of `t` (without its newline) and what comes before; `None` when empty.
fn last_line(t: &str) -> Option<(&str, &str)> {
    let t = t.strip_suffix('\n').unwrap_or(t);
    if t.is_empty() {
        return None;
    }
    Some(match memchr::memrchr(b'\n', t.as_bytes()) {
        Some(i) => (&t[i + 1..], &t[..=i]),
        None => (t, ""),
    })
}

/// How many bytes `a` and `b` start with alike.
fn common_prefix(a: &[u8], b: &[u8]) -> usize {
    const BLOCK: usize = 4096;
    let n = a.len().min(b.len());
    let mut i = 0;
    while i + BLOCK <= n && a[i..i + BLOCK] == b[i..i + BLOCK] {
        i += BLOCK;
    }
    while i < n && a[i] == b[i] {
        i += 1;
    }
    i
}

/// The end of the last whole line (its newline included) within the first `n` bytes of `t`.
fn line_end(t: &str, n: usize) -> usize {
    memchr::memrchr(b'\n', &t.as_bytes()[..n]).map_or(0, |i| i + 1)
}

/// Whether two lines are the same rule (or both no rule); equal bytes decide at once.
fn same(x: &str, y: &str) -> bool {
    x == y || rule(x) == rule(y)
}

/// How many rule lines `after` has that `before` has not, and the other way round (as
/// multisets: a rule that appears twice counts twice). A refresh changes a few rules of many:
/// the lines both dumps start and end with are walked past (a byte comparison each, no
/// hashing), and only what lies between is counted. This runs on the UI loop.
pub fn changed_rules(before: &str, after: &str) -> (usize, usize) {
    let (mut a, mut b) = (before, after);
    loop {
        // Whole lines both start with, compared as bytes a block at a time.
        let n = line_end(a, common_prefix(a.as_bytes(), b.as_bytes()));
        (a, b) = (&a[n..], &b[n..]);
        match (first_line(a), first_line(b)) {
            (Some((x, ra)), Some((y, rb))) if same(x, y) => (a, b) = (ra, rb),
            _ => break,
        }
    }
    while let (Some((x, ra)), Some((y, rb))) = (last_line(a), last_line(b)) {
        if !same(x, y) {
            break;
        }
        (a, b) = (ra, rb);
    }
    let mut count: HashMap<&str, i64> = HashMap::new();
    for r in a.lines().filter_map(rule) {
        *count.entry(r).or_default() -= 1;
    }
    for r in b.lines().filter_map(rule) {
        *count.entry(r).or_default() += 1;
    }
    let added = count
        .values()
        .filter(|v| **v > 0)
        .map(|v| *v as usize)
        .sum();
    let removed = count
        .values()
        .filter(|v| **v < 0)
        .map(|v| (-*v) as usize)
        .sum();
    (added, removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_that_came_and_went_not_counters_or_headers() {
        let a = "*nat\n:KUBE-SVC-X - [0:0]\n[1:60] -A KUBE-SVC-X -j KUBE-SEP-A\n-A KUBE-SVC-X -j KUBE-SEP-B\nCOMMIT\n";
        let b = "*nat\n:KUBE-SVC-X - [9:9]\n[7:420] -A KUBE-SVC-X -j KUBE-SEP-A\n-A KUBE-SVC-X -j KUBE-SEP-C\n-A KUBE-SVC-X -j KUBE-SEP-D\nCOMMIT\n";
        assert_eq!(changed_rules(a, b), (2, 1));
        assert_eq!(changed_rules(a, a), (0, 0));
        // Headers that differ (a timestamp), the same rules around a change in the middle.
        let x = "# Generated on Mon\n*nat\n-A R1\n-A R2\n-A R3\n-A R4\nCOMMIT\n";
        let y = "# Generated on Tue\n*nat\n-A R1\n-A R2x\n-A R3\n-A R3\n-A R4\nCOMMIT\n";
        assert_eq!(changed_rules(x, y), (2, 1));
        assert_eq!(changed_rules(y, x), (1, 2));
        assert_eq!(changed_rules("", x), (4, 0));
        assert_eq!(changed_rules(x, "-A R1"), (0, 3));
        let n1 = "table ip kube-proxy {\n\tchain x {\n\t\tip daddr 10.0.0.1 counter packets 1 bytes 60 jump y\n\t}\n}\n";
        let n2 = "table ip kube-proxy {\n\tchain x {\n\t\tip daddr 10.0.0.1 counter packets 9 bytes 540 jump y\n\t}\n}\n";
        assert_eq!(changed_rules(n1, n2), (0, 0));
        let mut t = Timeline::default();
        let (a, b): (Arc<str>, Arc<str>) = (a.into(), b.into());
        assert!(t.record(Duration::from_secs(3), Side::Pr, "pr-worker", &a, &b));
        assert!(!t.record(Duration::from_secs(4), Side::Pr, "pr-worker", &b, &b));
        let c = &t.entries[0];
        assert_eq!(
            (c.id, c.added, c.removed, c.node.as_str()),
            (1, 2, 1, "pr-worker")
        );
        for i in 0..KEEP + 5 {
            let x: Arc<str> = format!("-A R{i}\n").into();
            t.record(Duration::from_secs(5), Side::Base, "b", &a, &x);
        }
        assert_eq!(t.entries.len(), KEEP);
        assert!(t.by_id(1).is_none());
    }
}
