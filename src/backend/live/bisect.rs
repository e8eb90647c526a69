//! The bisect job (`Job::Bisect`): the range and the path of each step from git; then the good
//! end, the bad end, and the commits the search picks, each put into the PR side's cluster
//! (kube-proxy swapped in, or the node image built and the cluster recreated), probed `repeat`
//! rounds and judged; the PR side's rules read at each. Results are cached per commit and
//! judge, and the log is written after every step, so an interrupted bisect can be resumed.
//! Only the PR side is bisected: each step runs in a Ctx whose scenario has the step's commit
//! as the PR side's ref; nothing global changes.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Result, anyhow};

use super::{Ctx, Shared};
use crate::backend::bisect::cache::{Cache, Log};
use crate::backend::bisect::judge::{self, Judge, Round};
use crate::backend::bisect::range::{self, Range};
use crate::backend::bisect::search::{Next, Search, expected_steps};
use crate::backend::bisect::{
    BisectEnd, BisectEvent, BisectRequest, CommitInfo, SkipReason, Step, StepPath, StepRole,
    StepVerdict,
};
use crate::backend::event::{Event, ProbeResult};
use crate::model::{Phase, PodPhase, Side};
use crate::scenario::Scenario;

/// A commit that could not be put into the cluster: skipped, not blamed (`git bisect skip`).
/// It reads as the error it wraps, so the phases and panes say what they said before.
#[derive(Debug)]
pub(super) struct Skipped {
    pub reason: SkipReason,
    pub error: anyhow::Error,
}

impl std::fmt::Display for Skipped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:#}", self.error)
    }
}

impl std::error::Error for Skipped {}

/// Mark an error as skipping the step it happens in, for `reason`.
pub(super) fn skipped(reason: SkipReason) -> impl FnOnce(anyhow::Error) -> anyhow::Error {
    move |error| anyhow::Error::new(Skipped { reason, error })
}

/// Why an error skips its step, when it does.
fn skip_reason(e: &anyhow::Error) -> Option<SkipReason> {
    e.chain()
        .find_map(|c| c.downcast_ref::<Skipped>())
        .map(|s| s.reason)
}

/// A bisect under way.
struct Run {
    req: BisectRequest,
    range: Range,
    path: StepPath,
    judge: Judge,
    /// The cache key of `judge` (see [`judge_key`]).
    key: String,
    cache: Cache,
    log: Log,
    search: Search,
    /// The swap path's cluster was checked (made at the good end when missing).
    cluster_ready: bool,
}

/// The first 12 characters of a SHA.
fn short(sha: &str) -> &str {
    &sha[..sha.len().min(12)]
}

/// Say a line in the PR side's Build pane.
fn say(ctx: &Ctx, line: impl Into<String>) {
    ctx.out(Side::Pr, Phase::Build, line);
}

fn emit(ctx: &Ctx, e: BisectEvent) {
    ctx.emit(Event::Bisect(e));
}

/// The bisect job: stopped (with `Done(Stopped)`) when something keeps it from judging,
/// else `Done(Found)` or `Done(NotFound)`. A git, Docker or cache error is the job's error.
pub(super) async fn bisect(ctx: &Ctx, req: BisectRequest) -> Result<()> {
    let Some(mut run) = start(ctx, req).await? else {
        return Ok(());
    };
    let end = match ends(ctx, &mut run).await? {
        Some(stopped) => stopped,
        None => inside(ctx, &mut run).await?,
    };
    finish(ctx, &mut run, end)
}

/// What a step does on `path`, in words.
fn path_words(path: StepPath) -> &'static str {
    match path {
        StepPath::Swap => "kube-proxy swapped into one PR cluster",
        StepPath::Rebuild => "a node image built and the PR cluster made anew",
    }
}

/// Stop with `why`: said, the log's end.
fn stopped(why: String) -> BisectEnd {
    BisectEnd::Stopped { why }
}

/// The judge, the range and the path; `Started` said and the log begun. `None` when nothing
/// can judge (said with `Done(Stopped)`).
async fn start(ctx: &Ctx, req: BisectRequest) -> Result<Option<Run>> {
    let judge = match Judge::new(&super::session(&ctx.sc), req.probe.as_deref()) {
        Ok(j) => j,
        Err(why) => {
            say(ctx, format!("bisect: {why}"));
            emit(ctx, BisectEvent::Done(stopped(why)));
            return Ok(None);
        }
    };
    let spec = &ctx.sc.pr;
    let source = ctx.sc.resolve(&spec.source);
    let remote = spec.remote.as_ref().map(|r| r.as_str());
    say(
        ctx,
        format!("bisect: {}..{} in {}", req.good, req.bad, source.display()),
    );
    let range = range::range(&source, &req.good, &req.bad, req.all_commits, remote).await?;
    let (path, why) =
        range::choose_path(&source, &range.good.sha, &range.bad.sha, req.path).await?;
    let commits = range.commits.len();
    let expected = expected_steps(commits);
    say(
        ctx,
        format!(
            "bisect: {commits} commits, at most {expected} steps; {} at each step ({why}); judged by {}",
            path_words(path),
            judge.describe()
        ),
    );
    emit(
        ctx,
        BisectEvent::Started {
            good: range.good.clone(),
            bad: range.bad.clone(),
            commits,
            path,
            why,
            judge: judge.describe(),
            expected_steps: expected,
        },
    );
    let key = judge_key(&ctx.sc, &judge, req.repeat, path);
    let cache = Cache::open(&Cache::default_dir())?;
    let log = Log {
        scenario: ctx.sc.path.clone(),
        request: req.clone(),
        judge: key.clone(),
        steps: Vec::new(),
        end: None,
    };
    cache.write_log(&log)?;
    let search = Search::new(range.good.clone(), range.commits.clone());
    Ok(Some(Run {
        req,
        range,
        path,
        judge,
        key,
        cache,
        log,
        search,
        cluster_ready: false,
    }))
}

/// An opaque key of what judges a step: the PR side's scenario but its ref, the probes and
/// what is expected of them, the rounds and the path. Another judge's results are never reused.
fn judge_key(sc: &Scenario, judge: &Judge, repeat: u32, path: StepPath) -> String {
    use std::hash::Hasher;
    let mut pr = sc.pr.clone();
    pr.git_ref = String::new();
    let what = serde_json::json!({
        "pr": pr,
        "cluster": sc.cluster,
        "load_balancer": sc.load_balancer,
        "workloads": sc.workloads,
        "probes": sc.probes,
        "service": sc.service.to_string(),
        "checks": format!("{:?}", judge.checks()),
        "repeat": repeat,
        "path": path,
    });
    let mut h = rustc_hash::FxHasher::default();
    h.write(what.to_string().as_bytes());
    format!("{:016x}", h.finish())
}

/// Both ends checked: `Some(Stopped)` when the good end is not good or the bad end is not bad.
async fn ends(ctx: &Ctx, run: &mut Run) -> Result<Option<BisectEnd>> {
    let (good, bad) = (run.range.good.clone(), run.range.bad.clone());
    let g = step(ctx, run, &good, StepRole::GoodEnd).await?;
    if let Some(why) = end_wrong(&run.req.good, &g, StepVerdict::Good) {
        return Ok(Some(stopped(why)));
    }
    let b = step(ctx, run, &bad, StepRole::BadEnd).await?;
    if let Some(why) = end_wrong(&run.req.bad, &b, StepVerdict::Bad) {
        return Ok(Some(stopped(why)));
    }
    Ok(None)
}

/// Why an end's step stops the bisect: it is not `want`, or could not be judged.
fn end_wrong(name: &str, s: &Step, want: StepVerdict) -> Option<String> {
    let which = if want == StepVerdict::Good {
        "good"
    } else {
        "bad"
    };
    let at = format!("the {which} ref {name} ({})", short(&s.commit.sha));
    let why = s.why.as_deref().unwrap_or("");
    match s.verdict {
        v if v == want => None,
        StepVerdict::Skip => Some(format!(
            "{at} cannot be judged ({}): {why}",
            skip_word(s.skip)
        )),
        StepVerdict::Good => Some(format!("{at} is good: nothing to bisect")),
        StepVerdict::Bad => Some(format!("{at} is bad: {why}")),
    }
}

fn role_words(r: StepRole) -> &'static str {
    match r {
        StepRole::GoodEnd => "the good end",
        StepRole::BadEnd => "the bad end",
        StepRole::Inside => "inside the range",
    }
}

fn skip_word(s: Option<SkipReason>) -> &'static str {
    match s {
        Some(SkipReason::Unbuildable) => "it does not build",
        Some(SkipReason::NotUp) => "its cluster did not come up",
        Some(SkipReason::Flaky) => "its probe rounds disagree",
        None => "skipped",
    }
}

/// The commits the search picks until it is done.
async fn inside(ctx: &Ctx, run: &mut Run) -> Result<BisectEnd> {
    loop {
        match run.search.next() {
            Next::Test(c) => {
                step(ctx, run, &c, StepRole::Inside).await?;
            }
            Next::Found {
                first_bad,
                last_good,
            } => {
                let rules_diff = rules_diff(run, &last_good, &first_bad)?;
                return Ok(BisectEnd::Found {
                    first_bad,
                    last_good,
                    rules_diff,
                });
            }
            Next::NotFound {
                candidates,
                last_good,
            } => {
                return Ok(BisectEnd::NotFound {
                    candidates,
                    last_good,
                });
            }
        }
    }
}

/// The end said (the Build pane, `Done`) and written to the log.
fn finish(ctx: &Ctx, run: &mut Run, end: BisectEnd) -> Result<()> {
    let line = match &end {
        BisectEnd::Found { first_bad, .. } => format!(
            "bisect: first bad commit {} {}",
            short(&first_bad.sha),
            first_bad.subject
        ),
        BisectEnd::NotFound { candidates, .. } => format!(
            "bisect: skipped commits hide the first bad one: one of {}",
            candidates
                .iter()
                .map(|c| short(&c.sha))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        BisectEnd::Stopped { why } => format!("bisect stopped: {why}"),
    };
    say(ctx, line);
    emit(ctx, BisectEvent::Done(end.clone()));
    run.log.end = Some(end);
    run.cache.write_log(&run.log)
}

/// One step on `commit`: from the cache when this judge judged it before, else put in, probed
/// and judged. Recorded in the search, said, cached and logged.
async fn step(ctx: &Ctx, run: &mut Run, commit: &CommitInfo, role: StepRole) -> Result<Step> {
    emit(
        ctx,
        BisectEvent::Testing {
            commit: commit.clone(),
            role,
        },
    );
    say(
        ctx,
        format!(
            "bisect: testing {} {} ({})",
            short(&commit.sha),
            commit.subject,
            role_words(role)
        ),
    );
    let cached = if run.judge.learns() {
        None
    } else {
        run.cache.get(&run.key, &commit.sha)?
    };
    let s = match cached {
        Some(mut s) => {
            s.cached = true;
            s.millis = 0;
            s.role = role;
            s
        }
        None => tokio::select! {
            s = fresh(ctx, run, commit, role) => s?,
            _ = ctx.cancel.cancelled() => return Err(anyhow!("cancelled")),
        },
    };
    // A step cut short by cancelling is neither cached nor logged.
    if ctx.cancel.is_cancelled() {
        return Err(anyhow!("cancelled"));
    }
    let verdict = match s.verdict {
        StepVerdict::Skip => format!("skipped ({})", skip_word(s.skip)),
        v => format!("{v:?}").to_lowercase(),
    };
    let why = s
        .why
        .as_deref()
        .map(|w| format!(": {w}"))
        .unwrap_or_default();
    let from = if s.cached { ", cached" } else { "" };
    say(
        ctx,
        format!(
            "bisect: {} {verdict}{why} ({}{from})",
            short(&commit.sha),
            crate::model::seconds(Duration::from_millis(s.millis))
        ),
    );
    run.search.record(&commit.sha, s.verdict);
    if !s.cached {
        run.cache.put(&run.key, &s)?;
    }
    emit(ctx, BisectEvent::Step(s.clone()));
    let (candidates, first, last) = run.search.remaining();
    let remaining = BisectEvent::Remaining {
        candidates,
        first: first.sha.clone(),
        last: last.sha.clone(),
    };
    emit(ctx, remaining);
    run.log.steps.push(s.clone());
    run.cache.write_log(&run.log)?;
    Ok(s)
}

/// A Ctx whose scenario has `sha` as the PR side's ref; everything else shared.
fn at_commit(ctx: &Ctx, sha: &str) -> Ctx {
    let mut sc = (*ctx.sc).clone();
    sc.pr.git_ref = sha.to_string();
    Ctx {
        shared: Shared {
            sc: Arc::new(sc),
            ..ctx.shared.clone()
        },
        ..ctx.clone()
    }
}

/// A step run now: put in, probed `repeat` rounds, judged, its rules read and cached.
async fn fresh(ctx: &Ctx, run: &mut Run, commit: &CommitInfo, role: StepRole) -> Result<Step> {
    let started = Instant::now();
    let at = at_commit(ctx, &commit.sha);
    let judged = match put_in(&at, run).await {
        Ok(()) => probe_rounds(&at, run).await,
        Err(e) => Err(e),
    };
    let rounds = match judged {
        Ok(r) => r,
        Err(e) => match skip_reason(&e) {
            Some(reason) => judge::Rounds {
                verdict: StepVerdict::Skip,
                skip: Some(reason),
                why: Some(format!("{e:#}")),
                good_rounds: 0,
                rounds: 0,
            },
            None => return Err(e),
        },
    };
    if rounds.rounds > 0 {
        let dumps = read_rules(&at).await?;
        run.cache.put_rules(&run.key, &commit.sha, &dumps)?;
    }
    Ok(Step {
        commit: commit.clone(),
        role,
        verdict: rounds.verdict,
        skip: rounds.skip,
        why: rounds.why,
        good_rounds: rounds.good_rounds,
        rounds: rounds.rounds,
        path: run.path,
        millis: started.elapsed().as_millis() as u64,
        cached: false,
    })
}

/// Put the step's commit (the PR side's ref in `at`) into the PR cluster, and wait for its
/// test pods. A build that fails skips the step as unbuildable; a cluster, deploy or rollout
/// that fails, or pods that do not run, as not up.
async fn put_in(at: &Ctx, run: &mut Run) -> Result<()> {
    match run.path {
        StepPath::Swap => {
            if !run.cluster_ready {
                let good = run.range.good.sha.clone();
                let r = swap_cluster(at, &good).await;
                // Its failure skips the good end's step only: at another step it is trouble.
                r.map_err(|e| match at.sc.pr.git_ref == good {
                    true => e,
                    false => anyhow!("the PR cluster, made at the good end: {e:#}"),
                })?;
                run.cluster_ready = true;
            }
            let held = crate::backend::held::Change::BisectStep;
            super::swap::swap(at, Side::Pr, held).await?;
        }
        StepPath::Rebuild => rebuild(at).await?,
    }
    wait_pods(at).await
}

/// The swap path's one cluster: built, created and deployed at the good end when there is
/// none; deployed again when there is (the workloads may be missing).
async fn swap_cluster(at: &Ctx, good: &str) -> Result<()> {
    let name = at.name(Side::Pr).to_string();
    let nodes = at.docker().await?.cluster_nodes(&name).await?;
    if nodes.iter().any(|n| n.running()) {
        say(
            at,
            format!("bisect: swapping kube-proxy into cluster {name} at each step"),
        );
        return super::deploy(at, Side::Pr)
            .await
            .map_err(skipped(SkipReason::NotUp));
    }
    say(
        at,
        format!(
            "bisect: no cluster {name}: building it at the good end {} first",
            short(good)
        ),
    );
    let g = at_commit(at, good);
    super::build::build(&g, Side::Pr).await?;
    super::create(&g, Side::Pr)
        .await
        .map_err(skipped(SkipReason::NotUp))?;
    super::deploy(&g, Side::Pr)
        .await
        .map_err(skipped(SkipReason::NotUp))
}

/// The rebuild path: the node image built at the step's commit (reused when one exists for
/// it), the cluster recreated and deployed when it runs another image or a swapped kube-proxy.
async fn rebuild(at: &Ctx) -> Result<()> {
    super::build::build(at, Side::Pr).await?;
    let Some(why) = recreate_why(at).await? else {
        say(
            at,
            format!(
                "bisect: cluster {} runs this image already",
                at.name(Side::Pr)
            ),
        );
        return Ok(());
    };
    say(at, format!("bisect: {why}: recreating it"));
    let gone = std::mem::take(&mut at.known.lock().unwrap().pods[Side::Pr]);
    for name in gone.into_keys() {
        at.emit(Event::PodRemoved {
            side: Side::Pr,
            name,
        });
    }
    super::create(at, Side::Pr)
        .await
        .map_err(skipped(SkipReason::NotUp))?;
    super::deploy(at, Side::Pr)
        .await
        .map_err(skipped(SkipReason::NotUp))
}

/// Why the PR cluster must be (re)created for the image just built; `None` when it runs it.
async fn recreate_why(at: &Ctx) -> Result<Option<String>> {
    let name = at.name(Side::Pr).to_string();
    let docker = at.docker().await?;
    let nodes = docker.cluster_nodes(&name).await?;
    if nodes.is_empty() {
        return Ok(Some(format!("no cluster {name}")));
    }
    let want = docker.image_id(&at.sc.pr.image).await?;
    if want.is_none() || nodes.iter().any(|n| Some(&n.image_id) != want.as_ref()) {
        return Ok(Some(format!("cluster {name} runs another image")));
    }
    let client = at.client(Side::Pr).await?;
    match crate::backend::kube::proxy_container(&client).await {
        Ok(c) if c.image.starts_with("kindred/kube-proxy:") => Ok(Some(format!(
            "cluster {name} runs a swapped-in kube-proxy ({})",
            c.image
        ))),
        _ => Ok(None),
    }
}

/// Until every test pod of the PR side runs (within `probes.ready_timeout`); else the step is
/// skipped, its cluster not up.
async fn wait_pods(at: &Ctx) -> Result<()> {
    let limit = Duration::from_secs_f64(at.sc.probes.ready_timeout);
    let end = Instant::now() + limit;
    loop {
        let (n, running) = {
            let k = at.known.lock().unwrap();
            let pods = &k.pods[Side::Pr];
            let running = pods.values().filter(|p| p.phase == PodPhase::Running);
            (pods.len(), running.count())
        };
        if n > 0 && running == n {
            return Ok(());
        }
        if Instant::now() >= end {
            let e = anyhow!(
                "{running} of {n} test pods of {} Running after {}s",
                at.name(Side::Pr),
                limit.as_secs()
            );
            return Err(skipped(SkipReason::NotUp)(e));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// `repeat` probe rounds of the PR side to every target, each judged. With a judge that
/// learns, the first round learns its reference (the good end's step).
async fn probe_rounds(at: &Ctx, run: &mut Run) -> Result<judge::Rounds> {
    let targets = at.sc.probes.targets.clone();
    let n = run.req.repeat.max(1);
    let mut rounds: Vec<Round> = Vec::new();
    for i in 1..=n {
        let results: Vec<ProbeResult> = super::probe_targets(at, Side::Pr, &targets)
            .await
            .map_err(skipped(SkipReason::NotUp))?;
        if run.judge.learns() {
            run.judge
                .learn(&results)
                .map_err(|why| anyhow!("--probe: {why}"))?;
            run.key = judge_key(&at.sc, &run.judge, run.req.repeat, run.path);
            run.log.judge = run.key.clone();
            say(at, format!("bisect: judged by {}", run.judge.describe()));
        }
        let r = run.judge.round(&results);
        let what = match &r.why {
            None => "good".to_string(),
            Some(w) => format!("bad: {w}"),
        };
        say(at, format!("bisect: round {i} of {n}: {what}"));
        rounds.push(r);
    }
    Ok(judge::rounds(&rounds))
}

/// The PR side's rules, node by node (sent to the Diff pane as well); a node that cannot be
/// read is said and left out.
async fn read_rules(at: &Ctx) -> Result<Vec<(String, String)>> {
    let docker = at.docker().await?;
    let mode = at.sc.cluster.proxy_mode;
    let name = at.name(Side::Pr).to_string();
    let mut dumps = Vec::new();
    for n in docker
        .cluster_nodes(&name)
        .await?
        .into_iter()
        .filter(|n| n.running())
    {
        match docker.read_rules(&n.name, mode).await {
            Ok(text) => {
                super::send_dump(at, Side::Pr, n.name.clone(), text.clone());
                dumps.push((n.name, text));
            }
            Err(e) => say(at, format!("bisect: rules of {} not read: {e:#}", n.name)),
        }
    }
    Ok(dumps)
}

/// The PR side's rules from the last good to the first bad commit: a unified diff of each
/// node's canonical rules (counters, handles, order and the node's own addresses set aside),
/// the nodes whose rules did not change left out.
fn rules_diff(run: &Run, last_good: &CommitInfo, first_bad: &CommitInfo) -> Result<String> {
    let before = run.cache.rules(&run.key, &last_good.sha)?;
    let after = run.cache.rules(&run.key, &first_bad.sha)?;
    Ok(diff_dumps(
        &before,
        &after,
        short(&last_good.sha),
        short(&first_bad.sha),
    ))
}

/// [`rules_diff`] of two sets of (node, dump).
fn diff_dumps(before: &[(String, String)], after: &[(String, String)], a: &str, b: &str) -> String {
    let canon = |dumps: &[(String, String)], node: &str| {
        dumps
            .iter()
            .find(|(n, _)| n == node)
            .map_or_else(String::new, |(_, t)| {
                crate::rules::group::canonical(t, &[])
                    .map_or_else(|_| t.clone(), |c| c.text.to_string())
            })
    };
    let nodes: std::collections::BTreeSet<&str> = before
        .iter()
        .chain(after)
        .map(|(n, _)| n.as_str())
        .collect();
    let mut out = String::new();
    for node in nodes {
        let (x, y) = (canon(before, node), canon(after, node));
        if x == y {
            continue;
        }
        let d = similar::TextDiff::from_lines(&x, &y);
        let (ha, hb) = (format!("{node} at {a}"), format!("{node} at {b}"));
        out.push_str(&d.unified_diff().header(&ha, &hb).to_string());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const BEFORE: &str = include_str!("../../../tests/fixtures/predict/builtin-base-worker.nft");
    const AFTER: &str = include_str!("../../../tests/fixtures/predict/builtin-pr-worker.nft");

    fn commit(n: u32) -> CommitInfo {
        CommitInfo {
            sha: format!("{n:040x}"),
            subject: format!("Merge pull request #{n} from dev/x"),
            pr: Some(n),
        }
    }

    fn step(verdict: StepVerdict, skip: Option<SkipReason>, why: Option<&str>) -> Step {
        Step {
            commit: commit(7),
            role: StepRole::GoodEnd,
            verdict,
            skip,
            why: why.map(str::to_string),
            good_rounds: 0,
            rounds: 1,
            path: StepPath::Swap,
            millis: 1,
            cached: false,
        }
    }

    /// The rules diff names each node whose canonical rules changed, with both commits, and
    /// leaves out a node whose rules only differ in what canonical sets aside (the comments
    /// and addresses of another cluster's dump here stand for what differs per read).
    #[test]
    fn the_rules_diff_is_per_node_and_canonical() {
        let before = [
            ("pr-worker".to_string(), BEFORE.to_string()),
            ("pr-worker2".to_string(), BEFORE.to_string()),
        ];
        let noise = format!("# read again\n{BEFORE}");
        let after = [
            ("pr-worker".to_string(), AFTER.to_string()),
            ("pr-worker2".to_string(), noise),
        ];
        let d = diff_dumps(&before, &after, "aaaa", "bbbb");
        assert!(
            d.starts_with("--- pr-worker at aaaa\n+++ pr-worker at bbbb\n"),
            "{d}"
        );
        assert!(!d.contains("pr-worker2"), "{d}");
        assert!(
            d.lines()
                .any(|l| l.starts_with('-') && !l.starts_with("---")),
            "{d}"
        );
        assert!(
            d.lines()
                .any(|l| l.starts_with('+') && !l.starts_with("+++")),
            "{d}"
        );
        assert!(!d.contains("# source:"), "comments are not rules: {d}");
        assert_eq!(diff_dumps(&before, &before, "a", "b"), "");
    }

    /// An end that is not what it was said to be stops the bisect, saying which and why.
    #[test]
    fn an_end_that_is_not_what_it_was_said_to_be_is_said() {
        let ok = step(StepVerdict::Good, None, None);
        assert_eq!(end_wrong("v1.34.0", &ok, StepVerdict::Good), None);
        let bad = step(
            StepVerdict::Bad,
            None,
            Some("a → lb: expected ok, got timeout"),
        );
        assert_eq!(
            end_wrong("v1.34.0", &bad, StepVerdict::Good).unwrap(),
            format!(
                "the good ref v1.34.0 ({}) is bad: a → lb: expected ok, got timeout",
                short(&commit(7).sha)
            )
        );
        assert!(
            end_wrong("HEAD", &ok, StepVerdict::Bad)
                .unwrap()
                .ends_with("is good: nothing to bisect")
        );
        assert_eq!(end_wrong("HEAD", &bad, StepVerdict::Bad), None);
        let skip = step(
            StepVerdict::Skip,
            Some(SkipReason::Unbuildable),
            Some("syntax error"),
        );
        let why = end_wrong("HEAD", &skip, StepVerdict::Bad).unwrap();
        assert!(
            why.starts_with("the bad ref HEAD (")
                && why.ends_with("cannot be judged (it does not build): syntax error"),
            "{why}"
        );
    }

    /// A marked error skips its step for its reason, through context added after; it reads as
    /// the error it wraps; an unmarked error is trouble.
    #[test]
    fn a_skipping_error_keeps_its_reason_and_its_words() {
        let e = skipped(SkipReason::Unbuildable)(
            anyhow!("exit status 1").context("compile kube-proxy"),
        );
        assert_eq!(format!("{e:#}"), "compile kube-proxy: exit status 1");
        assert_eq!(skip_reason(&e), Some(SkipReason::Unbuildable));
        let wrapped = e.context("swap");
        assert_eq!(skip_reason(&wrapped), Some(SkipReason::Unbuildable));
        assert_eq!(skip_reason(&anyhow!("docker is not running")), None);
    }

    /// The cache key changes with what judges (the checks, the rounds, the path), not with the
    /// PR side's ref, which each step sets.
    #[test]
    fn the_judge_key_follows_what_judges() {
        let sc = Scenario::builtin();
        let j = Judge::new(&super::super::session(&sc), None).unwrap();
        let k = judge_key(&sc, &j, 1, StepPath::Swap);
        let mut other_ref = sc.clone();
        other_ref.pr.git_ref = "0123456789abcdef".into();
        assert_eq!(judge_key(&other_ref, &j, 1, StepPath::Swap), k);
        assert_ne!(judge_key(&sc, &j, 3, StepPath::Swap), k);
        assert_ne!(judge_key(&sc, &j, 1, StepPath::Rebuild), k);
        let source = sc
            .expectations()
            .into_iter()
            .find(|e| e.side == Side::Pr)
            .unwrap()
            .source;
        let one = Judge::new(&super::super::session(&sc), Some(&source)).unwrap();
        assert_ne!(judge_key(&sc, &one, 1, StepPath::Swap), k);
    }

    /// The events a command sent to a backend that was never started: what `send` did at once
    /// and what the job it spawned sent until `Finished`.
    async fn run(sc: Scenario, cmd: crate::backend::Command) -> Vec<Event> {
        use crate::backend::Backend;
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let mut b = super::super::LiveBackend::new(sc, crate::backend::kind::Kind::default());
        b.tx = Some(tx);
        b.send(cmd);
        let mut ev = Vec::new();
        loop {
            let e = tokio::time::timeout(Duration::from_secs(10), rx.recv()).await;
            let e = e.expect("Finished").expect("open");
            let done = matches!(e, Event::Finished { .. });
            ev.push(e);
            if done {
                return ev;
            }
        }
    }

    fn request() -> crate::backend::Command {
        crate::backend::Command::Bisect(Box::new(BisectRequest {
            good: "v1.34.0".into(),
            bad: "HEAD".into(),
            probe: None,
            repeat: 1,
            path: crate::backend::bisect::PathChoice::Auto,
            all_commits: false,
        }))
    }

    /// A PR side that is a context is never bisected: refused at once, saying why.
    #[tokio::test]
    async fn a_context_pr_side_is_refused() {
        let mut sc = Scenario::builtin();
        sc.pr.context = Some("prod".into());
        let ev = run(sc, request()).await;
        let Some(Event::Finished {
            job,
            error: Some(why),
        }) = ev.last()
        else {
            panic!("{ev:#?}")
        };
        assert_eq!(*job, crate::model::Job::Bisect);
        assert!(
            why.contains("prod") && why.contains("never builds, swaps or recreates it"),
            "{why}"
        );
        assert!(!ev.iter().any(|e| matches!(e, Event::Bisect(_))), "{ev:#?}");
    }

    /// Nothing expected of the PR side and no --probe: the bisect stops before anything runs,
    /// saying to give --probe.
    #[tokio::test]
    async fn nothing_to_judge_by_stops_asking_for_probe() {
        let mut sc = Scenario::builtin();
        // The base side's expectations are not the PR side's.
        sc.expect.retain(|e| e.side == Side::Base);
        let ev = run(sc, request()).await;
        let done = ev.iter().find_map(|e| match e {
            Event::Bisect(BisectEvent::Done(BisectEnd::Stopped { why })) => Some(why.clone()),
            _ => None,
        });
        assert!(
            done.as_deref()
                .is_some_and(|w| w.contains("give --probe SOURCE")),
            "{ev:#?}"
        );
        assert!(
            matches!(ev.last(), Some(Event::Finished { error: None, .. })),
            "{ev:#?}"
        );
    }
}
