#!/usr/bin/env bash
# Restart-time measurement for ration.
# usage: run.sh ITEMS REPEATS [PROCESS_SECONDS] [MODE]
#   ITEMS            items to load into service "load" (decimal ids)
#   REPEATS          whole-cluster restarts, and rolling rounds (each node once per round)
#   PROCESS_SECONDS  seconds of `rationctl bench --service load` before measuring (default 8)
#   MODE             all | whole | rolling  (default all); with whole/rolling an existing
#                    data set in $DATA is reused (KEEP=1 skips the fresh load)
# env: SNAP=1 (default) force one Raft snapshot per node after the load; SNAP=0 leaves the log as it is
#      TAIL=N    seconds of bench after that snapshot, so entries since the snapshot must be replayed
#      RATIOND_FLAGS  extra rationd flags for every start (e.g. "--snapshot-threshold 1024")
#      MAX_SECONDS    hard limit for the whole script (default 2400)
#      WORK           where binaries, data dirs and logs go (default /tmp/ration-restart)
# Needs curl, jq, ss, bc and python3; uses ports 17170-17191 on 127.0.0.1.
# Everything it starts is killed on exit (trap), and a watchdog kills the script at MAX_SECONDS.
set -u
ITEMS=${1:-1000000}; REPEATS=${2:-3}; PROC=${3:-8}; MODE=${4:-all}
HERE=$(cd "$(dirname "$0")" && pwd); ROOT=$(cd "$HERE/../.." && pwd)
R=${WORK:-/tmp/ration-restart}; BIN=$R/bin; DATA=${DATA:-$R/data}; LOGS=${LOGS:-$R/logs}
FLAGS=${RATIOND_FLAGS:-}
MAX_SECONDS=${MAX_SECONDS:-2400}
API=(x 17170 17180 17190); RAFT=(x 17171 17181 17191)
ADDRS=127.0.0.1:17170,127.0.0.1:17180,127.0.0.1:17190
CTL="$BIN/rationctl --addr $ADDRS --retry-for 30s --timeout 30s"
declare -A PID=()
mkdir -p "$LOGS"

cleanup() {
  for p in "${PID[@]}"; do kill -9 "$p" 2>/dev/null; done
  for p in "${PID[@]}"; do wait "$p" 2>/dev/null; done
  [ -n "${WD:-}" ] && kill "$WD" 2>/dev/null
  wait 2>/dev/null
}
trap cleanup EXIT
trap 'echo "interrupted"; exit 1' INT TERM
MAIN=$$
( exec >/dev/null 2>&1   # do not hold the caller's pipes open
  sleep "$MAX_SECONDS" & SP=$!
  trap 'kill $SP; exit 0' TERM
  wait $SP && { echo "WATCHDOG: $MAX_SECONDS s passed, stopping" >>"$LOGS/watchdog.log"; kill -TERM $MAIN; } ) & WD=$!

mkdir -p "$BIN"
(cd "$ROOT" && go build -o "$BIN/" ./cmd/rationd ./cmd/rationctl) || exit 1
(cd "$ROOT/bench" && go build -o "$BIN/probe" ./restart/probe) || exit 1

start_node() { # i [extra flags...]
  local i=$1; shift
  for _ in $(seq 100); do   # the previous process must have released its ports
    ss -ltn | grep -qE "127.0.0.1:(${API[$i]}|${RAFT[$i]}) " || break; sleep 0.1
  done
  echo "=== START n$i $(date +%s%N) flags: $FLAGS $*" >>"$LOGS/n$i.log"
  $BIN/rationd --node-id n$i --data-dir "$DATA/n$i" --http-addr 127.0.0.1:${API[$i]} \
    --raft-addr 127.0.0.1:${RAFT[$i]} $FLAGS "$@" >>"$LOGS/n$i.log" 2>&1 &
  PID[$i]=$!
}
stop_node() { # i signal ; waits up to 30 s, then SIGKILL
  local i=$1 sig=$2 p=${PID[$1]:-}
  [ -z "$p" ] && return
  kill -"$sig" "$p" 2>/dev/null
  for _ in $(seq 300); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
  kill -9 "$p" 2>/dev/null; wait "$p" 2>/dev/null; unset "PID[$i]"
}
status() { curl -s -m 5 -H 'Content-Type: application/json' -d '{}' http://127.0.0.1:${API[$1]}/ration.v1.ClusterService/Status; }
leader_commit() { # prints the leader's commit index
  local i; for i in 1 2 3; do
    local s; s=$(status $i) || continue
    if [ "$(echo "$s" | jq -r .state)" = Leader ]; then echo "$s" | jq -r .commitIndex; return; fi
  done
  echo 0
}
wait_caught_up() { # all nodes applied == leader commit, up to 120 s
  for _ in $(seq 600); do
    local c; c=$(leader_commit); local ok=1 i
    for i in 1 2 3; do [ "$(status $i | jq -r .appliedIndex)" = "$c" ] || ok=0; done
    [ "$c" != 0 ] && [ $ok = 1 ] && return 0; sleep 0.2
  done; echo "not caught up after 120 s"; return 1
}
report_state() {
  local i d; echo "--- state $(date +%T)"
  $CTL cluster status | head -1
  for i in 1 2 3; do
    local m; m=$(curl -s -m 5 http://127.0.0.1:${API[$i]}/metrics)
    printf 'n%d: raft.db %s B; snapshots: %s; %s\n' $i "$(stat -c %s $DATA/n$i/raft.db)" \
      "$(for d in $DATA/n$i/snapshots/*/; do printf '%s=%sB ' "$(basename $d)" "$(stat -c %s $d/state.bin)"; done)" \
      "$(echo "$m" | grep -E '^ration_node_(log_entries|log_bytes_since_snapshot|trailing_logs|applied_index|commit_index) ' | tr '\n' ' ')"
  done
  $CTL stats 2>/dev/null | head -5
}
phases() { # i : phase lines of node i's log since its last START marker, in s since $T0
  python3 "$HERE/phases.py" "$LOGS/n$1.log" "$T0"
}

load() {
  rm -rf "$DATA" "$LOGS"; mkdir -p "$DATA" "$LOGS"
  start_node 1 --bootstrap; sleep 2
  start_node 2 --join 127.0.0.1:${API[1]}
  start_node 3 --join 127.0.0.1:${API[1]},127.0.0.1:${API[2]}
  sleep 3
  $CTL service create load --kind dmcheck --bucket-size 180 --max-leases-per-worker 100000 >/dev/null || exit 1
  local t=$(date +%s.%N)
  seq 1000000000 $((1000000000 + ITEMS - 1)) | timeout 900 $CTL items add load --file - >/dev/null || echo "items add failed"
  echo "loaded $ITEMS items in $(echo "$(date +%s.%N) - $t" | bc) s"
  if [ "$PROC" -gt 0 ]; then
    timeout $((PROC + 60)) $CTL bench --service load --duration ${PROC}s --warmup 0s --workers 16 --progress 0 | tail -2
  fi
  wait_caught_up
  if [ "${SNAP:-1}" = 1 ]; then
    # Force a Raft snapshot on every node (as the 2 m / 8,192-entry policy eventually would):
    # restart all with a 1 s interval and a threshold of 16 entries, wait for a snapshot, restart normally.
    local i
    for i in 1 2 3; do stop_node $i TERM; done
    for i in 1 2 3; do start_node $i --snapshot-interval 1s --snapshot-threshold 16; done
    wait_caught_up
    for _ in $(seq 120); do
      [ -n "$(ls $DATA/n1/snapshots/*/state.bin $DATA/n2/snapshots/*/state.bin $DATA/n3/snapshots/*/state.bin 2>/dev/null | wc -l | grep -x 3)" ] && break; sleep 1
    done
    sleep 2
    for i in 1 2 3; do stop_node $i TERM; done
    for i in 1 2 3; do start_node $i; done
    wait_caught_up
    echo "forced one snapshot per node"
  fi
  if [ "${TAIL:-0}" -gt 0 ]; then
    echo "bench for $TAIL s after the snapshot (log since snapshot)"
    timeout $((TAIL + 60)) $CTL bench --service load --duration ${TAIL}s --warmup 0s --workers 16 --progress 0 | tail -1
    wait_caught_up
  fi
  sleep 3   # let the compactor's per-second check and metrics settle
  report_state
}

whole() {
  for r in $(seq "$REPEATS"); do
    local i target; wait_caught_up; target=$(leader_commit)
    echo "=== whole-cluster restart $r: SIGKILL all; target applied index $target"
    for i in 1 2 3; do kill -9 ${PID[$i]}; done
    for i in 1 2 3; do wait ${PID[$i]} 2>/dev/null; unset "PID[$i]"; done
    T0=$(date +%s%N)
    for i in 1 2 3; do start_node $i; done
    timeout 200 $BIN/probe -addrs $ADDRS -start $T0 -target "$target" -write load -timeout 180s 2>/dev/null
    for i in 1 2 3; do echo "n$i log phases:"; phases $i; done
    sleep 2
  done
}

rolling() {
  local r i target
  for r in $(seq "$REPEATS"); do
    for i in 1 2 3; do
      wait_caught_up; target=$(leader_commit)
      echo "=== rolling round $r: SIGTERM n$i; target applied index $target"
      local t=$(date +%s%N); stop_node $i TERM
      echo "n$i stopped in $(( ($(date +%s%N) - t) / 1000000 )) ms"
      T0=$(date +%s%N); start_node $i
      timeout 200 $BIN/probe -addrs $ADDRS -start $T0 -target "$target" -watch $i -timeout 180s 2>/dev/null
      echo "n$i log phases:"; phases $i
    done
  done
}

if [ "$MODE" = all ] || [ "${KEEP:-0}" != 1 ]; then
  load
else
  for i in 1 2 3; do start_node $i; done
fi
case $MODE in
  all) whole; rolling ;;
  whole) whole ;;
  rolling) rolling ;;
esac
report_state
