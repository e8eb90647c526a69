//! `kindred trace`: one packet through one node's kube-proxy rules, or through a base and a PR
//! dump side by side. A front end over [`crate::rules::trace`]: reading the operands, the
//! packet from the flags, text and JSON output, the exit status.

use std::fmt::Write as _;
use std::io::Write as _;
use std::net::Ipv4Addr;

use anyhow::{Result, anyhow};
use serde::Serialize;

use super::{ColorWhen, OutputFormat, emit, emit_json, load_text, use_color};
use crate::rules::mixed::OneDump;
use crate::rules::render::visible;
use crate::rules::trace::{Origin, Packet, Pair, Proto, SCHEMA, Step, Trace, Tracer, Verdict};

/// `kindred trace`'s arguments.
#[derive(Debug, clap::Args)]
pub struct TraceArgs {
    /// The dump (iptables-save, iptables -S, nft list ...): a file, - for standard input, or
    /// node:CONTAINER to read a kind node's rules live through the Docker API.
    #[arg(value_name = "DUMP")]
    pub base: String,
    /// A second dump (the PR side): the same packet through both, compared.
    #[arg(value_name = "PR")]
    pub pr: Option<String>,
    /// The packet's source address.
    #[arg(long, value_name = "IP", value_parser = ipv4)]
    pub src: Ipv4Addr,
    /// Its destination: address and port.
    #[arg(long, value_name = "IP:PORT", value_parser = ip_port)]
    pub dst: (Ipv4Addr, u16),
    /// Its protocol.
    #[arg(long, value_enum, default_value_t = ProtoArg::Tcp)]
    pub proto: ProtoArg,
    /// Where it starts: pod (enters the node through prerouting; also traffic from outside the
    /// node) or host (locally originated: a hostNetwork pod, the node itself).
    #[arg(long, value_enum, default_value_t = FromArg::Pod)]
    pub from: FromArg,
    /// One of the node's own addresses (`fib daddr type local`, `addrtype LOCAL`); repeat for
    /// each. Default: none but the source when --from host.
    #[arg(long = "local-ip", value_name = "IP", value_parser = ipv4)]
    pub local_ip: Vec<Ipv4Addr>,
    /// Output format (JSON schema kindred.trace/v1, see README "Tracing a packet").
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    pub format: OutputFormat,
    /// Colour: auto honours NO_COLOR and a non-terminal stdout.
    #[arg(long, value_enum, default_value_t = ColorWhen::Auto)]
    pub color: ColorWhen,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ProtoArg {
    Tcp,
    Udp,
    Sctp,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum FromArg {
    Pod,
    Host,
}

fn ipv4(s: &str) -> Result<Ipv4Addr, String> {
    s.trim()
        .parse()
        .map_err(|_| format!("'{}' is not an IPv4 address", visible(s)))
}

fn ip_port(s: &str) -> Result<(Ipv4Addr, u16), String> {
    let bad = || format!("'{}' is not IP:PORT (e.g. 10.96.0.10:80)", visible(s));
    let (ip, port) = s.trim().rsplit_once(':').ok_or_else(bad)?;
    let ip = ip.parse().map_err(|_| bad())?;
    match port.parse::<u16>() {
        Ok(p) if p > 0 => Ok((ip, p)),
        _ => Err(bad()),
    }
}

impl TraceArgs {
    /// The packet the flags describe.
    pub fn packet(&self) -> Packet {
        Packet {
            src: self.src,
            dst: self.dst.0,
            dport: self.dst.1,
            sport: 40000,
            proto: match self.proto {
                ProtoArg::Tcp => Proto::Tcp,
                ProtoArg::Udp => Proto::Udp,
                ProtoArg::Sctp => Proto::Sctp,
            },
            from: match self.from {
                FromArg::Pod => Origin::Pod,
                FromArg::Host => Origin::Host,
            },
            local_ips: self.local_ip.clone(),
        }
    }
}

/// One side's JSON document: the trace with the schema's name, so a single trace names its
/// schema like a pair does.
#[derive(Serialize)]
struct OneJson<'a> {
    schema: &'static str,
    #[serde(flatten)]
    trace: &'a Trace,
}

/// Read and parse one operand: errors name the operand and the line. A dump with nothing of
/// kube-proxy's is refused, as `diff` refuses it: tracing through it would say `accept` of a
/// wrong file, an empty one, or a node before kube-proxy started.
fn load(arg: &str, stdin_used: &mut bool) -> Result<(String, OneDump)> {
    let (name, text) = load_text(arg, stdin_used)?;
    if !crate::rules::mentions_kube_proxy(&text) {
        return Err(anyhow!(
            "{name}: no kube-proxy rules found (is kube-proxy running on that node?)"
        ));
    }
    let d = OneDump::parse(text).map_err(|e| anyhow!("{name}:{}: {}", e.line, e.reason))?;
    Ok((name, d))
}

/// `kindred trace`: 0 traced (one dump) or the same verdict (two), 1 different verdicts, 2
/// trouble (including a verdict the tracer could not reach: `unknown`).
pub fn run_trace(a: &TraceArgs) -> Result<i32> {
    if a.pr.as_deref() == Some("-") && a.base == "-" {
        return Err(anyhow!("standard input ('-') can be given only once"));
    }
    let p = a.packet();
    let mut stdin_used = false;
    let (bname, base) = load(&a.base, &mut stdin_used)?;
    let btrace = Tracer::new(&base).trace(&p);
    let color = use_color(a.color);
    let Some(pr_arg) = &a.pr else {
        match a.format {
            OutputFormat::Json => emit_json(&OneJson {
                schema: SCHEMA,
                trace: &btrace,
            })?,
            OutputFormat::Text => emit(&one_text(&p, &bname, &btrace, color))?,
        }
        return Ok(unknown_status(&[(&bname, &btrace)]).unwrap_or(0));
    };
    let (pname, pr) = load(pr_arg, &mut stdin_used)?;
    let pair = Pair::new(btrace, Tracer::new(&pr).trace(&p));
    match a.format {
        OutputFormat::Json => emit_json(&pair)?,
        OutputFormat::Text => emit(&pair_text(&p, [&bname, &pname], &pair, color, width()))?,
    }
    let unknown = unknown_status(&[(&bname, &pair.base), (&pname, &pair.pr)]);
    Ok(unknown.unwrap_or(if pair.equal { 0 } else { 1 }))
}

/// Exit 2 (and say why on standard error) when a side's verdict is `unknown`.
fn unknown_status(sides: &[(&str, &Trace)]) -> Option<i32> {
    let mut any = false;
    for (name, t) in sides.iter().filter(|(_, t)| t.verdict == Verdict::Unknown) {
        any = true;
        let why = t.notes.first().map(String::as_str).unwrap_or("");
        let _ = writeln!(
            std::io::stderr(),
            "kindred: {}: the tracer cannot tell where the packet goes: {}",
            visible(name),
            visible(why)
        );
    }
    any.then_some(2)
}

/// The terminal's width (COLUMNS when stdout is not a terminal; 80 if neither says).
fn width() -> usize {
    use std::io::IsTerminal;
    if std::io::stdout().is_terminal()
        && let Ok((w, _)) = crossterm::terminal::size()
    {
        return w as usize;
    }
    std::env::var("COLUMNS")
        .ok()
        .and_then(|c| c.trim().parse().ok())
        .unwrap_or(80)
}

fn paint(s: &str, code: &str, color: bool) -> String {
    if color {
        format!("\x1b[{code}m{s}\x1b[0m")
    } else {
        s.to_string()
    }
}

/// The packet, in words.
fn packet_line(p: &Packet) -> String {
    let from = match p.from {
        Origin::Pod => "from a pod (prerouting)",
        Origin::Host => "from the host (output)",
    };
    format!(
        "packet: {} {} -> {}:{}, {from}",
        p.proto.name(),
        p.src,
        p.dst,
        p.dport
    )
}

/// The verdict, in words: `dnat -> 10.0.0.1:80, 10.0.0.2:80 (masqueraded)`.
fn verdict_words(t: &Trace) -> String {
    let mut s = t.verdict.name().to_string();
    if !t.endpoints.is_empty() {
        let eps: Vec<String> = t
            .endpoints
            .iter()
            .map(|e| visible(e).into_owned())
            .collect();
        let _ = write!(s, " -> {}", eps.join(", "));
    }
    if t.masquerade {
        s.push_str(" (masqueraded)");
    }
    s
}

fn verdict_color(v: Verdict) -> &'static str {
    match v {
        Verdict::Dnat | Verdict::Accept => "32",
        Verdict::Drop | Verdict::Reject => "31",
        Verdict::Unknown => "33",
    }
}

/// One step on one line: `output filter/filter-output line 95: ct state new jump ...`.
fn step_line(s: &Step) -> String {
    format!(
        "{} {}/{} line {}: {}",
        s.hook.name(),
        visible(&s.table),
        visible(&s.chain),
        s.line,
        visible(&s.rule)
    )
}

/// One trace as text.
fn one_text(p: &Packet, name: &str, t: &Trace, color: bool) -> String {
    let mut o = String::new();
    let _ = writeln!(o, "{}", packet_line(p));
    let _ = writeln!(o, "dump: {}", visible(name));
    let v = paint(&verdict_words(t), verdict_color(t.verdict), color);
    let _ = writeln!(o, "verdict: {v}");
    path_text(&mut o, &t.path, None, color);
    notes_text(&mut o, &t.notes);
    o
}

/// A path, numbered; the step at `mark` (where two paths part) highlighted.
fn path_text(o: &mut String, path: &[Step], mark: Option<usize>, color: bool) {
    let _ = writeln!(o, "path ({} step{}):", path.len(), plural(path.len()));
    for (i, s) in path.iter().enumerate() {
        let line = format!("{:>3}  {}", i + 1, step_line(s));
        if mark == Some(i) {
            let _ = writeln!(o, "> {}", paint(&line, "1;33", color));
        } else {
            let _ = writeln!(o, "  {line}");
        }
    }
}

fn notes_text(o: &mut String, notes: &[String]) {
    for n in notes {
        let _ = writeln!(o, "note: {}", visible(n));
    }
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

/// Two traces as text: the verdicts and whether they agree, then the paths side by side when
/// the terminal is wide enough, else one after the other; the first step where they part is
/// highlighted (and marked `>` without colour).
fn pair_text(p: &Packet, names: [&str; 2], pair: &Pair, color: bool, width: usize) -> String {
    let mut o = String::new();
    let _ = writeln!(o, "{}", packet_line(p));
    for (side, name, t) in [("base", names[0], &pair.base), ("pr", names[1], &pair.pr)] {
        let v = paint(&verdict_words(t), verdict_color(t.verdict), color);
        let _ = writeln!(o, "{side:<4} {}: {v}", visible(name));
    }
    let unknown = [&pair.base, &pair.pr]
        .iter()
        .any(|t| t.verdict == Verdict::Unknown);
    let same = if unknown {
        paint("not compared: a verdict is unknown", "1;33", color)
    } else if pair.equal {
        paint("same verdict", "32", color)
    } else {
        paint("different verdicts", "1;31", color)
    };
    match pair.parted_at {
        Some(i) => {
            let _ = writeln!(o, "{same}; the paths part at step {}", i + 1);
        }
        None => {
            let _ = writeln!(o, "{same}; the same path");
        }
    }
    o.push('\n');
    if width >= SIDE_BY_SIDE {
        side_by_side(&mut o, pair, color, width);
    } else {
        for (side, t) in [("base", &pair.base), ("pr", &pair.pr)] {
            let _ = write!(o, "{side} ");
            path_text(&mut o, &t.path, pair.parted_at, color);
            notes_text(&mut o, &t.notes);
        }
    }
    o
}

/// The width from which two paths are printed side by side.
pub const SIDE_BY_SIDE: usize = 140;

/// Both paths in two columns, step by step.
fn side_by_side(o: &mut String, pair: &Pair, color: bool, width: usize) {
    let col = (width - 5) / 2;
    let cell = |t: &Trace, i: usize| -> String {
        t.path
            .get(i)
            .map(|s| fit(&format!("{:>3} {}", i + 1, step_line(s)), col))
            .unwrap_or_default()
    };
    let _ = writeln!(o, "  {:<col$} | pr path", "base path");
    let rows = pair.base.path.len().max(pair.pr.path.len());
    for i in 0..rows {
        let (b, p) = (cell(&pair.base, i), cell(&pair.pr, i));
        let pad = col - b.chars().count();
        if pair.parted_at == Some(i) {
            let (b, p) = (paint(&b, "1;33", color), paint(&p, "1;33", color));
            let _ = writeln!(o, "> {b}{:pad$} | {p}", "");
        } else {
            let _ = writeln!(o, "  {b}{:pad$} | {p}", "");
        }
    }
    for (side, t) in [("base", &pair.base), ("pr", &pair.pr)] {
        for n in &t.notes {
            let _ = writeln!(o, "{side} note: {}", visible(n));
        }
    }
}

/// `s` cut to `n` characters (an ellipsis marks the cut).
fn fit(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        return s.to_string();
    }
    let mut t: String = s.chars().take(n.saturating_sub(1)).collect();
    t.push('…');
    t
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::trace::Hook;

    fn step(chain: &str, rule: &str) -> Step {
        Step {
            hook: Hook::Output,
            table: "nat".into(),
            chain: chain.into(),
            rule: rule.into(),
            line: 7,
        }
    }

    fn trace(v: Verdict, path: Vec<Step>) -> Trace {
        Trace {
            verdict: v,
            endpoints: if v == Verdict::Dnat {
                vec!["10.0.0.1:80".into()]
            } else {
                vec![]
            },
            masquerade: false,
            path,
            notes: vec![],
        }
    }

    fn packet() -> Packet {
        Packet {
            src: Ipv4Addr::new(10, 0, 1, 5),
            dst: Ipv4Addr::new(1, 2, 3, 4),
            dport: 80,
            sport: 40000,
            proto: Proto::Tcp,
            from: Origin::Host,
            local_ips: vec![],
        }
    }

    #[test]
    fn dump_text_reaches_the_terminal_without_control_characters() {
        let t = trace(Verdict::Drop, vec![step("KUBE-\x1b[2J", "-j DROP \x07")]);
        let s = one_text(&packet(), "a\x1bb", &t, false);
        assert!(!s.chars().any(|c| c.is_control() && c != '\n'), "{s:?}");
        assert!(s.contains("KUBE-\\x1b[2J"), "{s}");
        let pair = Pair::new(t.clone(), t);
        for w in [80, 200] {
            let s = pair_text(&packet(), ["x\x1b", "y"], &pair, false, w);
            assert!(!s.chars().any(|c| c.is_control() && c != '\n'), "{s:?}");
        }
    }

    #[test]
    fn the_step_where_paths_part_is_marked_in_both_layouts() {
        let common = step("OUTPUT", "-j KUBE-SERVICES");
        let b = trace(
            Verdict::Drop,
            vec![common.clone(), step("KUBE-XLB", "-j KUBE-MARK-DROP")],
        );
        let p = trace(
            Verdict::Dnat,
            vec![common, step("KUBE-XLB", "-j KUBE-SVC-X")],
        );
        let pair = Pair::new(b, p);
        let narrow = pair_text(&packet(), ["b", "p"], &pair, false, 80);
        assert!(
            narrow.contains("different verdicts; the paths part at step 2"),
            "{narrow}"
        );
        let marked: Vec<&str> = narrow.lines().filter(|l| l.starts_with("> ")).collect();
        assert_eq!(marked.len(), 2, "{narrow}");
        assert!(marked[0].contains("KUBE-MARK-DROP") && marked[1].contains("KUBE-SVC-X"));
        let wide = pair_text(&packet(), ["b", "p"], &pair, false, 200);
        let marked: Vec<&str> = wide.lines().filter(|l| l.starts_with("> ")).collect();
        assert_eq!(marked.len(), 1, "{wide}");
        assert!(marked[0].contains("KUBE-MARK-DROP") && marked[0].contains("KUBE-SVC-X"));
        assert!(wide.lines().all(|l| l.chars().count() <= 200), "{wide}");
        let colored = pair_text(&packet(), ["b", "p"], &pair, true, 80);
        assert!(colored.contains("\x1b[1;33m"), "highlighted in colour");
    }

    #[test]
    fn flags_name_what_is_wrong() {
        assert!(
            ipv4("10.0.0.300")
                .unwrap_err()
                .contains("'10.0.0.300' is not an IPv4")
        );
        assert!(ip_port("10.0.0.1").unwrap_err().contains("not IP:PORT"));
        assert!(ip_port("10.0.0.1:0").is_err());
        assert!(ip_port("10.0.0.1:65536").is_err());
        assert_eq!(ip_port("10.0.0.1:80"), Ok((Ipv4Addr::new(10, 0, 0, 1), 80)));
        assert!(ipv4("\x1b[2J").unwrap_err().contains("\\x1b"));
    }
}
