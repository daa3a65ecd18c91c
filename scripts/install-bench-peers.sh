#!/usr/bin/env bash
# Installs the peers `cargo xtask bench proxy` compares streaming-proxy with:
# nginx (with its slice module, as Debian builds it) and Varnish. Only the
# benchmark uses them; the tests and CI do not. Idempotent. The packages' own
# services (port 80 and 6081, if Debian starts them) are not used: the benchmark
# runs its own nginx and varnishd in the foreground, with configurations it
# writes under target/bench/proxy, on loopback ports it picks.
set -euo pipefail
missing=()
command -v nginx > /dev/null || [ -x /usr/sbin/nginx ] || missing+=(nginx)
command -v varnishd > /dev/null || [ -x /usr/sbin/varnishd ] || missing+=(varnish)
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
if ! command -v apt-get > /dev/null; then
  echo "install ${missing[*]} with your package manager (Debian: apt-get install ${missing[*]})" >&2
  exit 1
fi
sudo=()
[ "$(id -u)" -eq 0 ] || sudo=(sudo)
"${sudo[@]}" apt-get update
DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y "${missing[@]}"
