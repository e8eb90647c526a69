//! The Docker engine through bollard: kind's node containers, commands run inside them (rule
//! dumps, probes from a node's network namespace), node images.

use std::collections::HashMap;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use bollard::models::ExecConfig;
use bollard::query_parameters::ListContainersOptions;
use futures::StreamExt;

use crate::model::{NodeRole, ProxyMode};

/// How long the engine has to answer a ping or the version negotiation.
pub const ANSWER: std::time::Duration = std::time::Duration::from_secs(5);

/// Where the Docker engine is: `DOCKER_HOST`, else the current docker context (`DOCKER_CONTEXT`,
/// else the CLI config's `currentContext`), as kind and the docker CLI find it; else the default
/// socket.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Endpoint {
    pub host: String,
    /// "DOCKER_HOST", "docker context NAME" or "default".
    pub from: String,
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.host, self.from)
    }
}

/// Where the engine keeps its images.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImageStore {
    /// containerd's image store (`driver-type io.containerd.snapshotter.v1` in the engine's
    /// driver status; the default on fresh Docker 29 installs), with its snapshotter.
    Containerd { snapshotter: String },
    /// The classic store of a graph driver (overlay2, ...).
    Classic { driver: String },
}

/// The image store a system info describes.
pub fn image_store(info: &bollard::models::SystemInfo) -> ImageStore {
    let containerd = info.driver_status.iter().flatten().any(|kv| {
        matches!(&kv[..], [k, v, ..] if k == "driver-type" && v == "io.containerd.snapshotter.v1")
    });
    let driver = info.driver.clone().unwrap_or_else(|| "unknown".into());
    if containerd {
        ImageStore::Containerd {
            snapshotter: driver,
        }
    } else {
        ImageStore::Classic { driver }
    }
}

/// The engine's endpoint, from the environment and the docker CLI's config.
pub fn endpoint() -> Endpoint {
    if let Some(h) = std::env::var("DOCKER_HOST").ok().filter(|h| !h.is_empty()) {
        return Endpoint {
            host: h,
            from: "DOCKER_HOST".into(),
        };
    }
    let config = std::env::var_os("DOCKER_CONFIG")
        .map(std::path::PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| std::path::PathBuf::from(h).join(".docker")));
    let context = std::env::var("DOCKER_CONTEXT")
        .ok()
        .filter(|c| !c.is_empty())
        .or_else(|| {
            let text = std::fs::read_to_string(config.as_ref()?.join("config.json")).ok()?;
            let v: serde_json::Value = serde_json::from_str(&text).ok()?;
            v.get("currentContext")?.as_str().map(str::to_string)
        })
        .filter(|c| c != "default");
    if let (Some(name), Some(dir)) = (context, config)
        && let Some(host) = context_host(&dir.join("contexts").join("meta"), &name)
    {
        return Endpoint {
            host,
            from: format!("docker context {name}"),
        };
    }
    Endpoint {
        host: "unix:///var/run/docker.sock".into(),
        from: "default".into(),
    }
}

/// The docker endpoint of context `name`: its `meta.json` under `meta` names it.
fn context_host(meta: &std::path::Path, name: &str) -> Option<String> {
    for d in std::fs::read_dir(meta).ok()?.flatten() {
        let Ok(text) = std::fs::read_to_string(d.path().join("meta.json")) else {
            continue;
        };
        let Ok(v) = serde_json::from_str::<serde_json::Value>(&text) else {
            continue;
        };
        if v.get("Name").and_then(|n| n.as_str()) == Some(name) {
            return v
                .pointer("/Endpoints/docker/Host")
                .and_then(|h| h.as_str())
                .map(str::to_string);
        }
    }
    None
}

/// kind's labels on its node containers.
pub const LABEL_CLUSTER: &str = "io.x-k8s.kind.cluster";
pub const LABEL_ROLE: &str = "io.x-k8s.kind.role";
/// Every node image kindred builds is also tagged `kindred/node:<first 12 hex digits of the
/// commit>`: an image for that exact commit is not built again.
pub fn commit_tag(sha: &str) -> String {
    format!("kindred/node:{}", &sha[..sha.len().min(12)])
}

/// A kind node container.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct KindNode {
    pub id: String,
    pub name: String,
    pub cluster: String,
    pub role: NodeRole,
    /// Docker's state: running, exited, ...
    pub state: String,
    pub image: String,
    /// The ID of the image the container runs ("sha256:...").
    pub image_id: String,
    /// IP addresses by network name.
    pub ips: Vec<(String, String)>,
}

impl KindNode {
    /// Docker says the container is running.
    pub fn running(&self) -> bool {
        self.state == "running"
    }
}

/// What a command run in a container printed, and how it ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecOutput {
    pub stdout: String,
    pub stderr: String,
    pub code: i64,
}

/// A long-lived shell in a node that runs a save tool each time a line naming it arrives on its
/// stdin and ends the output with a marker line: a refresh then costs no new exec.
struct Session {
    input: std::pin::Pin<Box<dyn tokio::io::AsyncWrite + Send>>,
    output: std::pin::Pin<
        Box<
            dyn futures::Stream<
                    Item = Result<bollard::container::LogOutput, bollard::errors::Error>,
                > + Send,
        >,
    >,
    pending: Vec<u8>,
}

/// The session's script. It runs only the command names kindred sends (constants below), never
/// anything from user input.
const SESSION_SCRIPT: &str =
    "while read -r tool; do \"$tool\" 2>/dev/null; echo \"__KINDRED_END__ $?\"; done";
const END: &[u8] = b"__KINDRED_END__ ";

/// Where a node's rules were found in kube-proxy's nftables table (kept with the save tools).
const NFT_TABLE: &str = "nft list table ip kube-proxy";
/// How long one read of a node's rules may take.
const READ_LIMIT: Duration = Duration::from_secs(30);

/// The lines of an iptables dump that name a KUBE- chain.
fn kube_rules(text: &str) -> usize {
    text.lines().filter(|l| l.contains("KUBE-")).count()
}

/// Runs `nft monitor` in a node until kindred closes its stdin (then the monitor is killed, not
/// left behind) or the monitor ends by itself (no nft). Constant: nothing from user input.
///
/// The exec's stdin moves to fd 3 first: in `sh -c` (no job control) an asynchronous list's
/// stdin is /dev/null (POSIX), so a plain `read` in the background would return at once and
/// kill the monitor. The watcher reads fd 3, writes nothing to the exec's output (which then
/// ends with the monitor), and is itself ended when the monitor ends first.
const MONITOR_SCRIPT: &str = "exec 3<&0 </dev/null; nft monitor 3<&- & m=$!; \
{ read -r _ <&3; kill $m; } >/dev/null 2>&1 & r=$!; exec 3<&-; \
wait $m; s=$?; kill $r 2>/dev/null; exit $s";

/// At most this much of what `nft monitor` says on stderr is kept (why it ended).
const SAID_MAX: usize = 1024;
/// The most a node's rule dump (a tool's standard output) may hold: kube-proxy's rules for
/// tens of thousands of Services are a few hundred MB; past this a read is an error, never a
/// dump parsed cut short.
const MAX_OUTPUT: usize = super::input::MAX_INPUT as usize;
/// What is kept of a tool's standard error (shown in errors).
const MAX_STDERR: usize = 64 << 10;
/// What is kept of one `nft monitor` line without its end.
const MAX_EVENT_LINE: usize = 64 << 10;

/// Append `message` to `buf` unless that makes it longer than `max`.
fn bounded(buf: &mut Vec<u8>, message: &[u8], max: usize) -> Result<()> {
    if buf.len() + message.len() > max {
        bail!("output over {} MiB: not read", max >> 20);
    }
    buf.extend_from_slice(message);
    Ok(())
}

type Shared<T> = std::sync::Arc<tokio::sync::Mutex<T>>;

#[derive(Clone)]
pub struct Docker {
    inner: bollard::Docker,
    endpoint: Endpoint,
    /// Which save tool (or [`NFT_TABLE`]) holds kube-proxy's rules, per node, once found:
    /// later reads run one command instead of two.
    save_tool: std::sync::Arc<std::sync::Mutex<HashMap<String, &'static str>>>,
    /// Per node, a session that runs the save tool on request.
    sessions: std::sync::Arc<std::sync::Mutex<HashMap<String, Shared<Session>>>>,
}

impl Docker {
    /// Connect as the docker CLI would (DOCKER_HOST, else the local socket).
    /// Connect to the engine at [`endpoint`], check that it answers within [`ANSWER`], and
    /// agree on an API version with it (bollard 0.21 sends none in its URLs; negotiating keeps
    /// an older engine working whatever bollard's default becomes).
    pub async fn connect() -> Result<Docker> {
        let ep = endpoint();
        let inner = bollard::Docker::connect_with_host(&ep.host)
            .with_context(|| format!("connecting to the Docker engine at {ep}"))?;
        let answer = |what: &str| {
            format!(
                "the Docker engine at {ep} did not answer {what} within {}s (is dockerd running?)",
                ANSWER.as_secs()
            )
        };
        tokio::time::timeout(ANSWER, inner.ping())
            .await
            .map_err(|_| anyhow!(answer("a ping")))?
            .map_err(|e| anyhow!("the Docker engine at {ep} does not answer: {e}"))?;
        let inner = tokio::time::timeout(ANSWER, inner.negotiate_version())
            .await
            .map_err(|_| anyhow!(answer("the version negotiation")))?
            .map_err(|e| {
                anyhow!("negotiating the API version with the Docker engine at {ep}: {e}")
            })?;
        Ok(Docker {
            inner,
            endpoint: ep,
            save_tool: Default::default(),
            sessions: Default::default(),
        })
    }

    /// Where this engine is, and why there.
    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// The engine's version and the API version agreed on.
    pub async fn version(&self) -> Result<(String, String)> {
        let v = tokio::time::timeout(ANSWER, self.inner.version())
            .await
            .map_err(|_| {
                anyhow!(
                    "the Docker engine at {} did not say its version",
                    self.endpoint
                )
            })?
            .map_err(|e| anyhow!("the Docker engine's version: {e}"))?;
        let api = self.inner.client_version();
        Ok((
            v.version.unwrap_or_else(|| "?".into()),
            format!("{}.{}", api.major_version, api.minor_version),
        ))
    }

    /// Which image store the engine keeps images in (from its system info).
    pub async fn image_store(&self) -> Result<ImageStore> {
        let info = tokio::time::timeout(ANSWER, self.inner.info())
            .await
            .map_err(|_| {
                anyhow!(
                    "the Docker engine at {} did not give its system info in {}s",
                    self.endpoint,
                    ANSWER.as_secs()
                )
            })?
            .map_err(|e| anyhow!("the Docker engine's system info: {e}"))?;
        Ok(image_store(&info))
    }

    /// Check the engine answers.
    /// Every kind node container (running or not), sorted by cluster and name.
    pub async fn kind_nodes(&self) -> Result<Vec<KindNode>> {
        let mut filters = HashMap::new();
        filters.insert("label".to_string(), vec![LABEL_CLUSTER.to_string()]);
        let list = self
            .inner
            .list_containers(Some(ListContainersOptions {
                all: true,
                filters: Some(filters),
                ..Default::default()
            }))
            .await
            .map_err(|e| anyhow!("listing containers at {}: {e}", self.endpoint))?;
        let mut nodes: Vec<KindNode> = list
            .into_iter()
            .filter_map(|c| {
                let labels = c.labels.unwrap_or_default();
                let cluster = labels.get(LABEL_CLUSTER)?.clone();
                let name = c
                    .names
                    .unwrap_or_default()
                    .first()
                    .map(|n| n.trim_start_matches('/').to_string())
                    .unwrap_or_default();
                let ips = c
                    .network_settings
                    .and_then(|n| n.networks)
                    .map(|nets| {
                        let mut v: Vec<(String, String)> = nets
                            .into_iter()
                            .filter_map(|(net, ep)| {
                                ep.ip_address
                                    .filter(|ip| !ip.is_empty())
                                    .map(|ip| (net, ip))
                            })
                            .collect();
                        v.sort();
                        v
                    })
                    .unwrap_or_default();
                Some(KindNode {
                    id: c.id.unwrap_or_default(),
                    name,
                    cluster,
                    role: NodeRole::from_label(labels.get(LABEL_ROLE).map_or("", |r| r.as_str())),
                    state: c.state.map(|s| s.to_string()).unwrap_or_default(),
                    image: c.image.unwrap_or_default(),
                    image_id: c.image_id.unwrap_or_default(),
                    ips,
                })
            })
            .collect();
        nodes.sort_by(|a, b| (&a.cluster, &a.name).cmp(&(&b.cluster, &b.name)));
        Ok(nodes)
    }

    /// The nodes of one cluster.
    pub async fn cluster_nodes(&self, cluster: &str) -> Result<Vec<KindNode>> {
        Ok(self
            .kind_nodes()
            .await?
            .into_iter()
            .filter(|n| n.cluster == cluster)
            .collect())
    }

    /// Run `argv` in a container (no shell), with a time limit.
    pub async fn exec(
        &self,
        container: &str,
        argv: &[&str],
        limit: Duration,
    ) -> Result<ExecOutput> {
        let fut = self.exec_inner(container, argv);
        match tokio::time::timeout(limit, fut).await {
            Ok(r) => r,
            Err(_) => bail!(
                "{container}: `{}` did not finish within {}s",
                argv.join(" "),
                limit.as_secs()
            ),
        }
    }

    async fn exec_inner(&self, container: &str, argv: &[&str]) -> Result<ExecOutput> {
        let (stdout, stderr, code) = self.exec_raw(container, argv).await?;
        Ok(ExecOutput {
            stdout: String::from_utf8_lossy(&stdout).into_owned(),
            stderr: String::from_utf8_lossy(&stderr).into_owned(),
            code,
        })
    }

    /// Run `argv` in a container: its stdout and stderr as bytes, and its exit code.
    async fn exec_raw(&self, container: &str, argv: &[&str]) -> Result<(Vec<u8>, Vec<u8>, i64)> {
        let created = self
            .inner
            .create_exec(
                container,
                ExecConfig {
                    attach_stdout: Some(true),
                    attach_stderr: Some(true),
                    cmd: Some(argv.iter().map(|s| s.to_string()).collect()),
                    ..Default::default()
                },
            )
            .await
            .map_err(|e| anyhow!("{container}: cannot run `{}`: {e}", argv.join(" ")))?;
        let mut stdout = Vec::new();
        let mut stderr = Vec::new();
        match self
            .inner
            .start_exec(&created.id, None)
            .await
            .map_err(|e| anyhow!("{container}: starting `{}`: {e}", argv.join(" ")))?
        {
            bollard::exec::StartExecResults::Attached { mut output, .. } => {
                while let Some(chunk) = output.next().await {
                    match chunk.map_err(|e| anyhow!("{container}: reading output: {e}"))? {
                        bollard::container::LogOutput::StdOut { message } => {
                            bounded(&mut stdout, &message, MAX_OUTPUT)
                                .map_err(|e| anyhow!("{container}: `{}`: {e}", argv.join(" ")))?
                        }
                        bollard::container::LogOutput::StdErr { message } => {
                            let room = MAX_STDERR.saturating_sub(stderr.len());
                            stderr.extend_from_slice(&message[..message.len().min(room)])
                        }
                        _ => {}
                    }
                }
            }
            bollard::exec::StartExecResults::Detached => {}
        }
        let code = self
            .inner
            .inspect_exec(&created.id)
            .await
            .map_err(|e| anyhow!("{container}: inspecting exec: {e}"))?
            .exit_code
            .unwrap_or(-1);
        Ok((stdout, stderr, code))
    }

    /// A node's kube-proxy metrics text, by curl in the node container (kube-proxy runs in the
    /// host network, and kind leaves its metrics on 127.0.0.1:10249); curl's own limit is a
    /// second short of `limit`. What did not answer is named.
    pub async fn read_metrics(&self, container: &str, limit: Duration) -> Result<String> {
        let secs = limit.as_secs().saturating_sub(1).max(1).to_string();
        let url = super::metrics::METRICS_URL;
        let argv = ["curl", "-sS", "--max-time", &secs, url];
        let o = self.exec(container, &argv, limit).await?;
        if o.code != 0 {
            bail!(
                "{container}: kube-proxy's metrics at {url} did not answer (curl exited {}): {}",
                o.code,
                o.stderr.trim()
            );
        }
        Ok(o.stdout)
    }

    /// A node's kube-proxy rules, in whichever mode its kube-proxy writes them: the scenario's
    /// `mode` is tried first, the other when that finds none (a cluster made elsewhere may run
    /// either). iptables: both `iptables-legacy-save` and `iptables-nft-save` are read and the
    /// one holding more KUBE- rules wins (how kind's iptables wrapper picks the mode).
    /// nftables: `nft list table ip kube-proxy`. Where neither holds any, the iptables dump
    /// (a plain `iptables-save` as the fallback): kube-proxy has not written yet. Which source
    /// held them is remembered per node (see [`Docker::found_mode`]).
    pub async fn read_rules(&self, container: &str, mode: ProxyMode) -> Result<String> {
        let known = self.save_tool.lock().unwrap().get(container).copied();
        if let Some(tool) = known {
            let found = if tool == NFT_TABLE {
                self.read_nft(container).await?
            } else {
                self.read_known_save(container, tool).await
            };
            if let Some(text) = found {
                return Ok(text);
            }
            // The rules moved, or the session broke: start over.
            self.sessions.lock().unwrap().remove(container);
            self.save_tool.lock().unwrap().remove(container);
        }
        let nft = async {
            match self.read_nft(container).await {
                Ok(Some(text)) => {
                    self.remember(container, NFT_TABLE);
                    Ok(Some(text))
                }
                other => other,
            }
        };
        if mode == ProxyMode::Nftables {
            let first = nft.await;
            if let Ok(Some(text)) = first {
                return Ok(text);
            }
            let (n, text) = self.read_iptables(container).await?;
            return match first {
                // No nft (or no access to it), and no iptables rules either: say why.
                Err(e) if n == 0 => Err(e),
                _ => Ok(text),
            };
        }
        let (n, text) = self.read_iptables(container).await?;
        if n == 0
            && let Ok(Some(nft)) = nft.await
        {
            return Ok(nft);
        }
        Ok(text)
    }

    /// The mode a node's kube-proxy rules were last found in, when they were.
    pub fn found_mode(&self, container: &str) -> Option<ProxyMode> {
        let tool = self.save_tool.lock().unwrap().get(container).copied()?;
        Some(if tool == NFT_TABLE {
            ProxyMode::Nftables
        } else {
            ProxyMode::Iptables
        })
    }

    fn remember(&self, container: &str, tool: &'static str) {
        self.save_tool
            .lock()
            .unwrap()
            .insert(container.to_string(), tool);
    }

    /// kube-proxy's nftables table: `None` when the node has none (no such table).
    async fn read_nft(&self, container: &str) -> Result<Option<String>> {
        let argv = ["nft", "list", "table", "ip", "kube-proxy"];
        let o = self.exec(container, &argv, READ_LIMIT).await?;
        if o.code == 0 {
            return Ok(Some(o.stdout));
        }
        if o.stderr.contains("No such file or directory") {
            return Ok(None);
        }
        bail!(
            "{container}: nft list table ip kube-proxy failed: {}",
            o.stderr.trim()
        )
    }

    /// The rules through the save tool found before, in the node's session: `None` when that
    /// no longer holds kube-proxy's rules (or the session broke).
    async fn read_known_save(&self, container: &str, tool: &'static str) -> Option<String> {
        match tokio::time::timeout(READ_LIMIT, self.session_run(container, tool)).await {
            Ok(Ok((0, text))) if kube_rules(&text) > 0 => return Some(text),
            Ok(Ok(_)) => {}
            Ok(Err(e)) => tracing::info!("{container}: rules session: {e:#}"),
            Err(_) => tracing::info!("{container}: rules session timed out"),
        }
        None
    }

    /// The iptables dump holding more KUBE- rules (legacy or nft), with how many; the tool is
    /// remembered when it holds any. A plain `iptables-save` when neither tool runs.
    async fn read_iptables(&self, container: &str) -> Result<(usize, String)> {
        let (legacy, nft) = tokio::join!(
            self.exec(container, &["iptables-legacy-save"], READ_LIMIT),
            self.exec(container, &["iptables-nft-save"], READ_LIMIT)
        );
        let mut best: Option<(usize, &'static str, String)> = None;
        for (tool, o) in [("iptables-legacy-save", legacy), ("iptables-nft-save", nft)] {
            if let Ok(o) = o
                && o.code == 0
            {
                let n = kube_rules(&o.stdout);
                if best.as_ref().is_none_or(|(b, _, _)| n > *b) {
                    best = Some((n, tool, o.stdout));
                }
            }
        }
        if let Some((n, tool, text)) = best {
            if n > 0 {
                self.remember(container, tool);
            }
            return Ok((n, text));
        }
        let o = self.exec(container, &["iptables-save"], READ_LIMIT).await?;
        if o.code != 0 {
            bail!(
                "{container}: iptables-save failed (exit {}): {}",
                o.code,
                o.stderr.trim()
            );
        }
        Ok((kube_rules(&o.stdout), o.stdout))
    }

    async fn open_session(&self, container: &str) -> Result<Session> {
        let created = self
            .inner
            .create_exec(
                container,
                ExecConfig {
                    attach_stdin: Some(true),
                    attach_stdout: Some(true),
                    attach_stderr: Some(true),
                    cmd: Some(vec!["sh".into(), "-c".into(), SESSION_SCRIPT.into()]),
                    ..Default::default()
                },
            )
            .await
            .map_err(|e| anyhow!("{container}: cannot start a rules session: {e}"))?;
        match self
            .inner
            .start_exec(&created.id, None)
            .await
            .map_err(|e| anyhow!("{container}: starting a rules session: {e}"))?
        {
            bollard::exec::StartExecResults::Attached { output, input } => Ok(Session {
                input,
                output,
                pending: Vec::new(),
            }),
            bollard::exec::StartExecResults::Detached => bail!("{container}: session detached"),
        }
    }

    /// Run `tool` in the node's session (opened on first use): (exit code, stdout).
    async fn session_run(&self, container: &str, tool: &'static str) -> Result<(i64, String)> {
        use tokio::io::AsyncWriteExt;
        let existing = self.sessions.lock().unwrap().get(container).cloned();
        let session = match existing {
            Some(s) => s,
            None => {
                let s = std::sync::Arc::new(tokio::sync::Mutex::new(
                    self.open_session(container).await?,
                ));
                self.sessions
                    .lock()
                    .unwrap()
                    .insert(container.to_string(), s.clone());
                s
            }
        };
        let mut s = session.lock().await;
        s.input.write_all(format!("{tool}\n").as_bytes()).await?;
        s.input.flush().await?;
        let mut out: Vec<u8> = std::mem::take(&mut s.pending);
        loop {
            // The marker line ends this command's output.
            if let Some(at) = memchr::memmem::find(&out, END)
                && (at == 0 || out[at - 1] == b'\n')
                && let Some(nl) = memchr::memchr(b'\n', &out[at..])
            {
                let code: i64 = std::str::from_utf8(&out[at + END.len()..at + nl])
                    .ok()
                    .and_then(|c| c.trim().parse().ok())
                    .unwrap_or(-1);
                s.pending = out[at + nl + 1..].to_vec();
                out.truncate(at);
                return Ok((code, String::from_utf8_lossy(&out).into_owned()));
            }
            match s.output.next().await {
                Some(Ok(bollard::container::LogOutput::StdOut { message })) => {
                    if let Err(e) = bounded(&mut out, &message, MAX_OUTPUT) {
                        // The session's state is unknown past this: the next read starts anew.
                        self.sessions.lock().unwrap().remove(container);
                        bail!("{container}: `{tool}`: {e}");
                    }
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => bail!("{container}: rules session: {e}"),
                None => bail!("{container}: rules session ended"),
            }
        }
    }

    /// Whether an image with this tag exists.
    pub async fn image_exists(&self, tag: &str) -> Result<bool> {
        Ok(self.inspect(tag).await?.is_some())
    }

    /// Tag `image` as `target` ("repo:tag").
    pub async fn tag(&self, image: &str, target: &str) -> Result<()> {
        let (repo, tag) = target.rsplit_once(':').unwrap_or((target, "latest"));
        let opts = bollard::query_parameters::TagImageOptions {
            repo: Some(repo.to_string()),
            tag: Some(tag.to_string()),
        };
        tokio::time::timeout(IMAGE_ANSWER, self.inner.tag_image(image, Some(opts)))
            .await
            .map_err(|_| {
                anyhow!(
                    "tagging {image} as {target}: the Docker engine at {} did not answer",
                    self.endpoint
                )
            })?
            .map_err(|e| anyhow!("tagging {image} as {target}: {e}"))
    }

    /// The subnet (IPv4) of a Docker network, e.g. kind's "kind" network.
    pub async fn network_subnet(&self, network: &str) -> Result<String> {
        let n = self
            .inner
            .inspect_network(
                network,
                None::<bollard::query_parameters::InspectNetworkOptions>,
            )
            .await
            .map_err(|e| {
                anyhow!(
                    "inspecting Docker network {network} at {}: {e}",
                    self.endpoint
                )
            })?;
        n.ipam
            .and_then(|i| i.config)
            .unwrap_or_default()
            .into_iter()
            .filter_map(|c| c.subnet)
            .find(|s| s.contains('.'))
            .ok_or_else(|| anyhow!("Docker network {network} has no IPv4 subnet"))
    }

    /// Whether a node's kube-proxy rules are known to live in iptables-legacy (read with
    /// `iptables-legacy-save`), where `nft monitor` cannot see them change.
    pub fn in_legacy(&self, container: &str) -> bool {
        self.save_tool.lock().unwrap().get(container) == Some(&"iptables-legacy-save")
    }

    /// Whether a node's kube-proxy rules were found yet (and with which tool they are read).
    pub fn rules_found(&self, container: &str) -> bool {
        self.save_tool.lock().unwrap().contains_key(container)
    }

    /// Follow a node's nf_tables changes with `nft monitor`: `on_change` hears each event line
    /// until `cancel` (which ends the monitor in the node) or the monitor ends by itself.
    pub async fn monitor(
        &self,
        container: &str,
        mut on_change: impl FnMut(&str),
        cancel: &tokio_util::sync::CancellationToken,
    ) -> Result<()> {
        let config = ExecConfig {
            attach_stdin: Some(true),
            attach_stdout: Some(true),
            attach_stderr: Some(true),
            cmd: Some(vec!["sh".into(), "-c".into(), MONITOR_SCRIPT.into()]),
            ..Default::default()
        };
        let start = async {
            let created = self.inner.create_exec(container, config).await?;
            self.inner.start_exec(&created.id, None).await
        };
        let started = tokio::time::timeout(ANSWER, start)
            .await
            .map_err(|_| {
                anyhow!(
                    "{container}: `nft monitor` did not start within {}s",
                    ANSWER.as_secs()
                )
            })?
            .map_err(|e| anyhow!("{container}: cannot run `nft monitor`: {e}"))?;
        let bollard::exec::StartExecResults::Attached {
            mut output,
            mut input,
        } = started
        else {
            bail!("{container}: `nft monitor` detached");
        };
        let mut pending = Vec::new();
        // What the monitor said on stderr: why it ended, when it ends by itself.
        let mut said = Vec::new();
        loop {
            let chunk = tokio::select! {
                c = output.next() => c,
                _ = cancel.cancelled() => break,
            };
            match chunk {
                Some(Ok(bollard::container::LogOutput::StdOut { message })) => {
                    pending.extend_from_slice(&message);
                    while let Some(i) = pending.iter().position(|b| *b == b'\n') {
                        let line: Vec<u8> = pending.drain(..=i).collect();
                        on_change(String::from_utf8_lossy(&line).trim_end());
                    }
                    // A line without its end is still a change; what is kept of it is bounded.
                    if pending.len() > MAX_EVENT_LINE {
                        on_change(&String::from_utf8_lossy(&pending[..MAX_EVENT_LINE]));
                        pending.clear();
                    }
                }
                Some(Ok(bollard::container::LogOutput::StdErr { message })) => {
                    let room = SAID_MAX.saturating_sub(said.len());
                    said.extend_from_slice(&message[..message.len().min(room)]);
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => bail!("{container}: `nft monitor`: {e}"),
                None => {
                    let said = String::from_utf8_lossy(&said);
                    let said: String = said.trim().chars().filter(|c| !c.is_control()).collect();
                    if said.is_empty() {
                        bail!("{container}: `nft monitor` ended");
                    }
                    bail!("{container}: `nft monitor` ended: {said}");
                }
            }
        }
        // Closing its stdin (EOF on the watcher's fd 3) ends the monitor in the node.
        use tokio::io::AsyncWriteExt;
        let _ = tokio::time::timeout(ANSWER, input.shutdown()).await;
        drop(input);
        Ok(())
    }

    /// An image as the engine describes it, `None` when there is none by that name.
    async fn inspect(&self, image: &str) -> Result<Option<bollard::models::ImageInspect>> {
        let inspect = self.inner.inspect_image(image);
        match tokio::time::timeout(IMAGE_ANSWER, inspect).await {
            Err(_) => bail!(
                "the Docker engine at {} did not answer an inspect of {image}",
                self.endpoint
            ),
            Ok(Ok(i)) => Ok(Some(i)),
            Ok(Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 404, ..
            })) => Ok(None),
            Ok(Err(e)) => Err(anyhow!(
                "inspecting image {image} at {}: {e}",
                self.endpoint
            )),
        }
    }

    /// The ID of an image ("sha256:..."), `None` when there is none by that name.
    pub async fn image_id(&self, image: &str) -> Result<Option<String>> {
        Ok(self.inspect(image).await?.and_then(|i| i.id))
    }

    /// A label of an image in the engine; `None` when the image or the label is not there.
    pub async fn image_label(&self, image: &str, key: &str) -> Result<Option<String>> {
        let i = self.inspect(image).await?;
        Ok(i.and_then(|i| i.config)
            .and_then(|c| c.labels)
            .and_then(|mut l| l.remove(key)))
    }

    /// Run `argv` in a container (no shell) and keep its stdout as bytes (an image archive);
    /// a non-zero exit is an error with its stderr.
    pub async fn exec_bytes(
        &self,
        container: &str,
        argv: &[&str],
        limit: Duration,
    ) -> Result<Vec<u8>> {
        let run = async {
            let (out, err, code) = self.exec_raw(container, argv).await?;
            if code != 0 {
                let msg = String::from_utf8_lossy(&err).trim().to_string();
                bail!("{container}: `{}` exited {code}: {msg}", argv.join(" "));
            }
            Ok(out)
        };
        tokio::time::timeout(limit, run).await.map_err(|_| {
            anyhow!(
                "{container}: `{}` did not finish within {}s",
                argv.join(" "),
                limit.as_secs()
            )
        })?
    }

    /// Save `image` as an archive (`docker save`: a docker-archive tar with a `manifest.json`)
    /// into `file`, streamed. With the classic image store an image is one platform already;
    /// on the containerd store a locally built image holds the platform it was built for.
    pub async fn save_image(&self, image: &str, file: &std::path::Path) -> Result<()> {
        use tokio::io::AsyncWriteExt;
        let run = async {
            let mut out = tokio::fs::File::create(file)
                .await
                .map_err(|e| anyhow!("{}: {e}", file.display()))?;
            let mut s = self.inner.export_image(image);
            while let Some(chunk) = s.next().await {
                let chunk = chunk.map_err(|e| {
                    anyhow!(
                        "saving image {image} from the Docker engine at {}: {e}",
                        self.endpoint
                    )
                })?;
                out.write_all(&chunk)
                    .await
                    .map_err(|e| anyhow!("{}: {e}", file.display()))?;
            }
            out.flush()
                .await
                .map_err(|e| anyhow!("{}: {e}", file.display()))
        };
        tokio::time::timeout(BUILD_LIMIT, run).await.map_err(|_| {
            anyhow!(
                "the Docker engine at {} did not save image {image} within {}s",
                self.endpoint,
                BUILD_LIMIT.as_secs()
            )
        })?
    }

    /// The Kubernetes version a kind node image records in `/kind/version` ("v1.30.2"): read
    /// through a container created from the image (never started), removed after. `None` when
    /// the image holds no such file.
    pub async fn node_image_version(&self, image: &str) -> Result<Option<String>> {
        let body = bollard::models::ContainerCreateBody {
            image: Some(image.to_string()),
            cmd: Some(vec!["/kind/version".to_string()]),
            labels: Some([("io.kindred.version-read".to_string(), "1".to_string())].into()),
            ..Default::default()
        };
        let read = async {
            let c = self
                .inner
                .create_container(None, body)
                .await
                .map_err(|e| anyhow!("reading /kind/version of image {image}: {e}"))?;
            let opts = bollard::query_parameters::DownloadFromContainerOptions {
                path: "/kind/version".into(),
            };
            let mut s = self.inner.download_from_container(&c.id, Some(opts));
            let mut tar = Vec::new();
            let mut missing = false;
            while let Some(chunk) = s.next().await {
                match chunk {
                    Ok(b) if tar.len() + b.len() <= 1 << 20 => tar.extend_from_slice(&b),
                    Ok(_) => {
                        missing = true;
                        break;
                    }
                    Err(bollard::errors::Error::DockerResponseServerError {
                        status_code: 404,
                        ..
                    }) => {
                        missing = true;
                        break;
                    }
                    Err(e) => {
                        let _ = self.remove_created(&c.id).await;
                        bail!("reading /kind/version of image {image}: {e}");
                    }
                }
            }
            self.remove_created(&c.id).await?;
            if missing {
                return Ok(None);
            }
            first_file(&tar).map_err(|e| anyhow!("/kind/version of image {image}: {e}"))
        };
        tokio::time::timeout(READ_LIMIT, read).await.map_err(|_| {
            anyhow!(
                "the Docker engine at {} did not give /kind/version of image {image} within {}s",
                self.endpoint,
                READ_LIMIT.as_secs()
            )
        })?
    }

    async fn remove_created(&self, id: &str) -> Result<()> {
        let opts = bollard::query_parameters::RemoveContainerOptions {
            force: true,
            ..Default::default()
        };
        self.inner
            .remove_container(id, Some(opts))
            .await
            .map_err(|e| anyhow!("removing container {id}: {e}"))
    }

    /// Load an image archive (`docker load`: a Docker or OCI tar).
    pub async fn load_image(&self, archive: Vec<u8>) -> Result<()> {
        let opts = bollard::query_parameters::ImportImageOptions::default();
        let body = bollard::body_full(archive.into());
        let mut s = self.inner.import_image(opts, body, None);
        let run = async {
            while let Some(r) = s.next().await {
                r.map_err(|e| {
                    anyhow!(
                        "loading an image into the Docker engine at {}: {e}",
                        self.endpoint
                    )
                })?;
            }
            Ok(())
        };
        tokio::time::timeout(BUILD_LIMIT, run).await.map_err(|_| {
            anyhow!(
                "the Docker engine at {} did not load an image within {}s",
                self.endpoint,
                BUILD_LIMIT.as_secs()
            )
        })?
    }

    /// Build an image tagged `tag` from a build context (a tar holding a Dockerfile); every
    /// line of the build's output goes to `on_line`. Nothing is pulled.
    pub async fn build_image(
        &self,
        context: Vec<u8>,
        tag: &str,
        mut on_line: impl FnMut(&str),
    ) -> Result<()> {
        let opts = bollard::query_parameters::BuildImageOptions {
            dockerfile: "Dockerfile".into(),
            t: Some(tag.to_string()),
            rm: true,
            forcerm: true,
            ..Default::default()
        };
        let mut s = self
            .inner
            .build_image(opts, None, Some(bollard::body_full(context.into())));
        let run = async {
            while let Some(r) = s.next().await {
                let info = r.map_err(|e| anyhow!("building image {tag}: {e}"))?;
                if let Some(e) = info.error_detail.and_then(|d| d.message) {
                    bail!("building image {tag}: {e}");
                }
                for l in info.stream.iter().flat_map(|t| t.lines()) {
                    if !l.trim().is_empty() {
                        on_line(l.trim_end());
                    }
                }
            }
            Ok(())
        };
        tokio::time::timeout(BUILD_LIMIT, run).await.map_err(|_| {
            anyhow!(
                "building image {tag}: no end after {}s",
                BUILD_LIMIT.as_secs()
            )
        })?
    }
}

/// How long an image inspect may take.
const IMAGE_ANSWER: Duration = Duration::from_secs(30);
/// How long loading or building an image may take.
pub const BUILD_LIMIT: Duration = Duration::from_secs(600);

/// The text of the first file of a tar (a `docker cp` archive of one file), trimmed.
fn first_file(tar: &[u8]) -> Result<Option<String>> {
    use std::io::Read;
    let mut a = tar::Archive::new(tar);
    for e in a.entries()? {
        let mut e = e?;
        if e.header().entry_type().is_file() {
            let mut text = String::new();
            e.by_ref().take(4096).read_to_string(&mut text)?;
            return Ok(Some(text.trim().to_string()));
        }
    }
    Ok(None)
}

/// A build context: a tar of `files` (path, mode, bytes).
pub fn build_context(files: &[(&str, u32, &[u8])]) -> Result<Vec<u8>> {
    let mut b = tar::Builder::new(Vec::new());
    for (path, mode, data) in files {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(*mode);
        h.set_mtime(0);
        h.set_cksum();
        b.append_data(&mut h, path, *data)?;
    }
    Ok(b.into_inner()?)
}

#[cfg(test)]
mod tests {
    use super::bounded;

    /// Output is kept up to the bound, and past it the read fails instead of growing without end.
    #[test]
    fn output_past_its_bound_is_an_error_not_kept() {
        let mut buf = Vec::new();
        bounded(&mut buf, b"12345", 8).unwrap();
        bounded(&mut buf, b"678", 8).unwrap();
        let e = bounded(&mut buf, b"9", 8).unwrap_err().to_string();
        assert!(e.contains("not read"), "{e}");
        assert_eq!(buf, b"12345678", "nothing past the bound is kept");
    }
}
