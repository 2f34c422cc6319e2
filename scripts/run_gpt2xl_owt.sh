#!/usr/bin/env bash
# GPT-2 xl on OpenWebText, the seed's owt/gpt2xl-flash: scripts/run_gpt2xl_owt.sh [NGPUS] [flags...]
exec "$(dirname "$0")/run_experiment.sh" gpt2xl openwebtext "$@"
