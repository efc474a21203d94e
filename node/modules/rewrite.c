/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The rewrite phase's `return` (nginx's rewrite module): `return CODE
 * [TEXT|URL]` and `return URL` answer at once, before the access phase
 * (so `return` wins over `deny`, as in nginx). The directive itself is
 * parsed by the http core module (ret_code, ret_text in its loc conf);
 * this module only registers the handler. Worker thread.
 */
#include "node/modules/rewrite.h"

#include "node/pipeline/node.h"
#include "node/pipeline/vars.h"

static int return_handler(sh_request_t *r)
{
    const sh_http_core_loc_t *core = r->core;
    int code = core->ret_code;
    if (code == SH_CONF_UNSET)
        return SH_PH_DECLINED;
    r->discard_body = 1;
    if (core->ret_text == NULL) {
        sh_request_respond(r, code, NULL, NULL, 0, NULL);
        return SH_PH_DONE;
    }
    r->scratch.len = 0;
    sh_cv_eval(core->ret_text, r, &r->scratch);
    sh_buf_append(&r->scratch, "", 1); /* NUL for the Location use */
    const char *text = r->scratch.data;
    size_t len = r->scratch.len - 1;
    if (code == 301 || code == 302 || code == 303 || code == 307 || code == 308)
        sh_request_respond(r, code, NULL, NULL, 0, text);
    else
        sh_request_respond(r, code, "text/plain", text, len, NULL);
    return SH_PH_DONE;
}

static int rewrite_postconf(sh_conf_t *cf, sh_http_main_t *m)
{
    return sh_phase_add(cf, m, SH_PHASE_REWRITE, return_handler);
}

static const sh_http_module_t rewrite_ctx = {
    .magic = SH_HTTP_MODULE_MAGIC,
    .postconfiguration = rewrite_postconf,
};

sh_conf_module_t sh_rewrite_module = {
    .name = "rewrite",
    .ctx = &rewrite_ctx,
};
