//! The verdict: each probe source on both sides against the scenario's expectations, and the
//! Service's rule diff on every node pair, judged from the dashboard's state. Next to each
//! probe, what its node's rules predict ([`crate::app::predict`], computed here from the final
//! state), and where prediction disagrees with what was observed or expected; and what changed
//! for the Service's packets on every node pair.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::app::State;
use crate::app::diffs::compare_pair;
use crate::app::predict::{self, Predicted, Prediction, ProbeKey};
use crate::backend::event::{ProbeResult, SessionInfo, SideInfo};
use crate::model::{BySide, Outcome, Side, Target};
use crate::rules::packets::Summary;
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
    /// What the rules of the probing pod's node predict (`None`: no probe on that side).
    pub predicted_base: Option<PredictedCell>,
    pub predicted_pr: Option<PredictedCell>,
    /// The two sides' outcomes differ.
    pub differs: bool,
}

/// What one probe's rules predict: the tracer's verdict, or why there is none.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PredictedCell {
    /// The PREDICT column (`dnat`, `drop filter-output`); `None`: no prediction.
    pub label: Option<String>,
    /// Why there is no prediction (no rules read from the node, no pod IP, ...).
    pub reason: Option<String>,
    /// Whether the rules let the probe through (`None`: they do not say, or no prediction).
    pub reaches: Option<bool>,
    /// The rule that decided it, when one did.
    pub rule: Option<DecidingRule>,
}

/// The rule that decides a prediction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DecidingRule {
    /// The node whose rules were traced.
    pub node: String,
    /// 1-based line in that node's dump.
    pub line: u32,
    pub chain: String,
    pub rule: String,
}

impl std::fmt::Display for DecidingRule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} line {}, {}: {}",
            self.node, self.line, self.chain, self.rule
        )
    }
}

impl PredictedCell {
    fn of(p: &Predicted) -> PredictedCell {
        match p {
            Ok(p) => PredictedCell {
                label: Some(p.label()),
                reason: None,
                reaches: p.reaches(),
                rule: deciding_rule(p),
            },
            Err(why) => PredictedCell {
                label: None,
                reason: Some(why.clone()),
                reaches: None,
                rule: None,
            },
        }
    }

    /// The column as the reports show it: the label, or `-` (the reason said elsewhere).
    pub fn shown(&self) -> &str {
        self.label.as_deref().unwrap_or("-")
    }
}

fn deciding_rule(p: &Prediction) -> Option<DecidingRule> {
    p.deciding_step().map(|s| DecidingRule {
        node: p.node.clone(),
        line: s.line,
        chain: s.chain.clone(),
        rule: crate::rules::render::visible(&s.rule).into_owned(),
    })
}

/// Which two of expected, predicted and observed disagree.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Against {
    /// Observed vs predicted: a dataplane surprise (conntrack, routing, the LB announcing) or
    /// a tracer gap.
    Observed,
    /// Expected vs predicted: most likely a wrong expectation (a warning; the verdict is
    /// expected vs observed).
    Expected,
}

/// A probe whose prediction an observed or expected outcome contradicts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Disagreement {
    pub kind: Against,
    pub side: Side,
    pub cluster: String,
    /// The probing pod.
    pub source: String,
    pub target: Target,
    /// The prediction's label.
    pub predicted: String,
    /// The outcome observed, or expected, by `kind`.
    pub outcome: Outcome,
    /// The rule that decides the prediction.
    pub rule: Option<DecidingRule>,
}

/// What changed for the Service's packets on one node pair.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NodePackets {
    /// The node's role, e.g. "worker".
    pub node: String,
    pub base_node: String,
    pub pr_node: String,
    #[serde(flatten)]
    pub summary: Summary,
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
    /// What the rules predict for this probe (`None`: no probe, or no prediction).
    pub predicted: Option<String>,
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
    /// What changed for the Service's packets, per node pair.
    pub packets: Vec<NodePackets>,
    pub expectations: Vec<ExpectationResult>,
    pub probes: Vec<ProbeRow>,
    /// Where a prediction and an observed or expected outcome disagree: observed ones first.
    pub disagreements: Vec<Disagreement>,
    pub rules: Vec<NodeDiff>,
    /// Every change of a node's rules seen during the run (kube-proxy churn), oldest first.
    pub rule_changes: Vec<RuleChange>,
    /// Each side's nodes grouped by their rules: base groups first, each the largest first.
    pub groups: Vec<GroupReport>,
    /// kube-proxy's own numbers per node pair (absent when none was read).
    #[serde(skip_serializing_if = "super::metrics_report::MetricsReport::is_empty")]
    pub metrics: super::metrics_report::MetricsReport,
}

/// Nodes of one side and role whose rules are the same (a node alone: an outlier).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GroupReport {
    pub side: Side,
    pub role: String,
    /// `worker group A` for several nodes, the node's name (without its cluster's) for one.
    pub label: String,
    /// Its nodes, by name; the first's rules are those compared.
    pub nodes: Vec<String>,
    /// The other side's groups it is compared with (matched by role, then by the node names
    /// they share, then by size); empty when that side has no node of its role.
    pub same_as: Vec<String>,
}

impl GroupReport {
    /// More than one node.
    pub fn is_group(&self) -> bool {
        self.nodes.len() > 1
    }
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
    let preds = predictions(st);
    let expectations = judge(st, session, &preds);
    let (rules, packets) = rule_diffs(st)?;
    let mut disagreements = observed_disagreements(st, &preds);
    disagreements.extend(expected_disagreements(st, &expectations, &preds));
    Ok(Verdict {
        schema: SCHEMA,
        ok: !expectations.is_empty() && expectations.iter().all(|e| e.holds),
        service: session.service.to_string(),
        base: side_report(st, Side::Base),
        pr: side_report(st, Side::Pr),
        packets,
        expectations,
        probes: probe_rows(st, &preds),
        disagreements,
        rules,
        rule_changes: rule_changes(st),
        groups: groups(st),
        metrics: super::metrics_report::MetricsReport::of(st),
    })
}

/// Each side's groups (as the Diff pane has them) with the other side's groups each is
/// compared with.
fn groups(st: &State) -> Vec<GroupReport> {
    let g = &st.diff.groups;
    let (base, pr) = (&st.sides.base, &st.sides.pr);
    let matched =
        crate::rules::group::match_groups(&g.base, &g.pr, |n| base.short(n), |n| pr.short(n));
    let mut out = Vec::new();
    for side in [Side::Base, Side::Pr] {
        for (i, grp) in g.side(side).iter().enumerate() {
            let same_as = matched
                .iter()
                .filter_map(|m| match side {
                    Side::Base => (m.base == i).then(|| g.pr[m.pr].label.clone()),
                    Side::Pr => (m.pr == i).then(|| g.base[m.base].label.clone()),
                })
                .collect();
            out.push(GroupReport {
                side,
                role: grp.role.clone(),
                label: grp.label.clone(),
                nodes: grp.nodes.clone(),
                same_as,
            });
        }
    }
    out
}

/// Each side's predictions, computed from the state as it ended (not whatever the loop last
/// answered: deterministic, and the same from a recording).
fn predictions(st: &State) -> BySide<BTreeMap<ProbeKey, Predicted>> {
    let one = |side: Side| predict::compute(&predict::request(st.side(side), side));
    BySide {
        base: one(Side::Base),
        pr: one(Side::Pr),
    }
}

/// The prediction for `source`'s latest probe of `target` on `side`, if any.
fn prediction_for<'a>(
    st: &State,
    preds: &'a BySide<BTreeMap<ProbeKey, Predicted>>,
    side: Side,
    source: &str,
    target: &Target,
) -> Option<&'a Predicted> {
    let (key, _) = st.probe_entry(side, source, target)?;
    preds[side].get(key)
}

/// Every probe whose observed outcome contradicts its prediction.
fn observed_disagreements(
    st: &State,
    preds: &BySide<BTreeMap<ProbeKey, Predicted>>,
) -> Vec<Disagreement> {
    let mut out = Vec::new();
    for side in Side::BOTH {
        for (key, cell) in &st.side(side).probes {
            let (src, target) = (&key.0, st.target_of(&cell.last));
            // The latest cell for this source and target only.
            if st.probe_entry(side, src, &target).map(|(k, _)| k) != Some(key) {
                continue;
            }
            let Some(Ok(p)) = prediction_for(st, preds, side, src, &target) else {
                continue;
            };
            if p.contradicts(cell.last.outcome) {
                out.push(Disagreement {
                    kind: Against::Observed,
                    side,
                    cluster: st.side(side).name().to_string(),
                    source: src.clone(),
                    target,
                    predicted: p.label(),
                    outcome: cell.last.outcome,
                    rule: deciding_rule(p),
                });
            }
        }
    }
    out
}

/// Every expectation its probe's prediction contradicts.
fn expected_disagreements(
    st: &State,
    expectations: &[ExpectationResult],
    preds: &BySide<BTreeMap<ProbeKey, Predicted>>,
) -> Vec<Disagreement> {
    expectations
        .iter()
        .filter_map(|e| {
            let Some(Ok(p)) = prediction_for(st, preds, e.side, &e.source, &e.target) else {
                return None;
            };
            p.contradicts(e.expected).then(|| Disagreement {
                kind: Against::Expected,
                side: e.side,
                cluster: e.cluster.clone(),
                source: e.source.clone(),
                target: e.target.clone(),
                predicted: p.label(),
                outcome: e.expected,
                rule: deciding_rule(p),
            })
        })
        .collect()
}

/// Each expectation on each target it is about, against that target's latest result: the
/// target it names, else every target of the session but those another expectation for the
/// same side and source names.
fn judge(
    st: &State,
    session: &SessionInfo,
    preds: &BySide<BTreeMap<ProbeKey, Predicted>>,
) -> Vec<ExpectationResult> {
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
            let predicted = match prediction_for(st, preds, e.side, &e.source, &target) {
                Some(Ok(p)) => Some(p.label()),
                _ => None,
            };
            out.push(ExpectationResult {
                side: e.side,
                cluster: st.side(e.side).name().to_string(),
                source: e.source.clone(),
                target,
                expected: e.outcome,
                actual,
                holds: actual.is_some_and(|a| e.outcome.met_by(a)),
                predicted,
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
fn probe_rows(st: &State, preds: &BySide<BTreeMap<ProbeKey, Predicted>>) -> Vec<ProbeRow> {
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
                            predicted_base: None,
                            predicted_pr: None,
                            differs: false,
                        });
                        rows.len() - 1
                    }
                };
                let row = &mut rows[idx];
                let exp = st.expected(side, src, &target);
                let pred = prediction_for(st, preds, side, src, &target).map(PredictedCell::of);
                row.differs |= st.differs(side, src, &cell.last);
                match side {
                    Side::Base => {
                        row.base = Some(cell.last.clone());
                        row.expected_base = exp;
                        row.predicted_base = pred;
                    }
                    Side::Pr => {
                        row.pr = Some(cell.last.clone());
                        row.expected_pr = exp;
                        row.predicted_pr = pred;
                    }
                }
            }
        }
    }
    rows.sort_by(|a, b| (&a.source, a.target.to_string()).cmp(&(&b.source, b.target.to_string())));
    rows
}

/// The Service's normalized rule diff on every node pair, and what changed for its packets
/// there (the Diff pane's computation, with the nodes' addresses as the clusters report them).
fn rule_diffs(st: &State) -> Result<(Vec<NodeDiff>, Vec<NodePackets>), String> {
    let options = Options {
        raw: false,
        service: st.service().map(|s| s.filter().clone()),
        lb_ips: st.lb_ips(),
        ..Options::default()
    };
    let mut packets = Vec::new();
    let rules = st
        .diff
        .pairs
        .iter()
        .map(|pair| {
            let base = &st.sides.base.dumps[&pair.base];
            let pr = &st.sides.pr.dumps[&pair.pr];
            let (comparison, summary) = compare_pair(base, pr, pair, &options, &st.node_ips(pair))?;
            // As `kindred diff --service` says it: no rules to compare is no verdict on them.
            if let (Some(s), true) = (st.service(), comparison.services.is_empty()) {
                return Err(format!(
                    "Service {s}: no rules for this service in either dump ({}: base {}, PR {})",
                    pair.role, pair.base, pair.pr
                ));
            }
            packets.extend(summary.map(|summary| NodePackets {
                node: pair.role.clone(),
                base_node: pair.base.clone(),
                pr_node: pair.pr.clone(),
                summary,
            }));
            Ok(NodeDiff {
                node: pair.role.clone(),
                base_node: pair.base.clone(),
                pr_node: pair.pr.clone(),
                comparison,
            })
        })
        .collect::<Result<Vec<_>, String>>()?;
    Ok((rules, packets))
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
