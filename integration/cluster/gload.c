/* SPDX-License-Identifier: Apache-2.0 */
/* gload: the paced HTTP/1.1 load generator of the global rate limit tests
 * (issue 13), in C so that it keeps its pace on a loaded machine where the
 * Python clients fell behind (they admitted 181-189/s for 200/s: a client
 * that stalls for more than a burst's worth of time loses budget that a
 * token bucket cannot give back).
 *
 * Open loop: request i is due at t0 + i / rate whatever the answers do; a
 * request goes to a port picked by weight among the ports not marked down,
 * on an idle keep-alive connection of that port (a new one if none is idle).
 *
 *   gload --rate R --path P --port [ADDR:]PORT:W [--port ...]
 *         [--key K | --keys N] [--conns M] [--seed S] [--host ADDR]
 *
 * stdin: "w PORT:W PORT:W ..." sets the weights; "q" or EOF stops.
 * stdout: "t0 SECONDS" (CLOCK_MONOTONIC, as Python's time.monotonic()),
 * then for every whole second s of that clock once it has ended:
 *   "s S sent N late MS c200 N c429 N other N err N p [ADDR:]PORT:N200 ..."
 * (ADDR, else --host, default 127.0.0.1: the nodes of a region in network
 * namespaces of their own listen on the same port at different addresses)
 * sent and late (the most a request of that second left after its due time,
 * in ms) by send time; answers by the time they completed, as before. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_PORTS    32
#define MAX_SECS     7200
#define IN_CAP       8192
#define RESP_TIMEOUT 3.0
#define DOWN_FOR     0.5

enum { C_FREE, C_CONNECTING, C_IDLE, C_BUSY };

struct conn {
    int fd;
    int port; /* index into ports */
    int state;
    int served; /* answers read on this connection */
    int retried;
    double sent_at;
    char req[512];
    size_t reqlen, reqoff;
    char in[IN_CAP];
    size_t inlen;
};

struct port {
    int num;
    struct in_addr addr;
    char label[64]; /* as given: PORT or ADDR:PORT */
    double weight;
    double down_until;
};

struct sec {
    long sent, c200, c429, other, err;
    double late;
    long by_port[MAX_PORTS];
};

static struct port ports[MAX_PORTS];
static int nports;
static struct conn *conns;
static int nconns_max = 32; /* per port */
static struct sec *secs;
static double t0;
static int epfd;
static uint64_t rng = 0x9e3779b97f4a7c15ull;
static const char *path = "/";
static const char *fixed_key = "hot";
static int nkeys;
static struct in_addr host;
static volatile sig_atomic_t stopping;

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static uint64_t rnd(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

static struct sec *sec_at(double t)
{
    long s = (long)(t - t0);
    if (s < 0)
        s = 0;
    if (s >= MAX_SECS)
        s = MAX_SECS - 1;
    return &secs[s];
}

static void count(int status, int port)
{
    struct sec *s = sec_at(now());
    if (status == 200) {
        s->c200++;
        s->by_port[port]++;
    } else if (status == 429)
        s->c429++;
    else if (status < 0)
        s->err++;
    else
        s->other++;
}

static void conn_close(struct conn *c)
{
    if (c->fd >= 0) {
        epoll_ctl(epfd, EPOLL_CTL_DEL, c->fd, NULL);
        close(c->fd);
    }
    c->fd = -1;
    c->state = C_FREE;
    c->served = 0;
    c->inlen = 0;
}

static int conn_open(struct conn *c, int port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    struct sockaddr_in sa;
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)ports[port].num);
    sa.sin_addr = ports[port].addr;
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0 && errno != EINPROGRESS) {
        close(fd);
        return -1;
    }
    c->fd = fd;
    c->port = port;
    c->state = C_CONNECTING;
    c->served = 0;
    c->inlen = 0;
    struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT, .data.ptr = c};
    epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev);
    return 0;
}

static void port_failed(struct conn *c)
{
    ports[c->port].down_until = now() + DOWN_FOR;
    count(-1, c->port);
    conn_close(c);
}

static void try_write(struct conn *c)
{
    while (c->reqoff < c->reqlen) {
        ssize_t n = send(c->fd, c->req + c->reqoff, c->reqlen - c->reqoff, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EAGAIN || errno == EINTR)
                break;
            port_failed(c);
            return;
        }
        c->reqoff += (size_t)n;
    }
    struct epoll_event ev = {.events = EPOLLIN | (c->reqoff < c->reqlen ? EPOLLOUT : 0u),
                             .data.ptr = c};
    epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &ev);
}

/* A request failed before any byte of its answer: on a reused keep-alive
 * connection the server may have closed it just then, so send it once more
 * on a new connection (as the Python clients did); else the port is down. */
static void failed_request(struct conn *c)
{
    if (c->served > 0 && c->inlen == 0 && !c->retried) {
        int port = c->port;
        char req[512];
        size_t len = c->reqlen;
        memcpy(req, c->req, len);
        double at = c->sent_at;
        conn_close(c);
        if (conn_open(c, port) == 0) {
            memcpy(c->req, req, len);
            c->reqlen = len;
            c->reqoff = 0;
            c->retried = 1;
            c->sent_at = at;
            c->state = C_BUSY;
            return; /* written once connected */
        }
        ports[port].down_until = now() + DOWN_FOR;
        count(-1, port);
        return;
    }
    port_failed(c);
}

/* 1 when a whole answer is in c->in; sets *status and *close_after */
static int parse(struct conn *c, int *status, int *close_after)
{
    char *end = memmem(c->in, c->inlen, "\r\n\r\n", 4);
    if (!end)
        return 0;
    size_t head = (size_t)(end - c->in) + 4;
    if (c->inlen < 12 || memcmp(c->in, "HTTP/1.", 7) != 0)
        return -1;
    *status = atoi(c->in + 9);
    long cl = -1;
    *close_after = 0;
    for (char *p = memchr(c->in, '\n', head); p && p < end;
         p = memchr(p, '\n', (size_t)(end - p))) {
        p++;
        if (strncasecmp(p, "content-length:", 15) == 0)
            cl = strtol(p + 15, NULL, 10);
        else if (strncasecmp(p, "connection:", 11) == 0 && strncasecmp(p + 11, " close", 6) == 0)
            *close_after = 1;
        else if (strncasecmp(p, "transfer-encoding:", 18) == 0)
            return -1; /* the test servers answer with a length */
    }
    if (cl < 0)
        return -1;
    if (c->inlen < head + (size_t)cl)
        return 0;
    return 1;
}

static void on_event(struct conn *c, uint32_t ev)
{
    if (c->state == C_CONNECTING) {
        if (ev & (EPOLLERR | EPOLLHUP)) {
            failed_request(c);
            return;
        }
        if (ev & EPOLLOUT) {
            c->state = C_BUSY;
            try_write(c);
        }
        return;
    }
    if (c->state != C_BUSY) {
        /* an idle connection the server closed */
        conn_close(c);
        return;
    }
    if (ev & EPOLLOUT)
        try_write(c);
    if (c->fd < 0 || !(ev & (EPOLLIN | EPOLLERR | EPOLLHUP)))
        return;
    for (;;) {
        if (c->inlen == IN_CAP) {
            port_failed(c);
            return;
        }
        ssize_t n = recv(c->fd, c->in + c->inlen, IN_CAP - c->inlen, 0);
        if (n < 0) {
            if (errno == EAGAIN || errno == EINTR)
                return;
            failed_request(c);
            return;
        }
        if (n == 0) {
            failed_request(c);
            return;
        }
        c->inlen += (size_t)n;
        int status = 0, close_after = 0;
        int r = parse(c, &status, &close_after);
        if (r < 0) {
            port_failed(c);
            return;
        }
        if (r == 1) {
            count(status, c->port);
            c->served++;
            c->inlen = 0;
            c->retried = 0;
            if (close_after)
                conn_close(c);
            else {
                c->state = C_IDLE;
                struct epoll_event e = {.events = EPOLLIN, .data.ptr = c};
                epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &e);
            }
            return;
        }
    }
}

static int pick(double t)
{
    double total = 0;
    for (int i = 0; i < nports; i++)
        if (ports[i].weight > 0 && ports[i].down_until <= t)
            total += ports[i].weight;
    if (total <= 0)
        return -1;
    double r = (double)(rnd() >> 11) / 9007199254740992.0 * total;
    int last = -1;
    for (int i = 0; i < nports; i++) {
        if (!(ports[i].weight > 0 && ports[i].down_until <= t))
            continue;
        last = i;
        r -= ports[i].weight;
        if (r <= 0)
            return i;
    }
    return last;
}

static void send_one(double due, double t)
{
    int p = pick(t);
    if (p < 0)
        return;
    struct conn *idle = NULL, *free_c = NULL;
    for (int i = p * nconns_max; i < (p + 1) * nconns_max; i++) {
        if (conns[i].state == C_IDLE) {
            idle = &conns[i];
            break;
        }
        if (conns[i].state == C_FREE && !free_c)
            free_c = &conns[i];
    }
    struct sec *s = sec_at(t);
    s->sent++;
    if (t - due > s->late)
        s->late = t - due;
    char key[32];
    if (nkeys > 0)
        snprintf(key, sizeof key, "k%03d", (int)(rnd() % (uint64_t)nkeys));
    else
        snprintf(key, sizeof key, "%s", fixed_key);
    struct conn *c = idle ? idle : free_c;
    if (!c) {
        count(-1, p); /* every connection of the port is waiting: count it failed */
        return;
    }
    int n = snprintf(c->req, sizeof c->req,
                     "GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Key: %s\r\n\r\n", path, key);
    c->reqlen = (size_t)n;
    c->reqoff = 0;
    c->retried = 0;
    c->sent_at = t;
    if (idle) {
        c->state = C_BUSY;
        try_write(c);
        return;
    }
    if (conn_open(c, p) < 0) {
        ports[p].down_until = t + DOWN_FOR;
        count(-1, p);
        c->state = C_FREE;
        return;
    }
    c->state = C_CONNECTING;
}

static void emit(long s)
{
    struct sec *x = &secs[s];
    printf("s %ld sent %ld late %.1f c200 %ld c429 %ld other %ld err %ld p", s, x->sent,
           x->late * 1000.0, x->c200, x->c429, x->other, x->err);
    for (int i = 0; i < nports; i++)
        printf(" %s:%ld", ports[i].label, x->by_port[i]);
    printf("\n");
    fflush(stdout);
}

static void set_weights(char *line)
{
    for (char *tok = strtok(line, " \t\n"); tok; tok = strtok(NULL, " \t\n")) {
        int num = atoi(tok);
        char *colon = strchr(tok, ':');
        if (!colon)
            continue;
        for (int i = 0; i < nports; i++)
            if (ports[i].num == num)
                ports[i].weight = atof(colon + 1);
    }
}

static void on_term(int sig)
{
    (void)sig;
    stopping = 1;
}

static void usage(void)
{
    fprintf(stderr, "usage: gload --rate R --path P --port PORT:W [...] [--key K | --keys N] "
                    "[--conns M] [--seed S] [--host ADDR]\n");
    exit(2);
}

int main(int argc, char **argv)
{
    double rate = 0;
    inet_pton(AF_INET, "127.0.0.1", &host);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (i + 1 >= argc)
            usage();
        const char *v = argv[++i];
        if (!strcmp(a, "--rate"))
            rate = atof(v);
        else if (!strcmp(a, "--path"))
            path = v;
        else if (!strcmp(a, "--key"))
            fixed_key = v;
        else if (!strcmp(a, "--keys"))
            nkeys = atoi(v);
        else if (!strcmp(a, "--conns"))
            nconns_max = atoi(v);
        else if (!strcmp(a, "--seed"))
            rng ^= strtoull(v, NULL, 10) * 0x2545f4914f6cdd1dull;
        else if (!strcmp(a, "--host")) {
            if (inet_pton(AF_INET, v, &host) != 1)
                usage();
        } else if (!strcmp(a, "--port") && nports < MAX_PORTS) {
            struct port *p = &ports[nports++];
            char buf[64];
            snprintf(buf, sizeof buf, "%s", v);
            char *w = strrchr(buf, ':');
            p->weight = 1.0;
            if (w && (strchr(buf, ':') != w ||                        /* ADDR:PORT:W */
                      memchr(buf, '.', (size_t)(w - buf)) == NULL)) { /* PORT:W */
                p->weight = atof(w + 1);
                *w = 0;
            }
            char *c = strchr(buf, ':');
            p->addr.s_addr = 0;
            if (c) { /* ADDR:PORT */
                *c = 0;
                if (inet_pton(AF_INET, buf, &p->addr) != 1)
                    usage();
                *c = ':';
                p->num = atoi(c + 1);
            } else
                p->num = atoi(buf);
            snprintf(p->label, sizeof p->label, "%s", buf);
        } else
            usage();
    }
    if (rate <= 0 || nports == 0 || nconns_max < 1 || nconns_max > 4096 || strlen(path) > 200)
        usage();
    for (int i = 0; i < nports; i++)
        if (ports[i].addr.s_addr == 0)
            ports[i].addr = host;
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    signal(SIGPIPE, SIG_IGN);
    signal(SIGTERM, on_term);
    signal(SIGINT, on_term);
    conns = calloc((size_t)nports * (size_t)nconns_max, sizeof *conns);
    secs = calloc(MAX_SECS, sizeof *secs);
    if (!conns || !secs)
        return 1;
    for (int i = 0; i < nports * nconns_max; i++)
        conns[i].fd = -1;
    epfd = epoll_create1(EPOLL_CLOEXEC);
    fcntl(0, F_SETFL, fcntl(0, F_GETFL) | O_NONBLOCK);
    struct epoll_event sev = {.events = EPOLLIN, .data.ptr = NULL};
    epoll_ctl(epfd, EPOLL_CTL_ADD, 0, &sev);
    t0 = now();
    printf("t0 %.6f\n", t0);
    fflush(stdout);
    double period = 1.0 / rate;
    uint64_t sent_i = 0;
    long emitted = 0;
    char line[4096];
    size_t linelen = 0;
    struct epoll_event evs[64];
    while (!stopping) {
        double t = now();
        double due = t0 + (double)sent_i * period;
        while (due <= t) {
            if (t - due > 1.0) { /* far behind (a stall): do not burst to catch up */
                sent_i = (uint64_t)((t - t0) / period);
                due = t0 + (double)sent_i * period;
            }
            send_one(due, t);
            sent_i++;
            due = t0 + (double)sent_i * period;
        }
        while (emitted < MAX_SECS && t >= t0 + (double)emitted + 1.0)
            emit(emitted++);
        for (int i = 0; i < nports * nconns_max; i++) {
            struct conn *c = &conns[i];
            if ((c->state == C_BUSY || c->state == C_CONNECTING) && t - c->sent_at > RESP_TIMEOUT)
                port_failed(c);
        }
        int wait_ms = (int)((due - now()) * 1000.0);
        if (wait_ms < 0)
            wait_ms = 0;
        if (wait_ms > 50)
            wait_ms = 50;
        int n = epoll_wait(epfd, evs, 64, wait_ms);
        for (int i = 0; i < n; i++) {
            if (evs[i].data.ptr == NULL) {
                ssize_t r = read(0, line + linelen, sizeof line - 1 - linelen);
                if (r == 0) {
                    stopping = 1;
                    break;
                }
                if (r < 0)
                    continue;
                linelen += (size_t)r;
                line[linelen] = 0;
                char *nl;
                while ((nl = strchr(line, '\n'))) {
                    *nl = 0;
                    if (line[0] == 'q')
                        stopping = 1;
                    else if (line[0] == 'w')
                        set_weights(line + 1);
                    size_t rest = linelen - (size_t)(nl + 1 - line);
                    memmove(line, nl + 1, rest);
                    linelen = rest;
                    line[linelen] = 0;
                }
                if (linelen >= sizeof line - 1)
                    linelen = 0;
                continue;
            }
            on_event(evs[i].data.ptr, evs[i].events);
        }
    }
    /* the second in progress too, so that a caller sees every answer */
    long last = (long)(now() - t0);
    while (emitted <= last && emitted < MAX_SECS)
        emit(emitted++);
    printf("end\n");
    fflush(stdout);
    for (int i = 0; i < nports * nconns_max; i++)
        if (conns[i].fd >= 0)
            close(conns[i].fd);
    free(conns);
    free(secs);
    return 0;
}
