//! The terminal front end: the terminal guard, and the event loop that turns crossterm events,
//! ticks and signals into [`Msg`]s for the [`Driver`]; the screen is drawn only when something
//! changed.

use std::io::{self, Stdout, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Result;
use crossterm::event::{
    DisableBracketedPaste, DisableMouseCapture, EnableBracketedPaste, EnableMouseCapture,
    Event as CtEvent, EventStream, MouseEventKind,
};
use crossterm::execute;
use crossterm::terminal::{
    EnterAlternateScreen, LeaveAlternateScreen, disable_raw_mode, enable_raw_mode,
};
use futures::StreamExt;
use ratatui::Terminal;
use ratatui::backend::CrosstermBackend;

use crate::app::{Driver, Effect, Msg};
use crate::backend::Backend;
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

/// Whether the terminal is in the dashboard's modes (raw, alternate screen, mouse capture).
static ACTIVE: AtomicBool = AtomicBool::new(false);

/// Restore the terminal, once, if the dashboard changed it.
fn restore_once() {
    if ACTIVE.swap(false, Ordering::SeqCst) {
        restore_terminal();
    }
}

/// Make any panic, in any thread or task, end the program: the terminal restored once, a
/// one-line message naming the log file, exit status 101. Never a UI left running.
pub fn install_panic_hook(log: PathBuf) {
    std::panic::set_hook(Box::new(move |info| {
        restore_once();
        let place = info
            .location()
            .map(|l| format!(" at {}:{}", l.file(), l.line()))
            .unwrap_or_default();
        let what = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "panic".into());
        tracing::error!("internal error: {what}{place}");
        let _ = writeln!(
            io::stderr(),
            "kindred: internal error: {}{place} (log: {})",
            what.escape_debug(),
            log.display()
        );
        std::process::exit(101);
    }));
}

impl TerminalGuard {
    pub fn new(mouse: bool) -> Result<TerminalGuard> {
        ACTIVE.store(true, Ordering::SeqCst);
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
        restore_once();
    }
}

/// Options for a dashboard session.
pub struct RunOptions {
    pub record: Option<PathBuf>,
    pub color: bool,
    pub mouse: bool,
}

/// A terminal event as a message; `None` for those the dashboard ignores.
fn terminal_msg(ev: CtEvent, st: &crate::app::State) -> Option<Msg> {
    Some(match ev {
        CtEvent::Key(k) => Msg::Key(k),
        CtEvent::Mouse(m) => {
            let lines = match m.kind {
                MouseEventKind::ScrollUp => -3,
                MouseEventKind::ScrollDown => 3,
                _ => return None,
            };
            let area = ratatui::layout::Rect::new(0, 0, st.size.0, st.size.1);
            let pane = ui::layout::pane_at(st, area, m.column, m.row);
            Msg::Scroll { pane, lines }
        }
        CtEvent::Paste(p) => Msg::Paste(p),
        CtEvent::Resize(w, h) => Msg::Resize(w, h),
        _ => return None,
    })
}

/// The signals that end the dashboard, with the exit status each gives (128 + signal).
#[cfg(unix)]
fn signals() -> Result<Vec<(tokio::signal::unix::Signal, i32)>> {
    use tokio::signal::unix::{SignalKind, signal};
    [
        (SignalKind::terminate(), 143),
        (SignalKind::hangup(), 129),
        (SignalKind::interrupt(), 130),
        (SignalKind::quit(), 131),
        (SignalKind::user_defined1(), 138),
    ]
    .into_iter()
    .map(|(k, code)| Ok((signal(k)?, code)))
    .collect()
}

/// The next of these signals to arrive: its exit status.
#[cfg(unix)]
async fn any_signal(sigs: &mut [(tokio::signal::unix::Signal, i32)]) -> i32 {
    let waits = sigs.iter_mut().map(|(s, code)| {
        let code = *code;
        Box::pin(async move {
            s.recv().await;
            code
        })
    });
    futures::future::select_all(waits).await.0
}

/// Run the dashboard until the user quits or a signal arrives; returns the exit status (0, or
/// 128 + the signal's number).
pub async fn run(backend: Box<dyn Backend>, opts: RunOptions) -> Result<i32> {
    let theme = Theme::new(opts.color);
    let mut driver = Driver::start(backend, opts.record.as_deref())?;
    let mut guard = TerminalGuard::new(opts.mouse)?;
    driver.state.mouse_capture = opts.mouse;
    if let Ok((w, h)) = crossterm::terminal::size() {
        driver.state.size = (w, h);
    }
    let start = Instant::now();
    let mut input = EventStream::new();
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut sigs = signals()?;
    let mut status = 0;
    let mut redraw = true;

    let result: Result<()> = loop {
        if redraw {
            guard
                .terminal
                .draw(|f| ui::render(f, &driver.state, &theme))?;
            redraw = false;
        }
        let msg = tokio::select! {
            ev = input.next() => match ev {
                Some(Ok(ev)) => match terminal_msg(ev, &driver.state) {
                    Some(m) => m,
                    None => continue,
                },
                Some(Err(e)) => break Err(e.into()),
                None => Msg::Terminate,
            },
            m = driver.next() => m,
            _ = tick.tick() => Msg::Tick(start.elapsed()),
            code = any_signal(&mut sigs) => {
                status = code;
                Msg::Terminate
            }
        };
        let out = driver.apply(msg);
        redraw |= out.redraw;
        let mut quit = false;
        for e in out.front {
            match e {
                Effect::SetMouseCapture(on) => guard.set_mouse(on),
                Effect::Quit => quit = true,
                Effect::Send(_) | Effect::ComputeDiff(_) => {}
            }
        }
        if quit {
            break Ok(());
        }
    };
    driver.shutdown();
    drop(guard);
    result.map(|_| status)
}
