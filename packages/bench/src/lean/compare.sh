#!/usr/bin/env bash
# Alternates the stand-ins under wrk (README.md): for each round, each variant in turn is
# started alone, warmed for 2 s, then loaded for DURATION (64 connections, 2 threads) with
# reads.lua; one line per run goes to OUT (tab-separated):
#   round variant req_s p50_us p99_us errors server_cpu_us_per_req machine_cpu_us_per_req
# server CPU is the server process's utime+stime over the run; machine CPU is /proc/stat's
# busy time (user+nice+system+irq+softirq) less wrk's own user+sys, both per request.
#
#   packages/bench/src/lean/compare.sh [ROUNDS] [variant ...]
# variants: callback callback-burst lean lean-gen lean-mw strata
# `strata` loads a server already running on STRATA_PORT (pid STRATA_PID), with STRATA_TOKEN
# (a key of it) and STRATA_IDS (a file of its cached record ids) as reads.lua's TOKEN and IDS.
set -euo pipefail
cd "$(dirname "$0")/../../../.."
source scripts/toolchain.sh
HERE=packages/bench/src/lean
ROUNDS=${1:-3}
shift || true
VARIANTS=("$@")
[ ${#VARIANTS[@]} -gt 0 ] || VARIANTS=(callback lean)
DURATION=${DURATION:-8s}
PORT=${PORT:-3210}
OUT=${OUT:-/tmp/lean-compare.tsv}
TICK=$(getconf CLK_TCK)

busy() { awk '/^cpu /{print $2+$3+$4+$7+$8}' /proc/stat; }
proc_cpu() { awk '{print $14+$15}' "/proc/$1/stat"; }

start() {
  local log=/tmp/lean-server.log
  case $1 in
    callback) PORT=$PORT node $HERE/CallbackRoute.ts >$log 2>&1 & ;;
    callback-burst) PORT=$PORT BURST=1 node $HERE/CallbackRoute.ts >$log 2>&1 & ;;
    lean) PORT=$PORT node $HERE/LeanRoute.ts >$log 2>&1 & ;;
    lean-gen) PORT=$PORT LEAN_STYLE=gen node $HERE/LeanRoute.ts >$log 2>&1 & ;;
    lean-mw) PORT=$PORT LEAN_MIDDLEWARE=1 node $HERE/LeanRoute.ts >$log 2>&1 & ;;
    *) echo "unknown variant $1" >&2; exit 2 ;;
  esac
  SERVER=$!
  for _ in $(seq 100); do grep -q listening $log && return; sleep 0.1; done
  echo "$1 did not start" >&2; cat $log >&2; exit 1
}

run() { # variant round
  local variant=$1 round=$2 port=$PORT pid script_env=(-u TOKEN -u IDS)
  if [ "$variant" = strata ]; then
    port=$STRATA_PORT pid=$STRATA_PID
    script_env=(TOKEN="$STRATA_TOKEN" IDS="$STRATA_IDS")
  else
    start "$variant"
    pid=$SERVER
  fi
  local url="http://127.0.0.1:$port"
  env "${script_env[@]}" wrk -t2 -c64 -d2s -s $HERE/reads.lua "$url" >/dev/null
  local b0 p0 b1 p1
  b0=$(busy) p0=$(proc_cpu "$pid")
  env "${script_env[@]}" /usr/bin/time -f "WRK_CPU %U %S" -o /tmp/lean-wrk.time \
    wrk -t2 -c64 -d"$DURATION" -s $HERE/reads.lua "$url" >/tmp/lean-wrk.out
  b1=$(busy) p1=$(proc_cpu "$pid")
  [ "$variant" = strata ] || { kill "$pid"; wait "$pid" 2>/dev/null || true; }
  local rps p50 p99 reqs errors wrk_cpu
  rps=$(awk '/^Requests\/sec/{print $2}' /tmp/lean-wrk.out)
  p50=$(awk '/^P50_US/{print $2}' /tmp/lean-wrk.out)
  p99=$(awk '/^P99_US/{print $2}' /tmp/lean-wrk.out)
  reqs=$(awk '/^REQS/{print $2}' /tmp/lean-wrk.out)
  errors=$(awk '/^REQS/{print $4}' /tmp/lean-wrk.out)
  wrk_cpu=$(awk '/^WRK_CPU/{print $2+$3}' /tmp/lean-wrk.time)
  awk -v r="$round" -v v="$variant" -v rps="$rps" -v p50="$p50" -v p99="$p99" -v e="$errors" -v n="$reqs" \
    -v sp=$((p1 - p0)) -v mb=$((b1 - b0)) -v w="$wrk_cpu" -v t="$TICK" 'BEGIN {
      printf "%s\t%s\t%.0f\t%d\t%d\t%d\t%.1f\t%.1f\n", r, v, rps, p50, p99, e, sp / t / n * 1e6, (mb / t - w) / n * 1e6
    }' | tee -a "$OUT"
}

for round in $(seq "$ROUNDS"); do
  for variant in "${VARIANTS[@]}"; do
    run "$variant" "$round"
    sleep 1
  done
done
