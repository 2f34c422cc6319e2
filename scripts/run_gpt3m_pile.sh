#!/usr/bin/env bash
# GPT-3 m on The Pile, the seed's pile/gpt3m-flash: scripts/run_gpt3m_pile.sh [NGPUS] [flags...]
exec "$(dirname "$0")/run_experiment.sh" gpt3m pile "$@"
