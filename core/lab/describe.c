/* `attnlab describe CONFIG`: the layer table of a model (mixer, position encoding, parameters,
 * decode cache per token or fixed state) and the totals at a context length. */
#include "describe.h"

#include <stdio.h>
#include <string.h>

#include "core/backend.h"
#include "core/model.h"
#include "core/progress.h"
#include "core/util.h"

/* Parameters whose names start with prefix. */
static size_t params_with_prefix(const Model *m, const char *prefix) {
    size_t n = 0, len = strlen(prefix);
    for (int i = 0; i < m->params.n; i++)
        if (strncmp(m->params.info[i].name, prefix, len) == 0) n += m->params.info[i].count;
    return n;
}

static const char *position_of(const ModelConfig *mc, const char *mixer) {
    const MixerOps *ops = mixer_lookup(mixer);
    return ops->position ? ops->position(mixer_config(mc, ops)) : "-";
}

static void bytes_text(char *buf, size_t len, double bytes) {
    if (bytes < 1024) snprintf(buf, len, "%.0f B", bytes);
    else if (bytes < 1048576) snprintf(buf, len, "%.1f KiB", bytes / 1024);
    else if (bytes < 1073741824.0) snprintf(buf, len, "%.1f MiB", bytes / 1048576);
    else snprintf(buf, len, "%.2f GiB", bytes / 1073741824.0);
}

void describe_model(const Config *cfg, long context, FILE *out) {
    const ModelConfig *mc = &cfg->model;
    Model *m = model_create(mc, backend_cpu());
    char num[32], a[32], b[32], c[32];
    char mlp[32] = "no MLP";
    if (mc->mlp) snprintf(mlp, sizeof mlp, "SwiGLU %d", m->F);
    fprintf(out, "model: %d layers, d_model %d, %d heads of %d, %s, vocabulary %d, %s head\n", m->L, m->C, mc->n_heads,
            config_head_dim(mc), mlp, m->V, mc->tie_embeddings ? "tied" : "untied");
    fprintf(out, "%-6s %-8s %-9s %14s %14s %16s %16s\n", "layer", "mixer", "position", "mixer params",
            mc->mlp ? "MLP+norms" : "norm", "cache/token", "fixed state");
    size_t per_token_total = 0, fixed_total = 0;
    for (int l = 0; l < m->L; l++) {
        const Mixer *mx = m->layers[l].mixer;
        const char *name = config_layer_mixer(mc, l);
        char prefix[64];
        snprintf(prefix, sizeof prefix, "layers.%d.mixer.", l);
        size_t mixer_params = params_with_prefix(m, prefix);
        snprintf(prefix, sizeof prefix, "layers.%d.", l);
        size_t rest = params_with_prefix(m, prefix) - mixer_params;
        /* a KV cache grows by a fixed amount per token; a recurrent state does not grow */
        size_t fixed = mx->ops->cache_bytes(mx, 0), per_token = mx->ops->cache_bytes(mx, 1) - fixed;
        per_token_total += per_token;
        fixed_total += fixed;
        format_count(a, sizeof a, (double)mixer_params);
        format_count(b, sizeof b, (double)rest);
        if (per_token) bytes_text(c, sizeof c, (double)per_token);
        else snprintf(c, sizeof c, "-");
        if (fixed) bytes_text(num, sizeof num, (double)fixed);
        else snprintf(num, sizeof num, "-");
        fprintf(out, "%-6d %-8s %-9s %14s %14s %16s %16s\n", l, name, position_of(mc, name), a, b, c, num);
    }
    size_t outer = params_with_prefix(m, "embeddings.") + params_with_prefix(m, "lm_head.") + params_with_prefix(m, "norm.");
    format_count(a, sizeof a, (double)outer);
    fprintf(out, "embedding, final norm and LM head: %s parameters\n", a);
    format_count(a, sizeof a, (double)model_param_count(m));
    fprintf(out, "total: %s parameters\n", a);
    format_count(num, sizeof num, (double)context);
    bytes_text(a, sizeof a, (double)per_token_total);
    bytes_text(b, sizeof b, (double)fixed_total);
    bytes_text(c, sizeof c, (double)model_cache_bytes(m, context));
    fprintf(out, "decode cache per sequence (fp32): %s per token + %s fixed; at %s tokens: %s\n", a, b, num, c);
    model_free(m);
}
