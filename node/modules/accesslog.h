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
 * buffer for each file; a batch is handed to the process's one log writer
 * thread when it reaches the file's buffer= size (64 KiB by default) or
 * its flush= time after its first line (1 s by default; with buffer= and
 * no flush=, as nginx, only when full), and when the worker thread ends.
 * The writer does every write(2) (a batch as one gzip member with gzip),
 * so a slow disk never holds a worker's loop; past 64 MiB waiting, batches
 * are dropped and counted rather than queued without bound.
 *
 * `if=COND` skips the line when COND is "" or "0" (nginx). `access_log
 * syslog:server=...` sends each line as one datagram (core/syslog.h).
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
 * this module's http main conf, sh_http_main_conf(rt->http, &module)) by path, in place: the
 * descriptor the workers write to is replaced atomically (dup2), so no line is lost and none is
 * split. uid >= 0: chown a file to it (the workers' user). 0, or SH_EIO when a file could not be
 * reopened (logged; that file keeps its old descriptor). Main thread. */
int sh_access_log_reopen(void *main_conf, long uid);

#endif
