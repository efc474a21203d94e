/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The error log: nginx levels, one line per message, written with a single
 * write(2) so lines from several threads never interleave. The destination
 * (stderr, an `error_log` file or syslog) and level are set once at
 * start-up.
 */
#ifndef SH_LOG_H
#define SH_LOG_H

enum sh_log_level {
    SH_LOG_EMERG,
    SH_LOG_ALERT,
    SH_LOG_CRIT,
    SH_LOG_ERR,
    SH_LOG_WARN,
    SH_LOG_NOTICE,
    SH_LOG_INFO,
    SH_LOG_DEBUG
};

/* Parse an nginx level name ("warn", "error", ...); -1 if unknown. */
int sh_log_level_parse(const char *name);
/* Set the threshold; messages above it are dropped. */
void sh_log_set_level(int level);
int sh_log_get_level(void);
/* Send log lines to fd (default 2). The caller keeps the fd open. */
void sh_log_set_fd(int fd);
/* `error_log syslog:...`: lines go to s (core/syslog.h) instead, each
 * with its level as the syslog severity; NULL goes back to the fd. */
struct sh_syslog_s;
void sh_log_set_syslog(struct sh_syslog_s *s);

void sh_log(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define sh_log_err(...)    sh_log(SH_LOG_ERR, __VA_ARGS__)
#define sh_log_warn(...)   sh_log(SH_LOG_WARN, __VA_ARGS__)
#define sh_log_info(...)   sh_log(SH_LOG_INFO, __VA_ARGS__)
#define sh_log_notice(...) sh_log(SH_LOG_NOTICE, __VA_ARGS__)
#define sh_log_debug(...)                                                                          \
    do {                                                                                           \
        if (sh_log_get_level() >= SH_LOG_DEBUG)                                                    \
            sh_log(SH_LOG_DEBUG, __VA_ARGS__);                                                     \
    } while (0)

#endif
