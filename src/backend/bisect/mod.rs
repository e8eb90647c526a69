//! `kindred bisect`: the commit between a good and a bad ref where the PR side's verdict flips.
//! The protocol's part of it lives here (what is asked, what each step reports); the search
//! itself is pure ([`search`]), the range and the path of each step come from git ([`range`]),
//! results and the log are kept on disk ([`cache`]), and the live backend runs the steps
//! (`live/bisect.rs`).

pub mod judge;

use serde::{Deserialize, Serialize};

pub mod cache;
pub mod range;
pub mod search;

/// What a bisect is asked to do (`kindred bisect` and the dashboard's prompt).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BisectRequest {
    /// A ref whose PR-side verdict is good (resolved in the PR side's source).
    pub good: String,
    /// A newer ref whose verdict is bad.
    pub bad: String,
    /// Judge by this one probe (a source pod of the PR side) instead of the scenario's
    /// expectations for the PR side.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probe: Option<String>,
    /// Probe rounds per step; all must agree, else the step is flaky and skipped.
    #[serde(default = "one")]
    pub repeat: u32,
    /// Swap kube-proxy or rebuild the node image at each step: chosen from the range's diff
    /// unless forced.
    #[serde(default)]
    pub path: PathChoice,
    /// Every commit of the range, not only the first-parent (merge) commits.
    #[serde(default)]
    pub all_commits: bool,
}

fn one() -> u32 {
    1
}

/// How each step puts a commit into the PR side's cluster, as asked.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PathChoice {
    /// Swap when the range touches only kube-proxy's code, else rebuild.
    #[default]
    Auto,
    /// `--swap`: a freshly compiled kube-proxy into the running cluster.
    Swap,
    /// `--rebuild`: a node image built and the cluster recreated.
    Rebuild,
}

/// How each step puts a commit into the PR side's cluster, as chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StepPath {
    Swap,
    Rebuild,
}

/// A commit of the range.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommitInfo {
    /// Full SHA-1.
    pub sha: String,
    /// The first line of its message.
    pub subject: String,
    /// The pull request it merged ("Merge pull request #132456 from ..."), when it says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pr: Option<u32>,
}

/// How a step judged a commit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StepVerdict {
    Good,
    Bad,
    /// Not judged (`git bisect skip`, exit code 125): see [`SkipReason`].
    Skip,
}

/// Why a step was skipped, not blamed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SkipReason {
    /// The commit does not build (node image or kube-proxy).
    Unbuildable,
    /// Its cluster did not come up (create, deploy, the Service not ready, the rollout).
    NotUp,
    /// Its probe rounds disagreed.
    Flaky,
}

/// Which part of the bisect a step is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StepRole {
    /// Checking that the good ref is good.
    GoodEnd,
    /// Checking that the bad ref is bad.
    BadEnd,
    /// A commit inside the range.
    Inside,
}

/// One step's result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Step {
    pub commit: CommitInfo,
    pub role: StepRole,
    pub verdict: StepVerdict,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skip: Option<SkipReason>,
    /// What failed, or what the probes said ("overlay-pr-worker: expected ok, got timeout").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub why: Option<String>,
    /// Rounds that judged good, of `rounds` run.
    pub good_rounds: u32,
    pub rounds: u32,
    pub path: StepPath,
    /// How long the step took (0 when cached).
    pub millis: u64,
    /// The result came from the cache of an earlier bisect.
    #[serde(default)]
    pub cached: bool,
}

/// How a bisect ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum BisectEnd {
    /// The first bad commit, the last good one before it, and the PR side's rules diff between
    /// them (unified, canonical form: counters, handles and order set aside).
    Found {
        first_bad: CommitInfo,
        last_good: CommitInfo,
        rules_diff: String,
    },
    /// Skipped commits hide which one is first bad: it is one of `candidates` (oldest first).
    NotFound {
        candidates: Vec<CommitInfo>,
        last_good: CommitInfo,
    },
    /// The good ref is not good, or the bad ref is not bad, or something else stopped it.
    Stopped { why: String },
}

/// What a bisect reports, as events (and in recordings).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "bisect", rename_all = "snake_case")]
pub enum BisectEvent {
    /// The range is known: `commits` candidates between good and bad (bad included), each
    /// step takes `path` (`why`: the first file outside kube-proxy's code, or "forced"), and
    /// `judge` says what judges a step.
    Started {
        good: CommitInfo,
        bad: CommitInfo,
        commits: usize,
        path: StepPath,
        why: String,
        judge: String,
        /// Steps expected at most when nothing is skipped (the ends' checks included).
        expected_steps: u32,
    },
    /// A step is starting on `commit`.
    Testing {
        commit: CommitInfo,
        role: StepRole,
    },
    Step(Step),
    /// What is left: the candidates still between the last good and the first bad known.
    Remaining {
        candidates: usize,
        first: String,
        last: String,
    },
    Done(BisectEnd),
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::event::Event;

    fn commit(n: u32) -> CommitInfo {
        CommitInfo {
            sha: format!("{n:040x}"),
            subject: format!("Merge pull request #{n} from someone/branch"),
            pr: Some(n),
        }
    }

    /// Every bisect event is a recording line like any event, and reads back the same.
    #[test]
    fn bisect_events_round_trip_through_json() {
        let step = Step {
            commit: commit(7),
            role: StepRole::Inside,
            verdict: StepVerdict::Skip,
            skip: Some(SkipReason::Flaky),
            why: Some("2 of 3 rounds good".into()),
            good_rounds: 2,
            rounds: 3,
            path: StepPath::Swap,
            millis: 4200,
            cached: false,
        };
        for e in [
            BisectEvent::Started {
                good: commit(1),
                bad: commit(2),
                commits: 21,
                path: StepPath::Rebuild,
                why: "staging/src/k8s.io/api/core/v1/types.go is not kube-proxy's".into(),
                judge: "the scenario's 4 expectations for the PR side".into(),
                expected_steps: 7,
            },
            BisectEvent::Testing {
                commit: commit(3),
                role: StepRole::GoodEnd,
            },
            BisectEvent::Step(step),
            BisectEvent::Remaining {
                candidates: 5,
                first: "abc".into(),
                last: "def".into(),
            },
            BisectEvent::Done(BisectEnd::Found {
                first_bad: commit(4),
                last_good: commit(3),
                rules_diff: "-a\n+b\n".into(),
            }),
            BisectEvent::Done(BisectEnd::NotFound {
                candidates: vec![commit(4), commit(5)],
                last_good: commit(3),
            }),
            BisectEvent::Done(BisectEnd::Stopped {
                why: "the good ref is bad".into(),
            }),
        ] {
            let ev = Event::Bisect(e);
            let line = serde_json::to_string(&ev).unwrap();
            let back: Event = serde_json::from_str(&line).unwrap();
            assert_eq!(back, ev, "{line}");
        }
        let req: BisectRequest =
            serde_json::from_str(r#"{"good":"v1.33.0","bad":"HEAD"}"#).unwrap();
        assert_eq!(
            (req.repeat, req.path, req.all_commits),
            (1, PathChoice::Auto, false)
        );
    }
}
