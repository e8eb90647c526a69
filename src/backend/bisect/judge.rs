//! What judges a bisect step (pure): each probe round against the scenario's expectations for
//! the PR side, or with `--probe SOURCE` that one source against its expectation, else against
//! what the good end showed; then the rounds of a step together (all must agree).

use crate::backend::event::{ProbeResult, SessionInfo};
use crate::backend::tries::{self, Judged};
use crate::model::{Outcome, Rate, Side, Target};

use super::{SkipReason, StepVerdict};

/// One probe that decides a round: `source` to `target` must meet `expected`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    pub source: String,
    pub target: Target,
    pub expected: Outcome,
    /// `ok >= RATE`: met when at least this share of the tries answered.
    pub min_rate: Option<Rate>,
}

/// What judges the rounds of a bisect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Judge {
    /// In the scenario's order; the first one not met names a bad round.
    checks: Vec<Check>,
    /// `--probe SOURCE` without a PR-side expectation: its outcomes are learned from the good
    /// end ([`Judge::learn`]) before any round is judged.
    learn: Option<String>,
    /// The session's targets, in its order.
    targets: Vec<Target>,
    /// How many of the scenario's expectations for the PR side judge (for [`Judge::describe`]).
    expectations: usize,
}

/// One round judged: good, or bad with the first probe that decided it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Round {
    pub good: bool,
    pub why: Option<String>,
    /// A probe's tries disagreed where every try should meet the expectation, and no check
    /// was missed: the round decides nothing.
    pub flaky: bool,
}

/// A step's rounds judged together.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rounds {
    pub verdict: StepVerdict,
    pub skip: Option<SkipReason>,
    pub why: Option<String>,
    pub good_rounds: u32,
    pub rounds: u32,
}

/// An outcome as the scenario writes it.
pub fn word(o: Outcome) -> &'static str {
    match o {
        Outcome::Ok => "ok",
        Outcome::Fail => "fail",
        Outcome::Timeout => "timeout",
        Outcome::Flaky => "flaky",
    }
}

/// The PR side's expectations as checks, each on every target it is about: the target it
/// names, else every target of the session but those another expectation for the same source
/// names (as `check` judges them).
fn pr_checks(session: &SessionInfo) -> Vec<Check> {
    let pr: Vec<_> = session
        .expectations
        .iter()
        .filter(|e| e.side == Side::Pr)
        .collect();
    let mut out = Vec::new();
    for e in &pr {
        let named = |t: &Target| {
            pr.iter()
                .any(|x| x.source == e.source && x.target.as_ref() == Some(t))
        };
        for t in session.targets() {
            let about = match &e.target {
                Some(_) => session.applies(e, &t),
                None => session.applies(e, &t) && !named(&t),
            };
            if about {
                out.push(Check {
                    source: e.source.clone(),
                    target: t,
                    expected: e.outcome,
                    min_rate: e.min_rate,
                });
            }
        }
    }
    out
}

impl Judge {
    /// The judge of a bisect of `session`'s PR side, by `probe` (a source pod) when given.
    /// Without a PR-side expectation and without `probe` nothing can judge: the error says to
    /// give `--probe SOURCE`.
    pub fn new(session: &SessionInfo, probe: Option<&str>) -> Result<Judge, String> {
        let all = pr_checks(session);
        let expectations = session
            .expectations
            .iter()
            .filter(|e| e.side == Side::Pr && probe.is_none_or(|p| e.source == p))
            .count();
        let checks: Vec<Check> = match probe {
            Some(p) => all.into_iter().filter(|c| c.source == p).collect(),
            None => all,
        };
        if checks.is_empty() && probe.is_none() {
            return Err(
                "the scenario expects nothing of the PR side: give --probe SOURCE (a test pod of the PR side) to judge each step by that probe against the good end"
                    .into(),
            );
        }
        let learn = probe.filter(|_| checks.is_empty()).map(str::to_string);
        Ok(Judge {
            checks,
            learn,
            targets: session.targets(),
            expectations,
        })
    }

    /// Whether the reference comes from the good end's results (call [`Judge::learn`] with
    /// them before judging).
    pub fn learns(&self) -> bool {
        self.learn.is_some() && self.checks.is_empty()
    }

    /// Take the good end's outcomes of the `--probe` source, per target, as the reference.
    /// A target it has no result for is an error naming both.
    pub fn learn(&mut self, good_end: &[ProbeResult]) -> Result<(), String> {
        let Some(source) = self.learn.clone() else {
            return Ok(());
        };
        let mut checks = Vec::new();
        for t in &self.targets {
            let Some(r) = self.result(good_end, &source, t) else {
                return Err(format!(
                    "{source} → {t}: no result at the good end (is {source} a test pod of the PR side?)"
                ));
            };
            if r.outcome == Outcome::Flaky {
                return Err(format!(
                    "{source} → {t}: its tries disagree at the good end (flaky): nothing to judge the steps by"
                ));
            }
            checks.push(Check {
                source: source.clone(),
                target: t.clone(),
                expected: r.outcome,
                min_rate: None,
            });
        }
        self.checks = checks;
        Ok(())
    }

    /// The probes that decide, once known (after [`Judge::learn`] when it learns).
    pub fn checks(&self) -> &[Check] {
        &self.checks
    }

    /// What judges a step, in words (the `Started` event's `judge`).
    pub fn describe(&self) -> String {
        let list = |cs: &[Check]| {
            cs.iter()
                .map(|c| format!("{} → {}: {}", c.source, c.target, expected_words(c)))
                .collect::<Vec<_>>()
                .join(", ")
        };
        match &self.learn {
            Some(s) if self.checks.is_empty() => {
                format!("{s} as it answers at the good end (no expectation for it)")
            }
            Some(_) => format!("--probe, as at the good end: {}", list(&self.checks)),
            None => {
                let n = self.expectations;
                let s = if n == 1 { "" } else { "s" };
                format!(
                    "the scenario's {n} expectation{s} for the PR side ({})",
                    list(&self.checks)
                )
            }
        }
    }

    /// The result of `source` to `target` in a round (a result without its target named is
    /// for the session's first target).
    fn result<'a>(
        &self,
        results: &'a [ProbeResult],
        source: &str,
        target: &Target,
    ) -> Option<&'a ProbeResult> {
        let first = self.targets.first();
        results
            .iter()
            .find(|r| r.source == source && r.scenario_target.as_ref().or(first) == Some(target))
    }

    /// One round: good when every check is met by its result; else bad, naming the first check
    /// that is not ("overlay-pr-worker → lb: expected ok, got timeout"); a result whose tries
    /// disagree (and no check missed) makes the round flaky, naming the first such.
    pub fn round(&self, results: &[ProbeResult]) -> Round {
        let mut flaky = None;
        for c in &self.checks {
            let r = self.result(results, &c.source, &c.target);
            let judged = r.map(|r| tries::judge(c.expected, c.min_rate, r));
            let say = |got: &str| {
                let (src, t, want) = (&c.source, &c.target, expected_words(c));
                format!("{src} → {t}: expected {want}, got {got}")
            };
            match (judged, r) {
                (Some(Judged::Met), _) => {}
                (Some(Judged::Flaky), Some(r)) => {
                    let s = tries::Summary::of(r);
                    flaky.get_or_insert_with(|| {
                        say(&format!("flaky ({}/{} tries answered)", s.passes, s.tries))
                    });
                }
                _ => {
                    let got = match r {
                        Some(r) if c.min_rate.is_some() => {
                            let s = tries::Summary::of(r);
                            format!("{}/{} tries", s.passes, s.tries)
                        }
                        Some(r) => word(r.outcome).to_string(),
                        None => "no result".to_string(),
                    };
                    return Round {
                        good: false,
                        why: Some(say(&got)),
                        flaky: false,
                    };
                }
            }
        }
        Round {
            good: flaky.is_none(),
            flaky: flaky.is_some(),
            why: flaky,
        }
    }
}

/// What a check expects, as the scenario writes it (`ok >= 0.99` for a rate).
fn expected_words(c: &Check) -> String {
    match c.min_rate {
        Some(r) => format!("ok >= {r}"),
        None => word(c.expected).to_string(),
    }
}

/// A step's rounds together: all good is good, all bad is bad (why: the first round's), and
/// rounds that disagree make the step flaky, skipped and not blamed.
pub fn rounds(rounds: &[Round]) -> Rounds {
    let n = rounds.len() as u32;
    let good = rounds.iter().filter(|r| r.good).count() as u32;
    let first_bad = rounds.iter().position(|r| !r.good);
    let bad_why = first_bad.and_then(|i| rounds[i].why.clone());
    let first_flaky = rounds.iter().position(|r| r.flaky);
    let (verdict, skip, why) = match first_bad {
        None if n > 0 => (StepVerdict::Good, None, None),
        Some(_) if first_flaky.is_some() => {
            let i = first_flaky.unwrap_or_default();
            let why = rounds[i].why.clone().unwrap_or_default();
            (
                StepVerdict::Skip,
                Some(SkipReason::Flaky),
                Some(format!("round {}: tries disagree: {why}", i + 1)),
            )
        }
        None => (
            StepVerdict::Skip,
            Some(SkipReason::Flaky),
            Some("no probe round ran".to_string()),
        ),
        Some(_) if good == 0 => (StepVerdict::Bad, None, bad_why),
        Some(i) => (
            StepVerdict::Skip,
            Some(SkipReason::Flaky),
            Some(format!(
                "{good} of {n} rounds good; round {}: {}",
                i + 1,
                bad_why.unwrap_or_default()
            )),
        ),
    };
    Rounds {
        verdict,
        skip,
        why,
        good_rounds: good,
        rounds: n,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::event::{Expectation, SideInfo};

    fn side(name: &str) -> SideInfo {
        SideInfo::named(name)
    }

    fn session(targets: &[&str], exp: Vec<Expectation>) -> SessionInfo {
        let targets: Vec<Target> = targets.iter().map(|t| t.parse().unwrap()).collect();
        SessionInfo {
            base: side("base"),
            pr: side("pr"),
            service: "default/lb".parse().unwrap(),
            probe_target: targets[0].clone(),
            probe_targets: targets,
            expectations: exp,
            banner: None,
            proxy_mode: None,
        }
    }

    fn exp(side: Side, source: &str, outcome: Outcome, target: Option<&str>) -> Expectation {
        Expectation {
            side,
            source: source.into(),
            outcome,
            target: target.map(|t| t.parse().unwrap()),
            min_rate: None,
        }
    }

    fn res(source: &str, target: &str, outcome: Outcome) -> ProbeResult {
        let mut r = ProbeResult::bare(source, "10.0.0.9:80", outcome);
        r.scenario_target = Some(target.parse().unwrap());
        r
    }

    fn good() -> Round {
        Round {
            good: true,
            why: None,
            flaky: false,
        }
    }

    fn bad(why: &str) -> Round {
        Round {
            good: false,
            why: Some(why.into()),
            flaky: false,
        }
    }

    /// A result of 3 tries, `answered` of them answered.
    fn tried(source: &str, answered: usize) -> ProbeResult {
        use crate::backend::event::Try;
        let mut r = res(source, "lb", Outcome::Ok);
        r.tries = (0..3)
            .map(|i| Try {
                outcome: if i < answered {
                    Outcome::Ok
                } else {
                    Outcome::Fail
                },
                http_status: None,
                connect_us: None,
                total_us: None,
                endpoint: None,
                detail: None,
            })
            .collect();
        r.outcome = tries::outcome_of(&r.tries).unwrap();
        r
    }

    /// A flaky result makes its round flaky and the step Skip(Flaky), never good nor bad; a
    /// missed check beside it makes the round bad; a rate expectation judges the same result.
    #[test]
    fn tries_that_disagree_skip_the_step_as_flaky_and_a_rate_judges() {
        let s = session(&["lb"], vec![exp(Side::Pr, "a", Outcome::Ok, None)]);
        let j = Judge::new(&s, None).unwrap();
        let r = j.round(&[tried("a", 2)]);
        assert!(r.flaky && !r.good, "{r:?}");
        assert_eq!(
            r.why.as_deref(),
            Some("a → lb: expected ok, got flaky (2/3 tries answered)")
        );
        let step = rounds(&[good(), r.clone()]);
        assert_eq!(
            (step.verdict, step.skip),
            (StepVerdict::Skip, Some(SkipReason::Flaky))
        );
        assert!(step.why.unwrap().contains("round 2: tries disagree"));
        let step = rounds(std::slice::from_ref(&r));
        assert_eq!(step.skip, Some(SkipReason::Flaky), "never Bad");
        // Another source missed beside it: bad.
        let s2 = session(
            &["lb"],
            vec![
                exp(Side::Pr, "a", Outcome::Ok, None),
                exp(Side::Pr, "b", Outcome::Ok, None),
            ],
        );
        let r = Judge::new(&s2, None)
            .unwrap()
            .round(&[tried("a", 2), tried("b", 0)]);
        assert!(!r.good && !r.flaky, "{r:?}");
        // ok >= 0.6: 2 of 3 is met; ok >= 0.9 is missed, saying the count.
        let rated = |rate| {
            let mut e = exp(Side::Pr, "a", Outcome::Ok, None);
            e.min_rate = Some(Rate(rate));
            Judge::new(&session(&["lb"], vec![e]), None).unwrap()
        };
        assert_eq!(rated(0.6).round(&[tried("a", 2)]), good());
        let r = rated(0.9).round(&[tried("a", 2)]);
        assert_eq!(
            r.why.as_deref(),
            Some("a → lb: expected ok >= 0.9, got 2/3 tries")
        );
        assert!(rated(0.9).describe().contains("a → lb: ok >= 0.9"));
    }

    /// Every PR-side expectation must be met; the base side's are not the PR's business; the
    /// first unmet one names the round's why.
    #[test]
    fn a_round_is_good_when_every_pr_expectation_is_met() {
        let s = session(
            &["lb"],
            vec![
                exp(Side::Base, "host-base-worker", Outcome::Fail, None),
                exp(Side::Pr, "overlay-pr-worker", Outcome::Ok, None),
                exp(Side::Pr, "host-pr-worker", Outcome::Ok, None),
            ],
        );
        let j = Judge::new(&s, None).unwrap();
        assert_eq!(j.checks().len(), 2);
        let ok = [
            res("overlay-pr-worker", "lb", Outcome::Ok),
            res("host-pr-worker", "lb", Outcome::Ok),
        ];
        assert_eq!(j.round(&ok), good());
        let broken = [
            res("overlay-pr-worker", "lb", Outcome::Timeout),
            res("host-pr-worker", "lb", Outcome::Fail),
        ];
        assert_eq!(
            j.round(&broken),
            bad("overlay-pr-worker → lb: expected ok, got timeout")
        );
        let missing = [res("overlay-pr-worker", "lb", Outcome::Ok)];
        assert_eq!(
            j.round(&missing),
            bad("host-pr-worker → lb: expected ok, got no result")
        );
    }

    /// An expected failure is met by a timeout (dropped packets), as `check` judges it.
    #[test]
    fn an_expected_failure_is_met_by_a_timeout() {
        let s = session(
            &["lb"],
            vec![exp(Side::Pr, "host-pr-worker", Outcome::Fail, None)],
        );
        let j = Judge::new(&s, None).unwrap();
        assert!(
            j.round(&[res("host-pr-worker", "lb", Outcome::Timeout)])
                .good
        );
        assert!(j.round(&[res("host-pr-worker", "lb", Outcome::Fail)]).good);
        assert_eq!(
            j.round(&[res("host-pr-worker", "lb", Outcome::Ok)]),
            bad("host-pr-worker → lb: expected fail, got ok")
        );
    }

    /// An expectation without a target judges every target but one another expectation for
    /// the same source names; a result for another target never stands in.
    #[test]
    fn expectations_apply_per_target() {
        let s = session(
            &["lb", "10.96.0.10:80"],
            vec![
                exp(Side::Pr, "host-pr-worker", Outcome::Ok, None),
                exp(
                    Side::Pr,
                    "host-pr-worker",
                    Outcome::Fail,
                    Some("10.96.0.10:80"),
                ),
            ],
        );
        let j = Judge::new(&s, None).unwrap();
        let want = [
            ("host-pr-worker", "lb", Outcome::Ok),
            ("host-pr-worker", "10.96.0.10:80", Outcome::Fail),
        ];
        let got: Vec<_> = j
            .checks()
            .iter()
            .map(|c| (c.source.as_str(), c.target.to_string(), c.expected))
            .collect();
        let want: Vec<_> = want
            .iter()
            .map(|(s, t, o)| (*s, t.to_string(), *o))
            .collect();
        assert_eq!(got, want);
        let r = [
            res("host-pr-worker", "lb", Outcome::Ok),
            res("host-pr-worker", "10.96.0.10:80", Outcome::Timeout),
        ];
        assert!(j.round(&r).good);
        let swapped = [
            res("host-pr-worker", "10.96.0.10:80", Outcome::Ok),
            res("host-pr-worker", "lb", Outcome::Timeout),
        ];
        assert_eq!(
            j.round(&swapped),
            bad("host-pr-worker → lb: expected ok, got timeout")
        );
    }

    /// A result that does not name its target is for the session's first target (recordings
    /// made before targets were named).
    #[test]
    fn an_unnamed_result_is_for_the_first_target() {
        let s = session(
            &["lb"],
            vec![exp(Side::Pr, "host-pr-worker", Outcome::Ok, None)],
        );
        let j = Judge::new(&s, None).unwrap();
        let r = ProbeResult::bare("host-pr-worker", "10.0.0.9:80", Outcome::Ok);
        assert!(j.round(&[r]).good);
    }

    /// `--probe` keeps only that source's expectations: another source's failure does not
    /// make the round bad.
    #[test]
    fn probe_judges_by_its_expectation_alone() {
        let s = session(
            &["lb"],
            vec![
                exp(Side::Pr, "overlay-pr-worker", Outcome::Ok, None),
                exp(Side::Pr, "host-pr-worker", Outcome::Ok, None),
            ],
        );
        let j = Judge::new(&s, Some("host-pr-worker")).unwrap();
        assert!(!j.learns());
        let r = [
            res("overlay-pr-worker", "lb", Outcome::Timeout),
            res("host-pr-worker", "lb", Outcome::Ok),
        ];
        assert!(j.round(&r).good);
        assert!(
            j.describe().contains("1 expectation for the PR side"),
            "{}",
            j.describe()
        );
        let r = [res("host-pr-worker", "lb", Outcome::Timeout)];
        assert!(!j.round(&r).good);
    }

    /// `--probe` for a source the scenario expects nothing of: the good end's outcome per target
    /// is the reference; a source with no result at the good end is said.
    #[test]
    fn probe_without_expectation_learns_from_the_good_end() {
        let s = session(
            &["lb", "10.96.0.10:80"],
            vec![exp(Side::Pr, "overlay-pr-worker", Outcome::Ok, None)],
        );
        let mut j = Judge::new(&s, Some("host-pr-worker")).unwrap();
        assert!(j.learns());
        assert!(j.describe().contains("as it answers at the good end"));
        let good_end = [
            res("host-pr-worker", "lb", Outcome::Ok),
            res("host-pr-worker", "10.96.0.10:80", Outcome::Timeout),
            res("overlay-pr-worker", "lb", Outcome::Timeout),
        ];
        j.learn(&good_end).unwrap();
        assert!(!j.learns());
        assert!(j.round(&good_end).good);
        let later = [
            res("host-pr-worker", "lb", Outcome::Ok),
            res("host-pr-worker", "10.96.0.10:80", Outcome::Ok),
        ];
        assert_eq!(
            j.round(&later),
            bad("host-pr-worker → 10.96.0.10:80: expected timeout, got ok")
        );
        let mut typo = Judge::new(&s, Some("host-pr-wroker")).unwrap();
        let e = typo.learn(&good_end).unwrap_err();
        assert!(e.starts_with("host-pr-wroker → lb: no result"), "{e}");
    }

    /// Nothing to judge by: the error says to give --probe.
    #[test]
    fn no_pr_expectation_and_no_probe_asks_for_probe() {
        let s = session(
            &["lb"],
            vec![exp(Side::Base, "host-base-worker", Outcome::Fail, None)],
        );
        let e = Judge::new(&s, None).unwrap_err();
        assert!(e.contains("give --probe SOURCE"), "{e}");
    }

    /// All rounds good: good; all bad: bad with the first round's why; disagreeing: flaky,
    /// skipped, the counts and the first bad round said.
    #[test]
    fn rounds_must_all_agree() {
        let g = rounds(&[good(), good(), good()]);
        assert_eq!(
            (g.verdict, g.skip, g.why, g.good_rounds, g.rounds),
            (StepVerdict::Good, None, None, 3, 3)
        );
        let b = rounds(&[bad("a → lb: expected ok, got timeout"), bad("second")]);
        assert_eq!(
            (b.verdict, b.skip, b.good_rounds, b.rounds),
            (StepVerdict::Bad, None, 0, 2)
        );
        assert_eq!(b.why.as_deref(), Some("a → lb: expected ok, got timeout"));
        let f = rounds(&[good(), bad("a → lb: expected ok, got timeout"), good()]);
        assert_eq!(
            (f.verdict, f.skip, f.good_rounds, f.rounds),
            (StepVerdict::Skip, Some(SkipReason::Flaky), 2, 3)
        );
        assert_eq!(
            f.why.as_deref(),
            Some("2 of 3 rounds good; round 2: a → lb: expected ok, got timeout")
        );
        let none = rounds(&[]);
        assert_eq!(none.verdict, StepVerdict::Skip);
    }
}
