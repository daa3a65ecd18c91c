//! Servers the end-to-end benches start and stop: programs that print a
//! `READY http=ADDR` line (loadgen, our servers) or that are polled until they
//! accept (nginx, Varnish), and nginx's configuration, shared by the proxy
//! bench (`proxy.rs`) and the small-request table of the upload bench
//! (`small.rs`) so both start nginx the same way.

use std::fs;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use crate::web::{read_ready, stop};

/// How long nginx or Varnish may take to accept connections.
pub(crate) const START_TIMEOUT: Duration = Duration::from_secs(30);

/// One server under test, reachable at `http://{addr}`; dropping it stops it.
pub(crate) struct Server {
    pub(crate) name: &'static str,
    pub(crate) addr: String,
    /// How it is configured, for the report.
    pub(crate) setup: String,
    pub(crate) child: Child,
    stdin: Option<ChildStdin>,
    /// What followed `READY ` on its stdout (empty for a polled server).
    pub(crate) ready: String,
}

impl Server {
    pub(crate) fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Starts a program that prints `READY http=ADDR ...` (loadgen origin,
    /// streaming-proxy).
    pub(crate) fn start_ready(
        name: &'static str,
        mut cmd: Command,
        dir: &Path,
        setup: String,
    ) -> Result<Self, String> {
        let log = dir.join(format!("{name}.log"));
        let mut child = spawn(name, &mut cmd, &log, Stdio::piped())?;
        let stdin = child.stdin.take();
        let stdout = child.stdout.take();
        let mut server = Server {
            name,
            addr: String::new(),
            setup,
            child,
            stdin,
            ready: String::new(),
        };
        let stdout = stdout.ok_or_else(|| format!("{name}: stdout was not captured"))?;
        let fields = read_ready(name, stdout, &log)?;
        server.addr = fields
            .split_whitespace()
            .find_map(|f| f.strip_prefix("http="))
            .ok_or_else(|| format!("{name}: no http= in its READY line {fields:?}"))?
            .to_string();
        server.ready = fields;
        eprintln!("xtask: {name} ready on {}", server.addr);
        Ok(server)
    }

    /// Starts a program listening on `addr` and waits until it accepts.
    pub(crate) fn start_polled(
        name: &'static str,
        mut cmd: Command,
        addr: SocketAddr,
        log: &Path,
        setup: String,
    ) -> Result<Self, String> {
        let child = spawn(name, &mut cmd, log, Stdio::null())?;
        let mut server = Server {
            name,
            addr: addr.to_string(),
            setup,
            child,
            stdin: None,
            ready: String::new(),
        };
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                eprintln!("xtask: {name} ready on {addr}");
                return Ok(server);
            }
            if let Ok(Some(status)) = server.child.try_wait() {
                return Err(format!(
                    "{name} exited with {status} (see {})",
                    log.display()
                ));
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "{name} did not accept on {addr} within {START_TIMEOUT:?} (see {})",
                    log.display()
                ));
            }
            thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        stop(self.name, &mut self.child, self.stdin.take());
    }
}

pub(crate) fn spawn(
    name: &str,
    cmd: &mut Command,
    log: &Path,
    stdout: Stdio,
) -> Result<Child, String> {
    let stderr = fs::File::create(log).map_err(|e| format!("create {}: {e}", log.display()))?;
    cmd.stdin(Stdio::piped())
        .stdout(stdout)
        .stderr(stderr)
        .spawn()
        .map_err(|e| format!("cannot start {name} ({cmd:?}): {e}"))
}

/// A loopback port free right now (the peers need a fixed port in their config).
pub(crate) fn free_addr() -> Result<SocketAddr, String> {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(|e| format!("cannot find a free loopback port: {e}"))
}

/// `program` on PATH or in the sbin directories Debian installs daemons to.
pub(crate) fn find_program(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/usr/local/sbin", "/sbin"].map(PathBuf::from))
        .map(|dir| dir.join(program))
        .find(|p| p.is_file())
}

/// Whether this process runs as root (nginx then needs `user root;` so its
/// workers may write the cache directory this process created).
pub(crate) fn is_root() -> bool {
    fs::read_to_string("/proc/self/status").is_ok_and(|s| {
        s.lines()
            .find(|l| l.starts_with("Uid:"))
            .and_then(|l| l.split_whitespace().nth(1))
            == Some("0")
    })
}

/// Worker processes of `worker_processes auto`: one per core.
pub(crate) fn nginx_workers() -> usize {
    thread::available_parallelism().map_or(1, |n| n.get())
}

/// Writes `dir/nginx.conf` (foreground, `worker_processes auto`, no access
/// log, every temporary path under `dir`, `http` as the rest of the `http`
/// block) and starts nginx on it, waiting until `addr` accepts.
pub(crate) fn start_nginx(
    name: &'static str,
    program: &Path,
    dir: &Path,
    worker_connections: u32,
    http: &str,
    addr: SocketAddr,
    setup: String,
) -> Result<Server, String> {
    let temp = dir.join("temp");
    fs::create_dir_all(&temp).map_err(|e| format!("create {}: {e}", temp.display()))?;
    let user = if is_root() { "user root;\n" } else { "" };
    // A worker holds up to two descriptors per connection (client, upstream)
    // and raises its own limit to this when it may.
    let nofile = u64::from(worker_connections) * 2 + 64;
    let temp = temp.display();
    let conf = format!(
        "{user}daemon off;
worker_processes auto;
worker_rlimit_nofile {nofile};
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{ worker_connections {worker_connections}; }}
http {{
    access_log off;
    client_body_temp_path {temp}/body;
    proxy_temp_path {temp}/proxy;
    fastcgi_temp_path {temp}/fastcgi;
    uwsgi_temp_path {temp}/uwsgi;
    scgi_temp_path {temp}/scgi;
{http}}}
",
        dir = dir.display()
    );
    let path = dir.join("nginx.conf");
    fs::write(&path, conf).map_err(|e| format!("write {}: {e}", path.display()))?;
    let mut cmd = Command::new(program);
    cmd.arg("-p")
        .arg(dir)
        .arg("-e")
        .arg(dir.join("error.log"))
        .arg("-c")
        .arg(&path);
    Server::start_polled(name, cmd, addr, &dir.join("stderr.log"), setup)
}
