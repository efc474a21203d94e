/* SPDX-License-Identifier: Apache-2.0 */
/*
 * `mirror URI|off` (several) and `mirror_request_body on|off` (nginx's
 * mirror module): in the precontent phase, each mirror URI gets a
 * background subrequest (node/pipeline/subrequest.h) with the request's
 * method, fields and arguments; its response is dropped. With
 * mirror_request_body on (the default) the client's body is read whole
 * first (as nginx: the main request waits for its body, not for the
 * mirrors) and goes to every mirror and, from memory, to the main
 * request's content handler. The main request never waits for a mirror:
 * a slow or dead mirror changes nothing of the client's answer (nginx
 * answers too, but holds the connection's next request until its mirrors
 * end; Shoal does not). Main requests only: a subrequest mirrors nothing.
 */
#include <string.h>

#include "core/alloc.h"
#include "core/err.h"
#include "node/modules/mirror.h"
#include "node/pipeline/node.h"
#include "node/pipeline/subrequest.h"

typedef struct {
    char **uris; /* NULL: unset; n == 0 with set: off */
    size_t n;
    int set;
    int own;
    int body; /* mirror_request_body */
} mirror_loc_t;

static void *mirror_create(void)
{
    mirror_loc_t *c = sh_new(mirror_loc_t);
    c->body = SH_CONF_UNSET;
    return c;
}

static int mirror_merge(sh_conf_t *cf, void *parent, void *conf)
{
    (void)cf;
    mirror_loc_t *p = parent, *c = conf;
    if (!c->set) {
        c->uris = p->uris;
        c->n = p->n;
        c->set = p->set;
    }
    SH_CONF_MERGE(c->body, p->body, 1);
    return 0;
}

static void mirror_destroy(void *conf)
{
    mirror_loc_t *c = conf;
    if (c->own) {
        for (size_t i = 0; i < c->n; i++)
            sh_free(c->uris[i]);
        sh_free(c->uris);
    }
    sh_free(c);
}

static int set_mirror(sh_conf_t *cf, const sh_conf_cmd_t *cmd, void *conf)
{
    (void)cmd;
    mirror_loc_t *c = conf;
    const char *v = cf->node->args[1];
    if (strcmp(v, "off") == 0) {
        if (c->set)
            return sh_conf_error(cf, "\"mirror\" directive is duplicate");
        c->set = 1;
        return 0;
    }
    if (c->set && c->n == 0)
        return sh_conf_error(cf, "\"mirror\" directive is duplicate");
    if (v[0] != '/')
        return sh_conf_error(cf, "invalid URI \"%s\" in \"mirror\" directive", v);
    c->uris = sh_realloc(c->uris, (c->n + 1) * sizeof(*c->uris));
    c->uris[c->n++] = sh_strdup(v);
    c->set = 1;
    c->own = 1;
    return 0;
}

#define MLOC (SH_CTX_HTTP | SH_CTX_SERVER | SH_CTX_LOCATION)

static const sh_conf_cmd_t mirror_cmds[] = {{"mirror", MLOC | SH_CONF_TAKE1, set_mirror, 0, NULL},
                                            {"mirror_request_body", MLOC | SH_CONF_FLAG,
                                             sh_conf_set_flag, offsetof(mirror_loc_t, body), NULL},
                                            {NULL, 0, NULL, 0, NULL}};

/* ------------------------------------------------------ per request -- */

enum { M_IDLE = 0, M_READING, M_READ, M_DONE };

typedef struct {
    int state;
} mirror_ctx_t;

/* Inside sink_start's body resume on this worker thread (r and its
 * context may be freed inside it, so not kept there). */
static _Thread_local int in_start;

static void ctx_cleanup(sh_request_t *r, void *data)
{
    (void)r;
    sh_free(data);
}

/* The body is read into r->rb (the protocols' buffering, as for
 * proxy_request_buffering), past client_body_buffer_size too: no temp
 * files here. */
static void sink_start(sh_request_t *r)
{
    mirror_ctx_t *x = sh_request_ctx(r, &sh_mirror_module);
    if (!r->rb_complete) {
        r->buffering = 1;
        if (in_start) {
            /* called again from the resume below (HTTP/2 hands the
             * buffered bytes over at once): go on reading, no deeper */
            r->body_wanted = 1;
            return;
        }
        in_start = 1;
        sh_request_body_resume(r);
        in_start = 0;
        return;
    }
    r->sink = NULL;
    if (x != NULL && x->state == M_READING)
        x->state = M_READ;
    sh_phase_resume(r); /* a no-op while the handler is still running */
}

static int sink_body(sh_request_t *r, const char *data, size_t len, int last)
{
    sh_buf_append(&r->rb, data, len);
    if (last) {
        r->rb_complete = 1;
        sink_start(r);
    }
    return 0;
}

static int sink_drained(sh_request_t *r)
{
    (void)r;
    return 0;
}

static int sink_tunnel(sh_request_t *r, const char *data, size_t len)
{
    (void)r;
    (void)data;
    (void)len;
    return 0;
}

static void sink_detach(sh_request_t *r)
{
    (void)r;
}

static const sh_body_sink_t mirror_sink = {
    .start = sink_start,
    .body = sink_body,
    .drained = sink_drained,
    .tunnel = sink_tunnel,
    .detach = sink_detach,
};

static void start_mirrors(sh_request_t *r, const mirror_loc_t *c)
{
    const sh_buf_t *body = c->body && r->rb_complete ? &r->rb : NULL;
    sh_buf_t uri = {0};
    for (size_t i = 0; i < c->n; i++) {
        /* nginx: the mirror URI with the request's arguments */
        uri.len = 0;
        sh_buf_appends(&uri, c->uris[i]);
        if (r->args.len > 0 && strchr(c->uris[i], '?') == NULL) {
            sh_buf_append(&uri, "?", 1);
            sh_buf_append(&uri, r->args.p, r->args.len);
        }
        sh_subrequest_background(r, uri.data, uri.len, body);
    }
    sh_buf_dispose(&uri);
}

static int mirror_handler(sh_request_t *r)
{
    const mirror_loc_t *c = sh_http_loc_conf(r->loc, &sh_mirror_module);
    if (c == NULL || c->n == 0 || r->sub != NULL)
        return SH_PH_DECLINED;
    mirror_ctx_t *x = sh_request_ctx(r, &sh_mirror_module);
    if (x == NULL) {
        x = sh_new(mirror_ctx_t);
        if (sh_request_cleanup_add(r, ctx_cleanup, x) != 0) {
            sh_free(x);
            return 500;
        }
        sh_request_ctx(r, &sh_mirror_module) = x;
    }
    switch (x->state) {
    case M_DONE:
        return SH_PH_DECLINED;
    case M_READING:
        return SH_PH_PAUSE;
    case M_IDLE:
        if (c->body && !r->body.done && r->sink == NULL) {
            x->state = M_READING;
            r->sink = &mirror_sink;
            r->buffering = 1;
            sh_request_body_resume(r);
            if (r->freed)
                return SH_PH_DONE;
            if (x->state == M_READING)
                return SH_PH_PAUSE;
        }
        break;
    default:
        break;
    }
    x->state = M_DONE;
    start_mirrors(r, c);
    return SH_PH_DECLINED;
}

static int mirror_postconf(sh_conf_t *cf, sh_http_main_t *m)
{
    return sh_phase_add(cf, m, SH_PHASE_PRECONTENT, mirror_handler);
}

static const sh_http_module_t mirror_ctx = {
    .magic = SH_HTTP_MODULE_MAGIC,
    .create_loc = mirror_create,
    .merge_loc = mirror_merge,
    .destroy_loc = mirror_destroy,
    .postconfiguration = mirror_postconf,
};

sh_conf_module_t sh_mirror_module = {
    .name = "mirror",
    .cmds = mirror_cmds,
    .ctx = &mirror_ctx,
};
