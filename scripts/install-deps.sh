#!/usr/bin/env bash
# Installs what the build and tests need beyond the Rust toolchain.
# Idempotent: does nothing when everything is present.
set -euo pipefail
if ! rustup component list --installed 2>/dev/null | grep -q '^rustfmt'; then
  rustup component add rustfmt
fi
if ! rustup component list --installed 2>/dev/null | grep -q '^clippy'; then
  rustup component add clippy
fi
# The worker API tests drive the API with curl, as docs/worker-api.md does,
# and run its shell worker with bash.
if ! command -v curl > /dev/null; then
  if command -v apt-get > /dev/null; then
    apt-get update && apt-get install -y curl
  else
    echo "curl is needed by the worker API tests: install it" >&2
    exit 1
  fi
fi

# --- operations (issue 14) ---------------------------------------------------
# promtool (Debian package `prometheus`) checks every /metrics page, and
# HAProxy is the balancer of the three-node scale-out tests
# (crates/*/tests/scale_out.rs, docs/deployment.md).
ops_missing=()
command -v promtool > /dev/null || ops_missing+=(prometheus)
command -v haproxy > /dev/null || ops_missing+=(haproxy)
if [ "${#ops_missing[@]}" -gt 0 ]; then
  if command -v apt-get > /dev/null; then
    apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${ops_missing[@]}"
    # The package starts a Prometheus server where systemd runs; tests need only promtool.
    if command -v systemctl > /dev/null && systemctl is-active --quiet prometheus 2> /dev/null; then
      systemctl stop prometheus || true
    fi
  else
    echo "promtool and haproxy are needed by the operations tests: install ${ops_missing[*]}" >&2
    exit 1
  fi
fi
# --- end operations ----------------------------------------------------------
