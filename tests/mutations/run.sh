#!/usr/bin/env bash
# make test-mutations: plants each bug of tests/mutations/*.patch in a copy of the tree, builds it
# and expects every test the patch's header names ("expect-fail: unit NAME" for build/run_tests,
# "expect-fail: cli NAME" for tests/cli_test.sh) to fail, after checking that they pass without
# it. Each patch is a blind spot the suite once had, or a bug it must keep catching; a patch that
# no longer applies fails until it is brought up to date with the code. Prints "ok"/"FAIL" lines
# like the other runners.
set -u
cd "$(dirname "$0")/../.."
SRC=$PWD
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
passed=0
failed=0
ok() { echo "ok   mutation $1"; passed=$((passed + 1)); }
fail() { echo "FAIL mutation $1: $2"; failed=$((failed + 1)); }

# the tree as it is (tracked and untracked files that git does not ignore, mtimes kept) and the
# objects already built, so that each mutation recompiles one file
git ls-files -co --exclude-standard -z | tar --null -T - -cf - | tar -xf - -C "$WORK"
if [ -d build/obj ]; then mkdir -p "$WORK/build" && cp -a build/obj build/backend.* "$WORK/build/" 2>/dev/null; fi
cd "$WORK"
build() { make -j2 attnlab build/run_tests >"$WORK/build.log" 2>&1; }
# test_fails KIND NAME: runs one test; true when it reports FAIL
test_fails() {
    case $1 in
    unit) ./build/run_tests "$2" 2>&1 | grep -q "^FAIL $2 " ;;
    cli) bash tests/cli_test.sh "$2" 2>&1 | grep -q "^FAIL $2:" ;;
    *) return 2 ;;
    esac
}
test_passes() {
    case $1 in
    unit) ./build/run_tests "$2" 2>&1 | grep -q "^ok   $2 " ;;
    cli) bash tests/cli_test.sh "$2" 2>&1 | grep -q "^ok   $2$" ;;
    *) return 2 ;;
    esac
}
expectations() { sed -n 's/^expect-fail: //p' "$1"; }

build || { echo "FAIL mutations: the tree does not build: $(tail -3 "$WORK/build.log")"; exit 1; }
# without a bug planted, every test named below passes (else its failure would prove nothing)
while read -r kind name; do
    test_passes "$kind" "$name" || fail "baseline" "$kind test $name does not pass on the tree as it is"
done < <(cat "$SRC"/tests/mutations/*.patch | sed -n 's/^expect-fail: //p' | sort -u)

for patch in "$SRC"/tests/mutations/*.patch; do
    name=$(basename "$patch" .patch)
    if [ -z "$(expectations "$patch")" ]; then
        fail "$name" "its header names no test (expect-fail: unit|cli NAME)"
        continue
    fi
    if ! git apply "$patch" 2>"$WORK/apply.log"; then
        fail "$name" "no longer applies ($(head -1 "$WORK/apply.log")): update $patch"
        continue
    fi
    if build; then
        missed=()
        while read -r kind test; do
            test_fails "$kind" "$test" || missed+=("$kind $test")
        done < <(expectations "$patch")
        if [ ${#missed[@]} -eq 0 ]; then ok "$name"; else fail "$name" "passed with the bug planted: ${missed[*]}"; fi
    else
        fail "$name" "does not build: $(grep -m1 "error:" "$WORK/build.log")"
    fi
    git apply -R "$patch"
done
echo "mutations: $passed caught, $failed failed"
[ "$failed" -eq 0 ]
