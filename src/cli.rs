//! Command-line interface.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;

use anyhow::{Context, Result, anyhow};
use clap::{Parser, Subcommand, ValueEnum};

use crate::rules::{self, Comparison, Options, ServiceFilter};

pub mod trace;

#[derive(Debug, Parser)]
#[command(
    name = "kindred",
    version,
    about = "Run a Kubernetes networking change side by side with its base: two kind clusters, one dashboard"
)]
pub struct Cli {
    /// Log file (logs never go to the terminal).
    #[arg(long, global = true, env = "KINDRED_LOG")]
    pub log_file: Option<PathBuf>,
    /// Scenario file (default: ./kindred.yaml, else the built-in scenario).
    #[arg(short = 'f', long = "file", global = true, value_name = "FILE")]
    pub file: Option<PathBuf>,
    /// Without a command: `up`.
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// The dashboard on the live backend: kind, Docker and the API server for both sides.
    Up(UpArgs),
    /// Write a commented starter scenario (the built-in one) to ./kindred.yaml or -f FILE.
    Init(InitArgs),
    /// Compare the kube-proxy rules of two dumps (iptables-save or iptables -S output), per service.
    ///
    /// Exit status: 0 no difference, 1 differences, 2 trouble.
    Diff(DiffArgs),
    /// Trace one packet through a node's kube-proxy rules (iptables or nftables): the path, every
    /// rule that matched, and the verdict (dnat to which endpoints, drop, reject, accept). With
    /// two dumps, the same packet through base and PR, side by side.
    ///
    /// Exit status: 0 traced (two dumps: the same verdict), 1 the verdicts differ, 2 trouble
    /// (also: a rule the tracer cannot evaluate).
    Trace(trace::TraceArgs),
    /// kind clusters found through the Docker API, their nodes, and which kindred created.
    Clusters(ClustersArgs),
    /// The whole pipeline without a screen, and a verdict: each probe on base and PR against its
    /// expected outcome, and the Service's rule diff. Exit 0 every expectation holds, 1 one
    /// does not, 2 trouble, 3 none fails but a probe's tries disagree (FLAKY).
    Check(CheckArgs),
    /// Find the commit between a good and a bad ref where the PR side's verdict flips: each
    /// step puts a commit into the PR side's cluster (a kube-proxy swap when the range touches
    /// only kube-proxy's code, else a node-image rebuild), probes it and judges it by the
    /// scenario's expectations for the PR side (or by --probe). Exit 0 the first bad commit
    /// found, 1 not found (skipped commits hide it), 2 stopped (an end that is not what it was
    /// said to be) or trouble.
    Bisect(BisectArgs),
    /// What on this box would stop a live run: Docker, kind, git, curl, the Kubernetes source and
    /// refs, the versions they make, disk and memory; with --context, a cluster named by a
    /// kubeconfig context instead. Exit 0 nothing fails, 1 a check fails, 2 trouble.
    Doctor(DoctorArgs),
    /// Build kube-proxy from a side's source (its ref, or the working tree), swap it into that
    /// side's running cluster and wait for the rollout; then read the rules and probe again.
    /// Enough for a kube-proxy change; anything else needs a node-image rebuild. Exit 0
    /// swapped, 1 the swap failed (the cluster keeps its kube-proxy), 2 trouble.
    SwapProxy(SwapArgs),
    /// The dashboard on a built-in recording: the 2019 walkthrough of kubernetes PR 77523
    /// (clusters "master" and "77523"). Needs no Docker and no cluster.
    Demo(PlayArgs),
    /// The dashboard on a recorded session (see `--record`).
    Replay(ReplayArgs),
}

#[derive(Debug, clap::Args)]
pub struct SwapArgs {
    /// Which side's cluster.
    #[arg(value_enum, default_value_t = SwapSide::Pr)]
    pub side: SwapSide,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum SwapSide {
    Base,
    Pr,
    Both,
}

#[derive(Debug, clap::Args)]
pub struct CheckArgs {
    /// Compute the verdict from a recording instead of live clusters.
    #[arg(long, value_name = "FILE")]
    pub replay: Option<PathBuf>,
    /// Write a Markdown report (fit for a pull request comment).
    #[arg(long, value_name = "FILE")]
    pub report_md: Option<PathBuf>,
    /// Write a JSON report (schema: assets/check-report.schema.json).
    #[arg(long, value_name = "FILE")]
    pub report_json: Option<PathBuf>,
    /// Write a JUnit XML report (one test case per expectation).
    #[arg(long, value_name = "FILE")]
    pub junit: Option<PathBuf>,
    /// Leave the clusters up (by default those kindred created are deleted at the end).
    #[arg(long)]
    pub keep: bool,
    /// Write the reports without a verdict: exit 0 whatever the expectations say, and also
    /// when there are none (else "no expectations: nothing judged" is exit 2).
    #[arg(long)]
    pub report_only: bool,
    /// Also write the run's events to FILE (the recording format), up to the verdict: `check
    /// --replay FILE` gives the same verdict and predictions.
    #[arg(long, value_name = "FILE")]
    pub record: Option<PathBuf>,
    /// Flag a PR side (and a PR probe) whose p99 time is more than FACTOR times the base's;
    /// overrides the scenario's `probes.latency_factor` (default 2; above 1).
    #[arg(long, value_name = "FACTOR", value_parser = latency_factor)]
    pub latency_factor: Option<crate::model::Factor>,
}

#[derive(Debug, clap::Args)]
pub struct BisectArgs {
    /// The scenario (as -f FILE; default: ./kindred.yaml, else the built-in one).
    #[arg(value_name = "SCENARIO")]
    pub scenario: Option<PathBuf>,
    /// A ref whose PR-side verdict is good: tag, branch, SHA or pr/N.
    #[arg(long, value_name = "REF", required_unless_present = "resume", value_parser = git_ref("--good"))]
    pub good: Option<String>,
    /// A newer ref whose PR-side verdict is bad.
    #[arg(long, value_name = "REF", required_unless_present = "resume", value_parser = git_ref("--bad"))]
    pub bad: Option<String>,
    /// Judge each step by this one probe source (a PR-side pod) instead of the scenario's
    /// expectations for the PR side.
    #[arg(long, value_name = "SOURCE", value_parser = probe_source)]
    pub probe: Option<String>,
    /// Probe rounds per step (1 to 20): all must agree, else the step is flaky and skipped.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=20))]
    pub repeat: Option<u32>,
    /// Swap a freshly compiled kube-proxy into the running PR cluster at each step, whatever
    /// the range touches.
    #[arg(long, conflicts_with = "rebuild")]
    pub swap: bool,
    /// Build a node image and recreate the PR cluster at each step, whatever the range touches.
    #[arg(long)]
    pub rebuild: bool,
    /// Visit every commit of the range, not only the first-parent (merge) commits.
    #[arg(long)]
    pub all_commits: bool,
    /// Continue the last bisect (interrupted or not) with its refs, flags and scenario: the
    /// steps already judged come from the cache.
    #[arg(long, conflicts_with_all = ["good", "bad", "probe", "repeat", "swap", "rebuild", "all_commits", "replay", "scenario"])]
    pub resume: bool,
    /// Output format (markdown: for pasting into an issue).
    #[arg(long, value_enum, default_value_t = BisectFormat::Text)]
    pub format: BisectFormat,
    /// Leave the clusters up (by default those kindred created are deleted at the end).
    #[arg(long)]
    pub keep: bool,
    /// Show the bisect a recording holds instead of running one (no Docker, no cluster).
    #[arg(long, value_name = "FILE")]
    pub replay: Option<PathBuf>,
    /// Also write the run's events to FILE (the recording format): `bisect --replay FILE` and
    /// `kindred replay FILE` show the same bisect.
    #[arg(long, value_name = "FILE")]
    pub record: Option<PathBuf>,
}

/// `kindred bisect`'s output formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum BisectFormat {
    Text,
    Json,
    Markdown,
}

/// `--good`/`--bad`: a ref git cannot read as an option.
fn git_ref(flag: &'static str) -> impl Fn(&str) -> Result<String, String> + Clone {
    move |s: &str| {
        crate::app::bisect::check_ref(flag, s)?;
        Ok(s.to_string())
    }
}

fn probe_source(s: &str) -> Result<String, String> {
    if s.is_empty() || s.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!(
            "'{}': a probe source is a pod name (no spaces)",
            rules::render::visible(s)
        ));
    }
    Ok(s.to_string())
}

#[derive(Debug, clap::Args)]
pub struct DoctorArgs {
    /// Output format.
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    pub format: OutputFormat,
    /// No network: refs that need a fetch (pr/N) are not resolved (what `kindred` and `check`
    /// run at start).
    #[arg(long)]
    pub quick: bool,
    /// Check this kubeconfig context instead (any cluster, through its API server; no Docker,
    /// no scenario): its API server answers within 5 s, the permissions kindred needs (each
    /// missing one with the RBAC rule that grants it), kube-proxy's mode and version per node.
    #[arg(long, value_name = "NAME")]
    pub context: Option<String>,
    /// With --context: kindred's namespace in that cluster (where debug pods run).
    #[arg(
        long,
        value_name = "NS",
        default_value = "kindred",
        requires = "context"
    )]
    pub namespace: String,
    /// With --context: how rules are read, which decides the permissions needed.
    #[arg(long, value_enum, default_value_t = ReadArg::Exec, requires = "context")]
    pub read: ReadArg,
}

/// How a context's rules are read (the scenario's `read:`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ReadArg {
    /// Exec into each node's kube-proxy pod.
    Exec,
    /// A debug pod on each node.
    Debug,
    /// Exec, and a debug pod where exec is refused or there is no kube-proxy pod.
    ExecOrDebug,
}

impl From<ReadArg> for crate::backend::context::ReadVia {
    fn from(a: ReadArg) -> Self {
        use crate::backend::context::ReadVia;
        match a {
            ReadArg::Exec => ReadVia::Exec,
            ReadArg::Debug => ReadVia::Debug,
            ReadArg::ExecOrDebug => ReadVia::ExecOrDebug,
        }
    }
}

#[derive(Debug, clap::Args)]
pub struct InitArgs {
    /// Overwrite an existing file.
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, clap::Args)]
pub struct ClustersArgs {
    /// List this kubeconfig context's nodes instead (any cluster, through its API server; no
    /// Docker): name, role, InternalIP and its kube-proxy pod.
    #[arg(long, value_name = "NAME")]
    pub context: Option<String>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    pub format: OutputFormat,
}

/// Options of every dashboard.
#[derive(Debug, Default, clap::Args)]
pub struct DashArgs {
    /// Also write the session's events to FILE (the recording format).
    #[arg(long, value_name = "FILE")]
    pub record: Option<PathBuf>,
    /// Do not capture the mouse (lets the terminal select text).
    #[arg(long)]
    pub no_mouse: bool,
    /// Flag a PR side (and a PR probe) whose p99 time is more than FACTOR times the base's;
    /// overrides the scenario's `probes.latency_factor` (default 2; above 1).
    #[arg(long, value_name = "FACTOR", value_parser = latency_factor)]
    pub latency_factor: Option<crate::model::Factor>,
}

/// `--latency-factor`: a finite number above 1.
fn latency_factor(s: &str) -> Result<crate::model::Factor, String> {
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() && v > 1.0 => Ok(crate::model::Factor(v)),
        _ => Err(format!(
            "'{s}': a factor above 1 (how many times the base's p99 the PR side's may be)"
        )),
    }
}

/// Options of the live dashboard.
#[derive(Debug, Default, clap::Args)]
pub struct UpArgs {
    /// Watch mode: seconds between re-reads of nodes that cannot report their own rule changes
    /// (iptables-legacy); overrides the scenario's `watch.interval` (0.1 to 3600).
    #[arg(long, value_name = "SECS", value_parser = watch_interval)]
    pub watch_interval: Option<f64>,
    #[command(flatten)]
    pub dash: DashArgs,
}

fn watch_interval(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if (0.1..=3600.0).contains(&v) => Ok(v),
        _ => Err(format!("'{s}': seconds, from 0.1 to 3600")),
    }
}

#[derive(Debug, clap::Args)]
pub struct PlayArgs {
    /// Playback speed: 1 is real time, 10 ten times faster (0.01 to 1000).
    #[arg(long, default_value_t = 1.0, value_parser = speed, allow_negative_numbers = true)]
    pub speed: f64,
    #[command(flatten)]
    pub dash: DashArgs,
}

#[derive(Debug, clap::Args)]
pub struct ReplayArgs {
    /// A recording (JSON Lines, see README "Recordings").
    pub file: PathBuf,
    #[command(flatten)]
    pub play: PlayArgs,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ColorWhen {
    Auto,
    Always,
    Never,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    Text,
    Json,
}

#[derive(Debug, clap::Args)]
pub struct DiffArgs {
    /// The base side's dump: a file, - for standard input, node:CONTAINER to read a kind
    /// node's rules live through the Docker API, or ctx:CONTEXT/NODE to read any cluster's
    /// node through its API server (a KUBECONFIG context; exec into its kube-proxy pod).
    pub base: String,
    /// The PR side's dump: a file, -, node:CONTAINER or ctx:CONTEXT/NODE.
    pub pr: String,
    /// Only this service: NAMESPACE/NAME (all ports), NAMESPACE/NAME: (unnamed port) or
    /// NAMESPACE/NAME:PORT.
    #[arg(long, value_name = "NS/NAME[:PORT]")]
    pub service: Option<String>,
    /// Compare rules exactly as written (no normalization of hashes, ports, IPs, counters).
    #[arg(long)]
    pub raw: bool,
    /// Leave out kube-proxy's shared chains (compared by default, whatever --service says,
    /// since they affect every Service).
    #[arg(long)]
    pub no_shared: bool,
    /// nftables: compare every table of an `nft list ruleset`, not only kube-proxy's.
    #[arg(long)]
    pub all_tables: bool,
    /// Colour: auto honours NO_COLOR and a non-terminal stdout.
    #[arg(long, value_enum, default_value_t = ColorWhen::Auto)]
    pub color: ColorWhen,
    /// Output format: text, json (schema kindred.diff/v2: each rule once, equal services by
    /// count), or json-v1 (every rule of both sides in full, as before).
    #[arg(long, value_enum, default_value_t = DiffFormat::Text)]
    pub format: DiffFormat,
    /// Also what changed for packets: every Service's packet classes (a pod on the node, the
    /// host, a client outside × its ClusterIP, LB and external IPs, NodePort) traced through
    /// both dumps, those whose outcome differs listed first (JSON: under `packets`). The exit
    /// status also counts them.
    #[arg(long)]
    pub packets: bool,
    /// With --packets: the node's address (repeat for each); default: the dump's
    /// (`nodeport-ips`), else 192.0.2.10, said in the output.
    #[arg(long = "node-ip", value_name = "IP", requires = "packets", value_parser = node_ip)]
    pub node_ip: Vec<std::net::Ipv4Addr>,
}

fn node_ip(s: &str) -> Result<std::net::Ipv4Addr, String> {
    s.trim()
        .parse()
        .map_err(|_| format!("'{}' is not an IPv4 address", rules::render::visible(s)))
}

/// `kindred diff`'s output formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DiffFormat {
    Text,
    Json,
    JsonV1,
}

/// The playback speeds accepted.
pub const SPEEDS: std::ops::RangeInclusive<f64> = 0.01..=1000.0;

fn speed(s: &str) -> Result<f64, String> {
    let v: f64 = s
        .trim()
        .parse()
        .map_err(|_| format!("'{s}' is not a number"))?;
    if !SPEEDS.contains(&v) {
        return Err(format!(
            "{s} is out of range: from {} (slower) to {} (faster); 1 is real time",
            SPEEDS.start(),
            SPEEDS.end()
        ));
    }
    Ok(v)
}

/// Write `text` to standard output. A closed pipe ends the output quietly (like other Unix
/// tools); any other failure (a full disk) is an error naming standard output.
pub fn emit(text: &str) -> Result<()> {
    let mut out = std::io::stdout().lock();
    stdout_result(out.write_all(text.as_bytes()).and_then(|_| out.flush()))
}

/// What a write to standard output came to: a closed pipe is a quiet end (like other Unix
/// tools); any other failure is an error naming standard output.
fn stdout_result(r: std::io::Result<()>) -> Result<()> {
    match r {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        Err(e) => Err(anyhow!("writing to standard output: {e}")),
    }
}

/// Write `v` as pretty JSON (and a newline) to standard output as it is serialized, with
/// [`emit`]'s handling of a closed pipe and a full disk.
pub fn emit_json<T: serde::Serialize>(v: &T) -> Result<()> {
    let mut w = std::io::BufWriter::with_capacity(1 << 16, std::io::stdout().lock());
    let r = serde_json::to_writer_pretty(&mut w, v)
        .map_err(std::io::Error::from)
        .and_then(|_| w.write_all(b"\n"))
        .and_then(|_| w.flush());
    stdout_result(r)
}

/// Bytes written to standard output as they are produced, with [`emit`]'s handling of a closed
/// pipe and a full disk.
pub fn emit_bytes(f: impl FnOnce(&mut dyn Write) -> std::io::Result<()>) -> Result<()> {
    let mut w = std::io::BufWriter::with_capacity(1 << 16, std::io::stdout().lock());
    let r = f(&mut w).and_then(|_| w.flush());
    stdout_result(r)
}

/// Text written to standard output as it is produced, with [`emit`]'s handling of a closed
/// pipe and a full disk.
pub fn emit_with(f: impl FnOnce(&mut StdoutText)) -> Result<()> {
    let mut t = StdoutText {
        w: std::io::BufWriter::with_capacity(1 << 16, std::io::stdout().lock()),
        error: None,
    };
    f(&mut t);
    stdout_result(match t.error.take() {
        Some(e) => Err(e),
        None => t.w.flush(),
    })
}

/// Standard output as a `fmt::Write`: the first failure is kept, and nothing more is written.
pub struct StdoutText {
    w: std::io::BufWriter<std::io::StdoutLock<'static>>,
    error: Option<std::io::Error>,
}

impl std::fmt::Write for StdoutText {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        if self.error.is_some() {
            return Err(std::fmt::Error);
        }
        self.w.write_all(s.as_bytes()).map_err(|e| {
            self.error = Some(e);
            std::fmt::Error
        })
    }
}

/// A progress line on standard error; a closed or full standard error is ignored.
fn progress(line: String) {
    let _ = writeln!(std::io::stderr(), "{}", rules::render::visible(&line));
}

/// The recording `kindred demo` plays.
pub const DEMO_RECORDING: &str = include_str!("../assets/demo.jsonl");

fn no_color() -> bool {
    std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty())
}

/// The scenario: `-f FILE`, else ./kindred.yaml when there is one, else the built-in default.
pub fn load_scenario(file: Option<&std::path::Path>) -> Result<crate::scenario::Scenario> {
    use crate::scenario::Scenario;
    match file {
        Some(f) => Scenario::load(f),
        None => {
            let local = std::path::Path::new("kindred.yaml");
            if local.exists() {
                Scenario::load(local)
            } else {
                Ok(Scenario::builtin())
            }
        }
    }
}

/// `kindred init`.
pub fn run_init(file: Option<&std::path::Path>, a: &InitArgs) -> Result<i32> {
    let path = file.unwrap_or(std::path::Path::new("kindred.yaml"));
    if path.exists() && !a.force {
        return Err(anyhow!(
            "{} exists: not overwriting it (--force to do so)",
            path.display()
        ));
    }
    std::fs::write(path, crate::scenario::DEFAULT)
        .with_context(|| format!("{}: cannot write", path.display()))?;
    emit(&format!(
        "wrote {}: set the Kubernetes source and refs, then run `kindred`\n",
        path.display()
    ))?;
    Ok(0)
}

/// `kindred doctor`.
pub fn run_doctor(file: Option<&std::path::Path>, a: &DoctorArgs) -> Result<i32> {
    use crate::backend::doctor::{self, Depth, Report};
    let rt = tokio::runtime::Runtime::new()?;
    let r = match &a.context {
        Some(context) => {
            let c = crate::backend::context::ContextRef {
                context: context.clone(),
                kubeconfig: None,
            };
            let checks =
                crate::backend::doctor_context::context_checks(&c, &a.namespace, a.read.into());
            Report::new(rt.block_on(checks))
        }
        None => {
            let sc = load_scenario(file)?;
            let depth = if a.quick { Depth::Quick } else { Depth::Full };
            let kind = crate::backend::kind::Kind::default();
            rt.block_on(doctor::run(&sc, &kind, depth))
        }
    };
    let out = match a.format {
        OutputFormat::Json => format!("{}\n", serde_json::to_string_pretty(&r)?),
        OutputFormat::Text => rules::render::visible_lines(&doctor::table(&r)),
    };
    emit(&out)?;
    Ok(if r.ok { 0 } else { 1 })
}

/// The quick preflight before a headless live run: warnings and failures on standard error; a
/// failure stops the run.
fn preflight(sc: &crate::scenario::Scenario, kind: &crate::backend::kind::Kind) -> Result<()> {
    use crate::backend::doctor::{self, Depth, Status};
    let rt = tokio::runtime::Runtime::new()?;
    let r = rt.block_on(doctor::run(sc, kind, Depth::Quick));
    for c in r.checks.iter().filter(|c| c.status != Status::Ok) {
        let fix = c.fix.as_deref().unwrap_or("");
        let st = if c.status == Status::Fail {
            "FAIL"
        } else {
            "warn"
        };
        progress(format!(
            "doctor: {st} {}: {} (fix: {fix})",
            c.name, c.message
        ));
    }
    if !r.ok {
        let n = r.checks.iter().filter(|c| c.status == Status::Fail).count();
        return Err(anyhow!(
            "{n} preflight check{} failed: nothing was started (`kindred doctor` shows them all)",
            if n == 1 { "" } else { "s" }
        ));
    }
    Ok(())
}

/// `kindred check`.
pub fn run_check(file: Option<&std::path::Path>, a: &CheckArgs) -> Result<i32> {
    use crate::check::{CheckOptions, Limits};
    let record = a.record.clone();
    let (backend, opts): (Box<dyn crate::backend::Backend>, _) = match &a.replay {
        Some(f) => {
            refuse_recording_over(record.as_deref(), f, "the recording being replayed")?;
            let rec = crate::backend::recording::load(f)?;
            let b = crate::backend::replay::ReplayBackend::new(rec, f64::INFINITY);
            let o = CheckOptions {
                limits: Limits::REPLAY,
                cleanup: false,
                record,
                // A recording does not hold the scenario's factor.
                latency_factor: a.latency_factor.unwrap_or_default(),
            };
            (Box::new(b), o)
        }
        None => {
            let sc = load_scenario(file)?;
            let kind = crate::backend::kind::Kind::default();
            preflight(&sc, &kind)?;
            let latency_factor = a.latency_factor.unwrap_or(sc.probes.latency_factor);
            let b = crate::backend::live::LiveBackend::new(sc, kind);
            let local = std::path::Path::new("kindred.yaml");
            refuse_recording_over(record.as_deref(), file.unwrap_or(local), "the scenario")?;
            let o = CheckOptions {
                limits: Limits::LIVE,
                cleanup: !a.keep,
                record,
                latency_factor,
            };
            (Box::new(b), o)
        }
    };
    let rt = tokio::runtime::Runtime::new()?;
    let v = rt.block_on(crate::check::check(backend, opts, progress))?;
    rt.shutdown_timeout(std::time::Duration::from_secs(2));
    let write = |p: &Option<PathBuf>, text: String| -> Result<()> {
        if let Some(p) = p {
            std::fs::write(p, text).with_context(|| format!("{}: cannot write", p.display()))?;
        }
        Ok(())
    };
    write(&a.report_md, v.markdown())?;
    write(&a.report_json, v.json())?;
    write(&a.junit, v.junit())?;
    emit(&v.text())?;
    if a.report_only {
        return Ok(0);
    }
    if !v.judged() {
        return Err(anyhow!(
            "{}: the scenario (or recording) holds no expectation to judge the probes by \
             (add `expect` rows, or --report-only for the reports alone)",
            crate::check::verdict::NOTHING_JUDGED
        ));
    }
    Ok(exit_code(v.overall))
}

/// `kindred check`'s exit code for its verdict: 0 PASS, 1 FAIL, 3 FLAKY (2 is trouble).
pub fn exit_code(overall: crate::check::verdict::Overall) -> i32 {
    use crate::check::verdict::Overall;
    match overall {
        Overall::Pass => 0,
        Overall::Flaky => 3,
        Overall::Fail | Overall::Nothing => 1,
    }
}

/// `kindred bisect`.
pub fn run_bisect(file: Option<&std::path::Path>, a: &BisectArgs) -> Result<i32> {
    use crate::check::Limits;
    use crate::check::bisect::BisectOptions;
    use crate::check::bisect_report::BisectReport;
    let file = match (file, a.scenario.as_deref()) {
        (Some(f), Some(s)) if f != s => {
            return Err(anyhow!(
                "two scenarios: -f {} and {}: give one",
                f.display(),
                s.display()
            ));
        }
        (f, s) => f.or(s),
    };
    let (req, file) = if a.resume {
        resumed(&crate::backend::bisect::cache::Cache::default_dir(), file)?
    } else {
        (bisect_request(a), file.map(std::path::Path::to_path_buf))
    };
    let record = a.record.clone();
    let (backend, opts): (Box<dyn crate::backend::Backend>, _) = match &a.replay {
        Some(f) => {
            refuse_recording_over(record.as_deref(), f, "the recording being replayed")?;
            let rec = crate::backend::recording::load(f)?;
            let b = crate::backend::replay::ReplayBackend::new(rec, f64::INFINITY);
            let o = BisectOptions {
                limits: Limits::REPLAY,
                cleanup: false,
                record,
            };
            (Box::new(b), o)
        }
        None => {
            let sc = load_scenario(file.as_deref())?;
            let kind = crate::backend::kind::Kind::default();
            preflight(&sc, &kind)?;
            let b = crate::backend::live::LiveBackend::new(sc, kind);
            let local = std::path::Path::new("kindred.yaml");
            let scenario = file.as_deref().unwrap_or(local);
            refuse_recording_over(record.as_deref(), scenario, "the scenario")?;
            let o = BisectOptions {
                limits: Limits::LIVE,
                cleanup: !a.keep,
                record,
            };
            (Box::new(b), o)
        }
    };
    let rt = tokio::runtime::Runtime::new()?;
    let v = rt.block_on(crate::check::bisect::bisect(backend, req, opts, progress));
    rt.shutdown_timeout(std::time::Duration::from_secs(2));
    let Some(r) = BisectReport::of(&v?) else {
        return Err(anyhow!("the bisect finished without a result"));
    };
    emit(&match a.format {
        BisectFormat::Text => r.text(),
        BisectFormat::Json => r.json(),
        BisectFormat::Markdown => r.markdown(),
    })?;
    Ok(r.exit)
}

/// The request `kindred bisect`'s flags make.
fn bisect_request(a: &BisectArgs) -> crate::backend::bisect::BisectRequest {
    use crate::backend::bisect::{BisectRequest, PathChoice};
    BisectRequest {
        good: a.good.clone().unwrap_or_default(),
        bad: a.bad.clone().unwrap_or_default(),
        probe: a.probe.clone(),
        repeat: a.repeat.unwrap_or(1),
        path: match (a.swap, a.rebuild) {
            (true, _) => PathChoice::Swap,
            (_, true) => PathChoice::Rebuild,
            _ => PathChoice::Auto,
        },
        all_commits: a.all_commits,
    }
}

/// `--resume`: the last bisect's request and scenario, from its log in `dir` (the cache's);
/// `file` (-f) must be the scenario it ran with, when the log names one.
fn resumed(
    dir: &std::path::Path,
    file: Option<&std::path::Path>,
) -> Result<(crate::backend::bisect::BisectRequest, Option<PathBuf>)> {
    use crate::backend::bisect::cache::Cache;
    let Some(log) = Cache::open(dir)?.read_log()? else {
        return Err(anyhow!(
            "--resume: no bisect to resume (no log in {}): start one with --good and --bad",
            dir.display()
        ));
    };
    let scenario = match (file, log.scenario) {
        (Some(f), Some(s)) if f != s => {
            return Err(anyhow!(
                "--resume: the last bisect ran with scenario {}, not {}",
                s.display(),
                f.display()
            ));
        }
        (f, s) => s.or(f.map(std::path::Path::to_path_buf)),
    };
    let r = &log.request;
    let done = log.steps.len();
    progress(format!(
        "resuming the bisect {}..{} ({done} step{} done{}; scenario {})",
        r.good,
        r.bad,
        if done == 1 { "" } else { "s" },
        if log.end.is_some() {
            ", and it ended"
        } else {
            ""
        },
        scenario
            .as_deref()
            .map_or("./kindred.yaml or the built-in one".into(), |p| p
                .display()
                .to_string())
    ));
    Ok((log.request, scenario))
}

/// `kindred swap-proxy`.
pub fn run_swap(file: Option<&std::path::Path>, a: &SwapArgs) -> Result<i32> {
    use crate::model::Sides;
    let sides = match a.side {
        SwapSide::Base => Sides::Base,
        SwapSide::Pr => Sides::Pr,
        SwapSide::Both => Sides::Both,
    };
    let sc = load_scenario(file)?;
    let kind = crate::backend::kind::Kind::default();
    preflight(&sc, &kind)?;
    let b = Box::new(crate::backend::live::LiveBackend::new(sc, kind));
    let rt = tokio::runtime::Runtime::new()?;
    let r = rt.block_on(crate::check::swap_proxy(b, sides, progress));
    rt.shutdown_timeout(std::time::Duration::from_secs(2));
    match r {
        Ok(_) => Ok(0),
        Err(e) => {
            progress(format!("swap-proxy: {e:#}"));
            Ok(1)
        }
    }
}

/// `kindred up` (and `kindred` alone).
pub fn run_up(file: Option<&std::path::Path>, a: &UpArgs) -> Result<i32> {
    let local = std::path::Path::new("kindred.yaml");
    refuse_recording_over(
        a.dash.record.as_deref(),
        file.unwrap_or(local),
        "the scenario",
    )?;
    let mut sc = load_scenario(file)?;
    if let Some(v) = a.watch_interval {
        sc.watch.interval = v;
    }
    let factor = a.dash.latency_factor.unwrap_or(sc.probes.latency_factor);
    let kind = crate::backend::kind::Kind::default();
    let backend = Box::new(crate::backend::live::LiveBackend::new(sc, kind));
    run_dashboard(backend, &a.dash, factor)
}

/// `kindred replay`: the recording played is never the one written.
pub fn run_replay(a: &ReplayArgs) -> Result<i32> {
    let record = a.play.dash.record.as_deref();
    refuse_recording_over(record, &a.file, "the recording being replayed")?;
    let rec = crate::backend::recording::load(&a.file)?;
    run_play(rec, &a.play)
}

/// `--record FILE` must not name `input` (`what` kindred reads), by any path: the finished
/// recording would replace it.
fn refuse_recording_over(
    record: Option<&std::path::Path>,
    input: &std::path::Path,
    what: &str,
) -> Result<()> {
    match record {
        Some(r) if crate::backend::recording::same_file(r, input) => Err(anyhow!(
            "--record {}: that is {what} ({}); the recording would replace it: record to another file",
            r.display(),
            input.display()
        )),
        _ => Ok(()),
    }
}

/// `kindred demo` and `kindred replay`.
pub fn run_play(rec: crate::backend::recording::Recording, a: &PlayArgs) -> Result<i32> {
    if !SPEEDS.contains(&a.speed) {
        return Err(anyhow!("--speed {} is out of range", a.speed));
    }
    let backend = Box::new(crate::backend::replay::ReplayBackend::new(rec, a.speed));
    // A recording does not hold the scenario's factor.
    let factor = a.dash.latency_factor.unwrap_or_default();
    run_dashboard(backend, &a.dash, factor)
}

/// The dashboard on `backend`, flagging a PR side slower than `latency_factor` times the base.
fn run_dashboard(
    backend: Box<dyn crate::backend::Backend>,
    a: &DashArgs,
    latency_factor: crate::model::Factor,
) -> Result<i32> {
    if !std::io::stdout().is_terminal() {
        return Err(anyhow!(
            "the dashboard needs a terminal (stdout is not one)"
        ));
    }
    let opts = crate::tui::RunOptions {
        record: a.record.clone(),
        color: !no_color(),
        mouse: !a.no_mouse,
        latency_factor,
    };
    let rt = tokio::runtime::Runtime::new()?;
    let status = rt.block_on(async move { crate::tui::run(backend, opts).await })?;
    rt.shutdown_timeout(std::time::Duration::from_secs(2));
    Ok(status)
}

/// Whether to colour output written to stdout.
pub fn use_color(when: ColorWhen) -> bool {
    match when {
        ColorWhen::Always => true,
        ColorWhen::Never => false,
        ColorWhen::Auto => !no_color() && std::io::stdout().is_terminal(),
    }
}

/// Read a dump given on the command line ("-" is standard input, "node:NAME" a kind node's
/// rules through the Docker API, "ctx:CONTEXT/NODE" a node's rules through a kubeconfig
/// context's API server): (name for errors, text).
pub fn load_text(arg: &str, stdin_used: &mut bool) -> Result<(String, String)> {
    Ok(if let Some(node) = arg.strip_prefix("node:") {
        (arg.to_string(), read_node_rules(node)?)
    } else if let Some(operand) = arg.strip_prefix("ctx:") {
        let text = crate::backend::context::read_node_rules_blocking(None, operand)?;
        (arg.to_string(), text)
    } else if arg == "-" {
        if *stdin_used {
            return Err(anyhow!("standard input ('-') can be given only once"));
        }
        *stdin_used = true;
        use crate::backend::input;
        let bytes = input::read_limited(std::io::stdin(), input::MAX_INPUT, "<stdin>")?;
        let s = String::from_utf8(bytes).map_err(|e| {
            anyhow!(
                "<stdin>: not UTF-8 text (invalid byte at offset {})",
                e.utf8_error().valid_up_to()
            )
        })?;
        ("<stdin>".to_string(), s)
    } else {
        let bytes = crate::backend::input::read_file(std::path::Path::new(arg))?;
        let s = String::from_utf8(bytes).map_err(|e| {
            anyhow!(
                "{arg}: not UTF-8 text (invalid byte at offset {})",
                e.utf8_error().valid_up_to()
            )
        })?;
        (arg.to_string(), s)
    })
}

/// A kind node's rules (iptables mode), read through the Docker API.
fn read_node_rules(node: &str) -> Result<String> {
    use crate::backend::docker::Docker;
    use crate::model::ProxyMode;
    if node.is_empty() {
        return Err(anyhow!(
            "node: needs a container name, e.g. node:master-worker"
        ));
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let d = Docker::connect().await?;
        let nodes = d.kind_nodes().await?;
        if !nodes.iter().any(|n| n.name == node) {
            let known: Vec<&str> = nodes.iter().map(|n| n.name.as_str()).collect();
            return Err(anyhow!(
                "node:{node}: no kind node container of that name (kind nodes: {})",
                if known.is_empty() {
                    "none".to_string()
                } else {
                    known.join(", ")
                }
            ));
        }
        // iptables first; a node whose kube-proxy runs in nftables mode has its rules in the
        // kube-proxy table instead.
        let text = d.read_rules(node, ProxyMode::Iptables).await?;
        if text.contains("KUBE-") {
            return Ok(text);
        }
        match d.read_rules(node, ProxyMode::Nftables).await {
            Ok(nft) => Ok(nft),
            Err(_) => Ok(text),
        }
    })
}

/// `kindred clusters`: kind clusters, their nodes, and which kindred created.
pub fn run_clusters(a: &ClustersArgs) -> Result<i32> {
    use crate::backend::docker::Docker;
    if let Some(c) = &a.context {
        return context_nodes(c, a.format);
    }
    use crate::backend::owned::{Owned, default_path};
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let nodes = rt.block_on(async {
        let d = Docker::connect().await?;
        d.kind_nodes().await
    })?;
    let owned = Owned::load(&default_path())?;
    let mut clusters: Vec<&str> = nodes.iter().map(|n| n.cluster.as_str()).collect();
    clusters.dedup();
    let mut out = String::new();
    match a.format {
        OutputFormat::Json => {
            let v: Vec<serde_json::Value> = clusters
                .iter()
                .map(|c| {
                    let ns: Vec<_> = nodes.iter().filter(|n| n.cluster == *c).collect();
                    serde_json::json!({
                        "name": c,
                        "created_by_kindred": owned.created(c, &nodes),
                        "nodes": ns,
                    })
                })
                .collect();
            out = serde_json::to_string_pretty(&serde_json::json!({ "clusters": v }))?;
            out.push('\n');
        }
        OutputFormat::Text => {
            use std::fmt::Write as _;
            if clusters.is_empty() {
                out.push_str("No kind clusters found.\n");
            }
            for c in &clusters {
                let ns: Vec<_> = nodes.iter().filter(|n| n.cluster == *c).collect();
                let _ = writeln!(
                    out,
                    "{c}  ({} node{}, {})",
                    ns.len(),
                    if ns.len() == 1 { "" } else { "s" },
                    if owned.created(c, &nodes) {
                        "created by kindred"
                    } else {
                        "not created by kindred"
                    }
                );
                for n in ns {
                    let ips: Vec<String> = n
                        .ips
                        .iter()
                        .map(|(net, ip)| format!("{ip} ({net})"))
                        .collect();
                    let _ = writeln!(
                        out,
                        "  {:<28} {:<14} {:<8} {}",
                        n.name,
                        n.role,
                        n.state,
                        ips.join(", ")
                    );
                }
            }
        }
    }
    emit(&out)?;
    Ok(0)
}

/// `kindred clusters --context NAME`: that cluster's nodes, read through its API server.
fn context_nodes(context: &str, format: OutputFormat) -> Result<i32> {
    use crate::backend::context::{ContextRef, client, nodes};
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let c = ContextRef {
        context: context.to_string(),
        kubeconfig: None,
    };
    let rows = rt.block_on(async { nodes(&client(&c).await?).await })?;
    let name = rules::render::visible(context);
    let out = match format {
        OutputFormat::Json => {
            let v = serde_json::json!({ "context": context, "nodes": rows });
            format!("{}\n", serde_json::to_string_pretty(&v)?)
        }
        OutputFormat::Text => {
            use std::fmt::Write as _;
            let n = rows.len();
            let mut out = format!(
                "{name}  ({n} node{}, a kubeconfig context: kindred only reads it)\n",
                if n == 1 { "" } else { "s" }
            );
            for r in &rows {
                let _ = writeln!(
                    out,
                    "  {:<28} {:<14} {:<15} {}",
                    rules::render::visible(&r.name),
                    r.role,
                    r.ip.as_deref().map_or("-".into(), rules::render::visible),
                    r.kube_proxy.as_deref().map_or_else(
                        || "no kube-proxy pod".into(),
                        |p| format!("kube-proxy: {}", rules::render::visible(p))
                    ),
                );
            }
            out
        }
    };
    emit(&out)?;
    Ok(0)
}

/// `kindred diff`: returns the exit status (0 equal, 1 different).
pub fn run_diff(a: &DiffArgs) -> Result<i32> {
    let service = a
        .service
        .as_deref()
        .map(ServiceFilter::parse)
        .transpose()
        .map_err(|e| anyhow!("--service: {e}"))?;
    if a.base == "-" && a.pr == "-" {
        return Err(anyhow!("standard input ('-') can be given only once"));
    }
    if a.format == DiffFormat::JsonV1 {
        small_pages();
    }
    // The two sides are read at once (two 15 MB files, or two nodes).
    let (base, pr) = std::thread::scope(|sc| {
        let b = sc.spawn(|| load_text(&a.base, &mut (a.pr == "-")));
        let p = load_text(&a.pr, &mut (a.base == "-"));
        (b.join().expect("reading base"), p)
    });
    let ((bname, btext), (pname, ptext)) = (base?, pr?);
    let opts = Options {
        raw: a.raw,
        service: service.clone(),
        no_shared: a.no_shared,
        all_tables: a.all_tables,
        // Text and JSON v2 list no equal service's rules: they are freed as compared.
        summarize_equal: a.format != DiffFormat::JsonV1,
        ..Options::default()
    };
    let parsed = rules::diff::parse_texts(btext, ptext, &opts).map_err(|e| match e {
        rules::TextError::Base(e) => anyhow!("{bname}:{}: {}", e.line, e.reason),
        rules::TextError::Pr(e) => anyhow!("{pname}:{}: {}", e.line, e.reason),
    })?;
    // The packet summary is traced while the rules are compared (both read the parsed dumps).
    let (cmp, packets) = std::thread::scope(|sc| {
        let h = a
            .packets
            .then(|| sc.spawn(|| packet_summary(&parsed, &a.node_ip, service.as_ref())));
        let cmp = parsed.compare(&opts);
        (cmp, h.map(|h| h.join().expect("packet summary thread")))
    });
    let (b_ok, p_ok) = parsed.has_kube_proxy_rules();
    for (ok, name) in [(b_ok, &bname), (p_ok, &pname)] {
        if !ok {
            return Err(anyhow!(
                "{name}: no kube-proxy rules found (is kube-proxy running on that node?)"
            ));
        }
    }
    if let (Some(f), true) = (&service, cmp.services.is_empty()) {
        return Err(anyhow!(
            "--service {}: no rules for this service in either dump",
            a.service.as_deref().unwrap_or(&f.name)
        ));
    }
    let packets = packets.as_ref();
    match a.format {
        // Streamed: the document is never held whole in memory.
        DiffFormat::Json => emit_bytes(|w| rules::json::write_with(w, &cmp, packets))?,
        DiffFormat::JsonV1 => emit_json(&JsonReport {
            packets,
            ..JsonReport::new(&cmp)
        })?,
        DiffFormat::Text => emit_with(|w| {
            if let Some(p) = packets {
                use std::fmt::Write as _;
                let _ = rules::packets::write_text(w, p).and_then(|_| writeln!(w));
            }
            rules::render::write_text(w, &cmp, use_color(a.color))
        })?,
    }
    let same_packets = packets.is_none_or(|p| p.equal());
    let code = if cmp.equal && same_packets { 0 } else { 1 };
    // The process ends right after this: freeing a million small strings one by one costs more
    // than the comparison itself on a large cluster, so leave it to the OS.
    std::mem::forget(cmp);
    std::mem::forget(parsed);
    Ok(code)
}

/// `diff --packets`: each dump compiled for tracing once, every Service's classes traced.
fn packet_summary(
    parsed: &rules::diff::Parsed,
    node_ips: &[std::net::Ipv4Addr],
    service: Option<&ServiceFilter>,
) -> rules::packets::Summary {
    use rules::packets::{Side, compare};
    let (b, p) = parsed.dumps().expect("both dumps were parsed");
    let (b, p) = std::thread::scope(|sc| {
        let h = sc.spawn(|| Side::new(b, node_ips));
        (h.join().expect("compiling base"), Side::new(p, node_ips))
    });
    compare(&b, &p, service)
}

/// No transparent huge pages for this process from now on: `--format json-v1` holds every
/// rule of both sides until written, and 2 MB pages half used would take its peak above 4x the
/// input (4.1x; 3.8x with small pages). The faster forms free as they go and keep them.
fn small_pages() {
    // SAFETY: prctl with PR_SET_THP_DISABLE takes plain integers and changes only how this
    // process's memory is backed; its result (unsupported kernels) does not matter.
    unsafe {
        libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0);
    }
}

/// The `--format json-v1` document (schema: see README, "JSON output").
#[derive(serde::Serialize)]
pub struct JsonReport<'a> {
    pub schema: &'static str,
    #[serde(flatten)]
    pub comparison: &'a Comparison,
    /// `--packets`: the packet summary.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub packets: Option<&'a rules::packets::Summary>,
}

impl<'a> JsonReport<'a> {
    pub fn new(c: &'a Comparison) -> Self {
        JsonReport {
            schema: "kindred.diff/v1",
            comparison: c,
            packets: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::bisect::cache::{Cache, Log};
    use crate::backend::bisect::{BisectRequest, PathChoice};

    /// `--resume` takes the last bisect's request and scenario from its log; without a log it
    /// says so; a -f other than the log's scenario is refused.
    #[test]
    fn resume_takes_the_request_and_scenario_of_the_log() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().join("bisect");
        let e = resumed(&dir, None).unwrap_err().to_string();
        assert!(e.contains("--resume: no bisect to resume"), "{e}");
        let request = BisectRequest {
            good: "v1.33.0".into(),
            bad: "pr/132456".into(),
            probe: Some("netshoot-pr-worker".into()),
            repeat: 3,
            path: PathChoice::Swap,
            all_commits: true,
        };
        let log = Log {
            scenario: Some("/work/k/kindred.yaml".into()),
            request: request.clone(),
            judge: "j".into(),
            steps: vec![],
            end: None,
        };
        Cache::open(&dir).unwrap().write_log(&log).unwrap();
        let (r, sc) = resumed(&dir, None).unwrap();
        assert_eq!(r, request);
        assert_eq!(
            sc.as_deref(),
            Some(std::path::Path::new("/work/k/kindred.yaml"))
        );
        let same = std::path::Path::new("/work/k/kindred.yaml");
        assert!(resumed(&dir, Some(same)).is_ok());
        let e = resumed(&dir, Some(std::path::Path::new("other.yaml")))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("ran with scenario /work/k/kindred.yaml, not other.yaml"),
            "{e}"
        );
    }
}
