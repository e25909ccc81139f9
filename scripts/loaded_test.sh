#!/usr/bin/env bash
# `make test` RUNS times in a row while stress-ng keeps every core busy (`make test-loaded RUNS=3`):
# the suite must not depend on an idle machine (no wall-clock assertion may go red under load).
# Each run's log is var/loaded-test/run-N.log; var/loaded-test/summary.txt has each run's wall time,
# exit code and pytest's last line. Exits non-zero when any run failed.
set -uo pipefail
runs="${1:-3}"
out=var/loaded-test
bash scripts/ensure_debian_packages.sh stress-ng || exit 1
mkdir -p "$out"
: > "$out/summary.txt"
# As many CPU hogs as cores, at the tests' own priority: the suite gets about half the machine.
stress-ng --cpu "$(nproc)" --timeout 0 --quiet &
stress=$!
trap 'kill "$stress" 2>/dev/null; wait "$stress" 2>/dev/null' EXIT
failed=0
for run in $(seq 1 "$runs"); do
  started=$(date +%s)
  make test > "$out/run-$run.log" 2>&1
  code=$?
  seconds=$(( $(date +%s) - started ))
  last=$(grep -E "^=+ .*(passed|failed|error).* =+$" "$out/run-$run.log" | tail -1)
  line="run $run of $runs: exit $code, ${seconds} s, load $(cut -d' ' -f1-3 /proc/loadavg): ${last:-no pytest summary}"
  echo "$line" | tee -a "$out/summary.txt"
  [ "$code" -eq 0 ] || failed=1
done
exit "$failed"
