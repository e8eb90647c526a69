//! `kindred diff --format json` (schema `kindred.diff/v2`), written as it is produced: the
//! document is never held in memory, and every rule is written once. An equal line is its
//! compared text and its line on each side (not the rule twice, with chain and table each
//! time); an equal service is its name and rule count (its rules are in both dumps).
//!
//! Layout: one line per service head, chain head and rule line, so that `grep` and line-based
//! tools work on it as well as `jq`.

use std::io::{self, Write};

use serde::Serialize;

use super::diff::{ChainDiff, Comparison, Line, OneSidedTable, Op, ServiceDiff};
use super::parse::Table;

/// The schema id of the document.
pub const SCHEMA: &str = "kindred.diff/v2";

#[derive(Serialize)]
struct Head<'a> {
    schema: &'static str,
    equal: bool,
    normalized: bool,
    /// Tables only one dump listed (the other listing one table): not compared.
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    one_sided_tables: &'a [OneSidedTable],
}

#[derive(Serialize)]
struct GroupHead<'a> {
    service: &'a str,
    equal: bool,
    in_base: bool,
    in_pr: bool,
    rules: usize,
    added: usize,
    removed: usize,
}

#[derive(Serialize)]
struct ChainHead<'a> {
    table: Table,
    chain: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    base_chain: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pr_chain: Option<&'a str>,
    equal: bool,
}

#[derive(Serialize)]
struct RuleLine<'a> {
    op: Op,
    rule: &'a str,
    /// The line as written, for an added or removed rule whose compared text differs from it.
    #[serde(skip_serializing_if = "Option::is_none")]
    raw: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    base_line: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pr_line: Option<u32>,
}

/// Write `c` as a `kindred.diff/v2` document (and a final newline).
pub fn write(out: &mut (impl Write + ?Sized), c: &Comparison) -> io::Result<()> {
    write_with(out, c, None)
}

/// [`write`], with the packet summary (`diff --packets`) under the key
/// [`super::packets::JSON_KEY`].
pub fn write_with(
    out: &mut (impl Write + ?Sized),
    c: &Comparison,
    packets: Option<&super::packets::Summary>,
) -> io::Result<()> {
    let head = Head {
        schema: SCHEMA,
        equal: c.equal,
        normalized: c.normalized,
        one_sided_tables: &c.one_sided_tables,
    };
    open(out, &head, "services", "[")?;
    for (k, s) in c.services.iter().enumerate() {
        out.write_all(if k == 0 { b"\n" } else { b",\n" })?;
        group(out, s)?;
    }
    out.write_all(b"\n]")?;
    if let Some(s) = &c.shared {
        out.write_all(b",\n\"shared\":\n")?;
        group(out, s)?;
    }
    if !c.notes.is_empty() {
        out.write_all(b",\n\"notes\": ")?;
        serde_json::to_writer(&mut *out, &c.notes)?;
    }
    if let Some(m) = &c.modes {
        out.write_all(b",\n\"modes\": ")?;
        out.write_all(&serde_json::to_vec(m)?)?;
    }
    if let Some(p) = packets {
        write!(out, ",\n\"{}\": ", super::packets::JSON_KEY)?;
        serde_json::to_writer(&mut *out, p)?;
    }
    out.write_all(b"}\n")
}

/// `v`'s object left open, with `key` and `bracket` after its fields: `{..., "key": [`.
fn open(
    out: &mut (impl Write + ?Sized),
    v: &impl Serialize,
    key: &str,
    bracket: &str,
) -> io::Result<()> {
    let mut buf = serde_json::to_vec(v)?;
    buf.pop(); // the closing brace
    out.write_all(&buf)?;
    write!(out, ",\"{key}\":{bracket}")
}

fn group(out: &mut (impl Write + ?Sized), s: &ServiceDiff) -> io::Result<()> {
    let head = GroupHead {
        service: &s.service,
        equal: s.equal,
        in_base: s.in_base,
        in_pr: s.in_pr,
        rules: s.rules,
        added: s.added.len(),
        removed: s.removed.len(),
    };
    if s.equal {
        // Both dumps hold these rules: the count says enough.
        return serde_json::to_writer(&mut *out, &head).map_err(io::Error::from);
    }
    open(out, &head, "chains", "[")?;
    for (k, ch) in s.chains.iter().enumerate() {
        out.write_all(if k == 0 { b"\n " } else { b",\n " })?;
        chain(out, ch)?;
    }
    out.write_all(b"]}")
}

fn chain(out: &mut (impl Write + ?Sized), ch: &ChainDiff) -> io::Result<()> {
    let head = ChainHead {
        table: ch.table,
        chain: &ch.chain,
        base_chain: ch.base_chain.as_deref(),
        pr_chain: ch.pr_chain.as_deref(),
        equal: ch.equal,
    };
    open(out, &head, "lines", "[")?;
    for (k, l) in ch.lines.iter().enumerate() {
        out.write_all(if k == 0 { b"\n  " } else { b",\n  " })?;
        serde_json::to_writer(&mut *out, &rule_line(l))?;
    }
    out.write_all(b"]}")
}

fn rule_line(l: &Line) -> RuleLine<'_> {
    let changed = match l.op {
        Op::Equal => None,
        Op::Removed => l.base.as_deref(),
        Op::Added => l.pr.as_deref(),
    };
    RuleLine {
        op: l.op,
        rule: l.rule(),
        raw: changed
            .map(|r| r.raw.as_str())
            .filter(|raw| *raw != l.rule()),
        base_line: l.base.as_ref().map(|r| r.line),
        pr_line: l.pr.as_ref().map(|r| r.line),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::{Options, compare_texts};

    #[test]
    fn every_rule_once_and_equal_services_by_count() {
        let base = "*nat\n\
            -A KUBE-SERVICES -d 10.96.0.5/32 -p tcp -m comment --comment \"a/x: cluster IP\" -m tcp --dport 80 -j KUBE-SVC-AAAAAAAAAAAAAAAA\n\
            -A KUBE-SVC-AAAAAAAAAAAAAAAA -m comment --comment \"a/x:\" -j KUBE-MARK-MASQ\n\
            -A KUBE-SERVICES -m comment --comment \"b/y:\" -j KUBE-SVC-BBBBBBBBBBBBBBBB\n\
            -A PREROUTING -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES\n\
            COMMIT\n";
        let pr = base.replace("KUBE-MARK-MASQ", "KUBE-MARK-DROP");
        let opts = Options {
            summarize_equal: true,
            ..Options::default()
        };
        let c = compare_texts(base, &pr, &opts).unwrap();
        let mut out = Vec::new();
        write(&mut out, &c).unwrap();
        let text = String::from_utf8(out).unwrap();
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["schema"], SCHEMA);
        let changed = &v["services"][0];
        assert_eq!(changed["service"], "a/x:");
        assert_eq!(
            (changed["added"].as_u64(), changed["removed"].as_u64()),
            (Some(1), Some(1))
        );
        let svc = changed["chains"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["chain"] == "KUBE-SVC-<hash>")
            .unwrap();
        let ops: Vec<&str> = svc["lines"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l["op"].as_str().unwrap())
            .collect();
        assert_eq!(ops, ["removed", "added"]);
        let removed = &svc["lines"][0];
        assert_eq!(removed["base_line"], 3);
        assert!(removed.get("pr_line").is_none());
        // The compared text hides the hash; the line as written is there too.
        assert!(
            removed["raw"]
                .as_str()
                .unwrap()
                .contains("AAAAAAAAAAAAAAAA")
        );
        // An equal line: the rule once, a line number on each side, no raw copies.
        let services = changed["chains"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["chain"] == "KUBE-SERVICES")
            .unwrap();
        let eq = &services["lines"][0];
        assert_eq!(
            (
                eq["op"].as_str(),
                eq["base_line"].as_u64(),
                eq["pr_line"].as_u64()
            ),
            (Some("equal"), Some(2), Some(2))
        );
        assert!(eq.get("raw").is_none() && eq.get("base").is_none());
        // The equal service: its name and count, no chains.
        let equal = &v["services"][1];
        assert_eq!(
            (
                equal["service"].as_str(),
                equal["equal"].as_bool(),
                equal["rules"].as_u64()
            ),
            (Some("b/y:"), Some(true), Some(1))
        );
        assert!(equal.get("chains").is_none());
        assert_eq!(v["shared"]["service"], "kube-proxy (shared chains)");
        // One line per rule line: the text is line-oriented.
        assert!(
            text.lines()
                .any(|l| l.trim_start().starts_with("{\"op\":\"removed\""))
        );
    }
}
