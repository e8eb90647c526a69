//! kube-proxy's own numbers, from its metrics endpoint (port 10249 on the node): the Prometheus
//! text exposition format parsed, and the few numbers kindred shows summed up. Pure: reading
//! the text is the live backend's job.
//!
//! The metric names are kube-proxy's (`pkg/proxy/metrics/metrics.go`): since v1.33 each carries
//! an `ip_family` label on a dual-stack node; the numbers here sum the families (histogram
//! buckets by `le`, counters, rules), as `sum by (le)` would, and take the oldest family's last
//! sync.

use std::borrow::Cow;
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::tries::Quantiles;
use crate::model::ProxyMode;

/// Where kube-proxy serves its metrics on a node: its default `metricsBindAddress`, which kind
/// leaves as it is (kind's kubeadm config sets mode, minSyncPeriod and conntrack only).
pub const METRICS_URL: &str = "http://127.0.0.1:10249/metrics";

/// The histogram of every sync's duration, full and partial (seconds).
pub const SYNC_DURATION: &str = "kubeproxy_sync_proxy_rules_duration_seconds";
/// The time of the last successful sync (Unix seconds).
pub const LAST_SYNC: &str = "kubeproxy_sync_proxy_rules_last_timestamp_seconds";
/// iptables mode (and ipvs): failed `iptables-restore` runs.
pub const IPTABLES_FAILURES: &str = "kubeproxy_sync_proxy_rules_iptables_restore_failures_total";
/// nftables mode: failed syncs.
pub const NFTABLES_FAILURES: &str = "kubeproxy_sync_proxy_rules_nftables_sync_failures_total";
/// iptables mode: the rules kube-proxy owns, per table. nftables mode has no such metric.
pub const IPTABLES_RULES: &str = "kubeproxy_sync_proxy_rules_iptables_total";

/// A line of the text that is not the exposition format: where and what.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct MetricsError {
    /// 1-based.
    pub line: usize,
    pub message: String,
}

/// One sample line: `name{label="value",...} value [timestamp]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample<'a> {
    pub name: &'a str,
    pub labels: Vec<(&'a str, Cow<'a, str>)>,
    pub value: f64,
}

impl Sample<'_> {
    /// The value of label `key`, when the sample has it.
    pub fn label(&self, key: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v.as_ref())
    }
}

/// Every sample of an exposition text, in order; `# HELP`, `# TYPE` and other comments are
/// skipped (a `# TYPE` with an unknown type is an error).
pub fn parse(text: &str) -> Result<Vec<Sample<'_>>, MetricsError> {
    let mut out = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let at = |message: String| MetricsError {
            line: i + 1,
            message,
        };
        let line = raw.trim();
        if line.is_empty() {
            continue;
        }
        if let Some(rest) = line.strip_prefix('#') {
            type_line(rest).map_err(at)?;
            continue;
        }
        out.push(sample(line).map_err(at)?);
    }
    Ok(out)
}

/// A comment line (after `#`): a `TYPE` line must name a known type.
fn type_line(rest: &str) -> Result<(), String> {
    let mut words = rest.split_whitespace();
    if words.next() != Some("TYPE") {
        return Ok(());
    }
    let (Some(name), Some(kind)) = (words.next(), words.next()) else {
        return Err("`# TYPE` without a metric name and type".into());
    };
    metric_name(name)?;
    match kind {
        "counter" | "gauge" | "histogram" | "summary" | "untyped" => Ok(()),
        other => Err(format!("unknown metric type {other:?} for {name}")),
    }
}

/// `name` if it is a metric name (`[a-zA-Z_:][a-zA-Z0-9_:]*`).
fn metric_name(name: &str) -> Result<&str, String> {
    let ok = name.chars().enumerate().all(|(i, c)| {
        c.is_ascii_alphabetic() || c == '_' || c == ':' || (i > 0 && c.is_ascii_digit())
    });
    if ok && !name.is_empty() {
        Ok(name)
    } else {
        Err(format!("{:?} is not a metric name", name))
    }
}

fn sample(line: &str) -> Result<Sample<'_>, String> {
    let end = line
        .find(|c: char| c == '{' || c.is_whitespace())
        .ok_or_else(|| format!("sample {:?} has no value", line))?;
    let name = metric_name(&line[..end])?;
    let mut rest = &line[end..];
    let mut labels = Vec::new();
    if let Some(r) = rest.strip_prefix('{') {
        rest = label_set(r, &mut labels)?;
    }
    let mut words = rest.split_whitespace();
    let value = words
        .next()
        .ok_or_else(|| format!("{name}: no value"))
        .and_then(|v| number(v).ok_or_else(|| format!("{name}: value {v:?} is not a number")))?;
    if let Some(ts) = words.next() {
        ts.parse::<i64>()
            .map_err(|_| format!("{name}: timestamp {ts:?} is not an integer"))?;
    }
    if let Some(extra) = words.next() {
        return Err(format!("{name}: unexpected {extra:?} after the value"));
    }
    Ok(Sample {
        name,
        labels,
        value,
    })
}

/// The labels after `{` up to `}`; what follows the `}`.
fn label_set<'a>(
    mut s: &'a str,
    labels: &mut Vec<(&'a str, Cow<'a, str>)>,
) -> Result<&'a str, String> {
    loop {
        s = s.trim_start();
        if let Some(r) = s.strip_prefix('}') {
            return Ok(r);
        }
        let eq = s.find('=').ok_or("a label without `=`")?;
        let key = s[..eq].trim();
        metric_name(key).map_err(|_| format!("{key:?} is not a label name"))?;
        let r = s[eq + 1..].trim_start();
        let r = r
            .strip_prefix('"')
            .ok_or_else(|| format!("label {key}: its value is not quoted"))?;
        let (value, r) = quoted(r).ok_or_else(|| format!("label {key}: unterminated value"))?;
        labels.push((key, value));
        let r = r.trim_start();
        s = match r.strip_prefix(',') {
            Some(r) => r,
            None if r.starts_with('}') => r,
            None => return Err(format!("after label {key}: expected `,` or `}}`")),
        };
    }
}

/// A label value up to its closing quote (escapes `\\`, `\"`, `\n`), and what follows.
fn quoted(s: &str) -> Option<(Cow<'_, str>, &str)> {
    let mut owned: Option<String> = None;
    let mut chars = s.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => {
                let v = owned.map_or(Cow::Borrowed(&s[..i]), Cow::Owned);
                return Some((v, &s[i + 1..]));
            }
            '\\' => {
                let o = owned.get_or_insert_with(|| s[..i].to_string());
                match chars.next()?.1 {
                    'n' => o.push('\n'),
                    c => o.push(c),
                }
            }
            c => {
                if let Some(o) = owned.as_mut() {
                    o.push(c)
                }
            }
        }
    }
    None
}

/// A sample value: a float as Go writes it, `+Inf`, `-Inf` or `NaN`.
fn number(s: &str) -> Option<f64> {
    match s {
        "+Inf" | "Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        "NaN" => Some(f64::NAN),
        _ => s.parse().ok().filter(|v: &f64| v.is_finite()),
    }
}

/// The `q` quantile (0..=1) of a histogram given as (upper bound, cumulative count) buckets, as
/// PromQL's `histogram_quantile` computes it: linear interpolation inside the bucket the rank
/// falls in (the first bucket starting at 0); a rank in the `+Inf` bucket gives the highest
/// finite bound. `None` without observations or without a `+Inf` bucket.
pub fn histogram_quantile(q: f64, buckets: &[(f64, f64)]) -> Option<f64> {
    let mut b: Vec<(f64, f64)> = buckets.to_vec();
    b.sort_by(|x, y| x.0.total_cmp(&y.0));
    if b.len() < 2 || b.last()?.0 != f64::INFINITY {
        return None;
    }
    // Cumulative counts never fall (PromQL evens out a scrape caught mid-update the same way).
    for i in 1..b.len() {
        b[i].1 = b[i].1.max(b[i - 1].1);
    }
    let total = b.last()?.1;
    if total <= 0.0 {
        return None;
    }
    let rank = q * total;
    let i = b.iter().position(|(_, c)| *c >= rank)?;
    if i == b.len() - 1 {
        return Some(b[b.len() - 2].0);
    }
    let (end, count) = b[i];
    if i == 0 && end <= 0.0 {
        return Some(end);
    }
    let (start, below) = if i == 0 { (0.0, 0.0) } else { b[i - 1] };
    let inside = count - below;
    if inside <= 0.0 {
        return Some(end);
    }
    Some(start + (end - start) * ((rank - below) / inside))
}

/// One node's kube-proxy, summed up from its metrics.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProxyMetrics {
    /// The mode its counters show (nftables' sync failures, else iptables' restore failures);
    /// `None` when it has neither.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<ProxyMode>,
    /// Syncs observed (the histogram's count).
    pub syncs: u64,
    /// p50 and p99 of a sync's duration, by `histogram_quantile` over its buckets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sync: Option<Quantiles>,
    /// Milliseconds from the last successful sync to when the metrics were read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_sync_age_ms: Option<u64>,
    /// The failure counter of the mode in use.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failures: Option<u64>,
    /// The rules kube-proxy owns (iptables mode: `sync_proxy_rules_iptables_total`, all
    /// tables); `None` in nftables mode, which has no such metric.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rules: Option<u64>,
}

impl ProxyMetrics {
    /// The numbers of an exposition text read at `now_ms` (Unix milliseconds). A text without
    /// kube-proxy's sync histogram is an error: it is not kube-proxy's.
    pub fn of(text: &str, now_ms: u64) -> Result<ProxyMetrics, MetricsError> {
        let samples = parse(text)?;
        let sum = |name: &str| -> Option<f64> {
            let mut it = samples.iter().filter(|s| s.name == name).peekable();
            it.peek()?;
            Some(it.map(|s| s.value).sum())
        };
        let mut buckets: BTreeMap<u64, (f64, f64)> = BTreeMap::new();
        let bucket_name = format!("{SYNC_DURATION}_bucket");
        for s in samples.iter().filter(|s| s.name == bucket_name) {
            let le = s.label("le").and_then(number).ok_or_else(|| MetricsError {
                line: line_of(text, s),
                message: format!("{bucket_name} without a valid `le` label"),
            })?;
            let e = buckets.entry(le.to_bits()).or_insert((le, 0.0));
            e.1 += s.value;
        }
        let Some(count) = sum(&format!("{SYNC_DURATION}_count")) else {
            return Err(MetricsError {
                line: text.lines().count().max(1),
                message: format!("no {SYNC_DURATION}: not kube-proxy's metrics"),
            });
        };
        let b: Vec<(f64, f64)> = buckets.into_values().collect();
        let us = |q: f64| histogram_quantile(q, &b).map(|v| (v * 1e6).round() as u64);
        let sync = us(0.5)
            .zip(us(0.99))
            .map(|(p50_us, p99_us)| Quantiles { p50_us, p99_us });
        let last = samples
            .iter()
            .filter(|s| s.name == LAST_SYNC && s.value > 0.0)
            .map(|s| s.value)
            .reduce(f64::min);
        let (mode, failures) = match (sum(NFTABLES_FAILURES), sum(IPTABLES_FAILURES)) {
            (Some(n), _) => (Some(ProxyMode::Nftables), Some(n)),
            (None, Some(n)) => (Some(ProxyMode::Iptables), Some(n)),
            (None, None) => (None, None),
        };
        Ok(ProxyMetrics {
            mode,
            syncs: count as u64,
            sync,
            last_sync_age_ms: last.map(|t| now_ms.saturating_sub((t * 1000.0).round() as u64)),
            failures: failures.map(|n| n as u64),
            rules: sum(IPTABLES_RULES).map(|n| n as u64),
        })
    }
}

/// The 1-based line of `s` in `text` (for errors found after parsing).
fn line_of(text: &str, s: &Sample<'_>) -> usize {
    let at = s.name.as_ptr() as usize - text.as_ptr() as usize;
    text[..at].matches('\n').count() + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> String {
        let p = format!(
            "{}/tests/fixtures/metrics/{name}",
            env!("CARGO_MANIFEST_DIR")
        );
        std::fs::read_to_string(p).unwrap()
    }

    /// The hand-checked numbers of tests/fixtures/metrics/README.md.
    #[test]
    fn iptables_fixture_sums_up_to_its_hand_checked_numbers() {
        let m = ProxyMetrics::of(&fixture("iptables.txt"), 1_765_036_805_123).unwrap();
        assert_eq!(
            m,
            ProxyMetrics {
                mode: Some(ProxyMode::Iptables),
                syncs: 40,
                sync: Some(Quantiles {
                    p50_us: 12_000,
                    p99_us: 102_400
                }),
                last_sync_age_ms: Some(5_000),
                failures: Some(2),
                rules: Some(40),
            }
        );
    }

    #[test]
    fn nftables_fixture_sums_both_families() {
        let m = ProxyMetrics::of(&fixture("nftables.txt"), 1_765_036_800_500).unwrap();
        assert_eq!(
            m,
            ProxyMetrics {
                mode: Some(ProxyMode::Nftables),
                syncs: 20,
                sync: Some(Quantiles {
                    p50_us: 2_000,
                    p99_us: 16_384_000
                }),
                last_sync_age_ms: Some(10_250),
                failures: Some(4),
                rules: None,
            }
        );
    }

    #[test]
    fn text_that_is_not_kube_proxys_is_an_error() {
        let e = ProxyMetrics::of("go_goroutines 5\n", 0).unwrap_err();
        assert!(e.message.contains("not kube-proxy's metrics"), "{e}");
        let bad = fixture("nftables.txt").replace("le=\"0.004\"", "le=\"four\"");
        let e = ProxyMetrics::of(&bad, 0).unwrap_err();
        assert_eq!(e.line, 11, "{e}");
    }

    #[test]
    fn samples_with_labels_escapes_and_special_values_parse() {
        let t = "# HELP x a thing\n# TYPE x gauge\nx{a=\"1\",b=\"q\\\"uo\\\\te\\n\"} 2.5\ny +Inf\nz 3 1700000000000\n";
        let s = parse(t).unwrap();
        assert_eq!(s.len(), 3);
        assert_eq!(s[0].label("a"), Some("1"));
        assert_eq!(s[0].label("b"), Some("q\"uo\\te\n"));
        assert_eq!(s[0].value, 2.5);
        assert_eq!(s[1].value, f64::INFINITY);
        assert_eq!(s[2].value, 3.0);
    }

    #[test]
    fn bad_lines_are_errors_naming_their_line() {
        for (t, line, what) in [
            ("a 1\nb{x=\"1\" 2\n", 2, "expected `,` or `}`"),
            ("a 1\n\nb{x=1} 2\n", 3, "not quoted"),
            ("a one\n", 1, "not a number"),
            ("a 1 2 3\n", 1, "unexpected"),
            ("# TYPE a countr\n", 1, "unknown metric type"),
            ("9a 1\n", 1, "not a metric name"),
            ("a{x=\"1} 2\n", 1, "unterminated"),
            ("a\n", 1, "no value"),
        ] {
            let e = parse(t).unwrap_err();
            assert_eq!(e.line, line, "{t:?}: {e}");
            assert!(e.message.contains(what), "{t:?}: {e}");
        }
    }

    /// histogram_quantile's cases: inside a bucket (linear), in the first bucket (from 0), in
    /// the +Inf bucket (the highest finite bound), none observed.
    #[test]
    fn quantiles_interpolate_as_promql_does() {
        let inf = f64::INFINITY;
        let b = [(0.001, 0.0), (0.002, 4.0), (0.004, 8.0), (inf, 10.0)];
        // rank 5 of 10 lies 1/4 into (0.002, 0.004].
        assert_eq!(histogram_quantile(0.5, &b), Some(0.0025));
        // rank 2: half-way into (0.001, 0.002].
        assert_eq!(histogram_quantile(0.2, &b), Some(0.0015));
        // rank 9.9 is in +Inf: the highest finite bound.
        assert_eq!(histogram_quantile(0.99, &b), Some(0.004));
        let first = [(0.001, 10.0), (inf, 10.0)];
        assert_eq!(histogram_quantile(0.5, &first), Some(0.0005));
        assert_eq!(histogram_quantile(0.5, &[(0.001, 0.0), (inf, 0.0)]), None);
        assert_eq!(histogram_quantile(0.5, &[(0.001, 1.0), (0.002, 1.0)]), None);
    }
}
