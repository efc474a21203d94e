/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Routing, variables, map and access log, from real configurations loaded
 * with the node's modules: location order (nginx's documented examples and
 * nested/regex cases), server_name selection (exact, wildcards, regexes,
 * default), URI normalization, map lookups, variable values with
 * captures, and access log lines. Requests are parsed with the real codec
 * and routed as conn.c does; nothing touches a socket.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/err.h"
#include "node/modules/accesslog.h"
#include "node/modules/map.h"
#include "node/modules/rewrite.h"
#include "node/pipeline/http_conf.h"
#include "node/pipeline/node.h"
#include "node/pipeline/runtime.h"
#include "node/pipeline/vars.h"

extern sh_conf_module_t sh_proxy_module;
extern sh_conf_module_t sh_upstream_module;

static sh_conf_module_t *const mods[] = {
    &sh_core_module,      &sh_http_core_module, &sh_map_module,  &sh_rewrite_module,
    &sh_accesslog_module, &sh_upstream_module,  &sh_proxy_module};

static char prefix[256];

static sh_runtime_t *load(const char *http_body, char *err)
{
    char text[16384];
    snprintf(text, sizeof(text), "events {}\nhttp {\n%s\n}\n", http_body);
    sh_runtime_t *rt = NULL;
    int rc = sh_runtime_load(NULL, "test.conf", text, prefix, mods, sizeof(mods) / sizeof(mods[0]),
                             -1, &rt, err);
    return rc == 0 ? rt : NULL;
}

static sh_runtime_t *must_load(const char *http_body)
{
    char err[SH_CONF_ERRLEN] = "";
    sh_runtime_t *rt = load(http_body, err);
    if (rt == NULL)
        fail_msg("load failed: %s", err);
    return rt;
}

/* A parsed request on a fake connection, routed as conn.c does. */
typedef struct {
    sh_conn_t c;
    sh_request_t r;
    char head[2048];
} treq_t;

static void mkreq(treq_t *t, const sh_http_addr_t *addr, const char *fmt, ...)
{
    memset(t, 0, sizeof(*t));
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(t->head, sizeof(t->head), fmt, ap);
    va_end(ap);
    t->c.addr = addr;
    t->c.id = 7;
    t->c.nrequests = 1;
    struct sockaddr_in *in = (struct sockaddr_in *)&t->c.peer;
    in->sin_family = AF_INET;
    in->sin_port = htons(5555);
    inet_pton(AF_INET, "10.1.2.3", &in->sin_addr);
    sh_request_t *r = &t->r;
    r->c = &t->c;
    r->h.headers = r->headers;
    r->h.max_headers = SH_MAX_REQUEST_HEADERS;
    sh_http1_limits_t lim = {0};
    ssize_t n = sh_http1_parse_request(t->head, strlen(t->head), &r->h, &lim);
    assert_true(n > 0);
    const char *q = memchr(r->h.target, '?', r->h.target_len);
    if (q != NULL) {
        r->path = (sh_str_t){r->h.target, (size_t)(q - r->h.target)};
        r->args = (sh_str_t){q + 1, r->h.target_len - (size_t)(q - r->h.target) - 1};
    } else {
        r->path = (sh_str_t){r->h.target, r->h.target_len};
    }
    r->srv = sh_http_find_server(addr, r->h.host, r->h.host_len);
    r->loc = sh_http_find_location(r->srv, r->path.p, r->path.len);
    r->core = sh_http_loc_conf(r->loc, &sh_http_core_module);
    r->start_ms = 1;
}

static void treq_free(treq_t *t)
{
    /* what sh_request_free does for a request's modules (the map cache) */
    while (t->r.ncleanup > 0) {
        t->r.ncleanup--;
        t->r.cleanup[t->r.ncleanup].fn(&t->r, t->r.cleanup[t->r.ncleanup].data);
    }
    sh_buf_dispose(&t->r.scratch);
}

/* The text of the `return 200 TEXT` of the request's location. */
static const char *answer(treq_t *t)
{
    const sh_cv_t *text = sh_rewrite_return_text(t->r.loc);
    if (text == NULL)
        return "(none)";
    t->r.scratch.len = 0;
    sh_cv_eval(text, &t->r, &t->r.scratch);
    sh_buf_append(&t->r.scratch, "", 1);
    return t->r.scratch.data;
}

static const char *route(const sh_runtime_t *rt, const char *host, const char *target, treq_t *t)
{
    mkreq(t, &rt->http->addrs[0], "GET %s HTTP/1.1\r\nHost: %s\r\n\r\n", target, host);
    return answer(t);
}

/* ------------------------------------------------------ locations -- */

static void test_location_order(void **state)
{
    (void)state;
    /* nginx's documentation example (ngx_http_core_module, location),
     * plus nesting and regex captures */
    sh_runtime_t *rt =
        must_load("server { listen 127.0.0.1:18001;\n"
                  "  location = / { return 200 A; }\n"
                  "  location / { return 200 B; }\n"
                  "  location /documents/ { return 200 C; }\n"
                  "  location ^~ /images/ { return 200 D; }\n"
                  "  location ~* \\.(gif|jpg|jpeg)$ { return 200 E; }\n"
                  "  location /a/ { return 200 a;\n"
                  "    location ~ \\.x$ { return 200 F; } }\n"
                  "  location ~ \\.x$ { return 200 G; }\n"
                  "  location /n/ { return 200 n;\n"
                  "    location ^~ /n/p/ { return 200 H; } }\n"
                  "  location ~ ^/n/p/ { return 200 I; }\n"
                  "  location ~ ^/r/(\\w+)/(?<rest>.*)$ { return 200 \"J $1 $rest $2\";\n"
                  "    location ~ \\.y$ { return 200 \"K $1\"; } }\n"
                  "  location = /exact { return 200 X; }\n"
                  "  location /exact { return 200 Y; }\n"
                  "  location ~ ^/CASE { return 200 cs; }\n"
                  "}\n");
    static const struct {
        const char *target, *want;
    } cases[] = {
        {"/", "A"},
        {"/index.html", "B"},
        {"/documents/document.html", "C"},
        {"/images/1.gif", "D"},
        {"/documents/1.jpg", "E"},
        {"/documents/1.JPG", "E"},
        {"/a/b.x", "F"},
        {"/a/b", "a"},
        {"/b.x", "G"},
        {"/n/q", "n"},
        /* a nested ^~ stops the regexes of its own level only (nginx's
         * noregex is per level): the outer regex still wins */
        {"/n/p/z", "I"},
        {"/r/abc/def/g", "J abc def/g def/g"},
        /* captures are those of the last regex that matched: the nested
         * one, which has no group 1 (as nginx) */
        {"/r/abc/d.y", "K "},
        {"/exact", "X"},
        {"/exact/", "Y"},
        {"/exactly", "Y"},
        {"/CASE", "cs"},
        {"/case", "B"},
        /* matching is on the normalized URI */
        {"/documents/../images/1.gif", "D"},
        {"/%69mages/x", "D"},
        {"//documents//x", "C"},
        {"/./documents/./x", "C"},
        {"/documents/x?q=/images/", "C"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        treq_t t;
        const char *got = route(rt, "h", cases[i].target, &t);
        if (strcmp(got, cases[i].want) != 0)
            fail_msg("%s: got \"%s\", want \"%s\"", cases[i].target, got, cases[i].want);
        treq_free(&t);
    }
    sh_runtime_destroy(rt);
}

static void test_location_errors(void **state)
{
    (void)state;
    char err[SH_CONF_ERRLEN];
    assert_null(load("server { listen 127.0.0.1:18001;\n location ~ ([a- { } }", err));
    print_message("%s\n", err);
    assert_non_null(strstr(err, "test.conf:4: pcre2_compile() failed"));
    assert_null(load("server { listen 127.0.0.1:18001;\n"
                     " location / { return 200 $nope; } }",
                     err));
    assert_non_null(strstr(err, "test.conf:4: unknown \"nope\" variable"));
}

/* ------------------------------------------------------ server names -- */

static void test_server_names(void **state)
{
    (void)state;
    sh_runtime_t *rt = must_load(
        "server { listen 127.0.0.1:18002; server_name first; return 200 S_first; }\n"
        "server { listen 127.0.0.1:18002; server_name example.com www.example.com; return 200 S1; "
        "}\n"
        "server { listen 127.0.0.1:18002; server_name *.example.com; return 200 S2; }\n"
        "server { listen 127.0.0.1:18002; server_name .example.org; return 200 S3; }\n"
        "server { listen 127.0.0.1:18002; server_name mail.*; return 200 S4; }\n"
        "server { listen 127.0.0.1:18002; server_name ~^(?<user>\\w+)\\.example\\.net$;\n"
        "  return 200 \"S5 $user $1\"; }\n"
        "server { listen 127.0.0.1:18002; server_name *.sub.example.com; return 200 S6; }\n"
        "server { listen 127.0.0.1:18002 default_server; server_name _; return 200 S0; }\n"
        "server { listen 127.0.0.1:18002; server_name \"\"; return 200 S_empty; }\n");
    static const struct {
        const char *host, *want;
    } cases[] = {
        {"example.com", "S1"},
        {"WWW.Example.COM", "S1"},
        {"example.com:8080", "S1"},
        {"example.com.", "S1"},
        {"a.example.com", "S2"},
        {"a.sub.example.com", "S6"},
        {"mail.example.com", "S2"}, /* leading wildcards before trailing ones */
        {"example.org", "S3"},
        {"x.y.example.org", "S3"},
        {"mail.foo", "S4"},
        {"bob.example.net", "S5 bob bob"},
        {"BOB.example.net", "S5 bob bob"},
        {"unknown", "S0"},
        {"first", "S_first"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        treq_t t;
        const char *got = route(rt, cases[i].host, "/", &t);
        if (strcmp(got, cases[i].want) != 0)
            fail_msg("Host %s: got \"%s\", want \"%s\"", cases[i].host, got, cases[i].want);
        treq_free(&t);
    }
    /* no Host (HTTP/1.0): the "" name */
    treq_t t;
    mkreq(&t, &rt->http->addrs[0], "GET / HTTP/1.0\r\n\r\n");
    assert_string_equal(answer(&t), "S_empty");
    treq_free(&t);
    sh_runtime_destroy(rt);

    /* without default_server, the first server on the address */
    rt = must_load("server { listen 127.0.0.1:18003; server_name a; return 200 A; }\n"
                   "server { listen 127.0.0.1:18003; server_name b; return 200 B; }\n");
    assert_string_equal(route(rt, "zzz", "/", &t), "A");
    treq_free(&t);
    assert_string_equal(route(rt, "B", "/", &t), "B");
    treq_free(&t);
    sh_runtime_destroy(rt);

    char err[SH_CONF_ERRLEN];
    assert_null(load("server { listen 127.0.0.1:18003; server_name a*b.com; }", err));
    assert_non_null(strstr(err, "invalid server name"));
}

/* ------------------------------------------------------ normalization -- */

static void test_normalize(void **state)
{
    (void)state;
    static const struct {
        const char *in, *out; /* out NULL: an error (nginx: 400) */
    } cases[] = {
        {"/", "/"},         {"/a/b", "/a/b"},   {"//a///b//", "/a/b/"},   {"/a/./b", "/a/b"},
        {"/a/../b", "/b"},  {"/a/b/..", "/a/"}, {"/a/b/.", "/a/b/"},      {"/a/%2e%2e/b", "/b"},
        {"/a%2Fb", "/a/b"}, {"/%41%42", "/AB"}, {"/100%", "/100%"},       {"/%zz", "/%zz"},
        {"/a/..", "/"},     {"/..", NULL},      {"/a/../..", NULL},       {"/a/../../b", NULL},
        {"/%00", NULL},     {"a", NULL},        {"/a/.../b", "/a/.../b"}, {"/a/..b/c", "/a/..b/c"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char out[64];
        size_t n = 0;
        int rc = sh_http_normalize_uri(cases[i].in, strlen(cases[i].in), out, &n);
        if (cases[i].out == NULL) {
            if (rc == 0)
                fail_msg("%s: want an error, got \"%.*s\"", cases[i].in, (int)n, out);
            continue;
        }
        if (rc != 0 || n != strlen(cases[i].out) || memcmp(out, cases[i].out, n) != 0)
            fail_msg("%s: got rc %d \"%.*s\", want \"%s\"", cases[i].in, rc, (int)n, out,
                     cases[i].out);
    }
}

/* ------------------------------------------------------ map -- */

static void test_map(void **state)
{
    (void)state;
    sh_runtime_t *rt = must_load(
        /* used before the map that defines it: nginx resolves at the end */
        "server { listen 127.0.0.1:18004;\n"
        "  location / { return 200 \"[$m1][$m2][$connection_upgrade][$m3][$m4][$m5]\"; } }\n"
        "map $arg_k $m1 { default d; exact E; ~^re(\\d+)$ R$1; ~*^CI ci; '' empty; }\n"
        "map $http_host $m2 { hostnames; default none; .example.com ex; *.foo.com foo;\n"
        "  www.* www; exact.foo.com exact; }\n"
        "map $http_upgrade $connection_upgrade { default upgrade; '' ''; }\n"
        "map $uri $m3 { ~^/u/(?<name>[a-z]+) $name-x; default $uri; }\n"
        "map $m1 $m4 { E chained; default no; }\n"
        "map \"$arg_a:$arg_b\" $m5 { 1:2 both; volatile; }\n");
    static const struct {
        const char *target, *host, *extra, *want;
    } cases[] = {
        {"/", "h", "", "[empty][none][][/][no][]"},
        {"/?k=exact", "h", "", "[E][none][][/][chained][]"},
        {"/?k=EXACT", "h", "", "[E][none][][/][chained][]"},
        {"/?k=re42", "h", "", "[R42][none][][/][no][]"},
        {"/?k=cixx", "h", "", "[ci][none][][/][no][]"},
        {"/?k=other", "h", "", "[d][none][][/][no][]"},
        {"/", "example.com", "", "[empty][ex][][/][no][]"},
        {"/", "a.b.example.com", "", "[empty][ex][][/][no][]"},
        {"/", "x.foo.com", "", "[empty][foo][][/][no][]"},
        {"/", "exact.foo.com", "", "[empty][exact][][/][no][]"},
        {"/", "www.bar.net", "", "[empty][www][][/][no][]"},
        {"/", "h", "Upgrade: websocket\r\n", "[empty][none][upgrade][/][no][]"},
        {"/u/abc/d", "h", "", "[empty][none][][abc-x][no][]"},
        {"/x?a=1&b=2", "h", "", "[empty][none][][/x][no][both]"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        treq_t t;
        mkreq(&t, &rt->http->addrs[0], "GET %s HTTP/1.1\r\nHost: %s\r\n%s\r\n", cases[i].target,
              cases[i].host, cases[i].extra);
        t.c.id = 100 + i; /* a new request each time for the map cache */
        const char *got = answer(&t);
        if (strcmp(got, cases[i].want) != 0)
            fail_msg("%s Host %s: got \"%s\", want \"%s\"", cases[i].target, cases[i].host, got,
                     cases[i].want);
        /* the same request again: from the per-request cache */
        got = answer(&t);
        if (strcmp(got, cases[i].want) != 0)
            fail_msg("%s (cached): got \"%s\", want \"%s\"", cases[i].target, got, cases[i].want);
        treq_free(&t);
    }
    sh_runtime_destroy(rt);

    char err[SH_CONF_ERRLEN];
    assert_null(load("map $a $host { default x; }", err));
    assert_non_null(strstr(err, "duplicate \"host\" variable"));
    assert_null(load("map $arg_a $x { a 1; a 2; }", err));
    assert_non_null(strstr(err, "test.conf:3: conflicting parameter"));
    assert_null(load("map $arg_a $x { a 1 2; }", err));
    assert_non_null(strstr(err, "test.conf:3: invalid number of the map parameters"));
    assert_null(load("map $arg_a $x { default $undefined_thing; }", err));
    assert_non_null(strstr(err, "unknown \"undefined_thing\" variable"));
}

/* ------------------------------------------------------ variables -- */

static void test_variables(void **state)
{
    (void)state;
    sh_runtime_t *rt = must_load(
        "server { listen 127.0.0.1:18005; server_name main.test;\n"
        "  location / { return 200 \"$uri|$args|$is_args|$arg_b|$cookie_sid|$remote_user|"
        "$remote_addr|$remote_port|$request|$request_method|$host|$server_name|$server_port|"
        "$scheme|$http_x_thing|$status|$connection|$connection_requests|${arg_a}x\"; } }\n");
    treq_t t;
    mkreq(&t, &rt->http->addrs[0],
          "GET /p/./q/../%%7Er?a=1&b=two HTTP/1.1\r\nHost: Main.Test:18005\r\n"
          "Cookie: x=1; sid=abc\r\nAuthorization: Basic dXNlcjpwYXNz\r\nX-Thing: v\r\n\r\n");
    assert_string_equal(answer(&t), "/p/~r|a=1&b=two|?|two|abc|user|10.1.2.3|5555|"
                                    "GET /p/./q/../%7Er?a=1&b=two HTTP/1.1|GET|main.test|"
                                    "main.test|18005|http|v|000|7|1|1x");
    treq_free(&t);
    sh_runtime_destroy(rt);
}

/* ------------------------------------------------------ access log -- */

static char *slurp(const char *path)
{
    static char buf[8192];
    int fd = open(path, O_RDONLY);
    if (fd < 0)
        return NULL;
    ssize_t n = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    buf[n > 0 ? n : 0] = '\0';
    return buf;
}

static void test_access_log(void **state)
{
    (void)state;
    char body[2048];
    snprintf(body, sizeof(body),
             "log_format main '$remote_addr - $remote_user \"$request\" $status '\n"
             "                '\"$http_referer\" \"$http_user_agent\" $upstream_addr';\n"
             "log_format js escape=json '{\"ua\":\"$http_user_agent\",\"r\":\"$http_referer\"}';\n"
             "access_log a.log main;\n"
             "server { listen 127.0.0.1:18006;\n"
             "  location / { return 200 x; }\n"
             "  location /quiet { access_log off; return 200 q; }\n"
             "  location /two { access_log b.log js; access_log b.log combined; return 200 t; }\n"
             "}\n");
    unlink("a.log");
    sh_runtime_t *rt = must_load(body);
    const sh_http_addr_t *addr = &rt->http->addrs[0];
    treq_t t;
    mkreq(&t, addr, "GET /x?y HTTP/1.1\r\nHost: h\r\nUser-Agent: cu\"rl\\1\r\n\r\n");
    t.r.status = 200;
    sh_access_log(&t.r);
    treq_free(&t);
    mkreq(&t, addr, "GET /quiet HTTP/1.1\r\nHost: h\r\n\r\n");
    sh_access_log(&t.r);
    treq_free(&t);
    mkreq(&t, addr, "GET /two HTTP/1.1\r\nHost: h\r\nUser-Agent: a\"b\r\n\r\n");
    t.r.status = 404;
    t.r.body_bytes_sent = 12;
    sh_access_log(&t.r);
    treq_free(&t);
    /* nothing is written before a flush (buffered per thread) */
    char path[512];
    snprintf(path, sizeof(path), "%sa.log", prefix);
    const char *a = slurp(path);
    assert_non_null(a);
    assert_string_equal(a, "");
    sh_access_log_flush();
    a = slurp(path);
    assert_string_equal(a, "10.1.2.3 - - \"GET /x?y HTTP/1.1\" 200 \"-\" \"cu\\x22rl\\x5C1\" -\n");
    snprintf(path, sizeof(path), "%sb.log", prefix);
    const char *b = slurp(path);
    assert_non_null(b);
    assert_non_null(strstr(b, "{\"ua\":\"a\\\"b\",\"r\":\"\"}\n10.1.2.3 - - ["));
    assert_non_null(strstr(b, "] \"GET /two HTTP/1.1\" 404 12 \"-\" \"a\\x22b\"\n"));
    sh_runtime_destroy(rt);

    char err[SH_CONF_ERRLEN];
    assert_null(load("access_log x.log nosuchformat;", err));
    assert_non_null(strstr(err, "test.conf:3: unknown log format \"nosuchformat\""));
    assert_null(load("log_format combined x;", err));
    assert_non_null(strstr(err, "duplicate \"log_format\" name"));
}

static int setup(void **state)
{
    (void)state;
    snprintf(prefix, sizeof(prefix), "/tmp/shoal-test-router-XXXXXX");
    if (mkdtemp(prefix) == NULL)
        return -1;
    strcat(prefix, "/");
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    char cmd[512];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", prefix);
    return system(cmd) == 0 ? 0 : -1;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_location_order),
        cmocka_unit_test(test_location_errors),
        cmocka_unit_test(test_server_names),
        cmocka_unit_test(test_normalize),
        cmocka_unit_test(test_map),
        cmocka_unit_test(test_variables),
        cmocka_unit_test(test_access_log),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
