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
use crate::backend::tries::{self, Judged, Quantiles};
use crate::model::{BySide, Factor, Outcome, Rate, Side, Target};
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
    /// Each side's tries summed up (passes/N, endpoints that answered, latency).
    pub base_summary: Option<tries::Summary>,
    pub pr_summary: Option<tries::Summary>,
    /// The PR side's p99 total time is more than the latency factor times the base's.
    pub pr_slower: bool,
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
    /// `ok >= RATE`: met when at least this share of the tries answered.
    pub min_rate: Option<Rate>,
    /// `None`: no probe result for this source and target.
    pub actual: Option<Outcome>,
    /// How the result stands against it (`None`: no result).
    pub judged: Option<Judged>,
    /// Tries that answered, of how many (`None`: no result).
    pub passes: Option<u32>,
    pub tries: Option<u32>,
    /// `judged` is Met.
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
    /// Expectations judged flaky (tries that disagree where all should agree).
    pub flaky: usize,
    /// The overall word: FAIL when one is missed, else FLAKY when one is flaky, else PASS.
    pub overall: Overall,
    /// Each side's latency, and whether the PR side is slower past the factor.
    pub latency: LatencyReport,
}

/// The verdict in one word.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Overall {
    Pass,
    Fail,
    /// No expectation missed, but tries disagree where an expectation asks all to agree.
    Flaky,
    /// No expectation to judge.
    Nothing,
}

/// Each side's latency over every try that answered, side by side.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct LatencyReport {
    pub factor: Factor,
    pub base: SideLatency,
    pub pr: SideLatency,
    /// The PR side's p99 total time is more than `factor` times the base's.
    pub pr_slower: bool,
}

/// One side's connect and total times (p50, p99), when any try answered.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct SideLatency {
    pub connect: Option<Quantiles>,
    pub total: Option<Quantiles>,
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
    let probes = probe_rows(st, &preds);
    let latency = latency(st.latency_factor, &probes);
    let is = |j: Judged| expectations.iter().filter(|e| e.judged == Some(j)).count();
    let flaky = is(Judged::Flaky);
    let overall = if expectations.is_empty() {
        Overall::Nothing
    } else if expectations
        .iter()
        .any(|e| e.judged != Some(Judged::Met) && e.judged != Some(Judged::Flaky))
    {
        Overall::Fail
    } else if flaky > 0 {
        Overall::Flaky
    } else {
        Overall::Pass
    };
    Ok(Verdict {
        schema: SCHEMA,
        ok: overall == Overall::Pass,
        flaky,
        overall,
        latency,
        service: session.service.to_string(),
        base: side_report(st, Side::Base),
        pr: side_report(st, Side::Pr),
        packets,
        expectations,
        probes,
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
            let last = st.probe_for(e.side, &e.source, &target).map(|c| &c.last);
            let judged = last.map(|r| tries::judge(e.outcome, e.min_rate, r));
            let summary = last.map(tries::Summary::of);
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
                min_rate: e.min_rate,
                actual: last.map(|r| r.outcome),
                judged,
                passes: summary.as_ref().map(|s| s.passes),
                tries: summary.as_ref().map(|s| s.tries),
                holds: judged == Some(Judged::Met),
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
                            base_summary: None,
                            pr_summary: None,
                            pr_slower: false,
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
                        row.base_summary = Some(tries::Summary::of(&cell.last));
                        row.base = Some(cell.last.clone());
                        row.expected_base = exp;
                        row.predicted_base = pred;
                    }
                    Side::Pr => {
                        row.pr_summary = Some(tries::Summary::of(&cell.last));
                        row.pr = Some(cell.last.clone());
                        row.expected_pr = exp;
                        row.predicted_pr = pred;
                    }
                }
            }
        }
    }
    rows.sort_by(|a, b| (&a.source, a.target.to_string()).cmp(&(&b.source, b.target.to_string())));
    let factor = st.latency_factor.0;
    for row in &mut rows {
        let total = |s: &Option<tries::Summary>| s.as_ref().and_then(|s| s.total);
        row.pr_slower = match (total(&row.base_summary), total(&row.pr_summary)) {
            (Some(b), Some(p)) => tries::slower(b, p, factor),
            _ => false,
        };
    }
    rows
}

/// Each side's latency over the rows' results, and whether the PR's p99 total is past
/// `factor` times the base's.
fn latency(factor: Factor, rows: &[ProbeRow]) -> LatencyReport {
    let side = |pick: fn(&ProbeRow) -> Option<&ProbeResult>| {
        let (connect, total) = tries::latency_of(rows.iter().filter_map(pick));
        SideLatency { connect, total }
    };
    let base = side(|r| r.base.as_ref());
    let pr = side(|r| r.pr.as_ref());
    let pr_slower = match (base.total, pr.total) {
        (Some(b), Some(p)) => tries::slower(b, p, factor.0),
        _ => false,
    };
    LatencyReport {
        factor,
        base,
        pr,
        pr_slower,
    }
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
        } else if self.overall == Overall::Flaky {
            format!(
                "FLAKY: {} of {n} expectations flaky (tries disagree)",
                self.flaky
            )
        } else {
            format!("FAIL: {} of {n} expectations do not hold", n - self.held())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::{Msg, update};
    use crate::backend::event::{Event, Expectation, SideInfo, Try};

    fn side(name: &str) -> SideInfo {
        SideInfo::named(name)
    }

    fn expect(side: Side, source: &str, min_rate: Option<f64>) -> Expectation {
        Expectation {
            side,
            source: source.into(),
            outcome: Outcome::Ok,
            target: None,
            min_rate: min_rate.map(Rate),
        }
    }

    /// A result of `n` tries, `fail` of them failed (every third), each `us` long.
    fn tried(source: &str, n: u32, fail: u32, us: u64) -> ProbeResult {
        let t = |i: u32| {
            let ok = i % 3 != 2 || i / 3 >= fail;
            Try {
                outcome: if ok { Outcome::Ok } else { Outcome::Fail },
                http_status: ok.then_some(200),
                connect_us: Some(us / 2),
                total_us: Some(us),
                endpoint: ok.then(|| format!("echo-{}", i % 3)),
                detail: None,
            }
        };
        let tries: Vec<Try> = (0..n).map(t).collect();
        let mut r = ProbeResult {
            source: source.into(),
            target: "172.17.255.1:8080".into(),
            outcome: tries::outcome_of(&tries).unwrap(),
            http_status: Some(200),
            latency_ms: Some(us / 1000),
            detail: None,
            scenario_target: Some(Target::Lb),
            tries,
            ready_endpoints: Some(3),
        };
        r.http_status = Some(200);
        r
    }

    fn run(exps: Vec<Expectation>, results: Vec<(Side, ProbeResult)>) -> Verdict {
        let mut st = State::new();
        let session = SessionInfo {
            base: side("base1"),
            pr: side("pr1"),
            service: "default/echo".parse().unwrap(),
            probe_target: Target::Lb,
            probe_targets: vec![],
            expectations: exps,
            banner: None,
            proxy_mode: None,
        };
        update(&mut st, Msg::Backend(Event::Session(Box::new(session))));
        for (side, result) in results {
            update(&mut st, Msg::Backend(Event::Probe { side, result }));
        }
        verdict(&st).unwrap()
    }

    /// Tries that disagree make the verdict FLAKY (never PASS), a missed expectation FAIL
    /// whatever else; a rate expectation is met by the same mixed result.
    #[test]
    fn a_flaky_row_makes_the_verdict_flaky_and_a_miss_fails_it() {
        let both = |pr_fail| {
            vec![
                (Side::Base, tried("netshoot-base1-worker", 30, 0, 1000)),
                (Side::Pr, tried("netshoot-pr1-worker", 30, pr_fail, 3000)),
            ]
        };
        let exps = || {
            vec![
                expect(Side::Base, "netshoot-base1-worker", None),
                expect(Side::Pr, "netshoot-pr1-worker", None),
            ]
        };
        let v = run(exps(), both(0));
        assert_eq!((v.overall, v.ok, v.flaky), (Overall::Pass, true, 0));
        let v = run(exps(), both(10));
        assert_eq!((v.overall, v.ok, v.flaky), (Overall::Flaky, false, 1));
        assert_eq!(
            v.summary(),
            "FLAKY: 1 of 2 expectations flaky (tries disagree)"
        );
        let e = &v.expectations[1];
        assert_eq!(
            (e.judged, e.passes, e.tries, e.actual, e.holds),
            (
                Some(Judged::Flaky),
                Some(20),
                Some(30),
                Some(Outcome::Flaky),
                false
            )
        );
        assert_eq!(v.probes.len(), 1, "{:#?}", v.probes);
        let row = &v.probes[0];
        let pr = row.pr_summary.as_ref().unwrap();
        assert_eq!(
            pr.spread().as_deref(),
            Some("2/3 endpoints answered in 30 tries")
        );
        assert_eq!(row.base_summary.as_ref().unwrap().passes, 30);
        // The PR side is 3x the base: past the factor of 2.
        assert!(row.pr_slower && v.latency.pr_slower, "{:?}", v.latency);
        assert_eq!(v.latency.base.total.unwrap().p99_us, 1000);
        assert_eq!(v.latency.factor, Factor(2.0));
        // A rate expectation judges the same result: met at 0.6, missed at 0.99 (FAIL).
        let rated = |r| {
            vec![
                expect(Side::Base, "netshoot-base1-worker", None),
                expect(Side::Pr, "netshoot-pr1-worker", Some(r)),
            ]
        };
        let v = run(rated(0.6), both(10));
        assert_eq!((v.overall, v.ok), (Overall::Pass, true));
        assert_eq!(v.expectations[1].min_rate, Some(Rate(0.6)));
        let v = run(rated(0.99), both(10));
        assert_eq!(v.overall, Overall::Fail);
        // A miss beside a flaky row: FAIL.
        let mut exps = exps();
        exps.push(expect(Side::Base, "gone", None));
        assert_eq!(run(exps, both(10)).overall, Overall::Fail);
        assert_eq!(run(vec![], both(10)).overall, Overall::Nothing);
    }
}
