#!/usr/bin/env bash
# The benchmark: a flash sale under load against the local runner (release build), with the
# ceilings measured in the same run. Arguments go to the bench (--users, --units,
# --connections, --json). Prints a table; writes JSON to target/bench/latest.json.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/services.sh
command -v redis-benchmark >/dev/null || { apt-get update && apt-get install -y redis-tools; }
cargo build --release -p runner -p bench
ulimit -n 65536 2>/dev/null || true
exec target/release/bench "$@"
