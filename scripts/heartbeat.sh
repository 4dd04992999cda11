# Sourced by the install steps (deploy/sam.sh, localstack/up.sh):
# with_heartbeat WHAT COMMAND...: runs COMMAND, saying "still WHAT (N s)" every 10 s meanwhile.
with_heartbeat() {
  local what=$1 rc=0 beat; shift
  (n=0 sleeper=
   trap '[[ -z $sleeper ]] || kill "$sleeper" 2>/dev/null; exit 0' TERM
   while :; do sleep 10 & sleeper=$!; wait "$sleeper"; n=$((n + 10)); echo "  still $what ($n s)"; done) >&2 &
  beat=$!
  "$@" || rc=$?
  kill "$beat" 2>/dev/null; wait "$beat" 2>/dev/null || true
  return "$rc"
}
