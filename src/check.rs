//! `kindred check`: the verdict without a screen, from a live run or a recording, and its
//! reports (text table, Markdown for a PR comment, JSON, JUnit).

use std::fmt::Write as _;

use serde::Serialize;

use crate::app::State;
use crate::backend::event::{Outcome, ProbeResult, Side, SideInfo};
use crate::rules::Comparison;

pub const SCHEMA: &str = "kindred.check/v1";

/// One probe source, on both sides.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProbeRow {
    /// The pod's name with the cluster name replaced by `*` (e.g. "netshoot-*-worker").
    pub source: String,
    pub base: Option<ProbeResult>,
    pub pr: Option<ProbeResult>,
    pub expected_base: Option<Outcome>,
    pub expected_pr: Option<Outcome>,
    /// The two sides' outcomes differ.
    pub differs: bool,
}

/// One expectation from the scenario and whether it holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ExpectationResult {
    pub side: Side,
    pub cluster: String,
    pub source: String,
    pub expected: Outcome,
    /// `None`: no probe result for this source.
    pub actual: Option<Outcome>,
    pub holds: bool,
}

/// The Service's rule diff on one node pair.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NodeDiff {
    /// The node's role, e.g. "worker".
    pub node: String,
    pub base_node: String,
    pub pr_node: String,
    pub comparison: Comparison,
}

/// A side as the report names it: cluster, ref, image, and the commit built when known.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SideReport {
    pub name: String,
    pub git_ref: Option<String>,
    pub image: Option<String>,
    pub commit: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Verdict {
    pub schema: &'static str,
    /// Every expectation holds.
    pub ok: bool,
    pub service: String,
    pub base: SideReport,
    pub pr: SideReport,
    pub expectations: Vec<ExpectationResult>,
    pub probes: Vec<ProbeRow>,
    pub rules: Vec<NodeDiff>,
}

/// Compute the verdict from a dashboard state (fed by a live run or a recording).
pub fn verdict(st: &State) -> Result<Verdict, String> {
    let session = st
        .session
        .as_ref()
        .ok_or("no session: the run or recording has no scenario")?;
    let names = [
        st.sides[0].name().to_string(),
        st.sides[1].name().to_string(),
    ];
    let mut rows: Vec<ProbeRow> = Vec::new();
    for side in Side::BOTH {
        let s = st.side(side);
        for ((src, _), cell) in &s.probes {
            let r = s.source_role(src);
            let idx = match rows.iter().position(|x| x.source == r) {
                Some(i) => i,
                None => {
                    rows.push(ProbeRow {
                        source: r.clone(),
                        base: None,
                        pr: None,
                        expected_base: None,
                        expected_pr: None,
                        differs: false,
                    });
                    rows.len() - 1
                }
            };
            let row = &mut rows[idx];
            let exp = st.expected(side, src);
            match side {
                Side::Base => {
                    row.base = Some(cell.last.clone());
                    row.expected_base = exp;
                }
                Side::Pr => {
                    row.pr = Some(cell.last.clone());
                    row.expected_pr = exp;
                }
            }
        }
    }
    for r in &mut rows {
        r.differs = match (&r.base, &r.pr) {
            (Some(a), Some(b)) => a.outcome != b.outcome,
            _ => false,
        };
    }
    rows.sort_by(|a, b| a.source.cmp(&b.source));
    let expectations: Vec<ExpectationResult> = session
        .expectations
        .iter()
        .map(|e| {
            let actual = st
                .side(e.side)
                .probes
                .iter()
                .find(|((src, _), _)| *src == e.source)
                .map(|(_, c)| c.last.outcome);
            ExpectationResult {
                side: e.side,
                cluster: names[e.side.index()].clone(),
                source: e.source.clone(),
                expected: e.outcome,
                actual,
                holds: actual.is_some_and(|a| e.outcome.met_by(a)),
            }
        })
        .collect();
    let mut rules = Vec::new();
    for pair in st.diff_nodes() {
        let c = crate::tui::compute_diff(&crate::app::update::request_for(st, &pair, 0, false))?;
        let (node, b, p) = pair;
        rules.push(NodeDiff {
            node,
            base_node: b,
            pr_node: p,
            comparison: (*c).clone(),
        });
    }
    Ok(Verdict {
        schema: SCHEMA,
        ok: expectations.iter().all(|e| e.holds),
        service: session.service.clone(),
        base: side_report(st, Side::Base),
        pr: side_report(st, Side::Pr),
        expectations,
        probes: rows,
        rules,
    })
}

fn side_report(st: &State, side: Side) -> SideReport {
    let s = st.side(side);
    let info: Option<&SideInfo> = s.info.as_ref();
    SideReport {
        name: s.name().to_string(),
        git_ref: info.and_then(|i| i.git_ref.clone()),
        image: info.and_then(|i| i.image.clone()),
        commit: s.commit.clone(),
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
    pub fn held(&self) -> usize {
        self.expectations.iter().filter(|e| e.holds).count()
    }

    pub fn summary(&self) -> String {
        let n = self.expectations.len();
        if self.ok {
            format!("PASS: {} of {n} expectations hold", self.held())
        } else {
            format!("FAIL: {} of {n} expectations do not hold", n - self.held())
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
            .map(|r| r.source.len())
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
                r.source,
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
                e.source,
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
        o
    }

    /// Markdown fit for a pull request comment.
    pub fn markdown(&self) -> String {
        let mut o = String::new();
        let (b, p) = (&self.base.name, &self.pr.name);
        let icon = if self.ok { "✅" } else { "❌" };
        let _ = writeln!(
            o,
            "### {icon} kindred: `{b}` vs `{p}`: {}\n",
            self.summary()
        );
        let _ = writeln!(
            o,
            "Service `{}`; probes from every test pod to the LoadBalancer.\n",
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
                r.source,
                cell(&r.base),
                cell(&r.pr),
                expected(r.expected_base, &r.base),
                expected(r.expected_pr, &r.pr)
            );
        }
        for d in &self.rules {
            let c = &d.comparison;
            let (add, rem): (usize, usize) = c
                .services
                .iter()
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
            if !c.equal {
                o.push_str("```diff\n");
                for s in c.services.iter().filter(|s| !s.equal) {
                    for ch in s.chains.iter().filter(|ch| !ch.equal) {
                        let _ = writeln!(o, "# {} {}", ch.table, ch.chain);
                        for l in &ch.lines {
                            let sign = match l.op {
                                crate::rules::diff::Op::Equal => ' ',
                                crate::rules::diff::Op::Added => '+',
                                crate::rules::diff::Op::Removed => '-',
                            };
                            let _ = writeln!(o, "{sign} {}", l.rule());
                        }
                    }
                }
                o.push_str("```\n");
            }
        }
        let ver = |s: &SideReport| {
            let mut v = format!(
                "ref `{}`, image `{}`",
                s.git_ref.as_deref().unwrap_or("?"),
                s.image.as_deref().unwrap_or("?")
            );
            if let Some(c) = &s.commit {
                v.push_str(&format!(", commit `{}`", &c[..c.len().min(12)]));
            }
            v
        };
        let _ = writeln!(
            o,
            "\n<sub>Builds: `{b}` {}; `{p}` {}.</sub>",
            ver(&self.base),
            ver(&self.pr)
        );
        o
    }

    /// JUnit XML: one test case per expectation.
    pub fn junit(&self) -> String {
        fn esc(s: &str) -> String {
            s.replace('&', "&amp;")
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
            let name = format!("{}: {} expects {}", e.cluster, e.source, e.expected.label());
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

/// A progress line for stderr (one per phase change; nothing for the chatty events).
pub fn progress_line(st: &State, ev: &crate::backend::event::Event) -> Option<String> {
    use crate::backend::event::{Event, PhaseState};
    let name = |s: Side| st.side(s).name().to_string();
    Some(match ev {
        Event::Phase { side, phase, state } => {
            let what = match state {
                PhaseState::Pending => "reset".to_string(),
                PhaseState::Running => "running".to_string(),
                PhaseState::Done => "done".to_string(),
                PhaseState::Skipped { reason } => format!("skipped ({reason})"),
                PhaseState::Failed { reason } => format!("FAILED: {reason}"),
            };
            format!("[{}] {}: {what}", name(*side), phase.title())
        }
        Event::ProbesStarted { side, target } => format!("[{}] probing {target}", name(*side)),
        Event::ProbesDone { side } => format!("[{}] probes done", name(*side)),
        Event::RuleDump { side, node, .. } => format!("[{}] rules of {node} read", name(*side)),
        Event::Error {
            side,
            pane,
            message,
        } => match side {
            Some(s) => format!("[{}] error ({pane}): {message}", name(*s)),
            None => format!("error ({pane}): {message}"),
        },
        _ => return None,
    })
}

/// Feed a recording into a state, as the dashboard would see it.
pub fn state_from_recording(rec: &crate::backend::recording::Recording) -> State {
    use crate::app::update::Msg;
    let mut st = State::new();
    for r in &rec.records {
        crate::tui::apply_sync(&mut st, Msg::Tick(std::time::Duration::from_millis(r.t)));
        crate::tui::apply_sync(&mut st, Msg::Backend(r.event.clone()));
    }
    st
}

/// Every test pod Running and the Service's LoadBalancer IP known, on both sides.
fn ready(st: &State) -> bool {
    st.sides.iter().all(|s| {
        !s.pods.is_empty()
            && s.pods.values().all(|p| p.phase == "Running")
            && s.service.as_ref().is_some_and(|v| v.lb_ip.is_some())
    })
}

/// How long `check` waits for pods and the LoadBalancer IP after deploying.
pub const READY_LIMIT: std::time::Duration = std::time::Duration::from_secs(300);

/// Run the whole live pipeline headless. Progress lines go to `progress`. Clusters kindred
/// created are deleted at the end unless `keep`, also when interrupted.
pub async fn live(
    sc: crate::scenario::Scenario,
    kind: crate::backend::kind::Kind,
    keep: bool,
    progress: impl Fn(String) + Send + 'static,
) -> anyhow::Result<State> {
    use crate::app::update::Msg;
    use crate::backend::event::Event;
    use crate::backend::live::{self, LiveBackend};
    use tokio_util::sync::CancellationToken;

    let session = sc.session();
    let backend = LiveBackend::new(sc, kind);
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Event>();
    let (ready_tx, mut ready_rx) = tokio::sync::watch::channel(false);
    let consumer = tokio::spawn(async move {
        let mut st = State::new();
        while let Some(ev) = rx.recv().await {
            if let Some(l) = progress_line(&st, &ev) {
                progress(l);
            }
            crate::tui::apply_sync(&mut st, Msg::Backend(ev));
            let _ = ready_tx.send(ready(&st));
        }
        st
    });
    let _ = tx.send(Event::Session(session));
    let cancel = CancellationToken::new();
    let ctx = backend.ctx(tx.clone(), cancel.clone());
    drop(tx);

    let pipeline = async {
        let per_side = |side: Side| {
            let ctx = ctx.clone();
            async move {
                live::build(&ctx, side).await.map_err(|e| {
                    anyhow::anyhow!("image build failed on {}: {e:#}", ctx.sc.side(side).name)
                })?;
                live::create(&ctx, side).await.map_err(|e| {
                    anyhow::anyhow!("cluster create failed on {}: {e:#}", ctx.sc.side(side).name)
                })?;
                live::deploy(&ctx, side).await.map_err(|e| {
                    anyhow::anyhow!("deploy failed on {}: {e:#}", ctx.sc.side(side).name)
                })?;
                anyhow::Ok(())
            }
        };
        let (a, b) = tokio::join!(per_side(Side::Base), per_side(Side::Pr));
        a?;
        b?;
        // Pods and the LB IP, through the watchers.
        let mut watchers = Vec::new();
        for side in Side::BOTH {
            let c = ctx.clone();
            watchers.push(tokio::spawn(async move {
                let _ = live::watchers(&c, side).await;
            }));
        }
        let waited = tokio::time::timeout(READY_LIMIT, ready_rx.wait_for(|r| *r)).await;
        if waited.is_err() {
            anyhow::bail!(
                "deploy: pods not all Running, or no LoadBalancer IP, after {}s",
                READY_LIMIT.as_secs()
            );
        }
        live::rules(&ctx).await?;
        live::probes(&ctx, None).await?;
        anyhow::Ok(())
    };
    let outcome = tokio::select! {
        r = pipeline => r,
        _ = tokio::signal::ctrl_c() => Err(anyhow::anyhow!("interrupted")),
    };
    cancel.cancel();
    if !keep {
        // A fresh token: deletion must run even when the run was cancelled.
        let cleanup = backend.ctx(ctx.tx.clone(), CancellationToken::new());
        if let Err(e) = live::delete(&cleanup).await {
            tracing::error!("deleting clusters: {e:#}");
        }
    }
    drop(ctx);
    drop(backend);
    let st = consumer.await?;
    outcome.map(|_| st)
}
