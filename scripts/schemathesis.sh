#!/usr/bin/env bash
# Schemathesis against a runner of its own, from openapi.yaml: every operation, with generated
# (positive) and mutated (negative) inputs, a user token and an admin token, and the checks
# not_a_server_error, status_code_conformance, content_type_conformance,
# response_schema_conformance (+ response_headers_conformance) and the project's own
# refused_requests_change_nothing (deploy/schemathesis_hooks.py): a refused request leaves Redis
# and MySQL exactly as they were.
#
# Assumes target/debug/flash-local is built (`cargo build -p runner --bin flash-local`); starts
# Redis, MariaDB and LocalStack if needed (scripts/services.sh), then a runner with its own
# database (flash_st, dropped first), Redis key prefix, queues, port and pages bucket (or
# directory), and always stops it. Schemathesis comes from deploy/schemathesis-requirements.txt
# (exact pins), in a venv cached per pin set.
#
# Runs, one after the other (Schemathesis sends one request at a time):
#   1. deploy/test_schemathesis_check.py: the checks do fail on crafted broken responses
#   2. negative (mutated inputs), user token, every operation (admin ones: the gateway's 403)
#   3. negative, admin token, the admin operations
#   4. positive (generated valid inputs), admin token, the admin operations
#   5. positive, user token, the sale and order operations (half the product ids bought and
#      half the receipts generated are replaced by products on sale and the user's real
#      receipts, so buys answer 202 and order status and payment 200, not only 404)
#   6. positive, a forged token, every operation (the gateway's 401)
# The positive runs add Schemathesis's ignored_auth check (each operation that needs a token is
# resent without one and with a wrong one, and must refuse).
# In every run, each refused request (a GatewayError, a 5xx, or the function's refusal of its
# input: invalid_request, payload_too_large, unauthenticated, forbidden, *not_found) must leave
# Redis (keys under the prefix) and MySQL (every table) exactly as they were: the state is read
# right before and right after the request (deploy/schemathesis_hooks.py says why that is
# sound, and which refusals are business outcomes that may count an attempt).
#
# Environment: ST_OPENAPI (the document, default openapi.yaml), ST_MAX_EXAMPLES (per operation and run, default 50), ST_SEED (default random;
# the runs print theirs), ST_LISTEN_ADDR (default 127.0.0.1:3911), ST_LOG (runner log, default
# a temp file), ST_REPORT_DIR (JUnit reports and HAR files of every request, default
# target/schemathesis), SCHEMATHESIS_VENV.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
started=$SECONDS

bin=$root/target/debug/flash-local
if [[ ! -x $bin ]]; then
  echo "$bin is missing: build it first (cargo build -p runner --bin flash-local)" >&2
  exit 1
fi

pins=$root/deploy/schemathesis-requirements.txt
pins_hash=$(sha256sum "$pins" | cut -c1-12)
venv=${SCHEMATHESIS_VENV:-$HOME/.cache/flash-sale/schemathesis-venv-$pins_hash}
if [[ ! -f $venv/.installed ]]; then
  echo "installing Schemathesis into $venv (pinned, once; about a minute)"
  rm -rf "$venv"
  "${PYTHON:-python3}" -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$pins"
  touch "$venv/.installed"
fi
py=$venv/bin/python
echo "schemathesis: $("$venv/bin/st" --version)"

source scripts/services.sh

# The runner's own settings (they override the defaults services.sh exported).
export DATABASE_URL=mysql://root@127.0.0.1:3306/flash_st
export REDIS_KEY_PREFIX=st${RANDOM}x$RANDOM
export LISTEN_ADDR=${ST_LISTEN_ADDR:-127.0.0.1:3911}
export WEB_DIR=$root/web
export LOG_FORMAT=${LOG_FORMAT:-text}
# The schedules (outbox-retry, warm-up) run once at start and then not during the run, so the
# only writer is the request on the wire.
export OUTBOX_RETRY_EVERY_SECS=3600
# Queues of this run alone (deleted at the end): no message of an earlier run, and no purge,
# whose minute-long window could swallow this run's first order messages.
sqs=http://127.0.0.1:4566
run_id=st$$-$RANDOM
export ORDERS_QUEUE_URL=$sqs/000000000000/$run_id-orders
export PAYMENT_TIMEOUTS_QUEUE_URL=$sqs/000000000000/$run_id-payment-timeouts
queues=("$ORDERS_QUEUE_URL" "$PAYMENT_TIMEOUTS_QUEUE_URL" "$ORDERS_QUEUE_URL-dlq" "$PAYMENT_TIMEOUTS_QUEUE_URL-dlq")
delete_queue() { # delete_queue QUEUE_URL
  curl -fsS --max-time 10 "$sqs/" \
    -H "Content-Type: application/x-amz-json-1.0" \
    -H "X-Amz-Target: AmazonSQS.DeleteQueue" \
    -H "Authorization: AWS4-HMAC-SHA256 Credential=test/20260101/us-east-1/sqs/aws4_request, SignedHeaders=host, Signature=0" \
    -d "{\"QueueUrl\":\"$1\"}" >/dev/null 2>&1 || true
}

mysql -h 127.0.0.1 -P 3306 -u root -e 'DROP DATABASE IF EXISTS flash_st'
localstack/queues.sh "$sqs" "$run_id-orders" "$run_id-payment-timeouts" >/dev/null

# Pages are published to a bucket of this run's own on LocalStack's S3 (as in AWS); to a
# directory where that LocalStack runs without S3 (an older one started with SERVICES=sqs),
# so that a missing local service is not reported as the API's 503.
PUBLISH_DIR=$(mktemp -d)
export PUBLISH_DIR PUBLISH_BUCKET=flash-st-pages
if ! localstack/bucket.sh "$sqs" "$PUBLISH_BUCKET" >/dev/null 2>&1; then
  echo "note: LocalStack runs without S3 here: pages are published to $PUBLISH_DIR instead"
  unset PUBLISH_BUCKET
fi
work=$(mktemp -d)
log=${ST_LOG:-$work/runner.log}
report_dir=${ST_REPORT_DIR:-$root/target/schemathesis}
mkdir -p "$report_dir"
runner_pid=

cleanup() {
  local status=$?
  if [[ -n $runner_pid ]] && kill -0 "$runner_pid" 2>/dev/null; then
    kill "$runner_pid" 2>/dev/null || true
    wait "$runner_pid" 2>/dev/null || true
  fi
  for q in "${queues[@]}"; do delete_queue "$q"; done
  rm -rf "$PUBLISH_DIR" "$work"
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

echo "starting the runner on $LISTEN_ADDR (Redis prefix $REDIS_KEY_PREFIX, database flash_st)"
"$bin" serve --migrate --demo >"$log" 2>&1 &
runner_pid=$!
base_url=http://$LISTEN_ADDR
code=000
for _ in $(seq 1 120); do
  code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$base_url/products/1/stock" || true)
  [[ $code == 200 ]] && break
  if ! kill -0 "$runner_pid" 2>/dev/null; then
    echo "the runner exited; the end of its log:" >&2
    tail -n 40 "$log" >&2
    exit 1
  fi
  sleep 0.5
done
if [[ $code != 200 ]]; then
  echo "the runner did not serve the demo sale (GET /products/1/stock: $code) within 60 s:" >&2
  tail -n 40 "$log" >&2
  exit 1
fi
sleep 2 # the schedules' first run (at start) is over

user_token=$("$bin" token st-user)
admin_token=$("$bin" token st-admin admin)
export REDIS_URL DATABASE_URL REDIS_KEY_PREFIX

echo "== the checks can fail (deploy/test_schemathesis_check.py)"
"$py" deploy/test_schemathesis_check.py

max_examples=${ST_MAX_EXAMPLES:-50}
spec=$(realpath "${ST_OPENAPI:-$root/openapi.yaml}")
seed_args=()
[[ -n ${ST_SEED:-} ]] && seed_args=(--seed "$ST_SEED")
checks=not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance,response_headers_conformance,refused_requests_change_nothing
failed=()
summaries=()

run() { # run LABEL MODE REFUSED TOKEN [FILTER ARGS...]
  local label=$1 mode=$2 refused=$3 token=$4
  shift 4
  echo
  echo "== schemathesis: $label"
  local out=$work/$label.out status extra_checks=
  # ignored_auth: each operation that requires a token is also sent without one and with a
  # forged one, and must refuse both (401).
  [[ $mode == positive ]] && extra_checks=,ignored_auth
  set +e
  # From the report directory: Schemathesis keeps its crash records (for `st replay ID`) in
  # ./.schemathesis.
  (cd "$report_dir" && SCHEMATHESIS_HOOKS=schemathesis_hooks PYTHONPATH=$root/deploy ST_REFUSED=$refused \
    ST_STATUS_LOG=$work/$label.statuses "$venv/bin/st" --no-color run "$spec" --url "$base_url" \
    --mode "$mode" --phases examples,coverage,fuzzing --max-examples "$max_examples" \
    --workers 1 --checks "$checks$extra_checks" --generation-with-security-parameters false \
    --header "Authorization: Bearer $token" --request-timeout 10 \
    --suppress-health-check all --warnings off --generation-database none \
    --report junit,har --report-junit-path "$report_dir/$label.xml" --report-har-path "$report_dir/$label.har" \
    "${seed_args[@]}" "$@") 2>&1 | tee "$out"
  status=${PIPESTATUS[0]}
  set -e
  echo "-- $label: what each operation answered (status x responses)"
  if [[ -f $work/$label.statuses ]]; then
    sort "$work/$label.statuses" | uniq -c | awk '{ k = $2 " " $3; t[k] = t[k] sprintf(" %sx%s", $4, $1) }
      END { for (k in t) printf "   %-40s%s\n", k, t[k] }' | sort -k2
  fi
  # Schemathesis closes with a line like "=== No issues found in 12.3s ===" or "=== 1 failure in 9.8s ===".
  summaries+=("$label: $(grep -E '^=+ .* in [0-9.]+s =+$' "$out" | tail -n 1 | tr -d '=' | sed 's/^ *//; s/ *$//')")
  [[ $status -eq 0 ]] || failed+=("$label (exit $status)")
}

run negative-user negative input "$user_token"
run negative-admin negative input "$admin_token" --include-path-regex '^/admin/'
run positive-admin positive input "$admin_token" --include-path-regex '^/admin/'
ST_RECEIPTS_OF=st-user run positive-user positive input "$user_token" --exclude-path-regex '^/admin/'
# A token that does not validate: every operation that needs one answers the gateway's 401
# (its body and www-authenticate challenge checked against the schema).
run forged-token positive input "not.a.jwt" --max-examples 3

echo
echo "== schemathesis summary ($((SECONDS - started)) s in all)"
for s in "${summaries[@]}"; do echo "  $s"; done
if ((${#failed[@]})); then
  echo "FAILED: ${failed[*]}" >&2
  echo "the end of the runner's log:" >&2
  tail -n 20 "$log" >&2
  exit 1
fi
echo "schemathesis: every run passed"
