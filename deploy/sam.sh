#!/usr/bin/env bash
# AWS SAM CLI + cargo-lambda from pinned PyPI packages, in a venv cached per pin set.
#
#   deploy/sam.sh validate    sam validate --lint (offline, no credentials needed)
#   deploy/sam.sh build       sam build (compiles every function with cargo-lambda, arm64)
#   deploy/sam.sh ARGS...     any other sam command, e.g. deploy/sam.sh deploy --guided
#
# Environment: SAM_VENV (default ~/.cache/flash-sale/sam-venv-<hash of requirements.txt>),
# PYTHON (default python3), AWS_REGION (default us-east-1 for validate).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
pins_hash=$(sha256sum "$here/requirements.txt" | cut -c1-12)
venv=${SAM_VENV:-$HOME/.cache/flash-sale/sam-venv-$pins_hash}

source "$root/scripts/heartbeat.sh"  # with_heartbeat

if [[ ! -f $venv/.installed ]]; then
  echo "installing SAM CLI and cargo-lambda into $venv (pinned, once; pip takes a few minutes)" >&2
  rm -rf "$venv"
  "${PYTHON:-python3}" -m venv "$venv"
  with_heartbeat "installing SAM CLI and cargo-lambda" \
    "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$here/requirements.txt"
  touch "$venv/.installed"
fi

# `sam build` runs `cargo lambda`, so the venv's bin comes first.
export PATH="$venv/bin:$PATH"
export SAM_CLI_TELEMETRY=0
cd "$root"

case "${1:-validate}" in
  validate)
    # --lint runs cfn-lint locally; dummy credentials keep any SDK lookup from prompting.
    echo "sam validate --lint template.yaml (cfn-lint, offline)" >&2
    AWS_ACCESS_KEY_ID=${AWS_ACCESS_KEY_ID:-test} AWS_SECRET_ACCESS_KEY=${AWS_SECRET_ACCESS_KEY:-test} \
      sam validate --lint --region "${AWS_REGION:-us-east-1}" --template-file template.yaml
    ;;
  build)
    shift
    sam build --template-file template.yaml "$@"
    ;;
  *)
    sam "$@"
    ;;
esac
