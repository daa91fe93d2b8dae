#!/usr/bin/env bash
# CI check of the packaging: builds the image, starts deploy/compose.yaml's
# three nodes under a project of its own on free 127.0.0.1 ports, and runs a
# worker (rationctl) against them while it
#   1. kills the leader's container: writes must resume within $RESUME_BOUND
#      seconds; the node then comes back on another IP (a container holds
#      its old one) and must rejoin by name;
#   2. stops the next leader's container (SIGTERM: rationd hands over): the
#      same bound, a clean exit, and it rejoins;
# and checks that every item whose submit was acknowledged is in the
# results. Prints what it measured. Tears everything down (containers,
# volumes, network, the image it built), on failure too.
# RATION_IMAGE=TAG uses an existing image instead of building one.
set -euo pipefail
cd "$(dirname "$0")/.."

RESUME_BOUND=${RESUME_BOUND:-15}  # seconds for writes to resume
READY_BOUND=60                    # seconds for nodes to be ready
ITEMS=1000
BUCKET_SIZE=5

project=ration-ci-$$
tmp=$(mktemp -d)
built=""
squatter=""
if command -v docker-compose >/dev/null 2>&1; then dc=(docker-compose); else dc=(docker compose); fi
compose() { "${dc[@]}" -p "$project" -f deploy/compose.yaml "$@"; }

teardown() {
  local rc=$?
  set +e
  if [ "$rc" -ne 0 ]; then
    echo "--- FAILED (exit $rc); rationctl's last errors:"
    tail -n 20 "$tmp/ctl.log" 2>/dev/null
    echo "--- the nodes' last log lines:"
    compose logs --no-color --tail 30 2>&1
  fi
  [ -n "$squatter" ] && docker rm -f -v "$squatter" >/dev/null 2>&1
  compose down -v --remove-orphans -t 5 >/dev/null 2>&1
  [ -n "$built" ] && docker rmi "$built" >/dev/null 2>&1
  rm -rf "$tmp"
  exit "$rc"
}
trap teardown EXIT
trap 'exit 130' INT TERM

now() { echo "$EPOCHREALTIME"; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.2f", b - a }'; }
fail() { echo "FAIL: $*" >&2; exit 1; }
start=$(now)

# --- image, rationctl, ports, token
if [ -z "${RATION_IMAGE:-}" ]; then
  export RATION_IMAGE=ration-ci:$$
  built=$RATION_IMAGE
  deploy/build-image.sh "$RATION_IMAGE" >"$tmp/build.log" 2>&1 || { cat "$tmp/build.log"; exit 1; }
fi
# The image's flags: the build cache serves both.
CGO_ENABLED=0 go build -trimpath -ldflags='-s -w' -o "$tmp/rationctl" ./cmd/rationctl
read -r RATION_N1_PORT RATION_N2_PORT RATION_N3_PORT < <(python3 -c '
import socket
ss = [socket.socket() for _ in range(3)]
for s in ss: s.bind(("127.0.0.1", 0))
print(*[s.getsockname()[1] for s in ss])')
export RATION_N1_PORT RATION_N2_PORT RATION_N3_PORT
RATION_ADMIN_TOKEN=ci-$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')
RATION_WORKER_SECRET=ci-worker-secret-$$-$RANDOM
export RATION_ADMIN_TOKEN RATION_WORKER_SECRET
declare -A port=([n1]=$RATION_N1_PORT [n2]=$RATION_N2_PORT [n3]=$RATION_N3_PORT)
addrs=127.0.0.1:$RATION_N1_PORT,127.0.0.1:$RATION_N2_PORT,127.0.0.1:$RATION_N3_PORT
ctl() { "$tmp/rationctl" --addr "$addrs" --timeout 3s --retry-for 3s "$@"; }
echo "image $RATION_IMAGE, project $project, API ports $addrs (built in $(since "$start")s)"

# leader [RETRY_FOR]: the leader's id, as the nodes say ("" if none).
leader() { ctl --retry-for "${1:-3s}" cluster status 2>/dev/null | awk '$1 == "*" { print $2 }'; }
# ready NODE: its /readyz says 200; otherwise why not is in not_ready.
ready() {
  local out
  out=$(curl -s -w ' %{http_code}' --max-time 2 "127.0.0.1:${port[$1]}/readyz" | tr -s '\n' ' ' || true)
  [ "${out##* }" = 200 ] && return 0
  not_ready="$1: $out"
  return 1
}
# wait_ready NODE...: every NODE answers /readyz 200 within READY_BOUND;
# says why one was not when that took over 3s.
wait_ready() {
  local t0 n
  t0=$(now)
  not_ready=""
  for n in "$@"; do
    until ready "$n"; do
      [ "$(since "$t0" | cut -d. -f1)" -lt "$READY_BOUND" ] || fail "not ready after ${READY_BOUND}s: $not_ready"
      sleep 0.2
    done
  done
  if [ "$(since "$t0" | cut -d. -f1)" -ge 3 ]; then echo "  (slow: the last not-ready answer was $not_ready)"; fi
}
container() { compose ps -q "$1"; }
# elected NODE T0: seconds from T0 until NODE's log says it gained leadership.
elected() {
  local at
  at=$(docker logs --since "$2" "$(container "$1")" 2>&1 | awk '/gained leadership/ { print $1; exit }')
  [ -n "$at" ] || { echo "?"; return; }
  awk -v a="$2" -v b="$(date -d "$at" +%s.%N)" 'BEGIN { printf "%.2f", b - a }'
}
ip() { docker inspect -f '{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}' "$(container "$1")"; }

# --- the cluster
t_up=$(now)
compose up -d >"$tmp/up.log" 2>&1 || { cat "$tmp/up.log"; exit 1; }
until [ -n "$(leader 0s)" ]; do
  [ "$(since "$t_up" | cut -d. -f1)" -lt "$READY_BOUND" ] || fail "no leader after ${READY_BOUND}s"
  sleep 0.2
done
to_leader=$(since "$t_up")
wait_ready n1 n2 n3
to_ready=$(since "$t_up")
members=$(ctl cluster status | grep -o 'n[123]:7071' | sort | tr '\n' ' ')
[ "$members" = "n1:7071 n2:7071 n3:7071 " ] || fail "members' Raft addresses: $members, want the names"
echo "leader elected ${to_leader}s after up, all three ready after ${to_ready}s; members advertise $members"

# --- the work
ctl service create ci --kind dmcheck --bucket-size "$BUCKET_SIZE" >/dev/null 2>>"$tmp/ctl.log"
seq 1 "$ITEMS" | ctl items add ci --file - >/dev/null
ctl worker register ci w1 >/dev/null
acked=$tmp/acked  # items whose submit was acknowledged
: >"$acked"
pending=""        # "BUCKET EPOCH ITEMS" leased, not yet submitted
acq=0             # acquires acknowledged: the next one's request id
cycles=0
first_write=""    # the first acknowledged write since it was reset
last_write=""     # the last acknowledged write
gap=0             # the longest time between two writes since it was reset
wrote() {
  local t
  t=$(now)
  [ -n "$first_write" ] || first_write=$t
  if [ -n "$last_write" ]; then
    gap=$(awk -v a="$last_write" -v b="$t" -v g="$gap" 'BEGIN { d = b - a; printf "%.2f", (d > g ? d : g) }')
  fi
  last_write=$t
}
# step: lease a bucket (unless one is pending) and submit a verdict for its
# items, each write with a request id of its own, retried with the same id.
# 1: a call failed; 2: no bucket left.
step() {
  local out bucket epoch items
  if [ -z "$pending" ]; then
    out=$(ctl worker acquire ci w1 -n 1 --request-id "acq-$acq" 2>>"$tmp/ctl.log") || return 1
    wrote
    pending=$(awk 'NR == 2 { print $1, $2, $6 }' <<<"$out")
    [ -n "$pending" ] || return 2
    acq=$((acq + 1))
  fi
  read -r bucket epoch items <<<"$pending"
  ctl worker submit w1 "$bucket" "$epoch" --verdict DM --items "$items" \
    --request-id "sub-$bucket-$epoch" >/dev/null 2>>"$tmp/ctl.log" || return 1
  wrote
  tr , '\n' <<<"$items" >>"$acked"
  pending=""
  cycles=$((cycles + 1))
}
# work N: N cycles, every call succeeding.
work() {
  local i
  for ((i = 0; i < $1; i++)); do step || fail "a worker call failed with the cluster whole"; done
}
# resume T0: cycles until one completes, within RESUME_BOUND of T0. (Not in
# a subshell: step keeps its state in variables.)
resume() {
  until step; do
    [ "$(since "$1" | cut -d. -f1)" -lt "$RESUME_BOUND" ] || fail "writes did not resume within ${RESUME_BOUND}s"
  done
}
# seconds T0 T1: T1 - T0.
seconds() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", b - a }'; }
t_work=$(now)
work 8
echo "8 cycles (acquire, submit) in $(since "$t_work")s with the cluster whole"

# --- 1. kill the leader; it comes back on another IP
old=$(leader)
[ -n "$old" ] || fail "no leader before the kill"
old_ip=$(ip "$old")
cid=$(container "$old")
t0=$(now)
first_write="" last_write=$t0 gap=0
docker kill "$cid" >/dev/null
resume "$t0"
new=$(leader)
echo "killed leader $old: $new elected after $(elected "$new" "$t0")s;" \
  "writes resumed $(seconds "$t0" "$first_write")s after the kill"
work 8
squatter=$project-squatter
docker run -d --name "$squatter" --network "${project}_ration" -e RATION_ADMIN_TOKEN "$RATION_IMAGE" >/dev/null
t1=$(now)
docker start "$cid" >/dev/null
wait_ready "$old"
new_ip=$(ip "$old")
if [ "$new_ip" = "$old_ip" ]; then moved="on the same IP, $new_ip"; else moved="on a new IP, $new_ip (was $old_ip)"; fi
echo "restarted $old $moved: ready after $(since "$t1")s"
docker rm -f -v "$squatter" >/dev/null
squatter=""
work 4

# --- 2. stop (SIGTERM) the leader: it hands over; the worker keeps going
old=$(leader)
[ -n "$old" ] || fail "no leader before the stop"
cid=$(container "$old")
t0=$(now)
last_write=$t0 gap=0
docker stop "$cid" >/dev/null &
stopping=$!
while kill -0 "$stopping" 2>/dev/null; do
  [ "$(since "$t0" | cut -d. -f1)" -lt 40 ] || fail "docker stop took over 40s"
  step || true
  sleep 0.1
done
wait "$stopping"
stopped=$(since "$t0")
resume "$t0"
awk -v g="$gap" -v b="$RESUME_BOUND" 'BEGIN { exit !(g < b) }' || fail "writes paused ${gap}s around the stop"
code=$(docker inspect -f '{{.State.ExitCode}}' "$cid")
[ "$code" = 0 ] || fail "$old exited $code on SIGTERM, want 0"
new=$(leader)
echo "stopped leader $old: it handed over to $new ($(elected "$new" "$t0")s) and exited 0 after ${stopped}s;" \
  "the longest pause in writes ${gap}s"
work 8
t1=$(now)
docker start "$cid" >/dev/null
wait_ready n1 n2 n3
echo "restarted $old: all three ready after $(since "$t1")s"

# --- the image's health check (compose.yaml) passes on every node
for n in n1 n2 n3; do
  compose exec -T "$n" /rationctl --retry-for 10s cluster status --ready >/dev/null || fail "$n: its health check command fails"
  h=$(docker inspect -f '{{if .State.Health}}{{.State.Health.Status}}{{end}}' "$(container "$n")")
  [ "$h" != unhealthy ] || fail "$n: docker reports it unhealthy"
done
echo "the health check (rationctl cluster status --ready) passes on n1, n2 and n3"

# --- nothing acknowledged is lost
ctl results export ci >"$tmp/results"
ctl -o json service get ci >"$tmp/service"
python3 - "$acked" "$tmp/results" "$tmp/service" "$ITEMS" <<'EOF'
import json, sys
acked = set(open(sys.argv[1]).read().split())
results = {json.loads(l)["item"] for l in open(sys.argv[2]) if l.strip()}
items = json.load(open(sys.argv[3]))["service"]["items"]
lost = acked - results
if lost:
    sys.exit(f"FAIL: {len(lost)} acknowledged items have no result: {sorted(lost, key=int)[:20]}")
if sum(int(n) for n in items.values()) != int(sys.argv[4]):
    sys.exit(f"FAIL: the service holds {items}, not {sys.argv[4]} items")
print(f"all {len(acked)} items acknowledged are in the results ({len(results)}); items by state: {items}")
EOF
echo "ok: $cycles cycles; total $(since "$start")s"
