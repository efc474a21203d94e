/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The push-pull transport's budgets (pushpull.c, issue 15) against a real
 * cluster thread on loopback, with frames sealed under the cluster's key
 * (so these are peers that hold the key, the case the unauthenticated
 * flood tests cannot reach):
 * - the largest frame (16 MiB) is read whole: its budget always fits;
 * - a second large frame from the same address at once is ended by the
 *   per-peer budget, while the first goes on;
 * - frames from two addresses (127.0.0.2, 127.0.0.3) together past the
 *   global budget: the second is ended;
 * each ending counted as shoal_gossip_rejected_total{reason="budget"}, and
 * the bytes buffered back to 0 once the connections are gone.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "cluster/cluster.h"
#include "cluster/keyring.h"
#include "cluster/ppframe.h"
#include "core/alloc.h"
#include "core/conf.h"

#define MIB (1u << 20)

static unsigned gossip_port, admin_port;
static sh_keyring_t *kr;
static uint8_t *frame; /* a 16 MiB stream frame under the cluster key */
static long frame_len;

static int dial(const char *from, unsigned port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET};
    if (from != NULL) {
        inet_pton(AF_INET, from, &sa.sin_addr);
        assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    }
    sa.sin_port = htons((uint16_t)port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    return fd;
}

/* Send f[0..n): the bytes the peer took before it closed. */
static size_t send_all(int fd, const uint8_t *f, size_t n)
{
    size_t off = 0;
    while (off < n) {
        ssize_t k = send(fd, f + off, n - off, MSG_NOSIGNAL);
        if (k <= 0) {
            if (k < 0 && errno == EINTR)
                continue;
            break;
        }
        off += (size_t)k;
    }
    return off;
}

/* A metric's value in /metrics (-1 if absent). */
static double metric(const char *name)
{
    static char buf[1 << 16];
    int fd = dial(NULL, admin_port);
    const char *req = "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n";
    size_t len = 0;
    if (write(fd, req, strlen(req)) > 0) {
        ssize_t k;
        while (len < sizeof(buf) - 1 && (k = read(fd, buf + len, sizeof(buf) - 1 - len)) > 0)
            len += (size_t)k;
    }
    buf[len] = 0;
    close(fd);
    char line[160];
    snprintf(line, sizeof(line), "\n%s", name); /* a sample, not its # HELP */
    char *p = strstr(buf, line);
    return p ? strtod(p + strlen(line), NULL) : -1;
}

#define BUDGET      "shoal_gossip_rejected_total{reason=\"budget\"} "
#define UNDECODABLE "shoal_gossip_rejected_total{reason=\"undecodable\"} "
#define BUFFERED    "shoal_gossip_pushpull_buffered_bytes "

static int wait_metric(const char *name, double at_least, unsigned ms)
{
    for (unsigned t = 0; t < ms; t += 20) {
        if (metric(name) >= at_least)
            return 1;
        usleep(20000);
    }
    fprintf(stderr, "%s stayed at %g (< %g)\n", name, metric(name), at_least);
    return 0;
}

/* 1 if the node closed fd within ms (EOF or reset). */
static int closed_by_node(int fd, unsigned ms)
{
    struct timeval tv = {.tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    char b[64];
    ssize_t k = recv(fd, b, sizeof(b), 0);
    return k == 0 || (k < 0 && errno != EAGAIN && errno != EWOULDBLOCK);
}

static void test_largest_frame_fits(void **state)
{
    double und = metric(UNDECODABLE), bud = metric(BUDGET);
    int fd = dial(NULL, gossip_port);
    assert_int_equal(send_all(fd, frame, (size_t)frame_len), (size_t)frame_len);
    /* opened whole, then refused by the decoder (its plaintext is noise) */
    assert_true(wait_metric(UNDECODABLE, und + 1, 10000));
    assert_true(closed_by_node(fd, 5000));
    close(fd);
    assert_true(metric(BUDGET) == bud);
    assert_true(wait_metric(BUFFERED, 0, 5000) && metric(BUFFERED) == 0);
}

/* Hold one frame of 10 MiB read (16 MiB buffered), then a second one. */
static void two_frames(const char *from1, const char *from2)
{
    double bud = metric(BUDGET);
    int a = dial(from1, gossip_port);
    assert_int_equal(send_all(a, frame, 10 * MIB), 10 * MIB);
    assert_true(wait_metric(BUFFERED, 16 * MIB, 10000));
    int b = dial(from2, gossip_port);
    size_t took = send_all(b, frame, 10 * MIB);
    assert_true(wait_metric(BUDGET, bud + 1, 10000));
    assert_true(closed_by_node(b, 5000));
    fprintf(stderr, "second frame ended after %zu bytes sent\n", took);
    /* the first goes on: not closed */
    assert_false(closed_by_node(a, 200));
    assert_true(metric(BUDGET) == bud + 1);
    close(a);
    close(b);
    for (unsigned t = 0; t < 5000 && metric(BUFFERED) != 0; t += 20)
        usleep(20000);
    assert_true(metric(BUFFERED) == 0);
}

static void test_peer_budget(void **state)
{
    two_frames(NULL, NULL); /* both from 127.0.0.1 */
}

static void test_global_budget(void **state)
{
    /* one frame is under the per-peer budget, two from different addresses
     * are over the global one */
    two_frames("127.0.0.2", "127.0.0.3");
}

static sh_conf_doc_t *doc;
static void *confs[1];
static sh_cluster_t *cl;
static sh_conf_module_t *const mods[] = {&sh_cluster_module};
static char keyfile[] = "/tmp/shoal-pp-keyXXXXXX";

static int setup(void **state)
{
    srand((unsigned)time(NULL) ^ (unsigned)getpid());
    gossip_port = 20000 + (unsigned)(rand() % 60) * 200 + 150;
    admin_port = gossip_port + 1;
    uint8_t key[SH_KEYRING_KEYLEN];
    for (unsigned i = 0; i < sizeof(key); i++)
        key[i] = (uint8_t)(i * 13 + 1);
    int fd = mkstemp(keyfile);
    for (unsigned i = 0; i < sizeof(key); i++)
        dprintf(fd, "%02x", key[i]);
    dprintf(fd, "\n");
    close(fd);
    char text[512];
    snprintf(text, sizeof(text),
             "cluster {\n name t; node_name pp; bind 127.0.0.1:%u;\n"
             " admin_listen 127.0.0.1:%u; encrypt_key_file %s;\n profile local;\n}\n",
             gossip_port, admin_port, keyfile);
    char err[SH_CONF_ERRLEN];
    sh_conf_t cf;
    if (sh_conf_parse_buffer("inline", text, strlen(text), NULL, &doc, err) != 0)
        return -1;
    sh_conf_init(&cf, mods, 1, "", "", NULL);
    confs[0] = sh_cluster_module.create_main();
    if (sh_conf_walk(&cf, sh_conf_doc_root(doc), SH_CTX_MAIN, confs) != 0 ||
        sh_cluster_module.init_main(&cf, confs[0]) != 0 ||
        sh_cluster_start(confs[0], NULL, &cl) != 0)
        return -1;
    kr = sh_keyring_create();
    sh_keyring_install(kr, key);
    uint8_t *pt = sh_malloc(SH_PPFRAME_MAX);
    memset(pt, 0xee, SH_PPFRAME_MAX);
    frame_len = sh_ppframe_seal(kr, pt, SH_PPFRAME_MAX, 0, &frame);
    sh_free(pt);
    return frame_len > 0 ? 0 : -1;
}

static int teardown(void **state)
{
    sh_cluster_stop(cl, 1000);
    sh_cluster_module.destroy_main(confs[0]);
    sh_conf_doc_destroy(doc);
    sh_keyring_destroy(kr);
    sh_free(frame);
    unlink(keyfile);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_largest_frame_fits),
        cmocka_unit_test(test_peer_budget),
        cmocka_unit_test(test_global_budget),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
