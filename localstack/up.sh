#!/usr/bin/env bash
# Brings up LocalStack's SQS and S3 on 127.0.0.1:4566 and creates the project's queues and the
# bucket the sale pages are published to.
#
# Where a Docker engine answers, `docker compose` runs the pinned image (docker-compose.yml).
# Where none does (as on the project's CI machines), LocalStack is installed from PyPI into a
# venv from the pins in requirements.txt (localstack-core 4.12.0 is the last line that runs on
# Python 3.11) and started on the host. Idempotent: a LocalStack that already answers is reused.
#
# Environment: LOCALSTACK_VENV (default ~/.cache/flash-sale/localstack-<hash of pins>),
# LOCALSTACK_LOG (default /tmp/flash-sale-localstack.log), PUBLISH_BUCKET (default flash-sale-pages).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
endpoint=http://127.0.0.1:4566
health="$endpoint/_localstack/health"

# SQS is what a LocalStack must have to be used at all; S3 (the published pages) is checked apart,
# so a LocalStack started by an older up.sh (SERVICES=sqs) still serves everything but pages.
service_up() { curl -fsS --max-time 2 "$health" 2>/dev/null | grep -q "\"$1\": *\"\\(available\\|running\\)\""; }
healthy() { service_up sqs; }

source "$(dirname "$here")/scripts/heartbeat.sh"  # with_heartbeat

if ! healthy; then
  if command -v docker >/dev/null && docker info >/dev/null 2>&1; then
    docker compose -f "$here/docker-compose.yml" up -d localstack
  else
    pins_hash=$(sha256sum "$here/requirements.txt" | cut -c1-12)
    venv=${LOCALSTACK_VENV:-$HOME/.cache/flash-sale/localstack-$pins_hash}
    if [[ ! -x $venv/bin/python ]] || ! "$venv/bin/python" -c 'import localstack' 2>/dev/null; then
      echo "installing LocalStack into $venv (pinned, once; pip takes a few minutes)"
      python3 -m venv "$venv"
      with_heartbeat "installing LocalStack" \
        "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$here/requirements.txt"
    fi
    log=${LOCALSTACK_LOG:-/tmp/flash-sale-localstack.log}
    echo "starting LocalStack on the host (log: $log)"
    # setsid: LocalStack outlives this script (and the CI step that called it).
    SERVICES=sqs,s3 GATEWAY_LISTEN=127.0.0.1:4566 SQS_ENDPOINT_STRATEGY=path \
      LOCALSTACK_VOLUME_DIR=${TMPDIR:-/tmp}/flash-sale-localstack \
      setsid "$venv/bin/python" -m localstack.runtime.main >"$log" 2>&1 < /dev/null &
  fi
  echo "waiting for LocalStack's SQS to answer (up to 90 s)"
  for i in $(seq 1 90); do
    healthy && break
    ((i % 10 == 0)) && echo "still waiting for LocalStack ($i s)"
    sleep 1
  done
  healthy || { echo "LocalStack did not become healthy; see its log" >&2; exit 1; }
fi
echo "LocalStack SQS is up at $endpoint"

# Queues: each work queue has a dead-letter queue; a message goes there after maxReceiveCount
# receives. Visibility timeouts are six times the consumer's timeout, as AWS recommends for
# event source mappings (template.yaml uses the same figures).
export AWS_ACCESS_KEY_ID=${AWS_ACCESS_KEY_ID:-test} AWS_SECRET_ACCESS_KEY=${AWS_SECRET_ACCESS_KEY:-test}
export AWS_DEFAULT_REGION=${AWS_DEFAULT_REGION:-us-east-1}
"$here/queues.sh" "$endpoint" "${ORDERS_QUEUE_NAME:-orders}" "${PAYMENT_TIMEOUTS_QUEUE_NAME:-payment-timeouts}"

# The sale pages' bucket (template.yaml: PagesBucket; the runner serves it at /p/). S3 starts on
# LocalStack's first S3 request, so "available" (not yet "running") is enough.
if service_up s3; then
  "$here/bucket.sh" "$endpoint" "${PUBLISH_BUCKET:-flash-sale-pages}"
else
  echo "warning: the LocalStack at $endpoint runs without S3 (started with SERVICES=sqs?): publishing" \
    "a sale page fails until it runs S3 (stop that LocalStack, then run localstack/up.sh)" >&2
fi
