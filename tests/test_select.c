/* A sweep's `select` (core/lab/sweep_select.c): which value each setting keeps when seeds fail or
 * have not run, ties, and the rows of selected.csv and selected.json, on summaries made here. */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/lab/sweep_select.h"
#include "test.h"

/* One run of the made-up sweep: its mixer, learning rate and seed, and its summary.json (NULL:
 * not run yet). */
typedef struct {
    const char *mixer, *lr, *seed, *summary;
} FakeRun;

#define DONE(acc) "{\"status\": \"finished\", \"val_accuracy\": " #acc "}"
#define FAILED "{\"status\": \"failed\", \"reason\": \"non-finite loss at step 2\"}"

static const FakeRun RUNS[] = {
    /* softmax: 0.01 scores higher, but one of its seeds failed; 0.001's both finished */
    {"softmax", "0.001", "1", DONE(0.5)},  {"softmax", "0.001", "2", DONE(0.7)},
    {"softmax", "0.01", "1", DONE(0.9)},   {"softmax", "0.01", "2", FAILED},
    /* gdn: no value complete; 0.001's one finished seed beats 0.01's */
    {"gdn", "0.001", "1", FAILED},         {"gdn", "0.001", "2", DONE(0.4)},
    {"gdn", "0.01", "1", DONE(0.3)},       {"gdn", "0.01", "2", NULL},
    /* kda: a tie goes to the value the sweep runs first, 0.01 here */
    {"kda", "0.01", "1", DONE(0.5)},       {"kda", "0.01", "2", DONE(0.5)},
    {"kda", "0.001", "1", DONE(0.5)},      {"kda", "0.001", "2", DONE(0.5)},
    /* linear: every run failed; mla: nothing finished yet */
    {"linear", "0.001", "1", FAILED},      {"linear", "0.001", "2", FAILED},
    {"linear", "0.01", "1", FAILED},       {"linear", "0.01", "2", FAILED},
    {"mla", "0.001", "1", FAILED},         {"mla", "0.001", "2", NULL},
};
enum { N_RUNS = sizeof RUNS / sizeof RUNS[0] };

static const char *const EXPECTED_CSV =
    "model.mixer,train.lr,val_accuracy_mean,val_accuracy_min,val_accuracy_max,seeds_finished,seeds,candidates,failed_runs,"
    "note,runs\n"
    "softmax,0.001,0.6,0.5,0.7,2,2,2,1,1 run failed,\"mixer=softmax,lr=0.001,seed=1 mixer=softmax,lr=0.001,seed=2\"\n"
    "gdn,0.001,0.4,0.4,0.4,1,2,2,1,incomplete: 1 of 2 seeds finished; provisional: 1 run not done; 1 run failed,"
    "\"mixer=gdn,lr=0.001,seed=1 mixer=gdn,lr=0.001,seed=2\"\n"
    "kda,0.01,0.5,0.5,0.5,2,2,2,0,,\"mixer=kda,lr=0.01,seed=1 mixer=kda,lr=0.01,seed=2\"\n"
    "linear,,,,,0,0,2,4,all 4 runs failed,\n"
    "mla,,,,,0,0,1,1,no run finished yet (1 not done; 1 failed),\n";

static char *slurp(const char *path) {
    char *text = read_file(path, NULL, NULL);
    return text ? text : xstrdup("(missing)");
}

/* The made-up sweep of runs[] (fields model.mixer, train.lr, seed) in folder dir, with their
 * summaries in sums, selecting train.lr by the highest val_accuracy. */
static void fake_sweep(Sweep *sw, cJSON **sums, const FakeRun *runs, int n, char *dir) {
    *sw = (Sweep){.source = "fake.lua", .experiment = "fake", .dir = dir, .n_runs = n};
    sw->runs = xcalloc((size_t)n, sizeof(SweepRun));
    const char *fields[] = {"model.mixer", "train.lr", "seed"};
    for (int i = 0; i < n; i++) {
        SweepRun *r = &sw->runs[i];
        config_defaults(&r->cfg);
        const char *values[] = {runs[i].mixer, runs[i].lr, runs[i].seed};
        for (int k = 0; k < 3; k++) {
            char *set = xasprintf("%s=%s", fields[k], values[k]);
            Error err;
            if (!config_set(&r->cfg, set, &err)) die("%s", err.msg);
            free(set);
            r->paths[k] = xstrdup(fields[k]);
            r->values[k] = xstrdup(values[k]);
        }
        r->n_overrides = 3;
        r->name = xasprintf("mixer=%s,lr=%s,seed=%s", runs[i].mixer, runs[i].lr, runs[i].seed);
        sums[i] = runs[i].summary ? cJSON_Parse(runs[i].summary) : NULL;
    }
    sw->select.metric = xstrdup("val_accuracy");
    sw->select.maximize = true;
    sw->select.over[sw->select.n_over++] = xstrdup("train.lr");
}

static void free_fake_sweep(Sweep *sw, cJSON **sums) {
    for (int i = 0; i < sw->n_runs; i++) cJSON_Delete(sums[i]);
    sw->dir = NULL;
    sw->source = sw->experiment = NULL;
    sweep_free(sw);
}

TEST(test_select_prefers_complete_seeds_and_reports_every_setting) {
    char dir[] = "/tmp/attnlab_select_XXXXXX";
    CHECK(mkdtemp(dir), "cannot make a temporary folder");
    Sweep sw;
    cJSON *sums[N_RUNS];
    const char *fields[] = {"model.mixer", "train.lr", "seed"};
    fake_sweep(&sw, sums, RUNS, N_RUNS, dir);
    FILE *md = tmpfile();
    select_write(&sw, sums, fields, 3, md);
    char *csv_path = xasprintf("%s/selected.csv", dir), *json_path = xasprintf("%s/selected.json", dir);
    char *csv = slurp(csv_path), *json = slurp(json_path);
    CHECK(strcmp(csv, EXPECTED_CSV) == 0, "selected.csv:\n%s\nexpected:\n%s", csv, EXPECTED_CSV);
    /* the figures draw the chosen values' runs, every seed of them */
    cJSON *sel = cJSON_Parse(json), *runs = cJSON_GetObjectItemCaseSensitive(sel, "runs");
    CHECK(cJSON_GetArraySize(runs) == 6, "selected.json lists %d runs, expected 6: %s", cJSON_GetArraySize(runs), json);
    CHECK(strcmp(cJSON_GetArrayItem(runs, 4)->valuestring, "mixer=kda,lr=0.01,seed=1") == 0, "%s", json);
    CHECK(strcmp(sweep_json_string(sel, "goal"), "max") == 0, "%s", json);
    rewind(md);
    char buf[4096] = "";
    size_t n = fread(buf, 1, sizeof buf - 1, md);
    buf[n] = '\0';
    CHECK(strstr(buf, "| softmax | 0.001 | 0.6 | 0.5-0.7 | 2/2 | 2 | 1 run failed |\n") &&
              strstr(buf, "| linear | - | - | - | - | 2 | all 4 runs failed |\n"),
          "summary.md section:\n%s", buf);
    /* without a selection the files go */
    select_free(&sw.select);
    select_write(&sw, sums, fields, 3, md);
    CHECK(!path_exists(csv_path) && !path_exists(json_path), "selected.csv or .json left behind");
    fclose(md);
    cJSON_Delete(sel);
    free(csv);
    free(json);
    free(csv_path);
    free(json_path);
    free_fake_sweep(&sw, sums);
    rmdir(dir);
}

/* select.tune_seeds = { 1 }: seed 1 alone scores, the other seeds wait for it and then train only
 * at the choice; the row still reports the chosen value over all its seeds. */
static const FakeRun TUNED[] = {
    /* softmax: seed 1 prefers 0.001 (0.6 > 0.5), though 0.01's three seeds (kept from an earlier
     * sweep) average more than 0.001's; 0.01's other seeds are not chosen */
    {"softmax", "0.001", "1", DONE(0.6)},  {"softmax", "0.001", "2", DONE(0.1)},
    {"softmax", "0.001", "3", DONE(0.2)},  {"softmax", "0.01", "1", DONE(0.5)},
    {"softmax", "0.01", "2", DONE(0.5)},   {"softmax", "0.01", "3", DONE(0.5)},
    /* gdn: 0.001's seed 1 is not done, so its seed-2 runs wait */
    {"gdn", "0.001", "1", NULL},           {"gdn", "0.001", "2", NULL},
    {"gdn", "0.01", "1", DONE(0.3)},       {"gdn", "0.01", "2", NULL},
    /* kda: 0.001's seed 1 failed, which settles the choice: 0.01, whose seed 2 is to train */
    {"kda", "0.001", "1", FAILED},         {"kda", "0.001", "2", NULL},
    {"kda", "0.01", "1", DONE(0.4)},       {"kda", "0.01", "2", NULL},
};
enum { N_TUNED = sizeof TUNED / sizeof TUNED[0] };

static const char *const EXPECTED_TUNED_CSV =
    "model.mixer,train.lr,val_accuracy_mean,val_accuracy_min,val_accuracy_max,seeds_finished,seeds,candidates,failed_runs,"
    "note,runs\n"
    "softmax,0.001,0.3,0.1,0.6,3,3,2,0,,\"mixer=softmax,lr=0.001,seed=1 mixer=softmax,lr=0.001,seed=2 "
    "mixer=softmax,lr=0.001,seed=3\"\n"
    "gdn,0.01,0.3,0.3,0.3,1,2,2,0,incomplete: 1 of 2 seeds finished; provisional: 3 runs not done,"
    "\"mixer=gdn,lr=0.01,seed=1 mixer=gdn,lr=0.01,seed=2\"\n"
    "kda,0.01,0.4,0.4,0.4,1,2,2,1,incomplete: 1 of 2 seeds finished; 1 run not done; 1 run failed,"
    "\"mixer=kda,lr=0.01,seed=1 mixer=kda,lr=0.01,seed=2\"\n";

TEST(test_select_tune_seeds_choose_on_their_seeds_and_hold_back_the_rest) {
    char dir[] = "/tmp/attnlab_select_XXXXXX";
    CHECK(mkdtemp(dir), "cannot make a temporary folder");
    Sweep sw;
    cJSON *sums[N_TUNED];
    const char *fields[] = {"model.mixer", "train.lr", "seed"};
    fake_sweep(&sw, sums, TUNED, N_TUNED, dir);
    sw.select.tune_seeds[sw.select.n_tune_seeds++] = 1;
    RunNeed need[N_TUNED];
    select_run_needs(&sw, sums, need);
    static const RunNeed WANT[N_TUNED] = {RUN_WANTED,  RUN_WANTED,     RUN_WANTED,     RUN_WANTED, RUN_NOT_CHOSEN,
                                          RUN_NOT_CHOSEN, RUN_WANTED,  RUN_WAITING,    RUN_WANTED, RUN_WAITING,
                                          RUN_WANTED,  RUN_NOT_CHOSEN, RUN_WANTED,     RUN_WANTED};
    for (int i = 0; i < N_TUNED; i++)
        CHECK(need[i] == WANT[i], "run %s: need %d, expected %d", sw.runs[i].name, (int)need[i], (int)WANT[i]);
    FILE *md = tmpfile();
    select_write(&sw, sums, fields, 3, md);
    char *csv_path = xasprintf("%s/selected.csv", dir), *csv = slurp(csv_path);
    CHECK(strcmp(csv, EXPECTED_TUNED_CSV) == 0, "selected.csv:\n%s\nexpected:\n%s", csv, EXPECTED_TUNED_CSV);
    /* without tune_seeds every run is wanted, and all seeds score: softmax would keep 0.01 */
    sw.select.n_tune_seeds = 0;
    select_run_needs(&sw, sums, need);
    for (int i = 0; i < N_TUNED; i++) CHECK(need[i] == RUN_WANTED, "run %s not wanted without tune_seeds", sw.runs[i].name);
    select_write(&sw, sums, fields, 3, md);
    free(csv);
    csv = slurp(csv_path);
    CHECK(strstr(csv, "\nsoftmax,0.01,0.5,"), "selected.csv without tune_seeds:\n%s", csv);
    fclose(md);
    free(csv);
    free(csv_path);
    free_fake_sweep(&sw, sums);
    char *json_path = xasprintf("%s/selected.json", dir);
    unlink(json_path);
    free(json_path);
    rmdir(dir);
}
