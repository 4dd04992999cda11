#!/usr/bin/env bash
# Runs the whole system locally with its defaults: starts Redis, MariaDB and LocalStack if
# they are not running, creates the queues, applies the migrations, warms a demo sale and
# serves every route on http://127.0.0.1:3000 (LISTEN_ADDR).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/services.sh
export LISTEN_ADDR=${LISTEN_ADDR:-127.0.0.1:3000} LOG_FORMAT=${LOG_FORMAT:-text}
cargo build -p runner --bin flash-local
echo
echo "A token for curl:  TOKEN=\$(target/debug/flash-local token alice)"
echo "Then:              curl -s localhost:${LISTEN_ADDR##*:}/products/1/stock"
echo "                   curl -s -XPOST localhost:${LISTEN_ADDR##*:}/buy -H \"authorization: Bearer \$TOKEN\" -d '{\"product_id\":1}'"
echo
exec target/debug/flash-local serve --migrate --demo
