/* safetensors files (checkpoints, op-harness inputs and outputs): a little-endian u64 header
 * length, a JSON header {name: {dtype, shape, data_offsets}, "__metadata__": {str: str}}, then
 * the tensor bytes. The reader trusts nothing in the file: every length, offset, shape and
 * dtype is checked before use, and each problem is reported as one line naming the file. */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/util.h"

typedef enum { ST_F32, ST_BF16, ST_F16, ST_F64, ST_I64, ST_I32, ST_I16, ST_I8, ST_U8, ST_BOOL } StDtype;

enum { ST_MAX_DIMS = 8 };

typedef struct {
    char *name;
    StDtype dtype;
    int ndim;
    int64_t shape[ST_MAX_DIMS];
    size_t count;         /* product of shape (1 for a scalar, ndim == 0) */
    size_t begin, nbytes; /* byte range inside the data section */
} StTensor;

typedef struct {
    char *path;
    StTensor *tensors;
    int n_tensors;
    char **meta_keys, **meta_values;
    int n_meta;
    unsigned char *data; /* the data section */
    size_t data_len;
    void *file_buf; /* the whole file as read (owned) */
} StFile;

const char *st_dtype_name(StDtype d); /* "F32", "BF16", ... */
size_t st_dtype_size(StDtype d);

/* Reads and validates a whole file. On failure err says what and where, e.g.
 * "ckpt.safetensors: tensor 'w': data_offsets [0, 96] do not match shape [4, 5] of F32 (80 bytes)". */
bool st_read(StFile *f, const char *path, Error *err);
/* The header alone, checked as st_read checks it (the tensors' offsets against the file's size):
 * names, shapes and metadata without reading the tensors (f->data is NULL). */
bool st_read_header(StFile *f, const char *path, Error *err);
/* The same on bytes already in memory (for fuzzing); `name` is used in messages. */
bool st_parse(StFile *f, const void *bytes, size_t len, const char *name, Error *err);
void st_free(StFile *f);

const StTensor *st_find(const StFile *f, const char *name);
const char *st_meta(const StFile *f, const char *key); /* NULL when absent */

/* Copies tensor `name` into out as float32, converting from F32, BF16 or F16; checks that it exists,
 * has one of those dtypes and has exactly the expected shape (ndim, shape) when ndim >= 0. */
bool st_get_f32(const StFile *f, const char *name, int ndim, const int64_t *shape, float *out, Error *err);

/* Writing: tensors are referenced, not copied, until st_writer_save returns; the file is written
 * to a temporary name and renamed, so it appears whole or not at all. */
typedef struct StWriter StWriter;
StWriter *st_writer_new(void);
void st_writer_meta(StWriter *w, const char *key, const char *value);
void st_writer_add(StWriter *w, const char *name, StDtype dtype, int ndim, const int64_t *shape, const void *data);
bool st_writer_save(StWriter *w, const char *path, Error *err);
void st_writer_free(StWriter *w);

/* bfloat16 <-> float conversions (round to nearest even). */
float st_bf16_to_f32(uint16_t h);
uint16_t st_f32_to_bf16(float f);
float st_f16_to_f32(uint16_t h);
