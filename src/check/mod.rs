//! `kindred check`: the dashboard's pipeline without a screen. A script over the same
//! [`Driver`] and [`Backend`] the dashboard uses (live or replay alike): build, create, deploy,
//! wait until ready, read the rules, probe; then the verdict is judged from the state, and
//! reported ([`report`]).

pub mod bisect;
pub mod bisect_report;
pub mod metrics_report;
pub mod report;
pub mod verdict;

use std::time::Duration;

use anyhow::{Result, anyhow, bail};

pub use verdict::{SCHEMA, Verdict, verdict};

use crate::app::{Driver, Msg, State};
use crate::backend::event::{LATER_SESSION, later_session_note};
use crate::backend::{Backend, Command, Event, held};
use crate::model::{Job, Phase, PhaseState, PodPhase, Side, Sides};

/// How long the script waits.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// For one job (a node-image build takes many minutes).
    pub job: Duration,
    /// For the pods and the LoadBalancer IP after deploying.
    pub ready: Duration,
}

impl Limits {
    /// For live clusters.
    pub const LIVE: Limits = Limits {
        job: Duration::from_secs(3 * 3600),
        ready: Duration::from_secs(300),
    };
    /// For a recording: what it holds arrives at once.
    pub const REPLAY: Limits = Limits {
        job: Duration::from_secs(60),
        ready: Duration::from_secs(2),
    };
}

/// What `check` does besides the script.
pub struct CheckOptions {
    pub limits: Limits,
    /// Delete the clusters kindred created when done (live runs without `--keep`).
    pub cleanup: bool,
    /// Also write the run's events to this file (the recording format), up to the verdict:
    /// `check --replay` judges, and predicts, from it as the run did.
    pub record: Option<std::path::PathBuf>,
    /// `--latency-factor`, else the scenario's `probes.latency_factor`: the verdict flags a PR
    /// side slower than this times the base.
    pub latency_factor: crate::model::Factor,
}

/// Run the pipeline on `backend` and judge it. Progress lines go to `progress`. With `cleanup`,
/// the clusters kindred created are deleted at the end, also when interrupted or failed.
pub async fn check(
    backend: Box<dyn Backend>,
    opts: CheckOptions,
    mut progress: impl FnMut(String),
) -> Result<Verdict> {
    let mut driver = Driver::start(backend, opts.record.as_deref())?;
    driver.state.latency_factor = opts.latency_factor;
    let ran = tokio::select! {
        r = script(&mut driver, opts.limits, &mut progress) => r,
        _ = tokio::signal::ctrl_c() => Err(anyhow!("interrupted")),
    };
    let ran = match ran {
        Ok(()) => grouped(&mut driver, opts.limits.job).await,
        e => e,
    };
    let judged = ran.and_then(|_| verdict(&driver.state).map_err(|e| anyhow!(e)));
    // The recording ends with what was judged: a replay of it judges the same (the deletion
    // of the clusters would leave it no pods).
    driver.finish_recording();
    if opts.cleanup {
        driver.send(Command::Cancel);
        driver.send(Command::DeleteClusters);
        if let Err(e) = finish(&mut driver, Job::Delete, opts.limits.job, &mut progress).await {
            tracing::error!("deleting clusters: {e:#}");
            progress(format!("deleting clusters: {e:#}"));
        }
    }
    driver.shutdown();
    judged
}

/// Apply messages until every node's rules are grouped (grouping runs off the UI loop), so the
/// verdict lists the groups of every dump read.
async fn grouped(driver: &mut Driver, limit: Duration) -> Result<()> {
    while driver.state.grouping > 0 {
        let msg = tokio::time::timeout(limit, driver.next())
            .await
            .map_err(|_| {
                anyhow!(
                    "grouping nodes by their rules: {} not done after {}s",
                    driver.state.grouping,
                    limit.as_secs()
                )
            })?;
        driver.apply(msg);
    }
    Ok(())
}

/// The steps, in order, each waiting for its job to finish.
async fn script(
    driver: &mut Driver,
    limits: Limits,
    progress: &mut impl FnMut(String),
) -> Result<()> {
    // What the backend finds at start (a replay: the whole recording) is not progress; but a
    // later session event that would drop expectations is said.
    let mut notes = |l: String| {
        if l.starts_with(LATER_SESSION) {
            progress(l)
        }
    };
    finish(driver, Job::Attach, limits.job, &mut notes).await?;
    if driver.state.session.is_none() {
        bail!("no session: the run or recording has no scenario");
    }
    for (cmd, job, phase) in [
        (
            Command::Build {
                sides: Sides::Both,
                recreate: false,
            },
            Job::Build,
            Phase::Build,
        ),
        (Command::CreateClusters, Job::Create, Phase::Create),
        (Command::Deploy, Job::Deploy, Phase::Deploy),
    ] {
        driver.send(cmd);
        finish(driver, job, limits.job, progress).await?;
        phase_ok(&driver.state, phase)?;
    }
    wait_ready(driver, limits.ready, progress).await?;
    driver.send(Command::RefreshRules);
    finish(driver, Job::Rules, limits.job, progress).await?;
    driver.send(Command::Probe {
        target: None,
        repeat: None,
    });
    finish(driver, Job::Probes, limits.job, progress).await?;
    // Once more: rules that changed since (kube-proxy churn) make the timeline the report lists.
    driver.send(Command::RefreshRules);
    finish(driver, Job::Rules, limits.job, progress).await
}

/// `kindred swap-proxy`: swap kube-proxy into the clusters of `sides` (rules and probes are
/// read again as part of it). Fails when the swap failed on a side.
pub async fn swap_proxy(
    backend: Box<dyn Backend>,
    sides: Sides,
    mut progress: impl FnMut(String),
) -> Result<()> {
    let mut driver = Driver::start(backend, None)?;
    let limit = Limits::LIVE.job;
    let ran = tokio::select! {
        r = async {
            finish(&mut driver, Job::Attach, limit, &mut |_| {}).await?;
            driver.send(Command::SwapProxy { sides });
            finish(&mut driver, Job::Swap, limit, &mut progress).await?;
            phase_ok(&driver.state, Phase::Swap)
        } => r,
        _ = tokio::signal::ctrl_c() => Err(anyhow!("interrupted")),
    };
    // Each connection held across the swap, whether it succeeded or not.
    for side in Side::BOTH {
        let s = driver.state.side(side);
        for l in s.held.iter().flat_map(|h| held_lines(s.name(), &h.conns)) {
            progress(l);
        }
    }
    driver.send(Command::Cancel);
    driver.shutdown();
    ran
}

/// Apply messages until `job` has finished; its error, or a silence longer than `limit`, is
/// trouble.
async fn finish(
    driver: &mut Driver,
    job: Job,
    limit: Duration,
    progress: &mut impl FnMut(String),
) -> Result<()> {
    loop {
        let msg = tokio::time::timeout(limit, driver.next())
            .await
            .map_err(|_| anyhow!("{job:?}: nothing finished after {}s", limit.as_secs()))?;
        let done = match &msg {
            Msg::Backend(Event::Finished { job: j, error }) if *j == job => Some(error.clone()),
            _ => None,
        };
        step(driver, msg, progress);
        match done {
            Some(None) => return Ok(()),
            Some(Some(e)) => bail!("{}: {e}", format!("{job:?}").to_lowercase()),
            None => {}
        }
    }
}

/// Apply one message, printing its progress line first.
fn step(driver: &mut Driver, msg: Msg, progress: &mut impl FnMut(String)) {
    if let Msg::Backend(ev) = &msg
        && let Some(l) = progress_line(&driver.state, ev)
    {
        progress(l);
    }
    driver.apply(msg);
}

/// A failed phase on either side is trouble.
fn phase_ok(st: &State, phase: Phase) -> Result<()> {
    for side in Side::BOTH {
        if let PhaseState::Failed { reason } = &st.side(side).phase(phase).state {
            bail!(
                "{} failed on {}: {reason}",
                phase.title(),
                st.side(side).name()
            );
        }
    }
    Ok(())
}

/// Every test pod Running and the Service's LoadBalancer IP known, on both sides.
pub fn ready(st: &State) -> bool {
    st.sides.all(|s| {
        !s.pods.is_empty()
            && s.pods.values().all(|p| p.phase == PodPhase::Running)
            && s.service.as_ref().is_some_and(|v| v.lb_ip.is_some())
    })
}

async fn wait_ready(
    driver: &mut Driver,
    limit: Duration,
    progress: &mut impl FnMut(String),
) -> Result<()> {
    let deadline = tokio::time::Instant::now() + limit;
    while !ready(&driver.state) {
        match tokio::time::timeout_at(deadline, driver.next()).await {
            Ok(msg) => step(driver, msg, progress),
            Err(_) => bail!(
                "deploy: pods not all Running, or no LoadBalancer IP, after {}s",
                limit.as_secs()
            ),
        }
    }
    Ok(())
}

/// A line per held connection: its pod, where it went, its fate and why.
pub fn held_lines(side: &str, conns: &[held::HeldConn]) -> Vec<String> {
    use crate::rules::render::visible;
    conns
        .iter()
        .map(|c| {
            let detail = c.detail.as_deref().map(visible).unwrap_or_default();
            format!(
                "[{side}]   {} -> {} {}: {} ({detail})",
                visible(&c.source),
                c.via.label(),
                c.addr,
                c.fate.label(),
            )
        })
        .collect()
}

/// A progress line for stderr (one per phase change; nothing for the chatty events).
pub fn progress_line(st: &State, ev: &Event) -> Option<String> {
    let name = |s: Side| st.side(s).name().to_string();
    Some(match ev {
        Event::Session(later) => {
            let n = st.session.as_ref()?.dropped_by(later).len();
            if n == 0 {
                return None;
            }
            later_session_note(n)
        }
        Event::Phase { side, phase, state } => {
            format!("[{}] {}: {state}", name(*side), phase.title())
        }
        // A swap's steps (its build output stays in the log and the dashboard).
        Event::Output {
            side,
            phase: Phase::Swap,
            line,
        } if line.starts_with(['▸', '✓', '✗']) => format!("[{}] {line}", name(*side)),
        Event::ProxySwapped { side, image, .. } => {
            format!("[{}] kube-proxy runs {image}", name(*side))
        }
        Event::Held {
            side,
            change,
            conns,
        } => format!("[{}] {}", name(*side), held::summary(*change, conns)),
        Event::Bisect(e) => return bisect::progress_line(e),
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
