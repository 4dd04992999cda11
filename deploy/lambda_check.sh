#!/usr/bin/env bash
# Every function as its own binary under a real Lambda runtime API emulator (`cargo lambda
# watch`), invoked with the sample events in events/ (`cargo lambda invoke --data-file`),
# against the real Redis, MariaDB and LocalStack. Checks each response, and reports each
# function's first-invocation time (process start included) as its local cold start.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
source scripts/services.sh
echo "checking the SAM CLI + cargo-lambda venv (deploy/sam.sh)"
deploy/sam.sh --version >/dev/null             # makes sure the venv (with cargo-lambda) exists
venv=$(ls -d "$HOME"/.cache/flash-sale/sam-venv-* | head -n 1)
export PATH="$venv/bin:$PATH"

export DATABASE_URL=mysql://root@127.0.0.1:3306/flash_lambda
export REDIS_KEY_PREFIX=lambda$RANDOM
export PAYMENT_WINDOW_SECS=1 OUTBOX_RETRY_AFTER_SECS=0 LOG_FORMAT=text RUST_LOG=warn
sqs=http://127.0.0.1:4566
export ORDERS_QUEUE_URL=$sqs/000000000000/lambda-orders
export PAYMENT_TIMEOUTS_QUEUE_URL=$sqs/000000000000/lambda-payment-timeouts
mysql -h 127.0.0.1 -u root -e 'DROP DATABASE IF EXISTS flash_lambda'
localstack/queues.sh "$sqs" lambda-orders lambda-payment-timeouts >/dev/null
cargo build -p runner --bin flash-local
target/debug/flash-local setup --demo           # product 1, activity 1, 100 units, warmed

log=$(mktemp --suffix=.log)
port=${LAMBDA_PORT:-9311}
cargo lambda watch --invoke-address 127.0.0.1 --invoke-port "$port" >"$log" 2>&1 &
watch_pid=$!
trap 'kill $watch_pid 2>/dev/null; wait $watch_pid 2>/dev/null || true' EXIT
echo "waiting for cargo lambda watch on 127.0.0.1:$port (log: $log)"
for i in $(seq 1 120); do
  curl -s -o /dev/null "http://127.0.0.1:$port/" && break
  ((i % 10 == 0)) && echo "still waiting for cargo lambda watch ($i s)"
  sleep 1
done

# Compile every function first, so the timings below are process start + first response.
cargo build --bins -p stock-query -p buy -p orders -p admin -p order-consumer -p payment-timeout -p outbox-retry -p warmup

echo "invoking every function with its sample event"
pass=0 fail=0
invoke() { # invoke BINARY EVENT PYTHON_CHECK (the check sees the response as `r`)
  local bin=$1 event=$2 check=$3 out start end
  start=$(date +%s%N)
  if ! out=$(cargo lambda invoke "$bin" --invoke-address 127.0.0.1 --invoke-port "$port" --data-file "events/$event" 2>&1); then
    echo "FAIL $bin $event: invoke failed: $out"; fail=$((fail + 1)); return
  fi
  end=$(date +%s%N)
  if python3 -c "import json,sys; r=json.loads(sys.argv[1]); b=json.loads(r['body']) if isinstance(r, dict) and isinstance(r.get('body'), str) and r['body'][:1] in '{[' else None; assert ($check), r" "$out" 2>/dev/null; then
    printf 'ok   %-16s %-32s %6d ms\n' "$bin" "$event" $(((end - start) / 1000000))
    pass=$((pass + 1))
  else
    echo "FAIL $bin $event: $out"; fail=$((fail + 1))
  fi
}

invoke stock-query apigw-stock.json "r['statusCode'] == 200 and b['stock'] == 100 and b['state'] == 'open'"
invoke buy apigw-buy.json "r['statusCode'] == 202 and b['receipt'] == '1-1-event-user-100'"
invoke stock-query apigw-stock.json "r['statusCode'] == 200 and b['stock'] == 99"
invoke order-consumer sqs-orders.json "[f['itemIdentifier'] for f in r['batchItemFailures']] == ['planted-bad']"
invoke orders apigw-order.json "r['statusCode'] == 200 and b['status'] == 'pending_payment'"
sleep 1.2                                        # past pay_by (PAYMENT_WINDOW_SECS=1)
invoke payment-timeout sqs-payment-timeouts.json "r['batchItemFailures'] == []"
invoke orders apigw-order.json "r['statusCode'] == 200 and b['status'] == 'cancelled'"
invoke stock-query apigw-stock.json "r['statusCode'] == 200 and b['stock'] == 100"
invoke outbox-retry schedule.json "r['products'] == 1 and r['dead_lettered'] == 0"
invoke warmup schedule.json "r['activities'] == 1 and r['refreshed'] == 1"
invoke admin apigw-admin-products.json "r['statusCode'] == 200 and b['total'] == 1 and b['items'][0]['id'] == 1"

echo "lambda: $pass passed, $fail failed"
[[ $fail -eq 0 ]] || { tail -n 40 "$log"; exit 1; }
