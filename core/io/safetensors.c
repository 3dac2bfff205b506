/* Reading (validated against hostile input) and writing of safetensors files, and the bf16/f16
 * conversions. Assumes a little-endian host (x86-64): tensor bytes are copied as they lie. */
#include "safetensors.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

_Static_assert(sizeof(size_t) >= sizeof(uint64_t), "offsets up to 2^53 must fit in size_t");

/* The reference implementation refuses larger headers; checking first bounds what we allocate. */
#define MAX_HEADER_BYTES 100000000u
/* cJSON keeps numbers as doubles, which hold every integer up to 2^53 exactly. */
#define MAX_EXACT_INT 9007199254740992.0

static const struct {
    const char *name;
    size_t size;
} dtypes[] = {
    [ST_F32] = {"F32", 4}, [ST_BF16] = {"BF16", 2}, [ST_F16] = {"F16", 2}, [ST_F64] = {"F64", 8},
    [ST_I64] = {"I64", 8}, [ST_I32] = {"I32", 4},   [ST_I16] = {"I16", 2}, [ST_I8] = {"I8", 1},
    [ST_U8] = {"U8", 1},   [ST_BOOL] = {"BOOL", 1},
};
enum { N_DTYPES = sizeof dtypes / sizeof dtypes[0] };

const char *st_dtype_name(StDtype d) { return (unsigned)d < N_DTYPES ? dtypes[d].name : "?"; }
size_t st_dtype_size(StDtype d) { return (unsigned)d < N_DTYPES ? dtypes[d].size : 0; }

/* ---- pieces of error messages ---- */

typedef struct {
    char s[200];
} Text;

/* Names come from the file: control bytes are replaced and long names cut, so that an error
 * stays one readable line. */
static Text shown(const char *name) {
    Text t;
    size_t n = 0;
    for (; name[n] && n < 80; n++) {
        unsigned char c = (unsigned char)name[n];
        t.s[n] = c < 0x20 || c == 0x7f ? '?' : (char)c;
    }
    strcpy(t.s + n, name[n] ? "..." : "");
    return t;
}

static Text shape_text(int ndim, const int64_t *shape) {
    Text t;
    size_t n = 0;
    t.s[n++] = '[';
    for (int i = 0; i < ndim && n < sizeof t.s - 24; i++)
        n += (size_t)snprintf(t.s + n, sizeof t.s - n, "%s%" PRId64, i ? ", " : "", shape[i]);
    snprintf(t.s + n, sizeof t.s - n, "]");
    return t;
}

static const char *json_kind(const cJSON *j) {
    if (cJSON_IsObject(j)) return "an object";
    if (cJSON_IsArray(j)) return "an array";
    if (cJSON_IsString(j)) return "a string";
    if (cJSON_IsNumber(j)) return "a number";
    if (cJSON_IsBool(j)) return "a boolean";
    return "null";
}

static Text describe(const cJSON *j) {
    Text t;
    if (cJSON_IsNumber(j)) snprintf(t.s, sizeof t.s, "%.15g", j->valuedouble);
    else snprintf(t.s, sizeof t.s, "%s", json_kind(j));
    return t;
}

/* ---- text checks ---- */

/* Offset of the first byte that is not valid UTF-8 (or, unless controls_ok, is a control byte
 * JSON does not allow outside strings or raw inside them); len when all is well. */
static size_t bad_text_byte(const unsigned char *s, size_t len, bool controls_ok) {
    size_t i = 0;
    while (i < len) {
        unsigned c = s[i];
        if (c < 0x80) {
            if (!controls_ok && c < 0x20 && c != '\t' && c != '\n' && c != '\r') return i;
            i++;
            continue;
        }
        size_t more;
        unsigned lo = 0x80, hi = 0xbf; /* these bounds exclude overlong forms and surrogates */
        if (c >= 0xc2 && c <= 0xdf) more = 1;
        else if (c == 0xe0) more = 2, lo = 0xa0;
        else if (c == 0xed) more = 2, hi = 0x9f;
        else if (c >= 0xe1 && c <= 0xef) more = 2;
        else if (c == 0xf0) more = 3, lo = 0x90;
        else if (c == 0xf4) more = 3, hi = 0x8f;
        else if (c >= 0xf1 && c <= 0xf3) more = 3;
        else return i;
        if (len - i - 1 < more || s[i + 1] < lo || s[i + 1] > hi) return i;
        for (size_t k = 2; k <= more; k++)
            if ((s[i + k] & 0xc0) != 0x80) return i;
        i += more + 1;
    }
    return len;
}

static bool valid_utf8(const char *s) {
    size_t n = strlen(s);
    return bad_text_byte((const unsigned char *)s, n, true) == n;
}

/* cJSON decodes "\u0000" into a NUL that silently cuts the name short, so that a name would
 * differ from what other readers see. Backslashes occur only inside strings in valid JSON, so
 * skipping each escaped character finds exactly the real escapes. */
static bool has_nul_escape(const char *s, size_t len) {
    for (size_t i = 0; i + 1 < len; i++) {
        if (s[i] != '\\') continue;
        if (s[i + 1] == 'u' && len - i >= 6 && memcmp(s + i + 2, "0000", 4) == 0) return true;
        i++;
    }
    return false;
}

static uint64_t load_le64(const unsigned char *p) {
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) v = v << 8 | p[i];
    return v;
}

/* ---- reading ---- */

static int dtype_from_name(const char *s) {
    for (int d = 0; d < N_DTYPES; d++)
        if (strcmp(s, dtypes[d].name) == 0) return d;
    return -1;
}

static bool json_size(const cJSON *j, size_t *out) {
    if (!cJSON_IsNumber(j)) return false;
    double v = j->valuedouble;
    if (!(v >= 0 && v <= MAX_EXACT_INT && v == floor(v))) return false;
    *out = (size_t)v;
    return true;
}

static bool parse_tensor(const char *file, StTensor *t, const cJSON *j, size_t data_len, Error *err) {
    Text name = shown(t->name);
    if (!cJSON_IsObject(j))
        return error_set(err, "%s: tensor '%s': expected an object {dtype, shape, data_offsets}, got %s",
                         file, name.s, json_kind(j));
    const cJSON *dtype = NULL, *shape = NULL, *offsets = NULL;
    for (const cJSON *c = j->child; c; c = c->next) {
        const char *key = c->string ? c->string : "";
        const cJSON **slot = strcmp(key, "dtype") == 0          ? &dtype
                             : strcmp(key, "shape") == 0        ? &shape
                             : strcmp(key, "data_offsets") == 0 ? &offsets
                                                                : NULL;
        if (!slot)
            return error_set(err, "%s: tensor '%s': unknown key '%s' (expected dtype, shape, data_offsets)",
                             file, name.s, shown(key).s);
        if (*slot) return error_set(err, "%s: tensor '%s': duplicate key '%s'", file, name.s, key);
        *slot = c;
    }
    const char *missing = !dtype ? "dtype" : !shape ? "shape" : !offsets ? "data_offsets" : NULL;
    if (missing) return error_set(err, "%s: tensor '%s': missing '%s'", file, name.s, missing);

    if (!cJSON_IsString(dtype))
        return error_set(err, "%s: tensor '%s': dtype is %s, expected a string such as \"F32\"", file,
                         name.s, describe(dtype).s);
    int d = dtype_from_name(dtype->valuestring);
    if (d < 0)
        return error_set(err,
                         "%s: tensor '%s': unknown dtype '%s' (expected F32, BF16, F16, F64, I64, I32, "
                         "I16, I8, U8 or BOOL)",
                         file, name.s, shown(dtype->valuestring).s);
    t->dtype = (StDtype)d;

    if (!cJSON_IsArray(shape))
        return error_set(err, "%s: tensor '%s': shape is %s, expected an array of integers", file, name.s,
                         describe(shape).s);
    int ndim = cJSON_GetArraySize(shape);
    if (ndim > ST_MAX_DIMS)
        return error_set(err, "%s: tensor '%s': shape has %d dims, at most %d are supported", file, name.s,
                         ndim, (int)ST_MAX_DIMS);
    t->ndim = ndim;
    size_t count = 1;
    bool overflow = false;
    int i = 0;
    for (const cJSON *c = shape->child; c; c = c->next, i++) {
        size_t dim;
        if (!json_size(c, &dim))
            return error_set(err, "%s: tensor '%s': shape entry %d is %s, expected an integer >= 0", file,
                             name.s, i, describe(c).s);
        t->shape[i] = (int64_t)dim;
        overflow = overflow || mul_overflows(count, dim, &count);
    }
    size_t nbytes = 0;
    if (overflow || mul_overflows(count, dtypes[d].size, &nbytes))
        return error_set(err, "%s: tensor '%s': shape %s of %s is too large (its byte size overflows)", file,
                         name.s, shape_text(ndim, t->shape).s, dtypes[d].name);
    t->count = count;
    t->nbytes = nbytes;

    size_t range[2];
    if (!cJSON_IsArray(offsets))
        return error_set(err, "%s: tensor '%s': data_offsets is %s, expected [begin, end]", file, name.s,
                         describe(offsets).s);
    if (cJSON_GetArraySize(offsets) != 2)
        return error_set(err, "%s: tensor '%s': data_offsets has %d entries, expected [begin, end]", file, name.s,
                         cJSON_GetArraySize(offsets));
    i = 0;
    for (const cJSON *c = offsets->child; c; c = c->next, i++)
        if (!json_size(c, &range[i]))
            return error_set(err, "%s: tensor '%s': data_offsets entry %d is %s, expected an integer >= 0",
                             file, name.s, i, describe(c).s);
    if (range[1] < range[0])
        return error_set(err, "%s: tensor '%s': data_offsets [%zu, %zu] end before they begin", file, name.s,
                         range[0], range[1]);
    if (range[1] - range[0] != nbytes)
        return error_set(err, "%s: tensor '%s': data_offsets [%zu, %zu] do not match shape %s of %s (%zu bytes)",
                         file, name.s, range[0], range[1], shape_text(ndim, t->shape).s, dtypes[d].name,
                         nbytes);
    if (range[1] > data_len)
        return error_set(err,
                         "%s: tensor '%s': data_offsets [%zu, %zu] run past the end of the data section "
                         "(%zu bytes; file truncated?)",
                         file, name.s, range[0], range[1], data_len);
    t->begin = range[0];
    return true;
}

static int by_name(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static int by_offset(const void *a, const void *b) {
    const StTensor *x = *(const StTensor *const *)a, *y = *(const StTensor *const *)b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    if (x->nbytes != y->nbytes) return x->nbytes < y->nbytes ? -1 : 1;
    return (x > y) - (x < y);
}

/* Names are compared sorted, since checkpoints can hold thousands of tensors. */
static const char *find_duplicate(char *const *names, int n) {
    if (n < 2) return NULL;
    char **sorted = xmalloc(sizeof *sorted * (size_t)n);
    memcpy(sorted, names, sizeof *sorted * (size_t)n);
    qsort(sorted, (size_t)n, sizeof *sorted, by_name);
    const char *dup = NULL;
    for (int i = 1; i < n && !dup; i++)
        if (strcmp(sorted[i - 1], sorted[i]) == 0) dup = sorted[i];
    free(sorted);
    return dup;
}

/* Like the reference implementation, the tensors must tile the data section exactly: sorted by
 * offset, each begins where the previous one ended and the last one ends the file. */
static bool check_coverage(const StFile *f, Error *err) {
    int n = f->n_tensors;
    const StTensor **order = xmalloc(sizeof *order * (size_t)(n ? n : 1));
    for (int i = 0; i < n; i++) order[i] = &f->tensors[i];
    qsort(order, (size_t)n, sizeof *order, by_offset);
    bool ok = true;
    size_t at = 0;
    const StTensor *prev = NULL;
    for (int i = 0; i < n && ok; i++) {
        const StTensor *t = order[i];
        if (t->begin < at)
            ok = error_set(err, "%s: tensors '%s' [%zu, %zu] and '%s' [%zu, %zu] overlap", f->path,
                           shown(prev->name).s, prev->begin, prev->begin + prev->nbytes, shown(t->name).s,
                           t->begin, t->begin + t->nbytes);
        else if (t->begin > at && prev)
            ok = error_set(err, "%s: hole in the data section: bytes [%zu, %zu] between '%s' and '%s' belong to no tensor",
                           f->path, at, t->begin, shown(prev->name).s, shown(t->name).s);
        else if (t->begin > at)
            ok = error_set(err, "%s: hole in the data section: bytes [0, %zu] before '%s' belong to no tensor",
                           f->path, t->begin, shown(t->name).s);
        at = t->begin + t->nbytes;
        prev = t;
    }
    if (ok && at != f->data_len)
        ok = error_set(err, "%s: data section has %zu bytes but the tensors end at byte %zu (trailing bytes belong to no tensor)",
                       f->path, f->data_len, at);
    free(order);
    return ok;
}

static bool parse_metadata(StFile *f, const cJSON *m, Error *err) {
    if (!cJSON_IsObject(m))
        return error_set(err, "%s: __metadata__ is %s, expected an object of strings", f->path, json_kind(m));
    int n = cJSON_GetArraySize(m);
    f->meta_keys = xcalloc((size_t)n, sizeof(char *));
    f->meta_values = xcalloc((size_t)n, sizeof(char *));
    f->n_meta = n;
    int i = 0;
    for (const cJSON *c = m->child; c; c = c->next, i++) {
        const char *key = c->string ? c->string : "";
        if (!cJSON_IsString(c))
            return error_set(err, "%s: metadata '%s' is %s, expected a string", f->path, shown(key).s,
                             describe(c).s);
        f->meta_keys[i] = xstrdup(key);
        f->meta_values[i] = xstrdup(c->valuestring);
    }
    const char *dup = find_duplicate(f->meta_keys, n);
    if (dup) return error_set(err, "%s: duplicate metadata key '%s'", f->path, shown(dup).s);
    return true;
}

static bool parse_json(StFile *f, const cJSON *root, Error *err) {
    const cJSON *meta = NULL;
    int n = 0;
    for (const cJSON *c = root->child; c; c = c->next) {
        if (c->string && strcmp(c->string, "__metadata__") == 0) {
            if (meta) return error_set(err, "%s: duplicate key '__metadata__'", f->path);
            meta = c;
        } else {
            n++;
        }
    }
    if (meta && !parse_metadata(f, meta, err)) return false;
    f->tensors = xcalloc((size_t)(n ? n : 1), sizeof(StTensor));
    f->n_tensors = n;
    int i = 0;
    for (const cJSON *c = root->child; c; c = c->next) {
        if (c == meta) continue;
        StTensor *t = &f->tensors[i++];
        t->name = xstrdup(c->string ? c->string : "");
        if (!parse_tensor(f->path, t, c, f->data_len, err)) return false;
    }
    char **names = xmalloc(sizeof *names * (size_t)(n ? n : 1));
    for (i = 0; i < n; i++) names[i] = f->tensors[i].name;
    const char *dup = find_duplicate(names, n);
    bool ok = dup ? error_set(err, "%s: duplicate tensor name '%s'", f->path, shown(dup).s) : true;
    free(names);
    return ok && check_coverage(f, err);
}

/* buf holds the first buf_len bytes of a file of len bytes: all of it, or (st_read_header) the
 * header length and the header. */
static bool parse_buffer(StFile *f, const unsigned char *buf, size_t buf_len, size_t len, Error *err) {
    const char *file = f->path;
    if (len < 8)
        return error_set(err, "%s: file has %zu bytes, too short for the 8-byte header length (not a safetensors file?)",
                         file, len);
    uint64_t hlen = load_le64(buf);
    if (hlen > MAX_HEADER_BYTES)
        return error_set(err, "%s: header length %" PRIu64 " is too large (at most %u; not a safetensors file?)", file,
                         hlen, MAX_HEADER_BYTES);
    if (hlen > len - 8)
        return error_set(err, "%s: header length %" PRIu64 " runs past the end of the file (%zu bytes follow it)",
                         file, hlen, len - 8);
    const unsigned char *header = buf + 8;
    size_t n = (size_t)hlen;
    if (buf_len < 8 + n) return error_set(err, "%s: the header could not be read whole", file);
    /* The reference implementation insists on '{' first; only trailing padding is allowed. */
    if (n == 0 || header[0] != '{')
        return error_set(err, "%s: header does not start with '{' (expected a JSON object)", file);
    size_t bad = bad_text_byte(header, n, false);
    if (bad < n && header[bad] < 0x20)
        return error_set(err, "%s: header has control byte 0x%02x at byte %zu (expected JSON text)", file,
                         header[bad], bad);
    if (bad < n) return error_set(err, "%s: header is not valid UTF-8 (byte %zu)", file, bad);

    /* A NUL-terminated copy, so that cJSON cannot run past the header even if its length
     * handling were wrong. */
    char *text = xmalloc(n + 1);
    memcpy(text, header, n);
    text[n] = '\0';
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(text, n, &end, false);
    bool ok = true;
    if (!root) {
        size_t at = end && end >= text && end <= text + n ? (size_t)(end - text) : 0;
        ok = error_set(err, "%s: header is not valid JSON (near byte %zu)", file, at);
    } else {
        size_t at = (size_t)(end - text);
        while (at < n && strchr(" \t\n\r", text[at])) at++;
        if (at < n)
            ok = error_set(err, "%s: header has bytes after the JSON object at byte %zu (only whitespace padding is allowed)",
                           file, at);
        else if (!cJSON_IsObject(root))
            ok = error_set(err, "%s: header is %s, expected a JSON object", file, json_kind(root));
        else if (has_nul_escape(text, n))
            ok = error_set(err, "%s: header has a \\u0000 escape (NUL bytes are not allowed in names or metadata)",
                           file);
    }
    free(text);
    if (ok) {
        f->data = buf_len == len ? (unsigned char *)buf + 8 + n : NULL;
        f->data_len = len - 8 - n;
        ok = parse_json(f, root, err);
    }
    cJSON_Delete(root);
    return ok;
}

/* Takes ownership of buf, which then lives as long as f. */
static bool parse_owned(StFile *f, unsigned char *buf, size_t len, const char *name, Error *err) {
    memset(f, 0, sizeof *f);
    f->path = xstrdup(name);
    f->file_buf = buf;
    if (!parse_buffer(f, buf, len, len, err)) {
        st_free(f);
        return false;
    }
    return true;
}

bool st_read(StFile *f, const char *path, Error *err) {
    memset(f, 0, sizeof *f);
    size_t len = 0;
    char *buf = read_file(path, &len, err);
    return buf && parse_owned(f, (unsigned char *)buf, len, path, err);
}

bool st_read_header(StFile *f, const char *path, Error *err) {
    memset(f, 0, sizeof *f);
    f->path = xstrdup(path);
    FILE *in = fopen(path, "rb");
    if (!in) {
        error_set(err, "cannot open '%s': %s", path, strerror(errno));
        st_free(f);
        return false;
    }
    unsigned char len8[8];
    struct stat sb;
    bool ok = fstat(fileno(in), &sb) == 0;
    size_t len = ok ? (size_t)sb.st_size : 0, n = 0;
    if (ok && len >= 8) ok = fread(len8, 1, 8, in) == 8;
    if (ok && len >= 8) {
        uint64_t hlen = load_le64(len8);
        n = hlen <= MAX_HEADER_BYTES && hlen <= len - 8 ? (size_t)hlen : 0;
    }
    unsigned char *buf = xmalloc(8 + n);
    memcpy(buf, len8, len >= 8 ? 8 : 0);
    size_t got = len >= 8 ? 8 + fread(buf + 8, 1, n, in) : 0;
    fclose(in);
    f->file_buf = buf;
    if (!ok) error_set(err, "cannot read '%s': %s", path, strerror(errno));
    /* a short or oversized header is reported by parse_buffer, as st_read would */
    if (!ok || !parse_buffer(f, buf, got, len, err)) {
        st_free(f);
        return false;
    }
    return true;
}

bool st_parse(StFile *f, const void *bytes, size_t len, const char *name, Error *err) {
    /* A copy, so that the StFile never points into the caller's (or the fuzzer's) buffer. */
    unsigned char *buf = xmalloc(len);
    if (len) memcpy(buf, bytes, len);
    return parse_owned(f, buf, len, name, err);
}

void st_free(StFile *f) {
    for (int i = 0; f->tensors && i < f->n_tensors; i++) free(f->tensors[i].name);
    free(f->tensors);
    for (int i = 0; i < f->n_meta; i++) {
        if (f->meta_keys) free(f->meta_keys[i]);
        if (f->meta_values) free(f->meta_values[i]);
    }
    free(f->meta_keys);
    free(f->meta_values);
    free(f->path);
    free(f->file_buf);
    memset(f, 0, sizeof *f);
}

const StTensor *st_find(const StFile *f, const char *name) {
    for (int i = 0; i < f->n_tensors; i++)
        if (strcmp(f->tensors[i].name, name) == 0) return &f->tensors[i];
    return NULL;
}

const char *st_meta(const StFile *f, const char *key) {
    for (int i = 0; i < f->n_meta; i++)
        if (strcmp(f->meta_keys[i], key) == 0) return f->meta_values[i];
    return NULL;
}

bool st_get_f32(const StFile *f, const char *name, int ndim, const int64_t *shape, float *out, Error *err) {
    const StTensor *t = st_find(f, name);
    if (!t) {
        const char *best = NULL;
        int best_d = (int)strlen(name) / 4 + 2;
        for (int i = 0; i < f->n_tensors; i++) {
            int d = edit_distance(name, f->tensors[i].name);
            if (d <= best_d) best_d = d, best = f->tensors[i].name;
        }
        if (best) return error_set(err, "%s: no tensor '%s' (did you mean '%s'?)", f->path, name, shown(best).s);
        return error_set(err, "%s: no tensor '%s'", f->path, name);
    }
    if (t->dtype != ST_F32 && t->dtype != ST_BF16 && t->dtype != ST_F16)
        return error_set(err, "%s: tensor '%s' is %s, expected F32, BF16 or F16", f->path, name,
                         st_dtype_name(t->dtype));
    if (ndim >= 0) {
        bool same = t->ndim == ndim;
        for (int i = 0; same && i < ndim; i++) same = t->shape[i] == shape[i];
        if (!same)
            return error_set(err, "%s: tensor '%s' has shape %s, expected %s", f->path, name,
                             shape_text(t->ndim, t->shape).s, shape_text(ndim, shape).s);
    }
    const unsigned char *p = f->data + t->begin;
    if (t->dtype == ST_F32) {
        if (t->nbytes) memcpy(out, p, t->nbytes);
        return true;
    }
    for (size_t i = 0; i < t->count; i++) {
        uint16_t h = (uint16_t)(p[2 * i] | p[2 * i + 1] << 8);
        out[i] = t->dtype == ST_BF16 ? st_bf16_to_f32(h) : st_f16_to_f32(h);
    }
    return true;
}

/* ---- writing ---- */

typedef struct {
    char *name;
    StDtype dtype;
    int ndim;
    int64_t shape[ST_MAX_DIMS];
    size_t nbytes;
    const void *data;
} WriterTensor;

struct StWriter {
    WriterTensor *tensors;
    int n_tensors, cap_tensors;
    char **keys, **values;
    int n_meta, cap_meta;
};

StWriter *st_writer_new(void) { return xcalloc(1, sizeof(StWriter)); }

/* A later value for the same key replaces the earlier one (e.g. updating the step). */
void st_writer_meta(StWriter *w, const char *key, const char *value) {
    for (int i = 0; i < w->n_meta; i++) {
        if (strcmp(w->keys[i], key) == 0) {
            free(w->values[i]);
            w->values[i] = xstrdup(value);
            return;
        }
    }
    if (w->n_meta == w->cap_meta) {
        w->cap_meta = w->cap_meta ? 2 * w->cap_meta : 8;
        w->keys = xrealloc(w->keys, sizeof(char *) * (size_t)w->cap_meta);
        w->values = xrealloc(w->values, sizeof(char *) * (size_t)w->cap_meta);
    }
    w->keys[w->n_meta] = xstrdup(key);
    w->values[w->n_meta] = xstrdup(value);
    w->n_meta++;
}

void st_writer_add(StWriter *w, const char *name, StDtype dtype, int ndim, const int64_t *shape, const void *data) {
    if ((unsigned)dtype >= N_DTYPES) die("internal: st_writer_add('%s'): bad dtype %d", name, (int)dtype);
    if (ndim < 0 || ndim > ST_MAX_DIMS) die("internal: st_writer_add('%s'): %d dims", name, ndim);
    if (w->n_tensors == w->cap_tensors) {
        w->cap_tensors = w->cap_tensors ? 2 * w->cap_tensors : 16;
        w->tensors = xrealloc(w->tensors, sizeof(WriterTensor) * (size_t)w->cap_tensors);
    }
    WriterTensor *t = &w->tensors[w->n_tensors];
    memset(t, 0, sizeof *t);
    size_t count = 1;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] < 0 || (double)shape[i] > MAX_EXACT_INT || mul_overflows(count, (size_t)shape[i], &count))
            die("internal: st_writer_add('%s'): bad shape %s", name, shape_text(ndim, shape).s);
        t->shape[i] = shape[i];
    }
    if (mul_overflows(count, dtypes[dtype].size, &t->nbytes))
        die("internal: st_writer_add('%s'): shape %s too large", name, shape_text(ndim, shape).s);
    t->name = xstrdup(name);
    t->dtype = dtype;
    t->ndim = ndim;
    t->data = data;
    w->n_tensors++;
}

void st_writer_free(StWriter *w) {
    if (!w) return;
    for (int i = 0; i < w->n_tensors; i++) free(w->tensors[i].name);
    for (int i = 0; i < w->n_meta; i++) {
        free(w->keys[i]);
        free(w->values[i]);
    }
    free(w->tensors);
    free(w->keys);
    free(w->values);
    free(w);
}

/* Refuses what would make a file our own reader (and the reference one) rejects. */
static bool writer_check(const StWriter *w, const char *path, Error *err) {
    char **names = xmalloc(sizeof *names * (size_t)(w->n_tensors ? w->n_tensors : 1));
    bool ok = true;
    for (int i = 0; i < w->n_tensors && ok; i++) {
        names[i] = w->tensors[i].name;
        if (!valid_utf8(names[i]))
            ok = error_set(err, "cannot write '%s': tensor name '%s' is not valid UTF-8", path, shown(names[i]).s);
        else if (strcmp(names[i], "__metadata__") == 0)
            ok = error_set(err, "cannot write '%s': '__metadata__' is reserved, not a tensor name", path);
        else if (w->tensors[i].nbytes && !w->tensors[i].data)
            ok = error_set(err, "cannot write '%s': tensor '%s' has no data", path, shown(names[i]).s);
    }
    const char *dup = ok ? find_duplicate(names, w->n_tensors) : NULL;
    if (dup) ok = error_set(err, "cannot write '%s': two tensors are named '%s'", path, shown(dup).s);
    free(names);
    for (int i = 0; i < w->n_meta && ok; i++)
        if (!valid_utf8(w->keys[i]) || !valid_utf8(w->values[i]))
            ok = error_set(err, "cannot write '%s': metadata '%s' is not valid UTF-8", path, shown(w->keys[i]).s);
    return ok;
}

static cJSON *must(cJSON *j) {
    if (!j) die("out of memory building a safetensors header");
    return j;
}

/* Integers go in as raw text: cJSON would print large doubles in exponent form, which readers
 * that parse integers (the reference one) reject. */
static void add_int(cJSON *array, size_t v) {
    char buf[32];
    snprintf(buf, sizeof buf, "%zu", v);
    if (!cJSON_AddItemToArray(array, must(cJSON_CreateRaw(buf)))) die("out of memory building a safetensors header");
}

/* The header text padded with spaces so that the data section starts 8-byte aligned. */
static char *build_header(const StWriter *w, size_t *len) {
    cJSON *root = must(cJSON_CreateObject());
    if (w->n_meta) {
        cJSON *meta = must(cJSON_AddObjectToObject(root, "__metadata__"));
        for (int i = 0; i < w->n_meta; i++) must(cJSON_AddStringToObject(meta, w->keys[i], w->values[i]));
    }
    size_t offset = 0;
    for (int i = 0; i < w->n_tensors; i++) {
        const WriterTensor *t = &w->tensors[i];
        cJSON *o = must(cJSON_AddObjectToObject(root, t->name));
        must(cJSON_AddStringToObject(o, "dtype", dtypes[t->dtype].name));
        cJSON *shape = must(cJSON_AddArrayToObject(o, "shape"));
        for (int d = 0; d < t->ndim; d++) add_int(shape, (size_t)t->shape[d]);
        cJSON *offsets = must(cJSON_AddArrayToObject(o, "data_offsets"));
        add_int(offsets, offset);
        if (__builtin_add_overflow(offset, t->nbytes, &offset) || (double)offset > MAX_EXACT_INT)
            die("internal: safetensors data section too large");
        add_int(offsets, offset);
    }
    char *text = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    if (!text) die("out of memory building a safetensors header");
    size_t n = strlen(text), padded = (n + 7) & ~(size_t)7;
    char *out = xmalloc(padded);
    memcpy(out, text, n);
    memset(out + n, ' ', padded - n);
    cJSON_free(text);
    *len = padded;
    return out;
}

bool st_writer_save(StWriter *w, const char *path, Error *err) {
    if (!writer_check(w, path, err)) return false;
    size_t hlen;
    char *header = build_header(w, &hlen);
    AtomicFile af;
    if (!atomic_open(&af, path, err)) {
        free(header);
        return false;
    }
    unsigned char len_bytes[8];
    for (int i = 0; i < 8; i++) len_bytes[i] = (unsigned char)((uint64_t)hlen >> (8 * i));
    bool ok = fwrite(len_bytes, 1, 8, af.f) == 8 && fwrite(header, 1, hlen, af.f) == hlen;
    for (int i = 0; i < w->n_tensors && ok; i++) {
        const WriterTensor *t = &w->tensors[i];
        if (t->nbytes) ok = fwrite(t->data, 1, t->nbytes, af.f) == t->nbytes;
    }
    free(header);
    if (!ok) {
        int saved = errno;
        atomic_abort(&af);
        return error_set(err, "cannot write '%s': %s", path, strerror(saved));
    }
    return atomic_commit(&af, err);
}

/* ---- 16-bit floats ---- */

float st_bf16_to_f32(uint16_t h) {
    uint32_t bits = (uint32_t)h << 16;
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

uint16_t st_f32_to_bf16(float f) {
    uint32_t b;
    memcpy(&b, &f, sizeof b);
    /* Rounding could carry a NaN's payload into the exponent and make it infinity. */
    if ((b & 0x7fffffffu) > 0x7f800000u) return (uint16_t)(b >> 16 | 0x0040);
    b += 0x7fffu + (b >> 16 & 1);
    return (uint16_t)(b >> 16);
}

float st_f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000) << 16, exp = h >> 10 & 0x1f, man = h & 0x3ff, bits;
    if (exp == 0x1f) bits = sign | 0x7f800000u | man << 13;
    else if (exp) bits = sign | (exp + 112) << 23 | man << 13;
    else if (!man) bits = sign;
    else {
        float v = ldexpf((float)man, -24); /* subnormal: exact in float */
        return sign ? -v : v;
    }
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}
