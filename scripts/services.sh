#!/usr/bin/env bash
# Makes sure Redis, MariaDB and LocalStack (SQS, S3) answer on 127.0.0.1, starting any that does
# not (the commands of the project's machines; see README). Sourced by up.sh and test.sh.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

wait_for() { # wait_for NAME COMMAND...
  local name=$1 i; shift
  for i in $(seq 1 60); do
    "$@" >/dev/null 2>&1 && return 0
    ((i % 20 == 0)) && echo "still waiting for $name ($((i / 2)) s)"
    sleep 0.5
  done
  echo "$name did not come up" >&2; return 1
}

if ! redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then
  echo "starting Redis"
  mkdir -p /var/lib/redis /var/log/redis
  redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
    --dir /var/lib/redis --logfile /var/log/redis/ci.log
  wait_for Redis redis-cli -h 127.0.0.1 -p 6379 ping
fi

if ! mysqladmin -h 127.0.0.1 -P 3306 -u root ping >/dev/null 2>&1; then
  echo "starting MariaDB"
  start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd
  wait_for MariaDB mysqladmin -h 127.0.0.1 -P 3306 -u root ping
fi

"$root/localstack/up.sh"

# The defaults every function reads locally (the same names template.yaml sets in AWS).
export REDIS_URL=${REDIS_URL:-redis://127.0.0.1:6379}
export DATABASE_URL=${DATABASE_URL:-mysql://root@127.0.0.1:3306/flashsale}
export AWS_ENDPOINT_URL=${AWS_ENDPOINT_URL:-http://127.0.0.1:4566}
export AWS_REGION=${AWS_REGION:-us-east-1}
export AWS_ACCESS_KEY_ID=${AWS_ACCESS_KEY_ID:-test} AWS_SECRET_ACCESS_KEY=${AWS_SECRET_ACCESS_KEY:-test}
export ORDERS_QUEUE_URL=${ORDERS_QUEUE_URL:-http://127.0.0.1:4566/000000000000/orders}
export PAYMENT_TIMEOUTS_QUEUE_URL=${PAYMENT_TIMEOUTS_QUEUE_URL:-http://127.0.0.1:4566/000000000000/payment-timeouts}
export LOCAL_JWT_SECRET=${LOCAL_JWT_SECRET:-local-dev-secret-change-me}
export PUBLISH_BUCKET=${PUBLISH_BUCKET:-flash-sale-pages}
