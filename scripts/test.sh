#!/usr/bin/env bash
# Runs every check and test against the real Redis, MariaDB and LocalStack (started if needed).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/services.sh

# Databases left by earlier test runs (each test makes its own flash_t_*).
mysql -h 127.0.0.1 -u root -N -e "SELECT schema_name FROM information_schema.schemata WHERE schema_name LIKE 'flash\_t\_%'" \
  | while read -r db; do mysql -h 127.0.0.1 -u root -e "DROP DATABASE \`$db\`"; done

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets -- -D warnings
echo "== cargo test"
log=$(mktemp)
set +e
cargo test --workspace --all-targets -- --test-threads "${TEST_THREADS:-4}" 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
set -e
# One closing line for the whole workspace (cargo prints one per test binary).
summary=$(awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
     END { printf "tests: %d passed, %d failed\n", p, f }' "$log")
echo "$summary"
rm -f "$log"
[[ $status -eq 0 ]] || exit "$status"

echo "== sam validate --lint"
deploy/sam.sh validate

echo "== wiring: the runner against template.yaml"
cargo build -p runner --bin flash-local
target/debug/flash-local wiring | "$(ls -d "$HOME"/.cache/flash-sale/sam-venv-*/bin | head -n 1)/python" deploy/check_wiring.py

echo "== the sale page in headless Chromium"
bash scripts/e2e.sh

echo "== every function as its own binary under the Lambda runtime emulator"
bash deploy/lambda_check.sh

if [[ ${SAM_BUILD:-1} == 1 ]]; then
  echo "== sam build (release, arm64)"
  deploy/sam.sh build
  for f in .aws-sam/build/*Function; do
    [[ -x $f/bootstrap ]] || { echo "no bootstrap in $f" >&2; exit 1; }
    printf '%-28s %s\n' "$(basename "$f")" "$(du -h "$f/bootstrap" | cut -f1)"
  done
fi

# The workspace's tally again, last, for whoever reads only the end.
echo "$summary"
