//! `deploy/` against the real binary: every command line that runs
//! streaming-proxy uses only flags its `--help` lists, and the Kubernetes
//! recipe is a StatefulSet whose L2 lives on a per-pod volume behind an
//! HAProxy front that hashes the URL consistently (its configuration is
//! checked by `haproxy -c`).
#![allow(clippy::unwrap_used)]

use std::path::PathBuf;
use std::process::Command;

use service_ops::deploy_check::{check_command_lines, kubernetes_objects};

fn deploy_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../deploy")
}

#[test]
fn every_deployed_command_line_uses_real_flags() {
    let program = std::path::Path::new(env!("CARGO_BIN_EXE_streaming-proxy"));
    let kinds = ["Dockerfile", ".service", "kubernetes"];
    match check_command_lines(
        program,
        "streaming-proxy",
        &deploy_dir(),
        &kinds,
        &["--cache-dir", "--metrics"],
    ) {
        Ok(n) => assert!(n >= kinds.len()),
        Err(said) => panic!("{said}"),
    }
}

#[test]
fn proxy_statefulset_keeps_l2_on_a_volume_behind_a_consistent_hash_front() {
    let objects = kubernetes_objects(&deploy_dir()).unwrap();
    let find = |kind: &str, name: &str| {
        objects
            .iter()
            .map(|(_, o)| o)
            .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
            .unwrap_or_else(|| panic!("no {kind} {name}"))
    };
    let set = find("StatefulSet", "streaming-proxy");
    let headless = find("Service", "streaming-proxy");
    assert_eq!(headless["spec"]["clusterIP"], "None");
    assert_eq!(set["spec"]["serviceName"], "streaming-proxy");
    let claim = set["spec"]["volumeClaimTemplates"][0]["metadata"]["name"]
        .as_str()
        .unwrap();
    let container = &set["spec"]["template"]["spec"]["containers"][0];
    let mount = container["volumeMounts"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|m| m["name"] == claim)
        .and_then(|m| m["mountPath"].as_str())
        .unwrap();
    let args: Vec<&str> = container["args"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    let cache_dir = args[args.iter().position(|a| *a == "--cache-dir").unwrap() + 1];
    assert!(
        cache_dir.starts_with(mount),
        "L2 {cache_dir} is not on the volume {mount}"
    );
    assert_eq!(container["readinessProbe"]["httpGet"]["path"], "/readyz");

    let front = find("ConfigMap", "streaming-proxy-front");
    let cfg = front["data"]["haproxy.cfg"].as_str().unwrap();
    assert!(cfg.contains("balance uri") && cfg.contains("hash-type consistent"));
    let replicas = set["spec"]["replicas"].as_u64().unwrap();
    for i in 0..replicas {
        assert!(
            cfg.contains(&format!("streaming-proxy-{i}.streaming-proxy.")),
            "pod {i} missing from the front"
        );
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("haproxy.cfg");
    std::fs::write(&path, cfg).unwrap();
    let check = Command::new("haproxy")
        .arg("-c")
        .arg("-f")
        .arg(&path)
        .output()
        .expect("haproxy not found: run scripts/install-deps.sh");
    assert!(
        check.status.success(),
        "haproxy -c: {}{}",
        String::from_utf8_lossy(&check.stdout),
        String::from_utf8_lossy(&check.stderr)
    );
}
