#!/usr/bin/env bash
# Start (or resume) both shipped study grids in the background, one thread each, side by side.
#
#   AUGPRO_DATA_DIR=../shared/data/glue bash scripts/run_studies.sh    # logs: runs/logs/<study>.log
#   WORKERS=2 AUGPRO_DATA_DIR=... bash scripts/run_studies.sh          # two workers per unfinished study
#
# Workers of one study split its runs (each run and teacher is claimed; see augpro.study); a
# finished study's workers exit at once, so WORKERS=2 puts both cores on the one that is left.
# Each grid skips its finished runs (results.jsonl) and retrains any teacher it lacks, so this is
# the same command on a fresh machine and after a stop. Commit progress with
# `bash scripts/stage_study_results.sh && git commit`. Stop with `pkill -f "augpro study"`
# (finished lines are never lost; the run in progress is redone on the next start).
set -euo pipefail
cd "$(git rev-parse --show-toplevel)"
: "${AUGPRO_DATA_DIR:?set AUGPRO_DATA_DIR to the GLUE folder (e.g. ../shared/data/glue)}"
augpro=${AUGPRO:-.venv/bin/augpro}
mkdir -p runs/logs
for cfg in configs/degree-study.yaml configs/augpro-methods.yaml; do
  name=$(basename "$cfg" .yaml)
  if pgrep -f "augpro study $cfg" > /dev/null; then
    echo "$cfg: already running"
    continue
  fi
  for w in $(seq "${WORKERS:-1}"); do
    log=runs/logs/$name.log
    [ "$w" -gt 1 ] && log=runs/logs/$name.worker$w.log
    OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} nohup "$augpro" study "$cfg" >> "$log" 2>&1 &
    echo "$cfg: started worker $w (pid $!), log $log"
    sleep 1  # stagger the starts (the study lock already makes the others wait for the first one's repair)
  done
done
