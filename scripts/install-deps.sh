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
# and run its shell worker with bash; the early-answer tests (web-service,
# upload-response-server) use curl as the HTTP/1.1 and HTTP/2 client.
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

# --- S3 client tests (upload-response-server/tests/s3_clients.rs) -----------
# boto3 and the AWS CLI (v1, from PyPI) in a venv under the target dir, where
# the tests look for it. botocore >= 1.36 sends aws-chunked bodies with
# trailing checksums, which is what those tests exercise. Fast when present.
s3_target="${CARGO_TARGET_DIR:-$(cd "$(dirname "$0")/.." && pwd)/target}"
s3_venv="$s3_target/s3-venv"
if ! "$s3_venv/bin/python" -c 'import boto3, awscli' 2> /dev/null; then
  if ! python3 -c 'import venv, ensurepip' 2> /dev/null && command -v apt-get > /dev/null; then
    apt-get update && apt-get install -y python3-venv
  fi
  mkdir -p "$s3_target"
  python3 -m venv "$s3_venv"
  "$s3_venv/bin/pip" install --quiet 'boto3>=1.36' 'awscli>=1.37'
fi
# --- end S3 client tests ----------------------------------------------------
