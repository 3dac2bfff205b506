/* safetensors: round trips through the writer and reader, the exact header our writer emits,
 * bf16/f16 conversions, and a battery of hostile files that the reader must refuse by name. */
#include <dirent.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "core/io/safetensors.h"
#include "core/util.h"
#include "test.h"

/* ---- helpers ---- */

/* Bodies that make temporary files return NULL or why they failed, so that the TEST can remove
 * the directory before it reports. */
static char why[2048];
#define EXPECT(cond, ...)                                                                  \
    do {                                                                                   \
        if (!(cond)) {                                                                     \
            snprintf(why, sizeof why, __VA_ARGS__);                                        \
            return why;                                                                    \
        }                                                                                  \
    } while (0)

static char *make_tmpdir(void) {
    char *dir = xstrdup("/tmp/attnlab_st_XXXXXX");
    if (!mkdtemp(dir)) {
        free(dir);
        return NULL;
    }
    return dir;
}

static int count_entries(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return -1;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) n++;
    closedir(d);
    return n;
}

typedef struct {
    unsigned char *bytes;
    size_t len;
} Bytes;

/* A file with an explicit header length field, so that the field can lie about the header. */
static Bytes file_with_length(uint64_t hlen, const char *header, size_t header_len, size_t data_len) {
    Bytes b = {.len = 8 + header_len + data_len};
    b.bytes = xcalloc(b.len, 1);
    for (int i = 0; i < 8; i++) b.bytes[i] = (unsigned char)(hlen >> (8 * i));
    memcpy(b.bytes + 8, header, header_len);
    for (size_t i = 0; i < data_len; i++) b.bytes[8 + header_len + i] = (unsigned char)(i * 7 + 1);
    return b;
}

static Bytes file_of(const char *header, size_t data_len) {
    return file_with_length(strlen(header), header, strlen(header), data_len);
}

/* NULL when the bytes are refused cleanly with `phrase` in a one-line message naming the file. */
static const char *refusal_problem(Bytes b, const char *phrase) {
    StFile f;
    Error err = {{0}};
    bool ok = st_parse(&f, b.bytes, b.len, "hostile.safetensors", &err);
    free(b.bytes);
    if (ok) {
        st_free(&f);
        return "accepted";
    }
    if (f.tensors || f.file_buf || f.path || f.n_tensors || f.meta_keys)
        return "left a half-filled StFile behind";
    if (strncmp(err.msg, "hostile.safetensors: ", 21) != 0) {
        snprintf(why, sizeof why, "message does not start with the file name: %s", err.msg);
        return why;
    }
    if (strchr(err.msg, '\n')) {
        snprintf(why, sizeof why, "message is not one line: %s", err.msg);
        return why;
    }
    if (!strstr(err.msg, phrase)) {
        snprintf(why, sizeof why, "message \"%s\" lacks \"%s\"", err.msg, phrase);
        return why;
    }
    return NULL;
}

typedef struct {
    const char *what, *header;
    size_t data_len;
    const char *phrase;
} HostileCase;

static const char *run_cases(const HostileCase *cases, int n) {
    for (int i = 0; i < n; i++) {
        const char *p = refusal_problem(file_of(cases[i].header, cases[i].data_len), cases[i].phrase);
        if (p) {
            static char buf[2200];
            snprintf(buf, sizeof buf, "%s: %s", cases[i].what, p);
            return buf;
        }
    }
    return NULL;
}

/* ---- round trips ---- */

static const char *round_trip_body(const char *dir) {
    float f32[6] = {1.5f, -2.25f, 0.0f, 3.0e38f, -1e-30f, 7.0f};
    uint16_t bf16[4] = {0x3f80, 0xc000, 0x7f80, 0x0001};
    uint16_t f16[3] = {0x3c00, 0x7bff, 0x8001};
    double f64[2] = {3.141592653589793, -1e300};
    int64_t i64 = -1234567890123456789LL;
    int32_t i32[2] = {-7, 2147483647};
    int16_t i16[5] = {1, -2, 3, -4, 32767};
    int8_t i8_none[1] = {0};
    uint8_t u8[8] = {0, 1, 2, 3, 250, 251, 252, 255};
    uint8_t flags[3] = {1, 0, 1};
    struct {
        const char *name;
        StDtype dtype;
        int ndim;
        int64_t shape[3];
        const void *data;
    } src[] = {
        {"layers.0.w", ST_F32, 2, {2, 3}, f32},  {"bf", ST_BF16, 1, {4}, bf16},  {"half", ST_F16, 1, {3}, f16},
        {"f64", ST_F64, 1, {2}, f64},            {"step", ST_I64, 0, {0}, &i64}, {"i32", ST_I32, 2, {2, 1}, i32},
        {"i16", ST_I16, 1, {5}, i16},            {"empty", ST_I8, 1, {0}, i8_none},
        {"u8", ST_U8, 3, {2, 2, 2}, u8},         {"mask", ST_BOOL, 1, {3}, flags},
    };
    int n = (int)(sizeof src / sizeof src[0]);
    const char *config = "name = \"x\"\n\tpath = 'a\\b' -- caf\xc3\xa9 \xe2\x80\x94 \xf0\x9f\x99\x82";

    StWriter *w = st_writer_new();
    st_writer_meta(w, "step", "1");
    st_writer_meta(w, "config", config);
    st_writer_meta(w, "empty", "");
    st_writer_meta(w, "step", "1200");
    for (int i = 0; i < n; i++) st_writer_add(w, src[i].name, src[i].dtype, src[i].ndim, src[i].shape, src[i].data);
    char *path = xasprintf("%s/ckpt.safetensors", dir);
    Error err = {{0}};
    bool saved = st_writer_save(w, path, &err);
    st_writer_free(w);
    EXPECT(saved, "save failed: %s", err.msg);
    EXPECT(count_entries(dir) == 1, "expected only the file in %s, found %d entries", dir, count_entries(dir));

    StFile f;
    EXPECT(st_read(&f, path, &err), "read failed: %s", err.msg);
    free(path);
    EXPECT(f.n_tensors == n, "%d tensors read, %d written", f.n_tensors, n);
    size_t total = 0;
    for (int i = 0; i < n; i++) {
        const StTensor *t = &f.tensors[i];
        EXPECT(strcmp(t->name, src[i].name) == 0, "tensor %d is '%s', expected '%s' (order kept)", i, t->name,
               src[i].name);
        EXPECT(st_find(&f, src[i].name) == t, "st_find('%s')", src[i].name);
        EXPECT(t->dtype == src[i].dtype, "'%s': dtype %s", t->name, st_dtype_name(t->dtype));
        EXPECT(t->ndim == src[i].ndim, "'%s': ndim %d, expected %d", t->name, t->ndim, src[i].ndim);
        size_t count = 1;
        for (int d = 0; d < t->ndim; d++) {
            EXPECT(t->shape[d] == src[i].shape[d], "'%s': dim %d", t->name, d);
            count *= (size_t)src[i].shape[d];
        }
        EXPECT(t->count == count, "'%s': count %zu, expected %zu", t->name, t->count, count);
        EXPECT(t->nbytes == count * st_dtype_size(t->dtype), "'%s': nbytes %zu", t->name, t->nbytes);
        EXPECT(t->begin == total, "'%s': begins at %zu, expected %zu (written in order)", t->name, t->begin, total);
        EXPECT(t->nbytes == 0 || memcmp(f.data + t->begin, src[i].data, t->nbytes) == 0, "'%s': bytes differ",
               t->name);
        total += t->nbytes;
    }
    EXPECT(f.data_len == total, "data section %zu bytes, expected %zu", f.data_len, total);
    EXPECT((f.data - (unsigned char *)f.file_buf) % 8 == 0, "data section is not 8-byte aligned");
    EXPECT(f.n_meta == 3, "%d metadata entries, expected 3", f.n_meta);
    EXPECT(st_meta(&f, "step") && strcmp(st_meta(&f, "step"), "1200") == 0, "step is '%s', expected the later value",
           st_meta(&f, "step") ? st_meta(&f, "step") : "(absent)");
    EXPECT(st_meta(&f, "config") && strcmp(st_meta(&f, "config"), config) == 0, "config text did not survive");
    EXPECT(st_meta(&f, "empty") && !*st_meta(&f, "empty"), "empty value");
    EXPECT(!st_meta(&f, "missing"), "st_meta of a missing key is not NULL");
    EXPECT(!st_find(&f, "missing"), "st_find of a missing name is not NULL");

    /* st_parse must not keep pointing into the caller's buffer. */
    size_t len = (size_t)((unsigned char *)f.data + f.data_len - (unsigned char *)f.file_buf);
    unsigned char *copy = xmalloc(len);
    memcpy(copy, f.file_buf, len);
    st_free(&f);
    EXPECT(!f.tensors && !f.file_buf && f.n_tensors == 0, "st_free leaves the StFile zeroed");
    StFile g;
    EXPECT(st_parse(&g, copy, len, "copy", &err), "parse of the same bytes failed: %s", err.msg);
    memset(copy, 0xff, len);
    free(copy);
    EXPECT(memcmp(g.data + st_find(&g, "f64")->begin, f64, sizeof f64) == 0, "st_parse kept the caller's buffer");
    st_free(&g);
    return NULL;
}

TEST(test_st_round_trip_keeps_bytes_shapes_order_and_metadata) {
    char *dir = make_tmpdir();
    CHECK(dir, "mkdtemp failed");
    const char *problem = round_trip_body(dir);
    remove_tree(dir);
    free(dir);
    CHECK(!problem, "%s", problem);
}

static const char *header_body(const char *dir) {
    float w[2] = {1, 2};
    int64_t shape = 2, big[2] = {1000000000000000LL, 0};
    StWriter *wr = st_writer_new();
    st_writer_meta(wr, "k", "v");
    st_writer_add(wr, "w", ST_F32, 1, &shape, w);
    st_writer_add(wr, "big", ST_U8, 2, big, NULL);
    char *path = xasprintf("%s/h.safetensors", dir);
    Error err = {{0}};
    bool saved = st_writer_save(wr, path, &err);
    st_writer_free(wr);
    EXPECT(saved, "save failed: %s", err.msg);
    size_t len;
    char *bytes = read_file(path, &len, &err);
    free(path);
    EXPECT(bytes, "%s", err.msg);
    /* Integers must be written as digits (1e+15 would be refused by integer-parsing readers). */
    const char *json = "{\"__metadata__\":{\"k\":\"v\"},\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                       "\"big\":{\"dtype\":\"U8\",\"shape\":[1000000000000000,0],\"data_offsets\":[8,8]}}";
    size_t n = strlen(json), padded = (n + 7) / 8 * 8;
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = hlen << 8 | (unsigned char)bytes[i];
    bool ok = len >= 8 && hlen == padded && len == 8 + padded + 8 && memcmp(bytes + 8, json, n) == 0;
    for (size_t i = n; ok && i < padded; i++) ok = bytes[8 + i] == ' ';
    ok = ok && memcmp(bytes + 8 + padded, w, 8) == 0;
    if (!ok) snprintf(why, sizeof why, "header is %.*s (length field %llu), expected %s padded to %zu", (int)(len - 8),
                      bytes + 8, (unsigned long long)hlen, json, padded);
    free(bytes);
    return ok ? NULL : why;
}

TEST(test_st_writer_header_is_exact_integer_json_padded_to_8) {
    char *dir = make_tmpdir();
    CHECK(dir, "mkdtemp failed");
    const char *problem = header_body(dir);
    remove_tree(dir);
    free(dir);
    CHECK(!problem, "%s", problem);
}

TEST(test_st_accepts_valid_layouts_of_other_writers) {
    struct {
        const char *header;
        size_t data_len;
        int n_tensors;
    } ok_cases[] = {
        {"{}", 0, 0},
        {"{}      ", 0, 0},
        {"{} \n\t\r", 0, 0},
        {"{\"__metadata__\":{}}", 0, 0},
        /* header order differs from data order, as the reference writer sorts by dtype */
        {"{\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]},"
         "\"a\":{\"data_offsets\":[0,4],\"shape\":[1],\"dtype\":\"F32\"}}",
         8, 2},
        /* zero-size tensors may sit anywhere, even at the same offset */
        {"{\"z\":{\"dtype\":\"F32\",\"shape\":[0,3],\"data_offsets\":[0,0]},"
         "\"a\":{\"dtype\":\"I32\",\"shape\":[1],\"data_offsets\":[0,4]},"
         "\"z2\":{\"dtype\":\"BF16\",\"shape\":[5,0],\"data_offsets\":[4,4]},"
         "\"z3\":{\"dtype\":\"U8\",\"shape\":[0],\"data_offsets\":[4,4]}}",
         4, 4},
        {"{\"s\":{\"dtype\":\"I64\",\"shape\":[],\"data_offsets\":[0,8]}}  ", 8, 1},
        {"{\"caf\xc3\xa9 \xf0\x9f\x99\x82\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[0,2]}}", 2, 1},
    };
    for (size_t i = 0; i < sizeof ok_cases / sizeof ok_cases[0]; i++) {
        Bytes b = file_of(ok_cases[i].header, ok_cases[i].data_len);
        StFile f;
        Error err = {{0}};
        bool ok = st_parse(&f, b.bytes, b.len, "valid.safetensors", &err);
        free(b.bytes);
        CHECK(ok, "case %zu refused: %s", i, err.msg);
        int n = f.n_tensors;
        st_free(&f);
        CHECK(n == ok_cases[i].n_tensors, "case %zu: %d tensors, expected %d", i, n, ok_cases[i].n_tensors);
    }
    Bytes b = file_of(ok_cases[4].header, 8);
    StFile f;
    Error err;
    CHECK(st_parse(&f, b.bytes, b.len, "x", &err), "%s", err.msg);
    free(b.bytes);
    bool order = strcmp(f.tensors[0].name, "b") == 0 && f.tensors[0].begin == 4 && f.tensors[1].begin == 0;
    st_free(&f);
    CHECK(order, "tensors are not kept in header order with their own offsets");
    b = file_of(ok_cases[6].header, 8);
    CHECK(st_parse(&f, b.bytes, b.len, "x", &err), "%s", err.msg);
    free(b.bytes);
    bool scalar_ok = f.tensors[0].ndim == 0 && f.tensors[0].count == 1 && f.tensors[0].nbytes == 8;
    st_free(&f);
    CHECK(scalar_ok, "scalar tensor: ndim 0, count 1, 8 bytes expected");
}

/* ---- conversions ---- */

static uint32_t bits_of(float f) {
    uint32_t b;
    memcpy(&b, &f, 4);
    return b;
}

static float float_of(uint32_t b) {
    float f;
    memcpy(&f, &b, 4);
    return f;
}

TEST(test_st_bf16_known_values_and_round_to_nearest_even) {
    struct {
        uint32_t f32;
        uint16_t bf16;
    } cases[] = {
        {0x3f800000, 0x3f80}, /* 1.0 */
        {0xc0000000, 0xc000}, /* -2.0 */
        {0x00000000, 0x0000}, {0x80000000, 0x8000}, {0x7f800000, 0x7f80}, {0xff800000, 0xff80},
        {0x40490fdb, 0x4049}, /* pi -> 3.140625 (below half) */
        {0x3f808000, 0x3f80}, /* exactly halfway, tie to the even 0x3f80 */
        {0x3f818000, 0x3f82}, /* exactly halfway, tie to the even 0x3f82 */
        {0xbf818000, 0xbf82}, /* negative tie */
        {0x3f808001, 0x3f81}, /* just above half rounds up */
        {0x3f807fff, 0x3f80}, /* just below half rounds down */
        {0x3f80ffff, 0x3f81}, /* carries into the next value */
        {0x7f7fffff, 0x7f80}, /* largest float rounds to infinity */
        {0x00018000, 0x0002}, /* subnormal tie to even */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        uint16_t got = st_f32_to_bf16(float_of(cases[i].f32));
        CHECK(got == cases[i].bf16, "f32 0x%08x -> bf16 0x%04x, expected 0x%04x", cases[i].f32, got, cases[i].bf16);
    }
    CHECK(st_bf16_to_f32(0x3f80) == 1.0f, "0x3f80 -> %g", st_bf16_to_f32(0x3f80));
    CHECK(st_bf16_to_f32(0x4049) == 3.140625f, "0x4049 -> %g", st_bf16_to_f32(0x4049));
    CHECK(st_bf16_to_f32(0xc2f7) == -123.5f, "0xc2f7 -> %g", st_bf16_to_f32(0xc2f7));
    /* NaN stays NaN, even one whose payload lies only in the low bits rounding would drop or carry */
    uint32_t nans[] = {0x7fc00000, 0x7f800001, 0xffffffff, 0x7fffffff};
    for (size_t i = 0; i < sizeof nans / sizeof nans[0]; i++) {
        uint16_t h = st_f32_to_bf16(float_of(nans[i]));
        CHECK(isnan(st_bf16_to_f32(h)), "NaN 0x%08x -> 0x%04x is not NaN", nans[i], h);
        CHECK((h & 0x8000) == (nans[i] >> 16 & 0x8000), "NaN 0x%08x lost its sign", nans[i]);
    }
}

TEST(test_st_bf16_round_trips_every_value_and_rounds_to_nearest) {
    for (uint32_t h = 0; h < 0x10000; h++) {
        float f = st_bf16_to_f32((uint16_t)h);
        CHECK(bits_of(f) == h << 16, "bf16 0x%04x -> 0x%08x", h, bits_of(f));
        if (isnan(f)) continue;
        CHECK(st_f32_to_bf16(f) == h, "bf16 0x%04x does not round trip (0x%04x)", h, st_f32_to_bf16(f));
    }
    /* against a reference rounding through double arithmetic, over a sweep of floats */
    uint32_t x = 0x12345678;
    for (int i = 0; i < 200000; i++) {
        x ^= x << 13, x ^= x >> 17, x ^= x << 5;
        /* every fourth value is an exact tie, which random bits would rarely give */
        float f = float_of(i % 4 ? x : (x & 0xffff0000u) | 0x8000u);
        if (!isfinite(f)) continue;
        uint16_t h = st_f32_to_bf16(f);
        uint16_t lo = (uint16_t)(bits_of(f) >> 16), hi = (uint16_t)(lo + 1);
        uint32_t rest = bits_of(f) & 0xffff;
        uint16_t want;
        if (rest == 0) want = lo;
        else if (isinf(st_bf16_to_f32(hi))) want = rest >= 0x8000 ? hi : lo; /* lo is odd there: ties go up */
        else {
            double dlo = fabs((double)st_bf16_to_f32(lo) - f), dhi = fabs((double)st_bf16_to_f32(hi) - f);
            want = dlo < dhi ? lo : dhi < dlo ? hi : (lo & 1 ? hi : lo);
        }
        CHECK(h == want, "f32 0x%08x -> bf16 0x%04x, nearest is 0x%04x", bits_of(f), h, want);
    }
}

TEST(test_st_f16_known_values) {
    struct {
        uint16_t h;
        float f;
    } cases[] = {
        {0x3c00, 1.0f},        {0xc000, -2.0f},        {0x7bff, 65504.0f},          {0x0400, 6.103515625e-05f},
        {0x0001, 5.9604644775390625e-08f},             {0x03ff, 6.097555160522461e-05f},
        {0x8001, -5.9604644775390625e-08f},            {0x3555, 0.333251953125f},   {0x0000, 0.0f},
        {0x7c00, INFINITY},    {0xfc00, -INFINITY},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        float got = st_f16_to_f32(cases[i].h);
        CHECK(got == cases[i].f, "f16 0x%04x -> %.9g, expected %.9g", cases[i].h, got, cases[i].f);
    }
    CHECK(bits_of(st_f16_to_f32(0x8000)) == 0x80000000, "-0 lost its sign");
    CHECK(isnan(st_f16_to_f32(0x7e00)) && isnan(st_f16_to_f32(0xfc01)), "NaN not kept");
}

TEST(test_st_get_f32_converts_f32_bf16_f16) {
    /* a 2x2 of each, written byte by byte as little-endian */
    const char *header = "{\"a\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[0,16]},"
                         "\"b\":{\"dtype\":\"BF16\",\"shape\":[2,2],\"data_offsets\":[16,24]},"
                         "\"h\":{\"dtype\":\"F16\",\"shape\":[2,2],\"data_offsets\":[24,32]}}";
    Bytes b = file_of(header, 32);
    unsigned char *d = b.bytes + b.len - 32;
    float a[4] = {1.0f, -0.5f, 3.25f, 1e-3f};
    memcpy(d, a, 16);
    const unsigned char bf[8] = {0x80, 0x3f, 0x00, 0xc0, 0x49, 0x40, 0xf7, 0xc2}; /* 1, -2, 3.140625, -123.5 */
    const unsigned char hf[8] = {0x00, 0x3c, 0xff, 0x7b, 0x01, 0x00, 0x00, 0xfc}; /* 1, 65504, 2^-24, -inf */
    memcpy(d + 16, bf, 8);
    memcpy(d + 24, hf, 8);
    StFile f;
    Error err = {{0}};
    bool ok = st_parse(&f, b.bytes, b.len, "conv.safetensors", &err);
    free(b.bytes);
    CHECK(ok, "%s", err.msg);
    float out[4];
    int64_t shape[2] = {2, 2};
    float want_b[4] = {1.0f, -2.0f, 3.140625f, -123.5f}, want_h[4] = {1.0f, 65504.0f, 5.9604644775390625e-08f, -INFINITY};
    bool got_a = st_get_f32(&f, "a", 2, shape, out, &err) && memcmp(out, a, 16) == 0;
    bool got_b = st_get_f32(&f, "b", 2, shape, out, &err) && memcmp(out, want_b, 16) == 0;
    bool got_h = st_get_f32(&f, "h", -1, NULL, out, &err) && memcmp(out, want_h, 16) == 0;
    st_free(&f);
    CHECK(got_a, "F32 not copied exactly (%s)", err.msg);
    CHECK(got_b, "BF16 not converted exactly (%s)", err.msg);
    CHECK(got_h, "F16 not converted exactly (%s)", err.msg);
}

TEST(test_st_get_f32_names_tensor_dtype_and_both_shapes) {
    const char *header = "{\"weight\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,24]},"
                         "\"ids\":{\"dtype\":\"I32\",\"shape\":[2],\"data_offsets\":[24,32]}}";
    Bytes b = file_of(header, 32);
    StFile f;
    Error err = {{0}};
    bool ok = st_parse(&f, b.bytes, b.len, "m.safetensors", &err);
    free(b.bytes);
    CHECK(ok, "%s", err.msg);
    float out[6];
    int64_t want[2] = {3, 2}, vec[1] = {6};
    Error e1 = {{0}}, e2 = {{0}}, e3 = {{0}}, e4 = {{0}}, e5 = {{0}};
    bool r1 = st_get_f32(&f, "weight", 2, want, out, &e1);
    bool r2 = st_get_f32(&f, "weight", 1, vec, out, &e2);
    bool r3 = st_get_f32(&f, "ids", 1, (int64_t[]){2}, out, &e3);
    bool r4 = st_get_f32(&f, "wieght", 2, want, out, &e4);
    bool r5 = st_get_f32(&f, "bias", 1, vec, out, &e5);
    st_free(&f);
    CHECK(!r1 && strcmp(e1.msg, "m.safetensors: tensor 'weight' has shape [2, 3], expected [3, 2]") == 0,
          "shape mismatch: %s", e1.msg);
    CHECK(!r2 && strstr(e2.msg, "[2, 3], expected [6]"), "rank mismatch: %s", e2.msg);
    CHECK(!r3 && strstr(e3.msg, "'ids'") && strstr(e3.msg, "I32"), "dtype refusal: %s", e3.msg);
    CHECK(!r4 && strstr(e4.msg, "no tensor 'wieght'") && strstr(e4.msg, "did you mean 'weight'"), "missing: %s", e4.msg);
    CHECK(!r5 && strstr(e5.msg, "no tensor 'bias'"), "missing: %s", e5.msg);
}

/* ---- hostile files ---- */

TEST(test_st_refuses_bad_framing) {
    const char *p;
    p = refusal_problem((Bytes){xcalloc(5, 1), 5}, "too short");
    CHECK(!p, "5-byte file: %s", p);
    p = refusal_problem((Bytes){xcalloc(1, 1), 0}, "too short");
    CHECK(!p, "empty file: %s", p);
    p = refusal_problem(file_with_length(1000, "{}", 2, 8), "runs past the end of the file");
    CHECK(!p, "header length past the end: %s", p);
    p = refusal_problem(file_with_length(3, "{}", 2, 0), "runs past the end of the file");
    CHECK(!p, "header length one past the end: %s", p);
    p = refusal_problem(file_with_length(UINT64_MAX, "{}", 2, 0), "too large");
    CHECK(!p, "header length 2^64-1: %s", p);
    p = refusal_problem(file_with_length((uint64_t)1 << 40, "{}", 2, 0), "too large");
    CHECK(!p, "header length 2^40: %s", p);
    p = refusal_problem(file_with_length(0, "", 0, 0), "does not start with '{'");
    CHECK(!p, "header length 0: %s", p);
    /* the length field cuts the JSON short */
    const char *h = "{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}";
    p = refusal_problem(file_with_length(20, h, strlen(h), 4), "not valid JSON");
    CHECK(!p, "short header length: %s", p);
    p = refusal_problem(file_with_length(3, "{}\0", 3, 0), "control byte 0x00");
    CHECK(!p, "NUL in the header: %s", p);

    const HostileCase cases[] = {
        {"array at top", "[1, 2]", 0, "does not start with '{'"},
        {"string at top", "\"x\"", 0, "does not start with '{'"},
        {"leading space", " {}", 0, "does not start with '{'"},
        {"unfinished JSON", "{\"a\":", 0, "not valid JSON"},
        {"trailing comma", "{\"a\":{},}", 0, "not valid JSON"},
        {"trailing junk", "{} x", 0, "after the JSON object"},
        {"two objects", "{}{}", 0, "after the JSON object"},
        {"control byte in a name", "{\"a\x01\":{}}", 0, "control byte 0x01"},
        {"bad UTF-8 byte", "{\"a\xff\":{}}", 0, "not valid UTF-8"},
        {"overlong UTF-8", "{\"\xc0\xaf\":{}}", 0, "not valid UTF-8"},
        {"overlong 3-byte UTF-8", "{\"\xe0\x80\xaf\":{}}", 0, "not valid UTF-8"},
        {"overlong 4-byte UTF-8", "{\"\xf0\x80\x80\xaf\":{}}", 0, "not valid UTF-8"},
        {"UTF-8 surrogate", "{\"\xed\xa0\x80\":{}}", 0, "not valid UTF-8"},
        {"UTF-8 above U+10FFFF", "{\"\xf4\x90\x80\x80\":{}}", 0, "not valid UTF-8"},
        {"cut UTF-8 sequence", "{}\xe2\x82", 0, "not valid UTF-8"},
        {"NUL escape in a name", "{\"a\\u0000b\":{\"dtype\":\"U8\",\"shape\":[0],\"data_offsets\":[0,0]}}", 0,
         "\\u0000"},
        {"lone surrogate escape", "{\"\\udc00\":{}}", 0, "not valid JSON"},
    };
    p = run_cases(cases, (int)(sizeof cases / sizeof cases[0]));
    CHECK(!p, "%s", p);

    /* nesting far beyond cJSON's limit must fail, not overflow the stack */
    size_t depth = 100000;
    char *deep = xmalloc(depth + 8);
    strcpy(deep, "{\"a\":");
    memset(deep + 5, '[', depth);
    deep[5 + depth] = '\0';
    p = refusal_problem(file_of(deep, 0), "not valid JSON");
    free(deep);
    CHECK(!p, "deep nesting: %s", p);
}

#define ENTRY(name, body) "{\"" name "\":" body "}"

TEST(test_st_refuses_bad_tensor_entries) {
    const HostileCase cases[] = {
        {"entry is an array", ENTRY("w", "[1]"), 0, "tensor 'w': expected an object"},
        {"entry is a string", ENTRY("w", "\"F32\""), 0, "tensor 'w': expected an object"},
        {"missing dtype", ENTRY("w", "{\"shape\":[1],\"data_offsets\":[0,4]}"), 4, "tensor 'w': missing 'dtype'"},
        {"missing shape", ENTRY("w", "{\"dtype\":\"F32\",\"data_offsets\":[0,4]}"), 4, "missing 'shape'"},
        {"missing offsets", ENTRY("w", "{\"dtype\":\"F32\",\"shape\":[1]}"), 4, "missing 'data_offsets'"},
        {"unknown key", ENTRY("w", "{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4],\"foo\":1}"), 4,
         "unknown key 'foo'"},
        {"duplicate key", ENTRY("w", "{\"dtype\":\"F32\",\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}"), 4,
         "duplicate key 'dtype'"},
        {"dtype not a string", ENTRY("w", "{\"dtype\":5,\"shape\":[1],\"data_offsets\":[0,4]}"), 4, "dtype is 5"},
        {"unknown dtype", ENTRY("w", "{\"dtype\":\"F8_E4M3\",\"shape\":[1],\"data_offsets\":[0,1]}"), 1,
         "tensor 'w': unknown dtype 'F8_E4M3'"},
        {"lower-case dtype", ENTRY("w", "{\"dtype\":\"f32\",\"shape\":[1],\"data_offsets\":[0,4]}"), 4,
         "unknown dtype 'f32'"},
        {"shape not an array", ENTRY("w", "{\"dtype\":\"F32\",\"shape\":\"3\",\"data_offsets\":[0,12]}"), 12,
         "shape is a string"},
        {"shape of 9 dims", ENTRY("w", "{\"dtype\":\"U8\",\"shape\":[1,1,1,1,1,1,1,1,1],\"data_offsets\":[0,1]}"), 1,
         "shape has 9 dims, at most 8"},
        {"negative dim", ENTRY("w", "{\"dtype\":\"F32\",\"shape\":[2,-1],\"data_offsets\":[0,0]}"), 0,
         "tensor 'w': shape entry 1 is -1"},
        {"fractional dim", ENTRY("w", "{\"dtype\":\"F32\",\"shape\":[1.5],\"data_offsets\":[0,4]}"), 4,
         "shape entry 0 is 1.5"},
        {"string dim", ENTRY("w", "{\"dtype\":\"F32\",\"shape\":[2,\"3\"],\"data_offsets\":[0,24]}"), 24,
         "shape entry 1 is a string"},
        {"dim above 2^53", ENTRY("w", "{\"dtype\":\"U8\",\"shape\":[9007199254740994,0],\"data_offsets\":[0,0]}"), 0,
         "shape entry 0 is 9.00719925474099e+15"},
        {"infinite dim", ENTRY("w", "{\"dtype\":\"U8\",\"shape\":[1e400],\"data_offsets\":[0,0]}"), 0,
         "shape entry 0 is inf"},
        {"element count overflows",
         ENTRY("w", "{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296,16],\"data_offsets\":[0,0]}"), 0,
         "shape [4294967296, 4294967296, 16] of F32 is too large"},
        {"byte count overflows", ENTRY("w", "{\"dtype\":\"F64\",\"shape\":[4294967296,1073741824],\"data_offsets\":[0,0]}"),
         0, "of F64 is too large"},
        {"offsets a string", ENTRY("w", "{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":\"0,4\"}"), 4,
         "data_offsets is a string"},
        {"one offset", ENTRY("w", "{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0]}"), 4, "data_offsets has 1 entries"},
        {"three offsets", ENTRY("w", "{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4,8]}"), 8, "data_offsets has 3 entries"},
        {"negative offset", ENTRY("w", "{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[-4,0]}"), 4,
         "data_offsets entry 0 is -4"},
        {"null offset", ENTRY("w", "{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,null]}"), 4,
         "data_offsets entry 1 is null"},
        {"end before begin", ENTRY("w", "{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[8,4]}"), 8,
         "data_offsets [8, 4] end before they begin"},
        {"size mismatch", ENTRY("w", "{\"dtype\":\"BF16\",\"shape\":[3],\"data_offsets\":[0,4]}"), 4,
         "do not match shape [3] of BF16 (6 bytes)"},
        {"truncated data", ENTRY("w", "{\"dtype\":\"F32\",\"shape\":[20],\"data_offsets\":[0,80]}"), 40,
         "data_offsets [0, 80] run past the end of the data section (40 bytes; file truncated?)"},
        {"offsets far out", ENTRY("w", "{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[9007199254740988,9007199254740992]}"),
         4, "run past the end of the data section"},
        {"name with a newline", ENTRY("a\\nb", "{\"dtype\":\"X\",\"shape\":[],\"data_offsets\":[0,0]}"), 0,
         "tensor 'a?b': unknown dtype 'X'"},
    };
    const char *p = run_cases(cases, (int)(sizeof cases / sizeof cases[0]));
    CHECK(!p, "%s", p);

    /* a 2000-byte name is cut in the message, which still says what is wrong */
    char *name = xmalloc(2001);
    memset(name, 'n', 2000);
    name[2000] = '\0';
    char *header = xasprintf("{\"%s\":{\"dtype\":\"Q\",\"shape\":[],\"data_offsets\":[0,0]}}", name);
    free(name);
    p = refusal_problem(file_of(header, 0), "nnn...': unknown dtype 'Q'");
    free(header);
    CHECK(!p, "long name: %s", p);
}

TEST(test_st_size_mismatch_message_reads_as_documented) {
    Bytes b = file_of(ENTRY("w", "{\"dtype\":\"F32\",\"shape\":[4,5],\"data_offsets\":[0,96]}"), 96);
    StFile f;
    Error err = {{0}};
    bool ok = st_parse(&f, b.bytes, b.len, "ckpt.safetensors", &err);
    free(b.bytes);
    CHECK(!ok, "accepted");
    CHECK(strcmp(err.msg, "ckpt.safetensors: tensor 'w': data_offsets [0, 96] do not match shape [4, 5] of F32 (80 bytes)") == 0,
          "message: %s", err.msg);
}

#define F32_AT(name, b, e) "\"" name "\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[" #b "," #e "]}"

TEST(test_st_refuses_overlaps_holes_and_uncovered_bytes) {
    const HostileCase cases[] = {
        {"overlap", "{" F32_AT("a", 0, 16) "," F32_AT("b", 8, 24) "}", 24, "tensors 'a' [0, 16] and 'b' [8, 24] overlap"},
        {"same range", "{" F32_AT("a", 0, 16) "," F32_AT("b", 0, 16) "}", 16, "overlap"},
        {"overlap, listed backwards", "{" F32_AT("b", 8, 24) "," F32_AT("a", 0, 16) "}", 24, "'a' [0, 16] and 'b' [8, 24] overlap"},
        {"empty tensor inside another",
         "{" F32_AT("a", 0, 16) ",\"z\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[8,8]}}", 16,
         "'a' [0, 16] and 'z' [8, 8] overlap"},
        {"hole between", "{" F32_AT("a", 0, 16) "," F32_AT("b", 20, 36) "}", 36, "hole in the data section: bytes [16, 20] between 'a' and 'b'"},
        {"hole at the start", "{" F32_AT("a", 8, 24) "}", 24, "bytes [0, 8] before 'a'"},
        {"trailing bytes", "{" F32_AT("a", 0, 16) "}", 20, "data section has 20 bytes but the tensors end at byte 16"},
        {"data but no tensors", "{}", 8, "data section has 8 bytes but the tensors end at byte 0"},
        {"data but only metadata", "{\"__metadata__\":{\"k\":\"v\"}}", 1, "data section has 1 bytes"},
    };
    const char *p = run_cases(cases, (int)(sizeof cases / sizeof cases[0]));
    CHECK(!p, "%s", p);
}

TEST(test_st_refuses_bad_metadata_and_duplicate_names) {
    const HostileCase cases[] = {
        {"duplicate tensor", "{" F32_AT("w", 0, 16) "," F32_AT("w", 16, 32) "}", 32, "duplicate tensor name 'w'"},
        {"duplicate among many", "{" F32_AT("a", 0, 16) "," F32_AT("c", 16, 32) "," F32_AT("b", 32, 48) "," F32_AT("c", 48, 64) "}",
         64, "duplicate tensor name 'c'"},
        {"metadata an array", "{\"__metadata__\":[\"a\"]}", 0, "__metadata__ is an array, expected an object of strings"},
        {"metadata a string", "{\"__metadata__\":\"x\"}", 0, "__metadata__ is a string"},
        {"metadata number value", "{\"__metadata__\":{\"name\":\"x\",\"step\":5}}", 0, "metadata 'step' is 5, expected a string"},
        {"metadata null value", "{\"__metadata__\":{\"k\":null}}", 0, "metadata 'k' is null"},
        {"metadata object value", "{\"__metadata__\":{\"k\":{\"a\":\"b\"}}}", 0, "metadata 'k' is an object"},
        {"duplicate metadata key", "{\"__metadata__\":{\"k\":\"a\",\"j\":\"b\",\"k\":\"c\"}}", 0, "duplicate metadata key 'k'"},
        {"two metadata objects", "{\"__metadata__\":{},\"__metadata__\":{}}", 0, "duplicate key '__metadata__'"},
    };
    const char *p = run_cases(cases, (int)(sizeof cases / sizeof cases[0]));
    CHECK(!p, "%s", p);
}

/* A small valid file with a few dtypes, built in memory the way our writer lays it out. */
static Bytes sample_file(void) {
    const char *h = "{\"__metadata__\":{\"step\":\"3\",\"config\":\"x = 1\"},"
                    "\"emb\":{\"dtype\":\"BF16\",\"shape\":[3,2],\"data_offsets\":[0,12]},"
                    "\"w\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[12,28]},"
                    "\"n\":{\"dtype\":\"I64\",\"shape\":[],\"data_offsets\":[28,36]},"
                    "\"z\":{\"dtype\":\"U8\",\"shape\":[0],\"data_offsets\":[36,36]},"
                    "\"m\":{\"dtype\":\"BOOL\",\"shape\":[3],\"data_offsets\":[36,39]}}  ";
    return file_of(h, 39);
}

TEST(test_st_refuses_every_truncation_and_extension_of_a_valid_file) {
    Bytes b = sample_file();
    StFile f;
    Error err;
    bool whole = st_parse(&f, b.bytes, b.len, "s", &err);
    st_free(&f);
    if (!whole) free(b.bytes);
    CHECK(whole, "the sample itself is refused: %s", err.msg);
    size_t bad = 0;
    for (size_t n = 0; n < b.len && !bad; n++)
        if (st_parse(&f, b.bytes, n, "s", &err)) {
            st_free(&f);
            bad = n + 1;
        }
    unsigned char *longer = xcalloc(b.len + 1, 1);
    memcpy(longer, b.bytes, b.len);
    bool extended = st_parse(&f, longer, b.len + 1, "s", &err);
    if (extended) st_free(&f);
    free(longer);
    free(b.bytes);
    CHECK(!bad, "the first %zu bytes were accepted", bad - 1);
    CHECK(!extended, "a trailing byte was accepted");
    CHECK(strstr(err.msg, "trailing"), "extension message: %s", err.msg);
}

/* A small libFuzzer stand-in: random byte changes, mostly in the header, must never crash
 * (ASan/UBSan watch) and whatever is accepted must be self-consistent. */
TEST(test_st_survives_random_corruption) {
    Bytes base = sample_file();
    unsigned char *buf = xmalloc(base.len);
    const char *header_chars = "{}[]\":,0123456789-.eE \\u";
    uint64_t x = 88172645463325252ULL;
    int accepted = 0;
    for (int iter = 0; iter < 20000; iter++) {
        memcpy(buf, base.bytes, base.len);
        int edits = 1 + iter % 4;
        for (int e = 0; e < edits; e++) {
            x ^= x << 13, x ^= x >> 7, x ^= x << 17;
            size_t pos = (x >> 8) % (iter % 8 == 0 ? 8 : base.len);
            buf[pos] = x % 3 ? (unsigned char)header_chars[(x >> 40) % strlen(header_chars)] : (unsigned char)(x >> 48);
        }
        size_t len = iter % 5 == 0 ? (size_t)((x >> 20) % (base.len + 1)) : base.len;
        StFile f;
        Error err = {{0}};
        if (!st_parse(&f, buf, len, "fuzz", &err)) {
            CHECK(err.msg[0] && !strchr(err.msg, '\n'), "iteration %d: empty or multi-line message: %s", iter, err.msg);
            continue;
        }
        accepted++;
        size_t covered = 0;
        for (int i = 0; i < f.n_tensors; i++) {
            const StTensor *t = &f.tensors[i];
            size_t nbytes = t->count * st_dtype_size(t->dtype);
            CHECK(t->nbytes == nbytes && t->begin + t->nbytes <= f.data_len && t->ndim >= 0 && t->ndim <= ST_MAX_DIMS,
                  "iteration %d: inconsistent tensor '%s' accepted", iter, t->name);
            covered += t->nbytes;
        }
        CHECK(covered == f.data_len, "iteration %d: %zu of %zu data bytes covered", iter, covered, f.data_len);
        st_free(&f);
    }
    free(buf);
    free(base.bytes);
    CHECK(accepted > 0, "no mutant was accepted: the sample or the mutator is off");
}

/* ---- writing failures ---- */

static const char *unwritable_body(const char *dir) {
    float v[4] = {1, 2, 3, 4};
    int64_t shape = 4;
    StWriter *w = st_writer_new();
    st_writer_add(w, "v", ST_F32, 1, &shape, v);
    char *missing_dir = xasprintf("%s/no/such/dir/x.safetensors", dir);
    char *plain = xasprintf("%s/plain", dir);
    FILE *pf = fopen(plain, "w");
    EXPECT(pf, "cannot create %s", plain);
    fclose(pf);
    char *under_file = xasprintf("%s/plain/x.safetensors", dir);
    Error e1 = {{0}}, e2 = {{0}};
    bool r1 = st_writer_save(w, missing_dir, &e1);
    bool r2 = st_writer_save(w, under_file, &e2);
    st_writer_free(w);
    EXPECT(!r1 && strstr(e1.msg, missing_dir), "save under a missing directory: %d, %s", r1, e1.msg);
    EXPECT(!r2 && strstr(e2.msg, under_file), "save under a plain file: %d, %s", r2, e2.msg);
    EXPECT(count_entries(dir) == 1, "%d entries left in %s, expected only 'plain'", count_entries(dir), dir);
    free(missing_dir);
    free(plain);
    free(under_file);
    return NULL;
}

TEST(test_st_save_to_unwritable_path_fails_cleanly) {
    char *dir = make_tmpdir();
    CHECK(dir, "mkdtemp failed");
    const char *problem = unwritable_body(dir);
    remove_tree(dir);
    free(dir);
    CHECK(!problem, "%s", problem);
}

/* A file size limit makes writes fail as a full disk would, partway through the data. */
static const char *full_disk_body(const char *dir) {
    size_t n = 1 << 18;
    float *big = xcalloc(n, sizeof(float));
    int64_t shape = (int64_t)n;
    StWriter *w = st_writer_new();
    st_writer_add(w, "big", ST_F32, 1, &shape, big);
    char *path = xasprintf("%s/full.safetensors", dir);
    struct rlimit old;
    getrlimit(RLIMIT_FSIZE, &old);
    struct rlimit small = {.rlim_cur = 65536, .rlim_max = old.rlim_max};
    signal(SIGXFSZ, SIG_IGN);
    EXPECT(setrlimit(RLIMIT_FSIZE, &small) == 0, "setrlimit failed");
    Error err = {{0}};
    bool saved = st_writer_save(w, path, &err);
    setrlimit(RLIMIT_FSIZE, &old);
    st_writer_free(w);
    free(big);
    EXPECT(!saved, "save past the size limit reported success");
    EXPECT(strstr(err.msg, path), "message does not name the file: %s", err.msg);
    EXPECT(count_entries(dir) == 0, "%d files left behind in %s", count_entries(dir), dir);
    free(path);
    return NULL;
}

TEST(test_st_save_on_full_disk_fails_cleanly) {
    char *dir = make_tmpdir();
    CHECK(dir, "mkdtemp failed");
    const char *problem = full_disk_body(dir);
    remove_tree(dir);
    free(dir);
    CHECK(!problem, "%s", problem);
}

static const char *writer_refusal_body(const char *dir) {
    float v[2] = {1, 2};
    int64_t shape = 2;
    char *path = xasprintf("%s/bad.safetensors", dir);
    const char *expect[3] = {"two tensors are named 'v'", "'__metadata__' is reserved", "metadata 'k' is not valid UTF-8"};
    for (int i = 0; i < 3; i++) {
        StWriter *w = st_writer_new();
        st_writer_add(w, i == 1 ? "__metadata__" : "v", ST_F32, 1, &shape, v);
        if (i == 0) st_writer_add(w, "v", ST_F32, 1, &shape, v);
        if (i == 2) st_writer_meta(w, "k", "caf\xe9");
        Error err = {{0}};
        bool saved = st_writer_save(w, path, &err);
        st_writer_free(w);
        EXPECT(!saved && strstr(err.msg, expect[i]) && strstr(err.msg, path), "case %d: %d, %s", i, saved, err.msg);
        EXPECT(count_entries(dir) == 0, "case %d left a file", i);
    }
    free(path);
    return NULL;
}

TEST(test_st_writer_refuses_what_readers_would_refuse) {
    char *dir = make_tmpdir();
    CHECK(dir, "mkdtemp failed");
    const char *problem = writer_refusal_body(dir);
    remove_tree(dir);
    free(dir);
    CHECK(!problem, "%s", problem);
}

TEST(test_st_read_of_missing_file_names_it) {
    StFile f;
    Error err = {{0}};
    bool ok = st_read(&f, "/nonexistent/attnlab/x.safetensors", &err);
    CHECK(!ok, "accepted");
    CHECK(strstr(err.msg, "/nonexistent/attnlab/x.safetensors"), "message: %s", err.msg);
    CHECK(!f.path && !f.file_buf, "StFile not zeroed");
}
