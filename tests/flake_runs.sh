#!/usr/bin/env bash
# Issue 13's flake count: the suite run back to back, each run in a fresh clone with a fresh
# virtual environment, as a new user (or CI) would. A flaky test is a defect, so the count must be 0.
#
#   bash tests/flake_runs.sh [--full M] [--non-interference N] [--out DIR]
#
# - `--full M`: M runs of `.ci/run` (the README's test command, verbatim, installs included);
# - `--non-interference N`: N runs of `pytest -m "not interference"` after the same installs;
# - full runs go first: they are what CI gates on;
# - after every run, `python -m pytest_ktinterf leftovers` in that clone and a look for stray
#   llama-server / stress-ng processes: a run that passes but leaves anything behind counts as failed.
#
# Start it from a background shell to cover that case too (SIGINT is then ignored by inheritance,
# which the Ctrl-C tests must not depend on):
#
#   nohup bash -c 'trap "" INT; exec bash tests/flake_runs.sh --full 1 --non-interference 2' </dev/null >/tmp/flakes.log 2>&1 &
#
# (`trap "" INT` makes the inherited SIGINT disposition "ignored" for certain, as a background job
# of a non-interactive shell gets it; the summary's first line says which it was.)
#
# It clones the committed HEAD of this repository: commit first. Nothing else may run on the machine
# meanwhile (the suite measures it). Each clone is removed after its run; the logs stay in DIR.
set -uo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
full=0
plain=0
out=/tmp/ktinterf-flake-runs
while [ $# -gt 0 ]; do
  case "$1" in
    --full) full=$2; shift 2 ;;
    --non-interference) plain=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    *) echo "flake_runs.sh: unknown argument '$1' -- fix: use --full M, --non-interference N, --out DIR" >&2; exit 2 ;;
  esac
done
mkdir -p "$out"
summary="$out/summary.txt"
commit=$(git -C "$repo" rev-parse --short HEAD)
sigign=$(awk '/^SigIgn/ {print $2}' /proc/$$/status)
echo "flake runs of $commit: $full full, $plain non-interference, started $(date -u +%FT%TZ)," \
  "SIGINT $( (( 0x$sigign & 2 )) && echo ignored || echo default) in this shell" | tee -a "$summary"

failed=0
run_one() {  # $1 = kind (full | non-interference), $2 = index
  local kind=$1 k=$2 dir log rc start elapsed result stray left
  dir=$(mktemp -d /tmp/ktinterf-flake-XXXXXX)
  log="$out/$kind-$k.log"
  git clone -q "$repo" "$dir/src"
  start=$(date +%s)
  if [ "$kind" = full ]; then
    (cd "$dir/src" && CI=true bash .ci/run) >"$log" 2>&1
  else
    (cd "$dir/src" && export KTINTERF_REQUIRE_DOCKER=1 PYTHONUNBUFFERED=1 \
      && python3 -m venv .venv && . .venv/bin/activate && pip install -q -e '.[dev]' \
      && python -m pytest_ktinterf fetch && python -m pytest_ktinterf docker \
      && pytest -m "not interference") >"$log" 2>&1
  fi
  rc=$?
  elapsed=$(( $(date +%s) - start ))
  result=$(grep -E '^=+ .*(passed|failed|error).* in ' "$log" | head -1 | tr -d '=' | sed 's/^ *//; s/ *$//')
  # A green run that leaves anything behind is a failed run (98: leftovers, 99: stray processes).
  if ! left=$(cd "$dir/src" && .venv/bin/python -m pytest_ktinterf leftovers 2>&1) && [ "$rc" = 0 ]; then rc=98; fi
  stray=$(pgrep -a -x llama-server; pgrep -a -x stress-ng)
  if [ -n "$stray" ] && [ "$rc" = 0 ]; then rc=99; fi
  echo "$kind run $k: rc=$rc in $((elapsed / 60)) min $((elapsed % 60)) s: ${result:-no pytest summary}" | tee -a "$summary"
  grep -E '^(FAILED|ERROR) ' "$log" | sed 's/^/    /' | tee -a "$summary"
  if [ "$rc" = 98 ]; then echo "    leftovers: $left" | tee -a "$summary"; fi
  if [ "$rc" = 99 ]; then echo "    still running: $stray" | tee -a "$summary"; fi
  if [ "$rc" != 0 ]; then failed=$((failed + 1)); fi
  rm -rf "$dir"
}
for k in $(seq 1 "$full"); do run_one full "$k"; done
for k in $(seq 1 "$plain"); do run_one non-interference "$k"; done
echo "flake runs of $commit: $failed of $((full + plain)) runs failed, ended $(date -u +%FT%TZ)" | tee -a "$summary"
[ "$failed" = 0 ]
