#!/usr/bin/env bash
# Creates the work queues and their dead-letter queues on an SQS endpoint (idempotent: SQS
# returns the existing queue for the same name and attributes). Uses only curl and the SQS
# JSON protocol, so it needs no AWS CLI.
#   queues.sh ENDPOINT ORDERS_NAME TIMEOUTS_NAME
set -euo pipefail
endpoint=$1
region=${AWS_DEFAULT_REGION:-us-east-1}
account=000000000000

sqs() { # sqs ACTION JSON
  curl -fsS --max-time 10 "$endpoint/" \
    -H "Content-Type: application/x-amz-json-1.0" \
    -H "X-Amz-Target: AmazonSQS.$1" \
    -H "Authorization: AWS4-HMAC-SHA256 Credential=test/20260101/$region/sqs/aws4_request, SignedHeaders=host, Signature=0" \
    -d "$2" >/dev/null
}

make_pair() { # make_pair NAME VISIBILITY_SECONDS MAX_RECEIVES
  local name=$1 vis=$2 max=$3
  sqs CreateQueue "{\"QueueName\":\"$name-dlq\",\"Attributes\":{\"MessageRetentionPeriod\":\"1209600\"}}"
  local dlq_arn="arn:aws:sqs:$region:$account:$name-dlq"
  local redrive="{\\\"deadLetterTargetArn\\\":\\\"$dlq_arn\\\",\\\"maxReceiveCount\\\":\\\"$max\\\"}"
  sqs CreateQueue "{\"QueueName\":\"$name\",\"Attributes\":{\"VisibilityTimeout\":\"$vis\",\"RedrivePolicy\":\"$redrive\"}}"
  echo "queue $name (+ $name-dlq, redrive after $max receives, visibility ${vis}s)"
}

make_pair "$2" 180 5
make_pair "$3" 180 5
