/* Small checked helpers every file uses: fatal errors, allocation, files, time, paths. */
#pragma once
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* A reader of outside data (config, text, shard, safetensors) reports failure through an Error
 * instead of exiting, so that tests and fuzzers can call it; the CLI turns it into die(). */
typedef struct {
    char msg[640];
} Error;

bool error_set(Error *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Prints "attnlab: <message>" on stderr, removes pending temporary files, exits with status 1. */
__attribute__((noreturn, format(printf, 1, 2))) void die(const char *fmt, ...);
/* The progress printer keeps a line open that it rewrites in place on a terminal; messages
 * end it first so they start on a line of their own. */
void set_status_line_open(bool open);
void end_status_line(void);

/* Prints a warning line on stderr and goes on. */
void warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

void *xmalloc(size_t n);
void *xcalloc(size_t count, size_t size);
void *xrealloc(void *p, size_t n);
char *xstrdup(const char *s);
char *xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* The first `max` of n texts joined by sep, then " and N more" for the rest (caller frees). */
char *join_texts(char *const *texts, int n, const char *sep, int max);
/* 64-byte aligned, zeroed: SIMD-friendly and cache-line aligned buffers. */
void *xalloc_aligned(size_t n);

/* Multiplies with overflow detection; false when count * size does not fit. */
bool mul_overflows(size_t a, size_t b, size_t *out);

/* Reads a whole file; on failure fills err (naming the path) and returns NULL. */
char *read_file(const char *path, size_t *len, Error *err);

/* Files written through an AtomicFile appear whole or not at all: data goes to a temporary
 * file beside the target, which is flushed, synced and renamed over it on commit. A die()
 * before the commit removes the temporary file. */
typedef struct {
    FILE *f;
    char *path;
    char *tmp_path;
} AtomicFile;
bool atomic_open(AtomicFile *af, const char *path, Error *err);
bool atomic_commit(AtomicFile *af, Error *err);
void atomic_abort(AtomicFile *af);
/* Convenience: writes the whole buffer to path atomically, dying on failure. */
void write_file_atomic(const char *path, const void *data, size_t len);

/* Registers a path to delete if the program dies (half-made outputs); unregister when done. */
void cleanup_register(const char *path, bool is_dir);
void cleanup_unregister(const char *path);

bool path_exists(const char *path);
bool is_directory(const char *path);
/* Creates a directory and its parents; on failure fills err. */
bool mkdir_p(const char *path, Error *err);
/* Removes a directory tree (used for --overwrite and to undo a half-created run). */
void remove_tree(const char *path);
/* Takes an exclusive lock on dir/.lock for the life of the process (the kernel drops it when the
 * process dies, however it dies), so two processes never train into one run folder. */
bool lock_run_dir(const char *dir, Error *err);
/* Whether another process holds dir's run lock now (a run going on, not one killed mid-step). */
bool run_dir_in_use(const char *dir);
/* An exclusive lock on path (created if missing), waited for; the descriptor to unlock_file. */
int lock_file(const char *path, Error *err);
void unlock_file(int fd);
/* Removes the temporary files ("NAME.tmp.PID") that a killed process left in dir. */
void remove_stale_temporaries(const char *dir);
/* "configs/x.lua" -> "x" (caller frees). */
char *path_stem(const char *path);
/* "configs/x.lua" -> "configs" (caller frees); "x.lua" -> ".". */
char *path_dirname(const char *path);

double now_seconds(void);
/* Formats a duration as "1h02m", "3m12s" or "12.3s". */
void format_duration(char *buf, size_t len, double seconds);

/* Parses a whole string as a number; false on trailing junk, overflow or empty input. */
bool parse_long(const char *s, long *out);
bool parse_double(const char *s, double *out);

/* Edit distance, for "did you mean" suggestions. */
int edit_distance(const char *a, const char *b);

static inline size_t min_sz(size_t a, size_t b) { return a < b ? a : b; }
static inline size_t max_sz(size_t a, size_t b) { return a > b ? a : b; }
static inline int min_int(int a, int b) { return a < b ? a : b; }
static inline int max_int(int a, int b) { return a > b ? a : b; }
