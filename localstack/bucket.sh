#!/usr/bin/env bash
# Creates an S3 bucket on LocalStack (idempotent: a bucket that exists already is fine). Uses
# only curl and S3's REST API (path-style, {endpoint}/{bucket}), so it needs no AWS CLI.
#   bucket.sh ENDPOINT BUCKET
set -euo pipefail
endpoint=$1 bucket=$2
region=${AWS_DEFAULT_REGION:-us-east-1}

out=$(mktemp)
trap 'rm -f "$out"' EXIT
code=$(curl -sS --max-time 10 -o "$out" -w '%{http_code}' -X PUT "$endpoint/$bucket" \
  -H "Authorization: AWS4-HMAC-SHA256 Credential=test/20260101/$region/s3/aws4_request, SignedHeaders=host, Signature=0")
if [[ $code == 200 ]] || grep -q BucketAlreadyOwnedByYou "$out"; then
  echo "bucket $bucket"
else
  echo "could not create bucket $bucket on $endpoint (HTTP $code): $(cat "$out")" >&2
  exit 1
fi
