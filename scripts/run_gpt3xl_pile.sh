#!/usr/bin/env bash
# GPT-3 xl on The Pile, the seed's pile/gpt3xl-flash: scripts/run_gpt3xl_pile.sh [NGPUS] [flags...]
exec "$(dirname "$0")/run_experiment.sh" gpt3xl pile "$@"
