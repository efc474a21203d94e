/* SPDX-License-Identifier: Apache-2.0 */
/*
 * libFuzzer target for the parsers of issue 18's directives, through the
 * real loader: rewrite (flags, the replacement's '?' split), return, set,
 * if conditions (parentheses, operators, file tests, regexes), geo
 * (networks, ranges, delete, proxy), split_clients (percents),
 * proxy_redirect / proxy_cookie_* rules and resolver. The input is the text
 * of an http block body (up to 4 KiB); loading succeeds or fails with a
 * "file:line: message", and a loaded configuration is destroyed
 * (LeakSanitizer checks the if locations and shared scripts are owned
 * once).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/conf.h"
#include "node/modules/geo.h"
#include "node/modules/rewrite.h"
#include "node/modules/split_clients.h"
#include "node/pipeline/runtime.h"
#include "node/proxy/proxy.h"
#include "node/proxy/proxy_redirect.h"
#include "node/proxy/resolver.h"
#include "node/proxy/upstream.h"

static sh_conf_module_t *const modules[] = {
    &sh_core_module,          &sh_http_core_module,      &sh_geo_module,
    &sh_split_clients_module, &sh_rewrite_module,        &sh_upstream_module,
    &sh_proxy_module,         &sh_proxy_redirect_module, &sh_resolver_module};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 4096 || memchr(data, 0, size) != NULL)
        return 0;
    char text[4096 + 128];
    int n = snprintf(text, sizeof(text), "events { }\nhttp {\n%.*s\n}\n", (int)size,
                     (const char *)data);
    if (n < 0 || (size_t)n >= sizeof(text))
        return 0;
    char err[SH_CONF_ERRLEN];
    sh_runtime_t *rt = NULL;
    int rc = sh_runtime_load(NULL, "fuzz.conf", text, "", modules,
                             sizeof(modules) / sizeof(modules[0]), -1, &rt, err);
    if (rc != 0) {
        if (strncmp(err, "fuzz.conf", 9) != 0 && strncmp(err, "<", 1) != 0)
            abort(); /* an error without its file */
    } else {
        sh_runtime_destroy(rt);
    }
    return 0;
}
