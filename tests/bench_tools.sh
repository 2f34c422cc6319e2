#!/usr/bin/env bash
# The benchmark tools without a GPU: dev/bench/bench.sh against a stand-in trainer and a stand-in
# PyTorch baseline (the table, the ratio, a failed run's FAILED cell and reason, the exit status,
# the trainer's arguments), dev/bench/step_breakdown.py on a small ncu-style CSV (grouping, the
# sums, the remainder row; with --trace, the loaded step's times and its idle spaces), and
# dev/bench/step_breakdown.sh end to end with stand-ins for ncu, nvidia-smi and the CUPTI tracer
# (the trainer's arguments, the step time it reads, the clock line, the traced run); dev/bench/generate.sh
# against a stand-in trainer (the table, a failed row and why, the exit status, the arguments);
# dev/bench/presets.sh against a stand-in trainer (a row, a failed row, TRAINER and extra arguments).
set -u
cd "$(dirname "$0")/.."
source tests/support/checks.sh

# Stand-ins: the trainer records its arguments and prints a BENCH line (or fails for gpt2xl);
# the "Python" runs torch_baseline.py's part of the contract: one BENCH line.
cat >"$work/trainer" <<'SH'
#!/usr/bin/env bash
echo "$*" >>"$(dirname "$0")/trainer_args"
case " $* " in
    *" -e gpt2xl "*) echo "CUDA error: out of memory"; exit 1 ;;
esac
# As kernel_trace.cpp would, when the driver loads it: the trace of the profiled step.
if [ -n "${CUDA_INJECTION64_PATH:-}" ]; then
    echo "$CUDA_INJECTION64_PATH" >"$(dirname "$0")/injected"
    cp "$(dirname "$0")/trace.csv" "$KERNEL_TRACE_FILE"
    echo "bench step 8/9 | loss 10.0000 | 7.30 ms"
fi
echo "BENCH tokens_per_s=500000 mfu=40.00 peak_mem_gb=13.80 step_ms=65.5 gpu=\"Stand-in GPU\" gpus=1"
SH
cat >"$work/python" <<'SH'
#!/usr/bin/env bash
echo "BENCH impl=pytorch model=x batch=1 seq_len=1 params=1 tokens_per_s=400000 mfu=32.00 peak_mem_gb=19.50 step_ms=80 first_step_s=30.0 loss=10.5 gpu=\"Stand-in GPU\""
SH
chmod +x "$work/trainer" "$work/python"

PYTHON="$work/python" dev/bench/bench.sh --rows gpt2s:32:1024,gpt2xl:8:1024 --trainer "$work/trainer" \
    --out "$work/out" -- --recompute-gelu 0 >"$work/stdout" 2>"$work/stderr"
status=$?
check "bench.sh exits 1 when a run failed" test "$status" -eq 1
check "the gpt2s row has both sides and the ratio" \
    grep -qF "| gpt2s | 32 | 1024 | 500000 | 40.00 | 13.80 | 400000 | 32.00 | 19.50 | 1.25x |" "$work/stdout"
check "the failed run's cell says FAILED" grep -qF "| gpt2xl | 8 | 1024 | FAILED |" "$work/stdout"
check "the reason is the last line of its log" \
    grep -qF -- "- gpt2xl B=8 T=1024, train_gpt2cu: exit status 1: CUDA error: out of memory" "$work/stdout"
check "the table is also written to bench.md" cmp -s <(sed -n '/^| model/,$p' "$work/stdout") \
    <(sed -n '/^| model/,$p' "$work/out/bench.md")
check "the trainer gets the baseline's conditions, then the extra arguments" \
    grep -qF -- "-e gpt2s --bench-steps 30 --device-batch 32 --seq-len 1024 --precision bf16 --dataset tiny --global-batch-tokens 1 --dropout-embd 0 --dropout-resid 0 --dropout-attn 0 --recompute-gelu 0" "$work/trainer_args"
dev/bench/bench.sh --steps 21 >/dev/null 2>"$work/steps_err"
check "--steps below 30 is refused with exit status 2" test $? -eq 2
check "... and says why" grep -qF "must be at least 30" "$work/steps_err"

# step_breakdown.py: ncu's log lines, the header, the units row, then one row per kernel.
cat >"$work/kernels.csv" <<'CSV'
==PROF== Connected to process 1 (train_gpt2cu)
"ID","Kernel Name","gpu__time_duration.sum"
"","","nsecond"
"0","nvjet_sm90_tst_256x128_64x4_1x2_h_bz_coopA_NNT","3,000,000"
"1","void attention_detail::hopper::forward_kernel<__nv_bfloat16, 64, attention_detail::hopper::ForwardShape<64, 2, true, 2>>(CUtensorMap_st, CUtensorMap_st, CUtensorMap_st, float *, int, int, float, DropoutParams)","1,000,000"
"2","void attention_detail::tensor_cores::backward_dq_kernel<__nv_bfloat16, 64, 4, 64>(int)","1,500,000"
"3","void layernorm_detail::layernorm_backward_kernel<__nv_bfloat16, __nv_bfloat16, 2>(int)","500,000"
"4","void adamw_kernel<__nv_bfloat16>(float*)","250,000"
"5","some_unknown_kernel","250,000"
CSV
python3 dev/bench/step_breakdown.py "$work/kernels.csv" --step-ms 8 --title test >"$work/breakdown" 2>&1
check "step_breakdown.py runs" test $? -eq 0
check "6 kernels, 6.50 ms of kernel time" grep -qF "6 kernels, 6.50 ms of kernel time" "$work/breakdown"
check "GEMMs grouped" grep -qF "| matmul (cuBLASLt GEMMs and their reductions) | 1 | 3.00 | 37.5% |" "$work/breakdown"
check "attention forward grouped" grep -qF "| attention forward | 1 | 1.00 | 12.5% |" "$work/breakdown"
check "attention backward grouped" grep -qF "| attention backward | 1 | 1.50 | 18.8% |" "$work/breakdown"
check "unknown kernels go to other" grep -qF "| other | 1 | 0.25 | 3.1% |" "$work/breakdown"
check "the remainder is step minus kernel time" grep -qE "^\| step minus kernel time .* \| - \| 1.50 \| 18.8% \|" "$work/breakdown"
# --trace: the same kernels back to back (the attention forward 10% slower), a copy first, an NCCL
# kernel on another stream inside the GEMM (no idle time), and idle spaces of 10, 80 and 500 us
# inside a span of 7.1 ms.
cat >"$work/trace.csv" <<'CSV'
kind,start_ns,end_ns,stream,name
memcpy,0,10000,7,"262144 bytes"
kernel,20000,3020000,7,"nvjet_sm90_tst_256x128_64x4_1x2_h_bz_coopA_NNT"
kernel,100000,200000,9,"ncclDevKernel_AllReduce_Sum_f32_RING_LL(ncclDevKernelArgsStorage<4096ul>)"
kernel,3020000,4120000,7,"void attention_detail::hopper::forward_kernel<__nv_bfloat16, 64>(int)"
kernel,4200000,5700000,7,"void attention_detail::tensor_cores::backward_dq_kernel<__nv_bfloat16, 64, 4, 64>(int)"
kernel,5700000,6200000,7,"void layernorm_detail::layernorm_backward_kernel<__nv_bfloat16, __nv_bfloat16, 2>(int)"
kernel,6700000,6950000,7,"void adamw_kernel<__nv_bfloat16>(float*)"
kernel,6950000,7100000,7,"some_unknown_kernel"
CSV
python3 dev/bench/step_breakdown.py "$work/kernels.csv" --step-ms 8 --trace "$work/trace.csv" >"$work/traced" 2>&1
check "step_breakdown.py --trace runs" test $? -eq 0
check "each group's traced time beside ncu's" grep -qF "| attention forward | 1.00 | 1.10 | 1.10 |" "$work/traced"
check "copies are a group of their own" grep -qF "| memcpy (host and device copies) | 0.00 | 0.01 | - |" "$work/traced"
check "the span, the idle time inside it and the rest of the step" grep -qF \
    "Traced span 7.10 ms (first start to last end): the GPU idle inside it 0.59 ms (7.4% of the step) in 3 spaces; the step minus the span (the host before the first launch and after the last) 0.90 ms (11.2%)." "$work/traced"
check "the longest idle space first, with its neighbours" grep -qF \
    "| 500.0 | \`layernorm_detail::layernorm_backward_kernel\` | \`adamw_kernel\` |" "$work/traced"
check "a copy is named by its kind and size" grep -qF "| 10.0 | \`memcpy 262144 bytes\` |" "$work/traced"
python3 dev/bench/step_breakdown.py "$work/kernels.csv" --step-ms 8 --trace "$work/trace.csv" --traced-step-ms 7.3 \
    >"$work/traced_own" 2>&1
check "with the traced step's own time, the rest is measured against it" grep -qF \
    "the traced step took 7.30 ms on the host's clock, of which 0.20 ms (2.7%) lay outside the span (the host before the first launch and after the last), and 0.70 ms less than the unprofiled median." \
    "$work/traced_own"
python3 dev/bench/step_breakdown.py "$work/kernels.csv" --step-ms 8 --traced-step-ms 7.3 >/dev/null 2>"$work/own_err"
check "--traced-step-ms without --trace is refused" grep -qF "goes with --trace" "$work/own_err"
printf 'kind,start_ns\n' >"$work/bad_trace.csv"
python3 dev/bench/step_breakdown.py "$work/kernels.csv" --step-ms 8 --trace "$work/bad_trace.csv" >/dev/null 2>"$work/bad_trace_err"
check "a trace without the needed columns is a clear error" grep -qF "expected a kernel_trace CSV" "$work/bad_trace_err"

# step_breakdown.sh: stand-ins for ncu (writes the CSV above to --log-file, then runs the program)
# and nvidia-smi (a GPU name; busy samples at 1755 MHz and 688 W while sampling).
mkdir -p "$work/bin"
cat >"$work/bin/ncu" <<'SH'
#!/usr/bin/env bash
while [ $# -gt 0 ]; do
    case "$1" in
        --log-file) cp "$(dirname "$0")/../kernels.csv" "$2"; shift 2 ;;
        --*) shift ;;
        *) [ -x "$1" ] && exec "$@"; shift ;;
    esac
done
SH
cat >"$work/bin/nvidia-smi" <<'SH'
#!/usr/bin/env bash
case " $* " in
    *" -lms "*) while true; do echo "95, 1755, 688.0"; sleep 0.05; done ;;
    *) echo "Stand-in GPU" ;;
esac
SH
chmod +x "$work/bin/ncu" "$work/bin/nvidia-smi"
: >"$work/trainer_args"
PATH="$work/bin:$PATH" dev/bench/step_breakdown.sh --trainer "$work/trainer" --out "$work/breakdown_out" \
    --tracer "$work/no_tracer.so" -- --recompute-gelu 0 >"$work/step_breakdown" 2>&1
check "step_breakdown.sh runs" test $? -eq 0
check "without the tracer it says the idle time is not split out" grep -qF "the idle time inside the step is not split out" \
    "$work/step_breakdown"
check "... and runs the trainer twice" test "$(grep -c -- "-e gpt2s --device-batch 32" "$work/trainer_args")" -eq 2
check "its runs get bench.sh's conditions, then the extra arguments" \
    grep -qF -- "-e gpt2s --device-batch 32 --seq-len 1024 --precision bf16 --dataset tiny --global-batch-tokens 1 --dropout-embd 0 --dropout-resid 0 --dropout-attn 0 --recompute-gelu 0 --bench-steps 25" "$work/trainer_args"
check "the profiled run profiles one step" grep -qF -- "--bench-steps 9 --profile-step 8" "$work/trainer_args"
check "the profiled run replays the unprofiled run's GEMM algorithms" grep -qF -- \
    "--matmul-tuning $work/breakdown_out/breakdown_gpt2s_b32_t1024_plain_run/matmul_tuning.txt" "$work/trainer_args"
check "the step time is the unprofiled run's" grep -qF "Step 65.50 ms (median, unprofiled run); 6 kernels" "$work/step_breakdown"
check "the title names the GPU" grep -qF "gpt2s B=32 T=1024, bf16, Stand-in GPU" "$work/step_breakdown"
check "the clock line gives the busy samples' medians" grep -qE "^SM clock while the GPU was busy: 1755 MHz, 688 W" "$work/step_breakdown"

touch "$work/tracer.so"
: >"$work/trainer_args"
PATH="$work/bin:$PATH" dev/bench/step_breakdown.sh --trainer "$work/trainer" --out "$work/traced_out" \
    --tracer "$work/tracer.so" >"$work/step_breakdown_traced" 2>&1
check "with the tracer, step_breakdown.sh runs" test $? -eq 0
check "the third run loads the tracer" grep -qF "$work/tracer.so" "$work/injected"
check "... profiles the same step with the same GEMM algorithms" grep -qF -- \
    "--bench-steps 9 --profile-step 8 --matmul-tuning $work/traced_out/breakdown_gpt2s_b32_t1024_plain_run/matmul_tuning.txt --out-dir $work/traced_out/breakdown_gpt2s_b32_t1024_trace_run" \
    "$work/trainer_args"
check "the breakdown gets the trace" grep -qF "Traced span 7.10 ms" "$work/step_breakdown_traced"
check "... and the traced step's own time from its log" grep -qF "the traced step took 7.30 ms on the host's clock" \
    "$work/step_breakdown_traced"

printf '"ID","Name"\n' >"$work/bad.csv"
python3 dev/bench/step_breakdown.py "$work/bad.csv" --step-ms 8 >/dev/null 2>"$work/bad_err"
check "a CSV without the needed columns is a clear error" grep -qF "expected columns 'Kernel Name'" "$work/bad_err"

# generate.sh: one --generate-bench run per row and sampling, its GENERATE_BENCH line in the table.
cat >"$work/generator" <<'SH'
#!/usr/bin/env bash
echo "$*" >>"$(dirname "$0")/generator_args"
case " $* " in
    *" -e gpt2xl "*) echo "error: out of memory"; exit 1 ;;
esac
echo "GENERATE_BENCH batch=1 new_tokens=64 prefill_ms=1.250 decode_ms_per_step=0.4000 decode_tokens_per_s=2500.0 gpu=\"Stand-in GPU\""
SH
chmod +x "$work/generator"
dev/bench/generate.sh --rows gpt2s:1,gpt2xl:8 --new-tokens 64 --trainer "$work/generator" --out "$work/gen_out" \
    -- --seed 7 >"$work/generate" 2>&1
check "generate.sh exits 1 when a run failed" test $? -eq 1
check "a row per model, batch and sampling, from the GENERATE_BENCH line" \
    grep -qF "| gpt2s | 1 | 64 | greedy | 1.250 | 0.4000 | 2500.0 |" "$work/generate"
check "the failed rows say FAILED and why" grep -qF -- "- gpt2xl B=8 top-k: exit status 1: error: out of memory" "$work/generate"
check "the title names the GPU" grep -qF "Generation, bf16, Stand-in GPU" "$work/generate"
check "the runs get the bench flags, the sampling, then the extra arguments" \
    grep -qF -- "-e gpt2s --generate-bench 1 --max-new-tokens 64 --precision bf16 --temperature 1 --top-k 50 --seed 7" "$work/generator_args"
check "the table is also written to generate.md" cmp -s "$work/generate" "$work/gen_out/generate.md"

# presets.sh: a stand-in trainer answers --print-config with the preset's fields and a training
# run with the lines the table is read from; gpt3xl fails. TRAINER picks it, `--` adds arguments.
mkdir -p "$work/bin"
printf '#!/usr/bin/env bash\necho "Stand-in GPU"\n' >"$work/bin/nvidia-smi"
cat >"$work/preset_trainer" <<'SH'
#!/usr/bin/env bash
echo "$*" >>"$(dirname "$0")/preset_args"
case " $* " in
    *" --print-config"*) printf '{\n  "seq_len": 1024,\n  "precision": "fp16",\n  "num_params": 124475904,\n}\n'; exit 0 ;;
    *" -e gpt3xl "*) echo "error: out of memory"; exit 1 ;;
esac
echo "device batch 32 (auto): the largest that fits; gradient accumulation 2"
echo "bench step 1/20 | loss 11.0180 | 1.0 s"
echo "bench step 20/20 | loss 10.1060 | 0.1 s"
echo "BENCH tokens_per_s=467580 mfu=38.00 peak_mem_gb=27.30 step_ms=140.1 gpu=\"Stand-in GPU\" gpus=1"
SH
chmod +x "$work/bin/nvidia-smi" "$work/preset_trainer"
PATH="$work/bin:$PATH" TRAINER="$work/preset_trainer" BENCH_LOG_DIR="$work/presets" \
    dev/bench/presets.sh gpt2s:64 gpt3xl:8 -- --attention-keep-mask 1 >"$work/presets_out" 2>"$work/presets_err"
check "presets.sh: a row from the run's lines" \
    grep -qF "| gpt2s | fp16 | 32 x 1024 (2) | 124.5M | 11.0180 | 10.1060 | 467580 | 38.00% | 27.30 GB |" "$work/presets_out"
check "presets.sh: a failed run's row points at its log" grep -qF "| gpt3xl | run failed: see $work/presets/gpt3xl.log |" \
    "$work/presets_out"
check "presets.sh: the extra arguments reach --print-config and the run" \
    grep -qF -- "-e gpt2s --dataset tiny --bench-steps 20 --global-batch-tokens 65536 --attention-keep-mask 1" \
    "$work/preset_args"
check "presets.sh: ... and the configuration it reads" grep -qF -- "-e gpt2s --attention-keep-mask 1 --print-config" \
    "$work/preset_args"
TRAINER="$work/missing" dev/bench/presets.sh gpt2s:64 >/dev/null 2>"$work/presets_missing"
check "presets.sh: a missing trainer is named" grep -qF "$work/missing not found" "$work/presets_missing"

finish_checks bench_tools
