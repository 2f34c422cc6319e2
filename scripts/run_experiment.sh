#!/usr/bin/env bash
# Runs one of the seed's experiments end to end: prepares its dataset when it is missing (the
# data_prep recipe; a complete dataset has a manifest.json), builds, then trains the preset on
# NGPUS GPUs of this node (default 8): through mpirun when it is installed, else through the
# trainer's own --nproc launcher.
#   scripts/run_experiment.sh PRESET RECIPE [NGPUS] [train_gpt2cu flags...]
# Environment: DATA_DIR (default ./data), MPIRUN_ARGS (extra mpirun flags, e.g.
# --allow-run-as-root), NO_MPI=1 (use --nproc even where mpirun exists).
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -ge 2 ] || { sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//'; exit 2; }
preset=$1 recipe=$2
shift 2
ngpus=8
if [[ $# -gt 0 && $1 =~ ^[0-9]+$ ]]; then ngpus=$1; shift; fi
case "$recipe" in
    openwebtext) dataset_dir=openwebtext ;;
    pile) dataset_dir=the_pile ;;
    *) echo "unknown recipe '$recipe' (openwebtext or pile)" >&2; exit 2 ;;
esac

make train_gpt2cu data_prep
if [ ! -f "${DATA_DIR:-data}/$dataset_dir/manifest.json" ]; then
    echo "== preparing $recipe into ${DATA_DIR:-data}/$dataset_dir"
    ./data_prep/prepare "$recipe"
fi
export NCCL_NVLS_ENABLE=0
if command -v mpirun >/dev/null && [ -z "${NO_MPI:-}" ]; then
    # shellcheck disable=SC2086  # MPIRUN_ARGS is a list of flags
    exec mpirun -np "$ngpus" -x NCCL_NVLS_ENABLE ${MPIRUN_ARGS:-} ./train_gpt2cu -e "$preset" "$@"
fi
exec ./train_gpt2cu -e "$preset" --nproc "$ngpus" "$@"
