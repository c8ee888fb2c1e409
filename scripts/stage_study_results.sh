#!/usr/bin/env bash
# Stage the results of running study grids together with reports made from exactly those bytes.
#
# A grid running in the background keeps appending to its results.jsonl, so a report made from
# the working file can describe more runs than the file that is committed. This stages each
# study's results.jsonl, regenerates its report from the staged bytes and stages the report:
#
#   bash scripts/stage_study_results.sh [STUDY_DIR ...]   # default: docs/results/*/ with a results.jsonl
#   git commit -m "..."
set -euo pipefail
cd "$(git rev-parse --show-toplevel)"
augpro=${AUGPRO:-.venv/bin/augpro}
dirs=("$@")
if [ ${#dirs[@]} -eq 0 ]; then
  for f in docs/results/*/results.jsonl; do dirs+=("$(dirname "$f")"); done
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
for d in "${dirs[@]}"; do
  git add "$d/results.jsonl"
  git show ":$d/results.jsonl" > "$tmp/results.jsonl"
  "$augpro" report "$tmp/results.jsonl" --output "$d"
  git add "$d/README.md" "$d"/*.png
  echo "$d: $(wc -l < "$tmp/results.jsonl") results lines staged with their report"
done
