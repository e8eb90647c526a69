//! The verdict: each probe source on both sides against the scenario's expectations, and the
//! Service's rule diff on every node pair, judged from the dashboard's state.

use serde::Serialize;

use crate::app::State;
use crate::app::diffs::compare_pair;
use crate::backend::event::{ProbeResult, SessionInfo, SideInfo};
use crate::model::{Outcome, Side, Target};
use crate::rules::{Comparison, Options};

pub const SCHEMA: &str = "kindred.check/v1";
/// The summary when the scenario (or recording) holds no expectation: no verdict at all.
pub const NOTHING_JUDGED: &str = "no expectations: nothing judged";

/// One probe source, on both sides.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProbeRow {
    /// The pod's name with the cluster name replaced by `*` (e.g. "netshoot-*-worker").
    pub source: String,
    /// The probe target, as the scenario names it (`lb`, or HOST:PORT).
    pub target: Target,
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
    /// The probe target judged: an expectation without one is judged on every target.
    pub target: Target,
    pub expected: Outcome,
    /// `None`: no probe result for this source and target.
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
    /// There is something to judge, and every expectation holds, on every target it is about.
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
    let expectations = judge(st, session);
    Ok(Verdict {
        schema: SCHEMA,
        ok: !expectations.is_empty() && expectations.iter().all(|e| e.holds),
        service: session.service.to_string(),
        base: side_report(st, Side::Base),
        pr: side_report(st, Side::Pr),
        expectations,
        probes: probe_rows(st),
        rules: rule_diffs(st)?,
        rule_changes: rule_changes(st),
    })
}

/// Each expectation on each target it is about, against that target's latest result: the
/// target it names, else every target of the session but those another expectation for the
/// same side and source names.
fn judge(st: &State, session: &SessionInfo) -> Vec<ExpectationResult> {
    let mut out = Vec::new();
    for e in &session.expectations {
        let named = |t: &Target| {
            session
                .expectations
                .iter()
                .any(|x| x.side == e.side && x.source == e.source && x.target.as_ref() == Some(t))
        };
        let targets = match &e.target {
            Some(t) => vec![t.clone()],
            None => session
                .targets()
                .into_iter()
                .filter(|t| !named(t))
                .collect(),
        };
        for target in targets {
            let actual = st
                .probe_for(e.side, &e.source, &target)
                .map(|c| c.last.outcome);
            out.push(ExpectationResult {
                side: e.side,
                cluster: st.side(e.side).name().to_string(),
                source: e.source.clone(),
                target,
                expected: e.outcome,
                actual,
                holds: actual.is_some_and(|a| e.outcome.met_by(a)),
            });
        }
    }
    out
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

/// One row per probe source (by role) and target, both sides' last results side by side;
/// whether they differ is judged as the Probes pane judges it ([`State::differs`]).
fn probe_rows(st: &State) -> Vec<ProbeRow> {
    let mut rows: Vec<ProbeRow> = Vec::new();
    for side in Side::BOTH {
        let s = st.side(side);
        let sources: std::collections::BTreeSet<&String> =
            s.probes.keys().map(|(x, _)| x).collect();
        for src in sources {
            let role = s.source_role(src);
            let cells = s.probes.iter().filter(|((x, _), _)| x == src);
            let mut targets: Vec<Target> = Vec::new();
            for t in cells.map(|(_, c)| st.target_of(&c.last)) {
                if !targets.contains(&t) {
                    targets.push(t);
                }
            }
            for target in targets {
                let Some(cell) = st.probe_for(side, src, &target) else {
                    continue;
                };
                let idx = match rows
                    .iter()
                    .position(|x| x.source == role && x.target == target)
                {
                    Some(i) => i,
                    None => {
                        rows.push(ProbeRow {
                            source: role.clone(),
                            target: target.clone(),
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
                let exp = st.expected(side, src, &target);
                row.differs |= st.differs(side, src, &cell.last);
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
    }
    rows.sort_by(|a, b| (&a.source, a.target.to_string()).cmp(&(&b.source, b.target.to_string())));
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

    /// Whether there was anything to judge: without expectations there is no verdict.
    pub fn judged(&self) -> bool {
        !self.expectations.is_empty()
    }

    /// Whether the probes went to more than one target (the reports then name each row's).
    pub fn several_targets(&self) -> bool {
        let mut all = self
            .probes
            .iter()
            .map(|p| &p.target)
            .chain(self.expectations.iter().map(|e| &e.target));
        let first = all.next();
        all.any(|t| Some(t) != first)
    }

    pub fn summary(&self) -> String {
        let n = self.expectations.len();
        if !self.judged() {
            NOTHING_JUDGED.to_string()
        } else if self.ok {
            format!("PASS: {} of {n} expectations hold", self.held())
        } else {
            format!("FAIL: {} of {n} expectations do not hold", n - self.held())
        }
    }
}
