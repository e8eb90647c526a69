//! kube-proxy's own numbers in `check`'s reports: per node pair, base and PR side by side, the
//! PR's markedly worse flagged (sync p99 above the latency factor times the base's, more sync
//! failures), and the nodes whose metrics were not read with why. Flagged, never judged: the
//! verdict stays the expectations'.

use std::fmt::Write;

use serde::Serialize;

use crate::app::State;
use crate::app::metrics::{Cell, Row, SIDE_W, numbers, rows, side_head, side_title};
use crate::model::Factor;
use crate::model::Side;
use crate::rules::render::visible;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MetricsReport {
    /// The factor a PR sync p99 is compared with (`probes.latency_factor`).
    pub factor: Factor,
    /// The PR side is markedly worse on some node.
    pub pr_worse: bool,
    pub nodes: Vec<Row>,
}

impl MetricsReport {
    pub fn of(st: &State) -> MetricsReport {
        let nodes = rows(st);
        MetricsReport {
            factor: st.latency_factor,
            pr_worse: nodes.iter().any(|r| !r.worse.is_empty()),
            nodes,
        }
    }

    /// No node's metrics were read (a recording from before they were).
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    fn flags(&self, r: &Row) -> String {
        let w: Vec<String> = r.worse.iter().map(|w| w.words(self.factor)).collect();
        w.join("; ")
    }

    fn failures(&self) -> impl Iterator<Item = &str> {
        self.nodes
            .iter()
            .flat_map(|r| [&r.base, &r.pr])
            .flatten()
            .filter_map(|c| match c {
                Cell::Failed { error, .. } => Some(error.as_str()),
                Cell::Read { .. } => None,
            })
    }

    /// The section of the text report (nothing when no metrics were read).
    pub fn text(&self, o: &mut String, base: &str, pr: &str) {
        if self.is_empty() {
            return;
        }
        let w = self.nodes.iter().map(|r| r.node.chars().count()).max();
        let w = w.unwrap_or(4).max(4);
        let _ = writeln!(o, "\nkube-proxy metrics (127.0.0.1:10249):");
        let (tb, tp) = (
            side_title(&self.nodes, Side::Base, base),
            side_title(&self.nodes, Side::Pr, pr),
        );
        for (a, b, c) in [("", tb, tp), ("NODE", side_head(), side_head())] {
            let head = format!("{a:<w$}  {b:<SIDE_W$} | {c}");
            let _ = writeln!(o, "{}", head.trim_end());
        }
        for r in &self.nodes {
            let line = format!(
                "{:<w$}  {:<SIDE_W$} | {:<SIDE_W$}  {}",
                r.node,
                numbers(r.base.as_ref()),
                numbers(r.pr.as_ref()),
                self.flags(r)
            );
            let _ = writeln!(o, "{}", line.trim_end());
        }
        for e in self.failures() {
            let _ = writeln!(o, "not read: {e}");
        }
        if self.pr_worse {
            let _ = writeln!(o, "PR's kube-proxy is markedly worse on some node (above)");
        }
    }

    /// The section of the Markdown report.
    pub fn markdown(&self, o: &mut String, base: &str, pr: &str) {
        if self.is_empty() {
            return;
        }
        let _ = writeln!(o, "\n#### kube-proxy metrics\n");
        let _ = writeln!(
            o,
            "| node | `{base}` sync p50 / p99 | `{pr}` sync p50 / p99 | last sync | sync failures \
             | rules | flagged |"
        );
        let _ = writeln!(o, "| --- | --- | --- | --- | --- | --- | --- |");
        for r in &self.nodes {
            let pick = |f: fn(&Cell) -> String| {
                let one = |c: &Option<Cell>| c.as_ref().map_or("-".into(), f);
                format!("{} / {}", one(&r.base), one(&r.pr))
            };
            let _ = writeln!(
                o,
                "| `{}` | {} | {} | {} | {} | {} | {} |",
                r.node,
                cell_sync(r.base.as_ref()),
                cell_sync(r.pr.as_ref()),
                pick(|c| field(c, |m| m.last_sync_age_ms.map(crate::app::metrics::age))),
                pick(|c| field(c, |m| m.failures.map(|n| n.to_string()))),
                pick(|c| field(c, |m| m.rules.map(|n| n.to_string()))),
                if r.worse.is_empty() {
                    String::new()
                } else {
                    format!("⚠️ {}", self.flags(r))
                }
            );
        }
        for e in self.failures() {
            let _ = writeln!(o, "\nnot read: {}", visible(e));
        }
    }
}

fn field(c: &Cell, f: impl Fn(&crate::backend::metrics::ProxyMetrics) -> Option<String>) -> String {
    match c {
        Cell::Read { metrics, .. } => f(metrics).unwrap_or_else(|| "-".into()),
        Cell::Failed { .. } => "not read".into(),
    }
}

fn cell_sync(c: Option<&Cell>) -> String {
    use crate::app::metrics::duration;
    match c {
        Some(Cell::Read { metrics, .. }) => metrics.sync.map_or("-".into(), |s| {
            format!("{} / {}", duration(s.p50_us), duration(s.p99_us))
        }),
        Some(Cell::Failed { .. }) => "not read".into(),
        None => "-".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::update::{Msg, update};
    use crate::backend::event::{Event, MetricsRead};
    use crate::backend::metrics::ProxyMetrics;

    fn fixture(name: &str) -> MetricsRead {
        let p = format!(
            "{}/tests/fixtures/metrics/{name}",
            env!("CARGO_MANIFEST_DIR")
        );
        let text = std::fs::read_to_string(p).unwrap();
        MetricsRead::Read(ProxyMetrics::of(&text, 1_765_036_805_123).unwrap())
    }

    fn state() -> State {
        let mut st = State::new();
        for (side, node, read) in [
            (Side::Base, "worker", fixture("iptables.txt")),
            (Side::Pr, "worker", fixture("nftables.txt")),
            (
                Side::Pr,
                "worker2",
                MetricsRead::Failed("worker2: did not answer".into()),
            ),
        ] {
            let node = node.to_string();
            update(
                &mut st,
                Msg::Backend(Event::ProxyMetrics { side, node, read }),
            );
        }
        st
    }

    /// Every report has the section: numbers side by side, the PR's worse flagged, the node not
    /// read named; the JSON holds to the report's schema.
    #[test]
    fn reports_show_the_numbers_and_flag_the_worse_pr() {
        let m = MetricsReport::of(&state());
        assert!(m.pr_worse);
        let mut t = String::new();
        m.text(&mut t, "base", "pr");
        assert!(t.contains("102.4ms") && t.contains("16.38s"), "{t}");
        assert!(
            t.contains("PR sync p99 > 2x base; PR more sync failures"),
            "{t}"
        );
        assert!(t.contains("not read: worker2: did not answer"), "{t}");
        let mut md = String::new();
        m.markdown(&mut md, "base", "pr");
        assert!(
            md.contains("| `worker` | 12.0ms / 102.4ms | 2.0ms / 16.38s |"),
            "{md}"
        );
        assert!(md.contains("⚠️ PR sync p99 > 2x base"), "{md}");
        let j = serde_json::to_value(&m).unwrap();
        assert_eq!(
            j["nodes"][0]["worse"],
            serde_json::json!(["slower_sync", "more_failures"])
        );
        assert_eq!(j["nodes"][0]["base"]["sync"]["p99_us"], 102_400);
        let schema_path = format!(
            "{}/assets/check-report.schema.json",
            env!("CARGO_MANIFEST_DIR")
        );
        let mut schema: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(schema_path).unwrap()).unwrap();
        schema["required"] = serde_json::json!([]);
        let v = jsonschema::validator_for(&schema).unwrap();
        let doc = serde_json::json!({ "metrics": j });
        let errors: Vec<String> = v.iter_errors(&doc).map(|e| e.to_string()).collect();
        assert!(errors.is_empty(), "{errors:?}");
    }
}
