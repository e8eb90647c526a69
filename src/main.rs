use std::io::Write;
use std::process::ExitCode;

use clap::Parser;
use kindred::cli::{Cli, Command};

/// mimalloc: comparing two large dumps makes a million small strings on two threads, where it
/// is markedly faster than the system allocator (see README, "Speed and memory").
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Memory freed goes back after 2 ms: reused at once by the next Service compared (no new page
/// faults), yet the peak stays within 4x of the dumps compared (with mimalloc's default delay
/// it is 4.4x; returning it at once costs a third more time in page faults).
fn tune_allocator() {
    use libmimalloc_sys::{mi_option_set, mi_option_t};
    // Its place in mimalloc.h's `mi_option_e` (the same in mimalloc 2 and 3).
    const PURGE_DELAY: mi_option_t = 15;
    // SAFETY: setting an option stores a number that mimalloc reads when it next purges; no
    // pointer is passed, and any delay is valid.
    unsafe { mi_option_set(PURGE_DELAY, 2) }
}

fn main() -> ExitCode {
    tune_allocator();
    let cli = Cli::parse();
    let _guard = match kindred::logging::init(cli.log_file.as_deref()) {
        Ok(g) => Some(g),
        Err(e) => {
            let msg = kindred::rules::render::visible(&format!("{e:#}")).into_owned();
            let _ = writeln!(std::io::stderr(), "kindred: not logging: {msg}");
            None
        }
    };
    kindred::tui::install_panic_hook(
        cli.log_file
            .clone()
            .unwrap_or_else(kindred::logging::default_log_path),
    );
    let file = cli.file.as_deref();
    let result = match &cli.command {
        None => kindred::cli::run_up(file, &Default::default()),
        Some(c) => run(c, file),
    };
    match result {
        Ok(code) => ExitCode::from(code as u8),
        Err(e) => {
            tracing::error!("{e:#}");
            let msg = format!("{e:#}");
            let msg = kindred::rules::render::visible_lines(&msg);
            let _ = writeln!(std::io::stderr(), "kindred: {msg}");
            ExitCode::from(2)
        }
    }
}

fn run(c: &Command, file: Option<&std::path::Path>) -> anyhow::Result<i32> {
    match c {
        Command::Up(a) => kindred::cli::run_up(file, a),
        Command::Init(a) => kindred::cli::run_init(file, a),
        Command::Check(a) => kindred::cli::run_check(file, a),
        Command::Bisect(a) => kindred::cli::run_bisect(file, a),
        Command::SwapProxy(a) => kindred::cli::run_swap(file, a),
        Command::Doctor(a) => kindred::cli::run_doctor(file, a),
        Command::Diff(a) => kindred::cli::run_diff(a),
        Command::Trace(a) => kindred::cli::trace::run_trace(a),
        Command::Clusters(a) => kindred::cli::run_clusters(a),
        Command::Demo(a) => {
            kindred::backend::recording::parse(kindred::cli::DEMO_RECORDING, "demo")
                .map_err(Into::into)
                .and_then(|r| kindred::cli::run_play(r, a))
        }
        Command::Replay(a) => kindred::cli::run_replay(a),
    }
}
