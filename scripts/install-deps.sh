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
