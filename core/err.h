/* SPDX-License-Identifier: Apache-2.0 */
/*
 * One error vocabulary for all of Shoal (style.md, rule 4). Fallible functions
 * return 0 or a negative SH_E* code; decoders return bytes consumed, SH_EAGAIN
 * for "need more", or an error. sh_strerror() gives a static description.
 * Library errors (OpenSSL, nghttp2, LMDB) are translated in the one module
 * that wraps each library.
 */
#ifndef SH_ERR_H
#define SH_ERR_H

#define SH_ERRNO_MAP(X)                                                                            \
    X(EAGAIN, -1, "need more input")                                                               \
    X(ENOMEM, -2, "out of memory")                                                                 \
    X(EINVAL, -3, "invalid argument")                                                              \
    X(ELIMIT, -4, "limit exceeded")                                                                \
    X(EPARSE, -5, "malformed input")                                                               \
    X(EIO, -6, "input/output error")                                                               \
    X(ENOENT, -7, "not found")                                                                     \
    X(EEXIST, -8, "already exists")                                                                \
    X(ECLOSED, -9, "closed")                                                                       \
    X(ETIMEDOUT, -10, "timed out")                                                                 \
    X(EAUTH, -11, "authentication failed")                                                         \
    X(EVERSION, -12, "unsupported version")                                                        \
    X(EUNSUPP, -13, "not supported")                                                               \
    X(ESTATE, -14, "invalid state")

enum {
#define X(name, code, text) SH_##name = (code),
    SH_ERRNO_MAP(X)
#undef X
};

/* A static, never-NULL description of err (0 gives "success"). Any thread. */
const char *sh_strerror(int err);

#endif
