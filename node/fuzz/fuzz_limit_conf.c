/* SPDX-License-Identifier: Apache-2.0 */
/*
 * libFuzzer target for the limit directives' own parsers (zone=NAME:SIZE,
 * rate=Nr/s|Nr/m, burst=, delay=, nodelay, limit_conn N, the statuses and
 * log levels), through the real loader: the input is the text of an http
 * block body (up to 4 KiB) loaded with the core, http, limit_req and
 * limit_conn modules. Whatever it says, loading succeeds or fails with a
 * "file:line: message"; a loaded configuration is destroyed, which must
 * release every zone it acquired (the registry is empty afterwards), so
 * LeakSanitizer checks ownership too.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/conf.h"
#include "node/modules/limit_conn.h"
#include "node/modules/limit_req.h"
#include "node/modules/limit_zone.h"
#include "node/pipeline/runtime.h"

static sh_conf_module_t *const modules[] = {&sh_core_module, &sh_http_core_module,
                                            &sh_limit_req_module, &sh_limit_conn_module};

static void count(sh_limit_zone_t *z, void *ud)
{
    (void)z;
    (*(int *)ud)++;
}

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
    int rc = sh_runtime_load(NULL, "fuzz.conf", text, "", modules, 4, -1, &rt, err);
    if (rc != 0) {
        if (strncmp(err, "fuzz.conf", 9) != 0 && strncmp(err, "<", 1) != 0)
            abort(); /* an error without its file */
    } else {
        sh_runtime_destroy(rt);
    }
    int zones = 0;
    sh_limit_zone_foreach(count, &zones);
    if (zones != 0)
        abort(); /* a zone outlived the configuration that acquired it */
    return 0;
}
