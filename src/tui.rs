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
/// The shortest time between two frames.
pub const FRAME: Duration = Duration::from_millis(16);

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

/// Held while a frame is written, and by the panic hook from restoring the terminal to the
/// exit: no frame lands on the restored screen, between the pieces of the hook's message.
static WRITING: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// [`WRITING`] for the panic hook: waited for at most 200 ms, since the panicking thread may be
/// the one writing a frame (then the hook goes on without it).
fn writing_for_hook() -> Option<std::sync::MutexGuard<'static, ()>> {
    use std::sync::TryLockError;
    for _ in 0..100 {
        match WRITING.try_lock() {
            Ok(g) => return Some(g),
            Err(TryLockError::Poisoned(p)) => return Some(p.into_inner()),
            Err(TryLockError::WouldBlock) => std::thread::sleep(Duration::from_millis(2)),
        }
    }
    None
}

/// Write one frame, unless the terminal was restored (a panic is ending the program).
fn draw_frame(
    terminal: &mut Terminal<CrosstermBackend<Stdout>>,
    state: &crate::app::State,
    theme: &crate::ui::theme::Theme,
) -> io::Result<()> {
    let _writing = WRITING.lock().unwrap_or_else(|p| p.into_inner());
    if ACTIVE.load(Ordering::SeqCst) {
        terminal.draw(|f| ui::render(f, state, theme))?;
    }
    Ok(())
}

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
        // Held to the exit: the dashboard writes no frame after the terminal is restored.
        let _writing = writing_for_hook();
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

/// The environment variable that makes the dashboard panic on purpose, for the test that runs
/// the real binary into a panic (tests/tui_e2e.rs). Only the one who starts kindred sets it, as
/// they could kill it; nothing kindred reads (scenario, dump, cluster, recording) reaches it.
pub const PANIC_TEST_VAR: &str = "KINDRED_TEST_PANIC";

/// With `KINDRED_TEST_PANIC=1`, a background task panics 1.5 s after the dashboard took the
/// terminal, as a bug would: the binary's own panic hook must end the program.
fn panic_test_trigger() {
    if std::env::var_os(PANIC_TEST_VAR).is_some_and(|v| v == "1") {
        tokio::spawn(async {
            tokio::time::sleep(Duration::from_millis(1500)).await;
            panic!("{PANIC_TEST_VAR}=1 asked for this panic");
        });
    }
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
    /// `--latency-factor`, else the scenario's `probes.latency_factor`.
    pub latency_factor: crate::model::Factor,
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

/// Apply a message and run the effects only the terminal can: (redraw, quit).
fn apply(driver: &mut Driver, guard: &mut TerminalGuard, msg: Msg) -> (bool, bool) {
    let out = driver.apply(msg);
    let mut quit = false;
    for e in out.front {
        match e {
            Effect::SetMouseCapture(on) => guard.set_mouse(on),
            Effect::Quit => quit = true,
            Effect::Send(_) | Effect::ComputeDiff(_) | Effect::Predict(_) | Effect::Group(_) => {}
        }
    }
    (out.redraw, quit)
}

/// Apply every terminal event that is ready now, without waiting: `None` when there was none,
/// else (redraw, quit).
async fn drain_input(
    input: &mut EventStream,
    driver: &mut Driver,
    guard: &mut TerminalGuard,
) -> Result<Option<(bool, bool)>> {
    let mut got: Option<(bool, bool)> = None;
    for _ in 0..100_000 {
        let ev = tokio::select! {
            biased;
            ev = input.next() => ev,
            _ = std::future::ready(()) => break,
        };
        let msg = match ev {
            Some(Ok(ev)) => match terminal_msg(ev, &driver.state) {
                Some(m) => m,
                None => continue,
            },
            Some(Err(e)) => return Err(e.into()),
            None => Msg::Terminate,
        };
        let (r, quit) = apply(driver, guard, msg);
        let g = got.get_or_insert((false, false));
        g.0 |= r;
        if quit {
            g.1 = true;
            break;
        }
    }
    Ok(got)
}

/// Run the dashboard until the user quits or a signal arrives; returns the exit status (0, or
/// 128 + the signal's number).
pub async fn run(backend: Box<dyn Backend>, opts: RunOptions) -> Result<i32> {
    let theme = Theme::new(opts.color);
    let mut driver = Driver::start(backend, opts.record.as_deref())?;
    let mut guard = TerminalGuard::new(opts.mouse)?;
    panic_test_trigger();
    driver.state.mouse_capture = opts.mouse;
    driver.state.latency_factor = opts.latency_factor;
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
    let mut last_draw = Instant::now() - FRAME;

    let result: Result<()> = loop {
        // Every key already waiting takes effect before the next frame: a burst of input (a
        // held key, a long filter typed fast) costs one frame, not one frame a key, and the last
        // key never waits behind a backlog of frames.
        match drain_input(&mut input, &mut driver, &mut guard).await {
            Ok(Some((r, quit))) => {
                redraw |= r;
                if quit {
                    break Ok(());
                }
            }
            Ok(None) => {}
            Err(e) => break Err(e),
        }
        // At most one frame per FRAME: under a stream of input the screen keeps up with the
        // keys instead of the keys waiting for the frames.
        if redraw && last_draw.elapsed() >= FRAME {
            draw_frame(&mut guard.terminal, &driver.state, &theme)?;
            redraw = false;
            last_draw = Instant::now();
        }
        let frame_wait = FRAME.saturating_sub(last_draw.elapsed());
        let msg = tokio::select! {
            _ = tokio::time::sleep(frame_wait), if redraw => continue,
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
        let (r, quit) = apply(&mut driver, &mut guard, msg);
        redraw |= r;
        if quit {
            break Ok(());
        }
    };
    driver.shutdown();
    drop(guard);
    result.map(|_| status)
}
