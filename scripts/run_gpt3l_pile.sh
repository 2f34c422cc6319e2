#!/usr/bin/env bash
# GPT-3 l on The Pile, the seed's pile/gpt3l-flash: scripts/run_gpt3l_pile.sh [NGPUS] [flags...]
exec "$(dirname "$0")/run_experiment.sh" gpt3l pile "$@"
