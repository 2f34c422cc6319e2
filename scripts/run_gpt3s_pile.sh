#!/usr/bin/env bash
# GPT-3 s on The Pile, the seed's pile/gpt3s-flash: scripts/run_gpt3s_pile.sh [NGPUS] [flags...]
exec "$(dirname "$0")/run_experiment.sh" gpt3s pile "$@"
