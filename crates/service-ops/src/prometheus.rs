//! Pieces of a Prometheus text page (exposition format 0.0.4) shared by both
//! binaries.

/// The content type of a Prometheus text page.
pub const PROMETHEUS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// `<prefix>_build_info{version="..."} 1`: which build is running, the usual
/// way to join a version onto other series.
pub fn build_info(prefix: &str, version: &str) -> String {
    let name = format!("{prefix}_build_info");
    // Label values escape `\` and `"` (exposition format); versions have neither,
    // but a build system may set anything.
    let version = version.replace('\\', "\\\\").replace('"', "\\\"");
    format!(
        "# HELP {name} Build of the running binary (always 1).\n# TYPE {name} gauge\n{name}{{version=\"{version}\"}} 1\n"
    )
}

/// Turns `prometheus-client`'s output (OpenMetrics text) into the Prometheus
/// 0.0.4 text format, so that several registries and hand-written blocks make
/// one valid page under one content type.
///
/// Hand-written because the crate encodes only OpenMetrics, whose counter
/// family `x` has samples `x_total`: in 0.0.4 the family must be named like
/// its samples, or readers (promtool) see a second, undocumented family. The
/// `# EOF` terminator and `# UNIT` lines (OpenMetrics only) are dropped.
pub fn openmetrics_to_prometheus(text: &str) -> String {
    let mut counters = std::collections::HashSet::new();
    for line in text.lines() {
        if let Some(name) = line
            .strip_prefix("# TYPE ")
            .and_then(|rest| rest.strip_suffix(" counter"))
        {
            counters.insert(name.to_owned());
        }
    }
    let mut out = String::with_capacity(text.len());
    for line in text.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        let meta = ["# HELP ", "# TYPE "]
            .into_iter()
            .find_map(|tag| Some((tag, line.strip_prefix(tag)?)));
        match meta {
            Some((tag, rest)) => {
                let (name, tail) = rest.split_once(' ').unwrap_or((rest, ""));
                let suffix = if counters.contains(name) && !name.ends_with("_total") {
                    "_total"
                } else {
                    ""
                };
                out.push_str(&format!("{tag}{name}{suffix} {tail}\n"));
            }
            None => {
                out.push_str(line);
                out.push('\n');
            }
        }
    }
    out
}

/// Runs `promtool check metrics` (Debian package `prometheus`, installed by
/// `scripts/install-deps.sh`) on a page: `Err` with what promtool said, or
/// why it could not run. For the tests that hold every page to the format.
pub fn promtool_check(page: &str) -> Result<(), String> {
    use std::io::Write as _;
    use std::process::{Command, Stdio};
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run promtool ({e}): run scripts/install-deps.sh"))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(page.as_bytes())
            .map_err(|e| e.to_string())?;
    }
    let out = child.wait_with_output().map_err(|e| e.to_string())?;
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if out.status.success() && said.trim().is_empty() {
        Ok(())
    } else {
        Err(said)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counter_families_are_named_like_their_samples() {
        let om = "# HELP x_requests Requests.\n# TYPE x_requests counter\n# UNIT x_requests requests\n\
                  x_requests_total{a=\"b\"} 3\n# HELP x_up Up.\n# TYPE x_up gauge\nx_up 1\n# EOF\n";
        assert_eq!(
            openmetrics_to_prometheus(om),
            "# HELP x_requests_total Requests.\n# TYPE x_requests_total counter\n\
             x_requests_total{a=\"b\"} 3\n# HELP x_up Up.\n# TYPE x_up gauge\nx_up 1\n"
        );
    }

    #[test]
    fn build_info_escapes_its_label() {
        assert!(build_info("p", "1.0\"x").contains("p_build_info{version=\"1.0\\\"x\"} 1\n"));
    }
}
