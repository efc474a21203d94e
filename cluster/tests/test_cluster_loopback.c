/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The libuv binding end to end inside one process: three cluster threads on
 * loopback (config parsed by the real conf walker) join through one seed,
 * list each other over GET /v1/members, and one leaves with sh_cluster_stop
 * and is seen as left. Ports are taken from a per-process base so parallel
 * ctest runs do not collide.
 */
#include <arpa/inet.h>
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
#include "core/conf.h"

static unsigned base_port;

static void get_members(unsigned admin, char *out, size_t cap)
{
    out[0] = 0;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)admin)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0) {
        const char *req = "GET /v1/members HTTP/1.1\r\nHost: x\r\n\r\n";
        if (write(fd, req, strlen(req)) > 0) {
            size_t len = 0;
            ssize_t n;
            while (len < cap - 1 && (n = read(fd, out + len, cap - 1 - len)) > 0)
                len += (size_t)n;
            out[len] = 0;
        }
    }
    close(fd);
}

static unsigned count(const char *s, const char *needle)
{
    unsigned n = 0;
    for (const char *p = s; (p = strstr(p, needle)) != NULL; p += strlen(needle))
        n++;
    return n;
}

typedef struct {
    sh_conf_doc_t *doc;
    sh_conf_t cf;
    void *confs[1];
    sh_cluster_t *cl;
} node;

static sh_conf_module_t *const mods[] = {&sh_cluster_module};

static void start(node *n, unsigned i, const char *keyfile)
{
    char text[1024];
    snprintf(text, sizeof(text),
             "cluster {\n name test; node_name n%u; bind 127.0.0.1:%u;\n"
             " admin_listen 127.0.0.1:%u; encrypt_key_file %s;\n profile local;\n"
             " %s tags idx=%u;\n}\n",
             i, base_port + i, base_port + 100 + i, keyfile, i == 0 ? "" : "join 127.0.0.1:%SEED%;",
             i);
    char *seed = strstr(text, "%SEED%");
    if (seed) {
        char tail[512];
        snprintf(tail, sizeof(tail), "%u%s", base_port, seed + 6);
        strcpy(seed, tail);
    }
    char err[SH_CONF_ERRLEN];
    assert_int_equal(sh_conf_parse_buffer("inline", text, strlen(text), NULL, &n->doc, err), 0);
    sh_conf_init(&n->cf, mods, 1, "", "", NULL);
    n->confs[0] = sh_cluster_module.create_main();
    int rc = sh_conf_walk(&n->cf, sh_conf_doc_root(n->doc), SH_CTX_MAIN, n->confs);
    if (rc != 0)
        fprintf(stderr, "%s\n", n->cf.err);
    assert_int_equal(rc, 0);
    assert_int_equal(sh_cluster_module.init_main(&n->cf, n->confs[0]), 0);
    assert_int_equal(sh_cluster_start(n->confs[0], NULL, &n->cl), 0);
    assert_non_null(n->cl);
}

static void stop(node *n)
{
    sh_cluster_stop(n->cl, 1000);
    sh_cluster_module.destroy_main(n->confs[0]);
    sh_conf_doc_destroy(n->doc);
}

static int wait_for(unsigned admin, const char *needle, unsigned want, unsigned ms)
{
    static char buf[65536];
    for (unsigned t = 0; t < ms; t += 50) {
        get_members(admin, buf, sizeof(buf));
        if (count(buf, needle) == want)
            return 1;
        usleep(50000);
    }
    fprintf(stderr, "last /v1/members from %u: %s\n", admin, buf);
    return 0;
}

static void test_three_nodes(void **state)
{
    char keyfile[] = "/tmp/shoal-cluster-keyXXXXXX";
    int fd = mkstemp(keyfile);
    const char *key = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f\n";
    assert_true(write(fd, key, strlen(key)) > 0);
    close(fd);
    node n[3];
    memset(n, 0, sizeof(n));
    for (unsigned i = 0; i < 3; i++)
        start(&n[i], i, keyfile);
    for (unsigned i = 0; i < 3; i++)
        assert_true(wait_for(base_port + 100 + i, "\"status\":\"alive\"", 3, 30000));
    stop(&n[2]); /* graceful: leave */
    assert_true(wait_for(base_port + 100, "\"status\":\"left\"", 1, 15000));
    assert_true(wait_for(base_port + 101, "\"status\":\"left\"", 1, 15000));
    stop(&n[1]);
    stop(&n[0]);
    unlink(keyfile);
}

int main(void)
{
    srand((unsigned)time(NULL) ^ (unsigned)getpid());
    /* Below the kernel's ephemeral range (32768..60999 by default), so a busy
     * machine's outgoing connections never hold the ports we bind. */
    base_port = 20000 + (unsigned)(rand() % 60) * 200;
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_three_nodes)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
