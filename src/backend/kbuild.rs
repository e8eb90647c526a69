//! Kubernetes' own build entry points, for one binary (kube-proxy): `make WHAT=cmd/kube-proxy`
//! with the host's Go when it is the Go the source pins (same major.minor), else the
//! containerized build `build/run.sh make WHAT=cmd/kube-proxy` (the one kind uses for node
//! images, with the pinned Go). argv only.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Result, anyhow, bail};
use tokio::process::Command;
use tokio_util::sync::CancellationToken;

/// How long compiling kube-proxy may take (a cold containerized build pulls its build image).
pub const COMPILE_LIMIT: Duration = Duration::from_secs(3600);

/// How the binary is built, and why that way.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum How {
    /// `make` on the host, with this Go ("go1.24.4"): `why` it is the one the source pins.
    Host { go: String, why: String },
    /// `build/run.sh make` in Kubernetes' build container; why the host's Go was not used.
    Container { why: String },
}

impl std::fmt::Display for How {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            How::Host { go, why } => write!(f, "make on the host ({go}: {why})"),
            How::Container { why } => write!(f, "build/run.sh, in the build container ({why})"),
        }
    }
}

/// Docker's and Go's name for the host's architecture.
pub fn arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "powerpc64" => "ppc64le",
        other => other,
    }
}

/// "go version go1.24.4 linux/amd64" (or "go1.25rc1"): (1, 24, 4).
pub fn parse_go(text: &str) -> Option<(u32, u32, u32)> {
    let v = text
        .split_whitespace()
        .find_map(|w| {
            w.strip_prefix("go")
                .filter(|r| r.starts_with(|c: char| c.is_ascii_digit()))
        })
        .or_else(|| Some(text.trim()).filter(|t| t.starts_with(|c: char| c.is_ascii_digit())))?;
    let core: String = v
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.')
        .collect();
    let mut it = core.split('.').map(|n| n.parse::<u32>().ok());
    Some((it.next()??, it.next()??, it.next().flatten().unwrap_or(0)))
}

/// The Go a source tree pins, and the file that says so.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pin {
    pub go: (u32, u32, u32),
    /// `.go-version` or `go.mod`.
    pub file: &'static str,
}

impl std::fmt::Display for Pin {
    /// "go1.25.1 (.go-version)".
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (a, b, c) = self.go;
        write!(f, "go{a}.{b}.{c} ({})", self.file)
    }
}

/// The Go a source tree pins: `.go-version` (Kubernetes >= 1.30), else go.mod's `go` line.
pub fn wanted_go(dir: &Path) -> Option<Pin> {
    if let Ok(t) = std::fs::read_to_string(dir.join(".go-version"))
        && let Some(go) = parse_go(&t)
    {
        return Some(Pin {
            go,
            file: ".go-version",
        });
    }
    let m = std::fs::read_to_string(dir.join("go.mod")).ok()?;
    let go = m
        .lines()
        .find_map(|l| l.trim().strip_prefix("go "))
        .and_then(parse_go)?;
    Some(Pin { go, file: "go.mod" })
}

/// The host's Go, when there is one that answers `go version` within 10 seconds.
async fn host_go() -> Option<(String, (u32, u32, u32))> {
    use super::process::{MAX_VERSION, Overflow, capture, first_line};
    let mut cmd = Command::new("go");
    cmd.arg("version");
    let limit = Duration::from_secs(10);
    let out = capture(cmd, "go version", MAX_VERSION, Overflow::Stop, limit)
        .await
        .ok()?
        .ok()?;
    let v = parse_go(&first_line(&out.stdout))?;
    Some((format!("go{}.{}.{}", v.0, v.1, v.2), v))
}

/// Which way to build in `dir`: see [`decide`].
pub async fn choose(dir: &Path) -> How {
    decide(host_go().await, wanted_go(dir))
}

/// The host's Go (its name, "go1.25.3", and version) only when its major.minor is the one the
/// source pins (Kubernetes builds with the toolchain it pins: a newer Go vets, compiles and
/// links differently); otherwise the build container, which has the pinned Go.
pub fn decide(host: Option<(String, (u32, u32, u32))>, pin: Option<Pin>) -> How {
    let Some((name, have)) = host else {
        return How::Container {
            why: "no Go on the host".into(),
        };
    };
    let Some(pin) = pin else {
        return How::Container {
            why: format!(
                "the source pins no Go (no .go-version, no go line in go.mod), host {name}"
            ),
        };
    };
    let (want, got) = ((pin.go.0, pin.go.1), (have.0, have.1));
    let line = format!("go{}.{}", want.0, want.1);
    if got == want {
        return How::Host {
            go: name,
            why: format!("the {line} the source pins, {pin}"),
        };
    }
    let than = if got > want { "newer" } else { "older" };
    How::Container {
        why: format!(
            "host {name} is {than} than the {line} the source pins, {pin}: Kubernetes builds with the Go it pins"
        ),
    }
}

/// The argv of a build and where its binary lands.
pub fn plan(dir: &Path, how: &How, arch: &str) -> (Vec<String>, PathBuf) {
    let vars = [
        "WHAT=cmd/kube-proxy".to_string(),
        format!("KUBE_BUILD_PLATFORMS=linux/{arch}"),
        "KUBE_VERBOSE=0".to_string(),
    ];
    let (mut argv, sub) = match how {
        How::Host { .. } => (
            vec![
                "make".to_string(),
                "-C".into(),
                dir.display().to_string(),
                "all".into(),
                "FORCE_HOST_GO=y".into(),
            ],
            "local",
        ),
        How::Container { .. } => (
            vec![
                dir.join("build/run.sh").display().to_string(),
                "make".into(),
                "all".into(),
            ],
            "dockerized",
        ),
    };
    argv.extend(vars);
    let bin = dir
        .join("_output")
        .join(sub)
        .join("bin/linux")
        .join(arch)
        .join("kube-proxy");
    (argv, bin)
}

/// Build kube-proxy in `dir` the way `how` says; every output line goes to `on_line`. Returns
/// the binary's path.
pub async fn kube_proxy(
    dir: &Path,
    how: &How,
    env: &[(&str, &str)],
    on_line: impl FnMut(&str),
    cancel: &CancellationToken,
) -> Result<PathBuf> {
    let (argv, bin) = plan(dir, how, arch());
    let mut cmd = Command::new(&argv[0]);
    cmd.args(&argv[1..])
        .current_dir(dir)
        .envs(env.iter().copied());
    super::process::prepare(&mut cmd);
    let what = format!("{} {}", argv[0], argv[1..].join(" "));
    let tool = argv[0].clone();
    let spawn_err = move |e: std::io::Error| anyhow!("running {tool}: {e}");
    let status =
        super::process::stream(cmd, &what, spawn_err, on_line, cancel, COMPILE_LIMIT).await?;
    if !status.success() {
        bail!("{what} failed ({})", super::process::exit_text(status));
    }
    if !bin.is_file() {
        bail!("{what} finished but left no {}", bin.display());
    }
    Ok(bin)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_versions_and_build_plans() {
        assert_eq!(
            parse_go("go version go1.24.4 linux/amd64"),
            Some((1, 24, 4))
        );
        assert_eq!(
            parse_go("go version go1.25rc1 linux/amd64"),
            Some((1, 25, 0))
        );
        assert_eq!(parse_go("1.24.4\n"), Some((1, 24, 4)));
        assert_eq!(parse_go("1.24"), Some((1, 24, 0)));
        assert_eq!(parse_go("nothing"), None);
        let t = tempfile::tempdir().unwrap();
        std::fs::write(
            t.path().join("go.mod"),
            "module k8s.io/kubernetes\n\ngo 1.24.0\n",
        )
        .unwrap();
        let pin = |go, file| Some(Pin { go, file });
        assert_eq!(wanted_go(t.path()), pin((1, 24, 0), "go.mod"));
        std::fs::write(t.path().join(".go-version"), "1.25.1\n").unwrap();
        assert_eq!(wanted_go(t.path()), pin((1, 25, 1), ".go-version"));
        let how = How::Container {
            why: "no Go on the host".into(),
        };
        let (argv, bin) = plan(Path::new("/k"), &how, "arm64");
        assert_eq!(
            argv,
            [
                "/k/build/run.sh",
                "make",
                "all",
                "WHAT=cmd/kube-proxy",
                "KUBE_BUILD_PLATFORMS=linux/arm64",
                "KUBE_VERBOSE=0"
            ]
        );
        assert_eq!(
            bin,
            Path::new("/k/_output/dockerized/bin/linux/arm64/kube-proxy")
        );
        let (argv, bin) = plan(
            Path::new("/k"),
            &How::Host {
                go: "go1.25.1".into(),
                why: "pinned".into(),
            },
            "amd64",
        );
        assert_eq!(&argv[..5], ["make", "-C", "/k", "all", "FORCE_HOST_GO=y"]);
        assert_eq!(
            bin,
            Path::new("/k/_output/local/bin/linux/amd64/kube-proxy")
        );
        assert_eq!(
            how.to_string(),
            "build/run.sh, in the build container (no Go on the host)"
        );
    }

    #[test]
    fn the_host_go_is_used_only_when_it_is_the_pinned_major_minor() {
        let pin = Some(Pin {
            go: (1, 25, 1),
            file: ".go-version",
        });
        let host = |v: (u32, u32, u32)| Some((format!("go{}.{}.{}", v.0, v.1, v.2), v));
        // Newer: a later minor, or a later major, is not the pinned toolchain.
        for newer in [(1, 26, 0), (2, 0, 0)] {
            let how = decide(host(newer), pin);
            let How::Container { why } = &how else {
                panic!("{newer:?}: {how}")
            };
            assert!(
                why.contains("is newer than the go1.25 the source pins, go1.25.1 (.go-version)"),
                "{why}"
            );
        }
        let how = decide(host((1, 24, 9)), pin);
        assert!(
            matches!(&how, How::Container { why } if why.contains("host go1.24.9 is older than the go1.25")),
            "{how}"
        );
        // The same major.minor, whatever the patch: the host.
        for same in [(1, 25, 1), (1, 25, 0), (1, 25, 7)] {
            let how = decide(host(same), pin);
            assert!(
                matches!(&how, How::Host { go, .. } if *go == host(same).unwrap().0),
                "{same:?}: {how}"
            );
        }
        assert_eq!(
            decide(host((1, 25, 3)), pin).to_string(),
            "make on the host (go1.25.3: the go1.25 the source pins, go1.25.1 (.go-version))"
        );
        assert_eq!(
            decide(None, pin).to_string(),
            "build/run.sh, in the build container (no Go on the host)"
        );
        let how = decide(host((1, 25, 1)), None);
        assert!(
            matches!(&how, How::Container { why } if why.contains("pins no Go")),
            "{how}"
        );
        // A go.mod pin says so.
        let m = Pin {
            go: (1, 22, 0),
            file: "go.mod",
        };
        assert!(
            decide(host((1, 22, 5)), Some(m))
                .to_string()
                .contains("go1.22.0 (go.mod)")
        );
    }
}
