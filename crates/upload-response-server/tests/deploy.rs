//! `deploy/` against the real binary: every command line that runs
//! upload-response-server (Dockerfile, systemd unit, Kubernetes) uses only
//! flags its `--help` lists, the images run as non-root, the unit is
//! sandboxed, and the workers find every ingress pod through a headless Service.

use std::path::PathBuf;

use service_ops::deploy_check::{check_command_lines, kubernetes_objects};

fn deploy_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../deploy")
}

#[test]
fn every_deployed_command_line_uses_real_flags() {
    let program = std::path::Path::new(env!("CARGO_BIN_EXE_upload-response-server"));
    let kinds = ["Dockerfile", ".service", "kubernetes"];
    match check_command_lines(
        program,
        "upload-response-server",
        &deploy_dir(),
        &kinds,
        &["--worker-api", "--log-format"],
    ) {
        Ok(n) => assert!(n >= kinds.len()),
        Err(said) => panic!("{said}"),
    }
}

#[test]
fn images_are_non_root_and_the_unit_is_sandboxed() {
    let dockerfile = std::fs::read_to_string(deploy_dir().join("Dockerfile")).unwrap();
    let stages: Vec<&str> = dockerfile.split("\nFROM ").skip(1).collect();
    assert!(stages.len() >= 3, "a build stage and runtime stages");
    assert!(stages[0].contains("cargo build --release"));
    for stage in &stages[1..] {
        assert!(
            stage.contains("\nUSER nonroot"),
            "runtime stage as root: {stage}"
        );
        assert!(stage.contains("COPY --from=build"), "{stage}");
    }
    let unit = std::fs::read_to_string(deploy_dir().join("systemd/upload-response-server.service"))
        .unwrap();
    for line in [
        "DynamicUser=yes",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "ProtectHome=yes",
        "CapabilityBoundingSet=",
        "StateDirectory=upload-response",
        "KillSignal=SIGTERM",
    ] {
        assert!(unit.lines().any(|l| l == line), "{line} missing");
    }
    assert!(unit.contains("--data-dir /var/lib/upload-response"));
}

#[test]
fn workers_discover_every_ingress_pod_through_a_headless_service() {
    let objects = kubernetes_objects(&deploy_dir()).unwrap();
    let find = |kind: &str, name: &str| {
        objects
            .iter()
            .map(|(_, o)| o)
            .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
            .unwrap_or_else(|| panic!("no {kind} {name}"))
    };
    let ingress = find("Deployment", "upload-response");
    let pod_labels = &ingress["spec"]["template"]["metadata"]["labels"];
    let container = &ingress["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(container["readinessProbe"]["httpGet"]["path"], "/readyz");
    assert_eq!(container["livenessProbe"]["httpGet"]["path"], "/healthz");
    let api_port = container["ports"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "worker-api")
        .map(|p| p["containerPort"].as_u64().unwrap())
        .unwrap();
    let service = find("Service", "upload-response");
    assert_eq!(&service["spec"]["selector"], pod_labels);
    let headless = find("Service", "upload-response-workers");
    assert_eq!(headless["spec"]["clusterIP"], "None");
    assert_eq!(&headless["spec"]["selector"], pod_labels);
    assert_eq!(
        headless["spec"]["ports"][0]["port"].as_u64(),
        Some(api_port)
    );
    let worker = find("Deployment", "remote-worker");
    let args = &worker["spec"]["template"]["spec"]["containers"][0]["args"];
    assert_eq!(
        args[0].as_str(),
        Some(
            format!("dns://upload-response-workers.default.svc.cluster.local:{api_port}").as_str()
        )
    );
    for (_, o) in &objects {
        let pod = &o["spec"]["template"]["spec"];
        if !pod.is_null() {
            let name = o["metadata"]["name"].as_str().unwrap();
            assert_eq!(pod["securityContext"]["runAsNonRoot"], true, "{name}");
        }
    }
}
