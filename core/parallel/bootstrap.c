#include "bootstrap.h"

#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* What a connecting rank says first, so that a stray connection to the port is told apart. */
static const char HELLO[8] = "attnlab";

/* Reads or writes exactly len bytes before the deadline; false on a closed socket or timeout. */
static bool transfer(int fd, void *buf, size_t len, bool send_it, double deadline) {
    char *p = buf;
    while (len) {
        int left_ms = (int)((deadline - now_seconds()) * 1000);
        if (left_ms <= 0) return false;
        struct pollfd pfd = {.fd = fd, .events = send_it ? POLLOUT : POLLIN};
        int ready = poll(&pfd, 1, left_ms);
        if (ready < 0 && errno == EINTR) continue;
        if (ready <= 0) return false;
        ssize_t n = send_it ? send(fd, p, len, MSG_NOSIGNAL) : recv(fd, p, len, 0);
        if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
        if (n <= 0) return false;
        p += n;
        len -= (size_t)n;
    }
    return true;
}

static int listen_on(int port, Error *err) {
    int fd = socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0);
    bool v6 = fd >= 0;
    if (!v6) fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return error_set(err, "data-parallel rendezvous: cannot make a socket: %s", strerror(errno)), -1;
    int one = 1, zero = 0;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    int rc;
    if (v6) { /* both IPv6 and IPv4 peers */
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof zero);
        struct sockaddr_in6 a = {.sin6_family = AF_INET6, .sin6_port = htons((uint16_t)port), .sin6_addr = in6addr_any};
        rc = bind(fd, (struct sockaddr *)&a, sizeof a);
    } else {
        struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port), .sin_addr.s_addr = INADDR_ANY};
        rc = bind(fd, (struct sockaddr *)&a, sizeof a);
    }
    if (rc != 0 || listen(fd, 128) != 0) {
        error_set(err, "data-parallel rendezvous: rank 0 cannot listen on port %d (MASTER_PORT): %s", port, strerror(errno));
        close(fd);
        return -1;
    }
    return fd;
}

/* Rank 0: accepts the other world - 1 ranks, each once, and sends each the blob. */
static bool serve(Bootstrap *b, const RankEnv *e, const void *blob, size_t len, double deadline, Error *err) {
    int lfd = listen_on(e->port, err);
    if (lfd < 0) return false;
    bool *seen = xcalloc((size_t)e->world, sizeof(bool));
    bool ok = true;
    while (ok && b->n_peers < e->world - 1) {
        int left_ms = (int)((deadline - now_seconds()) * 1000);
        struct pollfd pfd = {.fd = lfd, .events = POLLIN};
        int ready = left_ms > 0 ? poll(&pfd, 1, left_ms) : 0;
        if (ready < 0 && errno == EINTR) continue;
        if (ready <= 0) {
            ok = error_set(err, "data-parallel rendezvous: %d of the %d other ranks did not connect to port %d in time",
                           e->world - 1 - b->n_peers, e->world - 1, e->port);
            break;
        }
        int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
        if (fd < 0) continue;
        char hello[sizeof HELLO];
        int32_t rank;
        /* a stray connection (a port scanner, another job) is dropped, not fatal */
        if (!transfer(fd, hello, sizeof hello, false, now_seconds() + 5) || memcmp(hello, HELLO, sizeof hello) != 0 ||
            !transfer(fd, &rank, sizeof rank, false, now_seconds() + 5) || rank <= 0 || rank >= e->world) {
            close(fd);
            continue;
        }
        if (seen[rank]) {
            ok = error_set(err, "data-parallel rendezvous: two processes say they are rank %d (RANK or SLURM_PROCID "
                                "must differ between ranks)", (int)rank);
            close(fd);
            break;
        }
        seen[rank] = true;
        int32_t world = e->world;
        if (!transfer(fd, &world, sizeof world, true, deadline) || !transfer(fd, (void *)blob, len, true, deadline)) {
            ok = error_set(err, "data-parallel rendezvous: rank %d left before it had the id", (int)rank);
            close(fd);
            break;
        }
        b->fds[b->n_peers] = fd;
        b->fd_ranks[b->n_peers++] = rank;
    }
    free(seen);
    close(lfd);
    return ok;
}

/* Another rank: connects to rank 0 (retrying while it is not up yet), says its rank, receives the blob. */
static bool join(Bootstrap *b, const RankEnv *e, void *blob, size_t len, double deadline, Error *err) {
    char port[16];
    snprintf(port, sizeof port, "%d", e->port);
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *res = NULL;
    int rc = getaddrinfo(e->addr, port, &hints, &res);
    if (rc != 0)
        return error_set(err, "data-parallel rendezvous: cannot resolve rank 0's address '%s' (MASTER_ADDR): %s", e->addr,
                         gai_strerror(rc));
    int fd = -1;
    while (fd < 0 && now_seconds() < deadline) {
        for (struct addrinfo *ai = res; ai && fd < 0; ai = ai->ai_next) {
            fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
            if (fd >= 0 && connect(fd, ai->ai_addr, ai->ai_addrlen) != 0) {
                close(fd);
                fd = -1;
            }
        }
        if (fd < 0) usleep(100 * 1000); /* rank 0 is not listening yet */
    }
    freeaddrinfo(res);
    if (fd < 0)
        return error_set(err, "data-parallel rendezvous: rank %d could not reach rank 0 at %s:%d in time", e->rank, e->addr,
                         e->port);
    int32_t rank = e->rank, world;
    bool ok = transfer(fd, (void *)HELLO, sizeof HELLO, true, deadline) && transfer(fd, &rank, sizeof rank, true, deadline) &&
              transfer(fd, &world, sizeof world, false, deadline);
    if (ok && world != e->world) {
        close(fd);
        return error_set(err, "data-parallel rendezvous: rank 0 runs a world of %d ranks, this rank was told %d",
                         (int)world, e->world);
    }
    if (!ok || !transfer(fd, blob, len, false, deadline)) {
        close(fd);
        return error_set(err, "data-parallel rendezvous: rank 0 at %s:%d closed the connection before sending the id",
                         e->addr, e->port);
    }
    b->fds[0] = fd;
    b->fd_ranks[0] = 0;
    b->n_peers = 1;
    return true;
}

bool bootstrap_share(Bootstrap *b, const RankEnv *e, void *blob, size_t len, double timeout_s, Error *err) {
    memset(b, 0, sizeof *b);
    b->rank = e->rank;
    b->world = e->world;
    b->fds = xcalloc((size_t)e->world, sizeof(int));
    b->fd_ranks = xcalloc((size_t)e->world, sizeof(int));
    double deadline = now_seconds() + timeout_s;
    bool ok = e->rank == 0 ? serve(b, e, blob, len, deadline, err) : join(b, e, blob, len, deadline, err);
    if (!ok) bootstrap_close(b);
    return ok;
}

int bootstrap_wait_for_departure(const Bootstrap *b, int timeout_ms) {
    struct pollfd pfd[b->n_peers > 0 ? b->n_peers : 1];
    for (int i = 0; i < b->n_peers; i++) pfd[i] = (struct pollfd){.fd = b->fds[i], .events = POLLIN};
    if (poll(pfd, (nfds_t)b->n_peers, timeout_ms) <= 0) return -1;
    for (int i = 0; i < b->n_peers; i++) {
        if (!pfd[i].revents) continue;
        char c; /* nothing is sent after the blob: readable means closed */
        if (recv(b->fds[i], &c, 1, MSG_DONTWAIT) <= 0) return b->fd_ranks[i];
    }
    return -1;
}

void bootstrap_close(Bootstrap *b) {
    for (int i = 0; i < b->n_peers; i++) close(b->fds[i]);
    free(b->fds);
    free(b->fd_ranks);
    memset(b, 0, sizeof *b);
}
