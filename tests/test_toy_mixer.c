/* A mixer added from outside core/ and variants/: "toy", y_t += scale * W x_{t-1}, with its own
 * config section (model.toy.scale), registered by this file alone. It trains, decodes, describes
 * and sweeps like the others, which is what "a new mixer is one file and one registry line"
 * promises: nothing in core/ had to learn its name. */
#include <stdlib.h>
#include <string.h>

#include "core/lab/describe.h"
#include "core/lab/sweep.h"
#include "core/mixer.h"
#include "core/train.h"
#include "core/util.h"
#include "mixer_harness.h"
#include "test.h"

typedef struct {
    double scale;
} ToyConfig;

static const Field toy_fields[] = {
    MIXER_NUM("scale", ToyConfig, scale, "1", 0.01, 100, "multiplies the previous token's projection"),
};

typedef struct {
    Mixer base;
    int C;
    float scale;
    Param w;
    float *shifted, *dshifted; /* x one position later [N, C] (activation), its gradient (scratch) */
    float *prev;               /* decode: each sequence's previous input [B, C] */
} Toy;

extern const MixerOps mixer_toy;

static Mixer *toy_create(const MixerSpec *spec, ParamSet *ps) {
    Toy *t = xcalloc(1, sizeof *t);
    t->C = spec->model->d_model;
    t->scale = (float)((const ToyConfig *)mixer_config(spec->model, spec->ops))->scale;
    char name[64];
    snprintf(name, sizeof name, "layers.%d.mixer.w.weight", spec->layer);
    params_matrix(ps, &t->w, name, t->C, t->C, (float)spec->model->init_std);
    return &t->base;
}

static void toy_declare(Mixer *m, const Backend *be, Arena *acts, Arena *scratch, int B, int T) {
    (void)be;
    Toy *t = (Toy *)m;
    arena_floats(acts, &t->shifted, (size_t)B * T * t->C);
    arena_floats(scratch, &t->dshifted, (size_t)B * T * t->C);
}

/* rows of src one position later in each sequence into dst (first row of each 0), or, with
 * back, one position earlier (last row of each 0) */
static void shift(const Backend *be, float *dst, const float *src, int B, int T, int C, bool back) {
    for (int b = 0; b < B; b++) {
        size_t first = (size_t)b * T * C, rest = (size_t)(T - 1) * C;
        be->zero(dst + first + (back ? rest : 0), (size_t)C);
        be->copy(dst + first + (back ? 0 : (size_t)C), src + first + (back ? (size_t)C : 0), rest);
    }
}

static void toy_forward(Mixer *m, const Backend *be, const float *x, float *y, int B, int T) {
    Toy *t = (Toy *)m;
    shift(be, t->shifted, x, B, T, t->C, false);
    be->gemm(false, true, B * T, t->C, t->C, t->scale, t->shifted, t->C, t->w.w, t->C, 1.0f, y, t->C);
}

static void toy_backward(Mixer *m, const Backend *be, const float *x, const float *dy, float *dx, int B, int T) {
    (void)x;
    Toy *t = (Toy *)m;
    int N = B * T, C = t->C;
    be->gemm(true, false, C, C, N, t->scale, dy, C, t->shifted, C, 1.0f, t->w.g, C);
    be->gemm(false, false, N, C, C, t->scale, dy, C, t->w.w, C, 0.0f, t->dshifted, C);
    shift(be, dx, t->dshifted, B, T, C, true);
}

static void toy_declare_decode(Mixer *m, const Backend *be, Arena *cache, Arena *scratch, int B, long max_context) {
    (void)be, (void)scratch, (void)max_context;
    arena_floats(cache, &((Toy *)m)->prev, (size_t)B * ((Toy *)m)->C);
}

static void toy_decode_reset(Mixer *m, const Backend *be, int B) { be->zero(((Toy *)m)->prev, (size_t)B * ((Toy *)m)->C); }

/* decode_takes_norm is left false: x is the normalized input, x_norm NULL */
static void toy_decode_step(Mixer *m, const Backend *be, const float *x, const RowNorm *x_norm, float *y, int B,
                            const DecodeAt *at) {
    (void)at, (void)x_norm;
    Toy *t = (Toy *)m;
    be->gemm(false, true, B, t->C, t->C, t->scale, t->prev, t->C, t->w.w, t->C, 1.0f, y, t->C);
    be->copy(t->prev, x, (size_t)B * t->C);
}

static double toy_flops(const Mixer *m, int T) {
    (void)T;
    return 2.0 * ((const Toy *)m)->C * ((const Toy *)m)->C;
}

static size_t toy_cache_bytes(const Mixer *m, long context) {
    (void)context;
    return sizeof(float) * (size_t)((const Toy *)m)->C;
}

static void toy_destroy(Mixer *m) { free(m); }

const MixerOps mixer_toy = {
    .name = "toy",
    .linear_time = true,
    MIXER_SECTION(toy_fields, ToyConfig),
    .create = toy_create,
    .declare = toy_declare,
    .forward = toy_forward,
    .backward = toy_backward,
    .declare_decode = toy_declare_decode,
    .decode_reset = toy_decode_reset,
    .decode_step = toy_decode_step,
    .flops_per_token = toy_flops,
    .cache_bytes = toy_cache_bytes,
    .destroy = toy_destroy,
};

/* the one registry line, from this file */
__attribute__((constructor)) static void register_toy(void) { mixer_register(&mixer_toy); }

#define SETTINGS(...) ((const char *const[]){__VA_ARGS__, NULL})

static char *write_config(const char *dir, const char *name, const char *lua) {
    char *path = xasprintf("%s/%s", dir, name);
    write_file_atomic(path, lua, strlen(lua));
    return path;
}

TEST(test_a_mixer_registered_from_outside_trains_decodes_describes_and_sweeps) {
    char dir[] = "/tmp/attnlab_toy_XXXXXX";
    CHECK(mkdtemp(dir), "mkdtemp failed");
    char *base = xasprintf("out_dir = '%s/results', model = { d_model = 16, n_layers = 2, n_heads = 2, mixer = 'toy', "
                           "toy = { scale = 0.5 } }, train = { steps = 3, batch_size = 2, seq_len = 16, log_every = 1, "
                           "eval_every = 0, checkpoint_every = 0 }, data = { path = '%s/tests/data/tiny.txt', "
                           "split_block = 1024 }, eval = { max_batches = 1 }",
                           dir, getenv("PWD") ? getenv("PWD") : ".");
    char *lua = xasprintf("return { %s }", base);
    char *path = write_config(dir, "toy.lua", lua);
    /* a sweep over its own field; first, since its runs are forked processes, and OpenMP's threads
     * do not survive a fork in the middle of a process that has used them */
    char *sweep_lua = xasprintf("return { experiment = 'toys', base = { %s }, grid = { ['model.toy.scale'] = { 0.5, 2 } } }",
                                base);
    char *sweep_path = write_config(dir, "sweep.lua", sweep_lua);
    Sweep sw;
    Error err;
    bool loaded = sweep_load(&sw, sweep_path, NULL, 0, &err);
    int swept = loaded ? sweep_run(&sw, 1) : -1;
    char *csv = read_file(xasprintf("%s/results/toys/summary.csv", dir), NULL, &err);
    Config cfg;
    bool ok = config_load(&cfg, path, NULL, 0, &err);
    /* describe names it in the layer table; train runs it to the end */
    char *table = xasprintf("%s/describe.txt", dir);
    FILE *out = ok ? fopen(table, "w") : NULL;
    if (out) {
        describe_model(&cfg, 100, out);
        fclose(out);
    }
    char *text = out ? read_file(table, NULL, &err) : NULL;
    TrainOptions opt = {.quiet = true};
    int trained = ok ? train_run(&cfg, &opt) : -1;
    char *summary = read_file(xasprintf("%s/results/toy/main/summary.json", dir), NULL, &err);
    remove_tree(dir);
    CHECK(ok, "config: %s", err.msg);
    CHECK(text && strstr(text, "0      toy "), "describe: %s", text ? text : "(nothing)");
    CHECK(trained == 0 && summary && strstr(summary, "\"finished\""), "train exit %d, summary %s", trained,
          summary ? summary : "(none)");
    CHECK(loaded && swept == 0, "sweep: %s", loaded ? "failed" : err.msg);
    CHECK(csv && strstr(csv, "\nscale=0.5,finished,,0.5,3,") && strstr(csv, "\nscale=2,finished,,2,3,"), "summary.csv: %s",
          csv ? csv : "(none)");
    /* its layer: gradients and decode == forward, through the same harness as every mixer */
    MixerCase c;
    char msg[256];
    CHECK(mixer_case_init(&c, SETTINGS("model.mixer=toy", "model.toy.scale=0.5"), 2, 7, 80, msg, sizeof msg), "%s", msg);
    CHECK(mixer_case_gradcheck(&c, 81, msg, sizeof msg), "toy: %s", msg);
    CHECK(mixer_case_decode_matches(&c, 1e-5, msg, sizeof msg), "toy: %s", msg);
}
