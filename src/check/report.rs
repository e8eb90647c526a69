//! The verdict's reports: the text table on stdout, Markdown for a pull request comment,
//! JSON (schema `kindred.check/v1`) and JUnit XML.

use std::fmt::Write as _;

use super::verdict::{
    Against, Disagreement, GroupReport, PredictedCell, ProbeRow, SideReport, Verdict,
};
use crate::backend::event::ProbeResult;
use crate::backend::tries::{self, Judged, Summary, quantiles};
use crate::model::{Outcome, Rate, Side};
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

/// A side's result: its outcome (with the HTTP status when OK), and passes/N when tried more
/// than once: `OK 200 30/30`, `FLAKY 20/30`.
fn outcome(r: &Option<ProbeResult>) -> String {
    let Some(r) = r else {
        return "-".into();
    };
    let mut s = match (r.outcome, r.http_status) {
        (Outcome::Ok, Some(h)) => format!("OK {h}"),
        (o, _) => o.label().to_string(),
    };
    let sum = Summary::of(r);
    if sum.tries > 1 {
        let _ = write!(s, " {}/{}", sum.passes, sum.tries);
    }
    s
}

/// An expectation and how the result stands against it: ✓ met, ✗ missed, ◐ flaky (tries
/// disagree: neither); `OK≥0.99` for a rate.
fn expected(e: Option<Outcome>, rate: Option<Rate>, r: &Option<ProbeResult>) -> String {
    let Some(e) = e else {
        return "-".into();
    };
    let label = match rate {
        Some(rate) => format!("OK≥{rate}"),
        None => e.label().to_string(),
    };
    let mark = match r.as_ref().map(|r| tries::judge(e, rate, r)) {
        Some(Judged::Met) => "✓",
        Some(Judged::Flaky) => "◐",
        _ => "✗",
    };
    format!("{label} {mark}")
}

fn predicted(p: &Option<PredictedCell>) -> &str {
    p.as_ref().map_or("-", PredictedCell::shown)
}

/// The mark of a PR side slower than the latency factor allows (as the Probes pane marks it).
const SLOWER_MARK: char = '▲';

/// What a disagreement means, for the reports.
const OBSERVED_MEANS: &str = "a dataplane surprise (conntrack, routing, the LB announcing), or a \
                              tracer gap; worth a reviewer's eye";
const EXPECTED_MEANS: &str = "most likely a wrong expectation";

impl Verdict {
    /// A disagreement in words: `POD on CLUSTER[ → TARGET]: observed timeout, the rules say dnat
    /// (NODE line N, CHAIN: RULE)`.
    fn disagreement_words(&self, d: &Disagreement) -> String {
        let what = match d.kind {
            Against::Observed => "observed",
            Against::Expected => "expected",
        };
        let mut s = format!(
            "{} on {}: {what} {}, the rules say {}",
            self.with_target(&d.source, &d.target),
            d.cluster,
            d.outcome.label(),
            d.predicted
        );
        if let Some(r) = &d.rule {
            s.push_str(&format!(" (decided by {r})"));
        }
        s
    }

    /// The rate a row's expectation on `side` asks for (`ok >= RATE`), if any.
    fn rate_of(&self, side: Side, r: &ProbeRow) -> Option<Rate> {
        let pod = match side {
            Side::Base => r.base.as_ref(),
            Side::Pr => r.pr.as_ref(),
        }?;
        self.expectations
            .iter()
            .find(|e| e.side == side && e.source == pod.source && e.target == r.target)
            .and_then(|e| e.min_rate)
    }

    /// Each probe whose tries disagree (some answered, some did not), per side: passes,
    /// timeouts and the endpoints that answered (names from the network: made visible).
    fn tries_lines(&self) -> Vec<String> {
        let mut out = Vec::new();
        for r in &self.probes {
            for (cluster, s) in [
                (&self.base.name, &r.base_summary),
                (&self.pr.name, &r.pr_summary),
            ] {
                let mixed = |s: &&Summary| s.passes > 0 && s.passes < s.tries;
                let Some(s) = s.as_ref().filter(mixed) else {
                    continue;
                };
                let mut l = format!(
                    "{} on {cluster}: {}/{} answered",
                    self.row_name(r),
                    s.passes,
                    s.tries
                );
                if s.timeouts > 0 {
                    let _ = write!(l, ", {} timed out", s.timeouts);
                }
                if let Some(spread) = s.spread() {
                    let each: Vec<String> = s
                        .endpoints
                        .iter()
                        .map(|(e, n)| format!("{} {n}", visible(e)))
                        .collect();
                    let _ = write!(l, "; {spread}: {}", each.join(", "));
                }
                out.push(l);
            }
        }
        out
    }

    /// Each side's p50/p99 (connect and total) and, when the PR side's p99 total is more than
    /// the factor times the base's, that.
    fn latency_words(&self) -> Vec<String> {
        let l = &self.latency;
        let side = |name: &str, s: &super::verdict::SideLatency| {
            format!(
                "{name}: connect {}, total {}",
                quantiles(s.connect),
                quantiles(s.total)
            )
        };
        let mut out = vec![side(&self.base.name, &l.base), side(&self.pr.name, &l.pr)];
        if l.pr_slower {
            out.push(format!(
                "{SLOWER_MARK} {} is slower: its p99 total is more than {}× {}'s",
                self.pr.name, l.factor, self.base.name
            ));
        }
        out
    }

    /// Whether any probe measured a time (the latency sections are left out otherwise).
    fn timed(&self) -> bool {
        self.latency.base.total.is_some() || self.latency.pr.total.is_some()
    }

    /// A row's p50/p99 total on a side, `▲` on a PR side slower than the factor allows.
    fn total_cell(&self, r: &ProbeRow, side: Side) -> String {
        let s = match side {
            Side::Base => &r.base_summary,
            Side::Pr => &r.pr_summary,
        };
        let mut t = quantiles(s.as_ref().and_then(|s| s.total));
        if side == Side::Pr && r.pr_slower {
            let _ = write!(t, " {SLOWER_MARK}");
        }
        t
    }

    /// A row's p50/p99 connect on a side.
    fn connect_cell(r: &ProbeRow, side: Side) -> String {
        let s = match side {
            Side::Base => &r.base_summary,
            Side::Pr => &r.pr_summary,
        };
        quantiles(s.as_ref().and_then(|s| s.connect))
    }

    /// Latency and tries as text: per row and per side p50/p99, then the probes whose tries
    /// disagree.
    fn tries_text(&self, o: &mut String) {
        if self.timed() {
            let (b, p) = (&self.base.name, &self.pr.name);
            let _ = writeln!(
                o,
                "\nLatency, p50/p99 over the tries that answered (PR slower than {}× the base: {SLOWER_MARK}):",
                self.latency.factor
            );
            let w = self.probes.iter().map(|r| self.row_name(r).chars().count());
            let w = w.max().unwrap_or(0);
            for r in &self.probes {
                let _ = writeln!(
                    o,
                    "  {:<w$}  {b}: connect {}, total {}  {p}: connect {}, total {}",
                    self.row_name(r),
                    Self::connect_cell(r, Side::Base),
                    self.total_cell(r, Side::Base),
                    Self::connect_cell(r, Side::Pr),
                    self.total_cell(r, Side::Pr),
                );
            }
            for l in self.latency_words() {
                let _ = writeln!(o, "  {l}");
            }
        }
        let lines = self.tries_lines();
        if !lines.is_empty() {
            let _ = writeln!(o, "\nTries that disagree (some answered, some did not):");
            for l in lines {
                let _ = writeln!(o, "  {l}");
            }
        }
    }

    /// [`Verdict::tries_text`] in Markdown: a table per row, the sides, the tries.
    fn tries_md(&self, o: &mut String) {
        if self.timed() {
            let (b, p) = (&self.base.name, &self.pr.name);
            let _ = writeln!(
                o,
                "\n**Latency**, p50/p99 over the tries that answered ({SLOWER_MARK}: PR p99 more \
                 than {}× the base's):\n",
                self.latency.factor
            );
            let _ = writeln!(
                o,
                "| source | connect `{b}` | total `{b}` | connect `{p}` | total `{p}` |"
            );
            let _ = writeln!(o, "| --- | --- | --- | --- | --- |");
            for r in &self.probes {
                let _ = writeln!(
                    o,
                    "| `{}` | {} | {} | {} | {} |",
                    self.row_name(r),
                    Self::connect_cell(r, Side::Base),
                    self.total_cell(r, Side::Base),
                    Self::connect_cell(r, Side::Pr),
                    self.total_cell(r, Side::Pr),
                );
            }
            o.push('\n');
            for l in self.latency_words() {
                let _ = writeln!(o, "- {l}");
            }
        }
        let lines = self.tries_lines();
        if !lines.is_empty() {
            let _ = writeln!(
                o,
                "\n**Tries that disagree** (some answered, some did not):\n"
            );
            for l in lines {
                let _ = writeln!(o, "- {l}");
            }
        }
    }

    fn of_kind(&self, kind: Against) -> impl Iterator<Item = &Disagreement> {
        self.disagreements.iter().filter(move |d| d.kind == kind)
    }

    /// The probes without a prediction, and why: `POD on CLUSTER: REASON`, once per reason.
    fn unpredicted(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for r in &self.probes {
            for (cluster, cell) in [
                (&self.base.name, &r.predicted_base),
                (&self.pr.name, &r.predicted_pr),
            ] {
                if let Some(why) = cell.as_ref().and_then(|c| c.reason.as_ref()) {
                    let l = format!("{} on {cluster}: {why}", self.row_name(r));
                    if !out.contains(&l) {
                        out.push(l);
                    }
                }
            }
        }
        out
    }

    /// What changed for packets, per node pair, as text.
    fn packets_text(&self, o: &mut String) {
        for n in &self.packets {
            let _ = writeln!(
                o,
                "\nPackets of {} on {} ({} vs {}):",
                self.service, n.node, n.base_node, n.pr_node
            );
            let _ = crate::rules::packets::write_text(o, &n.summary);
        }
    }

    /// Both kinds of disagreement between prediction and outcome, as text.
    fn disagreements_text(&self, o: &mut String) {
        let observed: Vec<String> = self
            .of_kind(Against::Observed)
            .map(|d| self.disagreement_words(d))
            .collect();
        if !observed.is_empty() {
            let _ = writeln!(o, "\nObserved vs predicted: {OBSERVED_MEANS}:");
            for l in observed {
                let _ = writeln!(o, "  {l}");
            }
        }
        for d in self.of_kind(Against::Expected) {
            let _ = writeln!(
                o,
                "WARNING: expected vs predicted ({EXPECTED_MEANS}): {}",
                self.disagreement_words(d)
            );
        }
        for l in self.unpredicted() {
            let _ = writeln!(o, "no prediction for {l}");
        }
    }

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

    /// The table printed on stdout: what changed for packets, then per probe observed,
    /// expected and predicted on both sides, the disagreements, and the rules.
    pub fn text(&self) -> String {
        let mut o = String::new();
        let (b, p) = (&self.base.name, &self.pr.name);
        let _ = writeln!(
            o,
            "kindred check: {b} (base) vs {p} (PR), service {}",
            self.service
        );
        self.packets_text(&mut o);
        if !self.packets.is_empty() {
            o.push('\n');
        }
        let w = self
            .probes
            .iter()
            .map(|r| self.row_name(r).chars().count())
            .max()
            .unwrap_or(6)
            .max(6);
        let pw = |name: &str, f: fn(&ProbeRow) -> &Option<PredictedCell>| {
            self.probes
                .iter()
                .map(|r| predicted(f(r)).chars().count())
                .chain([name.chars().count()])
                .max()
                .unwrap_or(0)
                .max(10)
        };
        let (pb, pp) = (format!("pred {b}"), format!("pred {p}"));
        let (wb, wp) = (pw(&pb, |r| &r.predicted_base), pw(&pp, |r| &r.predicted_pr));
        // Outcomes with passes/N are wider than 10.
        let wo = self
            .probes
            .iter()
            .flat_map(|r| [outcome(&r.base), outcome(&r.pr)])
            .map(|s| s.chars().count())
            .chain([10])
            .max()
            .unwrap_or(10);
        let head = format!(
            "{:<w$}  {:<wo$} {:<wo$} {:<10} {:<10} {:<wb$} {pp}",
            "SOURCE",
            b,
            p,
            format!("exp {b}"),
            format!("exp {p}"),
            pb,
        );
        let _ = writeln!(o, "{}", head.trim_end());
        for r in &self.probes {
            let line = format!(
                "{:<w$}  {:<wo$} {:<wo$} {:<10} {:<10} {:<wb$} {:<wp$}",
                self.row_name(r),
                outcome(&r.base),
                outcome(&r.pr),
                expected(r.expected_base, self.rate_of(Side::Base, r), &r.base),
                expected(r.expected_pr, self.rate_of(Side::Pr, r), &r.pr),
                predicted(&r.predicted_base),
                predicted(&r.predicted_pr),
            );
            let _ = writeln!(
                o,
                "{}{}",
                line.trim_end(),
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
        self.tries_text(&mut o);
        self.disagreements_text(&mut o);
        self.groups_text(&mut o);
        for d in &self.rules {
            let _ = writeln!(
                o,
                "\nRules of {} on {} ({} vs {}):",
                self.service, d.node, d.base_node, d.pr_node
            );
            o.push_str(&crate::rules::render::text(&d.comparison, false));
        }
        self.metrics.text(&mut o, b, p);
        let _ = writeln!(o, "\n{}", self.summary());
        visible_lines(&o)
    }

    /// Whether a side has several nodes of a role with the same rules (the rules are then
    /// compared group to group, and the reports list the groups).
    fn grouped(&self) -> bool {
        self.groups.iter().any(GroupReport::is_group)
    }

    /// A group as the reports name it: `worker group A: 184 nodes, same rules`, or the node.
    fn group_title(g: &GroupReport) -> String {
        if g.is_group() {
            format!("{}: {} nodes, same rules", g.label, g.nodes.len())
        } else {
            g.label.clone()
        }
    }

    /// At most a few of a group's nodes, and how many more.
    fn some_nodes(g: &GroupReport) -> String {
        const SHOWN: usize = 5;
        let mut s = g.nodes[..g.nodes.len().min(SHOWN)].join(", ");
        if g.nodes.len() > SHOWN {
            let _ = write!(s, ", … {} more", g.nodes.len() - SHOWN);
        }
        s
    }

    /// The groups of nodes with the same rules, per side, each with what it is compared with;
    /// the outliers (a node alone) last.
    fn groups_text(&self, o: &mut String) {
        if !self.grouped() {
            return;
        }
        let _ = writeln!(o, "\nNodes by rules (compared group to group):");
        for g in &self.groups {
            let other = g.side.other();
            let with = if g.same_as.is_empty() {
                format!("no {} node of its role", other.label())
            } else {
                format!("{} {}", other.label(), g.same_as.join(", "))
            };
            let _ = writeln!(
                o,
                "  {} {} ↔ {with}  [{}]",
                g.side.label(),
                Self::group_title(g),
                Self::some_nodes(g)
            );
        }
    }

    /// [`Verdict::groups_text`] as a Markdown table.
    fn groups_md(&self, o: &mut String) {
        if !self.grouped() {
            return;
        }
        let _ = writeln!(
            o,
            "\n**Nodes by rules** (nodes of a role whose rules are the same are compared as \
             one group):\n"
        );
        let _ = writeln!(o, "| side | group | compared with | nodes |");
        let _ = writeln!(o, "| --- | --- | --- | --- |");
        for g in &self.groups {
            let with: Vec<String> = g.same_as.iter().map(|l| format!("`{l}`")).collect();
            let _ = writeln!(
                o,
                "| {} | `{}` | {} | {} |",
                g.side.label(),
                Self::group_title(g),
                if with.is_empty() {
                    "–".to_string()
                } else {
                    with.join(", ")
                },
                Self::some_nodes(g)
            );
        }
    }

    /// Markdown fit for a pull request comment.
    pub fn markdown(&self) -> String {
        let mut o = String::new();
        let (b, p) = (&self.base.name, &self.pr.name);
        let icon = match (self.judged(), self.ok) {
            (false, _) => "⚠️",
            (true, true) => "✅",
            (true, false) if self.overall == super::verdict::Overall::Flaky => "🟡",
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
        self.packets_md(&mut o);
        let _ = writeln!(
            o,
            "| source | `{b}` (base) | `{p}` (PR) | expected on `{b}` | expected on `{p}` | \
             predicted on `{b}` | predicted on `{p}` |"
        );
        let _ = writeln!(o, "| --- | --- | --- | --- | --- | --- | --- |");
        for r in &self.probes {
            let cell = |x: &Option<ProbeResult>| {
                let s = outcome(x);
                if r.differs { format!("**{s}**") } else { s }
            };
            let _ = writeln!(
                o,
                "| `{}` | {} | {} | {} | {} | {} | {} |",
                self.row_name(r),
                cell(&r.base),
                cell(&r.pr),
                expected(r.expected_base, self.rate_of(Side::Base, r), &r.base),
                expected(r.expected_pr, self.rate_of(Side::Pr, r), &r.pr),
                predicted(&r.predicted_base),
                predicted(&r.predicted_pr)
            );
        }
        self.tries_md(&mut o);
        self.disagreements_md(&mut o);
        self.groups_md(&mut o);
        self.rules_md(&mut o);
        self.rule_changes_md(&mut o);
        self.metrics.markdown(&mut o, b, p);
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

    /// What changed for packets, per node pair: the classes that differ in a table, or that
    /// none does.
    fn packets_md(&self, o: &mut String) {
        for n in &self.packets {
            let s = &n.summary;
            let _ = write!(
                o,
                "**What changed for packets** of `{}` on {} (`{}` vs `{}`): ",
                self.service, n.node, n.base_node, n.pr_node
            );
            if s.changes.is_empty() {
                let _ = writeln!(o, "no class differs ({} classes traced)\n", s.classes);
            } else {
                let _ = writeln!(o, "{} of {} classes differ\n", s.changes.len(), s.classes);
                let _ = writeln!(o, "| class | base | PR |\n| --- | --- | --- |");
                for c in &s.changes {
                    let _ = writeln!(
                        o,
                        "| `{}` | {} | {} |",
                        crate::rules::packets::class_words(c),
                        c.base,
                        c.pr
                    );
                }
                o.push('\n');
            }
            if s.unknown > 0 {
                let _ = writeln!(
                    o,
                    "_{} classes traced to unknown on a side (a rule the tracer cannot \
                     evaluate)_\n",
                    s.unknown
                );
            }
        }
    }

    /// The disagreements between prediction and outcome, and the probes without a prediction.
    fn disagreements_md(&self, o: &mut String) {
        let observed: Vec<&Disagreement> = self.of_kind(Against::Observed).collect();
        if !observed.is_empty() {
            let _ = writeln!(o, "\n**Observed vs predicted**: {OBSERVED_MEANS}:\n");
            for d in observed {
                let _ = writeln!(o, "- {}", self.disagreement_md(d));
            }
        }
        let expected: Vec<&Disagreement> = self.of_kind(Against::Expected).collect();
        if !expected.is_empty() {
            let _ = writeln!(
                o,
                "\n⚠️ **Warning: expected vs predicted** ({EXPECTED_MEANS}):\n"
            );
            for d in expected {
                let _ = writeln!(o, "- {}", self.disagreement_md(d));
            }
        }
        let none = self.unpredicted();
        if !none.is_empty() {
            let _ = writeln!(o, "\nNo prediction:\n");
            for l in none {
                let _ = writeln!(o, "- {l}");
            }
        }
    }

    /// A disagreement as a Markdown list item (the rule in code).
    fn disagreement_md(&self, d: &Disagreement) -> String {
        let what = match d.kind {
            Against::Observed => "observed",
            Against::Expected => "expected",
        };
        let mut s = format!(
            "`{}` on `{}`: {what} {}, the rules say {}",
            self.with_target(&d.source, &d.target),
            d.cluster,
            d.outcome.label(),
            d.predicted
        );
        if let Some(r) = &d.rule {
            s.push_str(&format!(
                ", decided by `{}` line {} (`{}`): `{}`",
                r.node, r.line, r.chain, r.rule
            ));
        }
        s
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

    /// JUnit XML: one test case per expectation, its output saying expected, predicted and
    /// observed (and a warning where prediction contradicts the expectation); the suite's
    /// output what changed for packets and every disagreement.
    pub fn junit(&self) -> String {
        fn esc(s: &str) -> String {
            visible(s)
                .replace('&', "&amp;")
                .replace('<', "&lt;")
                .replace('>', "&gt;")
                .replace('"', "&quot;")
        }
        /// Several lines: each made visible, the line breaks kept.
        fn esc_lines(s: &str) -> String {
            s.lines().map(esc).collect::<Vec<_>>().join("\n")
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
            let want = match e.min_rate {
                Some(rate) => format!("OK >= {rate}"),
                None => e.expected.label().to_string(),
            };
            let name = format!(
                "{}: {} expects {want}",
                e.cluster,
                self.with_target(&e.source, &e.target),
            );
            let _ = write!(
                o,
                "    <testcase classname=\"kindred.{}\" name=\"{}\"",
                esc(&e.cluster),
                esc(&name)
            );
            o.push_str(">\n");
            let mut got = e
                .actual
                .map_or("no result".to_string(), |a| a.label().to_string());
            if let (Some(p), Some(n)) = (e.passes, e.tries.filter(|&n| n > 1)) {
                let _ = write!(got, " ({p} of {n} tries answered)");
            }
            // Flaky is never a pass: a failure of its own type.
            if !e.holds {
                let kind = match e.judged {
                    Some(Judged::Flaky) => "flaky",
                    _ => "missed",
                };
                let _ = writeln!(
                    o,
                    "      <failure type=\"{kind}\" message=\"expected {}, got {}\"/>",
                    esc(&want),
                    esc(&got)
                );
            }
            let mut out = format!(
                "expected {want}, predicted {}, observed {}",
                e.predicted.as_deref().unwrap_or("-"),
                got
            );
            let warned = self
                .of_kind(Against::Expected)
                .filter(|d| (d.side, &d.source, &d.target) == (e.side, &e.source, &e.target));
            for d in warned {
                let _ = write!(
                    out,
                    "\nWARNING: expected vs predicted ({EXPECTED_MEANS}): {}",
                    self.disagreement_words(d)
                );
            }
            let _ = writeln!(
                o,
                "      <system-out>{}</system-out>\n    </testcase>",
                esc_lines(&out)
            );
        }
        // What changed for packets, and the disagreements: the suite's output.
        let mut all = String::new();
        self.packets_text(&mut all);
        self.tries_text(&mut all);
        self.disagreements_text(&mut all);
        if !all.trim().is_empty() {
            let _ = writeln!(o, "    <system-out>{}</system-out>", esc_lines(all.trim()));
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
            packets: Vec::new(),
            expectations: Vec::new(),
            probes: Vec::new(),
            disagreements: Vec::new(),
            rules: vec![NodeDiff {
                node: "worker".into(),
                base_node: "base-worker".into(),
                pr_node: "pr-worker".into(),
                comparison,
            }],
            rule_changes: Vec::new(),
            groups: Vec::new(),
            flaky: 0,
            overall: crate::check::verdict::Overall::Pass,
            latency: Default::default(),
            metrics: crate::check::metrics_report::MetricsReport {
                factor: crate::model::Factor::default(),
                pr_worse: false,
                nodes: Vec::new(),
            },
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
