#!/usr/bin/env bash
# Remote vs in-process workers on the release build, from the repository root:
#   cargo build --release -p upload-response-server -p loadgen -p worker-client --bins --examples
#   scripts/bench-remote-workers.sh
# One server (built-in echo/discard), the remote_discard and remote_echo
# examples (HTTP/1.1 to the worker API; UR_H2C=1 in the environment for h2c),
# loadgen over TLS: 1 GiB uploads (best of 2) and 20,000 1 KiB echo round
# trips on 100 connections and 3,000 on one, in-process path first, remote
# path second.
# Env: R [target/release] (where the binaries are), PORT_BASE [18000]
# (listeners on PORT_BASE+80, +443, +1090: move them when another server
# holds those ports), ONLY=rate to skip the upload rows.
set -eu
R=${R:-target/release}
P=${PORT_BASE:-18000}
HTTPS=$((P + 443)) API=127.0.0.1:$((P + 1090))
D=target/bench/remote-workers
rm -rf "$D"; mkdir -p "$D"
$R/upload-response-server --http 127.0.0.1:$((P + 80)) --https 127.0.0.1:$HTTPS --worker-api $API \
  --worker-token bench --data-dir "$D" > target/bench/remote-workers-server.log 2>&1 &
SERVER=$!
sleep 1
# A server that could not listen (the ports are taken) must not leave
# loadgen measuring whatever else answers there.
kill -0 $SERVER || { cat target/bench/remote-workers-server.log >&2; exit 1; }
export UR_WORKER_TOKEN=bench UR_CONCURRENCY=128
$R/examples/remote_discard http://$API 2> target/bench/remote-workers-discard.log &
DISCARD=$!
$R/examples/remote_echo http://$API 2> target/bench/remote-workers-echo.log &
ECHO=$!
sleep 1
CA="--ca $D/cert.pem"
for proto in h1 h2; do
  [ "${ONLY:-}" = rate ] && break
  for path in /discard /remote-discard; do
    echo "== upload $proto $path"
    $R/loadgen upload --proto $proto --url https://localhost:$HTTPS$path $CA --bytes 1G --repeat 2 2>&1 | tail -3
  done
done
for proto in h1 h2; do
  for path in /echo /remote-echo; do
    echo "== rate $proto $path"
    $R/loadgen rate --proto $proto --url https://localhost:$HTTPS$path $CA --sources 4 --conns 100 --requests 20000 --body-bytes 1K 2>&1 | tail -2
  done
done
for path in /echo /remote-echo; do
  echo "== rate h1 1 conn $path"
  $R/loadgen rate --proto h1 --url https://localhost:$HTTPS$path $CA --conns 1 --requests 3000 --body-bytes 1K 2>&1 | tail -2
done
kill -TERM $DISCARD $ECHO
wait $DISCARD $ECHO || true
kill -TERM $SERVER
wait $SERVER || true
