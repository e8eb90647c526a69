//! Network namespaces for the tests that need the kernel's netfilter: named `kindred-TAG-PID`,
//! removed on drop, and those of killed runs (PID gone) swept by the next one.

use std::io::Write;
use std::process::{Command, Stdio};

use super::{alive, time_limit};

/// Remove the namespaces of test runs that were killed (named `kindred-TAG-PID`, PID gone).
pub fn sweep_namespaces() {
    let Ok(o) = Command::new("ip").args(["netns", "list"]).output() else {
        return;
    };
    for l in String::from_utf8_lossy(&o.stdout).lines() {
        let name = l.split_whitespace().next().unwrap_or("");
        let pid = name.rsplit('-').next().and_then(|p| p.parse::<i32>().ok());
        if name.starts_with("kindred-") && pid.is_some_and(|p| !alive(p)) {
            let _ = Command::new("ip").args(["netns", "del", name]).status();
        }
    }
}

/// A network namespace removed on drop.
pub struct Netns(pub String);

impl Netns {
    pub fn new(tag: &str) -> Netns {
        time_limit();
        sweep_namespaces();
        let name = format!("kindred-{tag}-{}", std::process::id());
        let st = Command::new("ip")
            .args(["netns", "add", &name])
            .status()
            .expect("ip netns add (needs root and iproute2)");
        assert!(st.success(), "ip netns add {name} failed (needs root)");
        Netns(name)
    }

    /// Feed `text` to `tool` (iptables-restore, `nft -f -`, ...) run in the namespace.
    pub fn restore(&self, tool: &str, text: &str) {
        self.feed(&[tool], text);
    }

    /// Run argv in the namespace with `text` on its standard input; it must succeed.
    pub fn feed(&self, argv: &[&str], text: &str) {
        let mut c = Command::new("ip")
            .args(["netns", "exec", &self.0])
            .args(argv)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("{argv:?}: {e}"));
        c.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
        let o = c.wait_with_output().unwrap();
        assert!(
            o.status.success(),
            "{argv:?} failed: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }

    pub fn save(&self, tool: &str, extra: &[&str]) -> String {
        let o = Command::new("ip")
            .args(["netns", "exec", &self.0, tool])
            .args(extra)
            .output()
            .unwrap_or_else(|e| panic!("{tool}: {e}"));
        assert!(
            o.status.success(),
            "{tool} failed: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8(o.stdout).unwrap()
    }

    /// `ip -n NAME ARGS...`; it must succeed.
    pub fn ip(&self, args: &[&str]) {
        let o = Command::new("ip")
            .args(["-n", &self.0])
            .args(args)
            .output()
            .expect("ip (iproute2)");
        assert!(
            o.status.success(),
            "ip -n {} {}: {}",
            self.0,
            args.join(" "),
            String::from_utf8_lossy(&o.stderr)
        );
    }

    /// Set a sysctl inside the namespace.
    pub fn sysctl(&self, key: &str, value: &str) {
        let path = format!("/proc/sys/{}", key.replace('.', "/"));
        self.feed(&["tee", &path], value);
    }

    /// Run `f` on a thread that has entered this namespace (sockets it makes live there).
    pub fn run<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> T {
        let path = format!("/run/netns/{}", self.0);
        std::thread::spawn(move || {
            enter(&path);
            f()
        })
        .join()
        .expect("thread in a network namespace")
    }

    /// Start `f` on a thread that has entered this namespace.
    pub fn spawn<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> std::thread::JoinHandle<T> {
        let path = format!("/run/netns/{}", self.0);
        std::thread::spawn(move || {
            enter(&path);
            f()
        })
    }
}

/// Move the calling thread into the network namespace mounted at `path`.
fn enter(path: &str) {
    use std::os::fd::AsRawFd;
    let f = std::fs::File::open(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    // SAFETY: setns takes a valid open descriptor and a flag; it only changes this thread's
    // network namespace.
    let r = unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) };
    assert_eq!(r, 0, "setns {path}: {}", std::io::Error::last_os_error());
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}
