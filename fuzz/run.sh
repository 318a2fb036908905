#!/usr/bin/env bash
# Runs the fuzz targets one after another under afl++, niced, for the given
# number of seconds each (default 600):  fuzz/run.sh 600 smtp_session address
# With no target names it runs them all. Findings land in
# fuzz/out/TARGET/default/crashes/; docs/fuzzing.md records past runs.
set -euo pipefail
cd "$(dirname "$0")"
secs=${1:-600}
shift || true
targets=("$@")
if ((${#targets[@]} == 0)); then
  targets=(smtp_session address dotqmail control assign queue_file)
fi
cargo afl build --release || echo "build failed: fuzzing the previous build"
export AFL_SKIP_CPUFREQ=1 AFL_I_DONT_CARE_ABOUT_MISSING_CRASHES=1 AFL_NO_UI=1
for t in "${targets[@]}"; do
  mkdir -p out
  # Resume from the corpus of earlier runs when there is one.
  input=seeds/$t
  if [[ -d out/$t/default/queue ]]; then input=-; fi
  echo "== $t: $secs s"
  nice -n 19 cargo afl fuzz -V "$secs" -i "$input" -o "out/$t" "target/release/$t" >"out/$t.log" 2>&1 || true
  stats=out/$t/default/fuzzer_stats
  grep -E '^(execs_done|execs_per_sec|corpus_count|saved_crashes|saved_hangs|run_time) ' "$stats" || true
done
