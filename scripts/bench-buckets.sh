#!/usr/bin/env bash
# Stock buckets compared (issue 15): the same sale with 1 and with 3 buckets on the local TLS
# cluster (3 primaries, 3 replicas), buy req/s and the EVALSHA calls each primary served
# (INFO commandstats). Arguments go to the bench (--users, --units, --connections,
# --compare-buckets). Writes target/bench/buckets.json.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/services.sh
scripts/redis-cluster.sh start >/dev/null
eval "$(scripts/redis-cluster.sh env)"
export REDIS_URL REDIS_CLUSTER REDIS_TLS_CA_FILE
cargo build --release -p runner -p bench
ulimit -n 65536 2>/dev/null || true
target/release/bench --compare-buckets 1,3 --users 40000 --units 20000 "$@"
