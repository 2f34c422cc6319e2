#!/usr/bin/env bash
# GPT-2 l on OpenWebText, the seed's owt/gpt2l-flash: scripts/run_gpt2l_owt.sh [NGPUS] [flags...]
exec "$(dirname "$0")/run_experiment.sh" gpt2l openwebtext "$@"
