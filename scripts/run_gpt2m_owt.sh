#!/usr/bin/env bash
# GPT-2 m on OpenWebText, the seed's owt/gpt2m-flash: scripts/run_gpt2m_owt.sh [NGPUS] [flags...]
exec "$(dirname "$0")/run_experiment.sh" gpt2m openwebtext "$@"
