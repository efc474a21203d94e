/* SPDX-License-Identifier: Apache-2.0 */
/*
 * nodectl's HTTP/1.1 client: one blocking TCP connection per request with
 * Connection: close, so the response ends at EOF (Content-Length, when
 * present, is checked against what arrived). Every step honours one
 * deadline: connect is non-blocking plus poll, reads and writes poll first.
 * The response is bounded by NODECTL_MAX_RESPONSE.
 *
 * TLS (an admin listener with admin_ssl_certificate): an address written
 * https://HOST:PORT is spoken to over TLS 1.2+, the certificate verified
 * against nodectl_tls_cafile (--cacert / $SHOAL_CACERT) or the system's
 * CAs, and its name (or IP address) checked against HOST. nodectl holds one
 * connection at a time, so the TLS state is one static object.
 */
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "nodectl.h"

const char *nodectl_tls_cafile;
static SSL_CTX *tls_ctx;
static SSL *tls; /* the open connection's, or NULL (plain) */

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int fail(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    return NODECTL_EUSAGE;
}

/* Split "host:port" / "[v6]:port" into host and port strings. */
static int split_addr(const char *addr, char *host, size_t hostlen, char *port, size_t portlen)
{
    const char *colon;
    size_t hl;
    if (addr[0] == '[') {
        const char *end = strchr(addr, ']');
        if (end == NULL || end[1] != ':')
            return -1;
        hl = (size_t)(end - addr - 1);
        if (hl == 0 || hl >= hostlen)
            return -1;
        memcpy(host, addr + 1, hl);
        colon = end + 1;
    } else {
        colon = strrchr(addr, ':');
        if (colon == NULL)
            return -1;
        hl = (size_t)(colon - addr);
        if (hl == 0 || hl >= hostlen)
            return -1;
        memcpy(host, addr, hl);
    }
    host[hl] = 0;
    const char *p = colon + 1;
    size_t pl = strlen(p);
    if (pl == 0 || pl >= portlen || strspn(p, "0123456789") != pl || atoi(p) <= 0 ||
        atoi(p) > 65535)
        return -1;
    memcpy(port, p, pl + 1);
    return 0;
}

/* Wait for events on fd until the deadline: 1 ready, 0 timed out, -1 error. */
static int wait_fd(int fd, short events, int64_t deadline)
{
    for (;;) {
        int64_t left = deadline - now_ms();
        if (left <= 0)
            return 0;
        struct pollfd p = {fd, events, 0};
        int n = poll(&p, 1, (int)left);
        if (n < 0 && errno == EINTR)
            continue;
        return n < 0 ? -1 : n > 0;
    }
}

static int connect_one(const struct addrinfo *a, int64_t deadline, int *err_out)
{
    int fd = socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, a->ai_protocol);
    if (fd < 0) {
        *err_out = errno;
        return -1;
    }
    if (connect(fd, a->ai_addr, a->ai_addrlen) == 0)
        return fd;
    if (errno != EINPROGRESS) {
        *err_out = errno;
        close(fd);
        return -1;
    }
    int r = wait_fd(fd, POLLOUT, deadline);
    int soerr = 0;
    socklen_t sl = sizeof(soerr);
    if (r <= 0) {
        *err_out = r == 0 ? ETIMEDOUT : errno;
        close(fd);
        return -1;
    }
    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) != 0 || soerr != 0) {
        *err_out = soerr ? soerr : errno;
        close(fd);
        return -1;
    }
    return fd;
}

/* recv() on the connection, through TLS when it has it: bytes, 0 at the
 * end, or -1 with errno (EAGAIN: wait for the socket). */
static ssize_t io_recv(int fd, char *buf, size_t len)
{
    if (tls == NULL)
        return recv(fd, buf, len, 0);
    ERR_clear_error();
    errno = 0;
    int n = SSL_read(tls, buf, (int)(len > INT32_MAX ? INT32_MAX : len));
    if (n > 0)
        return n;
    switch (SSL_get_error(tls, n)) {
    case SSL_ERROR_ZERO_RETURN:
        return 0;
    case SSL_ERROR_WANT_READ:
    case SSL_ERROR_WANT_WRITE:
        errno = EAGAIN;
        return -1;
    case SSL_ERROR_SYSCALL:
        if (ERR_peek_error() == 0 && errno == 0)
            return 0; /* EOF without close_notify: the answer's end all the same */
        /* fall through */
    default:
        errno = EPROTO;
        return -1;
    }
}

static ssize_t io_send(int fd, const char *buf, size_t len)
{
    if (tls == NULL)
        return send(fd, buf, len, MSG_NOSIGNAL);
    ERR_clear_error();
    int n = SSL_write(tls, buf, (int)(len > INT32_MAX ? INT32_MAX : len));
    if (n > 0)
        return n;
    int e = SSL_get_error(tls, n);
    errno = e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE ? EAGAIN : EPROTO;
    return -1;
}

static void io_close(int fd)
{
    if (tls != NULL) {
        SSL_free(tls);
        tls = NULL;
    }
    close(fd);
}

/* The TLS handshake on fd with host (verified): 0, or -1 with err filled. */
static int tls_open(int fd, const char *host, int64_t deadline, char *err, size_t errlen)
{
    if (tls_ctx == NULL) {
        tls_ctx = SSL_CTX_new(TLS_client_method());
        if (tls_ctx == NULL)
            abort();
        SSL_CTX_set_min_proto_version(tls_ctx, TLS1_2_VERSION);
        SSL_CTX_set_verify(tls_ctx, SSL_VERIFY_PEER, NULL);
        if (nodectl_tls_cafile != NULL && *nodectl_tls_cafile) {
            if (SSL_CTX_load_verify_locations(tls_ctx, nodectl_tls_cafile, NULL) != 1) {
                fail(err, errlen, "cannot load the CA certificates of %s", nodectl_tls_cafile);
                return -1;
            }
        } else {
            SSL_CTX_set_default_verify_paths(tls_ctx);
        }
    }
    tls = SSL_new(tls_ctx);
    if (tls == NULL)
        abort();
    SSL_set_fd(tls, fd);
    X509_VERIFY_PARAM *vp = SSL_get0_param(tls);
    if (X509_VERIFY_PARAM_set1_ip_asc(vp, host) != 1) { /* a name, not an address */
        SSL_set_tlsext_host_name(tls, host);
        SSL_set1_host(tls, host);
    }
    for (;;) {
        ERR_clear_error();
        int r = SSL_connect(tls);
        if (r == 1)
            return 0;
        int e = SSL_get_error(tls, r);
        if ((e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) &&
            wait_fd(fd, e == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT, deadline) > 0)
            continue;
        long vr = SSL_get_verify_result(tls);
        unsigned long le = ERR_peek_error();
        char why[256];
        if (vr != X509_V_OK)
            snprintf(why, sizeof(why), "certificate not trusted: %s (--cacert FILE?)",
                     X509_verify_cert_error_string(vr));
        else if (le != 0)
            ERR_error_string_n(le, why, sizeof(why));
        else
            snprintf(why, sizeof(why), "%s",
                     e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE ? "timed out"
                                                                           : "connection closed");
        fail(err, errlen, "TLS handshake with %s failed: %s", host, why);
        SSL_free(tls);
        tls = NULL;
        return -1;
    }
}

static int send_all(int fd, const char *buf, size_t len, int64_t deadline)
{
    while (len > 0) {
        ssize_t n = io_send(fd, buf, len);
        if (n > 0) {
            buf += n;
            len -= (size_t)n;
            continue;
        }
        if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
            return -1;
        if (wait_fd(fd, POLLOUT, deadline) <= 0)
            return -1;
    }
    return 0;
}

/* Parse the head in buf[0..len): status code and where the body starts. */
static int parse_head(const char *buf, size_t len, int *status, size_t *body_off, long *clen)
{
    const char *end = NULL;
    for (size_t i = 0; i + 3 < len; i++) {
        if (buf[i] == '\r' && buf[i + 1] == '\n' && buf[i + 2] == '\r' && buf[i + 3] == '\n') {
            end = buf + i;
            break;
        }
    }
    if (end == NULL)
        return -1;
    if (strncmp(buf, "HTTP/1.", 7) != 0 || len < 12 || buf[8] != ' ')
        return -1;
    int code = 0;
    for (int i = 9; i < 12; i++) {
        if (buf[i] < '0' || buf[i] > '9')
            return -1;
        code = code * 10 + (buf[i] - '0');
    }
    *status = code;
    *body_off = (size_t)(end - buf) + 4;
    *clen = -1;
    /* Content-Length, if any, in the header lines. */
    const char *line = memchr(buf, '\n', (size_t)(end - buf));
    while (line != NULL && line < end) {
        line++;
        if ((size_t)(end - line) > 15 && strncasecmp(line, "Content-Length:", 15) == 0)
            *clen = strtol(line + 15, NULL, 10);
        line = memchr(line, '\n', (size_t)(end - line));
    }
    return 0;
}

/* "unix:/path" or "/path": a unix socket path, else NULL. */
static const char *unix_path(const char *addr)
{
    if (strncmp(addr, "unix:", 5) == 0)
        return addr + 5;
    return addr[0] == '/' ? addr : NULL;
}

static int connect_unix(const char *path, int64_t deadline, int *err_out)
{
    struct sockaddr_un sa;
    memset(&sa, 0, sizeof(sa));
    sa.sun_family = AF_UNIX;
    if (strlen(path) >= sizeof(sa.sun_path)) {
        *err_out = ENAMETOOLONG;
        return -1;
    }
    strcpy(sa.sun_path, path);
    struct addrinfo a;
    memset(&a, 0, sizeof(a));
    a.ai_family = AF_UNIX;
    a.ai_socktype = SOCK_STREAM;
    a.ai_addr = (struct sockaddr *)&sa;
    a.ai_addrlen = sizeof(sa);
    return connect_one(&a, deadline, err_out);
}

/* Connect and send the request: the socket, or -1 with err filled. */
static int open_and_send(const char *addr, const char *method, const char *path, const char *body,
                         const char *token, int64_t deadline, char *err, size_t errlen)
{
    int fd = -1, cerr = 0, use_tls = strncmp(addr, "https://", 8) == 0;
    char host[256], port[8];
    if (use_tls)
        addr += 8;
    const char *up = use_tls ? NULL : unix_path(addr);
    if (up != NULL) {
        fd = connect_unix(up, deadline, &cerr);
    } else {
        if (split_addr(addr, host, sizeof(host), port, sizeof(port)) != 0) {
            fail(err, errlen, "invalid address \"%s\": expected HOST:PORT or unix:PATH", addr);
            return -1;
        }
        struct addrinfo hints, *res = NULL;
        memset(&hints, 0, sizeof(hints));
        hints.ai_family = AF_UNSPEC;
        hints.ai_socktype = SOCK_STREAM;
        int gai = getaddrinfo(host, port, &hints, &res);
        if (gai != 0) {
            fail(err, errlen, "cannot resolve \"%s\": %s", host, gai_strerror(gai));
            return -1;
        }
        for (struct addrinfo *a = res; a != NULL && fd < 0; a = a->ai_next)
            fd = connect_one(a, deadline, &cerr);
        freeaddrinfo(res);
    }
    if (fd < 0) {
        fail(err, errlen, "cannot reach node at %s: %s", addr, strerror(cerr));
        return -1;
    }
    if (use_tls && tls_open(fd, host, deadline, err, errlen) != 0) {
        close(fd);
        return -1;
    }
    size_t blen = body ? strlen(body) : 0;
    size_t qcap =
        strlen(method) + strlen(path) + strlen(addr) + blen + (token ? strlen(token) : 0) + 300;
    char *req = malloc(qcap);
    if (req == NULL)
        abort();
    int qn = snprintf(req, qcap,
                      "%s %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: nodectl/" SHOAL_VERSION
                      "\r\nAccept: application/json\r\nConnection: close\r\n",
                      method, path, up ? "localhost" : addr);
    if (token != NULL && *token)
        qn += snprintf(req + qn, qcap - (size_t)qn, "Authorization: Bearer %s\r\n", token);
    if (body)
        qn +=
            snprintf(req + qn, qcap - (size_t)qn,
                     "Content-Type: application/json\r\nContent-Length: %zu\r\n\r\n%s", blen, body);
    else if (strcmp(method, "POST") == 0)
        qn += snprintf(req + qn, qcap - (size_t)qn, "Content-Length: 0\r\n\r\n");
    else
        qn += snprintf(req + qn, qcap - (size_t)qn, "\r\n");
    int sent = send_all(fd, req, (size_t)qn, deadline);
    free(req);
    if (sent != 0) {
        io_close(fd);
        fail(err, errlen, "node at %s: cannot send the request: %s", addr,
             errno ? strerror(errno) : "timed out");
        return -1;
    }
    return fd;
}

int nodectl_stream(const char *addr, const char *path, const char *token, int timeout_ms,
                   int (*on_event)(void *ud, const char *event, const char *data), void *ud,
                   int *status, char *err, size_t errlen)
{
    int64_t deadline = now_ms() + timeout_ms;
    *status = 0;
    int fd = open_and_send(addr, "GET", path, NULL, token, deadline, err, errlen);
    if (fd < 0)
        return NODECTL_EUSAGE;
    size_t cap = 65536, len = 0, off = 0;
    char *buf = malloc(cap + 1);
    if (buf == NULL)
        abort();
    int head_done = 0, rc = NODECTL_EUSAGE;
    char event[64] = "message";
    for (;;) {
        if (len == cap) {
            fail(err, errlen, "node at %s: an event larger than %zu bytes", addr, cap);
            break;
        }
        ssize_t n = io_recv(fd, buf + len, cap - len);
        if (n == 0) {
            fail(err, errlen,
                 head_done ? "node at %s: the event stream ended"
                           : "node at %s: connection closed before an answer",
                 addr);
            break;
        }
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno != EAGAIN && errno != EWOULDBLOCK) {
                fail(err, errlen, "node at %s: connection failed: %s", addr, strerror(errno));
                break;
            }
            /* no deadline once the stream is open: events come when they come */
            if (wait_fd(fd, POLLIN, head_done ? now_ms() + 3600000 : deadline) <= 0 && !head_done) {
                fail(err, errlen, "node at %s: no answer within %d ms", addr, timeout_ms);
                break;
            }
            continue;
        }
        len += (size_t)n;
        buf[len] = 0;
        if (!head_done) {
            long clen;
            if (parse_head(buf, len, status, &off, &clen) != 0) {
                if (len > 16384) {
                    fail(err, errlen, "node at %s: the answer is not HTTP/1.1", addr);
                    break;
                }
                continue;
            }
            head_done = 1;
            if (*status != 200) {
                /* an error document: read it whole, the caller reports it */
                memmove(buf, buf + off, len - off + 1);
                len -= off;
                while (len < cap && (n = io_recv(fd, buf + len, cap - len)) != 0) {
                    if (n > 0)
                        len += (size_t)n;
                    else if (errno != EINTR &&
                             (errno != EAGAIN || wait_fd(fd, POLLIN, deadline) <= 0))
                        break;
                }
                buf[len] = 0;
                snprintf(err, errlen, "%s", buf);
                rc = NODECTL_ENODE;
                break;
            }
            memmove(buf, buf + off, len - off + 1);
            len -= off;
        }
        /* complete lines; an empty line ends an event */
        char *line = buf, *nl;
        while ((nl = memchr(line, '\n', (size_t)(buf + len - line))) != NULL) {
            *nl = 0;
            if (nl > line && nl[-1] == '\r')
                nl[-1] = 0;
            if (strncmp(line, "event: ", 7) == 0) {
                snprintf(event, sizeof(event), "%s", line + 7);
            } else if (strncmp(line, "data: ", 6) == 0) {
                if (on_event(ud, event, line + 6) != 0) {
                    free(buf);
                    io_close(fd);
                    return NODECTL_OK;
                }
                snprintf(event, sizeof(event), "message");
            }
            line = nl + 1;
        }
        size_t left = (size_t)(buf + len - line);
        memmove(buf, line, left);
        len = left;
    }
    free(buf);
    io_close(fd);
    return rc;
}

int nodectl_request(const char *addr, const char *method, const char *path, const char *body,
                    const char *token, int timeout_ms, nodectl_resp_t *r, char *err, size_t errlen)
{
    memset(r, 0, sizeof(*r));
    int64_t deadline = now_ms() + timeout_ms;
    int fd = open_and_send(addr, method, path, body, token, deadline, err, errlen);
    if (fd < 0)
        return NODECTL_EUSAGE;

    size_t cap = 16384, len = 0;
    char *buf = malloc(cap);
    if (buf == NULL)
        abort();
    for (;;) {
        if (len + 1 >= cap) {
            if (cap >= NODECTL_MAX_RESPONSE) {
                free(buf);
                io_close(fd);
                return fail(err, errlen, "node at %s: response larger than %u bytes", addr,
                            NODECTL_MAX_RESPONSE);
            }
            cap *= 2;
            char *nb = realloc(buf, cap);
            if (nb == NULL)
                abort();
            buf = nb;
        }
        ssize_t n = io_recv(fd, buf + len, cap - 1 - len);
        if (n > 0) {
            len += (size_t)n;
            continue;
        }
        if (n == 0)
            break;
        if (errno == EINTR)
            continue;
        if (errno != EAGAIN && errno != EWOULDBLOCK) {
            int e = errno;
            free(buf);
            io_close(fd);
            return fail(err, errlen, "node at %s: connection failed: %s", addr, strerror(e));
        }
        int w = wait_fd(fd, POLLIN, deadline);
        if (w <= 0) {
            free(buf);
            io_close(fd);
            return fail(err, errlen, "node at %s: no complete answer within %d ms", addr,
                        timeout_ms);
        }
    }
    io_close(fd);
    buf[len] = 0;
    size_t off;
    long clen;
    if (parse_head(buf, len, &r->status, &off, &clen) != 0) {
        free(buf);
        return fail(err, errlen, "node at %s: the answer is not HTTP/1.1", addr);
    }
    if (clen >= 0 && (size_t)clen != len - off) {
        free(buf);
        return fail(err, errlen, "node at %s: truncated answer (%zu of %ld bytes)", addr, len - off,
                    clen);
    }
    r->body_len = len - off;
    memmove(buf, buf + off, r->body_len + 1);
    r->body = buf;
    return 0;
}

void nodectl_resp_dispose(nodectl_resp_t *r)
{
    free(r->body);
    r->body = NULL;
}
