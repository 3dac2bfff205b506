/* Every mixer layer: finite-difference gradients for the input and every parameter, across the
 * ablation switches; decode (one token at a time with a cache or state) equal to the full
 * forward at every position; a backward that reads nothing its forward left in the scratch all
 * layers share; the chunkwise and recurrent training forms equal at layer level. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "compare.h"
#include "core/util.h"
#include "mixer_harness.h"
#include "test.h"

#define SETTINGS(...) ((const char *const[]){__VA_ARGS__, NULL})

/* Decode and forward run different code (recurrent steps vs chunks, a cache vs tiles) in fp32:
 * they agree to rounding, a few 1e-7 of the output scale; 1e-5 leaves room and still catches a
 * wrong position, a stale cache row or a missed convolution tap, which are O(1). */
static const double DECODE_TOL = 1e-5;

static void check_mixer(const char *const *settings, unsigned seed) {
    MixerCase c;
    char msg[256];
    CHECK(mixer_case_init(&c, settings, 2, 7, seed, msg, sizeof msg), "config: %s", msg);
    const char *what = config_layer_mixer(&c.cfg.model, 0);
    CHECK(mixer_case_gradcheck(&c, seed + 1000, msg, sizeof msg), "%s %s: %s", what, settings[1] ? settings[1] : "", msg);
    CHECK(mixer_case_decode_matches(&c, DECODE_TOL, msg, sizeof msg), "%s %s: %s", what, settings[1] ? settings[1] : "",
          msg);
    CHECK(mixer_case_backward_reads_no_scratch(&c, msg, sizeof msg), "%s %s: %s", what, settings[1] ? settings[1] : "",
          msg);
}

TEST(test_softmax_layer_gradient_and_decode) {
    check_mixer(SETTINGS("model.mixer=softmax"), 1);
    check_mixer(SETTINGS("model.mixer=softmax", "model.softmax.position=nope", "model.n_heads=4",
                         "model.softmax.n_kv_heads=2"),
                2);
}

TEST(test_mla_layer_gradient_and_decode) {
    check_mixer(SETTINGS("model.mixer=mla", "model.mla.position=rope"), 3);
    check_mixer(SETTINGS("model.mixer=mla", "model.mla.position=nope", "model.mla.kv_lora_rank=6"), 4);
    check_mixer(SETTINGS("model.mixer=mla", "model.mla.q_lora_rank=5", "model.mla.qk_rope_head_dim=2",
                         "model.mla.v_head_dim=6", "model.mla.qk_nope_head_dim=4"),
                5);
}

TEST(test_linear_layer_gradient_and_decode) {
    check_mixer(SETTINGS("model.mixer=linear"), 6);
    check_mixer(SETTINGS("model.mixer=linear", "model.linear.normalize=false", "model.linear.feature_map=identity"), 7);
    check_mixer(SETTINGS("model.mixer=linear", "model.linear.position=rope", "model.linear.chunk_size=0"), 8);
    /* the short convolution: with the normalizer and chunks, and with RoPE and the recurrent form */
    check_mixer(SETTINGS("model.mixer=linear", "model.linear.short_conv=true"), 28);
    check_mixer(SETTINGS("model.mixer=linear", "model.linear.short_conv=true", "model.linear.conv_size=2",
                         "model.linear.position=rope", "model.linear.normalize=false", "model.linear.chunk_size=0"),
                29);
}

TEST(test_gdn_layer_gradient_and_decode) {
    check_mixer(SETTINGS("model.mixer=gdn"), 9);
    check_mixer(SETTINGS("model.mixer=gdn", "model.gdn.short_conv=false"), 10);
    check_mixer(SETTINGS("model.mixer=gdn", "model.gdn.output_gate=false", "model.gdn.qk_norm=false"), 11);
    check_mixer(SETTINGS("model.mixer=gdn", "model.gdn.position=rope", "model.gdn.chunk_size=0"), 12);
    /* fla's default (and so attnlab's) is expand_v 2: values twice the keys; tied, and other heads */
    check_mixer(SETTINGS("model.mixer=gdn", "model.gdn.expand_v=1", "model.gdn.head_dim=4"), 17);
}

TEST(test_kda_layer_gradient_and_decode) {
    check_mixer(SETTINGS("model.mixer=kda"), 13);
    check_mixer(SETTINGS("model.mixer=kda", "model.kda.short_conv=false", "model.kda.gate_rank=3"), 14);
    check_mixer(SETTINGS("model.mixer=kda", "model.kda.output_gate=false", "model.kda.qk_norm=false"), 15);
    check_mixer(SETTINGS("model.mixer=kda", "model.kda.position=rope", "model.kda.conv_size=2"), 16);
    check_mixer(SETTINGS("model.mixer=kda", "model.kda.expand_v=1.5", "model.kda.head_dim=6"), 18);
}

/* dplr is kda's layer with a read gate of its own: the same switches, and the gate's projections */
TEST(test_dplr_layer_gradient_and_decode) {
    check_mixer(SETTINGS("model.mixer=dplr"), 23);
    check_mixer(SETTINGS("model.mixer=dplr", "model.dplr.short_conv=false", "model.dplr.gate_rank=3"), 24);
    check_mixer(SETTINGS("model.mixer=dplr", "model.dplr.output_gate=false", "model.dplr.chunk_size=0"), 25);
    check_mixer(SETTINGS("model.mixer=dplr", "model.dplr.position=rope", "model.dplr.expand_v=1.5"), 26);
}

/* What a kda layer keeps for its backward, per token: q, k and v's projections and the core's
 * output (4 x 24 floats in TEST_DIMENSIONS: 3 heads of 8), beta (3), the low-rank gate inputs f1
 * and z1 (2 x 13), beside the core's saved states; the convolutions' outputs, q, k, v, the gates
 * and the normed and gated outputs (11 more of 24, and 9 for the norms' scales) it remakes in the
 * backward. 512 tokens, so that the arena's 256-byte rounding of its 8 slots adds at most one. */
TEST(test_kda_layer_keeps_only_what_it_cannot_remake) {
    MixerCase c;
    char msg[256];
    const int B = 2, T = 256, H = 3, K = 8, V = 8;
    CHECK(mixer_case_init(&c, SETTINGS("model.mixer=kda"), B, T, 13, msg, sizeof msg), "config: %s", msg);
    ScanShape s = {B, T, H, K, V, 1.0f / sqrtf((float)K), 5, true}; /* TEST_DIMENSIONS' kda.chunk_size */
    double per_token = ((double)c.acts.peak / sizeof(float) - (double)c.be->delta_rule_saved(&s)) / (B * T);
    CHECK(per_token >= 4 * 24 + 3 + 2 * 13 && per_token <= 4 * 24 + 3 + 2 * 13 + 1,
          "kda keeps %.1f floats a token for its backward beside the core's states, expected 125", per_token);
}

/* What a kda layer's backward holds in the scratch every layer shares, per token: to its end the
 * remade q, k, v (3 x 24), the gates' input and log decay (2 x 24), the norms' scales (3 x 3) and
 * the gradients of o, q, k, v, g (5 x 24), beta (3) and the low-rank inputs (2 x 13); beside them,
 * taking turns in the same bytes, SiLU's outputs before the L2 norm (2 x 24; the convolutions'
 * outputs are never stored), the output side (o_n, z, y_g and their gradients: 6 x 24), the
 * core's workspace, and the decay gate's and input paths' buffers (2 x 24). Without the turns it
 * would be 518 a token and the workspace. */
TEST(test_kda_layer_scratch_takes_turns) {
    MixerCase c;
    char msg[256];
    const int B = 2, T = 256, H = 3, K = 8, V = 8;
    CHECK(mixer_case_init(&c, SETTINGS("model.mixer=kda"), B, T, 13, msg, sizeof msg), "config: %s", msg);
    ScanShape s = {B, T, H, K, V, 1.0f / sqrtf((float)K), 5, true};
    double work = (double)c.be->delta_rule_workspace(&s) / sizeof(float) / (B * T);
    double to_the_end = 3 * 24 + 2 * 24 + 3 * 3 + 5 * 24 + 3 + 2 * 13, turns = work > 6 * 24 ? work : 6 * 24;
    double per_token = (double)c.scratch.peak / sizeof(float) / (B * T);
    CHECK(per_token >= to_the_end + turns && per_token <= to_the_end + turns + 4,
          "kda's scratch holds %.1f floats a token, expected %.1f (%.1f to the end, %.1f in turns)", per_token,
          to_the_end + turns, to_the_end, turns);
}

/* The layer's chunkwise and recurrent training forms give the same output and gradients. */
static void check_forms_agree(const char *mixer, unsigned seed) {
    char s1[64], s2[64], s3[64], msg[256];
    snprintf(s1, sizeof s1, "model.mixer=%s", mixer);
    snprintf(s2, sizeof s2, "model.%s.chunk_size=3", mixer);
    snprintf(s3, sizeof s3, "model.%s.chunk_size=0", mixer);
    MixerCase a, b;
    CHECK(mixer_case_init(&a, SETTINGS(s1, s2), 2, 11, seed, msg, sizeof msg), "%s", msg);
    CHECK(mixer_case_init(&b, SETTINGS(s1, s3), 2, 11, seed, msg, sizeof msg), "%s", msg);
    mixer_case_loss(&a);
    mixer_case_loss(&b);
    /* fp32 sums in two orders: they agree to rounding relative to each tensor's scale (measured
     * at most 2.3e-7, in the short convolutions' gradients, sums over every token) */
    const double tol = 1e-5;
    size_t n = (size_t)a.B * a.T * a.C;
    double d = max_rel_diff(a.y, b.y, n, 1e-6);
    CHECK(d <= tol, "%s: chunked vs recurrent output differ by %.2e", mixer, d);
    float *dxa = xcalloc(n, sizeof(float)), *dxb = xcalloc(n, sizeof(float));
    params_zero_grad(&a.ps);
    params_zero_grad(&b.ps);
    a.mixer->ops->backward(a.mixer, a.be, a.x, a.R, dxa, a.B, a.T);
    b.mixer->ops->backward(b.mixer, b.be, b.x, b.R, dxb, b.B, b.T);
    d = max_rel_diff(dxa, dxb, n, 1e-6);
    CHECK(d <= tol, "%s: chunked vs recurrent dx differ by %.2e", mixer, d);
    for (int i = 0; i < a.ps.n; i++) {
        const ParamInfo *p = &a.ps.info[i];
        d = max_rel_diff(a.ps.g + p->offset, b.ps.g + p->offset, p->count, 1e-6);
        CHECK(d <= tol, "%s: chunked vs recurrent gradient of %s differ by %.2e", mixer, p->name, d);
    }
    free(dxa);
    free(dxb);
}

TEST(test_linear_time_layers_chunked_equals_recurrent) {
    check_forms_agree("linear", 20);
    check_forms_agree("gdn", 21);
    check_forms_agree("kda", 22);
    check_forms_agree("dplr", 27);
}

/* NoPE is the same MLA layer without the rotation (Kimi Linear's MLA): the same parameters, cache
 * per token (kv_lora_rank + qk_rope_head_dim) and scale, so with the same weights both give the
 * same output at position 0, where the rotation is the identity, and differ after it. */
TEST(test_mla_nope_is_the_same_layer_without_rotation) {
    MixerCase nope, rope;
    char msg[256];
    CHECK(mixer_case_init(&nope, SETTINGS("model.mixer=mla", "model.mla.position=nope"),
                          2, 7, 30, msg, sizeof msg),
          "%s", msg);
    CHECK(mixer_case_init(&rope, SETTINGS("model.mixer=mla", "model.mla.position=rope"),
                          2, 7, 30, msg, sizeof msg),
          "%s", msg);
    CHECK(nope.ps.n == rope.ps.n && nope.ps.total == rope.ps.total, "parameters: NoPE %d tensors (%zu), RoPE %d (%zu)",
          nope.ps.n, nope.ps.total, rope.ps.n, rope.ps.total);
    for (int i = 0; i < nope.ps.n; i++)
        CHECK(strcmp(nope.ps.info[i].name, rope.ps.info[i].name) == 0 && nope.ps.info[i].count == rope.ps.info[i].count,
              "parameter %d: %s vs %s", i, nope.ps.info[i].name, rope.ps.info[i].name);
    CHECK(memcmp(nope.ps.w, rope.ps.w, sizeof(float) * nope.ps.total) == 0, "the same seed gave other weights");
    size_t per_token = sizeof(float) * (11 + 6); /* kv_lora_rank + qk_rope_head_dim of test_dimensions.h */
    CHECK(nope.mixer->ops->cache_bytes(nope.mixer, 1000) == 1000 * per_token &&
              rope.mixer->ops->cache_bytes(rope.mixer, 1000) == 1000 * per_token,
          "cache for 1000 tokens: NoPE %zu, RoPE %zu bytes, expected %zu", nope.mixer->ops->cache_bytes(nope.mixer, 1000),
          rope.mixer->ops->cache_bytes(rope.mixer, 1000), 1000 * per_token);
    mixer_case_loss(&nope);
    mixer_case_loss(&rope);
    double later = 0;
    for (int b = 0; b < 2; b++)
        for (int t = 0; t < 7; t++) {
            const float *yn = nope.y + ((size_t)b * 7 + t) * nope.C, *yr = rope.y + ((size_t)b * 7 + t) * rope.C;
            double d = max_abs_diff(yn, yr, (size_t)nope.C);
            if (t == 0) CHECK(d <= 1e-6, "sequence %d, position 0: NoPE and RoPE differ by %.2e", b, d);
            else later = worst_of(later, d);
        }
    CHECK(later > 1e-3, "NoPE and RoPE agree after position 0 (%.2e): nothing was rotated", later);
}

/* The reference models' init (fla's _init_weights): every weight matrix and short convolution
 * N(0, init_std), output projections included; GPT-2's init_std / sqrt(2 n_layers) for those
 * only under model.rescale_residual_init. */
static double sample_std(const ParamSet *ps, const char *name) {
    const ParamInfo *p = params_find(ps, name);
    if (!p) return -1;
    double s = 0;
    for (size_t i = 0; i < p->count; i++) s += (double)ps->w[p->offset + i] * ps->w[p->offset + i];
    return sqrt(s / (double)p->count);
}

TEST(test_init_is_the_reference_models_init) {
    const char *names[] = {"layers.0.mixer.q_conv1d.weight", "layers.0.mixer.v_conv1d.weight", "layers.0.mixer.q_proj.weight",
                           "layers.0.mixer.o_proj.weight"};
    for (int rescale = 0; rescale < 2; rescale++) {
        MixerCase c;
        char msg[256];
        CHECK(mixer_case_init(&c, SETTINGS("model.mixer=gdn", "model.init_std=0.02", "model.n_layers=8",
                                           rescale ? "model.rescale_residual_init=true" : "model.rescale_residual_init=false"),
                              1, 2, 50, msg, sizeof msg),
              "%s", msg);
        for (int i = 0; i < 4; i++) {
            double want = 0.02 / (rescale && i == 3 ? 4.0 : 1.0), got = sample_std(&c.ps, names[i]);
            /* hundreds of samples: within 15% of the std (the conv weights are the fewest, 24 x 4) */
            CHECK(fabs(got - want) < 0.15 * want, "rescale %d: %s has std %.4f, expected %.4f", rescale, names[i], got,
                  want);
        }
    }
}
