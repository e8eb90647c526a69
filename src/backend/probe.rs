//! Probes: curl from a source (a pod, or a node's network namespace) to a target, argv only.

use super::event::ProbeResult;
use crate::model::Outcome;

/// curl's limits for one probe.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Timeouts {
    /// Seconds to connect.
    pub connect: f64,
    /// Seconds for the whole request.
    pub total: f64,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            connect: 2.0,
            total: 5.0,
        }
    }
}

/// The command run in the source: `curl` writing "<http code> <seconds>" on stdout.
pub fn curl_argv(target: &str, t: Timeouts) -> Vec<String> {
    let url = if target.contains("://") {
        target.to_string()
    } else {
        format!("http://{target}/")
    };
    vec![
        "curl".into(),
        "-sS".into(),
        "-o".into(),
        "/dev/null".into(),
        "-w".into(),
        "%{http_code} %{time_total}".into(),
        "--connect-timeout".into(),
        format!("{}", t.connect),
        "--max-time".into(),
        format!("{}", t.total),
        url,
    ]
}

/// Read curl's result: exit 28 is a timeout, other non-zero exits and HTTP >= 400 are failures.
pub fn parse_curl(
    source: &str,
    target: &str,
    stdout: &str,
    stderr: &str,
    code: i64,
) -> ProbeResult {
    let mut it = stdout.split_whitespace();
    let http: Option<u16> = it.next().and_then(|s| s.parse().ok()).filter(|c| *c != 0);
    let secs: Option<f64> = it.next().and_then(|s| s.parse().ok());
    let latency_ms = secs.map(|s| (s * 1000.0).round() as u64);
    let detail = || {
        let e = stderr.trim();
        Some(if e.is_empty() {
            format!("curl exit {code}")
        } else {
            e.to_string()
        })
    };
    let (outcome, detail) = match code {
        0 if http.is_some_and(|h| h < 400) => (Outcome::Ok, None),
        0 => (Outcome::Fail, Some(format!("HTTP {}", http.unwrap_or(0)))),
        28 => (Outcome::Timeout, detail()),
        _ => (Outcome::Fail, detail()),
    };
    ProbeResult {
        source: source.to_string(),
        target: target.to_string(),
        outcome,
        http_status: http,
        latency_ms,
        detail,
        scenario_target: None,
        tries: Vec::new(),
        ready_endpoints: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn curl_results() {
        let ok = parse_curl("a", "t", "200 0.002123", "", 0);
        assert_eq!(
            (ok.outcome, ok.http_status, ok.latency_ms),
            (Outcome::Ok, Some(200), Some(2))
        );
        let to = parse_curl(
            "a",
            "t",
            "000 2.001",
            "curl: (28) Connection timed out after 2001 milliseconds",
            28,
        );
        assert_eq!(to.outcome, Outcome::Timeout);
        assert_eq!(to.http_status, None);
        assert!(to.detail.unwrap().contains("(28)"));
        let refused = parse_curl("a", "t", "000 0.001", "curl: (7) Failed to connect", 7);
        assert_eq!(refused.outcome, Outcome::Fail);
        let err = parse_curl("a", "t", "503 0.01", "", 0);
        assert_eq!((err.outcome, err.http_status), (Outcome::Fail, Some(503)));
        assert_eq!(
            curl_argv("1.2.3.4:80", Timeouts::default()).last().unwrap(),
            "http://1.2.3.4:80/"
        );
    }
}
