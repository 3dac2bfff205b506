#include "launch.h"

#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

/* How long the other ranks get to notice that one has gone and stop by themselves. */
static const double STRAGGLER_GRACE_S = 60;

static volatile sig_atomic_t pending_signal;
static void on_signal(int sig) { pending_signal = sig; }

/* A port that is free now, for rank 0 to listen on (the kernel's pick of an ephemeral port). */
static int free_port(void) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof a) != 0 || getsockname(fd, (struct sockaddr *)&a, &len) != 0)
        die("data-parallel launch: cannot find a free port: %s", strerror(errno));
    close(fd);
    return ntohs(a.sin_port);
}

static pid_t start_rank(RankMain rank_main, void *ctx, int rank, int world, int port, const char *gpu, pid_t group) {
    fflush(NULL); /* nothing buffered is printed twice */
    pid_t pid = fork();
    if (pid < 0) die("data-parallel launch: fork failed: %s", strerror(errno));
    if (pid > 0) {
        setpgid(pid, group ? group : pid); /* also in the child: whichever runs first */
        return pid;
    }
    /* the ranks form a process group of their own: a terminal's Ctrl-C reaches only the
     * launcher, which passes it on once (a second SIGINT stops a rank at once) */
    setpgid(0, group);
    prctl(PR_SET_PDEATHSIG, SIGTERM); /* the launcher gone: stop cleanly */
    signal(SIGINT, SIG_DFL);
    signal(SIGTERM, SIG_DFL);
    setenv("CUDA_VISIBLE_DEVICES", gpu, 1);
    char name[32]; /* what ps and top show: which rank this is (the kernel keeps 15 characters) */
    snprintf(name, sizeof name, "attnlab-rank%d", rank);
    prctl(PR_SET_NAME, name);
    RankEnv e = {.rank = rank, .world = world, .local_rank = rank, .port = port, .source = "attnlab's launcher"};
    snprintf(e.addr, sizeof e.addr, "127.0.0.1");
    int code = rank_main(ctx, &e);
    fflush(NULL);
    _exit(code);
}

static void describe_end(char *out, size_t len, int status) {
    const char *name = WIFSIGNALED(status) ? sigabbrev_np(WTERMSIG(status)) : NULL;
    if (name) snprintf(out, len, "was killed by SIG%s", name);
    else if (WIFSIGNALED(status)) snprintf(out, len, "was killed by signal %d", WTERMSIG(status));
    else snprintf(out, len, "exited with status %d", WEXITSTATUS(status));
}

int launch_ranks(const GpuList *gpus, RankMain rank_main, void *ctx) {
    int world = gpus->n, port = free_port();
    pid_t *pids = xcalloc((size_t)world, sizeof(pid_t));
    int *status = xcalloc((size_t)world, sizeof(int));
    struct sigaction sa = {.sa_handler = on_signal}, old_int, old_term;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, &old_int);
    sigaction(SIGTERM, &sa, &old_term);
    for (int r = 0; r < world; r++)
        pids[r] = start_rank(rank_main, ctx, r, world, port, gpus->names[r], r ? pids[0] : 0);
    pid_t group = pids[0];
    int running = world, first_bad = -1;
    double kill_at = 0;
    while (running > 0) {
        if (pending_signal) { /* once to every rank */
            kill(-group, pending_signal);
            pending_signal = 0;
        }
        int st;
        pid_t pid = waitpid(-group, &st, kill_at ? WNOHANG : 0);
        if (pid < 0 && errno == EINTR) continue;
        if (pid < 0) break;
        if (pid == 0) { /* stragglers: waiting for them to notice */
            if (now_seconds() > kill_at) kill(-group, SIGKILL);
            usleep(100 * 1000);
            continue;
        }
        for (int r = 0; r < world; r++)
            if (pids[r] == pid) {
                status[r] = st;
                pids[r] = 0;
                running--;
                bool bad = !WIFEXITED(st) || WEXITSTATUS(st) != 0;
                if (bad && first_bad < 0) first_bad = r;
                if (bad && !kill_at) kill_at = now_seconds() + STRAGGLER_GRACE_S;
            }
    }
    sigaction(SIGINT, &old_int, NULL);
    sigaction(SIGTERM, &old_term, NULL);
    int code;
    if (WIFEXITED(status[0]) && !(WEXITSTATUS(status[0]) == 0 && first_bad > 0)) {
        code = WEXITSTATUS(status[0]); /* rank 0 said how the run ended */
    } else {
        int who = first_bad >= 0 ? first_bad : 0;
        char how[96];
        describe_end(how, sizeof how, status[who]);
        fprintf(stderr, "attnlab: data-parallel rank %d (GPU %s) %s; the other ranks stopped%s\n", who, gpus->names[who],
                how, who == 0 ? ": the run's summary still says running; --resume continues from its last checkpoint" : "");
        code = 1;
    }
    free(pids);
    free(status);
    return code;
}
