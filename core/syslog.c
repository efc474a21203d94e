/* SPDX-License-Identifier: Apache-2.0 */
/* nginx-style syslog messages over UDP or a unix socket (see syslog.h). */
#include "core/syslog.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/err.h"

#define MSG_MAX 2048 /* nginx's NGX_SYSLOG_MAX_STR is about this */

struct sh_syslog_s {
    int fd;
    int facility, severity;
    char tag[33];
    char host[256];
    int nohostname;
    struct sockaddr_storage addr;
    socklen_t alen;
    _Atomic uint64_t dropped;
};

static const char *const facilities[] = {
    "kern",   "user",   "mail",     "daemon", "auth",   "intern", "lpr",    "news",
    "uucp",   "clock",  "authpriv", "ftp",    "ntp",    "audit",  "alert",  "cron",
    "local0", "local1", "local2",   "local3", "local4", "local5", "local6", "local7"};
static const char *const severities[] = {"emerg", "alert",  "crit", "error",
                                         "warn",  "notice", "info", "debug"};

static int lookup(const char *v, size_t n, const char *const *names, int count)
{
    for (int i = 0; i < count; i++)
        if (strlen(names[i]) == n && strncmp(names[i], v, n) == 0)
            return i;
    return -1;
}

static int server_addr(const char *v, size_t n, struct sockaddr_storage *ss, socklen_t *len)
{
    char tmp[256];
    if (n == 0 || n >= sizeof(tmp))
        return -1;
    memcpy(tmp, v, n);
    tmp[n] = '\0';
    memset(ss, 0, sizeof(*ss));
    if (strncmp(tmp, "unix:", 5) == 0) {
        struct sockaddr_un *un = (struct sockaddr_un *)ss;
        if (strlen(tmp + 5) == 0 || strlen(tmp + 5) >= sizeof(un->sun_path))
            return -1;
        un->sun_family = AF_UNIX;
        strcpy(un->sun_path, tmp + 5);
        *len = sizeof(*un);
        return 0;
    }
    const char *host = tmp, *port = "514";
    char *c;
    if (tmp[0] == '[') {
        c = strchr(tmp, ']');
        if (c == NULL)
            return -1;
        *c = '\0';
        host = tmp + 1;
        if (c[1] == ':')
            port = c + 2;
        else if (c[1] != '\0')
            return -1;
    } else if ((c = strrchr(tmp, ':')) != NULL && strchr(tmp, ':') == c) {
        *c = '\0';
        port = c + 1;
    }
    struct addrinfo hints = {.ai_socktype = SOCK_DGRAM, .ai_flags = AI_NUMERICSERV}, *ai;
    if (getaddrinfo(host, port, &hints, &ai) != 0)
        return -1;
    memcpy(ss, ai->ai_addr, ai->ai_addrlen);
    *len = ai->ai_addrlen;
    freeaddrinfo(ai);
    return 0;
}

int sh_syslog_open(const char *spec, sh_syslog_t **out, char *err, size_t errlen)
{
    sh_syslog_t *s = sh_new(sh_syslog_t);
    s->fd = -1;
    s->facility = 23; /* local7 */
    s->severity = 6;  /* info */
    strcpy(s->tag, "nginx");
    struct sockaddr_storage ss;
    socklen_t sl = 0;
    const char *p = spec;
    while (*p) {
        const char *e = strchr(p, ',');
        size_t n = e ? (size_t)(e - p) : strlen(p);
        int ok = 1;
        if (n > 7 && strncmp(p, "server=", 7) == 0) {
            ok = server_addr(p + 7, n - 7, &ss, &sl) == 0;
        } else if (n > 9 && strncmp(p, "facility=", 9) == 0) {
            ok = (s->facility = lookup(p + 9, n - 9, facilities, 24)) >= 0;
        } else if (n > 9 && strncmp(p, "severity=", 9) == 0) {
            ok = (s->severity = lookup(p + 9, n - 9, severities, 8)) >= 0;
        } else if (n > 4 && strncmp(p, "tag=", 4) == 0) {
            ok = n - 4 < sizeof(s->tag);
            for (size_t i = 4; ok && i < n; i++) /* nginx: letters, digits, '_' */
                ok = (p[i] >= 'a' && p[i] <= 'z') || (p[i] >= 'A' && p[i] <= 'Z') ||
                     (p[i] >= '0' && p[i] <= '9') || p[i] == '_';
            if (ok) {
                memcpy(s->tag, p + 4, n - 4);
                s->tag[n - 4] = '\0';
            }
        } else if (n == 10 && strncmp(p, "nohostname", 10) == 0) {
            s->nohostname = 1;
        } else {
            ok = 0;
        }
        if (!ok) {
            snprintf(err, errlen, "invalid syslog parameter \"%.*s\"", (int)n, p);
            sh_free(s);
            return SH_EINVAL;
        }
        p += n;
        if (*p == ',')
            p++;
    }
    if (sl == 0) {
        snprintf(err, errlen, "no syslog server specified");
        sh_free(s);
        return SH_EINVAL;
    }
    /* not connected: each message is sent to the address (a unix socket
     * that is not there yet, or is re-created by the daemon, still gets
     * the next ones) */
    s->fd = socket(ss.ss_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (s->fd < 0) {
        snprintf(err, errlen, "syslog socket: %s", strerror(errno));
        sh_free(s);
        return SH_EINVAL;
    }
    s->addr = ss;
    s->alen = sl;
    if (gethostname(s->host, sizeof(s->host) - 1) != 0)
        strcpy(s->host, "localhost");
    *out = s;
    return 0;
}

void sh_syslog_close(sh_syslog_t *s)
{
    if (s == NULL)
        return;
    if (s->fd >= 0)
        close(s->fd);
    sh_free(s);
}

void sh_syslog_send(sh_syslog_t *s, int severity, const char *msg, size_t len)
{
    static const char months[12][4] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                       "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
    char b[MSG_MAX];
    time_t now = time(NULL);
    struct tm tm;
    localtime_r(&now, &tm);
    int pri = s->facility * 8 + (severity >= 0 && severity <= 7 ? severity : s->severity);
    int n = snprintf(b, sizeof(b), "<%d>%s %2d %02d:%02d:%02d %s%s%s: ", pri, months[tm.tm_mon],
                     tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, s->nohostname ? "" : s->host,
                     s->nohostname ? "" : " ", s->tag);
    if (n < 0 || (size_t)n >= sizeof(b))
        return;
    while (len > 0 && (msg[len - 1] == '\n' || msg[len - 1] == '\r'))
        len--;
    size_t room = sizeof(b) - (size_t)n;
    if (len > room)
        len = room;
    memcpy(b + n, msg, len);
    if (sendto(s->fd, b, (size_t)n + len, MSG_DONTWAIT | MSG_NOSIGNAL,
               (const struct sockaddr *)&s->addr, s->alen) < 0)
        atomic_fetch_add_explicit(&s->dropped, 1, memory_order_relaxed);
}

uint64_t sh_syslog_dropped(const sh_syslog_t *s)
{
    return atomic_load_explicit(&((sh_syslog_t *)s)->dropped, memory_order_relaxed);
}
