//! The one driver of effects, shared by every front end: it owns the state and the backend,
//! records the backend's events, feeds messages to [`update`], sends commands, and runs diff
//! computations off the loop. The terminal front end adds only the terminal; `check` drives
//! the same pipeline with a script.

use std::path::Path;

use anyhow::Result;
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel};

use super::diffs::compute;
use super::predict;
use super::state::State;
use super::update::{Effect, Msg, update};
use crate::backend::recording::Recorder;
use crate::backend::{Backend, Command, Event};

/// What the front end must do after a message: redraw, and the effects only it can run.
#[derive(Debug, Default, PartialEq)]
pub struct Applied {
    pub redraw: bool,
    /// `SetMouseCapture` and `Quit`.
    pub front: Vec<Effect>,
}

pub struct Driver {
    pub state: State,
    backend: Box<dyn Backend>,
    events: UnboundedReceiver<Event>,
    diff_tx: UnboundedSender<Msg>,
    diff_rx: UnboundedReceiver<Msg>,
    recorder: Option<Recorder>,
}

impl Driver {
    /// Start `backend` (inside a Tokio runtime); its events are recorded to `record` when set.
    pub fn start(mut backend: Box<dyn Backend>, record: Option<&Path>) -> Result<Driver> {
        let recorder = record.map(Recorder::create).transpose()?;
        let (tx, events) = unbounded_channel();
        let (diff_tx, diff_rx) = unbounded_channel();
        backend.start(tx);
        Ok(Driver {
            state: State::new(),
            backend,
            events,
            diff_tx,
            diff_rx,
            recorder,
        })
    }

    /// The next message from the backend (recorded) or from a finished diff computation.
    /// Cancel-safe; pends forever once the backend has stopped and no diff is running.
    pub async fn next(&mut self) -> Msg {
        tokio::select! {
            Some(ev) = self.events.recv() => {
                self.record(&ev);
                Msg::Backend(ev)
            }
            Some(m) = self.diff_rx.recv() => m,
            else => std::future::pending().await,
        }
    }

    fn record(&mut self, ev: &Event) {
        if let Some(r) = self.recorder.as_mut()
            && let Err(e) = r.write(ev)
        {
            tracing::error!("recording: {e:#}");
            self.recorder = None;
        }
    }

    /// Update the state with `msg` and run what it asks for.
    pub fn apply(&mut self, msg: Msg) -> Applied {
        let r = update(&mut self.state, msg);
        let mut out = Applied {
            redraw: r.redraw,
            front: Vec::new(),
        };
        for e in r.effects {
            match e {
                Effect::Send(c) => self.backend.send(c),
                Effect::ComputeDiff(req) => {
                    let tx = self.diff_tx.clone();
                    tokio::task::spawn_blocking(move || {
                        let result = compute(&req);
                        let _ = tx.send(Msg::DiffReady {
                            key: req.key,
                            result,
                        });
                    });
                }
                Effect::Predict(req) => {
                    let tx = self.diff_tx.clone();
                    tokio::task::spawn_blocking(move || {
                        let result = predict::compute(&req);
                        let _ = tx.send(Msg::Predicted {
                            side: req.side,
                            id: req.id,
                            result,
                        });
                    });
                }
                Effect::Group(req) => {
                    let tx = self.diff_tx.clone();
                    tokio::task::spawn_blocking(move || {
                        let canon = req.canonical();
                        let _ = tx.send(Msg::Grouped { req, canon });
                    });
                }
                e @ (Effect::SetMouseCapture(_) | Effect::Quit) => out.front.push(e),
            }
        }
        out
    }

    /// Send the backend a command directly (scripts).
    pub fn send(&mut self, c: Command) {
        self.backend.send(c);
    }

    /// Stop the backend's tasks and close the recording cleanly; the state stays.
    pub fn shutdown(&mut self) {
        self.backend.shutdown();
        self.finish_recording();
    }

    /// Close the recording cleanly now: what follows is not recorded (`check` records its run
    /// up to the verdict, not the clusters' deletion after it).
    pub fn finish_recording(&mut self) {
        if let Some(r) = self.recorder.take()
            && let Err(e) = r.finish()
        {
            tracing::error!("recording: {e:#}");
        }
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        self.backend.shutdown();
    }
}
