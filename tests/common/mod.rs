//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::OnceLock;

pub fn fixture(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(rel)
}

pub fn kindred(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kindred"))
        .args(args)
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

/// A minimal node image: busybox-static for a shell, sleep and httpd; the host's /usr is mounted
/// read-only at run time for iptables, nft and curl.
pub fn image() -> &'static str {
    static DONE: OnceLock<()> = OnceLock::new();
    DONE.get_or_init(|| {
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
/// names and labels, on `network`, from the test node image.
pub fn standin(dir: &std::path::Path, network: &str) -> kindred::backend::kind::Kind {
    let script = format!(
        r#"#!/bin/bash
set -e
cmd="$1 $2"
name=""
args=("$@")
for ((i=0; i<${{#args[@]}}; i++)); do [ "${{args[$i]}}" = "--name" ] && name="${{args[$((i+1))]}}"; done
case "$cmd" in
  "create cluster")
    echo "Creating cluster \"$name\" ..." >&2
    echo " • Preparing nodes 📦 📦 📦   ..." >&2
    for n in control-plane worker worker2; do
      role=worker; [ "$n" = control-plane ] && role=control-plane
      docker run -d --name "$name-$n" --hostname "$name-$n" \
        --label io.x-k8s.kind.cluster="$name" --label io.x-k8s.kind.role="$role" \
        --network {network} --cap-add NET_ADMIN -v /usr:/usr:ro {image} sleep 3600 >/dev/null
    done
    echo " ✓ Preparing nodes 📦 📦 📦" >&2
    echo "Set kubectl context to \"kind-$name\"" >&2 ;;
  "delete cluster")
    echo "Deleting cluster \"$name\" ..." >&2
    docker rm -f "$name-control-plane" "$name-worker" "$name-worker2" >/dev/null
    echo "Deleted nodes: [\"$name-control-plane\" \"$name-worker\" \"$name-worker2\"]" >&2 ;;
  *) echo "ERROR: unexpected: $*" >&2; exit 1 ;;
esac
"#,
        network = network,
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
