//! `deploy/` against the real binary: every command line that runs
//! streaming-proxy uses only flags its `--help` lists, and the Kubernetes
//! recipe is a StatefulSet whose L2 lives on a per-pod volume behind an
//! HAProxy front that hashes the URL consistently (its configuration is
//! checked by `haproxy -c`).
#![allow(clippy::unwrap_used)]

use std::path::PathBuf;
use std::process::Command;

use service_ops::deploy_check::{help_flags, invocations, kubernetes_objects, unknown_flags};

fn deploy_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../deploy")
}

#[test]
fn every_deployed_command_line_uses_real_flags() {
    let out = Command::new(env!("CARGO_BIN_EXE_streaming-proxy"))
        .arg("--help")
        .output()
        .unwrap();
    assert!(out.status.success());
    let help = help_flags(&String::from_utf8_lossy(&out.stdout));
    assert!(help.contains("--cache-dir") && help.contains("--metrics"));
    let found = invocations(&deploy_dir(), "streaming-proxy").unwrap();
    let origins: Vec<&str> = found.iter().map(|i| i.origin.as_str()).collect();
    for kind in ["Dockerfile", ".service", "kubernetes"] {
        assert!(
            origins.iter().any(|o| o.contains(kind)),
            "no {kind} in {origins:?}"
        );
    }
    for inv in &found {
        assert_eq!(
            unknown_flags(&help, inv),
            Vec::<String>::new(),
            "{}",
            inv.origin
        );
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
