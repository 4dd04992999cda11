#!/usr/bin/env bash
# A local Redis Cluster with TLS only, on 127.0.0.1: 3 primaries and 3 replicas on ports
# 7000-7005, certificates from a private CA made with openssl, a short cluster-node-timeout so a
# failover takes seconds. Idempotent.
#
#   eval "$(scripts/redis-cluster.sh start)"   # starts it (if needed) and points this shell at it
#   scripts/redis-cluster.sh stop              # stops the six servers this script started
#   scripts/redis-cluster.sh env               # prints the export lines only
#
# State (certificates, configs, logs, pid files) lives under ~/.cache/flash-sale/redis-cluster.
# `start` prints progress on stderr and, as its last lines on stdout, the exports.
set -euo pipefail

dir=${REDIS_CLUSTER_DIR:-$HOME/.cache/flash-sale/redis-cluster}
ports=(7000 7001 7002 7003 7004 7005)
node_timeout_ms=${REDIS_CLUSTER_NODE_TIMEOUT_MS:-1000}

log() { echo "redis-cluster: $*" >&2; }

exports() {
  echo "export REDIS_URL=rediss://127.0.0.1:${ports[0]}"
  echo "export REDIS_CLUSTER=true"
  echo "export REDIS_TLS_CA_FILE=$dir/tls/ca.crt"
}

cli() { # cli PORT ARGS...
  local port=$1; shift
  redis-cli --tls --cacert "$dir/tls/ca.crt" -h 127.0.0.1 -p "$port" "$@"
}

certificates() {
  [[ -s $dir/tls/server.crt && -s $dir/tls/ca.crt ]] && return 0
  log "making a CA and a server certificate for 127.0.0.1 (openssl)"
  mkdir -p "$dir/tls"
  (
    cd "$dir/tls"
    openssl req -x509 -new -nodes -newkey rsa:2048 -days 3650 -subj "/CN=flash-sale local CA" \
      -keyout ca.key -out ca.crt 2>/dev/null
    openssl req -new -nodes -newkey rsa:2048 -subj "/CN=127.0.0.1" -keyout server.key -out server.csr 2>/dev/null
    printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth,clientAuth\n' > ext.cnf
    openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 3650 \
      -extfile ext.cnf -out server.crt 2>/dev/null
    chmod 600 ca.key server.key
  )
}

running() { # running PORT
  [[ -f $dir/$1/redis.pid ]] && kill -0 "$(cat "$dir/$1/redis.pid")" 2>/dev/null
}

start_node() { # start_node PORT
  local port=$1
  running "$port" && return 0
  mkdir -p "$dir/$port"
  redis-server --port 0 --tls-port "$port" --bind 127.0.0.1 \
    --tls-cert-file "$dir/tls/server.crt" --tls-key-file "$dir/tls/server.key" \
    --tls-ca-cert-file "$dir/tls/ca.crt" --tls-auth-clients no \
    --tls-replication yes --tls-cluster yes \
    --cluster-enabled yes --cluster-config-file "$dir/$port/nodes.conf" \
    --cluster-node-timeout "$node_timeout_ms" --cluster-replica-validity-factor 0 \
    --save "" --appendonly no --dir "$dir/$port" \
    --daemonize yes --pidfile "$dir/$port/redis.pid" --logfile "$dir/$port/redis.log"
}

wait_ok() { # wait_ok WHAT COMMAND...
  local what=$1 i; shift
  for i in $(seq 1 100); do
    "$@" >/dev/null 2>&1 && return 0
    ((i % 50 == 0)) && log "still waiting for $what ($((i / 5)) s)"
    sleep 0.2
  done
  log "$what did not happen"; return 1
}

cluster_ok() {
  cli "${ports[0]}" cluster info | grep -q '^cluster_state:ok' &&
    [[ $(cli "${ports[0]}" cluster nodes | grep -c 'master') -ge 3 ]]
}

replicas_ok() { # three nodes flagged slave (the flags may read "myself,slave")
  [[ $(cli "${ports[0]}" cluster nodes | awk '$3 ~ /slave/' | wc -l) -ge 3 ]]
}

# Every replica's link to its primary up and its initial sync done: until then a primary's
# WAIT counts no replica, and a purchase that waits for one answers 503.
replication_ok() {
  local p info
  for p in "${ports[@]}"; do
    info=$(cli "$p" info replication) || return 1
    case $info in
      *role:slave*) grep -q '^master_link_status:up' <<<"$info" && ! grep -q '^master_sync_in_progress:1' <<<"$info" || return 1 ;;
      *role:master*) grep -q '^slave0:.*state=online' <<<"$info" || return 1 ;;
      *) return 1 ;;
    esac
  done
}

start() {
  command -v openssl >/dev/null || { log "openssl is needed"; exit 1; }
  certificates
  for p in "${ports[@]}"; do start_node "$p"; done
  for p in "${ports[@]}"; do wait_ok "node $p answering" cli "$p" ping; done
  if ! cli "${ports[0]}" cluster info | grep -q '^cluster_slots_assigned:16384'; then
    log "creating the cluster (3 primaries, 3 replicas)"
    local nodes=()
    for p in "${ports[@]}"; do nodes+=("127.0.0.1:$p"); done
    redis-cli --tls --cacert "$dir/tls/ca.crt" --cluster create "${nodes[@]}" \
      --cluster-replicas 1 --cluster-yes >&2
  fi
  log "waiting for the cluster: state ok, replicas attached, replication links up"
  wait_ok "cluster_state:ok" cluster_ok
  # Every replica attached to its primary (a failover needs one).
  wait_ok "replicas attached" replicas_ok
  wait_ok "replication links up" replication_ok
  log "up: TLS cluster on 127.0.0.1:${ports[0]}-${ports[-1]}"
  exports
}

stop() {
  for p in "${ports[@]}"; do
    if running "$p"; then
      kill "$(cat "$dir/$p/redis.pid")" 2>/dev/null || true
    fi
  done
  for p in "${ports[@]}"; do
    for _ in $(seq 1 50); do running "$p" || break; sleep 0.1; done
    # dump.rdb too: a replica's full sync leaves one, and a node that loads it at the next
    # start is "not empty" and cannot join a new cluster.
    rm -f "$dir/$p/redis.pid" "$dir/$p/nodes.conf" "$dir/$p/dump.rdb"
  done
  log "stopped"
}

case ${1:-} in
  start) start ;;
  stop) stop ;;
  env) exports ;;
  *) echo "usage: $0 start|stop|env" >&2; exit 2 ;;
esac
