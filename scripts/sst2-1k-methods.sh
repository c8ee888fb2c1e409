#!/usr/bin/env bash
# SST-2, 1,000 rows, seed 0: teacher, then KD/FT students with each augmentation (issue 3 table)
set -u
cd "$(dirname "$0")/.."
. .venv/bin/activate
export AUGPRO_DATA_DIR=/work/shared/data/glue
O=runs/sst2-1k-methods
C="--task sst2 --train-size 1000 --seed 0 --quiet --no-checkpoints --no-eval-every-epoch"
[ -f $O/teacher/metrics.json ] || augpro teacher $C --epochs 3 --output-dir $O/teacher
S="$C --student-layers 2 --epochs 5"
run() { name=$1; shift; [ -f $O/$name/metrics.json ] || augpro "$@" --output-dir $O/$name; }
run kd-none     distill  $S --teacher $O/teacher
run kd-knn0.3   distill  $S --teacher $O/teacher --augment knn --degree 0.3
run kd-mixkd    distill  $S --teacher $O/teacher --augment mixkd
run kd-augpro-mix  distill $S --teacher $O/teacher --augment augpro-mix
run kd-augpro-fgsm distill $S --teacher $O/teacher --augment augpro-fgsm
run ft-none     finetune $S
run ft-knn0.1   finetune $S --augment knn --degree 0.1
echo ALLDONE
