//! `kindred bisect`: a script over the same [`Driver`] and [`Backend`] the dashboard uses
//! (live or replay alike): attach, send [`Command::Bisect`], apply messages until the bisect job
//! has finished; then its report ([`super::bisect_report`]) is made from the state.

use anyhow::{Result, anyhow, bail};

use super::{Limits, finish};
use crate::app::Driver;
use crate::app::bisect::{
    BisectView, commit_words, end_words, path_word, role_word, verdict_words,
};
use crate::backend::bisect::{BisectEnd, BisectEvent, BisectRequest};
use crate::backend::event::LATER_SESSION;
use crate::backend::{Backend, Command};
use crate::model::{Job, seconds};

/// What `bisect` does besides the script.
pub struct BisectOptions {
    pub limits: Limits,
    /// Delete the clusters kindred created when done (live runs without `--keep`).
    pub cleanup: bool,
    /// Also write the run's events to this file (the recording format), up to the bisect's
    /// end (not the clusters' deletion after it).
    pub record: Option<std::path::PathBuf>,
}

/// Bisect on `backend` as `req` asks; the view of it once its job has finished. Progress lines
/// go to `progress`. A job that fails (the backend refused it, git could not resolve a ref) is
/// an error; a bisect that stopped is a view whose end says why.
pub async fn bisect(
    backend: Box<dyn Backend>,
    req: BisectRequest,
    opts: BisectOptions,
    mut progress: impl FnMut(String),
) -> Result<BisectView> {
    let mut driver = Driver::start(backend, opts.record.as_deref())?;
    let ran = tokio::select! {
        r = script(&mut driver, req, opts.limits, &mut progress) => r,
        _ = tokio::signal::ctrl_c() => Err(anyhow!(
            "interrupted: the steps done are kept (`kindred bisect --resume` continues)"
        )),
    };
    driver.finish_recording();
    driver.send(Command::Cancel);
    if opts.cleanup {
        driver.send(Command::DeleteClusters);
        if let Err(e) = finish(&mut driver, Job::Delete, opts.limits.job, &mut progress).await {
            tracing::error!("deleting clusters: {e:#}");
            progress(format!("deleting clusters: {e:#}"));
        }
    }
    driver.shutdown();
    ran.map(|_| driver.state.bisect.clone())
}

async fn script(
    driver: &mut Driver,
    req: BisectRequest,
    limits: Limits,
    progress: &mut impl FnMut(String),
) -> Result<()> {
    // What the backend finds at start (a replay: the whole recording) is not progress.
    let mut notes = |l: String| {
        if l.starts_with(LATER_SESSION) {
            progress(l)
        }
    };
    finish(driver, Job::Attach, limits.job, &mut notes).await?;
    if driver.state.session.is_none() {
        bail!("no session: the run or recording has no scenario");
    }
    driver.state.bisect.asked(req.clone());
    driver.send(Command::Bisect(Box::new(req)));
    finish(driver, Job::Bisect, limits.job, progress).await?;
    if driver.state.bisect.end.is_none() {
        bail!("the bisect finished without a result (no first bad commit, nothing stopped it)");
    }
    Ok(())
}

/// The exit status an end makes: 0 found, 1 not found (skipped commits hide it), 2 stopped.
pub fn exit_code(end: &BisectEnd) -> i32 {
    match end {
        BisectEnd::Found { .. } => 0,
        BisectEnd::NotFound { .. } => 1,
        BisectEnd::Stopped { .. } => 2,
    }
}

/// A progress line for a bisect event (made visible by whoever prints it).
pub fn progress_line(ev: &BisectEvent) -> Option<String> {
    Some(match ev {
        BisectEvent::Started {
            good,
            bad,
            commits,
            path,
            why,
            expected_steps,
            ..
        } => format!(
            "bisect {}..{}: {commits} commits, at most {expected_steps} steps; path {} ({why})",
            commit_words(good),
            commit_words(bad),
            path_word(*path)
        ),
        BisectEvent::Testing { commit, role } => {
            format!(
                "bisect: testing {} ({})",
                commit_words(commit),
                role_word(*role)
            )
        }
        BisectEvent::Step(s) => {
            let took = seconds(std::time::Duration::from_millis(s.millis));
            let mut l = format!(
                "bisect: {} {} ({}/{} rounds good, {took}{})",
                commit_words(&s.commit),
                verdict_words(s),
                s.good_rounds,
                s.rounds,
                if s.cached { ", cached" } else { "" }
            );
            if let Some(w) = &s.why {
                l.push_str(&format!(": {w}"));
            }
            l
        }
        BisectEvent::Remaining {
            candidates,
            first,
            last,
        } => format!(
            "bisect: {candidates} candidate{} left ({}..{})",
            if *candidates == 1 { "" } else { "s" },
            crate::app::bisect::short(first),
            crate::app::bisect::short(last)
        ),
        BisectEvent::Done(end) => format!("bisect: {}", end_words(end)),
    })
}
