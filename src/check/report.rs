//! The verdict's reports: the text table on stdout, Markdown for a pull request comment,
//! JSON (schema `kindred.check/v1`) and JUnit XML.

use std::fmt::Write as _;

use super::verdict::{ProbeRow, SideReport, Verdict};
use crate::backend::event::ProbeResult;
use crate::model::Outcome;
use crate::rules::diff::{Changed, Hunk, Line, hunks};
use crate::rules::render::{visible, visible_lines};

/// A chain's lines in a `diff` block: ' ' equal, '-' removed, '+' added.
fn diff_lines(o: &mut String, lines: &[Line]) {
    for h in hunks(lines) {
        match h {
            Hunk::Equal(l) => {
                let _ = writeln!(o, "  {}", l.rule());
            }
            Hunk::Change { removed, added } => {
                for c in Changed::all(removed, added) {
                    let sign = if c.line.op == crate::rules::diff::Op::Added {
                        '+'
                    } else {
                        '-'
                    };
                    let _ = writeln!(o, "{sign} {}", c.line.rule());
                }
            }
        }
    }
}

fn outcome(r: &Option<ProbeResult>) -> String {
    match r {
        Some(r) => match (r.outcome, r.http_status) {
            (Outcome::Ok, Some(h)) => format!("OK {h}"),
            (o, _) => o.label().to_string(),
        },
        None => "-".into(),
    }
}

fn expected(e: Option<Outcome>, r: &Option<ProbeResult>) -> String {
    match e {
        None => "-".into(),
        Some(e) => {
            let mark = match r {
                Some(r) if e.met_by(r.outcome) => "✓",
                _ => "✗",
            };
            format!("{} {mark}", e.label())
        }
    }
}

impl Verdict {
    /// A probe row's name: its source, and its target when the probes went to several.
    fn row_name(&self, r: &ProbeRow) -> String {
        self.with_target(&r.source, &r.target)
    }

    fn with_target(&self, source: &str, target: &crate::model::Target) -> String {
        if self.several_targets() {
            format!("{source} → {target}")
        } else {
            source.to_string()
        }
    }

    /// The table printed on stdout.
    pub fn text(&self) -> String {
        let mut o = String::new();
        let (b, p) = (&self.base.name, &self.pr.name);
        let _ = writeln!(
            o,
            "kindred check: {b} (base) vs {p} (PR), service {}",
            self.service
        );
        let w = self
            .probes
            .iter()
            .map(|r| self.row_name(r).chars().count())
            .max()
            .unwrap_or(6)
            .max(6);
        let _ = writeln!(
            o,
            "{:<w$}  {:<10} {:<10} {:<10} {:<10}",
            "SOURCE",
            b,
            p,
            format!("exp {b}"),
            format!("exp {p}")
        );
        for r in &self.probes {
            let _ = writeln!(
                o,
                "{:<w$}  {:<10} {:<10} {:<10} {:<10}{}",
                self.row_name(r),
                outcome(&r.base),
                outcome(&r.pr),
                expected(r.expected_base, &r.base),
                expected(r.expected_pr, &r.pr),
                if r.differs { "  (differs)" } else { "" }
            );
        }
        for e in self.expectations.iter().filter(|e| e.actual.is_none()) {
            let _ = writeln!(
                o,
                "no probe result for {} on {} (expected {})",
                self.with_target(&e.source, &e.target),
                e.cluster,
                e.expected.label()
            );
        }
        for d in &self.rules {
            let _ = writeln!(
                o,
                "\nRules of {} on {} ({} vs {}):",
                self.service, d.node, d.base_node, d.pr_node
            );
            o.push_str(&crate::rules::render::text(&d.comparison, false));
        }
        let _ = writeln!(o, "\n{}", self.summary());
        visible_lines(&o)
    }

    /// Markdown fit for a pull request comment.
    pub fn markdown(&self) -> String {
        let mut o = String::new();
        let (b, p) = (&self.base.name, &self.pr.name);
        let icon = match (self.judged(), self.ok) {
            (false, _) => "⚠️",
            (true, true) => "✅",
            (true, false) => "❌",
        };
        let _ = writeln!(
            o,
            "### {icon} kindred: `{b}` vs `{p}`: {}\n",
            self.summary()
        );
        let to = if self.several_targets() {
            let mut ts: Vec<String> = Vec::new();
            for t in self.probes.iter().map(|r| r.target.to_string()) {
                if !ts.contains(&t) {
                    ts.push(t);
                }
            }
            format!("each target ({})", ts.join(", "))
        } else {
            "the LoadBalancer".to_string()
        };
        let _ = writeln!(
            o,
            "Service `{}`; probes from every test pod to {to}.\n",
            self.service
        );
        let _ = writeln!(
            o,
            "| source | `{b}` (base) | `{p}` (PR) | expected on `{b}` | expected on `{p}` |"
        );
        let _ = writeln!(o, "| --- | --- | --- | --- | --- |");
        for r in &self.probes {
            let cell = |x: &Option<ProbeResult>| {
                let s = outcome(x);
                if r.differs { format!("**{s}**") } else { s }
            };
            let _ = writeln!(
                o,
                "| `{}` | {} | {} | {} | {} |",
                self.row_name(r),
                cell(&r.base),
                cell(&r.pr),
                expected(r.expected_base, &r.base),
                expected(r.expected_pr, &r.pr)
            );
        }
        self.rules_md(&mut o);
        self.rule_changes_md(&mut o);
        let ver = |s: &SideReport| {
            let mut v = format!(
                "ref `{}`, image `{}`",
                s.git_ref.as_deref().unwrap_or("?"),
                s.image.as_deref().unwrap_or("?")
            );
            if let Some(c) = &s.commit {
                v.push_str(&format!(", commit `{}`", &c[..c.len().min(12)]));
            }
            if let Some(k) = &s.version {
                v.push_str(&format!(", Kubernetes `{k}`"));
            }
            v
        };
        let _ = writeln!(
            o,
            "\n<sub>Builds: `{b}` {}; `{p}` {}.</sub>",
            ver(&self.base),
            ver(&self.pr)
        );
        visible_lines(&o)
    }

    /// Each node pair's rules of the Service: the count, the notes, and the changed lines.
    fn rules_md(&self, o: &mut String) {
        for d in &self.rules {
            let c = &d.comparison;
            let (add, rem): (usize, usize) = c
                .groups()
                .fold((0, 0), |(a, r), s| (a + s.added.len(), r + s.removed.len()));
            let _ = writeln!(
                o,
                "\n**Rules of `{}`** on {} (`{}` vs `{}`): {}\n",
                self.service,
                d.node,
                d.base_node,
                d.pr_node,
                if c.equal {
                    "no difference".to_string()
                } else {
                    format!("+{add} −{rem}")
                }
            );
            if let Some(m) = &c.modes {
                let _ = writeln!(o, "> note: {m}\n");
            }
            if let Some(note) = c.tables_note() {
                let _ = writeln!(o, "_{note}_\n");
            }
            for n in &c.notes {
                let _ = writeln!(o, "> note: {n}\n");
            }
            if !c.equal {
                o.push_str("```diff\n");
                let changed = c.groups().filter(|s| !s.equal);
                for ch in changed.flat_map(|s| s.chains.iter().filter(|ch| !ch.equal)) {
                    let _ = writeln!(o, "# {} {}", ch.table, ch.chain);
                    diff_lines(o, &ch.lines);
                }
                o.push_str("```\n");
            }
        }
    }

    /// The Markdown table of rule changes during the run, when there were any.
    fn rule_changes_md(&self, o: &mut String) {
        if !self.rule_changes.is_empty() {
            let _ = writeln!(
                o,
                "\n**Rule changes during the run** (kube-proxy rewrote these nodes' rules after \
             they were first read: worth a reviewer's eye):\n"
            );
            let _ = writeln!(o, "| at | cluster | node | rules added | rules removed |");
            let _ = writeln!(o, "| --- | --- | --- | --- | --- |");
            for c in &self.rule_changes {
                let s = c.at_ms / 1000;
                let _ = writeln!(
                    o,
                    "| {}:{:02}.{:03} | `{}` | `{}` | {} | {} |",
                    s / 60,
                    s % 60,
                    c.at_ms % 1000,
                    c.cluster,
                    c.node,
                    c.added,
                    c.removed
                );
            }
        }
    }

    /// JUnit XML: one test case per expectation.
    pub fn junit(&self) -> String {
        fn esc(s: &str) -> String {
            visible(s)
                .replace('&', "&amp;")
                .replace('<', "&lt;")
                .replace('>', "&gt;")
                .replace('"', "&quot;")
        }
        let failures = self.expectations.len() - self.held();
        let mut o = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
        let _ = writeln!(
            o,
            "<testsuites name=\"kindred check\" tests=\"{}\" failures=\"{failures}\">",
            self.expectations.len()
        );
        let _ = writeln!(
            o,
            "  <testsuite name=\"{} vs {}: {}\" tests=\"{}\" failures=\"{failures}\">",
            esc(&self.base.name),
            esc(&self.pr.name),
            esc(&self.service),
            self.expectations.len()
        );
        for e in &self.expectations {
            let name = format!(
                "{}: {} expects {}",
                e.cluster,
                self.with_target(&e.source, &e.target),
                e.expected.label()
            );
            let _ = write!(
                o,
                "    <testcase classname=\"kindred.{}\" name=\"{}\"",
                esc(&e.cluster),
                esc(&name)
            );
            if e.holds {
                o.push_str("/>\n");
            } else {
                let got = e
                    .actual
                    .map_or("no result".to_string(), |a| a.label().to_string());
                let _ = writeln!(
                    o,
                    ">\n      <failure message=\"expected {}, got {}\"/>\n    </testcase>",
                    e.expected.label(),
                    esc(&got)
                );
            }
        }
        o.push_str("  </testsuite>\n</testsuites>\n");
        o
    }

    pub fn json(&self) -> String {
        let mut s = serde_json::to_string_pretty(self).expect("verdict serializes");
        s.push('\n');
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::verdict::{NodeDiff, SCHEMA};
    use crate::rules::diff::{ListedBy, OneSidedTable};

    /// The tables a node pair's diff left out (one side listed one table) are named in every
    /// report.
    #[test]
    fn reports_name_tables_only_one_side_listed() {
        let side = |n: &str| SideReport {
            name: n.into(),
            git_ref: None,
            image: None,
            commit: None,
            version: None,
        };
        let mut comparison = crate::rules::compare_texts(
            "table ip kube-proxy {\n}\n",
            "table ip kube-proxy {\n}\n",
            &Default::default(),
        )
        .unwrap();
        comparison.one_sided_tables = vec![OneSidedTable {
            table: "ip6 kube-proxy".into(),
            listed_by: ListedBy::Pr,
        }];
        let v = Verdict {
            schema: SCHEMA,
            ok: true,
            service: "default/echo".into(),
            base: side("base"),
            pr: side("pr"),
            expectations: Vec::new(),
            probes: Vec::new(),
            rules: vec![NodeDiff {
                node: "worker".into(),
                base_node: "base-worker".into(),
                pr_node: "pr-worker".into(),
                comparison,
            }],
            rule_changes: Vec::new(),
        };
        let note = "table ip6 kube-proxy listed only by PR (base lists one table): not compared";
        assert!(v.text().contains(note), "{}", v.text());
        assert!(v.markdown().contains(note), "{}", v.markdown());
        let j: serde_json::Value = serde_json::from_str(&v.json()).unwrap();
        assert_eq!(
            j["rules"][0]["comparison"]["one_sided_tables"][0],
            serde_json::json!({"table": "ip6 kube-proxy", "listed_by": "pr"})
        );
    }
}
