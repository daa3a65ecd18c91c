//! Project automation, reachable as `cargo xtask` (see `.cargo/config.toml`).
//!
//! * `cargo xtask test`: the whole test suite: every workspace test, then the
//!   loom model checks of `chunk-cache` (built with `--cfg chunk_cache_loom` in a
//!   target directory of their own so they never invalidate the normal build).
//! * `cargo xtask bench [cache|hpks|all]`: the criterion benches, in release.
//! * `cargo xtask bench web [--quick]`: end-to-end upload throughput and
//!   request rate of the project's `bench_sink` against loadgen's bare sink
//!   (see `web.rs`), written to `target/bench/web.md`.
//! * `cargo xtask bench upload [--quick] [--no-peers]`: the same against the
//!   real `upload-response-server` (uploads to `/discard`, 1 KiB `/echo` round
//!   trips), plus the small-request table beside the bare sink and nginx (see
//!   `small.rs`), written to `target/bench/upload.md`.
//! * `cargo xtask bench proxy [--quick]`: streaming-proxy against the origin
//!   served directly and, if installed, nginx and Varnish (see `proxy.rs`),
//!   written to `target/bench/proxy.md`.
//!
//! Hand-written on `std::process` only: it must build in seconds on a fresh
//! machine before anything else is compiled.

mod peers;
mod proxy;
mod small;
mod web;

use std::env;
use std::path::PathBuf;
use std::process::{Command, ExitCode};

fn main() -> ExitCode {
    let args: Vec<String> = env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("test") => test(&args[1..]),
        Some("bench") => bench(&args[1..]),
        _ => {
            eprintln!("usage: cargo xtask test [extra cargo test args]");
            eprintln!("       cargo xtask bench [cache|hpks|all]");
            eprintln!(
                "       cargo xtask bench web|upload [--quick] [--bytes N] [--repeat K] [--conns C] [--requests R] [--no-peers (upload)]"
            );
            eprintln!(
                "       cargo xtask bench proxy [--quick] [--bytes N] [--repeat K] [--conns C] [--requests R] [--no-peers]"
            );
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(msg) => {
            eprintln!("xtask: {msg}");
            ExitCode::FAILURE
        }
    }
}

/// Root of the workspace (the parent of this crate's manifest directory).
fn root() -> PathBuf {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().map(PathBuf::from).unwrap_or(manifest)
}

fn cargo() -> Command {
    let mut cmd = Command::new(env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cmd.current_dir(root());
    cmd
}

fn run(mut cmd: Command) -> Result<(), String> {
    eprintln!("xtask: running {cmd:?}");
    let status = cmd
        .status()
        .map_err(|e| format!("cannot start {cmd:?}: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("{cmd:?} failed with {status}"))
    }
}

fn test(extra: &[String]) -> Result<(), String> {
    let mut cmd = cargo();
    cmd.args(["test", "--workspace", "--all-targets"])
        .args(extra);
    run(cmd)?;
    let mut doc = cargo();
    doc.args(["test", "--workspace", "--doc"]);
    run(doc)?;
    loom()
}

/// Exhaustive interleaving checks of the slot publication protocol.
fn loom() -> Result<(), String> {
    let mut cmd = cargo();
    cmd.args(["test", "--release", "-p", "chunk-cache", "--test", "loom"])
        .env("RUSTFLAGS", "--cfg chunk_cache_loom")
        .env("CARGO_TARGET_DIR", root().join("target").join("loom"));
    run(cmd)
}

fn bench(args: &[String]) -> Result<(), String> {
    let which = args.first().map(String::as_str).unwrap_or("all");
    if which == "web" || which == "upload" {
        return web::bench(which, &args[1..]);
    }
    if which == "proxy" {
        return proxy::bench(&args[1..]);
    }
    let packages: &[&str] = match which {
        "cache" => &["chunk-cache"],
        "hpks" => &["http-pack"],
        "all" => &["chunk-cache", "http-pack"],
        other => {
            return Err(format!(
                "unknown bench {other:?}: use cache, hpks, all, web, upload or proxy"
            ));
        }
    };
    for package in packages {
        let mut cmd = cargo();
        cmd.args(["bench", "-p", package])
            .args(&args[1.min(args.len())..]);
        run(cmd)?;
    }
    Ok(())
}
