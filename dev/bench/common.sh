# What dev/bench's scripts share (sourced, from the repository root).

# The conditions every benchmark run of train_gpt2cu adds to its preset, those of the PyTorch
# baseline (torch_baseline.py): the small default dataset, one micro-batch per step (the global
# batch rounds up to B x T), no dropout. Arguments given after them win.
benchmark_trainer_args=(--dataset tiny --global-batch-tokens 1 --dropout-embd 0 --dropout-resid 0 --dropout-attn 0)
