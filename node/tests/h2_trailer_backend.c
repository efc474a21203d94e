/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A test backend for grpc_pass (integration/test_grpc_trailers.py): an
 * HTTP/2 cleartext server (nghttp2, prior knowledge) that answers every
 * request as a gRPC server would (200, content-type application/grpc,
 * no message, trailers grpc-status 0) and echoes what it received of the
 * request in the response trailers: x-body-bytes (DATA bytes) and
 * x-req-trailers ("name=value;..." of the request's trailers, "-" when
 * none). It also prints "trailer NAME: VALUE" for each one.
 *
 * Usage: h2_trailer_backend PORT. Prints "ready" when listening. One
 * connection at a time (the node's one per worker); stops when killed.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <nghttp2/nghttp2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define MAX_STREAMS 256

typedef struct {
    int32_t id;
    size_t body;
    char tr[2048];
    char bodylen[32];
} st_t;

static st_t streams[MAX_STREAMS];

static st_t *st_get(int32_t id, int create)
{
    for (int i = 0; i < MAX_STREAMS; i++)
        if (streams[i].id == id)
            return &streams[i];
    if (!create)
        return NULL;
    for (int i = 0; i < MAX_STREAMS; i++)
        if (streams[i].id == 0) {
            memset(&streams[i], 0, sizeof(streams[i]));
            streams[i].id = id;
            return &streams[i];
        }
    return NULL;
}

static ssize_t send_cb(nghttp2_session *s, const uint8_t *data, size_t len, int flags, void *ud)
{
    (void)s;
    (void)flags;
    int fd = *(int *)ud;
    ssize_t n = write(fd, data, len);
    return n < 0 ? NGHTTP2_ERR_CALLBACK_FAILURE : n;
}

static int begin_headers(nghttp2_session *s, const nghttp2_frame *f, void *ud)
{
    (void)s;
    (void)ud;
    if (f->hd.type == NGHTTP2_HEADERS && f->headers.cat == NGHTTP2_HCAT_REQUEST)
        st_get(f->hd.stream_id, 1);
    return 0;
}

static int on_header(nghttp2_session *s, const nghttp2_frame *f, const uint8_t *n, size_t nl,
                     const uint8_t *v, size_t vl, uint8_t flags, void *ud)
{
    (void)s;
    (void)flags;
    (void)ud;
    if (f->hd.type != NGHTTP2_HEADERS || f->headers.cat != NGHTTP2_HCAT_HEADERS)
        return 0;
    st_t *st = st_get(f->hd.stream_id, 0);
    if (st == NULL)
        return 0;
    printf("trailer %.*s: %.*s\n", (int)nl, n, (int)vl, v);
    fflush(stdout);
    size_t o = strlen(st->tr);
    snprintf(st->tr + o, sizeof(st->tr) - o, "%.*s=%.*s;", (int)nl, n, (int)vl, v);
    return 0;
}

static int on_data(nghttp2_session *s, uint8_t flags, int32_t id, const uint8_t *d, size_t len,
                   void *ud)
{
    (void)s;
    (void)flags;
    (void)d;
    (void)ud;
    st_t *st = st_get(id, 0);
    if (st != NULL)
        st->body += len;
    return 0;
}

static ssize_t no_body(nghttp2_session *s, int32_t id, uint8_t *buf, size_t len, uint32_t *flags,
                       nghttp2_data_source *src, void *ud)
{
    (void)buf;
    (void)len;
    (void)src;
    (void)ud;
    st_t *st = st_get(id, 0);
    *flags |= NGHTTP2_DATA_FLAG_EOF | NGHTTP2_DATA_FLAG_NO_END_STREAM;
    if (st != NULL) {
        snprintf(st->bodylen, sizeof(st->bodylen), "%zu", st->body);
        const char *tr = st->tr[0] ? st->tr : "-";
        nghttp2_nv t[] = {
            {(uint8_t *)"grpc-status", (uint8_t *)"0", 11, 1, 0},
            {(uint8_t *)"x-body-bytes", (uint8_t *)st->bodylen, 12, strlen(st->bodylen), 0},
            {(uint8_t *)"x-req-trailers", (uint8_t *)tr, 14, strlen(tr), 0},
        };
        nghttp2_submit_trailer(s, id, t, 3);
    }
    return 0;
}

static int on_frame(nghttp2_session *s, const nghttp2_frame *f, void *ud)
{
    (void)ud;
    if ((f->hd.type != NGHTTP2_HEADERS && f->hd.type != NGHTTP2_DATA) ||
        !(f->hd.flags & NGHTTP2_FLAG_END_STREAM))
        return 0;
    nghttp2_nv h[] = {
        {(uint8_t *)":status", (uint8_t *)"200", 7, 3, 0},
        {(uint8_t *)"content-type", (uint8_t *)"application/grpc", 12, 16, 0},
    };
    nghttp2_data_provider prd = {.read_callback = no_body};
    nghttp2_submit_response(s, f->hd.stream_id, h, 2, &prd);
    return 0;
}

static int on_close(nghttp2_session *s, int32_t id, uint32_t err, void *ud)
{
    (void)s;
    (void)err;
    (void)ud;
    st_t *st = st_get(id, 0);
    if (st != NULL)
        st->id = 0;
    return 0;
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s PORT\n", argv[0]);
        return 2;
    }
    int ls = socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(argv[1]))};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(ls, (struct sockaddr *)&a, sizeof(a)) != 0 || listen(ls, 16) != 0) {
        perror("bind/listen");
        return 1;
    }
    printf("ready\n");
    fflush(stdout);
    nghttp2_session_callbacks *cb;
    nghttp2_session_callbacks_new(&cb);
    nghttp2_session_callbacks_set_send_callback(cb, send_cb);
    nghttp2_session_callbacks_set_on_begin_headers_callback(cb, begin_headers);
    nghttp2_session_callbacks_set_on_header_callback(cb, on_header);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cb, on_data);
    nghttp2_session_callbacks_set_on_frame_recv_callback(cb, on_frame);
    nghttp2_session_callbacks_set_on_stream_close_callback(cb, on_close);
    for (;;) {
        int fd = accept(ls, NULL, NULL);
        if (fd < 0)
            continue;
        memset(streams, 0, sizeof(streams));
        nghttp2_session *s;
        nghttp2_session_server_new(&s, cb, &fd);
        nghttp2_submit_settings(s, NGHTTP2_FLAG_NONE, NULL, 0);
        nghttp2_session_send(s);
        char buf[16384];
        ssize_t n;
        while ((n = read(fd, buf, sizeof(buf))) > 0) {
            if (nghttp2_session_mem_recv(s, (const uint8_t *)buf, (size_t)n) < 0 ||
                nghttp2_session_send(s) != 0)
                break;
        }
        nghttp2_session_del(s);
        close(fd);
    }
}
