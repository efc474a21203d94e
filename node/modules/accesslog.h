/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The access log module: `log_format NAME [escape=default|json|none]
 * STRING...;` (http level; `combined` is predefined) and `access_log PATH
 * [FORMAT [buffer=SIZE] [flush=TIME] [if=CONDITION]] | off;` at the http,
 * server and location levels, several per level, with nginx's
 * inheritance: a level with access_log directives uses exactly those, one
 * without inherits its parent's, `off` logs nothing. Without any
 * directive the http level logs to logs/access.log in `combined` (as
 * nginx), when that file can be opened.
 *
 * Files are opened once, at load (O_APPEND, relative to the prefix) and
 * are reference counted: the per-worker buffers keep them open past a
 * configuration's end. Lines are formatted into a per-worker (per thread)
 * buffer for each file and written with one write(2) per batch: when a
 * buffer reaches 64 KiB, every second from a timer on the worker's loop,
 * and when the worker thread ends. Nothing else blocks on a request.
 */
#ifndef SH_ACCESSLOG_H
#define SH_ACCESSLOG_H

#include "core/conf.h"

typedef struct sh_request_s sh_request_t;

extern sh_conf_module_t sh_accesslog_module;

/* Log r according to its location (the default server's when it never got
 * one). The module's log phase handler calls it once per request, from
 * sh_request_free() (node/pipeline.h); tests call it directly. Worker
 * thread (any thread in tests). */
void sh_access_log(sh_request_t *r);

/* Write what the calling thread buffered and release its buffers (the
 * thread's end does the same; tests call it). */
void sh_access_log_flush(void);

/* SIGUSR1: reopen every access log file of one configuration (main_conf:
 * this module's http main conf, sh_http_main_conf(rt->http, &module)) by path, in place: the descriptor
 * the workers write to is replaced atomically (dup2), so no line is lost
 * and none is split. uid >= 0: chown a file to it (the workers' user).
 * 0, or SH_EIO when a file could not be reopened (logged; that file keeps
 * its old descriptor). Main thread. */
int sh_access_log_reopen(void *main_conf, long uid);

#endif
