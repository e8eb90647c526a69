//! Helpers shared by the integration tests.
#![allow(dead_code)]

pub mod apiserver;
pub mod cluster;
pub mod contexts;
pub mod echo;
pub mod groups;
pub mod headless;
pub mod kuberepo;
pub mod netns;
pub mod predicting;
pub mod synth;

use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// How long a test that can hang (Docker, tmux, a network namespace, a stand-in, the binary, a
/// wait on events) may run before the process is aborted: a hang fails the run instead of stalling CI. `KINDRED_TEST_LIMIT`
/// (seconds) overrides it.
pub const TIME_LIMIT: Duration = Duration::from_secs(600);

/// The armed watchdog of this test's thread (libtest runs each test on a thread named after
/// it); dropped, so disarmed, when the test's thread ends, passed or failed.
pub struct TimeLimit(std::sync::mpsc::Sender<()>);

thread_local! {
    static LIMIT: std::cell::RefCell<Option<TimeLimit>> = const { std::cell::RefCell::new(None) };
}

/// Give the calling test a time limit (once; later calls keep the first). Every helper that
/// starts something that can hang (Docker, tmux, a netns, the binary, a stand-in) calls it,
/// so each test that uses them has one without a line of its own.
pub fn time_limit() {
    let secs = std::env::var("KINDRED_TEST_LIMIT")
        .ok()
        .and_then(|v| v.parse().ok())
        .map(Duration::from_secs)
        .unwrap_or(TIME_LIMIT);
    time_limit_of(secs);
}

/// [`time_limit`] with an explicit limit. Past it, the test is named on stderr and the whole
/// process aborts.
pub fn time_limit_of(limit: Duration) {
    LIMIT.with(|l| {
        let mut l = l.borrow_mut();
        if l.is_some() {
            return;
        }
        let name = std::thread::current()
            .name()
            .unwrap_or("(a thread a test started)")
            .to_string();
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        std::thread::spawn(move || {
            if let Err(std::sync::mpsc::RecvTimeoutError::Timeout) = rx.recv_timeout(limit) {
                // Straight to stderr: libtest captures `eprintln!` of a test's threads, and an
                // abort would swallow what it captured.
                use std::io::Write;
                let _ = writeln!(
                    std::io::stderr(),
                    "test {name} ran past its time limit of {} s: aborting the test run",
                    limit.as_secs_f64()
                );
                std::process::abort();
            }
        });
        *l = Some(TimeLimit(tx));
    });
}

pub fn fixture(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(rel)
}

/// A state directory of this test process's own (kubeconfigs, owned clusters, the MetalLB
/// cache): tests never read or write the user's real one.
pub fn test_state() -> &'static std::path::Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let d = std::env::temp_dir().join(format!("kindred-test-state-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        d
    })
}

pub fn kindred(args: &[&str]) -> Output {
    time_limit();
    Command::new(env!("CARGO_BIN_EXE_kindred"))
        .args(args)
        .env("XDG_STATE_HOME", test_state())
        .env("KUBECONFIG", test_state().join("user-kubeconfig"))
        .env("NO_COLOR", "1")
        .env("KINDRED_LOG", std::env::temp_dir().join("kindred-test.log"))
        .output()
        .expect("run kindred")
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Run the docker CLI (test setup only; kindred itself talks to the engine through bollard).
pub fn docker(args: &[&str]) -> String {
    time_limit();
    let o = Command::new("docker")
        .args(args)
        .output()
        .expect("docker CLI");
    assert!(
        o.status.success(),
        "docker {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

pub const IMAGE: &str = "kindred-test-node:latest";

/// Every container and network a test makes carries this label, valued with the test process's
/// id: what a killed run left behind is swept by the next one.
pub const TEST_LABEL: &str = "io.kindred.test.pid";

/// Whether a process is alive.
pub fn alive(pid: i32) -> bool {
    // Signal 0: no signal, only the check.
    (unsafe { libc::kill(pid, 0) }) == 0
}

/// Remove the test containers and networks whose test process is gone (a killed run's).
pub fn sweep() {
    let gone = |pid: &str| pid.trim().parse::<i32>().is_ok_and(|p| !alive(p));
    let list = |what: &[&str]| -> Vec<(String, String)> {
        let o = Command::new("docker").args(what).output();
        let Ok(o) = o else { return Vec::new() };
        String::from_utf8_lossy(&o.stdout)
            .lines()
            .filter_map(|l| l.split_once(' '))
            .map(|(id, pid)| (id.to_string(), pid.to_string()))
            .collect()
    };
    let format = format!("{{{{.ID}}}} {{{{.Label \"{TEST_LABEL}\"}}}}");
    let filter = format!("label={TEST_LABEL}");
    for (id, pid) in list(&["ps", "-a", "--filter", &filter, "--format", &format]) {
        if gone(&pid) {
            let _ = Command::new("docker").args(["rm", "-f", &id]).output();
        }
    }
    for (id, pid) in list(&["network", "ls", "--filter", &filter, "--format", &format]) {
        if gone(&pid) {
            let _ = Command::new("docker").args(["network", "rm", &id]).output();
        }
    }
}

/// A Docker network for this test process (labelled, see [`TEST_LABEL`]); `extra` goes before
/// the name (e.g. `--subnet`).
pub fn network_create(name: &str, extra: &[&str]) {
    let label = format!("{TEST_LABEL}={}", std::process::id());
    let mut args = vec!["network", "create", "--label", &label];
    args.extend_from_slice(extra);
    args.push(name);
    docker(&args);
}

/// A minimal node image: busybox-static for a shell, sleep and httpd; the host's /usr is mounted
/// read-only at run time for iptables, nft and curl.
pub fn image() -> &'static str {
    // Before the sweep: its docker calls can hang too.
    time_limit();
    static DONE: OnceLock<()> = OnceLock::new();
    DONE.get_or_init(|| {
        sweep();
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        for d in [
            "bin", "dev", "etc", "proc", "sys", "tmp", "run", "var", "www",
        ] {
            std::fs::create_dir_all(root.join(d)).unwrap();
        }
        std::fs::copy("/bin/busybox", root.join("bin/busybox")).expect("busybox-static installed");
        for applet in ["sh", "sleep", "httpd", "cat"] {
            std::os::unix::fs::symlink("busybox", root.join("bin").join(applet)).unwrap();
        }
        for (l, t) in [
            ("lib", "usr/lib"),
            ("lib64", "usr/lib64"),
            ("sbin", "usr/sbin"),
        ] {
            std::os::unix::fs::symlink(t, root.join(l)).unwrap();
        }
        std::fs::write(root.join("www/index.html"), "echo\n").unwrap();
        std::fs::write(root.join("etc/passwd"), "root:x:0:0:root:/:/bin/sh\n").unwrap();
        let tar = dir.path().join("root.tar");
        let st = Command::new("tar")
            .args([
                "-C",
                root.to_str().unwrap(),
                "-cf",
                tar.to_str().unwrap(),
                ".",
            ])
            .status()
            .unwrap();
        assert!(st.success());
        docker(&[
            "import",
            "--change",
            "ENV PATH=/usr/sbin:/usr/bin:/bin",
            tar.to_str().unwrap(),
            IMAGE,
        ]);
    });
    IMAGE
}

/// A stand-in `kind` (in `dir`) that creates and deletes node containers as kind would: same
/// names and labels, on `network`, from the test node image. As kind, `create cluster` and
/// `export kubeconfig` merge the cluster's kubeconfig into the file they are given, under its
/// lock, and `get kubeconfig` prints it: for a cluster [`tie`]d to an API server stand-in, that
/// server's (HTTPS, its CA, the client certificate and key). It records its argv in
/// `dir/argv.log` and the cluster config it was given in `dir/config-NAME.yaml`.
pub fn standin(dir: &std::path::Path, network: &str) -> kindred::backend::kind::Kind {
    time_limit();
    let label = format!("{TEST_LABEL}={}", std::process::id());
    let script = format!(
        r#"#!/bin/bash
set -e
cmd="$1 $2"
name=""
args=("$@")
# One write per line: two kinds running at once never mix their lines.
line=$(printf '%s|' "$@"); echo "$line" >> "$(dirname "$0")/argv.log"
for ((i=0; i<${{#args[@]}}; i++)); do [ "${{args[$i]}}" = "--name" ] && name="${{args[$((i+1))]}}"; done
# The kubeconfig of a cluster a test tied to an API server stand-in (see `tie`): its server, CA,
# client certificate and key. A cluster tied to none gets a server where none listens.
tied="$(dirname "$0")/apiserver-$name.yaml"
field() {{ if [ -f "$tied" ]; then sed -n "s/^ *$1: //p" "$tied" | head -n 1; fi; }}
# The file kind writes: --kubeconfig, else KUBECONFIG's first existing file (its last if none
# exists), else ~/.kube/config.
kubeconfig_file() {{
  local f="" i
  for ((i=0; i<${{#args[@]}}; i++)); do [ "${{args[$i]}}" = "--kubeconfig" ] && f="${{args[$((i+1))]}}"; done
  if [ -z "$f" ]; then
    IFS=: read -ra kcs <<< "$KUBECONFIG"; f="$HOME/.kube/config"
    [ ${{#kcs[@]}} -gt 0 ] && f="${{kcs[-1]}}"
    for k in "${{kcs[@]}}"; do [ -f "$k" ] && {{ f="$k"; break; }}; done
  fi
  echo "$f"
}}
# As kind: merge kind-NAME's cluster, context and user into FILE (replacing entries of that name),
# set its current-context, all under FILE.lock, which kind takes with no retry. The file is kept
# in the layout kind writes (keys sorted, lists unindented), so other entries come out as they
# went in. With `hold`, a test's `export-hold` widens the time the lock is held.
merge_kubeconfig() {{
  local file="$1"
  # Tests never write a real ~/.kube/config: only a file under the temp dir is written.
  case "$file" in "${{TMPDIR:-/tmp}}"/*) ;; *) echo "ERROR: stand-in kind: not writing $file (outside the temp dir)" >&2; exit 1 ;; esac
  mkdir -p "$(dirname "$file")"
  ( set -o noclobber; : > "$file.lock" ) 2>/dev/null || {{ echo "ERROR: failed to lock config file: open $file.lock: file exists" >&2; exit 1; }}
  if [ "$2" = hold ] && [ -f "$(dirname "$0")/export-hold" ]; then sleep "$(cat "$(dirname "$0")/export-hold")"; fi
  [ -s "$file" ] || printf 'apiVersion: v1\nclusters: null\ncontexts: null\ncurrent-context: ""\nkind: Config\npreferences: {{}}\nusers: null\n' > "$file"
  local server
  server=$(field server); server="${{server:-https://127.0.0.1:6443}}"
  awk -v n="kind-$name" -v server="$server" -v ca="$(field certificate-authority-data)" \
      -v cert="$(field client-certificate-data)" -v key="$(field client-key-data)" '
    function flush() {{ if (!drop) printf "%s", entry; entry = ""; drop = 0 }}
    function add(s) {{
      if (s == "clusters") {{
        print "- cluster:"; if (ca != "") print "    certificate-authority-data: " ca
        print "    server: " server "\n  name: " n
      }} else if (s == "contexts") {{
        print "- context:\n    cluster: " n "\n    user: " n "\n  name: " n
      }} else if (s == "users") {{
        if (cert != "") print "- name: " n "\n  user:\n    client-certificate-data: " cert "\n    client-key-data: " key
        else print "- name: " n "\n  user: {{}}"
      }}
    }}
    function end() {{ flush(); if (sec != "") {{ add(sec); done[sec] = 1 }}; sec = "" }}
    /^[^ -]/ {{
      end()
      if ($0 ~ /^(clusters|contexts|users):( null| \[\])?$/) {{ sec = $0; sub(/:.*/, "", sec); print sec ":"; next }}
      print; next
    }}
    sec != "" && /^- / {{ flush(); entry = $0 "\n"; if ($0 == "- name: " n) drop = 1; next }}
    sec != "" {{ entry = entry $0 "\n"; if ($0 == "  name: " n) drop = 1; next }}
    {{ print }}
    END {{ end(); split("clusters contexts users", all, " "); for (i = 1; i <= 3; i++) if (!done[all[i]]) {{ print all[i] ":"; add(all[i]) }} }}
  ' "$file" > "$file.kind-tmp"
  cat "$file.kind-tmp" > "$file"; rm -f "$file.kind-tmp"
  sed -i "s/^current-context:.*/current-context: kind-$name/" "$file"
  rm -f "$file.lock"
}}
case "$cmd" in
  "create cluster")
    for ((i=0; i<${{#args[@]}}; i++)); do
      [ "${{args[$i]}}" = "--config" ] && cp "${{args[$((i+1))]}}" "$(dirname "$0")/config-$name.yaml" 2>/dev/null || true
    done
    echo "Creating cluster \"$name\" ..." >&2
    echo " • Preparing nodes 📦 📦 📦   ..." >&2
    node_image={image}
    for ((i=0; i<${{#args[@]}}; i++)); do
      [ "${{args[$i]}}" = "--image" ] && docker image inspect "${{args[$((i+1))]}}" >/dev/null 2>&1 && node_image="${{args[$((i+1))]}}"
    done
    for n in control-plane worker worker2; do
      role=worker; [ "$n" = control-plane ] && role=control-plane
      docker run -d --name "$name-$n" --hostname "$name-$n" \
        --label io.x-k8s.kind.cluster="$name" --label io.x-k8s.kind.role="$role" --label {label} \
        --network {network} --cap-add NET_ADMIN -v /usr:/usr:ro "$node_image" sleep 3600 >/dev/null
    done
    # A test makes N creates end together with `create-together` (N): each waits (up to 30 s)
    # until N have their nodes.
    touch "$(dirname "$0")/created-$name"
    if [ -f "$(dirname "$0")/create-together" ]; then
      for _ in $(seq 300); do
        [ "$(ls "$(dirname "$0")"/created-* | wc -l)" -ge "$(cat "$(dirname "$0")/create-together")" ] && break
        sleep 0.1
      done
    fi
    echo " ✓ Preparing nodes 📦 📦 📦" >&2
    merge_kubeconfig "$(kubeconfig_file)"
    echo "Set kubectl context to \"kind-$name\"" >&2 ;;
  "build node-image")
    # kind build node-image SRC --image TAG: the image is the test image under that tag; what the
    # build was given (its version file, a file of the tree) is kept for the test to read.
    img="${{args[4]}}"
    echo "Starting to build Kubernetes" >&2
    # Written whole, then renamed: a test that sees the file reads the pid, never an empty file.
    echo $$ > "$(dirname "$0")/build-$img.pid.tmp"; mv "$(dirname "$0")/build-$img.pid.tmp" "$(dirname "$0")/build-$img.pid"
    # A tree that does not compile (a `build/fail` file, or a Go file with the marker of
    # kuberepo::DOES_NOT_COMPILE) fails as kind does when the build inside fails.
    marker="kindred-test: does not"; marker="$marker compile"
    bad=$(grep -rl --include='*.go' "$marker" "$3" 2>/dev/null | head -n 1)
    if [ -f "$3/build/fail" ] || [ -n "$bad" ]; then
      echo "${{bad:-$3/build/fail}}:3:1: syntax error: unexpected }}" >&2
      echo "ERROR: error building node image: failed to build kubernetes: command \"make quick-release-images KUBE_EXTRA_WHAT=cmd/kubeadm\" failed with error: exit status 2" >&2
      exit 1
    fi
    # A test makes the build take a while by leaving its length in `build-delay`.
    if [ -f "$(dirname "$0")/build-delay" ]; then sleep "$(cat "$(dirname "$0")/build-delay")"; fi
    if [ -n "$KUBE_GIT_VERSION_FILE" ]; then cp "$KUBE_GIT_VERSION_FILE" "$(dirname "$0")/version-$img.txt" 2>/dev/null || true; fi
    ls "$3" > "$(dirname "$0")/tree-$img.txt"
    # Every file of the tree it was given, with its content: one image per tree.
    (cd "$3" && find . -name .git -prune -o -type f -print | LC_ALL=C sort | while read -r f; do echo "== $f"; cat "$f"; done) > "$(dirname "$0")/content-$img.txt"
    sum=$(md5sum < "$(dirname "$0")/content-$img.txt" | cut -c1-32)
    # By the image's label (what a node container of it carries), the tree it was built from.
    cp "$(dirname "$0")/content-$img.txt" "$(dirname "$0")/built-tree-$sum.txt"
    printf 'FROM {image}\nLABEL io.kindred.test.tree=%s\n' "$sum" | docker build -q -t "$img" - >/dev/null 2>&1
    echo "Image \"$img\" build completed." >&2 ;;
  "load docker-image")
    # kind load docker-image IMAGE --name NAME: the image must be in the Docker engine. On
    # Docker's containerd image store (a test leaves `containerd-store`) it fails as kind does.
    if [ -f "$(dirname "$0")/containerd-store" ]; then
      echo "ERROR: failed to load image: command \"docker exec --privileged -i $name-control-plane ctr --namespace=k8s.io images import --all-platforms --digests --snapshotter=overlayfs -\" failed with error: exit status 1" >&2
      echo "Command Output: ctr: content digest sha256:0000000000000000000000000000000000000000000000000000000000000000: not found" >&2
      exit 1
    fi
    docker image inspect "$3" >/dev/null || {{ echo "ERROR: image: \"$3\" not present locally" >&2; exit 1; }}
    echo "$3" >> "$(dirname "$0")/loaded-$name.txt"
    echo "Image: \"$3\" with ID \"$(docker image inspect -f '{{{{.Id}}}}' "$3")\" not yet present on node \"$name-control-plane\", loading..." >&2 ;;
  "load image-archive")
    # kind load image-archive FILE --name NAME: a docker-archive tar whose manifest.json names
    # the image (RepoTags); what it names is loaded (here: checked in the engine and recorded).
    [ -f "$3" ] || {{ echo "ERROR: failed to load image: open $3: no such file or directory" >&2; exit 1; }}
    manifest=$(tar -xOf "$3" manifest.json 2>/dev/null) || {{ echo "ERROR: failed to load image: $3: not a docker archive (no manifest.json)" >&2; exit 1; }}
    tags=$(printf '%s' "$manifest" | grep -o '"RepoTags":\[[^]]*\]' | sed 's/^"RepoTags":\[//; s/\]$//' | tr ',' '\n' | tr -d '"')
    [ -n "$tags" ] || {{ echo "ERROR: failed to load image: $3: manifest.json names no image" >&2; exit 1; }}
    for t in $tags; do
      docker image inspect "$t" >/dev/null || {{ echo "ERROR: image: \"$t\" not in the Docker engine" >&2; exit 1; }}
      echo "$t" >> "$(dirname "$0")/loaded-$name.txt"
      echo "loading $t from $3 into \"$name-control-plane\"" >&2
    done ;;
  version*)
    echo "kind v${{KIND_VERSION:-0.30.0}} go1.24.0 linux/amd64" ;;
  "export kubeconfig")
    merge_kubeconfig "$(kubeconfig_file)" hold
    echo "Set kubectl context to \"kind-$name\"" >&2 ;;
  "get kubeconfig")
    # As kind: the cluster's kubeconfig on stdout; only a cluster tied to an API server has one.
    [ -f "$tied" ] || {{ echo "ERROR: could not locate any control plane nodes for cluster named '$name'" >&2; exit 1; }}
    cat "$tied" ;;
  "delete cluster")
    echo "Deleting cluster \"$name\" ..." >&2
    docker rm -f "$name-control-plane" "$name-worker" "$name-worker2" >/dev/null
    echo "Deleted nodes: [\"$name-control-plane\" \"$name-worker\" \"$name-worker2\"]" >&2 ;;
  *) echo "ERROR: unexpected: $*" >&2; exit 1 ;;
esac
"#,
        network = network,
        label = label,
        image = IMAGE
    );
    let p = dir.join("kind");
    std::fs::write(&p, script).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    kindred::backend::kind::Kind::new(p)
}

/// A fixture fragment (only -A lines) made restorable: *nat, chain declarations, COMMIT.
pub fn restorable(fragment: &str) -> String {
    let mut chains: Vec<String> = Vec::new();
    let mut rules = Vec::new();
    for l in fragment.lines().filter(|l| l.starts_with("-A ")) {
        let words: Vec<&str> = l.split_whitespace().collect();
        chains.push(words[1].to_string());
        if let Some(i) = words.iter().position(|w| *w == "-j")
            && words[i + 1].starts_with("KUBE-")
        {
            chains.push(words[i + 1].to_string());
        }
        rules.push(l);
    }
    chains.sort();
    chains.dedup();
    let mut out = String::from("*nat\n");
    for c in chains {
        out.push_str(&format!(":{c} - [0:0]\n"));
    }
    for r in rules {
        out.push_str(r);
        out.push('\n');
    }
    out.push_str("COMMIT\n");
    out
}

/// A tmux session running a command, on a private tmux server of its own (`-L`, no config:
/// nothing of the user's tmux is touched or read); keys in, screen out. Killed on drop.
pub struct Tmux {
    pub session: String,
}

/// The tmux CLI talking to the private server `server`.
fn tmux(server: &str) -> Command {
    let mut c = Command::new("tmux");
    c.args(["-L", server, "-f", "/dev/null"]).env_remove("TMUX");
    c
}

/// Kill the private tmux servers of test runs that are gone (`kindred-TAG-PID`, PID dead): a
/// run aborted by its time limit runs no `Drop`, and would leave its dashboards running.
fn sweep_tmux() {
    // SAFETY: getuid has no preconditions and cannot fail.
    let uid = unsafe { libc::getuid() };
    let dir = std::env::var_os("TMUX_TMPDIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/tmp"))
        .join(format!("tmux-{uid}"));
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let pid = name.rsplit('-').next().and_then(|p| p.parse::<i32>().ok());
        if name.starts_with("kindred-") && pid.is_some_and(|p| !alive(p)) {
            let _ = tmux(&name).arg("kill-server").status();
            let _ = std::fs::remove_file(e.path());
        }
    }
}

impl Tmux {
    /// Run `cmd` (then print KINDRED-EXIT=<status>) in a detached w x h session.
    pub fn start_sized(tag: &str, cmd: &str, w: u16, h: u16) -> Tmux {
        time_limit();
        sweep_tmux();
        let session = format!("kindred-{tag}-{}", std::process::id());
        let log = std::env::temp_dir().join(format!("{session}.log"));
        let script = format!(
            "XDG_STATE_HOME={} KINDRED_LOG={} {cmd}; echo KINDRED-EXIT=$?; sleep 120",
            test_state().display(),
            log.display()
        );
        let st = tmux(&session)
            .args([
                "new-session",
                "-d",
                "-s",
                &session,
                "-x",
                &w.to_string(),
                "-y",
                &h.to_string(),
                &script,
            ])
            .status()
            .expect("tmux must be installed");
        assert!(st.success());
        Tmux { session }
    }

    pub fn screen(&self) -> String {
        let o = tmux(&self.session)
            .args(["capture-pane", "-p", "-t", &self.session])
            .output()
            .unwrap();
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    pub fn keys(&self, keys: &[&str]) {
        let mut args = vec!["send-keys", "-t", &self.session];
        args.extend_from_slice(keys);
        assert!(tmux(&self.session).args(&args).status().unwrap().success());
    }

    pub fn wait_for(&self, what: &str, secs: u64) -> String {
        self.wait_until(what, secs, |s| s.contains(what))
    }

    pub fn wait_until(&self, what: &str, secs: u64, ok: impl Fn(&str) -> bool) -> String {
        let end = Instant::now() + Duration::from_secs(secs);
        loop {
            let s = self.screen();
            if ok(&s) {
                return s;
            }
            if Instant::now() > end {
                panic!("timed out waiting for {what}; screen:\n{s}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Whether the pane shows the alternate screen (tmux's `alternate_on`).
    pub fn alternate_on(&self) -> bool {
        let o = tmux(&self.session)
            .args([
                "display-message",
                "-p",
                "-t",
                &self.session,
                "#{alternate_on}",
            ])
            .output()
            .unwrap();
        String::from_utf8_lossy(&o.stdout).trim() == "1"
    }

    /// The pid of kindred inside the pane (a child of the pane's shell).
    pub fn kindred_pid(&self) -> String {
        let o = tmux(&self.session)
            .args(["list-panes", "-t", &self.session, "-F", "#{pane_pid}"])
            .output()
            .unwrap();
        let shell = String::from_utf8_lossy(&o.stdout).trim().to_string();
        let o = Command::new("pgrep")
            .args(["-P", &shell, "kindred"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&o.stdout)
            .lines()
            .next()
            .unwrap_or("")
            .to_string()
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = tmux(&self.session).arg("kill-server").status();
    }
}

/// The services a `--format json` diff reports as changed.
pub fn changed_services(v: &serde_json::Value) -> Vec<&serde_json::Value> {
    v["services"]
        .as_array()
        .expect("services")
        .iter()
        .filter(|s| s["equal"] == false)
        .collect()
}

/// A container named and labelled like a kind node, on `network`, from the test node image.
pub fn run_node(name: &str, cluster: &str, role: &str, network: &str) {
    docker(&[
        "run",
        "-d",
        "--name",
        name,
        "--hostname",
        name,
        "--label",
        &format!("io.x-k8s.kind.cluster={cluster}"),
        "--label",
        &format!("io.x-k8s.kind.role={role}"),
        "--label",
        &format!("{TEST_LABEL}={}", std::process::id()),
        "--network",
        network,
        "--cap-add",
        "NET_ADMIN",
        "-v",
        "/usr:/usr:ro",
        IMAGE,
        "sleep",
        "3600",
    ]);
}

/// A kind-like cluster: its control plane and two workers (see [`run_node`]).
pub fn kind_like_cluster(cluster: &str, network: &str) {
    for (n, role) in [
        ("control-plane", "control-plane"),
        ("worker", "worker"),
        ("worker2", "worker"),
    ] {
        run_node(&format!("{cluster}-{n}"), cluster, role, network);
    }
}

/// Two kind-like clusters (`{tag}a{pid}` and `{tag}b{pid}`) on a network of their own, removed
/// with the returned guard.
pub fn two_clusters(tag: &str) -> (String, String, Cleanup) {
    image();
    let pid = std::process::id();
    let (a, b) = (format!("{tag}a{pid}"), format!("{tag}b{pid}"));
    let network = format!("kindred-{tag}-{pid}");
    network_create(&network, &[]);
    let cleanup = Cleanup {
        clusters: vec![a.clone(), b.clone()],
        network: network.clone(),
    };
    for c in [&a, &b] {
        kind_like_cluster(c, &network);
    }
    (a, b, cleanup)
}

/// The demo's test pods.
pub const POD_NAMES: [&str; 5] = [
    "echo-worker2",
    "netshoot-worker",
    "netshoot-worker2",
    "overlay-worker",
    "overlay-worker2",
];

/// Whether a word on screen is `name`, whole or shortened in its middle with both ends kept.
pub fn is_name(token: &str, name: &str) -> bool {
    token == name
        || token.split_once('…').is_some_and(|(a, b)| {
            !a.is_empty() && b.len() >= 2 && name.starts_with(a) && name.ends_with(b)
        })
}

/// The 2019 walkthrough's scenario for clusters `base` and `pr`, probing a fixed address (no
/// LoadBalancer to wait for).
pub fn scenario_2019(base: &str, pr: &str) -> String {
    kindred::scenario::WALKTHROUGH_2019
        .replacen("  name: master", &format!("  name: {base}"), 1)
        .replacen("  name: \"77523\"", &format!("  name: \"{pr}\""), 1)
        .replacen("targets: [lb]", "targets: [\"10.96.0.10:80\"]", 1)
}

/// Tie cluster `name` of the stand-in kind in `kind_dir` to the API server stand-in `server`,
/// as a kind cluster is to its API server: from then on that kind writes `server`'s kubeconfig
/// (its CA, the admin's client certificate and key) for `kind-NAME` into the file it is given
/// at `create cluster` and `export kubeconfig`, and prints it at `get kubeconfig`. Tying again
/// (the cluster made anew) replaces it.
pub fn tie(kind_dir: &std::path::Path, name: &str, server: &apiserver::ApiServer) {
    let path = kind_dir.join(format!("apiserver-{name}.yaml"));
    let tmp = kind_dir.join(format!(".apiserver-{name}.yaml.tmp"));
    std::fs::write(&tmp, server.kubeconfig(name)).unwrap();
    std::fs::rename(&tmp, &path).unwrap();
}

/// Load rules into a container with `tool` (iptables-legacy-restore, iptables-nft-restore).
pub fn restore_in(container: &str, tool: &str, rules: &str) {
    feed(container, &[tool], rules);
}

/// Run `argv` in a container with `text` on its standard input; it must succeed.
pub fn feed(container: &str, argv: &[&str], text: &str) {
    use std::io::Write;
    let mut ch = Command::new("docker")
        .args(["exec", "-i", container])
        .args(argv)
        .stdin(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    ch.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let o = ch.wait_with_output().unwrap();
    assert!(
        o.status.success(),
        "{} in {container}: {}",
        argv.join(" "),
        String::from_utf8_lossy(&o.stderr)
    );
}

/// kind-like clusters (three nodes each) and their network, removed on drop.
pub struct Cleanup {
    pub clusters: Vec<String>,
    pub network: String,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        for c in &self.clusters {
            for n in ["control-plane", "worker", "worker2"] {
                let _ = Command::new("docker")
                    .args(["rm", "-f", &format!("{c}-{n}")])
                    .output();
            }
        }
        let _ = Command::new("docker")
            .args(["network", "rm", &self.network])
            .output();
    }
}

/// Run git in `dir` (test setup), with a fixed identity; its output, trimmed.
pub fn git(dir: &std::path::Path, args: &[&str]) -> String {
    let o = Command::new("git")
        .args([
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@t",
            "-c",
            "init.defaultBranch=master",
        ])
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

/// A checkout that passes for Kubernetes: its go.mod, a v1.34.0 tag on master, and a branch
/// `fix` one commit ahead (the PR) that adds a file. Its commits are its own (`dir` is written
/// in): two tests never share a commit, nor the image tagged by it.
pub fn kubernetes_like(dir: &std::path::Path) -> (String, String) {
    git(dir, &["init", "-q"]);
    std::fs::write(dir.join("go.mod"), "module k8s.io/kubernetes\n\ngo 1.24\n").unwrap();
    std::fs::write(dir.join("OWNER"), dir.display().to_string()).unwrap();
    git(dir, &["add", "."]);
    git(dir, &["commit", "-qm", "base"]);
    git(dir, &["tag", "v1.34.0"]);
    let base = git(dir, &["rev-parse", "HEAD"]);
    git(dir, &["checkout", "-qb", "fix"]);
    std::fs::write(dir.join("proxier-fix.go"), "package nftables\n").unwrap();
    git(dir, &["add", "."]);
    git(dir, &["commit", "-qm", "fix"]);
    let pr = git(dir, &["rev-parse", "HEAD"]);
    git(dir, &["checkout", "-q", "master"]);
    (base, pr)
}

/// Events until `job` finishes (with its error, if any), within two minutes.
pub async fn until_finished(
    rx: &mut tokio::sync::mpsc::UnboundedReceiver<kindred::backend::event::Event>,
    job: kindred::model::Job,
) -> (Vec<kindred::backend::event::Event>, Option<String>) {
    use kindred::backend::event::Event;
    let mut v = Vec::new();
    loop {
        let e = tokio::time::timeout(Duration::from_secs(120), rx.recv())
            .await
            .unwrap_or_else(|_| panic!("{job:?} did not finish: {v:?}"))
            .expect("backend alive");
        if let Event::Finished { job: j, error } = &e
            && *j == job
        {
            return (v, error.clone());
        }
        v.push(e);
    }
}

/// Docker images a test made, removed when it ends.
pub struct Images(pub Vec<String>);

impl Drop for Images {
    fn drop(&mut self) {
        let _ = Command::new("docker").arg("rmi").args(&self.0).output();
    }
}

/// The images a Build of `sc` makes: each side's tag and the by-commit tags of `commits`.
pub fn built_images(sc: &kindred::scenario::Scenario, commits: &[&str]) -> Images {
    let mut tags = vec![sc.base.image.clone(), sc.pr.image.clone()];
    tags.extend(
        commits
            .iter()
            .map(|c| kindred::backend::docker::commit_tag(c)),
    );
    Images(tags)
}

/// A state directory for kindred code running inside this test process: made once, and
/// `XDG_STATE_HOME` pointed at it for the whole process; `KUBECONFIG` too (a file in it), so
/// `kind export kubeconfig` never writes the real ~/.kube/config.
pub fn in_process_state() -> &'static std::path::Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| {
        let d = tempfile::tempdir().unwrap();
        // SAFETY: set once, before the tests of this binary read the environment.
        unsafe {
            std::env::set_var("XDG_STATE_HOME", d.path());
            std::env::set_var("KUBECONFIG", d.path().join("user-kubeconfig"));
        }
        d
    })
    .path()
}

/// A live backend for `sc` with `kind`, started, once its attach finished without error; and
/// the events that follow.
pub async fn attached(
    sc: kindred::scenario::Scenario,
    kind: kindred::backend::kind::Kind,
) -> (
    kindred::backend::live::LiveBackend,
    tokio::sync::mpsc::UnboundedReceiver<kindred::backend::event::Event>,
) {
    use kindred::backend::Backend;
    let mut backend = kindred::backend::live::LiveBackend::new(sc, kind);
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    backend.start(tx);
    let (ev, err) = until_finished(&mut rx, kindred::model::Job::Attach).await;
    assert_eq!(err, None, "{ev:?}");
    (backend, rx)
}

/// The demo recording as if its scenario probed two targets, the LoadBalancer and `second`:
/// each source's result to `second` is its LoadBalancer result, but `netshoot-77523-worker2`
/// times out there.
pub fn two_targets(
    mut rec: kindred::backend::recording::Recording,
    second: &str,
) -> kindred::backend::recording::Recording {
    use kindred::backend::event::Event;
    use kindred::backend::recording;
    use kindred::model::{Outcome, Target};
    let addr = second;
    let second: Target = addr.parse().unwrap();
    let mut out = Vec::new();
    for r in rec.records.drain(..) {
        let extra = match &r.event {
            Event::Session(s) => {
                let mut s = s.clone();
                s.probe_targets = vec![Target::Lb, second.clone()];
                out.push(recording::Record {
                    t: r.t,
                    event: Event::Session(s),
                });
                continue;
            }
            Event::Probe { side, result } => {
                let mut again = result.clone();
                again.target = addr.into();
                again.scenario_target = Some(second.clone());
                if again.source == "netshoot-77523-worker2" {
                    again.outcome = Outcome::Timeout;
                    again.http_status = None;
                }
                Some(Event::Probe {
                    side: *side,
                    result: again,
                })
            }
            _ => None,
        };
        let t = r.t;
        out.push(r);
        if let Some(event) = extra {
            out.push(recording::Record { t, event });
        }
    }
    rec.records = out;
    rec
}

/// The `nft monitor` processes running in a container, seen through the engine (nothing needed
/// in the container): the monitor itself, not a shell whose script names it.
pub fn monitors_in(container: &str) -> usize {
    docker(&["top", container, "-eo", "pid,args"])
        .lines()
        .filter(|l| {
            let args = l.trim_start().split_once(' ').map_or("", |(_, a)| a.trim());
            args == "nft monitor"
        })
        .count()
}

/// Wait up to `secs` for `ok`; whether it held.
pub fn within(secs: f64, ok: impl Fn() -> bool) -> bool {
    let end = Instant::now() + Duration::from_secs_f64(secs);
    loop {
        if ok() {
            return true;
        }
        if Instant::now() > end {
            return false;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The k3s cluster's real kube-proxy table (nftables mode), loadable with `nft -f` (comments
/// dropped), its output filter chain at hook priority `priority` (-110 in the dump).
pub fn k3s_table(priority: &str) -> String {
    let text = std::fs::read_to_string(fixture(
        "nftables/k3s-real-nft-list-table-ip-kube-proxy.txt",
    ))
    .unwrap();
    let body: String = text
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| format!("{l}\n"))
        .collect();
    body.replace(
        "type filter hook output priority -110; policy accept;",
        &format!("type filter hook output priority {priority}; policy accept;"),
    )
}
