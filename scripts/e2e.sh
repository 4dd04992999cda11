#!/usr/bin/env bash
# Browser end-to-end tests in headless Chromium: the published sale page (e2e/sale.e2e.mjs) and
# the admin console (e2e/admin.e2e.mjs), one file after the other against the same runner.
#
# Assumes target/debug/flash-local is already built (`cargo build -p runner --bin flash-local`):
# this script does not build it, so it can run beside (or after) another build.
#
# Starts Redis, MariaDB and LocalStack if needed (scripts/services.sh), then a runner of its own
# with its own database (flash_e2e, dropped first so every run is fresh), Redis key prefix, queues,
# port and pages bucket (flash-e2e-pages on LocalStack's S3), runs the tests against it and always
# stops it. The sale page is opened as AWS serves it: published to S3, fetched through the runner's
# /p/ proxy (CloudFront's part) from another origin (http://localhost:PORT) than the API's
# (http://127.0.0.1:PORT, PUBLIC_API_URL), so every call it makes is a CORS request.
# Environment: CHROMIUM (default /usr/bin/chromium), E2E_LOG (runner log, default a temp file),
# E2E_LISTEN_ADDR (default 127.0.0.1:3907), AWS_ENDPOINT_URL (LocalStack, default
# http://127.0.0.1:4566, which must run SQS and S3); the tests read START_DELAY_SECS (sale page, default 6)
# and ADMIN_START_DELAY_SECS (admin console, default 25): how far ahead their sales start.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

bin=$root/target/debug/flash-local
if [[ ! -x $bin ]]; then
  echo "$bin is missing: build it first (cargo build -p runner --bin flash-local)" >&2
  exit 1
fi

chromium_bin=${CHROMIUM:-/usr/bin/chromium}
if [[ ! -x $chromium_bin ]]; then
  echo "installing Debian's chromium"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
fi

if [[ ! -d e2e/node_modules/playwright-core ]]; then
  echo "installing the e2e test's npm packages (npm ci)"
  (cd e2e && npm ci --no-audit --no-fund --loglevel=error)
fi

source scripts/services.sh

# The runner's own settings (they override the defaults services.sh exported).
export DATABASE_URL=mysql://root@127.0.0.1:3306/flash_e2e
export REDIS_KEY_PREFIX=e2e$RANDOM
export LISTEN_ADDR=${E2E_LISTEN_ADDR:-127.0.0.1:3907}
export PAYMENT_WINDOW_SECS=60
export WEB_DIR=$root/web
export LOG_FORMAT=${LOG_FORMAT:-text}
sqs=$AWS_ENDPOINT_URL
export ORDERS_QUEUE_URL=$sqs/000000000000/e2e-orders
export PAYMENT_TIMEOUTS_QUEUE_URL=$sqs/000000000000/e2e-payment-timeouts

mysql -h 127.0.0.1 -P 3306 -u root -e 'DROP DATABASE IF EXISTS flash_e2e'
localstack/queues.sh "$sqs" e2e-orders e2e-payment-timeouts
export PUBLISH_BUCKET=flash-e2e-pages
localstack/bucket.sh "$sqs" "$PUBLISH_BUCKET"
# The page lives on one origin, the API on another (as CloudFront and execute-api in AWS).
port=${LISTEN_ADDR##*:}
pages_url=http://localhost:$port
export PUBLIC_API_URL=http://$LISTEN_ADDR
export CORS_ALLOWED_ORIGINS=$pages_url

# A run that died may have left messages that name orders of its (now dropped) database.
# SQS allows one purge per queue a minute, so a quick re-run may be refused: only warn then.
purge() { # purge QUEUE_URL
  curl -fsS --max-time 10 "$sqs/" \
    -H "Content-Type: application/x-amz-json-1.0" \
    -H "X-Amz-Target: AmazonSQS.PurgeQueue" \
    -H "Authorization: AWS4-HMAC-SHA256 Credential=test/20260101/us-east-1/sqs/aws4_request, SignedHeaders=host, Signature=0" \
    -d "{\"QueueUrl\":\"$1\"}" >/dev/null 2>&1 || echo "note: could not purge $1 (purged less than a minute ago?)"
}
for q in "$ORDERS_QUEUE_URL" "$PAYMENT_TIMEOUTS_QUEUE_URL" "$ORDERS_QUEUE_URL-dlq" "$PAYMENT_TIMEOUTS_QUEUE_URL-dlq"; do
  purge "$q"
done

log=${E2E_LOG:-$(mktemp --suffix=.log)}
runner_pid=

cleanup() {
  local status=$?
  if [[ -n $runner_pid ]] && kill -0 "$runner_pid" 2>/dev/null; then
    kill "$runner_pid" 2>/dev/null || true
    wait "$runner_pid" 2>/dev/null || true
  fi
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

echo "starting the runner on $LISTEN_ADDR (log: $log)"
"$bin" serve --migrate >"$log" 2>&1 &
runner_pid=$!

base_url=http://$LISTEN_ADDR
for i in $(seq 1 120); do
  code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$base_url/products/1/stock" || true)
  [[ $code != 000 ]] && break
  if ! kill -0 "$runner_pid" 2>/dev/null; then
    echo "the runner exited; the end of its log:" >&2
    tail -n 40 "$log" >&2
    exit 1
  fi
  ((i % 20 == 0)) && echo "still waiting for the runner on $base_url ($((i / 2)) s)"
  sleep 0.5
done
if [[ $code == 000 ]]; then
  echo "the runner did not answer on $base_url within 60 s; the end of its log:" >&2
  tail -n 40 "$log" >&2
  exit 1
fi

admin_token=$("$bin" token e2e-admin admin)
alice_token=$("$bin" token e2e-alice)
bob_token=$("$bin" token e2e-bob)
# More buyers for the admin console's sale (space-separated; a JWT holds no space).
extra_tokens=
for user in e2e-carol e2e-dave e2e-erin; do
  extra_tokens+="$("$bin" token "$user") "
done

echo "running the browser tests in headless Chromium: e2e/sale.e2e.mjs, then e2e/admin.e2e.mjs (each waits for its sale to start)"
# The files are named, not the directory: node 20's `node --test DIR` only picks files named like
# *.test.mjs, and would pass having run nothing. One file at a time: each drives a browser and
# waits on the clock, and two at once on a small machine only make both slower.
set +e
BASE_URL=$base_url PAGES_URL=$pages_url PAGES_S3_URL=$sqs/$PUBLISH_BUCKET/p ADMIN_TOKEN=$admin_token USER_TOKEN=$alice_token USER2_TOKEN=$bob_token \
  EXTRA_USER_TOKENS=$extra_tokens CHROMIUM=$chromium_bin \
  node --test --test-concurrency=1 e2e/sale.e2e.mjs e2e/admin.e2e.mjs
status=$?
set -e
if [[ $status != 0 ]]; then
  echo "an e2e test failed; the end of the runner's log ($log):" >&2
  tail -n 40 "$log" >&2
else
  echo "screenshots: e2e/screenshots/"
fi
exit "$status"
