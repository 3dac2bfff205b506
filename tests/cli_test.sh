#!/usr/bin/env bash
# Command-line tests: bad input of every kind gets a one-line error naming what is wrong, a
# non-zero exit and no output; training writes the documented files; --resume reproduces an
# uninterrupted run's losses bit for bit. Prints "ok"/"FAIL" lines like the C runner.
set -u
cd "$(dirname "$0")/.."
A="$(realpath "${ATTNLAB:-$PWD/attnlab}")"
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
FILTER="${1:-}"
TINY="$PWD/tests/data/tiny.txt"

ok() { echo "ok   $1"; }
fail() { echo "FAIL $1: $2"; }
selected() { [ -z "$FILTER" ] || [[ "$1" == *"$FILTER"* ]]; }

# A small, fast model on the committed test text; runs go under $TMP/results.
base_config() {
    cat <<EOF
return {
  out_dir = "$TMP/results",
  model = { d_model = 32, n_layers = 1, n_heads = 2 },
  train = { steps = 6, batch_size = 2, seq_len = 32, log_every = 1, eval_every = 3,
            checkpoint_every = 3, warmup_steps = 2 },
  data = { path = "$TINY", split_block = 1024 },
  eval = { max_batches = 2 },
}
EOF
}

# expect_error NAME CODE PATTERN CMD...: the command exits with CODE, its stderr holds PATTERN
# (a fixed string) on its first line, the error is one line (usage errors excepted), and
# nothing was written under $TMP/results.
expect_error() {
    local name=$1 code=$2 pattern=$3
    shift 3
    selected "$name" || return 0
    rm -rf "$TMP/results"
    "$@" >"$TMP/out" 2>"$TMP/err"
    local got=$?
    local first
    first=$(head -n 1 "$TMP/err")
    if [ "$got" -ne "$code" ]; then
        fail "$name" "exit $got, expected $code; stderr: $first"
    elif ! grep -qF -- "$pattern" <<<"$first"; then
        fail "$name" "stderr '$first' lacks '$pattern'"
    elif [ "$code" -ne 2 ] && [ "$(wc -l <"$TMP/err")" -ne 1 ]; then
        fail "$name" "error is not one line: $(tr '\n' '|' <"$TMP/err")"
    elif [ -e "$TMP/results" ]; then
        fail "$name" "output was written: $(find "$TMP/results" | head -3 | tr '\n' ' ')"
    else
        ok "$name"
    fi
}

cfg() { # cfg NAME LUA: writes a config file and prints its path
    printf '%s\n' "$2" >"$TMP/$1.lua"
    echo "$TMP/$1.lua"
}

good=$(cfg good "$(base_config)")

# ---- usage ----
expect_error cli_no_command 2 "no command given" "$A"
expect_error cli_unknown_command 2 "unknown command 'trian'" "$A" trian
expect_error cli_train_without_config 2 "train takes one config file" "$A" train
expect_error cli_unknown_option 2 "unknown option '--resum'" "$A" train "$good" --resum
expect_error cli_bad_stop_at 2 "--stop-at: expected a positive integer, got 'soon'" "$A" train "$good" --stop-at soon
expect_error cli_set_without_value 2 "--set needs path=value" "$A" train "$good" --set

# ---- configs ----
expect_error config_missing_file 1 "config '$TMP/nope.lua' not found" "$A" train "$TMP/nope.lua"
bad=$(cfg misspelt 'return { train = { lr_shedule = "cosine" } }')
expect_error config_unknown_field_suggests 1 "unknown field 'train.lr_shedule' in $bad (did you mean 'train.lr_schedule'?)" "$A" train "$bad"
bad=$(cfg wrongtype 'return { model = { d_model = "wide" } }')
expect_error config_wrong_type 1 "$bad: field 'model.d_model': expected an integer in [8, 65536], got string" "$A" train "$bad"
bad=$(cfg range 'return { train = { lr = -1 } }')
expect_error config_out_of_range 1 "$bad: field 'train.lr': expected a number in [0, 10], got -1" "$A" train "$bad"
bad=$(cfg fraction 'return { train = { steps = 2.5 } }')
expect_error config_integer_field_given_fraction 1 "field 'train.steps': expected an integer" "$A" train "$bad"
bad=$(cfg enum 'return { model = { softmax = { position = "alibi" } } }')
expect_error config_bad_choice 1 "field 'model.softmax.position': expected one of rope|nope, got 'alibi'" "$A" train "$bad"
bad=$(cfg syntax 'return { model = { d_model = 64 }')
expect_error config_lua_syntax_error 1 "$bad:2: '}' expected (to close '{' at line 1)" "$A" train "$bad"
bad=$(cfg runtime 'local t = nil
return { model = { d_model = t.x } }')
expect_error config_lua_runtime_error 1 "$bad:2: attempt to index a nil value" "$A" train "$bad"
bad=$(cfg notable 'return 42')
expect_error config_not_a_table 1 "$bad: expected the config to return a table, got number" "$A" train "$bad"
bad=$(cfg section 'return { model = 3 }')
expect_error config_section_not_table 1 "field 'model': expected a table (a section of fields), got number" "$A" train "$bad"
bad=$(cfg heads 'return { model = { d_model = 30, n_heads = 4 } }')
expect_error config_heads_do_not_divide 1 "model.d_model (30) is not a multiple of model.n_heads (4)" "$A" train "$bad"
expect_error config_set_unknown 1 "unknown field 'train.sept' in --set (did you mean 'train.steps'?)" "$A" train "$good" --set train.sept=5
expect_error config_set_bad_value 1 "--set train.lr=fast: expected a number in [0, 10], got 'fast'" "$A" train "$good" --set train.lr=fast
expect_error config_set_section 1 "'model' is a section" "$A" train "$good" --set model=3
expect_error config_bad_device 1 "expected one of cpu|cuda, got 'tpu'" "$A" train "$good" --set device=tpu

bad=$(cfg ratio 'return { model = { hybrid = { ratio = "three to one" } } }')
expect_error config_bad_hybrid_ratio 1 "field 'model.hybrid.ratio': expected 'L:F' with whole numbers, e.g. '3:1', got 'three to one'" "$A" train "$bad"
bad=$(cfg layercount 'return { model = { n_layers = 4, layers = { "kda", "mla" } } }')
expect_error config_layers_count 1 "model.layers lists 2 mixers but model.n_layers is 4" "$A" train "$bad"
bad=$(cfg layeritem 'return { model = { n_layers = 2, layers = { "kda", "flash" } } }')
expect_error config_layers_bad_item 1 "field 'model.layers': item 2: expected one of softmax|mla|linear|gdn|kda|dplr, got 'flash'" "$A" train "$bad"
bad=$(cfg both 'return { model = { n_layers = 2, layers = { "kda", "mla" }, hybrid = { ratio = "1:1" } } }')
expect_error config_layers_and_ratio 1 "model.layers and model.hybrid.ratio both set the layer pattern" "$A" train "$bad"
expect_error config_hybrid_full_must_be_attention 1 "--set model.hybrid.full=kda: expected one of softmax|mla, got 'kda'" "$A" train "$good" --set model.hybrid.full=kda
expect_error config_gdn_fractional_value_width 1 "model.gdn.expand_v = 0.3 times 16 key channels is not a whole number of value channels" "$A" train "$good" --set model.mixer=gdn --set model.gdn.expand_v=0.3
expect_error config_mla_odd_rope_dims_under_rope 1 "model.mla.qk_rope_head_dim must be positive, and even under RoPE, got 7" "$A" train "$good" --set model.mixer=mla --set model.mla.position=rope --set model.mla.qk_rope_head_dim=7

# ---- sweep files are first-class on every command; every --set takes effect or is refused ----
hsweep=$(cfg hsweep "return { experiment = 'hs', base = { out_dir = '$TMP/results',
  model = { d_model = 32, n_layers = 4, n_heads = 2, hybrid = { ratio = '3:1' } },
  train = { steps = 2, batch_size = 2, seq_len = 32, log_every = 1, eval_every = 0, checkpoint_every = 0 },
  data = { path = '$TINY', split_block = 1024 }, eval = { max_batches = 1 } },
  grid = { ['model.hybrid.linear'] = { 'gdn', 'kda' }, seed = { 1, 2 } } }")
if selected describe_sweep_shows_each_distinct_model; then
    "$A" describe "$hsweep" >"$TMP/out" 2>&1
    if [ "$(grep -c '^== model' "$TMP/out")" -eq 2 ] && grep -q "^== model 1, trained by runs linear=gdn,seed=1, linear=gdn,seed=2$" "$TMP/out" &&
        grep -q "4 runs, 2 distinct models" "$TMP/out"; then
        ok describe_sweep_shows_each_distinct_model
    else
        fail describe_sweep_shows_each_distinct_model "$(head -3 "$TMP/out" | tr '\n' '|')"
    fi
fi
expect_error train_sweep_needs_only 2 "is a sweep of 4 runs: 'attnlab run' trains them all, 'train --only N' (1 to 4) one of them" "$A" train "$hsweep"
if selected train_sweep_only_trains_that_run; then
    rm -rf "$TMP/results"
    # --only N is the N-th run --dry-run lists
    if "$A" run "$hsweep" --dry-run 2>&1 | grep -q "^   3  linear=kda,seed=1$" && rm -rf "$TMP/results" &&
        "$A" train "$hsweep" --only 3 >"$TMP/out" 2>&1 && [ "$(ls "$TMP/results/hs")" = "linear=kda,seed=1" ] &&
        grep -q '"status":[[:space:]]*"finished"' "$TMP/results/hs/linear=kda,seed=1/summary.json"; then
        ok train_sweep_only_trains_that_run
    else
        fail train_sweep_only_trains_that_run "$(tail -2 "$TMP/out" | tr '\n' '|'); $(ls "$TMP/results/hs" 2>&1)"
    fi
fi
if selected run_set_experiment_is_honoured; then
    if "$A" run "$hsweep" --set experiment=other --dry-run 2>&1 | grep -q "4 runs of experiment 'other' in $TMP/results/other/"; then
        ok run_set_experiment_is_honoured
    else
        fail run_set_experiment_is_honoured "$("$A" run "$hsweep" --set experiment=other --dry-run 2>&1 | head -1)"
    fi
fi
expect_error run_set_of_a_swept_field 1 "--set model.hybrid.linear=kda: $hsweep varies model.hybrid.linear across its runs" "$A" run "$hsweep" --set model.hybrid.linear=kda
expect_error run_set_without_effect 1 "--set model.softmax.n_kv_heads=1 has no effect in any run of $hsweep: no layer of the model is softmax" "$A" run "$hsweep" --set model.softmax.n_kv_heads=1
expect_error set_mixer_under_a_hybrid 1 "--set model.mixer=gdn has no effect: model.hybrid.ratio lays out the layers" "$A" train "$good" --set model.hybrid.ratio=3:1 --set model.mixer=gdn
expect_error set_section_of_an_unused_mixer 1 "--set model.kda.chunk_size=8 has no effect: no layer of the model is kda" "$A" train "$good" --set model.kda.chunk_size=8
expect_error set_section_of_another_task 1 "--set mqar.num_kv_pairs=4 has no effect: the task is lm, not mqar" "$A" train "$good" --set mqar.num_kv_pairs=4
expect_error set_value_is_blamed_not_the_file 1 "--set model.d_model=33: model.d_model (33) is not a multiple of model.n_heads (2)" "$A" train "$good" --set model.d_model=33
expect_error hybrid_ratio_without_layers 1 "'0:0' has no layers (L + F must be at least 1)" "$A" train "$good" --set model.hybrid.ratio=0:0
expect_error jobs_value_is_one_line 2 "--jobs: expected a positive integer, got 'x'" "$A" run "$hsweep" --jobs x
if selected jobs_value_is_one_line_only; then
    n=$("$A" run "$hsweep" --jobs x 2>&1 | wc -l)
    if [ "$n" -eq 1 ]; then ok jobs_value_is_one_line_only; else fail jobs_value_is_one_line_only "$n lines"; fi
fi
if selected help_topics_for_every_command; then
    missing=""
    for t in run sweep plot describe; do "$A" help $t >/dev/null 2>&1 || missing="$missing $t"; done
    if [ -z "$missing" ]; then ok help_topics_for_every_command; else fail help_topics_for_every_command "no help on:$missing"; fi
fi

# core/ names no mixer: every list of mixers there comes from the registry (variants/registry.c).
# The names are the registry's own, read from `help config`; "linear" is also a learning-rate
# schedule, so for it only its config section counts.
if selected core_names_no_mixer; then
    names=$("$A" help config | sed -n 's/^  model\.mixer *\([a-z|]*\) .*/\1/p')
    strict=$(echo "$names" | tr '|' '\n' | grep -vx linear | paste -sd'|')
    hits=$(grep -rnE "\"($strict)\"|\"[^\"]*model\.($names)\.|[(\"](($strict)\|)|\|($strict)[|\"]" core/ | head -5)
    if [ -n "$strict" ] && [ -z "$hits" ]; then ok core_names_no_mixer; else fail core_names_no_mixer "mixers ${names:-?} named in core/: $hits"; fi
fi
# a position-encoding ablation changes nothing but the rotation: for every mixer, RoPE and NoPE
# describe the same parameter count and cache
if selected describe_nope_and_rope_differ_only_in_rotation; then
    bad=""
    for m in softmax mla linear gdn kda dplr; do
        for p in rope nope; do
            "$A" describe "$good" --set model.mixer=$m --set model.$m.position=$p --context 1000 >"$TMP/$p" 2>&1 || bad="$bad $m/$p:fails"
        done
        n=$(grep -c "^total:\|^decode cache" "$TMP/rope")
        if [ "$n" -ne 2 ] || ! diff -q <(grep "^total:\|^decode cache" "$TMP/rope") <(grep "^total:\|^decode cache" "$TMP/nope") >/dev/null ||
            ! grep -q "^0 *$m *nope " "$TMP/nope"; then
            bad="$bad $m"
        fi
    done
    if [ -z "$bad" ]; then ok describe_nope_and_rope_differ_only_in_rotation; else fail describe_nope_and_rope_differ_only_in_rotation "differ:$bad"; fi
fi
# describe prints the layer table of a hybrid and its cache
if selected describe_hybrid; then
    if "$A" describe "$good" --set model.n_layers=4 --set model.hybrid.ratio=3:1 --set model.mla.position=nope --context 1000 >"$TMP/out" 2>&1 &&
        [ "$(grep -c ' kda ' "$TMP/out")" -eq 3 ] && [ "$(grep -c ' mla ' "$TMP/out")" -eq 1 ] &&
        grep -q "at 1,000 tokens" "$TMP/out"; then
        ok describe_hybrid
    else
        fail describe_hybrid "$(cat "$TMP/out")"
    fi
fi

# require of a sibling file works, and `attnlab help config` documents every field
if selected config_require_sibling; then
    mkdir -p "$TMP/req"
    printf 'return { d_model = 48 }\n' >"$TMP/req/shared_model.lua"
    printf 'local m = require("shared_model")\nreturn { model = { d_model = m.d_model, n_heads = 2, n_layers = 1 }, train = { steps = 1, seq_len = 16, batch_size = 1 }, out_dir = "%s/results", data = { path = "%s", split_block = 1024 } }\n' "$TMP" "$TINY" >"$TMP/req/main.lua"
    rm -rf "$TMP/results"
    if "$A" train "$TMP/req/main.lua" >"$TMP/out" 2>&1 && grep -q "d_model = 48" "$TMP/results/main/main/config.lua"; then
        ok config_require_sibling
    else
        fail config_require_sibling "$(tail -2 "$TMP/out")"
    fi
fi
if selected config_help_lists_every_field; then
    "$A" help config >"$TMP/help" 2>&1
    missing=""
    for f in model.d_model model.softmax.n_kv_heads train.lr_schedule train.grad_accum data.val_fraction eval.max_batches seed device; do
        grep -q "^  $f " "$TMP/help" || missing="$missing $f"
    done
    [ -z "$missing" ] && ok config_help_lists_every_field || fail config_help_lists_every_field "missing:$missing"
fi

# ---- data ----
: >"$TMP/empty.txt"
expect_error data_empty_file 1 "$TMP/empty.txt: file is empty" "$A" train "$good" --set data.path="$TMP/empty.txt"
printf 'caf\xc3\xa9 ok\nbad \xff byte\n' >"$TMP/latin.txt"
expect_error data_not_utf8 1 "$TMP/latin.txt: not UTF-8 text" "$A" train "$good" --set data.path="$TMP/latin.txt"
expect_error data_missing_file 1 "$TMP/none.txt" "$A" train "$good" --set data.path="$TMP/none.txt"
expect_error data_missing_names_field_and_cwd 1 "data.path = 'none.txt': No such file or directory (a relative path is read from the directory attnlab runs in, $PWD;" "$A" train "$good" --set data.path=none.txt
head -c 500 "$TINY" >"$TMP/short.txt"
expect_error data_too_short 1 "$TMP/short.txt" "$A" train "$good" --set data.path="$TMP/short.txt"
# shards: a header (magic 20240520, version 1, count) then uint16 tokens
shard() { # shard FILE MAGIC VERSION COUNT NTOKENS_WRITTEN
    { printf "$(printf '\\x%02x\\x%02x\\x%02x\\x%02x' $(( $2 & 255 )) $(( ($2 >> 8) & 255 )) $(( ($2 >> 16) & 255 )) $(( ($2 >> 24) & 255 )))"
      printf "$(printf '\\x%02x\\x00\\x00\\x00' "$3")"
      printf "$(printf '\\x%02x\\x%02x\\x00\\x00' $(( $4 & 255 )) $(( ($4 >> 8) & 255 )))"
      head -c $((253 * 4)) /dev/zero
      head -c $(( $5 * 2 )) /dev/zero | tr '\0' '\001'; } >"$1"
}
shard "$TMP/trunc.bin" 20240520 1 4000 3000
expect_error data_shard_truncated 1 "$TMP/trunc.bin: truncated shard" "$A" train "$good" --set data.path="$TMP/trunc.bin" --set data.format=shard
shard "$TMP/magic.bin" 20240521 1 100 100
expect_error data_shard_bad_magic 1 "$TMP/magic.bin" "$A" train "$good" --set data.path="$TMP/magic.bin" --set data.format=shard
shard "$TMP/version.bin" 20240520 7 100 100
expect_error data_shard_bad_version 1 "version" "$A" train "$good" --set data.path="$TMP/version.bin" --set data.format=shard

# ---- training writes its files; a second run refuses to overwrite ----
if selected train_writes_results; then
    rm -rf "$TMP/results"
    if "$A" train "$good" >"$TMP/out" 2>&1; then
        d="$TMP/results/good/main"
        if [ -f "$d/config.lua" ] && [ -f "$d/summary.json" ] && [ -f "$d/checkpoint.safetensors" ] &&
            [ "$(wc -l <"$d/metrics.jsonl")" -eq 6 ] && grep -q '"status":[[:space:]]*"finished"' "$d/summary.json" &&
            grep -q "results: $d/" "$TMP/out" && ! ls "$d" | grep -q tmp; then
            ok train_writes_results
        else
            fail train_writes_results "files: $(ls "$d" | tr '\n' ' ') / $(tail -1 "$TMP/out")"
        fi
    else
        fail train_writes_results "$(tail -2 "$TMP/out")"
    fi
fi
if selected train_refuses_to_overwrite; then
    "$A" train "$good" >"$TMP/out2" 2>"$TMP/err2"
    code=$?
    if [ "$code" -eq 1 ] && grep -q "already holds a run (status: finished)" "$TMP/err2"; then
        ok train_refuses_to_overwrite
    else
        fail train_refuses_to_overwrite "exit $code: $(cat "$TMP/err2")"
    fi
fi

# ---- the thread count does not change the numbers: every mixer, gradient accumulation ----
if selected train_is_independent_of_the_thread_count; then
    digests=()
    for t in 1 3; do
        rm -rf "$TMP/results"
        "$A" train "$good" --set threads=$t --set model.n_layers=5 --set model.layers=softmax,linear,gdn,kda,mla \
            --set train.grad_accum=2 >/dev/null 2>&1
        f="$TMP/results/good/main/checkpoint.safetensors"
        n=$(od -An -t u8 -N8 "$f" 2>/dev/null | tr -d ' ')
        digests+=("$(tail -c +$((9 + ${n:-0})) "$f" 2>/dev/null | sha256sum | cut -c1-16)")
    done
    if [ -n "${n:-}" ] && [ "${digests[0]}" = "${digests[1]}" ]; then
        ok train_is_independent_of_the_thread_count
    else
        fail train_is_independent_of_the_thread_count "parameters after 1 and 3 threads: ${digests[*]}"
    fi
fi

# ---- resume: stop at step 2, resume, compare every logged loss with the uninterrupted run ----
losses() { grep -o '"loss":[^,}]*' "$1"; }
if selected train_resume_is_bit_identical; then
    rm -rf "$TMP/results"
    "$A" train "$good" --set run=full >/dev/null 2>&1
    "$A" train "$good" --set run=split --stop-at 2 >/dev/null 2>&1
    stopped=$(grep -o '"status":[[:space:]]*"[a-z]*"' "$TMP/results/good/split/summary.json" | tr -d '[:space:]')
    "$A" train "$good" --set run=split --resume >"$TMP/out" 2>&1
    full=$(losses "$TMP/results/good/full/metrics.jsonl")
    split=$(losses "$TMP/results/good/split/metrics.jsonl")
    if [ -n "$full" ] && [ "$full" = "$split" ] && [ "$stopped" = '"status":"stopped"' ] &&
        [ "$(echo "$full" | wc -l)" -eq 6 ] && grep -q "continuing from step 2" "$TMP/out"; then
        ok train_resume_is_bit_identical
    else
        fail train_resume_is_bit_identical "stopped: $stopped; full: $(echo $full); split: $(echo $split)"
    fi
fi

# ---- eval reads a checkpoint; a damaged checkpoint is refused ----
if selected eval_checkpoint; then
    ck="$TMP/results/good/full/checkpoint.safetensors"
    # and the task's final metrics at longer lengths than the run was evaluated at
    if "$A" eval "$ck" >"$TMP/out" 2>&1 && grep -q "val loss" "$TMP/out" && grep -q "(step 6)" "$TMP/out" &&
        ! grep -q "val_perplexity_x2" "$TMP/out" && "$A" eval "$ck" --set eval.max_length_factor=2 >"$TMP/out2" 2>&1 &&
        grep -q "^val_perplexity_x2 [0-9]" "$TMP/out2"; then
        ok eval_checkpoint
    else
        fail eval_checkpoint "$(cat "$TMP/out" "$TMP/out2" 2>/dev/null)"
    fi
fi
if [ -f "$TMP/results/good/full/checkpoint.safetensors" ]; then
    head -c 5000 "$TMP/results/good/full/checkpoint.safetensors" >"$TMP/torn.safetensors"
    expect_error eval_truncated_checkpoint 1 "$TMP/torn.safetensors" "$A" eval "$TMP/torn.safetensors"
fi
expect_error eval_missing_checkpoint 1 "$TMP/none.safetensors" "$A" eval "$TMP/none.safetensors"
printf 'not a checkpoint at all' >"$TMP/junk.safetensors"
expect_error eval_junk_checkpoint 1 "$TMP/junk.safetensors" "$A" eval "$TMP/junk.safetensors"

# ---- export to flash-linear-attention: what fla cannot express is refused, nothing written ----
ck_dir="$TMP/export_ck"
mkdir -p "$ck_dir"
"$A" train "$good" --set out_dir="$ck_dir" --set model.n_layers=2 --set model.hybrid.ratio=1:1 --set train.steps=2 >/dev/null 2>&1
hybrid_ck="$ck_dir/good/main/checkpoint.safetensors"
expect_error export_refuses_mla_layers 1 "cannot export to fla: layer 1 is mla" "$A" export "$hybrid_ck" --format fla "$TMP/results/fla"
expect_error export_needs_a_format 2 "export needs --format fla" "$A" export "$hybrid_ck" "$TMP/results/fla"
expect_error export_unknown_format 2 "--format: expected 'fla', got 'hf'" "$A" export "$hybrid_ck" --format hf "$TMP/results/fla"
if selected export_writes_a_folder_once; then
    "$A" train "$good" --set out_dir="$ck_dir" --set run=kda --set model.mixer=kda --set train.steps=2 >/dev/null 2>&1
    rm -rf "$TMP/fla"
    if "$A" export "$ck_dir/good/kda/checkpoint.safetensors" --format fla "$TMP/fla" >"$TMP/out" 2>&1 &&
        grep -q '"model_type":[[:space:]]*"kda"' "$TMP/fla/config.json" &&
        grep -q '"model.layers.0.attn.q_conv1d.weight":{"dtype":"F32","shape":\[32,1,4\]' "$TMP/fla/model.safetensors" &&
        [ -s "$TMP/fla/reference_logits.safetensors" ] &&
        ! "$A" export "$ck_dir/good/kda/checkpoint.safetensors" --format fla "$TMP/fla" 2>"$TMP/err" &&
        grep -q "already exists" "$TMP/err" && [ -z "$(ls "$TMP" | grep 'fla.tmp')" ]; then
        ok export_writes_a_folder_once
    else
        fail export_writes_a_folder_once "$(cat "$TMP/out" "$TMP/err" 2>/dev/null | head -3 | tr '\n' '|')"
    fi
fi

# ---- model.mlp = false: blocks without the MLP half train, and the checkpoint evaluates ----
if selected train_without_mlp; then
    rm -rf "$TMP/results"
    params() { grep -o '"params":[[:space:]]*[0-9]*' "$1" | grep -o '[0-9]*$'; }
    "$A" train "$good" --set run=mlp >/dev/null 2>&1
    "$A" train "$good" --set run=nomlp --set model.mlp=false >"$TMP/out" 2>&1
    code=$?
    with=$(params "$TMP/results/good/mlp/summary.json")
    without=$(params "$TMP/results/good/nomlp/summary.json")
    # one layer of d_model 32: the SwiGLU MLP (3 x 32 x 128, d_ff 128 by default) and its norm (32)
    if [ "$code" -eq 0 ] && [ -n "$with" ] && [ $((with - without)) -eq $((3 * 32 * 128 + 32)) ] &&
        grep -q '"status":[[:space:]]*"finished"' "$TMP/results/good/nomlp/summary.json" &&
        grep -q "mlp = false" "$TMP/results/good/nomlp/config.lua" &&
        "$A" eval "$TMP/results/good/nomlp/checkpoint.safetensors" 2>&1 | grep -q "(step 6)"; then
        ok train_without_mlp
    else
        fail train_without_mlp "exit $code, params $with and $without; $(tail -2 "$TMP/out")"
    fi
fi

# ---- resume is bit-identical on a fixed MQAR training set too, stopped inside its second epoch ----
if selected train_resume_is_bit_identical_on_a_fixed_mqar_set; then
    rm -rf "$TMP/results"
    fixed=(--set task=mqar --set train.seq_len=32 --set mqar.num_kv_pairs=4 --set model.vocab_size=64
        --set mqar.train_examples=6 --set mqar.epochs=3 --set eval.examples=16)
    "$A" train "$good" "${fixed[@]}" --set run=full >/dev/null 2>&1
    "$A" train "$good" "${fixed[@]}" --set run=split --stop-at 4 >/dev/null 2>&1
    "$A" train "$good" "${fixed[@]}" --set run=split --resume >"$TMP/out" 2>&1
    digest() { # the checkpoint's tensors (after its header, which holds the wall time)
        local n
        n=$(od -An -t u8 -N8 "$1" | tr -d ' ')
        tail -c +$((9 + n)) "$1" | sha256sum | cut -c1-16
    }
    full=$(grep -o '"loss":[^,}]*\|"val_accuracy":[^,}]*' "$TMP/results/good/full/metrics.jsonl")
    split=$(grep -o '"loss":[^,}]*\|"val_accuracy":[^,}]*' "$TMP/results/good/split/metrics.jsonl")
    # 3 epochs of 6 examples in steps of 2: 9 steps
    if [ -n "$full" ] && [ "$full" = "$split" ] && grep -q "continuing from step 4" "$TMP/out" &&
        grep -q '"steps":[[:space:]]*9' "$TMP/results/good/full/summary.json" &&
        [ "$(digest "$TMP/results/good/full/checkpoint.safetensors")" = "$(digest "$TMP/results/good/split/checkpoint.safetensors")" ]; then
        ok train_resume_is_bit_identical_on_a_fixed_mqar_set
    else
        fail train_resume_is_bit_identical_on_a_fixed_mqar_set "full: $(echo $full); split: $(echo $split); $(tail -1 "$TMP/out")"
    fi
fi

# ---- sweeps: a grid runs, finished runs are skipped, a failing run is recorded and the rest go on ----
sweep_base() { # sweep_base GRID_OR_RUNS: a sweep over the small base config
    cat <<EOF2
return {
  experiment = "sw",
  base = {
    out_dir = "$TMP/results",
    model = { d_model = 32, n_layers = 1, n_heads = 2 },
    train = { steps = 4, batch_size = 2, seq_len = 32, log_every = 1, eval_every = 0, checkpoint_every = 2 },
    data = { path = "$TINY", split_block = 1024 },
    eval = { max_batches = 1 },
  },
  $1
}
EOF2
}
ssweep=$(cfg ssweep "$(sweep_base 'grid = { seed = { 1, 2 } },')")
expect_error run_only_past_the_sweep 2 "--only 3: $ssweep is a sweep of 2 runs (--dry-run numbers them)" "$A" run "$ssweep" --only 3
expect_error run_status_takes_no_jobs 2 "--status reads the results folder and runs nothing" "$A" run "$ssweep" --status --jobs 2
expect_error run_slurm_with_only 2 "--slurm runs each run as an array task of its own" "$A" run "$ssweep" --slurm --only 1
expect_error run_runs_past_the_sweep 2 "--runs: $ssweep has runs 1 to 2 (--dry-run numbers them), not 3" "$A" run "$ssweep" --runs 1-3
expect_error run_runs_named_twice 2 "--runs: run 2 is named twice in '2,1-2'" "$A" run "$ssweep" --runs 2,1-2
expect_error run_runs_not_numbers 2 "--runs: expected run numbers or ranges separated by commas (e.g. 3,7-9), got '2-1'" "$A" run "$ssweep" --runs 2-1
expect_error run_runs_with_only 2 "--runs picks runs for this machine's jobs: --only, --status and --slurm do not apply" "$A" run "$ssweep" --runs 1 --only 1
expect_error run_stop_after_not_a_duration 2 "--stop-after: expected a positive duration in seconds, or with s, m or h (e.g. 600, 90s, 10m, 2h), got '5x'" "$A" run "$ssweep" --stop-after 5x
expect_error run_stop_after_with_slurm 2 "--stop-after limits the time the runs train here: --status, --slurm and --dry-run run nothing here" "$A" run "$ssweep" --slurm --stop-after 10m
expect_error run_partition_without_slurm 2 "--partition, --time, --gpus-per-run and --cpus-per-run are for --slurm" "$A" run "$ssweep" --partition gpu
expect_error run_slurm_without_sbatch 1 "--slurm: sbatch is not on the PATH" env PATH=/nonexistent "$A" run "$ssweep" --slurm
gsweep=$(cfg gsweep "$(sweep_base 'grid = { seed = { 1, 2 } },' | sed 's/out_dir = /device = "cuda", out_dir = /')")
expect_error run_gpus_on_a_cpu_sweep 2 "--gpus and --jobs-per-gpu place runs on GPUs; no run of $ssweep has device = \"cuda\"" "$A" run "$ssweep" --gpus 0
expect_error run_gpus_named_twice 2 "--gpus: GPU 1 is named twice" "$A" run "$gsweep" --gpus 1,1
expect_error run_gpus_not_indices 2 "--gpus: expected GPU indices separated by commas (e.g. 0,1,2,3), got 'a,b'" "$A" run "$gsweep" --gpus a,b
expect_error run_gpus_with_jobs 2 "--gpus runs --jobs-per-gpu jobs on each GPU: --jobs does not apply" "$A" run "$gsweep" --gpus 0 --jobs 2
if [ -d /proc/driver/nvidia/gpus ]; then
    n_gpus=$(ls /proc/driver/nvidia/gpus | wc -l)
    expect_error run_gpus_past_the_machine 2 "--gpus: GPU $n_gpus does not exist: this machine has $n_gpus" "$A" run "$gsweep" --gpus "$n_gpus"
else
    expect_error run_gpus_without_a_gpu 2 "$gsweep runs on device = \"cuda\", and no GPU is visible here" env -u CUDA_VISIBLE_DEVICES "$A" run "$gsweep"
fi
# train.stop_accuracy (Zoology's early stop): the run finishes at the first validation pass above
# it, checkpointed, and a resume finds nothing to do
if selected train_stops_early_once_accurate_enough; then
    rm -rf "$TMP/results"
    "$A" train "$good" --set train.stop_accuracy=0.0001 --set train.steps=10 --set train.eval_every=2 >"$TMP/out" 2>&1
    code=$?
    s="$TMP/results/good/main/summary.json"
    "$A" train "$good" --set train.stop_accuracy=0.0001 --set train.steps=10 --set train.eval_every=2 --resume >"$TMP/out2" 2>&1
    code2=$?
    # where an evaluation may stop the run, its interval changes the results
    "$A" train "$good" --set train.stop_accuracy=0.0001 --set train.steps=10 --set train.eval_every=3 --resume >/dev/null 2>"$TMP/err"
    code3=$?
    if [ $code -eq 0 ] && grep -q '"status":[[:space:]]*"finished"' "$s" && grep -q '"step":[[:space:]]*2,' "$s" &&
        [ $code3 -ne 0 ] && grep -q "(train.eval_every: 2 -> 3)" "$TMP/err" &&
        grep -q '"reason":[[:space:]]*"stopped early: val accuracy 0\.[0-9]* is above train.stop_accuracy = 0.0001"' "$s" &&
        [ $code2 -eq 0 ] && grep -q "finished already (step 2 of 10): nothing to do" "$TMP/out2"; then
        ok train_stops_early_once_accurate_enough
    else
        fail train_stops_early_once_accurate_enough "exit $code/$code2; $(tr '\n' '|' <"$TMP/out" | tail -c 300); $(cat "$TMP/out2")"
    fi
fi

# data-parallel training: bad values and places stop with one line before any rank starts
expect_error train_gpus_on_a_cpu_config 2 "--gpus: data-parallel training runs on GPUs, and the config says device = \"cpu\"" "$A" train "$good" --gpus 2
expect_error train_data_parallel_on_a_cpu_config 2 "train.data_parallel: data-parallel training runs on GPUs" "$A" train "$good" --set train.data_parallel=2
expect_error train_gpus_one 2 "--gpus 1: expected a number of GPUs from 2 to 64, or a list of GPU indices (0,1)" "$A" train "$good" --gpus 1
expect_error train_gpus_not_a_list 2 "--gpus 0;1: expected a number of GPUs, or a list of GPU indices separated by commas" "$A" train "$good" --gpus '0;1'
expect_error train_gpus_batch_not_divisible 2 "--gpus: train.batch_size = 2 is not divisible by 3 GPUs" "$A" train "$good" --set device=cuda --gpus 3
expect_error train_gpus_without_nccl 2 "--gpus: this build has no NCCL: \`make cuda\` builds the GPU backend with it" "$A" train "$good" --set device=cuda --gpus 2
expect_error train_gpus_inside_a_rank 2 "--gpus 2 starts the ranks itself, and this process is rank 0 of 2 already (torchrun variables)" env WORLD_SIZE=2 RANK=0 MASTER_ADDR=127.0.0.1 MASTER_PORT=29500 "$A" train "$good" --gpus 2
expect_error train_rank_without_its_address 2 "environment variable WORLD_SIZE = 2 names a data-parallel run but MASTER_ADDR (rank 0's address) is not set" env WORLD_SIZE=2 RANK=1 "$A" train "$good"
expect_error train_rank_of_a_cpu_config 2 "this process is rank 1 of 2 (torchrun variables), and data-parallel training runs on GPUs" env WORLD_SIZE=2 RANK=1 MASTER_ADDR=127.0.0.1 MASTER_PORT=29500 "$A" train "$good"
dpsweep=$(cfg dpsweep "$(sweep_base 'grid = { seed = { 1, 2 } },' | sed 's/out_dir = /device = "cuda", out_dir = /; s/train = { steps = 4,/train = { data_parallel = 2, steps = 4,/')")
expect_error run_slurm_other_gpus_than_data_parallel 1 "--gpus-per-run 1: runs of $dpsweep train on 2 GPUs each (train.data_parallel), one srun task per GPU" "$A" run "$dpsweep" --slurm --gpus-per-run 1 --dry-run
if selected run_slurm_script_starts_data_parallel_ranks_with_srun; then
    rm -rf "$TMP/results"
    "$A" run "$dpsweep" --slurm --dry-run >"$TMP/out" 2>&1
    if grep -qx "#SBATCH --ntasks=2" "$TMP/out" && grep -qx "#SBATCH --gpus-per-task=1" "$TMP/out" &&
        grep -q "^exec srun --kill-on-bad-exit=1 .* run .* --only \"\$SLURM_ARRAY_TASK_ID\"" "$TMP/out"; then
        ok run_slurm_script_starts_data_parallel_ranks_with_srun
    else fail run_slurm_script_starts_data_parallel_ranks_with_srun "$(grep "SBATCH\|exec" "$TMP/out" | tr '\n' '|')"; fi
fi
expect_error run_rank_without_only 2 "this process is rank 1 of 2 (torchrun variables): a sweep's run over ranks takes --only N" env WORLD_SIZE=2 RANK=1 MASTER_ADDR=127.0.0.1 MASTER_PORT=29500 "$A" run "$dpsweep"
expect_error run_rank_of_a_cpu_run 2 "this process is rank 0 of 2 (torchrun variables), and data-parallel training runs on GPUs: run 1 of $ssweep says device = \"cpu\"" env WORLD_SIZE=2 RANK=0 MASTER_ADDR=127.0.0.1 MASTER_PORT=29500 "$A" run "$ssweep" --only 1
expect_error run_rank_without_nccl 2 "data-parallel training over 2 ranks: this build has no NCCL" env WORLD_SIZE=2 RANK=1 MASTER_ADDR=127.0.0.1 MASTER_PORT=29500 "$A" run "$dpsweep" --only 2
if selected sweep_grid_runs_and_skips_finished; then
    rm -rf "$TMP/results"
    s=$(cfg sweepgrid "$(sweep_base 'grid = { ["model.mixer"] = { "softmax", "kda" }, seed = { 1, 2 } },')")
    "$A" run "$s" --jobs 2 >"$TMP/out" 2>&1
    code=$?
    rows=$(tail -n +2 "$TMP/results/sw/summary.csv" | grep -c ',finished,')
    "$A" run "$s" >"$TMP/out2" 2>&1
    if [ "$code" -eq 0 ] && [ "$rows" -eq 4 ] && grep -q "4 runs, 4 already done" "$TMP/out2" &&
        head -1 "$TMP/results/sw/summary.csv" | grep -q "^run,status,reason,model.mixer,seed,step," &&
        grep -q '^"mixer=kda,seed=2",finished,,kda,2,4,' "$TMP/results/sw/summary.csv" &&
        [ -f "$TMP/results/sw/summary.md" ]; then
        ok sweep_grid_runs_and_skips_finished
    else
        fail sweep_grid_runs_and_skips_finished "exit $code, $rows finished rows; $(tail -2 "$TMP/out"; tail -1 "$TMP/out2")"
    fi
fi
if selected sweep_records_a_failed_run_and_goes_on; then
    rm -rf "$TMP/results"
    s=$(cfg sweepfail "$(sweep_base 'runs = { { run = "bad", ["debug.nan_at_step"] = 2 }, { run = "good" } },')")
    "$A" run "$s" >"$TMP/out" 2>&1
    code=$?
    if [ "$code" -eq 0 ] && grep -q '^bad,failed,"\{0,1\}non-finite loss at step 2 (final norm or head)' "$TMP/results/sw/summary.csv" &&
        grep -q '^good,finished,' "$TMP/results/sw/summary.csv" && grep -q "bad failed: non-finite loss at step 2" "$TMP/out"; then
        ok sweep_records_a_failed_run_and_goes_on
    else
        fail sweep_records_a_failed_run_and_goes_on "exit $code: $(cat "$TMP/results/sw/summary.csv" 2>/dev/null | tr '\n' '|')"
    fi
fi
# A restarted sweep skips only finished runs. What it knows of the others is their summary's
# status: a run killed mid-step says "running", one stopped by Ctrl-C "interrupted", a failed one
# "failed"; each is resumed, never counted as done. Deterministic, unlike the kill test.
if selected sweep_restart_resumes_every_unfinished_run; then
    rm -rf "$TMP/results"
    s=$(cfg sweeprestart "$(sweep_base 'grid = { seed = { 1, 2, 3, 4 } },')")
    "$A" run "$s" >/dev/null 2>&1
    d="$TMP/results/sw"
    before=$(cat "$d/seed=1/checkpoint.safetensors" "$d/seed=1/summary.json" | sha256sum)
    for pair in seed=2:running seed=3:interrupted seed=4:failed; do
        sed -i "s/\"status\":[[:space:]]*\"finished\"/\"status\": \"${pair#*:}\"/" "$d/${pair%%:*}/summary.json"
    done
    marked=$(grep -ho '"status":[[:space:]]*"[a-z]*"' "$d"/seed=*/summary.json | tr -d '[:space:]')
    "$A" run "$s" >"$TMP/out" 2>&1
    code=$?
    statuses=$(grep -ho '"status":[[:space:]]*"[a-z]*"' "$d"/seed=*/summary.json | tr -d '[:space:]')
    after=$(cat "$d/seed=1/checkpoint.safetensors" "$d/seed=1/summary.json" | sha256sum)
    if [ "$code" -eq 0 ] && grep -q "4 runs, 1 already done" "$TMP/out" && ! grep -q "^started seed=1$" "$TMP/out" &&
        [ "$(grep -c '^resumed seed=[234] at step 4$' "$TMP/out")" -eq 3 ] && [ "$before" = "$after" ] &&
        [ "$marked" = '"status":"finished""status":"running""status":"interrupted""status":"failed"' ] &&
        [ "$statuses" = "$(printf '"status":"finished"%.0s' 1 2 3 4)" ]; then
        ok sweep_restart_resumes_every_unfinished_run
    else
        fail sweep_restart_resumes_every_unfinished_run "exit $code; marked $marked; now $statuses; $(head -3 "$TMP/out" | tr '\n' '|')"
    fi
fi
if selected sweep_dry_run_and_plot; then
    s=$(cfg sweepgrid2 "$(sweep_base 'grid = { seed = { 1, 2, 3 } },')")
    rm -rf "$TMP/results"
    if "$A" run "$s" --dry-run >"$TMP/out" 2>&1 && grep -q "3 runs of experiment 'sw'" "$TMP/out" && grep -q "^   3  seed=3$" "$TMP/out" &&
        [ ! -e "$TMP/results/sw" ] && "$A" run "$s" --jobs 2 >"$TMP/out2" 2>&1 &&
        "$A" plot "$TMP/results/sw" >"$TMP/out2" 2>&1 && [ -s "$TMP/results/sw/plots/loss_curves.png" ] &&
        [ -s "$TMP/results/sw/plots/loss_curves.svg" ]; then
        ok sweep_dry_run_and_plot
    else
        fail sweep_dry_run_and_plot "$(cat "$TMP/out" "$TMP/out2" | tail -3)"
    fi
fi
# --dry-run says which runs' folders hold another config's results (what a real run would refuse)
if selected sweep_dry_run_marks_changed_runs; then
    rm -rf "$TMP/results"
    s=$(cfg sweepchg "$(sweep_base 'grid = { seed = { 1, 2 } },')")
    "$A" run "$s" --only 1 >/dev/null 2>&1
    "$A" run "$s" --dry-run --set train.lr=0.005 >"$TMP/out" 2>&1
    if grep -q "^   1  seed=1  \[another config in its folder: train.lr: 0.001 -> 0.005\]$" "$TMP/out" &&
        grep -q "^   2  seed=2$" "$TMP/out" && grep -q "^1 run holds results or a checkpoint of another config" "$TMP/out"; then
        ok sweep_dry_run_marks_changed_runs
    else
        fail sweep_dry_run_marks_changed_runs "$(tr '\n' '|' <"$TMP/out")"
    fi
fi
# One run of a sweep (a Slurm array task's command), the folder's state of every run, and the
# script --slurm would submit (tests/slurm_test.sh submits it to a real Slurm)
if selected sweep_only_status_and_slurm_script; then
    rm -rf "$TMP/results"
    s=$(cfg sweeponly "$(sweep_base 'grid = { seed = { 1, 2, 3 } },')")
    "$A" run "$s" --only 2 >"$TMP/out" 2>&1
    code=$?
    d="$TMP/results/sw"
    sed -i 's/"status":[[:space:]]*"finished"/"status": "running"/' "$d/seed=2/summary.json" # killed mid-step
    "$A" run "$s" --status >"$TMP/status1" 2>&1
    "$A" run "$s" --only 2 >/dev/null 2>&1
    rm -f "$d/summary.csv" "$d/summary.md" # as if the run had been copied in from another machine
    "$A" run "$s" --status >"$TMP/status2" 2>&1
    "$A" run "$s" --slurm --dry-run --partition gpu --time 1:00:00 --gpus-per-run 1 --set train.lr=0.002 >"$TMP/script" 2>&1
    if [ "$code" -eq 0 ] && grep -q "run 2 of 3 (seed=2)" "$TMP/out" && [ ! -e "$d/seed=1" ] && [ ! -e "$d/seed=3" ] &&
        grep -q "^   2  killed      seed=2 at step 4$" "$TMP/status1" && grep -q "^total: 1 killed, 2 pending$" "$TMP/status1" &&
        grep -q "^   2  finished    seed=2$" "$TMP/status2" && grep -q "^total: 1 finished, 2 pending$" "$TMP/status2" &&
        grep -q "^tables rewritten" "$TMP/status2" && grep -q '^seed=2,finished' "$d/summary.csv" && [ -s "$d/summary.md" ] &&
        grep -q "^#SBATCH --array=1,3$" "$TMP/script" && grep -q "^#SBATCH --partition=gpu$" "$TMP/script" &&
        grep -q "^#SBATCH --time=1:00:00$" "$TMP/script" && grep -q "^#SBATCH --gpus-per-task=1$" "$TMP/script" &&
        grep -qF "run '$s' --only \"\$SLURM_ARRAY_TASK_ID\" --set 'train.lr=0.002'" "$TMP/script" &&
        [ -f "$d/slurm/array.sbatch" ] && ! ls "$d"/seed=1 >/dev/null 2>&1; then
        ok sweep_only_status_and_slurm_script
    else
        fail sweep_only_status_and_slurm_script "exit $code; $(cat "$TMP/out" "$TMP/status1" "$TMP/status2" "$TMP/script" | tr '\n' '|')"
    fi
fi
# GPU placement: each job slot keeps one GPU of the list (CUDA_VISIBLE_DEVICES here, as a
# scheduler sets it; the runs themselves fail on this CPU-only build, after being placed)
if selected sweep_places_jobs_on_gpus; then
    rm -rf "$TMP/results"
    s=$(cfg sweepgpu "$(sweep_base 'grid = { seed = { 1, 2, 3 } },' | sed 's/out_dir = /device = "cuda", out_dir = /')")
    CUDA_VISIBLE_DEVICES=3,5 "$A" run "$s" >"$TMP/out" 2>&1
    if grep -q "^started seed=1 on GPU 3$" "$TMP/out" && grep -q "^started seed=2 on GPU 5$" "$TMP/out" &&
        grep -q "^started seed=3 on GPU [35]$" "$TMP/out" && grep -q "2 jobs" "$TMP/out"; then
        ok sweep_places_jobs_on_gpus
    else
        fail sweep_places_jobs_on_gpus "$(tr '\n' '|' <"$TMP/out")"
    fi
fi
# runs start seed by seed: both settings' seed 1 before either's seed 2 (numbered with the
# setting slowest; placed on one GPU so they start one at a time and fail at once on this build)
if selected sweep_starts_seed_by_seed; then
    rm -rf "$TMP/results"
    s=$(cfg sweeporder "$(sweep_base 'grid = { ["model.n_layers"] = { 1, 2 }, seed = { 1, 2 } },' |
        sed 's/out_dir = /device = "cuda", out_dir = /')")
    CUDA_VISIBLE_DEVICES=3 "$A" run "$s" >"$TMP/out" 2>&1
    order=$(sed -n 's/^started \(.*\) on GPU 3$/\1/p' "$TMP/out" | tr '\n' ' ')
    if [ "$order" = "n_layers=1,seed=1 n_layers=2,seed=1 n_layers=1,seed=2 n_layers=2,seed=2 " ] &&
        "$A" run "$s" --dry-run 2>&1 | grep -q "^ *2  n_layers=1,seed=2$"; then
        ok sweep_starts_seed_by_seed
    else
        fail sweep_starts_seed_by_seed "order: $order; $(tr '\n' '|' <"$TMP/out")"
    fi
fi
# a sweep of data-parallel runs: each job slot gets a group of train.data_parallel GPUs
if selected sweep_gives_data_parallel_runs_groups_of_gpus; then
    rm -rf "$TMP/results"
    CUDA_VISIBLE_DEVICES=3,5,7,9,11 "$A" run "$dpsweep" >"$TMP/out" 2>&1
    if grep -q "^started seed=1 on GPUs 3,5$" "$TMP/out" && grep -q "^started seed=2 on GPUs 7,9$" "$TMP/out" &&
        grep -q "2 jobs" "$TMP/out" && grep -q "this build has no NCCL" "$TMP/results/sw/logs/seed=1.log"; then
        ok sweep_gives_data_parallel_runs_groups_of_gpus
    else
        fail sweep_gives_data_parallel_runs_groups_of_gpus "$(tr '\n' '|' <"$TMP/out")"
    fi
fi
# Ctrl-C in a sweep: each run stops checkpointed; its reason says how to go on (no "interrupted
# (interrupted ...)" in summary.md), and the restarted sweep says where it resumes the run.
if selected sweep_interrupt_says_how_to_go_on; then
    rm -rf "$TMP/results"
    s=$(cfg sweepint "$(sweep_base 'runs = { { run = "long", ["train.steps"] = 1000000 } },')")
    "$A" run "$s" >"$TMP/out" 2>&1 &
    pid=$!
    d="$TMP/results/sw/long"
    for _ in $(seq 300); do [ -s "$d/checkpoint.safetensors" ] && break; sleep 0.1; done
    kill -INT $pid
    wait $pid
    code=$?
    reason=$(grep -o '"reason":[[:space:]]*"[^"]*"' "$d/summary.json" | sed 's/.*"\([^"]*\)"$/\1/')
    step=$(sed -n 's/^SIGINT at step \([0-9]*\); starting the sweep again resumes it$/\1/p' <<<"$reason")
    cp "$TMP/results/sw/summary.md" "$TMP/summary.md"
    : >"$TMP/out2"
    "$A" run "$s" >"$TMP/out2" 2>&1 & # started again, and stopped once it said where it resumes
    pid=$!
    for _ in $(seq 300); do grep -q "^resumed\|^started" "$TMP/out2" && break; sleep 0.1; done
    kill -INT $pid
    wait $pid
    if [ -n "$step" ] && grep -q '"status":[[:space:]]*"interrupted"' "$d/summary.json" &&
        grep -q "interrupted (SIGINT at step $step; starting the sweep again resumes it)" "$TMP/summary.md" &&
        ! grep -q "interrupted (interrupted" "$TMP/summary.md" && grep -q "^resumed long at step $step$" "$TMP/out2"; then
        ok sweep_interrupt_says_how_to_go_on
    else
        fail sweep_interrupt_says_how_to_go_on "exit $code; reason '$reason'; $(grep long "$TMP/summary.md"); $(head -3 "$TMP/out2" | tr '\n' '|')"
    fi
fi
# A run killed without warning (SIGKILL) after a checkpoint: its summary.json says the step that
# checkpoint resumes from (written with each checkpoint), and --status shows it killed there
if selected summary_tells_the_last_checkpoint_of_a_killed_run; then
    rm -rf "$TMP/results"
    s=$(cfg sweepkill "$(sweep_base 'runs = { { run = "long", ["train.steps"] = 1000000 } },')")
    "$A" train "$s" --only 1 >/dev/null 2>&1 &
    pid=$!
    d="$TMP/results/sw/long"
    for _ in $(seq 300); do [ -s "$d/checkpoint.safetensors" ] && break; sleep 0.1; done
    sleep 0.3
    kill -KILL $pid
    wait $pid 2>/dev/null
    step=$(grep -o '"step":[[:space:]]*[0-9]*' "$d/summary.json" | grep -o '[0-9]*$')
    "$A" run "$s" --status >"$TMP/out" 2>&1
    if [ -n "$step" ] && [ "$step" -gt 0 ] && [ $((step % 2)) -eq 0 ] &&
        grep -q '"status":[[:space:]]*"running"' "$d/summary.json" && grep -q "killed *long at step $step\b" "$TMP/out"; then
        ok summary_tells_the_last_checkpoint_of_a_killed_run
    else
        fail summary_tells_the_last_checkpoint_of_a_killed_run "step '$step'; $(tr '\n' '|' <"$TMP/out")"
    fi
fi
# --runs: only the runs named, in the order named (a device session's likely-fast runs first)
if selected sweep_runs_in_the_order_given; then
    rm -rf "$TMP/results"
    s=$(cfg sweepruns "$(sweep_base 'grid = { seed = { 1, 2, 3 } },')")
    "$A" run "$s" --runs 3,1 >"$TMP/out" 2>&1
    code=$?
    if [ $code -eq 0 ] && [ "$(grep '^started' "$TMP/out" | tr '\n' '|')" = "started seed=3|started seed=1|" ] &&
        [ "$(ls -d "$TMP/results/sw/seed="* | xargs -n1 basename | tr '\n' ' ')" = "seed=1 seed=3 " ] &&
        grep -q "^sweep 'sw': 2 of its 3 runs (--runs), 0 already done" "$TMP/out" &&
        grep -q "^\[2/2\] seed=1 finished" "$TMP/out" && grep -q "^sweep 'sw': 2 of 2 runs done" "$TMP/out"; then
        ok sweep_runs_in_the_order_given
    else
        fail sweep_runs_in_the_order_given "exit $code; $(tr '\n' '|' <"$TMP/out")"
    fi
fi
# --stop-after: at the time limit nothing more starts and the running run stops as with Ctrl-C,
# checkpointed and resumable; the exit status is 124
if selected sweep_stop_after_stops_checkpointed; then
    rm -rf "$TMP/results"
    s=$(cfg sweepstop "$(sweep_base 'runs = { { run = "long", ["train.steps"] = 1000000 }, { run = "next" } },')")
    timeout 60 "$A" run "$s" --stop-after 1 >"$TMP/out" 2>&1 # a limit not kept fails here, not hangs
    code=$?
    d="$TMP/results/sw/long"
    if [ $code -eq 124 ] && grep -q "^sweep 'sw': --stop-after 1 s reached" "$TMP/out" &&
        grep -q '"status":[[:space:]]*"interrupted"' "$d/summary.json" && [ -s "$d/checkpoint.safetensors" ] &&
        grep -q '"reason":[[:space:]]*"SIGINT at step [0-9]*; starting the sweep again resumes it"' "$d/summary.json" &&
        [ ! -e "$TMP/results/sw/next" ]; then
        ok sweep_stop_after_stops_checkpointed
    else
        fail sweep_stop_after_stops_checkpointed "exit $code; $(tr '\n' '|' <"$TMP/out")"
    fi
fi
# --status believes "starting the sweep again resumes it" only while the checkpoint is there: results
# copied back from a lent GPU without their checkpoints say that the run starts over, and it does
if selected status_says_a_run_without_its_checkpoint_starts_over; then
    rm -rf "$TMP/results"
    s=$(cfg sweepover "$(sweep_base 'runs = { { run = "long", ["train.steps"] = 1000000 } },')")
    d="$TMP/results/sw/long"
    timeout 60 "$A" run "$s" --stop-after 1 >/dev/null 2>&1
    "$A" run "$s" --status >"$TMP/out" 2>&1
    with=$(grep ' long at step' "$TMP/out")
    rm -f "$d/checkpoint.safetensors"
    "$A" run "$s" --status >"$TMP/out" 2>&1
    without=$(grep ' long at step' "$TMP/out")
    timeout 60 "$A" run "$s" --stop-after 1 >"$TMP/out2" 2>&1
    if [[ "$with" =~ interrupted\ +long\ at\ step\ [0-9]+\ \(SIGINT\ at\ step\ [0-9]+\;\ starting\ the\ sweep\ again\ resumes\ it\)$ ]] &&
        [[ "$without" =~ interrupted\ +long\ at\ step\ [0-9]+\ \(SIGINT\ at\ step\ [0-9]+\;\ no\ checkpoint\ in\ its\ folder:\ starting\ the\ sweep\ again\ starts\ it\ over\)$ ]] &&
        grep -q '^started long' "$TMP/out2" && ! grep -q '^resumed' "$TMP/out2"; then
        ok status_says_a_run_without_its_checkpoint_starts_over
    else
        fail status_says_a_run_without_its_checkpoint_starts_over "with: '$with'; without: '$without'; $(tr '\n' '|' <"$TMP/out2")"
    fi
fi
# The header names each layer's mixer in a hybrid; with --out, the refusal's hint names --out
if selected train_header_names_hybrid_layers; then
    rm -rf "$TMP/results"
    h=$(cfg hybrid "return { out_dir = '$TMP/results', model = { d_model = 32, n_layers = 4, n_heads = 2,
      hybrid = { ratio = '3:1', linear = 'kda' } }, train = { steps = 1, batch_size = 2, seq_len = 32, eval_every = 0 },
      data = { path = '$TINY', split_block = 1024 }, eval = { max_batches = 1 } }")
    "$A" train "$h" >"$TMP/out" 2>&1
    if grep -q "parameters, 4 layers (3 kda, 1 mla), 1 step of" "$TMP/out"; then
        ok train_header_names_hybrid_layers
    else
        fail train_header_names_hybrid_layers "$(grep training "$TMP/out")"
    fi
fi
if selected train_out_hint_names_out; then
    rm -rf "$TMP/results"
    "$A" train "$good" --out "$TMP/results/mine" --set train.steps=1 >/dev/null 2>&1
    "$A" train "$good" --out "$TMP/results/mine" --set train.steps=1 >"$TMP/out" 2>"$TMP/err"
    if [ $? -eq 1 ] && grep -q "already holds a run (status: finished); --resume continues it, --overwrite replaces it, another --out DIR starts another$" "$TMP/err"; then
        ok train_out_hint_names_out
    else
        fail train_out_hint_names_out "$(cat "$TMP/err")"
    fi
fi
if selected plot_mqar_width_panels; then
    # lengths and pair counts varied together, as configs/repro/mqar.lua does: one panel each,
    # and gnuplot finds every series it is given; the heads set by the width and the batch by the
    # length (Zoology's grid) name no series of their own: one line per mixer
    rm -rf "$TMP/results"
    cat >"$TMP/mqarplot.lua" <<EOF2
local runs = {}
for _, case in ipairs({ { 32, 2, 2 }, { 64, 4, 3 } }) do
  for _, width in ipairs({ 16, 32 }) do
    for _, mixer in ipairs({ "softmax", "linear" }) do
      runs[#runs + 1] = { ["train.seq_len"] = case[1], ["mqar.num_kv_pairs"] = case[2], ["train.batch_size"] = case[3],
                          ["model.d_model"] = width, ["model.n_heads"] = width // 8, ["model.mixer"] = mixer }
    end
  end
end
return {
  experiment = "mq",
  base = { out_dir = "$TMP/results", task = "mqar", model = { n_layers = 1 },
           train = { steps = 2, log_every = 1, eval_every = 0, checkpoint_every = 0 },
           eval = { examples = 8 } },
  runs = runs,
}
EOF2
    if "$A" run "$TMP/mqarplot.lua" --jobs 2 >"$TMP/out" 2>&1 && "$A" plot "$TMP/results/mq" >"$TMP/out2" 2>&1 &&
        [ -s "$TMP/results/mq/plots/mqar_accuracy_vs_width.png" ] && ! grep -qi "cannot find" "$TMP/out2" &&
        [ "$(ls "$TMP/results/mq/plots/data/" | grep '^mqar_T' | sort | tr '\n' ' ')" = \
          "mqar_T32_P2_mixer=linear.dat mqar_T32_P2_mixer=softmax.dat mqar_T64_P4_mixer=linear.dat mqar_T64_P4_mixer=softmax.dat " ]; then
        ok plot_mqar_width_panels
    else
        fail plot_mqar_width_panels "$(tail -n 3 "$TMP/out" "$TMP/out2"; ls "$TMP/results/mq/plots/data/")"
    fi
fi
# ---- figures: a setting's seeds averaged, numbers in order, a final-metric figure, legends outside ----
# a figure's command line, kept in plots/data/<figure>.cmd: one variable of it
figure_var() { grep -o "$2='\\\\''[^']*'\\\\''" "$1" | sed "s/^$2='\\\\''//; s/'\\\\''$//"; }
# plot_sweep NAME SWEEP: the sweep (sweep_base SWEEP) run afresh and plotted; returns plot's status
plot_sweep() {
    rm -rf "$TMP/results"
    "$A" run "$(cfg "$1" "$(sweep_base "$2")")" --jobs 2 >"$TMP/out" 2>&1
    "$A" plot "$TMP/results/sw" >"$TMP/out2" 2>&1
}
# val_loss RUN: the run's final validation loss, from its summary.json
val_loss() { grep -o '"val_loss":[[:space:]]*[-0-9.e+]*' "$TMP/results/sw/$1/summary.json" | grep -o '[-0-9.e+]*$'; }
if selected plot_loss_curves_average_the_seeds_of_a_setting; then
    plot_sweep plotseeds 'grid = { ["model.mixer"] = { "softmax", "kda" }, seed = { 1, 2 } },'
    code=$?
    data="$TMP/results/sw/plots/data"
    # the expected kda curve from the runs' own logs: at each step the mean, min and max of seeds 1 and 2
    step_losses() { grep -o '"step":[0-9]*\|"loss":[^,}]*' "$1" | cut -d: -f2 | paste - -; }
    want=$(join <(step_losses "$TMP/results/sw/mixer=kda,seed=1/metrics.jsonl") <(step_losses "$TMP/results/sw/mixer=kda,seed=2/metrics.jsonl") |
        awk '{ lo = $2 < $3 ? $2 : $3; hi = $2 < $3 ? $3 : $2; print $1, ($2 + $3) / 2, lo, hi, 2 }')
    got=$(grep -v '^#' "$data/loss_mixer=kda.dat" 2>/dev/null)
    same=$(paste <(echo "$want") <(echo "$got") | awk 'NF != 10 { bad = 1 } { for (i = 1; i <= 5; i++) { d = $i - $(i + 5); if (d < 0) d = -d; if (d > 1e-6 * (1 + ($i < 0 ? -$i : $i))) bad = 1 } }
        END { print (NR == 4 && !bad) ? "yes" : "no" }')
    titles=$(figure_var "$data/loss_curves.cmd" titles 2>/dev/null)
    if [ "$code" -eq 0 ] && [ "$(ls "$data" | grep -c '^loss_.*\.dat$')" -eq 2 ] && [ "$same" = yes ] &&
        [ "$titles" = '"mixer=kda" "mixer=softmax"' ] && grep -q 'using 1:3:4 with filledcurves' plots/loss_curves.gp &&
        awk '!/^#/ && $3 > $4 { bad = 1 } END { exit bad }' "$data/loss_mixer=softmax.dat"; then
        ok plot_loss_curves_average_the_seeds_of_a_setting
    else
        fail plot_loss_curves_average_the_seeds_of_a_setting "exit $code; series: $(ls "$data" | grep '^loss_' | tr '\n' ' '); titles $titles; want $(echo $want) got $(echo $got)"
    fi
fi
# a long title's bracketed explanation goes on a second line (centred over the plot, a long one ran
# off the canvas's left edge); a short one stays whole
if selected plot_long_title_wraps_its_brackets; then
    got=$(gnuplot -e "fmt = 'svg'; out = '$TMP/wrap'; load 'plots/common.gp'" \
        -e 'print wrapped("an-experiment-with-a-long-name: mqar accuracy against sequence length (mean over seeds)")' \
        -e 'print wrapped("sw: training loss (mean)")' 2>&1)
    want=$'an-experiment-with-a-long-name: mqar accuracy against sequence length\n(mean over seeds)\nsw: training loss (mean)'
    if [ "$got" = "$want" ]; then
        ok plot_long_title_wraps_its_brackets
    else
        fail plot_long_title_wraps_its_brackets "got: $got"
    fi
fi
if selected plot_sorts_numbers_by_value; then
    plot_sweep plotsort 'grid = { ["model.d_model"] = { 32, 8, 16 }, ["model.hybrid.ratio"] = { "1:0", "3:1", "0:1", "1:1" } },'
    code=$?
    data="$TMP/results/sw/plots/data"
    want=""
    for d in 8 16 32; do for r in 0:1 1:1 3:1 1:0; do want="$want${want:+ }\"d_model=$d,ratio=$r\""; done; done
    titles=$(figure_var "$data/loss_curves.cmd" titles 2>/dev/null)
    rows=$(grep -v '^#' "$data/final_lm_val_loss.dat" 2>/dev/null | cut -d'"' -f2 | sed 's/.*/"&"/' | paste -sd' ')
    ratios=$(figure_var "$data/perplexity_vs_ratio.cmd" ratios 2>/dev/null)
    if [ "$code" -eq 0 ] && [ "$titles" = "$want" ] && [ "$rows" = "$want" ] && [ "$ratios" = '"0:1" "1:1" "3:1" "1:0"' ]; then
        ok plot_sorts_numbers_by_value
    else
        fail plot_sorts_numbers_by_value "exit $code; loss curves: $titles; final rows: $rows; ratios: $ratios"
    fi
fi
# the ratio figure adds a panel of the ratios the ones before them squash: a 0:1 run at perplexity
# 1000 beside hybrids at 5.0 to 5.2 gets one from 1:1 on; at 5.3 it squashes nothing
if selected plot_ratio_figure_zooms_past_a_squashing_ratio; then
    plot_sweep plotzoom 'grid = { ["model.hybrid.ratio"] = { "0:1", "1:1", "3:1", "1:0" } },'
    code=$?
    set_ppl() { sed -i "s/\"val_perplexity\":[[:space:]]*[0-9.e+-]*/\"val_perplexity\": $2/" "$TMP/results/sw/ratio=$1/summary.json"; }
    zoom_of() { grep -o "zoom=[-0-9]*" "$TMP/results/sw/plots/data/perplexity_vs_ratio.cmd"; }
    set_ppl 0:1 1000 && set_ppl 1:1 5.0 && set_ppl 3:1 5.1 && set_ppl 1:0 5.2 &&
        "$A" plot "$TMP/results/sw" >"$TMP/out2" 2>&1 && zoomed=$(zoom_of) &&
        set_ppl 0:1 5.3 && "$A" plot "$TMP/results/sw" >>"$TMP/out2" 2>&1 && flat=$(zoom_of) || code=1
    if [ "$code" -eq 0 ] && [ "$zoomed" = zoom=1 ] && [ "$flat" = zoom=-1 ] &&
        [ -s "$TMP/results/sw/plots/perplexity_vs_ratio.png" ] && [ -s "$TMP/results/sw/plots/perplexity_vs_ratio.svg" ]; then
        ok plot_ratio_figure_zooms_past_a_squashing_ratio
    else
        fail plot_ratio_figure_zooms_past_a_squashing_ratio "exit $code; $zoomed / $flat; $(tail -3 "$TMP/out2")"
    fi
fi
if selected plot_final_metric_for_every_sweep; then
    # lm: the validation loss of each setting, the mean over its seeds
    plot_sweep plotfinal 'grid = { ["model.mixer"] = { "softmax", "kda" }, seed = { 1, 2 } },'
    code=$?
    d="$TMP/results/sw"
    want=$(awk -v a="$(val_loss mixer=softmax,seed=1)" -v b="$(val_loss mixer=softmax,seed=2)" 'BEGIN { printf "%.6f", (a + b) / 2 }')
    got=$(grep '"mixer=softmax"' "$d/plots/data/final_lm_val_loss.dat" 2>/dev/null | awk '{ printf "%.6f %s %s %s", $3, $6, $7, $8 }')
    lm_ok=no
    [ -s "$d/plots/lm_final_val_loss.png" ] && [ -s "$d/plots/lm_final_val_loss.svg" ] && [ "$got" = "$want 2 2 0" ] && lm_ok=yes
    # synthetic tasks: their accuracy, and the chance line at 1 / the answers (V = 40: mqar's
    # values are [20, 40), palindrome's symbols [2, 40), stack's symbols [3, 40) and EMPTY)
    plot_sweep plotchance 'runs = { { task = "palindrome" }, { task = "stack" }, { task = "mqar", ["mqar.num_kv_pairs"] = 2 } },
  grid = { ["model.vocab_size"] = { 40 } },' || code=1
    chances=""
    for t in mqar:20 palindrome:38 stack:38; do
        f="$d/plots/data/final_${t%%:*}_val_accuracy.dat"
        [ -s "$d/plots/${t%%:*}_final_val_accuracy.png" ] && [ -s "$d/plots/${t%%:*}_final_val_accuracy.svg" ] &&
            grep -v '^#' "$f" | awk -v n="${t#*:}" '{ d = $NF - 1 / n; if (d < 0) d = -d } END { exit !(NR == 1 && d < 1e-9) }' &&
            [ "$(figure_var "$d/plots/data/${t%%:*}_final_val_accuracy.cmd" chance_title)" = "chance: 1/${t#*:}" ] &&
            chances="$chances ${t%%:*}"
    done
    if [ "$code" -eq 0 ] && [ "$lm_ok" = yes ] && [ "$chances" = " mqar palindrome stack" ]; then
        ok plot_final_metric_for_every_sweep
    else
        fail plot_final_metric_for_every_sweep "exit $code; lm: want '$want 2 2 0', got '$got'; chance lines right for:$chances; $(ls "$d/plots" | tr '\n' ' ')"
    fi
fi
if selected plot_final_metric_marks_the_chosen_value; then
    plot_sweep plotchosen 'grid = { ["model.mixer"] = { "softmax", "kda" }, ["train.lr"] = { 1e-3, 1e-2 }, seed = { 1, 2 } },
  select = { metric = "val_loss", goal = "min", over = { "train.lr" } },'
    code=$?
    d="$TMP/results/sw"
    # per mixer, the chosen rate from selected.csv; the other one's mean from the runs' summaries, a
    # grey mark numbered by its place among the rates some mixer did not choose
    other() { [ "$(grep "^$1," "$d/selected.csv" | cut -d, -f2)" = 0.001 ] && echo 0.01 || echo 0.001; }
    others=$( (other kda; other softmax) | sort -n | uniq)
    bad=""
    for m in kda softmax; do
        chosen=$(grep "^$m," "$d/selected.csv" | cut -d, -f2)
        o=$(other $m)
        row=$(grep -v '^#' "$d/plots/data/final_lm_val_loss.dat" 2>/dev/null | grep "\"mixer=$m (lr=$chosen)\"" | cut -d' ' -f1)
        want=$(awk -v a="$(val_loss "mixer=$m,seed=1,lr=$o")" -v b="$(val_loss "mixer=$m,seed=2,lr=$o")" 'BEGIN { printf "%.6f", (a + b) / 2 }')
        got=$(grep -v '^#' "$d/plots/data/final_lm_val_loss_candidates.dat" 2>/dev/null | awk -v r="$row" '$1 == r { printf "%.6f/%s ", $2, $3 }')
        n=$(echo "$others" | grep -nx "$o" | cut -d: -f1)
        { [ -n "$row" ] && [ "$got" = "$want/$n " ] && grep -qF "\"mixer=$m (lr=$chosen)\"" "$d/plots/data/loss_curves.cmd"; } ||
            bad="$bad $m(chosen $chosen, row '$row', others '$got', want '$want/$n')"
    done
    cands=$(figure_var "$d/plots/data/lm_final_val_loss.cmd" candidates 2>/dev/null)
    if [ "$code" -eq 0 ] && [ -z "$bad" ] && [ "$cands" = "$(echo "$others" | sed 's/.*/"also tried: lr=&"/' | paste -sd' ')" ]; then
        ok plot_final_metric_marks_the_chosen_value
    else
        fail plot_final_metric_marks_the_chosen_value "exit $code;$bad; candidates $cands"
    fi
fi
# every figure's legend is outside its plot: at the right, or below it (with room made) when the
# names are many or long
if selected plot_legends_stay_outside; then
    plot_sweep plotkey 'runs = { { ["model.mixer"] = "softmax" }, { ["model.hybrid.ratio"] = "1:1", ["model.n_layers"] = 2 } },
  grid = { ["eval.max_length_factor"] = { 2 }, seed = { 1, 2 } },'
    code=$?
    d="$TMP/results/sw/plots"
    bad=""
    n=0
    for c in "$d"/data/*.cmd; do
        n=$((n + 1))
        case "$(figure_var "$c" keypos)" in outside\ right*|outside\ below*) ;; *) bad="$bad $(basename "$c")" ;; esac
    done
    # 12 settings with long names ("d_model=16,lr_schedule=linear,ratio=1:1"): below in rows, the figure
    # taller; max_length_factor, the same in every run, is left out of the names
    plot_sweep plotkey2 'grid = { ["model.d_model"] = { 32, 16 }, ["model.hybrid.ratio"] = { "1:0", "0:1", "1:1" },
  ["train.lr_schedule"] = { "cosine", "linear" }, ["eval.max_length_factor"] = { 1 } },' || code=1
    titles=$(figure_var "$d/data/loss_curves.cmd" titles)
    case "$titles" in *max_length_factor*|"") code=1; bad="$bad titles: $titles" ;; esac
    key=$(figure_var "$d/data/loss_curves.cmd" keypos)
    rows=$(grep -o "keyrows=[0-9]*" "$d/data/loss_curves.cmd" | cut -d= -f2)
    height=$(od -An -tu1 -j20 -N4 "$d/loss_curves.png" 2>/dev/null | awk '{ print $1 * 16777216 + $2 * 65536 + $3 * 256 + $4 }')
    if [ "$code" -eq 0 ] && [ "$n" -eq 3 ] && [ -z "$bad" ] && [[ "$key" == "outside below"* ]] && [ "${rows:-0}" -gt 0 ] &&
        [ "$height" -eq $((560 + 18 * rows)) ] && grep -q '^eval "set key " . keypos' plots/common.gp &&
        ! grep -n '^ *set key' plots/*.gp | grep -v 'plots/common.gp\|plots/panels.gp' | grep -q .; then
        ok plot_legends_stay_outside
    else
        fail plot_legends_stay_outside "exit $code; $n figures, legend not outside in:$bad; long names: '$key', $rows rows, height $height"
    fi
fi
# a legend below the plot counts the chance line among its rows: MQAR at two lengths, settings
# named long enough for one entry a row, so the rows are the settings and the chance line
if selected plot_legend_rows_count_the_chance_line; then
    plot_sweep plotchance 'runs = { { task = "mqar", ["mqar.num_kv_pairs"] = 2, ["model.vocab_size"] = 64 } },
  grid = { ["train.seq_len"] = { 16, 32 }, ["train.warmup_steps"] = { 1, 2 }, ["train.lr_schedule"] = { "cosine", "linear" } },'
    code=$?
    c="$TMP/results/sw/plots/data/mqar_accuracy_vs_length.cmd"
    key=$(figure_var "$c" keypos 2>/dev/null)
    rows=$(grep -o "keyrows=[0-9]*" "$c" 2>/dev/null | cut -d= -f2)
    if [ "$code" -eq 0 ] && [[ "$key" == "outside below"*"maxcols 1" ]] && [ "$rows" = 5 ] && grep -q "chance=0.03125;" "$c"; then
        ok plot_legend_rows_count_the_chance_line
    else
        fail plot_legend_rows_count_the_chance_line "exit $code; keypos '$key', $rows rows (want 5: 4 settings and chance); $(tail -2 "$TMP/out2")"
    fi
fi
# a run's name does not depend on Lua's table order, which changes from one process to the next
if selected sweep_run_names_are_stable; then
    s=$(cfg sweepnames "$(sweep_base 'runs = { { ["model.mixer"] = "kda", ["train.lr"] = 0.01, seed = 3, ["model.d_model"] = 16 } },')")
    names=$(for i in 1 2 3 4 5 6 7 8; do "$A" run "$s" --dry-run 2>&1 | tail -1; done | sort -u)
    if [ "$names" = "   1  d_model=16,mixer=kda,seed=3,lr=0.01" ]; then
        ok sweep_run_names_are_stable
    else
        fail sweep_run_names_are_stable "names: $(echo $names)"
    fi
fi
# ---- results are reused only for the same config: a restarted sweep compares each run's folder
# with its config now (summary.json's config_fingerprint, then config.lua field by field) ----
digest_runs() { cat "$1"/*/summary.json "$1"/*/checkpoint.safetensors 2>/dev/null | sha256sum; }
# one line on stderr holding PATTERN, exit 1, nothing on stdout
refused_with() { # refused_with CODE PATTERN: the last command's exit code, $TMP/out and $TMP/err
    [ "$1" -eq 1 ] && [ "$(wc -l <"$TMP/err")" -eq 1 ] && grep -qF -- "$2" "$TMP/err" && [ ! -s "$TMP/out" ]
}
if selected sweep_refuses_results_of_another_config; then
    rm -rf "$TMP/results"
    s=$(cfg sweepchanged "$(sweep_base 'grid = { seed = { 1, 2 } },')")
    sed 's/steps = 4,/steps = 6,/' "$s" >"$TMP/sweepchanged6.lua"
    "$A" run "$s" >/dev/null 2>&1
    before=$(digest_runs "$TMP/results/sw")
    "$A" run "$TMP/sweepchanged6.lua" >"$TMP/out" 2>"$TMP/err"
    code1=$?
    refused_with $code1 "attnlab: sweep 'sw': 2 finished runs were trained with another config: seed=1 seed=2 (train.steps: 4 -> 6); --rerun-changed runs them again, --keep-changed keeps their results, marked stale"
    steps=$?
    "$A" run "$s" --set model.n_layers=2 >"$TMP/out" 2>"$TMP/err"
    refused_with $? "(model.n_layers: 1 -> 2)"
    layers=$?
    # fields that do not change results do not make results stale (cuda.* on the CPU among them)
    "$A" run "$s" --set threads=1 --set train.eval_every=2 --set train.checkpoint_every=1 --set cuda.matmul=fp32 >"$TMP/out2" 2>&1
    code3=$?
    if [ "$steps" -eq 0 ] && [ "$layers" -eq 0 ] && [ "$before" = "$(digest_runs "$TMP/results/sw")" ] &&
        [ "$code3" -eq 0 ] && grep -q "2 runs, 2 already done" "$TMP/out2"; then
        ok sweep_refuses_results_of_another_config
    else
        fail sweep_refuses_results_of_another_config "exit $code1, then $code3; $(cat "$TMP/err"; head -2 "$TMP/out" "$TMP/out2" | tr '\n' '|')"
    fi
fi
# --rerun-changed runs them again from step 0 (never resumed from a checkpoint of the old config)
if selected sweep_rerun_changed_runs_them_again; then
    rm -rf "$TMP/results"
    s=$(cfg sweepchanged "$(sweep_base 'grid = { seed = { 1, 2 } },')")
    sed 's/steps = 4,/steps = 6,/' "$s" >"$TMP/sweepchanged6.lua"
    "$A" run "$s" >/dev/null 2>&1
    "$A" run "$TMP/sweepchanged6.lua" --rerun-changed >"$TMP/out" 2>&1
    code=$?
    d="$TMP/results/sw"
    # the rerun's losses are those of a fresh sweep of 6 steps
    sed 's/experiment = "sw"/experiment = "fresh"/' "$TMP/sweepchanged6.lua" >"$TMP/sweepfresh.lua"
    "$A" run "$TMP/sweepfresh.lua" >/dev/null 2>&1
    if [ "$code" -eq 0 ] && grep -q "^sweep 'sw': running 2 runs of another config again from step 0: seed=1 seed=2 (train.steps: 4 -> 6)$" "$TMP/out" &&
        grep -q "2 runs, 0 already done" "$TMP/out" && grep -q '^seed=1,finished,,1,6,' "$d/summary.csv" &&
        grep -q '^seed=2,finished,,2,6,' "$d/summary.csv" && grep -q '"steps":[[:space:]]*6' "$d/seed=2/summary.json" &&
        [ -n "$(losses "$d/seed=1/metrics.jsonl")" ] && [ "$(losses "$d/seed=1/metrics.jsonl")" = "$(losses "$TMP/results/fresh/seed=1/metrics.jsonl")" ] &&
        "$A" run "$TMP/sweepchanged6.lua" >"$TMP/out2" 2>&1 && grep -q "2 runs, 2 already done" "$TMP/out2"; then
        ok sweep_rerun_changed_runs_them_again
    else
        fail sweep_rerun_changed_runs_them_again "exit $code; $(head -3 "$TMP/out" | tr '\n' '|') $(cat "$d/summary.csv" 2>/dev/null | tr '\n' '|')"
    fi
fi
# --keep-changed keeps their results, marked stale in summary.csv, summary.md and selected.csv
if selected sweep_keep_changed_marks_them_stale; then
    rm -rf "$TMP/results"
    s=$(cfg sweepkeep "$(sweep_base 'grid = { ["train.lr"] = { 1e-3, 3e-3 } },
  select = { metric = "val_loss", goal = "min", over = { "train.lr" } },')")
    sed 's/steps = 4,/steps = 6,/' "$s" >"$TMP/sweepkeep6.lua"
    "$A" run "$s" >/dev/null 2>&1
    d="$TMP/results/sw"
    before=$(digest_runs "$d")
    "$A" run "$TMP/sweepkeep6.lua" --keep-changed >"$TMP/out" 2>&1
    code=$?
    if [ "$code" -eq 0 ] && [ "$before" = "$(digest_runs "$d")" ] &&
        grep -q "^sweep 'sw': keeping 2 finished runs of another config, marked stale in the summaries: lr=0.001 lr=0.003 (train.steps: 4 -> 6)$" "$TMP/out" &&
        grep -q "2 runs, 2 already done" "$TMP/out" && head -1 "$d/summary.csv" | grep -q ',learned,stale$' &&
        grep -q '^lr=0.001,finished,,0.001,4,.*,train.steps: 4 -> 6$' "$d/summary.csv" &&
        grep -q '^| lr=0.003 | finished (.*stale: train.steps: 4 -> 6) |' "$d/summary.md" &&
        grep -q '^0.00[13],.*stale: 1 run of another config,lr=0.00[13]$' "$d/selected.csv"; then
        ok sweep_keep_changed_marks_them_stale
    else
        fail sweep_keep_changed_marks_them_stale "exit $code; $(head -2 "$TMP/out" | tr '\n' '|') $(cat "$d/summary.csv" "$d/selected.csv" 2>/dev/null | tr '\n' '|')"
    fi
fi
# a run stopped with a checkpoint of another config is never resumed into this one: refused, and
# with --keep-changed (or --rerun-changed) started again from step 0
if selected sweep_never_resumes_a_checkpoint_of_another_config; then
    rm -rf "$TMP/results"
    s=$(cfg sweepchanged "$(sweep_base 'grid = { seed = { 1, 2 } },')")
    "$A" run "$s" >/dev/null 2>&1
    d="$TMP/results/sw"
    sed -i 's/"status":[[:space:]]*"finished"/"status": "interrupted"/' "$d/seed=2/summary.json"
    "$A" run "$s" --set train.lr=0.003 >"$TMP/out" 2>"$TMP/err"
    refused_with $? "sweep 'sw': 2 runs hold results or a checkpoint of another config (1 finished, 1 to resume): seed=1 seed=2 (train.lr: 0.001 -> 0.003)"
    refused=$?
    "$A" run "$s" --set train.lr=0.003 --keep-changed >"$TMP/out2" 2>&1
    code=$?
    if [ "$refused" -eq 0 ] && [ "$code" -eq 0 ] && grep -q "running 1 run of another config again from step 0: seed=2 (train.lr: 0.001 -> 0.003)" "$TMP/out2" &&
        grep -q "keeping 1 finished run of another config, marked stale in the summaries: seed=1 (train.lr: 0.001 -> 0.003)" "$TMP/out2" &&
        [ "$(grep -c "^training 'sw/seed=2'" "$d/logs/seed=2.log")" -eq 2 ] && ! grep -q "^resuming" "$d/logs/seed=2.log" &&
        grep -q '^seed=2,finished,' "$d/summary.csv" && grep -q 'lr = 0.003' "$d/seed=2/config.lua"; then
        ok sweep_never_resumes_a_checkpoint_of_another_config
    else
        fail sweep_never_resumes_a_checkpoint_of_another_config "exit $code; $(cat "$TMP/err"; head -3 "$TMP/out2" | tr '\n' '|')"
    fi
fi
# runs written before fingerprints are compared through their config.lua
if selected sweep_compares_runs_without_a_fingerprint_by_their_config; then
    rm -rf "$TMP/results"
    s=$(cfg sweepold "$(sweep_base 'grid = { seed = { 1, 2 } },')")
    "$A" run "$s" >/dev/null 2>&1
    sed -i '/"config_fingerprint"/d' "$TMP/results/sw"/seed=*/summary.json
    "$A" run "$s" >"$TMP/out2" 2>&1
    code=$?
    "$A" run "$s" --set model.d_model=48 >"$TMP/out" 2>"$TMP/err"
    refused_with $? "seed=1 seed=2 (model.d_model: 32 -> 48)"
    refused=$?
    if [ "$code" -eq 0 ] && grep -q "2 runs, 2 already done" "$TMP/out2" && [ "$refused" -eq 0 ]; then
        ok sweep_compares_runs_without_a_fingerprint_by_their_config
    else
        fail sweep_compares_runs_without_a_fingerprint_by_their_config "exit $code; $(cat "$TMP/err" "$TMP/out2" | head -3 | tr '\n' '|')"
    fi
fi
expect_error sweep_rerun_and_keep_changed_contradict 2 "--rerun-changed and --keep-changed contradict each other" \
    "$A" run "$good" --rerun-changed --keep-changed
# train --resume: a changed model, learning rate, ... refuses with one line naming the fields;
# train.steps (and train.log_every) may change, with a note, recorded in summary.json
if selected train_resume_refuses_a_changed_config; then
    rm -rf "$TMP/results"
    "$A" train "$good" --stop-at 3 >/dev/null 2>&1
    d="$TMP/results/good/main"
    before=$(cat "$d/checkpoint.safetensors" "$d/summary.json" | sha256sum)
    "$A" train "$good" --resume --set model.d_model=48 >"$TMP/out" 2>"$TMP/err"
    refused_with $? "attnlab: cannot resume $d: its checkpoint was trained with another config (model.d_model: 32 -> 48); only train.steps, train.log_every and fields that do not change results (threads, train.eval_every, train.checkpoint_every) may change on resume; --overwrite starts it again, --set run=NAME starts another beside it"
    model=$?
    "$A" train "$good" --resume --set train.lr=0.01 --set seed=2 >"$TMP/out" 2>"$TMP/err"
    refused_with $? "another config (seed: 1 -> 2, train.lr: 0.001 -> 0.01)"
    lr=$?
    if [ "$model" -eq 0 ] && [ "$lr" -eq 0 ] && [ "$before" = "$(cat "$d/checkpoint.safetensors" "$d/summary.json" | sha256sum)" ]; then
        ok train_resume_refuses_a_changed_config
    else
        fail train_resume_refuses_a_changed_config "$(cat "$TMP/err" "$TMP/out" | head -3 | tr '\n' '|')"
    fi
fi
if selected train_resume_to_more_steps_says_so; then
    rm -rf "$TMP/results"
    "$A" train "$good" >/dev/null 2>&1
    d="$TMP/results/good/main"
    "$A" train "$good" --resume --set train.steps=8 --set train.eval_every=4 >"$TMP/out" 2>"$TMP/err"
    code=$?
    if [ "$code" -eq 0 ] && [ ! -s "$TMP/err" ] &&
        grep -q "^note: resuming with train.steps: 6 -> 8: this may change on resume, and summary.json records it (resumed_with_changes)" "$TMP/out" &&
        grep -q "^note: resuming with train.eval_every: 3 -> 4 (does not change the results)$" "$TMP/out" &&
        grep -q "continuing from step 6" "$TMP/out" && grep -q '"step":[[:space:]]*8,' "$d/summary.json" &&
        grep -q '"resumed_with_changes":[[:space:]]*\["train.steps: 6 -> 8 (at step 6)"\]' "$d/summary.json" &&
        "$A" train "$good" --resume --set train.steps=8 >"$TMP/out2" 2>&1 && grep -q "finished already (step 8 of 8)" "$TMP/out2" &&
        ! "$A" train "$good" --resume --set train.steps=5 2>"$TMP/err" >/dev/null &&
        grep -q "cannot resume $d: train.steps = 5 is below its checkpoint's step 8" "$TMP/err"; then
        ok train_resume_to_more_steps_says_so
    else
        fail train_resume_to_more_steps_says_so "exit $code; $(cat "$TMP/err"; head -3 "$TMP/out" | tr '\n' '|')"
    fi
fi
# ---- a run that did not learn is marked, never ranked: an MQAR model after 2 steps answers at
# chance; a small lm model trained 150 steps is well below the unigram entropy of the text ----
if selected sweep_marks_runs_that_did_not_learn; then
    rm -rf "$TMP/results"
    s=$(cfg sweeplearn "$(sweep_base 'runs = {
    { run = "mqar", task = "mqar", ["train.steps"] = 2, ["mqar.num_kv_pairs"] = 4, ["eval.examples"] = 64 },
    { run = "lm", ["train.steps"] = 150, ["train.batch_size"] = 8, ["train.lr"] = 1e-2, ["train.warmup_steps"] = 5,
      ["train.log_every"] = 50, ["train.checkpoint_every"] = 0, ["eval.max_batches"] = 2 } },')")
    "$A" run "$s" >"$TMP/out" 2>&1
    code=$?
    d="$TMP/results/sw"
    if [ "$code" -eq 0 ] && grep -q '"learned":[[:space:]]*false' "$d/mqar/summary.json" &&
        grep -q '"learned_reason":[[:space:]]*"val accuracy [0-9.]* is not above 0.01562, the larger of 2 x the chance of a uniform guess over 128 answers and 0.01"' "$d/mqar/summary.json" &&
        grep -q '"learned":[[:space:]]*true' "$d/lm/summary.json" &&
        grep -q '^mqar,finished,.*,no,$' "$d/summary.csv" && grep -q '^lm,finished,.*,yes,$' "$d/summary.csv" &&
        grep -q '^| mqar | finished (not learned) |' "$d/summary.md" && grep -q '^| lm | finished |' "$d/summary.md" &&
        grep -q "mqar finished: .* (not learned)$" "$TMP/out" && cat "$d/logs/mqar.log" | grep -q "^not learned: val accuracy" &&
        # the tables judge a run by the rule of the code that writes them, not by its summary's verdict
        sed -i 's/"learned":[[:space:]]*false/"learned": true/' "$d/mqar/summary.json" &&
        "$A" run "$s" --status >/dev/null 2>&1 && grep -q '^| mqar | finished (not learned) |' "$d/summary.md"; then
        ok sweep_marks_runs_that_did_not_learn
    else
        fail sweep_marks_runs_that_did_not_learn "exit $code; $(grep -h learned "$d"/*/summary.json | tr '\n' '|') $(cat "$d/summary.csv" 2>/dev/null | tr '\n' '|')"
    fi
fi
# ---- every shipped config and preset checks: a dry run of each (helpers that return a function
# are what the others require, not configs), on a stand-in for Brown (600 KB of the test text) ----
if selected every_shipped_config_checks; then
    big="$TMP/brown_size.txt"
    : >"$big"
    while [ "$(stat -c %s "$big")" -lt 600000 ]; do cat "$TINY" >>"$big"; done
    bad=""
    n=0
    for f in $(find configs -name '*.lua' | sort); do
        grep -q '^return function' "$f" && continue
        n=$((n + 1))
        "$A" run "$f" --dry-run --set data.path="$big" >"$TMP/out" 2>&1 || bad="$bad $f: $(head -1 "$TMP/out");"
    done
    if [ -z "$bad" ] && [ "$n" -ge 30 ]; then
        ok every_shipped_config_checks
        echo "     ($n configs)"
    else
        fail every_shipped_config_checks "$n configs;$bad"
    fi
fi
# ---- select: the best learning rate of each setting, as Zoology reports its points ----
SELECT_GRID='grid = { ["train.lr"] = { 1e-3, 3e-3, 1e-2 }, seed = { 1, 2 } },'
if selected sweep_select_reports_the_best_of_each_setting; then
    rm -rf "$TMP/results"
    # two settings: softmax, and kda whose every run fails at step 2
    s=$(cfg sweepselect "$(sweep_base "$SELECT_GRID"'
  runs = { { ["model.mixer"] = "softmax" }, { ["model.mixer"] = "kda", ["debug.nan_at_step"] = 2 } },
  select = { metric = "val_loss", goal = "min", over = { "train.lr" } },')")
    "$A" run "$s" --jobs 2 >"$TMP/out" 2>&1
    code=$?
    d="$TMP/results/sw"
    # the expected row from the runs' own summary.json: per lr the mean over seeds 1 and 2, the
    # lowest mean wins, the first in the sweep on a tie; 4 steps of a tiny model learn nothing,
    # and the note says so
    value() { grep -o "\"val_loss\":[[:space:]]*[-0-9.e+]*" "$d/mixer=softmax,seed=$1,lr=$2/summary.json" | grep -o '[-0-9.e+]*$'; }
    want=$(for lr in 0.001 0.003 0.01; do echo "$lr $(value 1 $lr) $(value 2 $lr)"; done |
        awk '{ m = ($2 + $3) / 2; lo = $2 < $3 ? $2 : $3; hi = $2 < $3 ? $3 : $2
               if (NR == 1 || m < best) { best = m; row = sprintf("softmax,0,%s,%.10g,%.10g,%.10g,2,2,3,0,not learned: 2 of 2 seeds", $1, m, lo, hi) } }
             END { print row }')
    got=$(grep '^softmax,' "$d/selected.csv" | cut -d, -f1-11)
    failed_row=$(grep '^kda,' "$d/selected.csv")
    lr=$(echo "$want" | cut -d, -f3)
    "$A" plot "$d" >"$TMP/out2" 2>&1
    if [ "$code" -eq 0 ] && [ -n "$got" ] && [ "$got" = "$want" ] &&
        [ "$failed_row" = 'kda,2,,,,,0,0,3,6,all 6 runs failed,' ] &&
        head -1 "$d/selected.csv" | grep -q '^model.mixer,debug.nan_at_step,train.lr,val_loss_mean,val_loss_min,val_loss_max,seeds_finished,seeds,candidates,failed_runs,note,runs$' &&
        grep -q "\"mixer=softmax,seed=1,lr=$lr mixer=softmax,seed=2,lr=$lr\"$" "$d/selected.csv" &&
        [ "$(tail -n +2 "$d/summary.csv" | wc -l)" -eq 12 ] && head -1 "$d/summary.csv" | grep -q '^run,status,reason,' &&
        grep -q '^## Selected: train.lr by the mean val_loss over seeds (min)' "$d/summary.md" &&
        grep -q "^| softmax | 0 | $lr | " "$d/summary.md" && grep -q '^| kda | 2 | - | - | - | - | 3 | all 6 runs failed |' "$d/summary.md" &&
        grep -q "2 runs (chosen by selected.json from 12)" "$TMP/out2" && [ "$(ls "$d/plots/data/" | grep -c '^loss_.*\.dat$')" -eq 1 ] &&
        grep -q "(mixer=softmax,seed=1,lr=$lr mixer=softmax,seed=2,lr=$lr)$" "$d/plots/data/loss_mixer=softmax.dat"; then
        ok sweep_select_reports_the_best_of_each_setting
    else
        fail sweep_select_reports_the_best_of_each_setting "exit $code; want '$want', got '$got'; failed row '$failed_row'; $(tail -1 "$TMP/out2")"
    fi
fi
# a selection that has chosen nothing yet (its tuning runs unfinished) is set aside: every run's
# loss curve is drawn, and the message says why
if selected plot_draws_every_run_while_the_selection_waits; then
    rm -rf "$TMP/results"
    s=$(cfg sweepwait "$(sweep_base 'grid = { ["train.lr"] = { 1e-3, 3e-3 } },
  select = { metric = "val_loss", goal = "min", over = { "train.lr" } },')")
    "$A" run "$s" >"$TMP/out" 2>&1
    code=$?
    d="$TMP/results/sw"
    # what selected.json holds while no tuning run has finished
    printf '{ "metric": "val_loss", "goal": "min", "over": ["train.lr"], "runs": [] }\n' >"$d/selected.json"
    "$A" plot "$d" >"$TMP/out2" 2>&1
    pcode=$?
    if [ "$code" -eq 0 ] && [ "$pcode" -eq 0 ] &&
        grep -q "2 runs, all drawn (selected.json has chosen none yet: no tuning run has finished)" "$TMP/out2" &&
        [ "$(ls "$d/plots/data/" | grep -c '^loss_.*\.dat$')" -eq 2 ] && [ -s "$d/plots/loss_curves.png" ]; then
        ok plot_draws_every_run_while_the_selection_waits
    else
        fail plot_draws_every_run_while_the_selection_waits "exit $code / $pcode; $(tail -2 "$TMP/out2" | tr '\n' ' ')"
    fi
fi
# a sweep that no longer selects leaves no stale selection behind
if selected sweep_without_select_removes_the_selection; then
    rm -rf "$TMP/results"
    grid='grid = { ["train.lr"] = { 1e-3, 3e-3 } },'
    s1=$(cfg sweepselect2 "$(sweep_base "$grid"' select = { metric = "val_loss", goal = "min", over = { "train.lr" } },')")
    s2=$(cfg sweepselect3 "$(sweep_base "$grid")")
    if "$A" run "$s1" >"$TMP/out" 2>&1 && [ -f "$TMP/results/sw/selected.csv" ] && [ -f "$TMP/results/sw/selected.json" ] &&
        "$A" run "$s2" >"$TMP/out" 2>&1 && grep -q "2 runs, 2 already done" "$TMP/out" &&
        [ ! -e "$TMP/results/sw/selected.csv" ] && [ ! -e "$TMP/results/sw/selected.json" ] &&
        ! grep -q "Selected" "$TMP/results/sw/summary.md"; then
        ok sweep_without_select_removes_the_selection
    else
        fail sweep_without_select_removes_the_selection "$(ls "$TMP/results/sw" | tr '\n' ' '); $(tail -1 "$TMP/out")"
    fi
fi
# select.tune_seeds: the rates are scored on seed 1 alone, and seeds 2 and 3 train only at each
# setting's chosen rate, once its seed-1 runs are done (a Slurm submission and --only wait for them)
if selected sweep_select_tune_seeds_trains_other_seeds_at_the_choice; then
    rm -rf "$TMP/results"
    s=$(cfg sweeptune "$(sweep_base 'grid = { ["train.lr"] = { 1e-3, 3e-3, 1e-2 }, seed = { 1, 2, 3 } },
  select = { metric = "val_loss", goal = "min", over = { "train.lr" }, tune_seeds = { 1 } },')")
    d="$TMP/results/sw"
    "$A" run "$s" --only 4 >"$TMP/out_only" 2>&1
    only_code=$?
    "$A" run "$s" --slurm --dry-run >"$TMP/out_slurm" 2>&1
    slurm_code=$?
    "$A" run "$s" --jobs 2 >"$TMP/out" 2>&1
    code=$?
    "$A" run "$s" --status >"$TMP/out_status" 2>&1
    value() { grep -o "\"val_loss\":[[:space:]]*[-0-9.e+]*" "$d/seed=$1,lr=$2/summary.json" | grep -o '[-0-9.e+]*$'; }
    # the choice from seed 1 alone (the first in the sweep on a tie), then its three seeds' numbers
    lr=$(for lr in 0.001 0.003 0.01; do echo "$lr $(value 1 $lr)"; done | awk 'NR == 1 || $2 < best { best = $2; lr = $1 } END { print lr }')
    want=$(echo "$(value 1 "$lr") $(value 2 "$lr") $(value 3 "$lr")" |
        awk -v lr="$lr" '{ lo = $1; hi = $1; for (i = 2; i <= 3; i++) { if ($i < lo) lo = $i; if ($i > hi) hi = $i }
                          printf "%s,%.10g,%.10g,%.10g,3,3,3,0", lr, ($1 + $2 + $3) / 3, lo, hi }')
    got=$(sed -n 2p "$d/selected.csv" | cut -d, -f1-8)
    trained=$(ls "$d"/*/summary.json 2>/dev/null | wc -l)
    not_chosen=$(grep -c '",not chosen,' "$d/summary.csv")
    if [ "$only_code" -eq 1 ] && grep -q "run 4 (seed=2,lr=0.001) waits for the tuning runs of its setting" "$TMP/out_only" &&
        [ "$slurm_code" -eq 0 ] && grep -q '^#SBATCH --array=1,2,3$' "$TMP/out_slurm" &&
        grep -q "6 runs of other seeds wait for their settings' tuning runs" "$TMP/out_slurm" &&
        [ "$code" -eq 0 ] && [ -n "$lr" ] && [ "$got" = "$want" ] && [ "$trained" -eq 5 ] && [ "$not_chosen" -eq 4 ] &&
        [ -f "$d/seed=2,lr=$lr/summary.json" ] && [ -f "$d/seed=3,lr=$lr/summary.json" ] &&
        grep -q "^total: 5 finished, 4 not chosen$" "$TMP/out_status" &&
        grep -q "sweep 'sw': 5 of 5 runs done" "$TMP/out" &&
        grep -q "scored by the mean val_loss of its runs of seed 1 (select.tune_seeds) that finished" "$d/summary.md"; then
        ok sweep_select_tune_seeds_trains_other_seeds_at_the_choice
    else
        fail sweep_select_tune_seeds_trains_other_seeds_at_the_choice "only $only_code, slurm $slurm_code, run $code; lr $lr; want '$want', got '$got'; $trained trained, $not_chosen not chosen; $(tail -1 "$TMP/out") $(tail -1 "$TMP/out_status")"
    fi
fi
select_error() { # select_error NAME PATTERN SELECT: a sweep with this select stops before any run (@: its file)
    local s
    s=$(cfg "$1" "$(sweep_base "$SELECT_GRID $3")")
    expect_error "$1" 1 "${2//@/$s}" "$A" run "$s"
}
select_error sweep_select_unknown_metric "@: field 'select.metric': unknown metric 'val_acc' (did you mean 'val_accuracy'?" \
    'select = { metric = "val_acc", goal = "max", over = { "train.lr" } },'
select_error sweep_select_metric_the_task_lacks "@: field 'select.metric': run 'max_length_factor=1,seed=1,lr=0.001' (task lm) does not report 'val_perplexity_x4'" \
    'select = { metric = "val_perplexity_x4", goal = "min", over = { "train.lr" } }, runs = { { ["eval.max_length_factor"] = 1 }, { ["eval.max_length_factor"] = 4 } },'
select_error sweep_select_over_a_field_not_in_the_grid "@: field 'select.over': 'train.weight_decay' is not set by the grid or runs" \
    'select = { metric = "val_loss", goal = "min", over = { "train.weight_decay" } },'
select_error sweep_select_over_an_unknown_field "unknown field 'train.lrr' in @ (did you mean 'train.lr'?) (in select.over)" \
    'select = { metric = "val_loss", goal = "min", over = { "train.lrr" } },'
select_error sweep_select_over_nothing "@: field 'select.over': expected a non-empty list of fields" \
    'select = { metric = "val_loss", goal = "min", over = { } },'
select_error sweep_select_over_seed "@: field 'select.over': 'seed' cannot be chosen" \
    'select = { metric = "val_loss", goal = "min", over = { "seed" } },'
select_error sweep_select_bad_goal "@: field 'select.goal': expected \"max\" or \"min\", got 'lowest'" \
    'select = { metric = "val_loss", goal = "lowest", over = { "train.lr" } },'
select_error sweep_select_tune_seeds_not_in_the_grid "@: field 'select.tune_seeds': seed 4 is not the seed of any run (the runs' seeds: 1, 2)" \
    'select = { metric = "val_loss", goal = "min", over = { "train.lr" }, tune_seeds = { 4 } },'
select_error sweep_select_tune_seeds_not_integers "@: field 'select.tune_seeds': item 1: expected a seed (an integer from 0), got 1.5" \
    'select = { metric = "val_loss", goal = "min", over = { "train.lr" }, tune_seeds = { 1.5 } },'
select_error sweep_select_tune_seeds_empty "@: field 'select.tune_seeds': expected a non-empty list of seeds, e.g. { 1 }, got an empty list" \
    'select = { metric = "val_loss", goal = "min", over = { "train.lr" }, tune_seeds = { } },'
s=$(cfg sweepbad1 "$(sweep_base 'grid = { ["model.mixr"] = { "kda" } },')")
expect_error sweep_unknown_field_in_grid 1 "unknown field 'model.mixr' in $s (did you mean 'model.mixer'?) (in the grid)" "$A" run "$s"
s=$(cfg sweepbad2 "$(sweep_base 'grid = { seed = { } },')")
expect_error sweep_empty_grid 1 "grid 'seed' is empty" "$A" run "$s"
s=$(cfg sweepbad3 "$(sweep_base 'runs = { { task = "mqar", ["mqar.num_kv_pairs"] = 40, ["model.vocab_size"] = 512 } },')")
expect_error sweep_impossible_task_stops_before_any_run 1 "mqar: mqar.num_kv_pairs = 40 key-value pairs need 160 tokens" "$A" run "$s"
s=$(cfg sweepbad4 "$(sweep_base 'grids = { },')")
expect_error sweep_unknown_key 1 "unknown key 'grids' in a sweep" "$A" run "$s"
s=$(cfg sweepbad5 "$(sweep_base 'runs = { { run = "a" }, { run = "a" } },')")
expect_error sweep_duplicate_run_names 1 "two runs are both named 'a'" "$A" run "$s"

# ---- length extrapolation metrics, efficiency runs ----
if selected train_length_extrapolation_metrics; then
    rm -rf "$TMP/results"
    if "$A" train "$good" --set eval.max_length_factor=4 >"$TMP/out" 2>&1 &&
        grep -q '"val_perplexity_x4"' "$TMP/results/good/main/summary.json" &&
        grep -q '"val_loss_x2"' "$TMP/results/good/main/summary.json" && grep -q "val_perplexity_x4" "$TMP/out"; then
        ok train_length_extrapolation_metrics
    else
        fail train_length_extrapolation_metrics "$(tail -3 "$TMP/out")"
    fi
fi
# needle: exact answers at 1x and 2x beside lm's perplexity there, and both figures drawn; the
# perplexity figure leaves out the run trained on the answers alone (it never learned the text),
# the share's axis is fixed to [0, 1.05] (all zeros still draw), and a run is judged by its share
# of answers right in full, not by the bytes it gets right
needle_sweep=$(cfg needle "$(sweep_base 'runs = { { run = "text", task = "needle", ["train.seq_len"] = 320, ["eval.examples"] = 4,
  ["eval.max_length_factor"] = 2, ["needle.key_format"] = "numbers" },
  { run = "answers", task = "needle", ["train.seq_len"] = 320, ["eval.examples"] = 4,
  ["eval.max_length_factor"] = 2, ["needle.key_format"] = "numbers", ["needle.train_targets"] = "answer" } },')")
if selected needle_run_reports_and_plots_every_length; then
    rm -rf "$TMP/results"
    if "$A" run "$needle_sweep" >"$TMP/out" 2>&1 && "$A" plot "$TMP/results/sw" >"$TMP/out2" 2>&1 &&
        sm=$(ls "$TMP"/results/sw/*/summary.json) && grep -q '"needle_accuracy_x2"' $sm && grep -q '"val_perplexity_x2"' $sm &&
        [ -s "$TMP/results/sw/plots/needle_accuracy_vs_length.png" ] && [ -s "$TMP/results/sw/plots/perplexity_vs_length.png" ] &&
        [ "$(figure_var "$TMP/results/sw/plots/data/needle_accuracy_vs_length.cmd" train_len)" = 320 ] &&
        figure_var "$TMP/results/sw/plots/data/needle_accuracy_vs_length.cmd" titles | grep -q "train_targets=answer" &&
        ! figure_var "$TMP/results/sw/plots/data/perplexity_vs_length.cmd" titles | grep -q "train_targets=answer" &&
        grep -q "ymax=1.05" "$TMP/results/sw/plots/data/needle_accuracy_vs_length.cmd" &&
        [ ! -e "$TMP/results/sw/plots/needle_accuracy_vs_length_learned.png" ] &&
        grep -q '"learned_reason":[[:space:]]*"needle_accuracy_x1 0.0000 is below 0.5, half the answers right in full"' \
            "$TMP/results/sw/answers/summary.json"; then
        ok needle_run_reports_and_plots_every_length
    else
        fail needle_run_reports_and_plots_every_length "$(tail -n 3 "$TMP/out" "$TMP/out2"; grep -ho "titles=[^;]*\|ymax=[^;]*" "$TMP"/results/sw/plots/data/*_vs_length.cmd; ls "$TMP/results/sw/plots")"
    fi
fi
# the figure of the runs that learned draws each run that answers half or more at 1x, by its seed
# (the short runs above answer none: their summary is given a learned run's shares)
if selected needle_plot_draws_the_runs_that_learned; then
    [ -s "$TMP/results/sw/answers/summary.json" ] || { rm -rf "$TMP/results"; "$A" run "$needle_sweep" >"$TMP/out" 2>&1; }
    sm="$TMP/results/sw/answers/summary.json"
    if [ -s "$sm" ] && sed -i 's/"needle_accuracy_x1":[[:space:]]*[0-9.e+-]*/"needle_accuracy_x1": 0.9/; s/"needle_accuracy_x2":[[:space:]]*[0-9.e+-]*/"needle_accuracy_x2": 0.4/' "$sm" &&
        "$A" plot "$TMP/results/sw" >"$TMP/out2" 2>&1 && [ -s "$TMP/results/sw/plots/needle_accuracy_vs_length_learned.png" ] &&
        [ "$(figure_var "$TMP/results/sw/plots/data/needle_accuracy_vs_length_learned.cmd" titles)" = '"train_targets=answer,seed=1"' ] &&
        grep -q "0.9 0.9 0.9" "$TMP"/results/sw/plots/data/needle_learned_*.dat &&
        grep -q "0.4 0.4 0.4" "$TMP"/results/sw/plots/data/needle_learned_*.dat; then
        ok needle_plot_draws_the_runs_that_learned
    else
        fail needle_plot_draws_the_runs_that_learned "$(tail -n 3 "$TMP/out2"; ls "$TMP/results/sw/plots"; cat "$TMP"/results/sw/plots/data/needle_learned_*.dat 2>/dev/null)"
    fi
fi
if selected efficiency_run_measures_every_context; then
    rm -rf "$TMP/results"
    if "$A" train "$good" --set task=efficiency --set efficiency.contexts=16,64,256 --set efficiency.prefill_max=64 \
        --set efficiency.decode_steps=2 --set model.hybrid.ratio=1:1 --set model.n_layers=2 >"$TMP/out" 2>&1 &&
        [ "$(tail -n +2 "$TMP/results/good/main/efficiency.csv" | wc -l)" -eq 3 ] &&
        grep -q '^256,nan,' "$TMP/results/good/main/efficiency.csv" && grep -q '"decode_ms_256"' "$TMP/results/good/main/summary.json"; then
        ok efficiency_run_measures_every_context
    else
        fail efficiency_run_measures_every_context "$(tail -3 "$TMP/out"; cat "$TMP/results/good/main/efficiency.csv" 2>/dev/null)"
    fi
fi
expect_error efficiency_bad_contexts 1 "field 'efficiency.contexts'" "$A" train "$good" --set task=efficiency --set efficiency.contexts=1k,2k

# ---- every config file the project ships checks (the GPU presets are costly to find broken on a
# GPU): each runs `run --dry-run`, which checks every run's config and task, in a folder whose
# data/brown.txt is the tiny corpus repeated; modules that return a function (helpers) are skipped
if selected every_shipped_config_checks; then
    w="$TMP/shipped"
    mkdir -p "$w/data"
    for i in $(seq 20); do cat "$TINY"; done >"$w/data/brown.txt"
    ln -s "$PWD/configs" "$w/configs"
    ln -s "$PWD/tests" "$w/tests"
    bad="" n=0
    for f in $(find configs -name '*.lua' | sort); do
        if (cd "$w" && "$A" run "$f" --dry-run) >"$TMP/out" 2>&1; then
            n=$((n + 1))
        elif ! grep -q "expected the config to return a table, got function" "$TMP/out"; then
            bad="$bad $f: $(tail -1 "$TMP/out")"
        fi
    done
    if [ -z "$bad" ] && [ "$n" -ge 15 ]; then
        ok every_shipped_config_checks
    else
        fail every_shipped_config_checks "$n checked;$bad"
    fi
fi

# ---- benchmarks: the table and the CSV (speed itself is never asserted) ----
# a CSV with another header (an older attnlab's columns) is refused before the benchmark runs
printf 'device,mixers,median_ms\ncpu,"softmax",1.0\n' >"$TMP/old.csv"
expect_error bench_train_refuses_a_csv_of_other_columns 1 "$TMP/old.csv: its header is not this benchmark's columns" \
    "$A" bench train --set model.d_model=32 --set model.n_layers=1 --steps 2 --csv "$TMP/old.csv"

if selected bench_train_and_decode_write_csv; then
    small=(--set model.d_model=32 --set model.n_layers=4 --set model.n_heads=2)
    if "$A" bench train "${small[@]}" --set train.seq_len=32 --set train.batch_size=2 --steps 2 --csv "$TMP/train.csv" >"$TMP/out" 2>&1 &&
        "$A" bench train "${small[@]}" --set model.hybrid.ratio=3:1 --set train.seq_len=32 --set train.batch_size=2 --steps 2 \
            --csv "$TMP/train.csv" >>"$TMP/out" 2>&1 &&
        "$A" bench decode "${small[@]}" --set efficiency.contexts=16,64 --set efficiency.decode_steps=2 --csv "$TMP/decode.csv" \
            >>"$TMP/out" 2>&1 &&
        [ "$(wc -l <"$TMP/train.csv")" -eq 3 ] && grep -q '^cpu,"3 kda, 1 mla",4,32,' "$TMP/train.csv" &&
        [ "$(wc -l <"$TMP/decode.csv")" -eq 3 ] && grep -q '^cpu,64,' "$TMP/decode.csv" && grep -q 'speed-up' "$TMP/out" &&
        head -1 "$TMP/train.csv" | grep -q ',mfu,peak_bytes$' && tail -1 "$TMP/train.csv" | grep -q ',[1-9][0-9]*$' &&
        sed -n 's/^peak memory: \([0-9.]*\) MiB held by .* (\([0-9.]*\) MiB of it parameters.*/\1 \2/p' "$TMP/out" |
            awk 'NR == 1 && $1 > $2 && $2 > 0 { ok = 1 } END { exit !ok }'; then
        ok bench_train_and_decode_write_csv
    else
        fail bench_train_and_decode_write_csv "$(tail -3 "$TMP/out"; cat "$TMP/train.csv" "$TMP/decode.csv" 2>/dev/null)"
    fi
fi
# the GPU reference scripts read what our benchmarks and ncu write: gpu_targets.py finds a 3:1
# hybrid of any depth in bench train's CSV and sets a 3:1 KDA/softmax one beside PyTorch + fla's
# (bench_torch_train.py's CSV; of two fla runs the faster speed and the smaller peak), profile_kernels.py sums ncu's rows by kind of work
if selected gpu_reference_scripts_read_our_formats; then
    g="$TMP/targets"
    rm -rf "$g" && mkdir -p "$g"
    small=(--set model.d_model=32 --set model.n_heads=2 --set train.seq_len=32 --set train.batch_size=2 --steps 2)
    cat >"$TMP/ncu.csv" <<'NCU'
==PROF== Connected to process 1
"ID","Kernel Name","Block Size","gpu__time_duration.sum"
"","","","ns"
"0","nvjet_tst_128x256_h_bz_TNT","(256, 1, 1)","2,000,000"
"1","flash_forward_kernel","(128, 1, 1)","1,000,000"
"2","Kernel2","(128, 1, 1)","1,000,000"
"3","copy_heads_kernel","(256, 1, 1)","1,000,000"
"4","gemv_kernel<true>","(256, 1, 1)","1,000,000"
"5","decode_split_kernel<128>","(128, 1, 1)","1,000,000"
NCU
    if "$A" bench train "${small[@]}" --set model.n_layers=4 --csv "$g/train.csv" >"$TMP/out" 2>&1 &&
        "$A" bench train "${small[@]}" --set model.n_layers=8 --set model.hybrid.ratio=3:1 --csv "$g/train.csv" >>"$TMP/out" 2>&1 &&
        "$A" bench train "${small[@]}" --set model.n_layers=4 --set model.hybrid.ratio=3:1 --set model.hybrid.full=softmax \
            --csv "$g/train.csv" >>"$TMP/out" 2>&1 &&
        printf 'mode,step_ms,tokens_per_s,params,peak_bytes\neager,100.000,640.0,1000,1073741824\n' >"$g/torch_fla_3_1.csv" &&
        printf 'mode,step_ms,tokens_per_s,params,peak_bytes\neager,100.000,500.0,1000,2147483648\n' >"$g/torch_fla_1_0.csv" &&
        printf 'mode,step_ms,tokens_per_s,params,peak_bytes\neager,80.000,700.0,1000,3221225472\n' >"$g/torch_fla_1_0_again.csv" &&
        python3 tests/reference/gpu_targets.py "$g" >"$g/targets.md" 2>>"$TMP/out" &&
        grep -q '^| train 3 kda, 1 mla vs our softmax | [0-9,]* tok/s |' "$g/targets.md" &&
        grep -q '^| train 3:1 KDA/softmax vs PyTorch + fla (eager) | [0-9,]* tok/s | 640 tok/s |' "$g/targets.md" &&
        grep -q '^| train 3:1 KDA/softmax peak memory vs PyTorch + fla | [0-9.]* GiB | 1.00 GiB |' "$g/targets.md" &&
        grep -q '^| train all KDA vs PyTorch + fla (eager, faster of 500 tok/s and 700 tok/s) | not measured | 700 tok/s |' "$g/targets.md" &&
        grep -q '^| train all KDA peak memory vs PyTorch + fla | not measured | 2.00 GiB |' "$g/targets.md" &&
        python3 tests/reference/profile_kernels.py --out "$g/prof" --per 2 --from-csv "$TMP/ncu.csv" >>"$TMP/out" 2>&1 &&
        grep -q '^| matmuls (cuBLAS, gemv.cu) | 2.00 | 57.1% |$' "$g/prof/profile.md" &&
        grep -q '^| softmax attention | 1.00 | 28.6% |$' "$g/prof/profile.md" &&
        grep -q '^| other elementwise | 0.50 | 14.3% |$' "$g/prof/profile.md"; then
        ok gpu_reference_scripts_read_our_formats
    else
        fail gpu_reference_scripts_read_our_formats "$(tail -3 "$TMP/out"; cat "$g/targets.md" "$g/prof/profile.md" 2>/dev/null)"
    fi
fi
# ab_bench.sh: a base made from a patch (reverse-applied to a copy of the tree, its output folder
# left out of the copy), the benchmarks in rounds on both builds, and the table of their medians
if selected ab_bench_compares_two_builds; then
    t="$TMP/ab_tree" ab="$PWD/tests/reference/ab_bench.sh"
    rm -rf "$t" && mkdir -p "$t" && ln -s "$A" "$t/attnlab" && printf 'one\ntwo\n' >"$t/note.txt"
    printf -- '--- a/note.txt\n+++ b/note.txt\n@@ -1 +1,2 @@\n one\n+two\n' >"$TMP/ab.patch"
    small=(--set model.d_model=32 --set model.n_heads=2 --set model.n_layers=2 --set train.seq_len=32
           --set train.batch_size=2 --steps 2)
    n='[0-9][0-9,.]*'
    if (cd "$t" && BUILD=true bash "$ab" ab "$TMP/ab.patch" --rounds 2 -- train "${small[@]}" \
            -- kernels --core softmax --shape 1,32,2,16 --reps 1) >"$TMP/out" 2>&1 &&
        [ "$(cat "$t/ab/base/note.txt")" = one ] && [ "$(cat "$t/note.txt")" = "$(printf 'one\ntwo')" ] &&
        [ ! -e "$t/ab/base/ab" ] && [ "$(ls "$t/ab/csv" | wc -l)" = 8 ] &&
        grep -q "^| softmax | tokens/s | $n / $n | $n / $n | $n | $n | $n |\$" "$t/ab/ab.md" &&
        grep -q "^| softmax flash 1 32 2 16 | fwd+bwd ms | $n / $n | $n / $n | $n | $n | $n |\$" "$t/ab/ab.md" &&
        grep -q '^## 2: `attnlab bench kernels --core softmax --shape 1,32,2,16 --reps 1` (cpu, 2 rounds)$' "$t/ab/ab.md"; then
        ok ab_bench_compares_two_builds
    else
        fail ab_bench_compares_two_builds "$(tail -3 "$TMP/out"; cat "$t/ab/ab.md" 2>/dev/null)"
    fi
fi
expect_error ab_bench_bad_rounds 2 "--rounds 0: expected a whole number from 1 to 99" \
    bash tests/reference/ab_bench.sh "$TMP/ab_bad" . --rounds 0 -- train
expect_error ab_bench_base_missing 2 "BASE --rounds: expected the base build's directory or a patch file" \
    bash tests/reference/ab_bench.sh "$TMP/ab_bad" --rounds 2 -- train
expect_error ab_bench_empty_benchmark 2 "benchmark 2 is empty" bash tests/reference/ab_bench.sh "$TMP/ab_bad" . -- train --
expect_error ab_bench_csv_given 2 "benchmark 1: leave --csv out" \
    bash tests/reference/ab_bench.sh "$TMP/ab_bad" . -- train --csv x.csv
mkdir -p "$TMP/ab_small" && ln -sf "$A" "$TMP/ab_small/attnlab" &&
    printf -- '--- a/missing.txt\n+++ b/missing.txt\n@@ -1 +1,2 @@\n one\n+two\n' >"$TMP/ab_bad.patch"
expect_error ab_bench_bad_patch 1 "the patch does not reverse-apply to this tree" \
    env -C "$TMP/ab_small" BUILD=true bash "$PWD/tests/reference/ab_bench.sh" "$TMP/ab_bad" "$TMP/ab_bad.patch" -- train
expect_error bench_decode_without_hybrid 1 "model.hybrid.ratio is empty" "$A" bench decode --set model.hybrid.ratio=
expect_error bench_decode_bad_contexts 1 "field 'efficiency.contexts'" "$A" bench decode --set efficiency.contexts=0

# ---- configs are untrusted code: refused functions, limits, --trust-config ----
sandboxed() { # sandboxed NAME LUA-PRELUDE: a config that runs LUA-PRELUDE before returning the good config
    cfg "$1" "$2
return dofile_free_config" >/dev/null
    sed -i "s|^return dofile_free_config|$(base_config | tr '\n' ' ' | sed 's/|/\\|/g')|" "$TMP/$1.lua"
    echo "$TMP/$1.lua"
}
expect_error sandbox_os_execute 1 "os.execute is not allowed in a config" "$A" train "$(sandboxed sb1 'os.execute("touch '"$TMP"'/pwned")')"
expect_error sandbox_io_open 1 "io.open is not allowed in a config" "$A" train "$(sandboxed sb2 'local f = io.open("/etc/passwd")')"
expect_error sandbox_loadlib 1 "package.loadlib is not allowed" "$A" train "$(sandboxed sb3 'package.loadlib("libc.so.6", "system")')"
expect_error sandbox_dofile 1 "dofile is not allowed" "$A" train "$(sandboxed sb4 'dofile("/etc/passwd")')"
expect_error sandbox_binary_chunk 1 "attempt to load a binary chunk" "$A" train "$(sandboxed sb5 'assert(load("\27Lua"))')"
expect_error sandbox_require_outside 1 "module 'passwd' not found" "$A" train "$(sandboxed sb6 'package.path = "/etc/?"; require("passwd")')"
expect_error sandbox_endless_loop 1 "million Lua instructions (an endless loop?)" "$A" train "$(sandboxed sb7 'while true do end')"
expect_error sandbox_memory 1 "the config allocated more than 256 MiB" "$A" train \
    "$(sandboxed sb8 'local t = {} for i = 1, 1e8 do t[i] = i end')"
if selected sandbox_trust_config_lifts_it; then
    rm -rf "$TMP/results"
    c=$(sandboxed sb9 'assert(os.getenv("HOME") ~= nil)')
    if ! "$A" describe "$c" >/dev/null 2>&1 && "$A" describe "$c" --trust-config >"$TMP/out" 2>&1 && [ ! -e "$TMP/pwned" ]; then
        ok sandbox_trust_config_lifts_it
    else
        fail sandbox_trust_config_lifts_it "$(tail -2 "$TMP/out")"
    fi
fi

# ---- non-finite values: the step stops before the parameters change, the layer is named ----
nan_case() { # nan_case NAME KIND LAYER EXPECTED-REASON
    local name=$1 kind=$2 layer=$3 want=$4
    selected "$name" || return 0
    rm -rf "$TMP/results"
    local c
    c=$(cfg nan "$(base_config)")
    "$A" train "$c" --set model.n_layers=3 --set debug.nan_at_step=5 --set debug.nan_in="$kind" --set debug.nan_layer="$layer" \
        >"$TMP/out" 2>&1
    local code=$? dir="$TMP/results/nan/main"
    if [ "$code" -eq 1 ] && grep -qF "\"reason\":	\"$want\"" "$dir/summary.json" && grep -qF '"status":	"failed"' "$dir/summary.json" &&
        grep -qF "reason: $want" "$TMP/out" &&
        "$A" eval "$dir/checkpoint.safetensors" 2>&1 | grep -q "(step 3)"; then
        ok "$name"
    else
        fail "$name" "exit $code; $(grep reason "$dir/summary.json" 2>/dev/null); $(tail -2 "$TMP/out")"
    fi
}
nan_case nonfinite_loss_names_the_head loss 0 "non-finite loss at step 5 (final norm or head)"
nan_case nonfinite_activation_names_the_layer activation 1 "non-finite loss at step 5 (layer 1 output)"
nan_case nonfinite_gradient_names_the_layer grad 2 "non-finite gradient at step 5 (layer 2: layers.2.mixer_norm.weight)"
expect_error nonfinite_injection_bad_layer 1 "field 'debug.nan_layer': expected a layer below model.n_layers = 1, got 4" \
    "$A" train "$good" --set debug.nan_layer=4

# ---- hostile files: every bad-* seed of the fuzz corpora (tests/fuzz/corpus) gets a one-line
# error naming it, a non-zero exit and no output, through the command a user would feed it to ----
hostile() { # hostile KIND FILE CMD...: expect_error with the file's name as the pattern
    local kind=$1 file=$2
    shift 2
    expect_error "hostile_${kind}_$(basename "$file")" 1 "$(basename "$file")" "$@"
}
for f in tests/fuzz/corpus/safetensors/bad-*; do
    hostile op "$f" "$A" op softmax --in "$f" --out "$TMP/results/o.safetensors"
    hostile eval "$f" "$A" eval "$f"
done
op_names=(softmax linear gdn kda)
for f in tests/fuzz/corpus/op/bad-*; do # a selector byte (bits 0-1: the core; bit 3: dplr), then the file
    sel=$(head -c1 "$f" | od -An -tu1 | tr -d ' ')
    tail -c +2 "$f" >"$TMP/$(basename "$f").safetensors"
    name=${op_names[$((sel & 3))]}
    [ $((sel & 8)) -ne 0 ] && name=dplr
    hostile op "$TMP/$(basename "$f").safetensors" "$A" op "$name" \
        --in "$TMP/$(basename "$f").safetensors" --out "$TMP/results/o.safetensors"
done
for f in tests/fuzz/corpus/shard/bad-*; do
    hostile shard "$f" "$A" train "$good" --set data.path="$PWD/$f" --set data.format=shard
done
for f in tests/fuzz/corpus/text/bad-*; do
    hostile text "$f" "$A" train "$good" --set data.path="$PWD/$f" --set data.format=text
done
for f in tests/fuzz/corpus/config/bad-*.lua; do
    hostile config "$f" "$A" train "$f" --out "$TMP/results"
done
for f in tests/fuzz/corpus/config/bad-set-*; do # "--set" then one override per line
    sets=()
    while IFS= read -r line || [ -n "$line" ]; do sets+=(--set "$line"); done < <(tail -n +2 "$f")
    expect_error "hostile_set_$(basename "$f")" 1 "model.d_mod" "$A" train "$good" "${sets[@]}"
done
n_hostile=$(ls tests/fuzz/corpus/*/bad-* | wc -l)
selected hostile_ && echo "     ($n_hostile hostile files)"
# work inside C library calls runs few Lua instructions: the time limit stops it, with an error at
# the next instruction (quadratic string building) ...
bad=$(cfg concat 'local s = "" for i = 1, 1e6 do s = s .. string.rep("x", 200) end return {}')
expect_error sandbox_time_limit_stops_work_inside_library_calls 1 "$bad: the config ran more than 10 s; stopped" \
    "$A" train "$bad"
# ... and a string pattern that could backtrack for hours inside one call is refused up front
# (the watchdog's last resort, ending the process, is tested in tests/test_sandbox.c)
bad=$(cfg pattern 'return { experiment = (string.rep("a", 100000)):find(".-.-.-.-.-b") and "x" or "y" }')
expect_error sandbox_refuses_a_runaway_pattern 1 "string.find: this pattern over 100000 bytes could backtrack" \
    "$A" train "$bad"
