/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The http core's variables defined through the registry (see corevars.h),
 * with nginx's values. Worker threads evaluate them.
 */
#include "node/pipeline/corevars.h"

#include <sodium.h>
#include <stdint.h>

#include "core/conf.h"
#include "node/pipeline/node.h"
#include "node/pipeline/vars.h"

/* $request_id: 16 random bytes as 32 hex digits, made once per request. */
static int var_request_id(sh_request_t *r, const void *data, sh_buf_t *out)
{
    (void)data;
    static const char hex[] = "0123456789abcdef";
    if (!r->has_id) {
        randombytes_buf(r->request_id, sizeof(r->request_id));
        r->has_id = 1;
    }
    char *d = sh_buf_reserve(out, 32);
    for (size_t i = 0; i < sizeof(r->request_id); i++) {
        d[2 * i] = hex[r->request_id[i] >> 4];
        d[2 * i + 1] = hex[r->request_id[i] & 15];
    }
    out->len += 32;
    return 1;
}

/* $connection_time: seconds since the connection was accepted, with ms. */
static int var_connection_time(sh_request_t *r, const void *data, sh_buf_t *out)
{
    (void)data;
    if (r->c == NULL || r->c->w == NULL)
        return 0;
    uint64_t now = sh_worker_now(r->c->w);
    uint64_t ms = now > r->c->start_ms ? now - r->c->start_ms : 0;
    sh_buf_appendf(out, "%llu.%03llu", (unsigned long long)(ms / 1000),
                   (unsigned long long)(ms % 1000));
    return 1;
}

static int var_pipe(sh_request_t *r, const void *data, sh_buf_t *out)
{
    (void)data;
    sh_buf_append(out, r->pipelined ? "p" : ".", 1);
    return 1;
}

/* $request_body: the body when it was read whole into memory first (the
 * proxy's request buffering), as nginx; else not set. */
static int var_request_body(sh_request_t *r, const void *data, sh_buf_t *out)
{
    (void)data;
    if (r->h.content_length == 0 && !r->h.chunked)
        return 1; /* an empty body is read: "" (nginx), not unset */
    if (!r->rb_complete)
        return 0;
    if (r->rb.len > 0)
        sh_buf_append(out, r->rb.data, r->rb.len);
    return 1;
}

static int var_request_completion(sh_request_t *r, const void *data, sh_buf_t *out)
{
    (void)data;
    if (r->resp_done)
        sh_buf_append(out, "OK", 2);
    return 1;
}

static int var_unset(sh_request_t *r, const void *data, sh_buf_t *out)
{
    (void)r;
    (void)data;
    (void)out;
    return 0; /* $request_body_file: bodies are never written to files */
}

static int var_limit_rate(sh_request_t *r, const void *data, sh_buf_t *out)
{
    (void)r;
    (void)data;
    sh_buf_append(out, "0", 1); /* no response rate limit (limit_rate is refused) */
    return 1;
}

int sh_core_vars_define(sh_conf_t *cf, sh_http_main_t *m)
{
    (void)m;
    if (sodium_init() < 0)
        return sh_conf_error(cf, "libsodium cannot initialize");
    static const struct {
        const char *name;
        sh_var_get_pt get;
    } vars[] = {
        {"request_id", var_request_id},
        {"connection_time", var_connection_time},
        {"pipe", var_pipe},
        {"request_body", var_request_body},
        {"request_body_file", var_unset},
        {"request_completion", var_request_completion},
        {"limit_rate", var_limit_rate},
    };
    for (size_t i = 0; i < sizeof(vars) / sizeof(vars[0]); i++) {
        int rc = sh_vars_define(cf, vars[i].name, vars[i].get, NULL);
        if (rc != 0)
            return rc;
    }
    return 0;
}
