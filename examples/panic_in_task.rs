//! A dev-only program for the panic test (tests/tui_e2e.rs): the dashboard's terminal set up,
//! then a panic in a background task, as a bug would. kindred's panic hook must end the whole
//! program with the terminal restored and exit status 101. Not part of kindred.

fn main() {
    kindred::tui::install_panic_hook(std::env::temp_dir().join("kindred-panic-test.log"));
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let _guard = kindred::tui::TerminalGuard::new(false).unwrap();
        println!("Probes target lb (a dashboard would be here)");
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        tokio::spawn(async {
            let v: Vec<u32> = Vec::new();
            let _ = v[std::hint::black_box(3)];
        });
        // The UI loop would keep running: the hook must end the process anyway.
        tokio::time::sleep(std::time::Duration::from_secs(30)).await;
    });
}
