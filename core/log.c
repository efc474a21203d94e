/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Error log. The level and fd are process-wide settings written once at
 * start-up before any thread runs and read atomically afterwards.
 */
#include "core/log.h"

#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core/syslog.h"

static _Atomic int log_level = SH_LOG_NOTICE;
static _Atomic int log_fd = 2;
static sh_syslog_t *_Atomic log_syslog;

static const char *const level_names[] = {"emerg", "alert",  "crit", "error",
                                          "warn",  "notice", "info", "debug"};

int sh_log_level_parse(const char *name)
{
    for (int i = 0; i < (int)(sizeof(level_names) / sizeof(level_names[0])); i++)
        if (strcmp(name, level_names[i]) == 0)
            return i;
    return -1;
}

void sh_log_set_level(int level)
{
    atomic_store(&log_level, level);
}

int sh_log_get_level(void)
{
    return atomic_load_explicit(&log_level, memory_order_relaxed);
}

void sh_log_set_fd(int fd)
{
    atomic_store(&log_fd, fd);
}

void sh_log_set_syslog(sh_syslog_t *s)
{
    atomic_store(&log_syslog, s);
}

void sh_log(int level, const char *fmt, ...)
{
    if (level > sh_log_get_level())
        return;
    char line[2048];
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    localtime_r(&ts.tv_sec, &tm);
    size_t n = strftime(line, sizeof(line), "%Y/%m/%d %H:%M:%S", &tm);
    int k = snprintf(line + n, sizeof(line) - n, " [%s] %d: ", level_names[level], (int)getpid());
    if (k > 0)
        n += (size_t)k;
    va_list ap;
    va_start(ap, fmt);
    k = vsnprintf(line + n, sizeof(line) - n - 1, fmt, ap);
    va_end(ap);
    if (k > 0)
        n += (size_t)k < sizeof(line) - n - 1 ? (size_t)k : sizeof(line) - n - 2;
    sh_syslog_t *sl = atomic_load_explicit(&log_syslog, memory_order_acquire);
    if (sl != NULL) {
        sh_syslog_send(sl, level, line, n);
        return;
    }
    line[n++] = '\n';
    ssize_t w = write(atomic_load(&log_fd), line, n);
    (void)w;
}
