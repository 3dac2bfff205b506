/* The CPU-testable parts of data-parallel training (core/parallel/): reading a rank's place from
 * torchrun's or srun's environment, the TCP rendezvous that hands NCCL's id to every rank and
 * then tells them when one has gone, and the launcher of `train --gpus` with ranks that only
 * report. The NCCL side runs in tests/data_parallel_test.sh on a
 * machine with two or more GPUs. */
#include <netinet/in.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/parallel/bootstrap.h"
#include "core/parallel/launch.h"
#include "core/parallel/rank_env.h"
#include "test.h"

static const char *const RANK_VARIABLES[] = {"WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT",
                                             "SLURM_STEP_NUM_TASKS", "SLURM_PROCID", "SLURM_LOCALID",
                                             "SLURM_LAUNCH_NODE_IPADDR", "SLURM_JOB_ID"};

/* each test runs in a process of its own: the environment is ours to change */
static void clear_rank_variables(void) {
    for (size_t i = 0; i < sizeof RANK_VARIABLES / sizeof RANK_VARIABLES[0]; i++) unsetenv(RANK_VARIABLES[i]);
}

TEST(test_rank_env_reads_torchrun_and_srun_variables) {
    RankEnv e;
    Error err;
    clear_rank_variables();
    CHECK(rank_env_read(&e, &err) && e.world == 1 && e.rank == 0, "no variables: one process");
    setenv("WORLD_SIZE", "4", 1), setenv("RANK", "2", 1), setenv("LOCAL_RANK", "1", 1);
    setenv("MASTER_ADDR", "node7", 1), setenv("MASTER_PORT", "29501", 1);
    CHECK(rank_env_read(&e, &err), "torchrun's variables: %s", err.msg);
    CHECK(e.world == 4 && e.rank == 2 && e.local_rank == 1 && e.port == 29501 && strcmp(e.addr, "node7") == 0,
          "torchrun: world %d rank %d local %d port %d addr %s", e.world, e.rank, e.local_rank, e.port, e.addr);
    clear_rank_variables();
    /* srun: the step's tasks; rank 0's address from the launch node, the port from the job id */
    setenv("SLURM_STEP_NUM_TASKS", "8", 1), setenv("SLURM_PROCID", "5", 1), setenv("SLURM_LOCALID", "1", 1);
    setenv("SLURM_LAUNCH_NODE_IPADDR", "10.0.0.3", 1), setenv("SLURM_JOB_ID", "123", 1);
    CHECK(rank_env_read(&e, &err), "srun's variables: %s", err.msg);
    CHECK(e.world == 8 && e.rank == 5 && e.local_rank == 1 && strcmp(e.addr, "10.0.0.3") == 0 && e.port == 20123,
          "srun: world %d rank %d local %d port %d addr %s", e.world, e.rank, e.local_rank, e.port, e.addr);
    setenv("MASTER_PORT", "30000", 1); /* set by the batch script: it wins */
    CHECK(rank_env_read(&e, &err) && e.port == 30000, "srun with MASTER_PORT: port %d", e.port);
    /* a batch script of 4 tasks that is not a step itself has no SLURM_STEP_NUM_TASKS: one process */
    clear_rank_variables();
    setenv("SLURM_PROCID", "0", 1), setenv("SLURM_JOB_ID", "5", 1);
    CHECK(rank_env_read(&e, &err) && e.world == 1, "a batch script is one process: world %d", e.world);
}

TEST(test_rank_env_names_the_variable_that_is_wrong) {
    RankEnv e;
    Error err;
    struct {
        const char *vars[6][2];
        const char *expect;
    } cases[] = {
        {{{"WORLD_SIZE", "2"}, {"MASTER_ADDR", "h"}, {"MASTER_PORT", "1"}}, "RANK is not set"},
        {{{"WORLD_SIZE", "2"}, {"RANK", "2"}, {"MASTER_ADDR", "h"}, {"MASTER_PORT", "1"}}, "RANK: expected an integer from 0 to 1, got '2'"},
        {{{"WORLD_SIZE", "two"}}, "WORLD_SIZE: expected an integer"},
        {{{"WORLD_SIZE", "2"}, {"RANK", "1"}, {"MASTER_PORT", "1"}}, "MASTER_ADDR (rank 0's address) is not set"},
        {{{"WORLD_SIZE", "2"}, {"RANK", "1"}, {"MASTER_ADDR", "h"}}, "MASTER_PORT (rank 0's port) is not set"},
        {{{"WORLD_SIZE", "2"}, {"RANK", "1"}, {"MASTER_ADDR", "h"}, {"MASTER_PORT", "70000"}}, "MASTER_PORT: expected an integer from 1 to 65535"},
        {{{"SLURM_STEP_NUM_TASKS", "2"}, {"SLURM_PROCID", "1"}, {"SLURM_LAUNCH_NODE_IPADDR", "h"}}, "MASTER_PORT (rank 0's port) is not set"},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        clear_rank_variables();
        for (int v = 0; v < 6 && cases[c].vars[v][0]; v++) setenv(cases[c].vars[v][0], cases[c].vars[v][1], 1);
        bool ok = rank_env_read(&e, &err);
        CHECK(!ok, "case %zu: accepted", c);
        CHECK(strstr(err.msg, cases[c].expect), "case %zu: '%s' does not say '%s'", c, err.msg, cases[c].expect);
    }
}

/* A port no one listens on now: the kernel's pick, released. */
static int some_free_port(void) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof a) != 0 || getsockname(fd, (struct sockaddr *)&a, &len) != 0)
        return 0;
    close(fd);
    return ntohs(a.sin_port);
}

static RankEnv rank_at(int rank, int world, int port) {
    RankEnv e = {.rank = rank, .world = world, .local_rank = rank, .port = port, .source = "test"};
    snprintf(e.addr, sizeof e.addr, "127.0.0.1");
    return e;
}

TEST(test_bootstrap_hands_the_id_to_every_rank_and_notices_one_leave) {
    enum { WORLD = 4 };
    int port = some_free_port();
    const char id[32] = "the id of this run, 32 bytes...";
    pid_t kids[WORLD];
    for (int r = 1; r < WORLD; r++) {
        kids[r] = fork();
        if (kids[r] == 0) { /* rank r: receives the id, exits 0 if it is right, then stays until rank 0 says */
            RankEnv e = rank_at(r, WORLD, port);
            Bootstrap b;
            Error err;
            char got[32] = "";
            if (!bootstrap_share(&b, &e, got, sizeof got, 20, &err)) _exit(2);
            if (memcmp(got, id, sizeof got) != 0) _exit(3);
            if (r == 2) _exit(0); /* rank 2 leaves: rank 0 should see it */
            int gone = bootstrap_wait_for_departure(&b, 20000); /* rank 0 closes at the end */
            _exit(gone == 0 ? 0 : 4);
        }
    }
    RankEnv e = rank_at(0, WORLD, port);
    Bootstrap b;
    Error err;
    char mine[32];
    memcpy(mine, id, sizeof mine);
    bool ok = bootstrap_share(&b, &e, mine, sizeof mine, 20, &err);
    CHECK(ok, "rank 0: %s", err.msg);
    CHECK(b.n_peers == WORLD - 1, "rank 0 holds %d connections, not %d", b.n_peers, WORLD - 1);
    int gone = bootstrap_wait_for_departure(&b, 20000);
    CHECK(gone == 2, "rank 0 saw rank %d leave, not rank 2", gone);
    bootstrap_close(&b); /* ranks 1 and 3 see rank 0 leave */
    for (int r = 1; r < WORLD; r++) {
        int st;
        waitpid(kids[r], &st, 0);
        CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0, "rank %d ended with status %d (2: no id, 3: wrong id, 4: did not see "
              "rank 0 leave)", r, WIFEXITED(st) ? WEXITSTATUS(st) : -1);
    }
}

TEST(test_bootstrap_gives_up_with_the_ranks_and_address_missing) {
    int port = some_free_port();
    Error err;
    Bootstrap b;
    char id[8] = "id";
    RankEnv rank0 = rank_at(0, 3, port); /* ranks 1 and 2 never come */
    CHECK(!bootstrap_share(&b, &rank0, id, sizeof id, 0.5, &err), "rank 0 without its ranks succeeded");
    CHECK(strstr(err.msg, "2 of the 2 other ranks did not connect to port"), "rank 0's message: %s", err.msg);
    RankEnv rank1 = rank_at(1, 3, port); /* rank 0 never listens */
    CHECK(!bootstrap_share(&b, &rank1, id, sizeof id, 0.5, &err), "rank 1 without rank 0 succeeded");
    CHECK(strstr(err.msg, "rank 1 could not reach rank 0 at 127.0.0.1:"), "rank 1's message: %s", err.msg);
    snprintf(rank1.addr, sizeof rank1.addr, "no-such-host.invalid");
    CHECK(!bootstrap_share(&b, &rank1, id, sizeof id, 0.5, &err), "an unknown host succeeded");
    CHECK(strstr(err.msg, "cannot resolve rank 0's address 'no-such-host.invalid' (MASTER_ADDR)"), "message: %s", err.msg);
}

TEST(test_bootstrap_refuses_two_ranks_of_one_number_and_another_world) {
    int port = some_free_port();
    pid_t kids[2];
    for (int k = 0; k < 2; k++) {
        kids[k] = fork();
        if (kids[k] == 0) { /* both say rank 1 */
            RankEnv e = rank_at(1, 3, port);
            Bootstrap b;
            Error err;
            char got[8];
            _exit(bootstrap_share(&b, &e, got, sizeof got, 5, &err) ? 0 : 1);
        }
    }
    RankEnv e = rank_at(0, 3, port);
    Bootstrap b;
    Error err;
    char id[8] = "id";
    CHECK(!bootstrap_share(&b, &e, id, sizeof id, 10, &err), "two rank 1s accepted");
    CHECK(strstr(err.msg, "two processes say they are rank 1"), "message: %s", err.msg);
    for (int k = 0; k < 2; k++) kill(kids[k], SIGKILL), waitpid(kids[k], NULL, 0);
    /* a rank told another world size than rank 0 runs */
    int port2 = some_free_port();
    pid_t kid = fork();
    if (kid == 0) {
        RankEnv e0 = rank_at(0, 2, port2);
        Bootstrap b0;
        Error e0err;
        char id0[8] = "id";
        bootstrap_share(&b0, &e0, id0, sizeof id0, 5, &e0err);
        _exit(0);
    }
    RankEnv e1 = rank_at(1, 3, port2);
    CHECK(!bootstrap_share(&b, &e1, id, sizeof id, 5, &err), "a rank of another world accepted");
    CHECK(strstr(err.msg, "rank 0 runs a world of 2 ranks, this rank was told 3"), "message: %s", err.msg);
    waitpid(kid, NULL, 0);
}

/* ---- the launcher (core/parallel/launch.c), with made-up GPUs and ranks that only report ---- */

static GpuList fake_gpus(int n) {
    GpuList l = {0};
    const char *names[] = {"7", "3", "5", "1"};
    for (int i = 0; i < n; i++) l.names[l.n++] = xstrdup(names[i]);
    return l;
}

/* exits 0 when the rank sees its place and its GPU as the launcher promised; rank 0 then says 7 */
static int report_place(void *ctx, const RankEnv *e) {
    (void)ctx;
    const char *want[] = {"7", "3", "5", "1"};
    const char *gpu = getenv("CUDA_VISIBLE_DEVICES");
    bool right = e->world == 3 && e->local_rank == e->rank && e->port > 0 && strcmp(e->addr, "127.0.0.1") == 0 &&
                 gpu && strcmp(gpu, want[e->rank]) == 0;
    if (!right) return 2;
    return e->rank == 0 ? 7 : 0;
}

TEST(test_launcher_gives_each_rank_its_place_and_returns_rank_zeros_status) {
    GpuList gpus = fake_gpus(3);
    int code = launch_ranks(&gpus, report_place, NULL);
    CHECK(code == 7, "launcher returned %d, expected rank 0's 7 (2: a rank saw the wrong place or GPU)", code);
    gpu_list_free(&gpus);
}

static int die_if_rank_zero(void *ctx, const RankEnv *e) {
    (void)ctx;
    if (e->rank == 0) raise(SIGKILL);
    return 0;
}

TEST(test_launcher_fails_when_rank_zero_is_killed) {
    GpuList gpus = fake_gpus(2);
    int code = launch_ranks(&gpus, die_if_rank_zero, NULL);
    CHECK(code == 1, "rank 0 killed: launcher returned %d, expected 1", code);
    gpu_list_free(&gpus);
}

static int fail_if_rank_one(void *ctx, const RankEnv *e) {
    (void)ctx;
    return e->rank == 1 ? 3 : 0;
}

TEST(test_launcher_fails_when_another_rank_fails_after_rank_zero_finished) {
    GpuList gpus = fake_gpus(2);
    int code = launch_ranks(&gpus, fail_if_rank_one, NULL);
    CHECK(code == 1, "rank 1 failed: launcher returned %d, expected 1", code);
    gpu_list_free(&gpus);
}

static volatile sig_atomic_t interrupts;
static void count_interrupt(int sig) { (void)sig, interrupts++; }

/* waits for SIGINT, then a while longer (rank r: (r + 1) x 200 ms, so the ranks end apart and a
 * launcher that passed the signal on again would reach the later one), and writes how many came
 * to the pipe in ctx; 130 as a rank stopped by Ctrl-C */
static int count_interrupts(void *ctx, const RankEnv *e) {
    signal(SIGINT, count_interrupt);
    for (int i = 0; i < 500 && !interrupts; i++) usleep(10 * 1000);
    usleep((useconds_t)(e->rank + 1) * 200 * 1000);
    char seen[2] = {(char)e->rank, (char)interrupts};
    if (write(*(int *)ctx, seen, sizeof seen) != sizeof seen) return 1;
    return 130;
}

TEST(test_launcher_passes_ctrl_c_to_every_rank_once) {
    GpuList gpus = fake_gpus(2);
    int counts[2];
    CHECK(pipe(counts) == 0, "pipe");
    pid_t launcher = getpid(), poker = fork();
    if (poker == 0) { /* Ctrl-C at the launcher (the test process) once the ranks run */
        usleep(300 * 1000);
        kill(launcher, SIGINT);
        _exit(0);
    }
    int code = launch_ranks(&gpus, count_interrupts, &counts[1]);
    waitpid(poker, NULL, 0);
    CHECK(code == 130, "launcher returned %d, expected rank 0's 130", code);
    for (int k = 0; k < 2; k++) {
        char seen[2];
        CHECK(read(counts[0], seen, sizeof seen) == sizeof seen, "rank report %d missing", k);
        CHECK(seen[1] == 1, "rank %d saw %d interrupts, expected 1", seen[0], seen[1]);
    }
    gpu_list_free(&gpus);
}
