/* Checked helpers: fatal errors with cleanup of half-made outputs, allocation, atomic files,
 * paths, time and number parsing. */
#include "util.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

bool error_set(Error *err, const char *fmt, ...) {
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
        /* an error is one line even when it quotes a file's or a Lua error's text */
        for (char *c = err->msg; *c; c++)
            if (*c == '\n' || *c == '\r' || *c == '\t') *c = ' ';
    }
    return false;
}

/* ---- the in-place status line ---- */

static bool status_line_open;

void set_status_line_open(bool open) { status_line_open = open; }

void end_status_line(void) {
    if (status_line_open) {
        fputc('\n', stdout);
        fflush(stdout);
        status_line_open = false;
    }
}

/* ---- cleanup of half-made outputs ---- */

#define MAX_CLEANUP 16
static struct {
    char *path;
    bool is_dir;
} cleanup_list[MAX_CLEANUP];

void cleanup_register(const char *path, bool is_dir) {
    for (int i = 0; i < MAX_CLEANUP; i++) {
        if (!cleanup_list[i].path) {
            cleanup_list[i].path = xstrdup(path);
            cleanup_list[i].is_dir = is_dir;
            return;
        }
    }
    die("internal: too many pending temporary outputs");
}

void cleanup_unregister(const char *path) {
    for (int i = 0; i < MAX_CLEANUP; i++) {
        if (cleanup_list[i].path && strcmp(cleanup_list[i].path, path) == 0) {
            free(cleanup_list[i].path);
            cleanup_list[i].path = NULL;
            return;
        }
    }
}

static void run_cleanup(void) {
    for (int i = MAX_CLEANUP - 1; i >= 0; i--) {
        if (!cleanup_list[i].path) continue;
        if (cleanup_list[i].is_dir) remove_tree(cleanup_list[i].path);
        else unlink(cleanup_list[i].path);
        free(cleanup_list[i].path);
        cleanup_list[i].path = NULL;
    }
}

void die(const char *fmt, ...) {
    fflush(stdout);
    end_status_line();
    fputs("attnlab: ", stderr);
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    run_cleanup();
    exit(1);
}

void warn(const char *fmt, ...) {
    fflush(stdout);
    end_status_line();
    fputs("attnlab: warning: ", stderr);
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

/* ---- allocation ---- */

void *xmalloc(size_t n) {
    void *p = malloc(n ? n : 1);
    if (!p) die("out of memory allocating %zu bytes", n);
    return p;
}

void *xcalloc(size_t count, size_t size) {
    void *p = calloc(count ? count : 1, size ? size : 1);
    if (!p) die("out of memory allocating %zu x %zu bytes", count, size);
    return p;
}

void *xrealloc(void *p, size_t n) {
    void *q = realloc(p, n ? n : 1);
    if (!q) die("out of memory reallocating %zu bytes", n);
    return q;
}

char *xstrdup(const char *s) {
    size_t n = strlen(s) + 1;
    char *d = xmalloc(n);
    memcpy(d, s, n);
    return d;
}

char *xasprintf(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0) die("internal: bad format string");
    char *s = xmalloc((size_t)n + 1);
    va_start(ap, fmt);
    vsnprintf(s, (size_t)n + 1, fmt, ap);
    va_end(ap);
    return s;
}

char *join_texts(char *const *texts, int n, const char *sep, int max) {
    char *out = xstrdup("");
    for (int k = 0; k < n && k < max; k++) {
        char *next = xasprintf("%s%s%s", out, k ? sep : "", texts[k]);
        free(out);
        out = next;
    }
    if (n > max) {
        char *next = xasprintf("%s and %d more", out, n - max);
        free(out);
        out = next;
    }
    return out;
}

void *xalloc_aligned(size_t n) {
    size_t rounded = (n + 63) & ~(size_t)63;
    if (rounded < n) die("out of memory: %zu bytes requested", n);
    void *p = aligned_alloc(64, rounded ? rounded : 64);
    if (!p) die("out of memory allocating %.1f MiB", n / 1048576.0);
    memset(p, 0, rounded);
    return p;
}

bool mul_overflows(size_t a, size_t b, size_t *out) {
    return __builtin_mul_overflow(a, b, out);
}

/* ---- files ---- */

char *read_file(const char *path, size_t *len, Error *err) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        error_set(err, "cannot open '%s': %s", path, strerror(errno));
        return NULL;
    }
    struct stat st;
    if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode)) {
        error_set(err, "'%s' is not a regular file", path);
        fclose(f);
        return NULL;
    }
    size_t n = (size_t)st.st_size;
    char *buf = malloc(n + 1);
    if (!buf) {
        error_set(err, "'%s': out of memory reading %zu bytes", path, n);
        fclose(f);
        return NULL;
    }
    size_t got = fread(buf, 1, n, f);
    bool bad = ferror(f) || got != n;
    fclose(f);
    if (bad) {
        free(buf);
        error_set(err, "cannot read '%s': read %zu of %zu bytes", path, got, n);
        return NULL;
    }
    buf[n] = '\0';
    if (len) *len = n;
    return buf;
}

bool atomic_open(AtomicFile *af, const char *path, Error *err) {
    memset(af, 0, sizeof *af);
    af->path = xstrdup(path);
    af->tmp_path = xasprintf("%s.tmp.%ld", path, (long)getpid());
    af->f = fopen(af->tmp_path, "wb");
    if (!af->f) {
        error_set(err, "cannot create '%s': %s", af->tmp_path, strerror(errno));
        free(af->path);
        free(af->tmp_path);
        return false;
    }
    cleanup_register(af->tmp_path, false);
    return true;
}

static void sync_parent_dir(const char *path) {
    char *dir = path_dirname(path);
    int fd = open(dir, O_RDONLY | O_DIRECTORY);
    if (fd >= 0) {
        fsync(fd);
        close(fd);
    }
    free(dir);
}

bool atomic_commit(AtomicFile *af, Error *err) {
    bool ok = fflush(af->f) == 0 && !ferror(af->f) && fsync(fileno(af->f)) == 0;
    int saved = errno;
    if (fclose(af->f) != 0 && ok) {
        ok = false;
        saved = errno;
    }
    af->f = NULL;
    if (ok && rename(af->tmp_path, af->path) != 0) {
        ok = false;
        saved = errno;
    }
    if (!ok) {
        error_set(err, "cannot write '%s': %s", af->path, strerror(saved));
        unlink(af->tmp_path);
    } else {
        sync_parent_dir(af->path);
    }
    cleanup_unregister(af->tmp_path);
    free(af->path);
    free(af->tmp_path);
    return ok;
}

void atomic_abort(AtomicFile *af) {
    if (af->f) fclose(af->f);
    unlink(af->tmp_path);
    cleanup_unregister(af->tmp_path);
    free(af->path);
    free(af->tmp_path);
    af->f = NULL;
}

void write_file_atomic(const char *path, const void *data, size_t len) {
    AtomicFile af;
    Error err;
    if (!atomic_open(&af, path, &err)) die("%s", err.msg);
    if (len && fwrite(data, 1, len, af.f) != len) {
        atomic_abort(&af);
        die("cannot write '%s': %s", path, strerror(errno));
    }
    if (!atomic_commit(&af, &err)) die("%s", err.msg);
}

/* ---- paths ---- */

bool path_exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0;
}

bool is_directory(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

bool mkdir_p(const char *path, Error *err) {
    char *buf = xstrdup(path);
    for (char *p = buf + 1; *p; p++) {
        if (*p != '/') continue;
        *p = '\0';
        if (mkdir(buf, 0777) != 0 && errno != EEXIST) {
            error_set(err, "cannot create directory '%s': %s", buf, strerror(errno));
            free(buf);
            return false;
        }
        *p = '/';
    }
    bool ok = mkdir(buf, 0777) == 0 || (errno == EEXIST && is_directory(buf));
    if (!ok) error_set(err, "cannot create directory '%s': %s", buf, strerror(errno));
    free(buf);
    return ok;
}

void remove_tree(const char *path) {
    DIR *d = opendir(path);
    if (!d) {
        unlink(path);
        return;
    }
    struct dirent *e;
    while ((e = readdir(d))) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
        char *child = xasprintf("%s/%s", path, e->d_name);
        struct stat st;
        if (lstat(child, &st) == 0 && S_ISDIR(st.st_mode)) remove_tree(child);
        else unlink(child);
        free(child);
    }
    closedir(d);
    rmdir(path);
}

char *path_stem(const char *path) {
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    const char *dot = strrchr(base, '.');
    size_t n = dot && dot != base ? (size_t)(dot - base) : strlen(base);
    char *s = xmalloc(n + 1);
    memcpy(s, base, n);
    s[n] = '\0';
    return s;
}

char *path_dirname(const char *path) {
    const char *slash = strrchr(path, '/');
    if (!slash) return xstrdup(".");
    if (slash == path) return xstrdup("/");
    size_t n = (size_t)(slash - path);
    char *s = xmalloc(n + 1);
    memcpy(s, path, n);
    s[n] = '\0';
    return s;
}

/* ---- time ---- */

double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

void format_duration(char *buf, size_t len, double s) {
    if (!isfinite(s) || s < 0) snprintf(buf, len, "?");
    else if (s < 60) snprintf(buf, len, "%.1fs", s);
    else if (s < 3600) snprintf(buf, len, "%dm%02ds", (int)(s / 60), (int)fmod(s, 60));
    else snprintf(buf, len, "%dh%02dm", (int)(s / 3600), (int)fmod(s / 60, 60));
}

/* ---- parsing ---- */

bool parse_long(const char *s, long *out) {
    if (!s || !*s) return false;
    errno = 0;
    char *end;
    long v = strtol(s, &end, 10);
    if (errno || *end) return false;
    *out = v;
    return true;
}

bool parse_double(const char *s, double *out) {
    if (!s || !*s) return false;
    errno = 0;
    char *end;
    double v = strtod(s, &end);
    if (errno == ERANGE || *end) return false;
    *out = v;
    return true;
}

int edit_distance(const char *a, const char *b) {
    size_t n = strlen(a), m = strlen(b);
    if (n > 64 || m > 64) return INT_MAX / 2;
    int row[65];
    for (size_t j = 0; j <= m; j++) row[j] = (int)j;
    for (size_t i = 1; i <= n; i++) {
        int diag = row[0];
        row[0] = (int)i;
        for (size_t j = 1; j <= m; j++) {
            int up = row[j];
            int cost = a[i - 1] == b[j - 1] ? 0 : 1;
            int best = min_int(min_int(row[j] + 1, row[j - 1] + 1), diag + cost);
            row[j] = best;
            diag = up;
        }
    }
    return row[m];
}

bool lock_run_dir(const char *dir, Error *err) {
    char *path = xasprintf("%s/.lock", dir);
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    bool ok = fd >= 0 && flock(fd, LOCK_EX | LOCK_NB) == 0;
    if (!ok && fd >= 0 && errno == EWOULDBLOCK)
        error_set(err, "%s is in use by another attnlab process (a sweep or a run still going?)", dir);
    else if (!ok)
        error_set(err, "cannot lock '%s': %s", path, strerror(errno));
    if (!ok && fd >= 0) close(fd);
    free(path); /* the descriptor stays open, and the lock held, until the process ends */
    return ok;
}

bool run_dir_in_use(const char *dir) {
    char *path = xasprintf("%s/.lock", dir);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    free(path);
    if (fd < 0) return false;
    bool held = flock(fd, LOCK_SH | LOCK_NB) != 0 && errno == EWOULDBLOCK;
    close(fd); /* releases the probe's shared lock, if it got one */
    return held;
}

int lock_file(const char *path, Error *err) {
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) return error_set(err, "cannot open '%s': %s", path, strerror(errno)), -1;
    while (flock(fd, LOCK_EX) != 0)
        if (errno != EINTR) {
            error_set(err, "cannot lock '%s': %s", path, strerror(errno));
            close(fd);
            return -1;
        }
    return fd;
}

void unlock_file(int fd) {
    if (fd >= 0) close(fd);
}

void remove_stale_temporaries(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return;
    for (struct dirent *e; (e = readdir(d));) {
        const char *tmp = strstr(e->d_name, ".tmp.");
        if (!tmp || tmp[5] < '0' || tmp[5] > '9') continue;
        char *path = xasprintf("%s/%s", dir, e->d_name);
        unlink(path);
        free(path);
    }
    closedir(d);
}
