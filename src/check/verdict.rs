//! The verdict: each probe source on both sides against the scenario's expectations, and the
//! Service's rule diff on every node pair, judged from the dashboard's state.

use serde::Serialize;

use crate::app::State;
use crate::app::diffs::compare_pair;
use crate::backend::event::{ProbeResult, SideInfo};
use crate::model::{Outcome, Side};
use crate::rules::{Comparison, Options};

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
    /// The Kubernetes version the build carries, when known.
    pub version: Option<String>,
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
    /// Every change of a node's rules seen during the run (kube-proxy churn), oldest first.
    pub rule_changes: Vec<RuleChange>,
}

/// One change of one node's rules.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RuleChange {
    /// Milliseconds since the run (or the recorded session) started.
    pub at_ms: u64,
    pub side: Side,
    pub cluster: String,
    pub node: String,
    pub added: usize,
    pub removed: usize,
}

/// Compute the verdict from a dashboard state (fed by a live run or a recording).
pub fn verdict(st: &State) -> Result<Verdict, String> {
    let session = st
        .session
        .as_ref()
        .ok_or("no session: the run or recording has no scenario")?;
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
                cluster: st.side(e.side).name().to_string(),
                source: e.source.clone(),
                expected: e.outcome,
                actual,
                holds: actual.is_some_and(|a| e.outcome.met_by(a)),
            }
        })
        .collect();
    Ok(Verdict {
        schema: SCHEMA,
        ok: expectations.iter().all(|e| e.holds),
        service: session.service.to_string(),
        base: side_report(st, Side::Base),
        pr: side_report(st, Side::Pr),
        expectations,
        probes: probe_rows(st),
        rules: rule_diffs(st)?,
        rule_changes: rule_changes(st),
    })
}

/// The timeline of rule changes, as the report lists it.
fn rule_changes(st: &State) -> Vec<RuleChange> {
    st.timeline
        .entries
        .iter()
        .map(|c| RuleChange {
            at_ms: c.at.as_millis() as u64,
            side: c.side,
            cluster: st.side(c.side).name().to_string(),
            node: c.node.clone(),
            added: c.added,
            removed: c.removed,
        })
        .collect()
}

/// One row per probe source (by role), both sides' last results side by side; whether they
/// differ is judged as the Probes pane judges it ([`State::differs`]).
fn probe_rows(st: &State) -> Vec<ProbeRow> {
    let mut rows: Vec<ProbeRow> = Vec::new();
    for side in Side::BOTH {
        let s = st.side(side);
        for ((src, target), cell) in &s.probes {
            let role = s.source_role(src);
            let idx = match rows.iter().position(|x| x.source == role) {
                Some(i) => i,
                None => {
                    rows.push(ProbeRow {
                        source: role,
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
            row.differs |= st.differs(side, src, target, cell.last.outcome);
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
    rows.sort_by(|a, b| a.source.cmp(&b.source));
    rows
}

/// The Service's normalized rule diff on every node pair.
fn rule_diffs(st: &State) -> Result<Vec<NodeDiff>, String> {
    let options = Options {
        raw: false,
        service: st.service().map(|s| s.filter().clone()),
        lb_ips: st.lb_ips(),
        ..Options::default()
    };
    st.diff
        .pairs
        .iter()
        .map(|pair| {
            let base = &st.sides.base.dumps[&pair.base];
            let pr = &st.sides.pr.dumps[&pair.pr];
            let comparison = compare_pair(base, pr, pair, &options)?;
            // As `kindred diff --service` says it: no rules to compare is no verdict on them.
            if let (Some(s), true) = (st.service(), comparison.services.is_empty()) {
                return Err(format!(
                    "Service {s}: no rules for this service in either dump ({}: base {}, PR {})",
                    pair.role, pair.base, pair.pr
                ));
            }
            Ok(NodeDiff {
                node: pair.role.clone(),
                base_node: pair.base.clone(),
                pr_node: pair.pr.clone(),
                comparison,
            })
        })
        .collect()
}

fn side_report(st: &State, side: Side) -> SideReport {
    let s = st.side(side);
    let info: Option<&SideInfo> = s.info.as_ref();
    SideReport {
        name: s.name().to_string(),
        git_ref: info.and_then(|i| i.git_ref.clone()),
        image: info.and_then(|i| i.image.clone()),
        commit: s.commit.clone(),
        version: s.version.clone(),
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
}
