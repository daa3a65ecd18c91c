//! Operating the real binary: stdout holds only the READY line, the worker
//! token never appears in any output, every request gets an access log line
//! (JSON here) unless switched off, the probes answer without a token, and
//! the `/metrics` page passes `promtool check metrics`.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Server {
    child: Child,
    ready: String,
    stdout: std::thread::JoinHandle<Vec<String>>,
}

impl Server {
    /// Starts the binary with its default settings except ephemeral ports.
    fn start(dir: &Path, extra: &[&str]) -> Self {
        let stderr = std::fs::File::create(dir.join("stderr.log")).unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_upload-response-server"))
            .args(["--http", "127.0.0.1:0", "--https", "127.0.0.1:0"])
            .args(["--worker-api", "127.0.0.1:0", "--data-dir"])
            .arg(dir.join("data"))
            .args(extra)
            .env_remove("UR_WORKER_TOKEN")
            .env_remove("RUST_LOG")
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let ready = lines.next().expect("a first stdout line").unwrap();
        let stdout = std::thread::spawn(move || lines.map_while(Result::ok).collect());
        Self {
            child,
            ready,
            stdout,
        }
    }

    fn addr(&self, key: &str) -> SocketAddr {
        self.ready
            .split_whitespace()
            .find_map(|f| f.strip_prefix(key))
            .unwrap_or_else(|| panic!("no {key} in {:?}", self.ready))
            .parse()
            .unwrap()
    }

    /// SIGTERM, wait for exit 0, and return the stdout lines after READY.
    fn stop(mut self) -> Vec<String> {
        let ok = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(ok.success());
        let deadline = Instant::now() + Duration::from_secs(30);
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            assert!(Instant::now() < deadline, "no exit after SIGTERM");
            std::thread::sleep(Duration::from_millis(20));
        };
        assert!(status.success(), "{status}");
        self.stdout.join().unwrap()
    }
}

/// One HTTP/1.1 exchange on a fresh connection: (status, whole answer).
fn http(addr: SocketAddr, method: &str, path: &str, body: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let status = out
        .get(9..12)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP answer: {out:?}"));
    (status, out)
}

/// `promtool check metrics` says nothing about `page`.
fn promtool_check(page: &str) {
    if let Err(said) = service_ops::promtool_check(page) {
        panic!("promtool: {said}\n{page}");
    }
}

/// The body of an HTTP/1.1 answer (after the head; dechunking not needed for
/// the fixed-length answers checked here).
fn body_of(answer: &str) -> &str {
    answer.split_once("\r\n\r\n").map_or("", |(_, b)| b)
}

#[test]
fn stdout_holds_only_ready_the_token_stays_secret_and_each_request_is_logged() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &["--log-format", "json"]);
    let (ingress, api) = (server.addr("http="), server.addr("worker_api="));
    let token = std::fs::read_to_string(dir.path().join("data/worker-token")).unwrap();
    let token = token.trim();
    assert_eq!(token.len(), 64);

    let (status, answer) = http(ingress, "POST", "/sha256", "helloworld");
    assert_eq!(status, 200, "{answer}");
    // The probes need no token; the API still does.
    let (status, answer) = http(api, "GET", "/healthz", "");
    assert_eq!((status, body_of(&answer)), (200, "ok\n"), "{answer}");
    let (status, answer) = http(api, "GET", "/readyz", "");
    assert_eq!((status, body_of(&answer)), (200, "ready\n"), "{answer}");
    assert_eq!(http(api, "GET", "/v1/streams", "").0, 401);
    let (status, answer) = http(api, "GET", "/metrics", "");
    assert_eq!(status, 200);
    assert!(
        answer.contains("content-type: text/plain; version=0.0.4"),
        "{answer}"
    );
    let page = body_of(&answer);
    promtool_check(page);
    for line in page.lines().filter(|l| !l.starts_with('#')) {
        assert!(line.starts_with("upload_response_"), "unprefixed: {line}");
    }
    assert!(page.contains(&format!(
        "upload_response_build_info{{version=\"{}\"}} 1",
        env!("CARGO_PKG_VERSION")
    )));

    let ready = server.ready.clone();
    let rest = server.stop();
    assert!(ready.starts_with("READY "), "{ready}");
    assert!(rest.is_empty(), "stdout after READY: {rest:?}");
    let stderr = std::fs::read_to_string(dir.path().join("stderr.log")).unwrap();
    assert!(!stderr.contains(token), "token logged:\n{stderr}");
    assert!(!ready.contains(token));
    assert!(
        stderr.contains("worker-token"),
        "the token's path is logged"
    );

    let access: Vec<serde_json::Value> = stderr
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("a JSON log line"))
        .filter(|v| v["target"] == "access")
        .collect();
    let upload = access
        .iter()
        .find(|v| v["fields"]["path"] == "/sha256")
        .unwrap_or_else(|| panic!("no access line for /sha256 in {access:?}"));
    let f = &upload["fields"];
    assert_eq!(
        (
            &f["method"],
            &f["status"],
            &f["protocol"],
            &f["bytes_in"],
            &f["complete"]
        ),
        (
            &"POST".into(),
            &200.into(),
            &"http1".into(),
            &10.into(),
            &true.into()
        ),
        "{upload}"
    );
    // `<64 hex> 10\n` plus the chunked framing of a streamed answer.
    assert!(f["bytes_out"].as_u64().unwrap() >= 68, "{upload}");
    assert!(f["client"].as_str().unwrap().starts_with("127.0.0.1:"));
    assert!(f["duration_ms"].as_f64().unwrap() >= 0.0);
    assert!(
        upload["timestamp"]
            .as_str()
            .is_some_and(|t| t.starts_with("20"))
    );
    // One line per request, the worker listener's included.
    for path in ["/healthz", "/readyz", "/v1/streams", "/metrics"] {
        assert_eq!(
            access
                .iter()
                .filter(|v| v["fields"]["path"] == path)
                .count(),
            1,
            "{path}: {access:?}"
        );
    }
}

#[test]
fn no_access_log_switches_the_lines_off_and_a_given_token_is_not_logged_either() {
    let dir = tempfile::tempdir().unwrap();
    let secret = "s3cret-token-given-on-the-command-line";
    let server = Server::start(dir.path(), &["--no-access-log", "--worker-token", secret]);
    let (status, _) = http(server.addr("http="), "POST", "/discard", "abc");
    assert_eq!(status, 200);
    let rest = server.stop();
    assert!(rest.is_empty(), "{rest:?}");
    let stderr = std::fs::read_to_string(dir.path().join("stderr.log")).unwrap();
    assert!(!stderr.contains(secret), "{stderr}");
    assert!(
        !stderr.contains("/discard"),
        "access line written: {stderr}"
    );
    assert!(
        stderr.contains("READY") || stderr.contains("http:"),
        "{stderr}"
    );
}

/// `--check-config` with `file`, `env` and `flags`: (exit code, stderr).
fn check_config(file: &str, env: &[(&str, &str)], flags: &[&str]) -> (i32, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ur.toml");
    std::fs::write(&path, file).unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_upload-response-server"));
    cmd.arg("--config")
        .arg(&path)
        .arg("--check-config")
        .args(flags);
    for key in ["UR_WORKER_TOKEN", "UR_NUM_STREAMS", "UR_CONFIG"] {
        cmd.env_remove(key);
    }
    let out = cmd.envs(env.iter().copied()).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn check_config_layers_file_then_environment_then_flags_and_names_the_bad_key() {
    let file = "num_streams = 0\nresponse_timeout_ms = \"30s\"\nmax_body_bytes = \"1GiB\"\n";
    // The file alone is unusable, and the message names the option.
    let (code, err) = check_config(file, &[], &[]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("num_streams"), "{err}");
    // The environment beats the file...
    let (code, err) = check_config(file, &[("UR_NUM_STREAMS", "5")], &[]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("configuration ok"), "{err}");
    // ...and a flag beats the environment.
    let (code, err) = check_config(file, &[("UR_NUM_STREAMS", "5")], &["--num-streams", "0"]);
    assert_eq!(code, 1, "{err}");
    let (code, err) = check_config("num_streamz = 7\n", &[], &[]);
    assert_ne!(code, 0);
    assert!(err.contains("num_streamz"), "{err}");
    let (code, err) = check_config("drain_timeout_ms = \"soon\"\n", &[], &[]);
    assert_ne!(code, 0);
    assert!(
        err.contains("drain_timeout_ms") || err.contains("soon"),
        "{err}"
    );
}

/// `curl --cacert CA https://localhost:PORT/sha256`: whether it trusted the
/// certificate the server presented and got an answer.
fn curl_trusts(ca: &Path, port: u16) -> bool {
    Command::new("curl")
        .args(["-sS", "-o", "/dev/null", "--fail", "--cacert"])
        .arg(ca)
        .args(["--data-binary", "x"])
        .arg(format!("https://localhost:{port}/sha256"))
        .status()
        .expect("curl not found: run scripts/install-deps.sh")
        .success()
}

#[test]
fn sighup_reloads_the_tls_certificate_without_dropping_connections() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    let first = web_service::TlsIdentity::self_signed_in(&a).unwrap();
    let second = web_service::TlsIdentity::self_signed_in(&b).unwrap();
    assert_ne!(first.identity.certs(), second.identity.certs());
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::copy(&first.cert_path, &cert).unwrap();
    std::fs::copy(&first.key_path, &key).unwrap();
    let (cert_arg, key_arg) = (cert.to_str().unwrap(), key.to_str().unwrap());
    let server = Server::start(dir.path(), &["--tls-cert", cert_arg, "--tls-key", key_arg]);
    let port = server.addr("https=").port();
    assert!(curl_trusts(&first.cert_path, port));
    assert!(
        !curl_trusts(&second.cert_path, port),
        "the premise: B is not trusted yet"
    );

    // An upload in flight across the reload.
    let mut conn = TcpStream::connect(server.addr("http=")).unwrap();
    write!(
        conn,
        "POST /sha256 HTTP/1.1\r\nhost: x\r\nconnection: close\r\ncontent-length: 10\r\n\r\nhello"
    )
    .unwrap();
    conn.flush().unwrap();

    std::fs::copy(&second.cert_path, &cert).unwrap();
    std::fs::copy(&second.key_path, &key).unwrap();
    let hup = Command::new("kill")
        .args(["-HUP", &server.child.id().to_string()])
        .status()
        .unwrap();
    assert!(hup.success());
    let log = dir.path().join("stderr.log");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !std::fs::read_to_string(&log)
        .unwrap()
        .contains("TLS certificate reloaded")
    {
        assert!(Instant::now() < deadline, "no reload logged");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(curl_trusts(&second.cert_path, port), "new handshakes see B");
    assert!(!curl_trusts(&first.cert_path, port));

    conn.write_all(b"world").unwrap();
    let mut answer = String::new();
    conn.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(
        answer.contains("936a185caaa266bb9cbe981e9e05cb78cd732b0b3280eb944412bb6f8f8f07af 10\n")
    );
    assert!(server.stop().is_empty());
}
