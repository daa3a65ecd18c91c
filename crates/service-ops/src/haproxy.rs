//! An HAProxy in front of a loopback cluster, for the scale-out tests and
//! the recipes of `docs/deployment.md`: the balancer is the real engine,
//! started in the foreground from a generated configuration.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// One backend node: where it serves, and where its `/readyz` answers.
#[derive(Debug, Clone, Copy)]
pub struct Backend {
    /// The address clients' connections go to.
    pub addr: SocketAddr,
    /// The listener answering `GET /readyz` (worker API or metrics listener).
    pub ready: SocketAddr,
}

/// How the balancer spreads work.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Balance {
    /// L4: whole TCP connections, round robin (upload-response nodes).
    TcpRoundRobin,
    /// L7: `balance uri` + `hash-type consistent`, so each URL has one home
    /// node and losing a node moves only its URLs (streaming-proxy nodes).
    UriConsistent,
}

/// The configuration text for `backends` behind `listen`. Nodes are checked
/// with `GET /readyz` every 200 ms and taken out after one failure, and a
/// connection refused by a dead node is sent to another (`redispatch`).
pub fn config(listen: SocketAddr, balance: Balance, backends: &[Backend]) -> String {
    let (mode, algorithm) = match balance {
        Balance::TcpRoundRobin => ("tcp", "balance roundrobin"),
        Balance::UriConsistent => ("http", "balance uri\n  hash-type consistent"),
    };
    let mut text = format!(
        "global\n  maxconn 4096\n\
         defaults\n  mode {mode}\n  timeout connect 2s\n  timeout client 120s\n  timeout server 120s\n\
         \x20 retries 3\n  option redispatch\n\
         frontend front\n  bind {listen}\n  default_backend nodes\n\
         backend nodes\n  {algorithm}\n  option httpchk\n  http-check send meth GET uri /readyz\n\
         \x20 default-server inter 200ms fall 1 rise 1\n"
    );
    for (i, b) in backends.iter().enumerate() {
        text.push_str(&format!(
            "  server node{i} {} check addr {} port {}\n",
            b.addr,
            b.ready.ip(),
            b.ready.port()
        ));
    }
    text
}

/// A running HAProxy; killed when dropped.
#[derive(Debug)]
pub struct HaProxy {
    child: Child,
    /// Where clients connect.
    pub addr: SocketAddr,
}

impl HaProxy {
    /// Writes the configuration into `dir` and starts `haproxy` (installed by
    /// `scripts/install-deps.sh`) on a free loopback port; returns once it accepts.
    pub fn start(dir: &Path, balance: Balance, backends: &[Backend]) -> Result<Self, String> {
        let addr = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| format!("no free port: {e}"))?;
        let path = dir.join("haproxy.cfg");
        std::fs::write(&path, config(addr, balance, backends)).map_err(|e| e.to_string())?;
        let child = Command::new("haproxy")
            .arg("-db")
            .arg("-f")
            .arg(&path)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot run haproxy ({e}): run scripts/install-deps.sh"))?;
        let mut proxy = Self { child, addr };
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(addr).is_err() {
            if let Ok(Some(status)) = proxy.child.try_wait() {
                return Err(format!("haproxy exited: {status}"));
            }
            if Instant::now() > deadline {
                return Err("haproxy did not start listening".into());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        // Let the first health checks mark the nodes up.
        std::thread::sleep(Duration::from_millis(600));
        Ok(proxy)
    }
}

impl Drop for HaProxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
