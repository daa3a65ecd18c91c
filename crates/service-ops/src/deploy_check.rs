//! Reads `deploy/` the way its consumers do (Kubernetes YAML, systemd units,
//! the Dockerfile) and lists every command line that runs one of our
//! binaries, so a test can hold each flag to the binary's real `--help`.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde_yaml::Value;

/// One place in `deploy/` that runs `binary`, and the arguments it passes.
#[derive(Debug, Clone)]
pub struct Invocation {
    /// The file (and the object in it) the command line comes from.
    pub origin: String,
    /// The arguments after the program.
    pub args: Vec<String>,
}

/// Every Kubernetes object in `deploy/kubernetes/*.yaml`, parsed.
pub fn kubernetes_objects(deploy: &Path) -> Result<Vec<(PathBuf, Value)>, String> {
    let mut objects = Vec::new();
    for path in files(&deploy.join("kubernetes"), "yaml")? {
        let text = std::fs::read_to_string(&path).map_err(|e| e.to_string())?;
        for doc in serde_yaml::Deserializer::from_str(&text) {
            let value = serde::Deserialize::deserialize(doc)
                .map_err(|e| format!("{}: {e}", path.display()))?;
            objects.push((path.clone(), value));
        }
    }
    Ok(objects)
}

/// The command lines that run `binary` (matched by the container's image or
/// command, the unit's `ExecStart`, or the Dockerfile stage's name).
pub fn invocations(deploy: &Path, binary: &str) -> Result<Vec<Invocation>, String> {
    let mut found = Vec::new();
    for (path, object) in kubernetes_objects(deploy)? {
        let name = object["metadata"]["name"]
            .as_str()
            .unwrap_or("?")
            .to_owned();
        let containers = object["spec"]["template"]["spec"]["containers"]
            .as_sequence()
            .cloned()
            .unwrap_or_default();
        for c in containers {
            let image = c["image"].as_str().unwrap_or("");
            if image.split(':').next() == Some(binary) {
                found.push(Invocation {
                    origin: format!("{} {name}", path.display()),
                    args: strings(&c["args"])?,
                });
            }
        }
    }
    for path in files(&deploy.join("systemd"), "service")? {
        let text = std::fs::read_to_string(&path).map_err(|e| e.to_string())?;
        for line in text.lines() {
            if let Some(cmd) = line.strip_prefix("ExecStart=") {
                let mut words = cmd.split_whitespace();
                if words
                    .next()
                    .is_some_and(|p| p.ends_with(&format!("/{binary}")))
                {
                    found.push(Invocation {
                        origin: path.display().to_string(),
                        args: words.map(str::to_owned).collect(),
                    });
                }
            }
        }
    }
    let dockerfile = deploy.join("Dockerfile");
    let text = std::fs::read_to_string(&dockerfile).map_err(|e| e.to_string())?;
    let mut stage = String::new();
    for line in text.lines() {
        if let Some(from) = line.strip_prefix("FROM ") {
            stage = from.rsplit(" AS ").next().unwrap_or("").trim().to_owned();
        } else if let Some(cmd) = line.strip_prefix("CMD ")
            && stage == binary
        {
            let args: Vec<String> =
                serde_yaml::from_str(cmd).map_err(|e| format!("Dockerfile CMD of {stage}: {e}"))?;
            found.push(Invocation {
                origin: format!("{} stage {stage}", dockerfile.display()),
                args,
            });
        }
    }
    Ok(found)
}

/// The long flags `--help` text lists.
pub fn help_flags(help: &str) -> BTreeSet<String> {
    help.split(|c: char| c.is_whitespace() || c == ',')
        .filter(|w| w.starts_with("--") && w.len() > 2)
        .map(|w| {
            w.trim_end_matches(|c: char| !c.is_ascii_alphanumeric())
                .to_owned()
        })
        .collect()
}

/// The flags of `invocation` that `help` does not list.
pub fn unknown_flags(help: &BTreeSet<String>, invocation: &Invocation) -> Vec<String> {
    invocation
        .args
        .iter()
        .filter(|a| a.starts_with("--"))
        .map(|a| a.split('=').next().unwrap_or(a).to_owned())
        .filter(|flag| !help.contains(flag))
        .collect()
}

/// Holds every command line in `deploy` that runs `binary` to the flags the
/// program at `program` lists in its `--help`: each of `kinds` (e.g.
/// `Dockerfile`, `.service`, `kubernetes`) must run it at least once, `help`
/// must list each of `expected` (so a broken `--help` cannot pass), and no
/// command line may use a flag it does not list. The error says which.
pub fn check_command_lines(
    program: &Path,
    binary: &str,
    deploy: &Path,
    kinds: &[&str],
    expected: &[&str],
) -> Result<usize, String> {
    let out = std::process::Command::new(program)
        .arg("--help")
        .output()
        .map_err(|e| format!("{}: {e}", program.display()))?;
    if !out.status.success() {
        return Err(format!("{} --help: {}", program.display(), out.status));
    }
    let help = help_flags(&String::from_utf8_lossy(&out.stdout));
    if let Some(missing) = expected.iter().find(|f| !help.contains(**f)) {
        return Err(format!("--help does not list {missing}: {help:?}"));
    }
    let found = invocations(deploy, binary)?;
    for kind in kinds {
        if !found.iter().any(|i| i.origin.contains(kind)) {
            let origins: Vec<&str> = found.iter().map(|i| i.origin.as_str()).collect();
            return Err(format!("no {kind} runs {binary}: {origins:?}"));
        }
    }
    for inv in &found {
        let unknown = unknown_flags(&help, inv);
        if !unknown.is_empty() {
            return Err(format!("{}: unknown flags {unknown:?}", inv.origin));
        }
    }
    Ok(found.len())
}

fn strings(v: &Value) -> Result<Vec<String>, String> {
    match v {
        Value::Null => Ok(Vec::new()),
        Value::Sequence(items) => items
            .iter()
            .map(|i| match i {
                Value::String(s) => Ok(s.clone()),
                other => Err(format!("args must be strings (quote numbers): {other:?}")),
            })
            .collect(),
        other => Err(format!("args is not a list: {other:?}")),
    }
}

fn files(dir: &Path, ext: &str) -> Result<Vec<PathBuf>, String> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| format!("{}: {e}", dir.display()))?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == ext))
        .collect();
    out.sort();
    Ok(out)
}
