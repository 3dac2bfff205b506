/* Token data: UTF-8 text as byte tokens, llm.c uint16 token shards, and the deterministic
 * block split into training and validation tokens. Every reader here takes outside bytes, so
 * it checks everything, reports one line through Error, and never exits. */
#include "data.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>


bool data_format_parse(const char *s, DataFormat *out) {
    if (!s) return false;
    if (strcmp(s, "auto") == 0) *out = DATA_AUTO;
    else if (strcmp(s, "text") == 0) *out = DATA_TEXT;
    else if (strcmp(s, "shard") == 0) *out = DATA_SHARD;
    else return false;
    return true;
}

void token_buffer_free(TokenBuffer *b) {
    if (!b) return;
    free(b->tokens);
    memset(b, 0, sizeof *b);
    b->max_token = -1;
}

void dataset_free(Dataset *d) {
    if (!d) return;
    token_buffer_free(&d->train);
    token_buffer_free(&d->val);
    d->is_text = false;
}

static void buffer_init(TokenBuffer *b) {
    memset(b, 0, sizeof *b);
    b->max_token = -1;
}

/* ---- UTF-8 text ---- */

/* Checks strict UTF-8 (Unicode Table 3-7: no overlong forms, no surrogates, nothing above
 * U+10FFFF). On failure says what is wrong at which offset and line. */
static bool utf8_check(const uint8_t *s, size_t len, const char *name, Error *err) {
    size_t line = 1;
    size_t i = 0;
    while (i < len) {
        uint8_t c = s[i];
        if (c < 0x80) {
            if (c == '\n') line++;
            i++;
            continue;
        }
        int need;                     /* continuation bytes after the lead byte */
        uint8_t lo = 0x80, hi = 0xBF; /* the allowed range of the first one */
        const char *low_what = "", *high_what = ""; /* what a byte below lo or above hi means */
        if (c < 0xC0) {
            return error_set(err, "%s: not UTF-8 text: stray continuation byte 0x%02x at offset %zu (line %zu)",
                             name, c, i, line);
        } else if (c < 0xC2) {
            return error_set(err,
                             "%s: not UTF-8 text: overlong encoding (lead byte 0x%02x) at offset %zu (line %zu)",
                             name, c, i, line);
        } else if (c < 0xE0) {
            need = 1;
        } else if (c < 0xF0) {
            need = 2;
            if (c == 0xE0) {
                lo = 0xA0;
                low_what = "overlong encoding";
            } else if (c == 0xED) {
                hi = 0x9F;
                high_what = "UTF-16 surrogate";
            }
        } else if (c < 0xF5) {
            need = 3;
            if (c == 0xF0) {
                lo = 0x90;
                low_what = "overlong encoding";
            } else if (c == 0xF4) {
                hi = 0x8F;
                high_what = "code point above U+10FFFF";
            }
        } else if (c < 0xF8) {
            return error_set(err,
                             "%s: not UTF-8 text: code point above U+10FFFF (lead byte 0x%02x) at offset %zu "
                             "(line %zu)",
                             name, c, i, line);
        } else {
            return error_set(err, "%s: not UTF-8 text: invalid byte 0x%02x at offset %zu (line %zu)", name, c,
                             i, line);
        }
        for (int k = 1; k <= need; k++) {
            if (i + (size_t)k >= len)
                return error_set(err,
                                 "%s: not UTF-8 text: truncated %d-byte sequence at end of file (offset %zu, "
                                 "line %zu)",
                                 name, need + 1, i, line);
            uint8_t d = s[i + (size_t)k];
            if (d < 0x80 || d > 0xBF)
                return error_set(err,
                                 "%s: not UTF-8 text: truncated %d-byte sequence (byte 0x%02x after lead byte "
                                 "0x%02x is not a continuation byte) at offset %zu (line %zu)",
                                 name, need + 1, d, c, i, line);
            if (k == 1 && (d < lo || d > hi))
                return error_set(err, "%s: not UTF-8 text: %s (bytes 0x%02x 0x%02x) at offset %zu (line %zu)",
                                 name, d < lo ? low_what : high_what, c, d, i, line);
        }
        i += (size_t)need + 1;
    }
    return true;
}

bool data_parse_text(TokenBuffer *out, const void *bytes, size_t len, const char *name, Error *err) {
    buffer_init(out);
    const uint8_t *s = bytes;
    if (len == 0) return error_set(err, "%s: file is empty", name);
    if (!utf8_check(s, len, name, err)) return false;
    uint16_t *t = xmalloc(len * sizeof *t);
    int max = 0;
    for (size_t i = 0; i < len; i++) {
        t[i] = s[i];
        if (s[i] > max) max = s[i];
    }
    out->tokens = t;
    out->n = len;
    out->max_token = max;
    out->is_text = true;
    return true;
}

bool data_read_text(TokenBuffer *out, const char *path, Error *err) {
    buffer_init(out);
    size_t len;
    char *buf = read_file(path, &len, err);
    if (!buf) return false;
    bool ok = data_parse_text(out, buf, len, path, err);
    free(buf);
    return ok;
}

/* ---- token shards ---- */

static int32_t le_i32(const uint8_t *p) {
    return (int32_t)((uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24);
}

static bool has_shard_magic(const uint8_t *p, size_t len) { return len >= 4 && le_i32(p) == SHARD_MAGIC; }

/* Checks the header and that the size matches it; gives the token count. */
static bool shard_check_header(const uint8_t *p, size_t len, const char *name, size_t *n_tokens, Error *err) {
    if (len < SHARD_HEADER_BYTES)
        return error_set(err,
                         "%s: not a token shard: the file has %zu bytes, shorter than the %d-byte header "
                         "(%d int32)",
                         name, len, SHARD_HEADER_BYTES, SHARD_HEADER_INTS);
    int32_t magic = le_i32(p), version = le_i32(p + 4), count = le_i32(p + 8);
    if (magic != SHARD_MAGIC)
        return error_set(err, "%s: not a token shard: magic number is %ld, expected %d (llm.c shard format)", name,
                         (long)magic, SHARD_MAGIC);
    if (version != SHARD_VERSION)
        return error_set(err, "%s: unsupported shard version %ld, expected %d", name, (long)version,
                         SHARD_VERSION);
    if (count < 0)
        return error_set(err, "%s: corrupt shard header: token count is %ld, expected >= 0", name, (long)count);
    size_t body = len - SHARD_HEADER_BYTES;
    size_t want = (size_t)count * 2; /* count < 2^31, so no overflow */
    if (body < want)
        return error_set(err, "%s: truncated shard: header says %ld tokens (%zu bytes), file has %zu bytes after the header",
                         name, (long)count, want, body);
    if (body > want)
        return error_set(err,
                         "%s: %zu trailing byte%s in shard: header says %ld tokens (%zu bytes), file has %zu bytes "
                         "after the header",
                         name, body - want, body - want == 1 ? "" : "s", (long)count, want, body);
    *n_tokens = (size_t)count;
    return true;
}

/* Decodes n little-endian uint16 tokens from src into dst, checking each against the
 * vocabulary. dst may alias src - SHARD_HEADER_BYTES (decoding in place moves forward only:
 * token i is written to bytes 2i..2i+1, which are read only before it, as token i - 512). */
static bool shard_decode(uint16_t *dst, const uint8_t *src, size_t n, int vocab_size, const char *name,
                         int *max_token, Error *err) {
    int max = -1;
    for (size_t i = 0; i < n; i++) {
        int t = (int)src[2 * i] | (int)src[2 * i + 1] << 8;
        if (t >= vocab_size)
            return error_set(err, "%s: token %d at position %zu is outside the vocabulary (model.vocab_size = %d)",
                             name, t, i, vocab_size);
        if (t > max) max = t;
        dst[i] = (uint16_t)t;
    }
    *max_token = max;
    return true;
}

bool data_parse_shard(TokenBuffer *out, const void *bytes, size_t len, const char *name, int vocab_size,
                      Error *err) {
    buffer_init(out);
    const uint8_t *p = bytes;
    size_t n;
    if (!shard_check_header(p, len, name, &n, err)) return false;
    uint16_t *t = xmalloc(n * sizeof *t);
    int max = -1;
    if (!shard_decode(t, p + SHARD_HEADER_BYTES, n, vocab_size, name, &max, err)) {
        free(t);
        return false;
    }
    out->tokens = t;
    out->n = n;
    out->max_token = max;
    out->is_text = false;
    return true;
}

/* Takes ownership of buf (read_file's, len bytes) and decodes the shard in place, so a large
 * shard never needs twice its size in memory. */
static bool shard_from_buffer(TokenBuffer *out, char *buf, size_t len, const char *name, int vocab_size,
                              Error *err) {
    buffer_init(out);
    size_t n;
    int max = -1;
    uint8_t *p = (uint8_t *)buf;
    uint16_t *dst = (uint16_t *)(void *)buf; /* malloc's alignment suits uint16_t */
    if (!shard_check_header(p, len, name, &n, err) ||
        !shard_decode(dst, p + SHARD_HEADER_BYTES, n, vocab_size, name, &max, err)) {
        free(buf);
        return false;
    }
    out->tokens = xrealloc(buf, n * sizeof *dst);
    out->n = n;
    out->max_token = max;
    out->is_text = false;
    return true;
}

bool data_read_shard(TokenBuffer *out, const char *path, int vocab_size, Error *err) {
    buffer_init(out);
    size_t len;
    char *buf = read_file(path, &len, err);
    if (!buf) return false;
    return shard_from_buffer(out, buf, len, path, vocab_size, err);
}

bool data_write_shard(const char *path, const uint16_t *tokens, size_t n, Error *err) {
    if (n > INT32_MAX)
        return error_set(err, "%s: cannot write %zu tokens in one shard (the header holds at most %d)", path, n,
                         INT32_MAX);
    uint8_t header[SHARD_HEADER_BYTES] = {0};
    int32_t fields[3] = {SHARD_MAGIC, SHARD_VERSION, (int32_t)n};
    for (int k = 0; k < 3; k++)
        for (int b = 0; b < 4; b++) header[4 * k + b] = (uint8_t)((uint32_t)fields[k] >> (8 * b));
    AtomicFile af;
    if (!atomic_open(&af, path, err)) return false;
    bool ok = fwrite(header, 1, sizeof header, af.f) == sizeof header;
    uint8_t chunk[8192];
    for (size_t i = 0; ok && i < n;) {
        size_t m = min_sz(n - i, sizeof chunk / 2);
        for (size_t j = 0; j < m; j++) {
            chunk[2 * j] = (uint8_t)(tokens[i + j] & 0xFF);
            chunk[2 * j + 1] = (uint8_t)(tokens[i + j] >> 8);
        }
        ok = fwrite(chunk, 1, 2 * m, af.f) == 2 * m;
        i += m;
    }
    if (!ok) {
        int saved = errno;
        atomic_abort(&af);
        return error_set(err, "cannot write '%s': %s", path, strerror(saved));
    }
    return atomic_commit(&af, err);
}

/* ---- the dataset and its split ---- */

/* Block i of the file goes to validation when this is true (see data.h). */
static bool block_is_val(size_t i, double val_fraction) {
    return floor((double)(i + 1) * val_fraction) > floor((double)i * val_fraction);
}

static void buffer_alloc(TokenBuffer *b, size_t n, bool is_text) {
    buffer_init(b);
    b->tokens = xmalloc(n * sizeof *b->tokens);
    b->is_text = is_text;
}

static void buffer_append(TokenBuffer *b, const uint16_t *t, size_t n) {
    memcpy(b->tokens + b->n, t, n * sizeof *t);
    for (size_t i = 0; i < n; i++)
        if (t[i] > b->max_token) b->max_token = t[i];
    b->n += n;
}

bool dataset_load(Dataset *d, const char *path, DataFormat format, int vocab_size, double val_fraction,
                  size_t split_block, Error *err) {
    memset(d, 0, sizeof *d);
    buffer_init(&d->train);
    buffer_init(&d->val);
    if (!(val_fraction >= 0.0 && val_fraction <= 1.0)) /* also rejects NaN */
        return error_set(err, "data.val_fraction = %g: expected a share between 0 and 1", val_fraction);
    if (split_block == 0) return error_set(err, "data.split_block = 0: expected at least 1 token per block");

    size_t len;
    char *buf = read_file(path, &len, err);
    if (!buf) return false;
    if (format == DATA_AUTO) format = has_shard_magic((const uint8_t *)buf, len) ? DATA_SHARD : DATA_TEXT;
    TokenBuffer all;
    if (format == DATA_SHARD) {
        if (!shard_from_buffer(&all, buf, len, path, vocab_size, err)) return false;
    } else {
        bool ok = data_parse_text(&all, buf, len, path, err);
        free(buf);
        if (!ok) return false;
        if (all.max_token >= vocab_size) {
            size_t i = 0;
            while (all.tokens[i] < vocab_size) i++;
            error_set(err,
                      "%s: byte 0x%02x at offset %zu is outside the vocabulary (model.vocab_size = %d; byte-level "
                      "text needs 256)",
                      path, all.tokens[i], i, vocab_size);
            token_buffer_free(&all);
            return false;
        }
    }

    size_t n_blocks = all.n / split_block + (all.n % split_block != 0);
    size_t n_val = 0;
    for (size_t i = 0; i < n_blocks; i++)
        if (block_is_val(i, val_fraction)) n_val += min_sz(split_block, all.n - i * split_block);
    size_t n_train = all.n - n_val;
    if (n_val == 0 || n_train == 0) {
        bool no_val = n_val == 0;
        error_set(err,
                  "%s: the %s split would be empty: %zu tokens make %zu block%s of data.split_block = %zu and "
                  "data.val_fraction = %g puts %s in validation; %s",
                  path, no_val ? "validation" : "training", all.n, n_blocks, n_blocks == 1 ? "" : "s", split_block,
                  val_fraction, no_val ? "none" : "all of them",
                  no_val ? "lower data.split_block or raise data.val_fraction"
                         : "lower data.val_fraction or use more data");
        token_buffer_free(&all);
        return false;
    }
    buffer_alloc(&d->train, n_train, all.is_text);
    buffer_alloc(&d->val, n_val, all.is_text);
    for (size_t i = 0; i < n_blocks; i++) {
        size_t start = i * split_block, m = min_sz(split_block, all.n - start);
        buffer_append(block_is_val(i, val_fraction) ? &d->val : &d->train, all.tokens + start, m);
    }
    d->is_text = all.is_text;
    token_buffer_free(&all);
    return true;
}
