#!/usr/bin/env bash
# Runs the whole suite (C unit tests, GPU parity tests, command-line tests, crash tests) and ends with one line
# "N passed, M failed[, K skipped]"; exits non-zero when anything failed or a runner broke.
set -u
cd "$(dirname "$0")/.."
log=$(mktemp)
trap 'rm -f "$log"' EXIT
status=0
# the CPU checks hold_operand's contract (nothing but its norm writes a held operand) in every run
export ATTNLAB_CHECK_HELD=${ATTNLAB_CHECK_HELD:-1}
"${RUN_TESTS:-./build/run_tests}" "$@" 2>&1 | tee -a "$log" || status=1
# GPU parity tests, where the GPU backend was built (make test builds it when nvcc is installed):
# in the tensor-core mode training uses, then with exact fp32 products (tight tolerances)
if [ -x build/run_tests_cuda ] && [ -z "${NO_GPU_TESTS:-}" ]; then
    ./build/run_tests_cuda "$@" 2>&1 | tee -a "$log" || status=1
    ATTNLAB_CUDA_MATMUL=fp32 ./build/run_tests_cuda "$@" 2>&1 | tee -a "$log" || status=1
fi
bash tests/cli_test.sh "$@" 2>&1 | tee -a "$log" || status=1
bash tests/crash_test.sh "$@" 2>&1 | tee -a "$log" || status=1
passed=$(grep -c '^ok ' "$log")
failed=$(grep -c '^FAIL ' "$log")
skipped=$(grep -c '^skip ' "$log")
# a runner that died without reporting its failures still fails the suite
if [ "$status" -ne 0 ] && [ "$failed" -eq 0 ]; then
    echo "FAIL a test runner exited abnormally"
    failed=1
fi
if [ "$skipped" -gt 0 ]; then
    echo "$passed passed, $failed failed, $skipped skipped"
else
    echo "$passed passed, $failed failed"
fi
[ "$failed" -eq 0 ]
