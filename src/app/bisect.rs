//! A bisect as the dashboard and `kindred bisect` know it: what was asked, the range, each
//! step, the one being tested, what is left, and how it ended; fed by [`BisectEvent`]s.
//! Also the `GOOD..BAD` the prompt (and the command line) accepts.

use std::time::Duration;

use crate::backend::bisect::{
    BisectEnd, BisectEvent, BisectRequest, CommitInfo, Step, StepPath, StepRole,
};
use crate::rules::render::visible;

/// The range, as the backend resolved it (`Started`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Started {
    pub good: CommitInfo,
    pub bad: CommitInfo,
    pub commits: usize,
    pub path: StepPath,
    pub why: String,
    pub judge: String,
    pub expected_steps: u32,
}

/// The commit under test: since when (app clock).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Testing {
    pub commit: CommitInfo,
    pub role: StepRole,
    pub since: Duration,
}

/// What is left between the last good and the first bad known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Remaining {
    pub candidates: usize,
    pub first: String,
    pub last: String,
}

/// The bisect of this session (the last one asked for, or the one a recording holds).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BisectView {
    /// What the prompt (or the command line) asked, when known.
    pub request: Option<BisectRequest>,
    pub started: Option<Started>,
    pub steps: Vec<Step>,
    pub testing: Option<Testing>,
    pub remaining: Option<Remaining>,
    pub end: Option<BisectEnd>,
    /// The job ended without an end (the backend refused it, or it failed): why.
    pub error: Option<String>,
    /// Asked and not finished yet.
    pub running: bool,
}

impl BisectView {
    /// Anything to show: asked, started, or refused.
    pub fn shown(&self) -> bool {
        self.running || self.started.is_some() || self.error.is_some()
    }

    /// A new bisect was asked: what an earlier one showed goes.
    pub fn asked(&mut self, req: BisectRequest) {
        *self = BisectView {
            request: Some(req),
            running: true,
            ..BisectView::default()
        };
    }

    /// Apply one event (`now`: the app clock); the activity line it makes, if any.
    pub fn apply(&mut self, ev: BisectEvent, now: Duration) -> Option<String> {
        match ev {
            BisectEvent::Started {
                good,
                bad,
                commits,
                path,
                why,
                judge,
                expected_steps,
            } => {
                // A bisect starts afresh (a replay plays its recording's bisect again).
                let request = self.request.take();
                *self = BisectView {
                    request,
                    running: true,
                    ..BisectView::default()
                };
                let line = format!(
                    "bisect: {commits} commits, {} path, at most {expected_steps} steps",
                    path_word(path)
                );
                self.started = Some(Started {
                    good,
                    bad,
                    commits,
                    path,
                    why,
                    judge,
                    expected_steps,
                });
                Some(line)
            }
            BisectEvent::Testing { commit, role } => {
                let line = format!("bisect: testing {}", commit_words(&commit));
                self.testing = Some(Testing {
                    commit,
                    role,
                    since: now,
                });
                Some(line)
            }
            BisectEvent::Step(step) => {
                self.testing = None;
                let line = format!(
                    "bisect: {} {}",
                    commit_words(&step.commit),
                    verdict_words(&step)
                );
                self.steps.push(step);
                Some(line)
            }
            BisectEvent::Remaining {
                candidates,
                first,
                last,
            } => {
                self.remaining = Some(Remaining {
                    candidates,
                    first,
                    last,
                });
                None
            }
            BisectEvent::Done(end) => {
                // Over: a recording's bisect has no Finished to say so.
                self.testing = None;
                self.running = false;
                let line = format!("bisect: {}", end_words(&end));
                self.end = Some(end);
                Some(line)
            }
        }
    }

    /// The bisect job finished (`error`: why it did not run or stopped).
    pub fn finished(&mut self, error: Option<String>) {
        self.running = false;
        self.testing = None;
        if self.end.is_none() {
            self.error =
                Some(error.unwrap_or_else(|| "the bisect ended without a result".to_string()));
        }
    }
}

/// "swap" or "rebuild".
pub fn path_word(p: StepPath) -> &'static str {
    match p {
        StepPath::Swap => "swap",
        StepPath::Rebuild => "rebuild",
    }
}

/// "good end", "bad end", "inside".
pub fn role_word(r: StepRole) -> &'static str {
    match r {
        StepRole::GoodEnd => "good end",
        StepRole::BadEnd => "bad end",
        StepRole::Inside => "inside",
    }
}

/// The first 12 characters of a SHA.
pub fn short(sha: &str) -> &str {
    &sha[..sha.len().min(12)]
}

/// "0123456789ab (#132456)", or the short SHA alone; escaped.
pub fn commit_words(c: &CommitInfo) -> String {
    let sha = visible(short(&c.sha)).into_owned();
    match c.pr {
        Some(n) => format!("{sha} (#{n})"),
        None => sha,
    }
}

/// "good", "bad", "skip (unbuildable)".
pub fn verdict_words(s: &Step) -> String {
    use crate::backend::bisect::{SkipReason, StepVerdict};
    match (s.verdict, s.skip) {
        (StepVerdict::Good, _) => "good".into(),
        (StepVerdict::Bad, _) => "bad".into(),
        (StepVerdict::Skip, None) => "skip".into(),
        (StepVerdict::Skip, Some(r)) => format!(
            "skip ({})",
            match r {
                SkipReason::Unbuildable => "unbuildable",
                SkipReason::NotUp => "not up",
                SkipReason::Flaky => "flaky",
            }
        ),
    }
}

/// How it ended, in a line: "first bad 0123456789ab (#132456)", ...; escaped.
pub fn end_words(e: &BisectEnd) -> String {
    match e {
        BisectEnd::Found { first_bad, .. } => format!("first bad {}", commit_words(first_bad)),
        BisectEnd::NotFound { candidates, .. } => format!(
            "not found: the first bad is one of {} skipped commit{}",
            candidates.len(),
            if candidates.len() == 1 { "" } else { "s" }
        ),
        BisectEnd::Stopped { why } => format!("stopped: {}", visible(why)),
    }
}

/// A ref as `--good`/`--bad` and the prompt take it: a tag, branch, SHA or pr/N; never one
/// that git would read as an option, nor one with spaces or control characters.
pub fn check_ref(what: &str, r: &str) -> Result<(), String> {
    let shown = visible(r);
    if r.is_empty() {
        return Err(format!("{what}: missing (a tag, branch, SHA or pr/N)"));
    }
    if r.starts_with('-') {
        return Err(format!("{what} '{shown}': not a git ref (starts with '-')"));
    }
    if r.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!("{what} '{shown}': a ref has no spaces"));
    }
    if r.contains("..") {
        return Err(format!("{what} '{shown}': one ref, not a range"));
    }
    if let Some(n) = r.strip_prefix("pr/")
        && (n.is_empty() || !n.bytes().all(|c| c.is_ascii_digit()))
    {
        return Err(format!("{what} '{shown}': expected pr/NUMBER"));
    }
    Ok(())
}

/// The prompt's `GOOD..BAD`: the two refs, or what is wrong with it.
pub fn parse_range(text: &str) -> Result<(String, String), String> {
    let t = text.trim();
    let Some((good, bad)) = t.split_once("..") else {
        return Err(format!(
            "'{}': expected GOOD..BAD (two refs, e.g. v1.33.0..pr/132456)",
            visible(t)
        ));
    };
    if bad.starts_with('.') {
        return Err(format!(
            "'{}': GOOD..BAD takes two dots, not three",
            visible(t)
        ));
    }
    check_ref("GOOD", good)?;
    check_ref("BAD", bad)?;
    if good == bad {
        return Err(format!("GOOD and BAD are both '{}'", visible(good)));
    }
    Ok((good.to_string(), bad.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::bisect::{SkipReason, StepVerdict};

    fn commit(n: u32) -> CommitInfo {
        CommitInfo {
            sha: format!("{n:040x}"),
            subject: format!("Merge pull request #{n} from dev/branch"),
            pr: Some(n),
        }
    }

    #[test]
    fn ranges_are_two_refs_and_nothing_git_would_misread() {
        assert_eq!(
            parse_range(" v1.33.0..pr/132456 "),
            Ok(("v1.33.0".into(), "pr/132456".into()))
        );
        assert_eq!(
            parse_range("abc123..HEAD~2"),
            Ok(("abc123".into(), "HEAD~2".into()))
        );
        for (bad, says) in [
            ("v1.33.0", "expected GOOD..BAD"),
            ("v1.33.0...HEAD", "two dots, not three"),
            ("..HEAD", "GOOD: missing"),
            ("v1..", "BAD: missing"),
            ("--upload-pack=x..HEAD", "starts with '-'"),
            ("a b..HEAD", "no spaces"),
            ("v1..a..b", "one ref, not a range"),
            ("v1..pr/12x", "expected pr/NUMBER"),
            ("HEAD..HEAD", "both 'HEAD'"),
            ("a\x1b[2J..b", "\\x1b"),
        ] {
            let e = parse_range(bad).unwrap_err();
            assert!(e.contains(says), "{bad}: {e}");
            assert!(!e.contains('\x1b'), "{e}");
        }
    }

    #[test]
    fn events_make_the_view_and_a_new_start_forgets_the_last() {
        let mut v = BisectView::default();
        let started = BisectEvent::Started {
            good: commit(1),
            bad: commit(9),
            commits: 8,
            path: StepPath::Swap,
            why: "only kube-proxy's code".into(),
            judge: "the scenario's expectations".into(),
            expected_steps: 5,
        };
        let line = v.apply(started.clone(), Duration::ZERO).unwrap();
        assert_eq!(line, "bisect: 8 commits, swap path, at most 5 steps");
        assert!(v.running && v.shown());
        v.apply(
            BisectEvent::Testing {
                commit: commit(5),
                role: StepRole::Inside,
            },
            Duration::from_secs(3),
        );
        assert_eq!(v.testing.as_ref().unwrap().since, Duration::from_secs(3));
        let line = v
            .apply(
                BisectEvent::Step(Step {
                    commit: commit(5),
                    role: StepRole::Inside,
                    verdict: StepVerdict::Skip,
                    skip: Some(SkipReason::Flaky),
                    why: None,
                    good_rounds: 1,
                    rounds: 2,
                    path: StepPath::Swap,
                    millis: 10,
                    cached: false,
                }),
                Duration::from_secs(4),
            )
            .unwrap();
        assert_eq!(
            line,
            format!("bisect: {} (#5) skip (flaky)", &commit(5).sha[..12])
        );
        assert!(v.testing.is_none() && v.steps.len() == 1);
        v.apply(
            BisectEvent::Done(BisectEnd::Stopped { why: "x".into() }),
            Duration::ZERO,
        );
        assert!(!v.running, "over at its end");
        v.finished(None);
        assert!(!v.running && v.error.is_none());
        // The same bisect again (a replay): the steps start over.
        v.apply(started, Duration::ZERO);
        assert!(v.steps.is_empty() && v.end.is_none() && v.running);
        // A job that ends without an end says why.
        v.finished(Some("bisect is not available yet".into()));
        assert_eq!(v.error.as_deref(), Some("bisect is not available yet"));
    }
}
