//! Plays a recording as if the clusters were there. Keys work: a rebuild replays the recorded
//! build, a retest the recorded probes, and so on; a command that is already playing restarts.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc::UnboundedSender;
use tokio::task::JoinHandle;

use super::Backend;
use super::event::{Command, Event};
use super::recording::{Record, Recording};
use crate::model::{Job, Pane, Phase, PhaseState, Side, Target};

/// Which command replays an event: the job that produced it. `None` for events only the
/// whole playback shows (the session, errors); a recorded `Finished` is never replayed (the
/// replay says itself when a part is over).
fn job_of(ev: &Event) -> Option<Job> {
    Some(match ev {
        Event::Phase { phase, .. } | Event::Output { phase, .. } => match phase {
            Phase::Build => Job::Build,
            Phase::Create => Job::Create,
            Phase::Deploy => Job::Deploy,
            Phase::Swap => Job::Swap,
        },
        Event::Built { .. } => Job::Build,
        Event::ProxySwapped { .. } => Job::Swap,
        Event::Held { change, .. } => match change {
            crate::backend::held::Change::Swap => Job::Swap,
            crate::backend::held::Change::Rebuild => Job::Build,
            crate::backend::held::Change::BisectStep => Job::Bisect,
        },
        Event::Estimate { phase, .. } => match phase {
            Phase::Swap => Job::Swap,
            _ => Job::Build,
        },
        Event::Node { .. } => Job::Create,
        Event::Pod { .. } | Event::PodRemoved { .. } | Event::Service { .. } => Job::Deploy,
        Event::ProbesStarted { .. } | Event::Probe { .. } | Event::ProbesDone { .. } => Job::Probes,
        Event::RuleDump { .. } | Event::NoRules { .. } | Event::ProxyMetrics { .. } => Job::Rules,
        Event::Watching { .. } => Job::Watch,
        Event::Bisect(_) => Job::Bisect,
        Event::Session(_)
        | Event::Error { .. }
        | Event::Finished { .. }
        | Event::End
        | Event::Unknown => {
            return None;
        }
    })
}

fn replayable(ev: &Event) -> bool {
    !matches!(ev, Event::Finished { .. } | Event::End | Event::Unknown)
}

pub struct ReplayBackend {
    rec: Arc<Recording>,
    /// 1.0 plays at recorded speed; larger is faster; infinity plays without waiting.
    speed: f64,
    tx: Option<UnboundedSender<Event>>,
    tasks: HashMap<Job, JoinHandle<()>>,
}

impl ReplayBackend {
    pub fn new(rec: Recording, speed: f64) -> ReplayBackend {
        ReplayBackend {
            rec: Arc::new(rec),
            speed: if speed > 0.0 { speed } else { 1.0 },
            tx: None,
            tasks: HashMap::new(),
        }
    }

    /// The recorded events of one job (`Attach`: the whole recording). A refresh of the rules
    /// plays each node's last recorded dump: the rules as they ended, not their history again
    /// (which would read as changes back and forth).
    fn records(&self, job: Job) -> Vec<Record> {
        let mut out: Vec<Record> = self
            .rec
            .records
            .iter()
            .filter(|r| replayable(&r.event))
            .filter(|r| job == Job::Attach || job_of(&r.event) == Some(job))
            .cloned()
            .collect();
        if job == Job::Rules {
            let key = |r: &Record| match &r.event {
                Event::RuleDump { side, node, .. } => Some((*side, node.clone())),
                _ => None,
            };
            let mut seen = std::collections::HashSet::new();
            out.reverse();
            out.retain(|r| key(r).is_none_or(|k| seen.insert(k)));
            out.reverse();
        }
        out
    }

    /// Play `records` as `job` (restarting it when it plays already), then say it finished.
    fn spawn(&mut self, job: Job, records: Vec<Record>) {
        let Some(tx) = self.tx.clone() else { return };
        if let Some(old) = self.tasks.remove(&job) {
            old.abort();
        }
        let speed = self.speed;
        // The whole playback of a recording cut short says so, and ends in that error.
        let truncated = (job == Job::Attach && !self.rec.complete).then(|| {
            "the recording ends before its session did (no end marker: cut short?); replayed what it holds"
                .to_string()
        });
        let task = async move {
            if play(records, speed, tx.clone()).await {
                if let Some(t) = &truncated {
                    let _ = tx.send(Event::Error {
                        side: None,
                        pane: Pane::Build,
                        message: t.clone(),
                    });
                }
                let _ = tx.send(Event::Finished {
                    job,
                    error: truncated,
                });
            }
        };
        self.tasks.insert(job, tokio::spawn(task));
    }

    fn recorded_targets(&self) -> Vec<String> {
        let mut t: Vec<String> = self
            .rec
            .records
            .iter()
            .filter_map(|r| match &r.event {
                Event::ProbesStarted { target, .. } => Some(target.clone()),
                _ => None,
            })
            .collect();
        t.dedup();
        t
    }

    fn probe(&mut self, target: Option<Target>) {
        let recorded = self.recorded_targets();
        let default = self
            .rec
            .records
            .iter()
            .find_map(|r| match &r.event {
                Event::Session(s) => Some(s.probe_target.clone()),
                _ => None,
            })
            .unwrap_or_default();
        match target {
            Some(t) if t != default && !recorded.contains(&t.to_string()) => {
                // Nothing recorded for this target: say so rather than invent results.
                let mut evs = Vec::new();
                for side in Side::BOTH {
                    evs.push(Record {
                        t: 0,
                        event: Event::ProbesStarted {
                            side,
                            target: t.to_string(),
                        },
                    });
                    evs.push(Record {
                        t: 0,
                        event: Event::Error {
                            side: Some(side),
                            pane: Pane::Probes,
                            message: format!("replay: no recorded probes for target {t}"),
                        },
                    });
                    evs.push(Record {
                        t: 0,
                        event: Event::ProbesDone { side },
                    });
                }
                self.spawn(Job::Probes, evs);
            }
            _ => {
                let r = self.records(Job::Probes);
                self.spawn(Job::Probes, r);
            }
        }
    }

    fn delete(&mut self) {
        // What deleting both clusters looks like: kind's output, phases reset, pods gone.
        let mut evs = Vec::new();
        for side in Side::BOTH {
            let name = self
                .rec
                .records
                .iter()
                .find_map(|r| match &r.event {
                    Event::Session(s) => Some(if side == Side::Base {
                        s.base.name.clone()
                    } else {
                        s.pr.name.clone()
                    }),
                    _ => None,
                })
                .unwrap_or_default();
            evs.push(Event::Output {
                side,
                phase: Phase::Create,
                line: format!("Deleting cluster \"{name}\" ..."),
            });
            for p in [Phase::Deploy, Phase::Create] {
                evs.push(Event::Phase {
                    side,
                    phase: p,
                    state: PhaseState::Pending,
                });
            }
            let mut pods: Vec<String> = self
                .rec
                .records
                .iter()
                .filter_map(|r| match &r.event {
                    Event::Pod { side: s, pod } if *s == side => Some(pod.name.clone()),
                    _ => None,
                })
                .collect();
            pods.dedup();
            for name in pods {
                evs.push(Event::PodRemoved { side, name });
            }
        }
        let recs = evs
            .into_iter()
            .map(|event| Record { t: 0, event })
            .collect();
        self.spawn(Job::Delete, recs);
    }

    fn watch(&mut self, on: bool) {
        if let Some(old) = self.tasks.remove(&Job::Watch) {
            old.abort();
        }
        if !on {
            return;
        }
        let Some(tx) = self.tx.clone() else { return };
        let mut recs = self.records(Job::Probes);
        recs.extend(self.records(Job::Rules));
        recs.extend(self.records(Job::Watch));
        recs.sort_by_key(|r| r.t);
        let speed = self.speed;
        let period = Duration::from_secs_f64((5.0 / speed).clamp(0.05, 5.0));
        self.tasks.insert(
            Job::Watch,
            tokio::spawn(async move {
                loop {
                    if !play(recs.clone(), speed, tx.clone()).await {
                        return;
                    }
                    tokio::time::sleep(period).await;
                }
            }),
        );
    }
}

/// Send `records` at their recorded pace; false when nobody listens any more.
async fn play(records: Vec<Record>, speed: f64, tx: UnboundedSender<Event>) -> bool {
    let start = tokio::time::Instant::now();
    let t0 = records.first().map_or(0, |r| r.t);
    for r in records {
        if speed.is_finite() {
            let due = Duration::from_secs_f64((r.t - t0) as f64 / 1000.0 / speed);
            tokio::time::sleep_until(start + due).await;
        }
        if tx.send(r.event).is_err() {
            return false;
        }
    }
    true
}

impl Backend for ReplayBackend {
    fn start(&mut self, events: UnboundedSender<Event>) {
        self.tx = Some(events);
        let all = self.records(Job::Attach);
        self.spawn(Job::Attach, all);
    }

    fn send(&mut self, cmd: Command) {
        tracing::info!(?cmd, "replay command");
        match cmd {
            // The recording's build and swap, whichever sides they were for.
            Command::Build { .. } => {
                let r = self.records(Job::Build);
                self.spawn(Job::Build, r)
            }
            Command::SwapProxy { .. } => {
                let r = self.records(Job::Swap);
                if r.is_empty()
                    && let Some(tx) = &self.tx
                {
                    let _ = tx.send(Event::Error {
                        side: None,
                        pane: Pane::Build,
                        message: "this recording holds no kube-proxy swap: nothing to replay"
                            .into(),
                    });
                }
                self.spawn(Job::Swap, r)
            }
            Command::CreateClusters => {
                let r = self.records(Job::Create);
                self.spawn(Job::Create, r)
            }
            Command::Deploy => {
                let r = self.records(Job::Deploy);
                self.spawn(Job::Deploy, r)
            }
            Command::Probe { target, .. } => self.probe(target),
            Command::RefreshRules => {
                let r = self.records(Job::Rules);
                self.spawn(Job::Rules, r)
            }
            Command::SetWatch(on) => self.watch(on),
            // The recording's bisect, whatever range is asked.
            Command::Bisect(_) => {
                let r = self.records(Job::Bisect);
                self.spawn(Job::Bisect, r)
            }
            Command::DeleteClusters => self.delete(),
            Command::Cancel => {
                for (_, t) in self.tasks.drain() {
                    t.abort();
                }
            }
        }
    }

    fn shutdown(&mut self) {
        for (_, t) in self.tasks.drain() {
            t.abort();
        }
        self.tx = None;
    }
}

impl Drop for ReplayBackend {
    fn drop(&mut self) {
        self.shutdown();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::recording::parse;

    fn rec() -> Recording {
        parse(
            concat!(
                "{\"format\":\"kindred-recording\",\"version\":1}\n",
                "{\"t\":0,\"event\":{\"type\":\"probes_started\",\"side\":\"base\",\"target\":\"lb\"}}\n",
                "{\"t\":10,\"event\":{\"type\":\"probe\",\"side\":\"base\",\"result\":{\"source\":\"a\",\"target\":\"lb\",\"outcome\":\"ok\"}}}\n",
                "{\"t\":20,\"event\":{\"type\":\"probes_done\",\"side\":\"base\"}}\n",
                "{\"t\":20,\"event\":{\"type\":\"end\"}}\n",
            ),
            "t",
        )
        .unwrap()
    }

    #[tokio::test]
    async fn retest_while_running_restarts_instead_of_queueing() {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let mut b = ReplayBackend::new(rec(), 0.001); // 10 ms recorded = 10 s: still running
        b.start(tx);
        for _ in 0..10 {
            b.send(Command::Probe {
                target: None,
                repeat: None,
            });
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        let mut started = 0;
        while let Ok(ev) = rx.try_recv() {
            if matches!(ev, Event::ProbesStarted { .. }) {
                started += 1;
            }
        }
        // One from the initial playback and one from the last retest: the nine before it were
        // replaced before they started; nothing queued behind.
        assert_eq!(started, 2);
        assert_eq!(b.tasks.len(), 2, "everything + one probes task");
        b.shutdown();
    }

    #[tokio::test]
    async fn unrecorded_target_says_so() {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let mut b = ReplayBackend::new(rec(), f64::INFINITY);
        b.start(tx);
        b.send(Command::Probe {
            target: Some(Target::Addr("10.0.0.1:80".into())),
            repeat: None,
        });
        let mut saw = false;
        for _ in 0..20 {
            match tokio::time::timeout(Duration::from_secs(1), rx.recv()).await {
                Ok(Some(Event::Error { message, .. })) => {
                    assert!(message.contains("10.0.0.1:80"));
                    saw = true;
                    break;
                }
                Ok(Some(_)) => {}
                _ => break,
            }
        }
        assert!(saw);
    }

    #[tokio::test]
    async fn a_swap_replays_what_was_recorded_or_says_there_is_none() {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let mut b = ReplayBackend::new(rec(), f64::INFINITY);
        b.start(tx);
        b.send(Command::SwapProxy {
            sides: crate::model::Sides::Pr,
        });
        let mut said = None;
        loop {
            match tokio::time::timeout(Duration::from_secs(5), rx.recv()).await {
                Ok(Some(Event::Error { message, .. })) => said = Some(message),
                Ok(Some(Event::Finished { job: Job::Swap, .. })) => break,
                Ok(Some(_)) => {}
                other => panic!("no end of the swap: {other:?}"),
            }
        }
        assert!(said.is_some_and(|m| m.contains("no kube-proxy swap")));
        // A recorded swap is replayed.
        let text = concat!(
            "{\"format\":\"kindred-recording\",\"version\":1}\n",
            "{\"t\":0,\"event\":{\"type\":\"phase\",\"side\":\"pr\",\"phase\":\"swap\",\"state\":\"done\"}}\n",
            "{\"t\":0,\"event\":{\"type\":\"proxy_swapped\",\"side\":\"pr\",\"image\":\"kindred/kube-proxy:x\",\"commit\":\"abc\"}}\n",
            "{\"t\":1,\"event\":{\"type\":\"end\"}}\n",
        );
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let mut b = ReplayBackend::new(parse(text, "t").unwrap(), f64::INFINITY);
        b.start(tx);
        b.send(Command::SwapProxy {
            sides: crate::model::Sides::Pr,
        });
        let mut swapped = 0;
        loop {
            match tokio::time::timeout(Duration::from_secs(5), rx.recv()).await {
                Ok(Some(Event::ProxySwapped { image, .. })) => {
                    assert_eq!(image, "kindred/kube-proxy:x");
                    swapped += 1;
                }
                Ok(Some(Event::Finished { job: Job::Swap, .. })) => break,
                Ok(Some(_)) => {}
                other => panic!("no end of the swap: {other:?}"),
            }
        }
        // Once in the whole playback, once for the key.
        assert_eq!(swapped, 2);
    }
}
