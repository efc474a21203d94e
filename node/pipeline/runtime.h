/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Loading a configuration into an immutable sh_runtime_t: parse (file or
 * the embedded default), walk every directive through the module list,
 * run each module's init, and keep the result for the workers. The main
 * context's own directives (worker_processes, error_log, pid, events {})
 * are the "core" module here. Main thread.
 */
#ifndef SH_RUNTIME_H
#define SH_RUNTIME_H

#include <stdio.h>

#include "core/conf.h"
#include "node/pipeline/node.h"

typedef struct {
    int worker_processes; /* 0: auto */
    int worker_connections;
    char *error_log;    /* path relative to the prefix, or NULL (stderr, syslog) */
    char *error_syslog; /* `error_log syslog:SPEC`: SPEC (checked at load), else NULL */
    int error_level;
    char *pid; /* pid file, or NULL */
    uint64_t shutdown_timeout;
    /* `user USER [GROUP]`: drop_privs is 1 when the node runs as root and
     * its threads switch to uid:gid after binding (core/privs.h) */
    char *user, *group;
    int drop_privs;
    unsigned uid, gid;
    const void *user_node; /* sh_conf_node_t of `user` (file:line at init) */
} sh_core_conf_t;

extern sh_conf_module_t sh_core_module;

/*
 * Load path (NULL: text, named `name`). prefix ends with '/' or is "".
 * Returns 0 and *out, or a negative code with "file:line: message" in err
 * (SH_CONF_ERRLEN bytes). warn_fd receives warnings (-1: none).
 */
int sh_runtime_load(const char *path, const char *name, const char *text, const char *prefix,
                    sh_conf_module_t *const *modules, unsigned nmodules, int warn_fd,
                    sh_runtime_t **out, char *err);
/* The same, with `globals` (NULL or "") walked in the main context before
 * the file, as nginx's -g; its errors read "command line:1: ...". */
int sh_runtime_load_ex(const char *path, const char *name, const char *text, const char *globals,
                       const char *prefix, sh_conf_module_t *const *modules, unsigned nmodules,
                       int warn_fd, sh_runtime_t **out, char *err);
void sh_runtime_destroy(sh_runtime_t *rt);
/* nginx -T: write "# configuration file NAME:" and the text of every file
 * the configuration read (main file first, then includes in reading
 * order) to out. 0, or SH_EIO when a file cannot be read again. */
int sh_runtime_dump(const sh_runtime_t *rt, FILE *out);
const sh_core_conf_t *sh_runtime_core(const sh_runtime_t *rt);
/* The warnings of the load that made rt ("file:line: message\n" each,
 * at most 4 KiB), "" when none. Owned by rt. */
const char *sh_runtime_warnings(const sh_runtime_t *rt);

#endif
