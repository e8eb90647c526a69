//! The update loop without a terminal, tasks or backend: messages applied in order, diff
//! computations run inline. For snapshots, benchmarks and update-level tests (dev-only).

use kindred::app::diffs::compute;
use kindred::app::predict;
use kindred::app::{Effect, Msg, State, update};
use kindred::backend::Command;
use kindred::backend::recording::Recording;

/// Apply `msg` and run its diff computations inline. Returns the commands the update asked the
/// backend for.
pub fn apply_sync(st: &mut State, msg: Msg) -> Vec<Command> {
    let mut queue = vec![msg];
    let mut sent = Vec::new();
    while let Some(m) = queue.pop() {
        for e in update(st, m).effects {
            match e {
                Effect::ComputeDiff(req) => {
                    let result = compute(&req);
                    queue.push(Msg::DiffReady {
                        key: req.key,
                        result,
                    });
                }
                Effect::Predict(req) => {
                    let result = predict::compute(&req);
                    queue.push(Msg::Predicted {
                        side: req.side,
                        id: req.id,
                        result,
                    });
                }
                Effect::Group(req) => {
                    let canon = req.canonical();
                    queue.push(Msg::Grouped { req, canon });
                }
                Effect::Send(c) => sent.push(c),
                Effect::SetMouseCapture(_) | Effect::Quit => {}
            }
        }
    }
    sent
}

/// A state fed with a whole recording, ticks included, as a dashboard would see it.
pub fn state_from(rec: &Recording) -> State {
    let mut st = State::new();
    for r in &rec.records {
        apply_sync(&mut st, Msg::Tick(std::time::Duration::from_millis(r.t)));
        apply_sync(&mut st, Msg::Backend(r.event.clone()));
    }
    st
}
