#!/usr/bin/env bash
# GPT-2 s on OpenWebText, the seed's owt/gpt2s-flash: scripts/run_gpt2s_owt.sh [NGPUS] [flags...]
exec "$(dirname "$0")/run_experiment.sh" gpt2s openwebtext "$@"
