/* Inside `attnlab plot` (plot.c, plot_settings.c): an experiment's runs, series names in numeric
 * order, the mean and min-max of values over seeds, gnuplot word lists, and drawing. */
#pragma once
#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include "core/config/config.h"

typedef struct {
    char *name, *dir;
    Config cfg;
    cJSON *summary;
    const char *const *hidden;   /* fields left out of series names: those a selection chose */
    const char *const *constant; /* and those every run of the experiment sets to one value */
} PlotRun;

typedef struct {
    char *dir, *plots, *data, *experiment, *scripts;
    PlotRun *runs; /* the runs drawn: every run, or those a selection chose */
    int n;
    PlotRun *others; /* a selection's candidates it did not choose (drawn lighter in the final-metric figure) */
    int n_others;
    int drawn;
    char *over[33];      /* a selection's `over` fields, NULL-terminated */
    char *constant[65];  /* sweep fields with one value in every run (of two or more), NULL-terminated */
    char *select_metric; /* and its metric; NULL without one */
    int n_selected_from; /* runs on disk before the selection, 0 without one */
    bool selection_pending; /* selected.json chose no run yet (its tuning runs are unfinished): all are drawn */
} Experiment;

double plot_metric(const PlotRun *r, const char *key);
bool plot_finished(const PlotRun *r);
/* A run's series name: the fields its sweep set, except the seed, those in `except` (the
 * figure's axes), the hidden ones and those with one value in every run, as "key=value" joined by
 * commas ("all" when none is left). */
void plot_label(const PlotRun *r, const char *const *except, char *buf, size_t len);
/* The values of the hidden (`over`) fields in a run, "lr=0.003"; "" without a selection. */
void plot_chosen(const PlotRun *r, char *buf, size_t len);
/* Orders series names field by field: numbers by value (d_model=8 < 16 < 32), hybrid ratios
 * "L:F" from all attention to all linear (0:1 < 1:1 < 3:1 < 1:0), anything else as text. */
int plot_label_cmp(const char *a, const char *b);

/* A gnuplot word list: each word in double quotes (gnuplot's word() keeps quoted spaces), with
 * the count and the longest word, which place the legend. */
typedef struct {
    char *text;
    int n, longest;
} Words;
void words_add(Words *w, const char *word);
static inline const char *words_text(const Words *w) { return w->text ? w->text : ""; }
void words_free(Words *w);

/* Values grouped by (series, x): the mean, min and max over the runs (one per seed). */
typedef struct {
    char label[256];
    double x, sum, lo, hi;
    int n;
    char xtext[64];
} Cell;
typedef struct {
    Cell *cells;
    int n, cap;
} Table;
void table_add(Table *t, const char *label, double x, const char *xtext, double y);
double cell_mean(const Cell *c);
/* log2 of the ratio of the largest x to the smallest: the width of a log2 axis in octaves. */
double log2_span(const Table *t);
/* A series' name in the legend: the label, or "mean over seeds" for "all" (a sweep of seeds alone). */
const char *series_title(const char *label);
/* One data file per series, "x mean min max n" in order of x, named <prefix><label>.dat, the
 * series in plot_label_cmp order: their paths go to files and their names to titles. */
void write_series(const Experiment *e, Table *t, const char *prefix, Words *files, Words *titles);

/* Draws a figure with plots/<script> as PNG and SVG. assignments are gnuplot "name='value'"
 * statements; key holds the legend's entries, which decide where it goes (keypos and keyrows:
 * outside at the right, or below the plot when the entries are many or long). The command is
 * kept in plots/data/<figure>.cmd. */
void draw(Experiment *e, const char *script, const char *figure, const char *assignments, const Words *key);
/* Opens a data file for writing, or stops. */
FILE *data_file(const char *path);

/* plot_settings.c: figures by setting (the runs that differ only in seed) */
void loss_curves(Experiment *e);
void final_metric(Experiment *e);
