#!/usr/bin/env bash
# Start (or resume) the deciding study grids in the background: WORKERS processes (default 2,
# one thread each, one per core), each going through the configs in order, so both cores finish
# the first study (its highest-priority column first) before either moves on to the next.
#
#   AUGPRO_DATA_DIR=../shared/data/glue bash scripts/run_studies.sh        # logs: runs/logs/worker<N>.log
#   STUDIES="configs/same-data.yaml" AUGPRO_DATA_DIR=... bash scripts/run_studies.sh
#
# Workers of one study split its runs (each run and teacher is claimed; see augpro.study); a
# worker that finds the rest of a study claimed by others moves on to the next config. Each grid
# skips its finished runs (results.jsonl) and trains any teacher it lacks (a shared teacher
# resumes from its last epoch checkpoint), so this is the same command on a fresh machine and
# after a stop. Commit progress with `bash scripts/stage_study_results.sh && git commit`. Stop
# with `pkill -f "augpro study"` (finished lines are never lost; the run in progress is redone).
set -euo pipefail
cd "$(git rev-parse --show-toplevel)"
: "${AUGPRO_DATA_DIR:?set AUGPRO_DATA_DIR to the GLUE folder (e.g. ../shared/data/glue)}"
export AUGPRO_DATA_DIR
augpro=${AUGPRO:-.venv/bin/augpro}
studies=${STUDIES:-configs/intermediate-layers.yaml configs/strong-teacher.yaml configs/pilot-curves.yaml configs/same-data.yaml}
mkdir -p runs/logs
if pgrep -f "augpro study" > /dev/null; then
  echo "run_studies: studies are already running (pgrep -af 'augpro study'); stop them first" >&2
  exit 1
fi
for w in $(seq "${WORKERS:-2}"); do
  log=runs/logs/worker$w.log
  OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} nohup bash -c \
    'for cfg in $0; do "$1" study "$cfg" || exit $?; done' "$studies" "$augpro" >> "$log" 2>&1 &
  echo "run_studies: worker $w (pid $!) on: $studies; log $log"
  sleep 1  # stagger the starts (the study lock already makes the others wait for the first one's repair)
done
