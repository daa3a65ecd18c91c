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
