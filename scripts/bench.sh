#!/usr/bin/env bash
# The benchmark: a flash sale under load against the local runner (release build), with the
# ceilings measured in the same run. Arguments go to the bench (--users, --units,
# --connections, --json). Prints a table; writes JSON to target/bench/latest.json and, beside
# it, throughput.svg and latency.svg. After a run whose end state checks out, the two plots are
# copied to docs/bench/ (the README shows them); BENCH_DOCS_DIR names another directory, or
# none when empty (BENCH_DOCS_DIR= scripts/bench.sh leaves docs/ alone).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/services.sh
if ! command -v redis-benchmark >/dev/null; then
  echo "installing redis-tools (redis-benchmark) with apt-get"
  apt-get update && apt-get install -y redis-tools
fi
cargo build --release -p runner -p bench
ulimit -n 65536 2>/dev/null || true

# The plots go beside the JSON: the default's, or the one --json names.
json=target/bench/latest.json
args=("$@")
for ((i = 0; i + 1 < ${#args[@]}; i++)); do
  [[ ${args[i]} == --json ]] && json=${args[i + 1]}
done

status=0
target/release/bench "$@" || status=$?
docs=${BENCH_DOCS_DIR-docs/bench}
if [[ $status == 0 && -n $docs ]]; then
  dir=$(dirname "$json")
  mkdir -p "$docs"
  cp "$dir/throughput.svg" "$dir/latency.svg" "$docs/"
  echo "plots copied to $docs/"
fi
exit "$status"
