//! The terminal and the event loop: crossterm events, backend events, diff results, ticks and
//! signals become [`Msg`]s for [`update`]; the screen is drawn only when something changed.

use std::io::{self, Stdout, Write};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Result;
use crossterm::event::{
    DisableBracketedPaste, DisableMouseCapture, EnableBracketedPaste, EnableMouseCapture,
    Event as CtEvent, EventStream,
};
use crossterm::execute;
use crossterm::terminal::{
    EnterAlternateScreen, LeaveAlternateScreen, disable_raw_mode, enable_raw_mode,
};
use futures::StreamExt;
use ratatui::Terminal;
use ratatui::backend::CrosstermBackend;
use tokio::sync::mpsc;

use crate::app::State;
use crate::app::update::{DiffRequest, Effect, Msg, update};
use crate::backend::recording::Recorder;
use crate::backend::{Backend, Event};
use crate::rules::{self, Options, ServiceFilter};
use crate::ui::{self, Theme};

/// How often the app clock ticks (spinners, elapsed times). Drawing happens only on change.
pub const TICK: Duration = Duration::from_millis(250);

/// Restores the terminal when dropped: normal exit, error, or unwinding panic.
pub struct TerminalGuard {
    pub terminal: Terminal<CrosstermBackend<Stdout>>,
    mouse: bool,
}

fn restore_terminal() {
    let mut out = io::stdout();
    let _ = disable_raw_mode();
    let _ = execute!(
        out,
        DisableMouseCapture,
        DisableBracketedPaste,
        LeaveAlternateScreen,
        crossterm::cursor::Show
    );
    let _ = out.flush();
}

impl TerminalGuard {
    pub fn new(mouse: bool) -> Result<TerminalGuard> {
        // A panic anywhere restores the terminal before the message is printed.
        let prev = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            restore_terminal();
            prev(info);
        }));
        enable_raw_mode()?;
        let mut out = io::stdout();
        execute!(out, EnterAlternateScreen, EnableBracketedPaste)?;
        if mouse {
            execute!(out, EnableMouseCapture)?;
        }
        let terminal = Terminal::new(CrosstermBackend::new(out))?;
        Ok(TerminalGuard { terminal, mouse })
    }

    pub fn set_mouse(&mut self, on: bool) {
        if on != self.mouse {
            let _ = if on {
                execute!(io::stdout(), EnableMouseCapture)
            } else {
                execute!(io::stdout(), DisableMouseCapture)
            };
            self.mouse = on;
        }
    }
}

impl Drop for TerminalGuard {
    fn drop(&mut self) {
        restore_terminal();
    }
}

/// Options for a dashboard session.
pub struct RunOptions {
    pub record: Option<PathBuf>,
    pub color: bool,
    pub mouse: bool,
}

/// Parse and compare two dumps for the Diff pane (runs on a blocking thread).
pub fn compute_diff(req: &DiffRequest) -> Result<Arc<rules::Comparison>, String> {
    let service = if req.service.is_empty() {
        None
    } else {
        Some(ServiceFilter::parse(&req.service)?)
    };
    let opts = Options {
        raw: req.key.raw,
        service,
    };
    rules::compare_texts(&req.base, &req.pr, &opts)
        .map(Arc::new)
        .map_err(|e| format!("rules: {e}"))
}

/// Run the dashboard until the user quits or a signal arrives.
pub async fn run(mut backend: Box<dyn Backend>, opts: RunOptions) -> Result<()> {
    let mut recorder = opts.record.as_deref().map(Recorder::create).transpose()?;
    let theme = Theme::new(opts.color);
    let mut guard = TerminalGuard::new(opts.mouse)?;
    let (ev_tx, mut ev_rx) = mpsc::unbounded_channel::<Event>();
    let (diff_tx, mut diff_rx) = mpsc::unbounded_channel::<Msg>();
    backend.start(ev_tx);

    let mut st = State::new();
    st.mouse_capture = opts.mouse;
    if let Ok((w, h)) = crossterm::terminal::size() {
        st.size = (w, h);
    }
    let start = Instant::now();
    let mut input = EventStream::new();
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    #[cfg(unix)]
    let mut sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    #[cfg(unix)]
    let mut sighup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
    let mut redraw = true;

    let result: Result<()> = loop {
        if redraw {
            guard.terminal.draw(|f| ui::render(f, &st, &theme))?;
            redraw = false;
        }
        let msg = tokio::select! {
            ev = input.next() => match ev {
                Some(Ok(CtEvent::Key(k))) => Msg::Key(k),
                Some(Ok(CtEvent::Mouse(m))) => Msg::Mouse(m),
                Some(Ok(CtEvent::Paste(p))) => Msg::Paste(p),
                Some(Ok(CtEvent::Resize(w, h))) => Msg::Resize(w, h),
                Some(Ok(_)) => continue,
                Some(Err(e)) => break Err(e.into()),
                None => Msg::Terminate,
            },
            Some(ev) = ev_rx.recv() => {
                if let Some(r) = recorder.as_mut()
                    && let Err(e) = r.write(&ev)
                {
                    tracing::error!("recording: {e:#}");
                    recorder = None;
                }
                Msg::Backend(ev)
            }
            Some(m) = diff_rx.recv() => m,
            _ = tick.tick() => Msg::Tick(start.elapsed()),
            _ = sigterm.recv() => Msg::Terminate,
            _ = sighup.recv() => Msg::Terminate,
            _ = tokio::signal::ctrl_c() => Msg::Terminate,
        };
        let out = update(&mut st, msg);
        redraw |= out.redraw;
        let mut quit = false;
        for e in out.effects {
            match e {
                Effect::Send(c) => backend.send(c),
                Effect::ComputeDiff(req) => {
                    let tx = diff_tx.clone();
                    tokio::task::spawn_blocking(move || {
                        let result = compute_diff(&req);
                        let _ = tx.send(Msg::DiffReady {
                            key: req.key,
                            result,
                        });
                    });
                }
                Effect::SetMouseCapture(on) => guard.set_mouse(on),
                Effect::Quit => quit = true,
            }
        }
        if quit {
            break Ok(());
        }
    };
    backend.shutdown();
    drop(guard);
    result
}

/// Apply a message and run its diff computations inline (no terminal, no tasks): for tests,
/// benchmarks and headless use. Returns the commands the update asked the backend for.
pub fn apply_sync(st: &mut State, msg: Msg) -> Vec<crate::backend::Command> {
    let mut queue = vec![msg];
    let mut sent = Vec::new();
    while let Some(m) = queue.pop() {
        for e in update(st, m).effects {
            match e {
                Effect::ComputeDiff(req) => {
                    let result = compute_diff(&req);
                    queue.push(Msg::DiffReady {
                        key: req.key,
                        result,
                    });
                }
                Effect::Send(c) => sent.push(c),
                Effect::SetMouseCapture(_) | Effect::Quit => {}
            }
        }
    }
    sent
}
