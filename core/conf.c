/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The configuration parser: nginx-syntax text in, directive tree out
 * (conf.h, layer 1). It knows no directive but `include`, which it expands
 * in place so that the walker never sees it and every node keeps the file
 * and line it was written at.
 *
 * Tokenizing follows nginx's ngx_conf_read_token() rules, which users of
 * nginx configurations rely on:
 *   - an unquoted token ends at whitespace, ';' or '{' (a '{' right after '$'
 *     belongs to the token, so `${var}` stays whole); a '}' inside a token is
 *     an ordinary character, as in nginx;
 *   - a quote starts a quoted token only at the beginning of a token; after
 *     the closing quote comes whitespace, ';', '{' or ')' (`if ($a = "b")`),
 *     anything else is `unexpected "x"`;
 *   - a backslash makes the next character ordinary (it can neither end the
 *     token nor close the quote); when the token is stored \" \' \\ \t \r \n
 *     are translated and any other backslash is kept, so regular expressions
 *     such as `~ /\.` reach their module unchanged;
 *   - '#' starts a comment to the end of the line only where a token could
 *     start;
 *   - `$var` and `${var}` are kept verbatim.
 * Errors are "file:line: message" with nginx's wording where nginx has one;
 * the line is the one the parser was on when it found the problem.
 *
 * Every untrusted size has a limit (conf.h): file size, token length,
 * arguments per directive, block depth and include depth, plus the number
 * of files included per document. Files are read
 * whole (they are at most 1 MiB) and only if they are regular files, so an
 * include can never block on a FIFO or a device.
 *
 * Each node, its argument vector and each argument are separate allocations
 * freed by sh_conf_doc_destroy(); file names are interned once per opened
 * file in the document. The parser holds no global state.
 */
#include "core/conf.h"

#include <errno.h>
#include <fcntl.h>
#include <glob.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/err.h"

#define MAX_FILE_SIZE     (1024u * 1024u)
#define MAX_TOKEN_LEN     4096u
#define MAX_ARGS          64u /* not counting the directive name */
#define MAX_BLOCK_DEPTH   32u
#define MAX_INCLUDE_DEPTH 16u
/* Not in conf.h: files included per document. Depth alone does not bound
 * the work, since each of 16 levels may include the next several times. */
#define MAX_INCLUDED_FILES 4096u

_Static_assert(MAX_ARGS + 1 < 256, "nargs fits comfortably");

/* A file name the document owns; nodes point at name[]. */
typedef struct fname_s {
    struct fname_s *next;
    char name[];
} fname_t;

struct sh_conf_doc_s {
    sh_conf_node_t *root;
    fname_t *names;
};

/* One piece of text being tokenized. */
typedef struct {
    const char *name; /* owned by the doc */
    const char *p;
    const char *end;
    unsigned line;
} src_t;

typedef struct {
    sh_conf_doc_t *doc;
    const char *base;  /* prefix for relative includes: "" or ends in '/' */
    unsigned depth;    /* block nesting, across included files */
    unsigned incdepth; /* include nesting; the main text is 0 */
    unsigned nfiles;   /* files included so far */
    char *err;
    /* The directive being read: its tokens until a node takes them. */
    char *args[MAX_ARGS + 1];
    unsigned char quoted[MAX_ARGS + 1];
    unsigned nargs;
    unsigned dline; /* line of args[0] */
    int code;       /* the code of the error in err */
} parser_t;

/* What read_directive() stopped at. */
enum { EV_END, EV_BLOCK, EV_CLOSE, EV_EOF, EV_ERR };

/* ------------------------------------------------------------ helpers -- */

static void verr(char *err, const char *file, unsigned line, const char *fmt, va_list ap)
{
    int n;
    if (line > 0)
        n = snprintf(err, SH_CONF_ERRLEN, "%s:%u: ", file, line);
    else
        n = snprintf(err, SH_CONF_ERRLEN, "%s: ", file);
    if (n < 0)
        n = 0;
    if ((size_t)n < SH_CONF_ERRLEN)
        vsnprintf(err + n, SH_CONF_ERRLEN - (size_t)n, fmt, ap);
}

/* Write "file:line: message" (line 0: "file: message") and return code. */
static int perr(parser_t *ps, const char *file, unsigned line, int code, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
static int perr(parser_t *ps, const char *file, unsigned line, int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    verr(ps->err, file, line, fmt, ap);
    va_end(ap);
    ps->code = code;
    return code;
}

static const char *intern_name(sh_conf_doc_t *doc, const char *name)
{
    size_t n = strlen(name);
    fname_t *f = sh_malloc(sizeof(*f) + n + 1);
    memcpy(f->name, name, n + 1);
    f->next = doc->names;
    doc->names = f;
    return f->name;
}

static void drop_args(parser_t *ps)
{
    for (unsigned i = 0; i < ps->nargs; i++)
        sh_free(ps->args[i]);
    ps->nargs = 0;
}

static void free_nodes(sh_conf_node_t *n)
{
    while (n != NULL) {
        sh_conf_node_t *next = n->next;
        /* Recursion follows block nesting only, which is bounded. */
        free_nodes(n->child);
        for (unsigned i = 0; i < n->nargs; i++)
            sh_free(n->args[i]);
        sh_free(n->args);
        sh_free(n->quoted);
        sh_free(n);
        n = next;
    }
}

static int is_space(int c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

/* Copy raw token text, doing nginx's escapes; the result is NUL-terminated. */
static char *unescape(const char *s, size_t len)
{
    char *out = sh_malloc(len + 1);
    size_t o = 0;
    for (size_t i = 0; i < len; i++) {
        if (s[i] == '\\' && i + 1 < len) {
            switch (s[i + 1]) {
            case '"':
            case '\'':
            case '\\':
                out[o++] = s[++i];
                continue;
            case 't':
                out[o++] = '\t';
                i++;
                continue;
            case 'r':
                out[o++] = '\r';
                i++;
                continue;
            case 'n':
                out[o++] = '\n';
                i++;
                continue;
            default:
                break; /* keep the backslash: `\.` in a regex */
            }
        }
        out[o++] = s[i];
    }
    out[o] = '\0';
    return out;
}

/* ---------------------------------------------------------- tokenizer -- */

static int too_long(parser_t *ps, src_t *s, const char *start, int quote)
{
    if (quote)
        perr(ps, s->name, s->line, SH_ELIMIT,
             "too long parameter, probably missing terminating '%c' character", quote);
    else
        perr(ps, s->name, s->line, SH_ELIMIT, "too long parameter \"%.10s...\" started", start);
    return EV_ERR;
}

static int nul_byte(parser_t *ps, src_t *s)
{
    /* A NUL would silently cut the NUL-terminated argument short. */
    perr(ps, s->name, s->line, SH_EPARSE, "unexpected NUL byte");
    return EV_ERR;
}

static int push_token(parser_t *ps, src_t *s, const char *start, size_t len, int quoted,
                      unsigned line)
{
    if (ps->nargs == MAX_ARGS + 1) {
        perr(ps, s->name, s->line, SH_ELIMIT, "too many arguments in \"%s\" directive (max %u)",
             ps->args[0], MAX_ARGS);
        return EV_ERR;
    }
    if (ps->nargs == 0)
        ps->dline = line;
    ps->args[ps->nargs] = unescape(start, len);
    ps->quoted[ps->nargs] = (unsigned char)quoted;
    ps->nargs++;
    return 0;
}

/* A token from s->p up to whitespace, ';', '{' (not after '$') or the end. */
static int read_plain(parser_t *ps, src_t *s)
{
    const char *start = s->p;
    unsigned line = s->line;
    int variable = 0;
    while (s->p < s->end) {
        char c = *s->p;
        if ((size_t)(s->p - start) > MAX_TOKEN_LEN)
            return too_long(ps, s, start, 0);
        if (c == '\0')
            return nul_byte(ps, s);
        if (c == '\\') {
            variable = 0;
            s->p++;
            if (s->p < s->end) {
                if (*s->p == '\0')
                    return nul_byte(ps, s);
                if (*s->p == '\n')
                    s->line++;
                s->p++;
            }
            continue;
        }
        if (c == '{' && variable) {
            s->p++;
            continue;
        }
        if (is_space(c) || c == ';' || c == '{')
            break;
        variable = (c == '$');
        s->p++;
    }
    if ((size_t)(s->p - start) > MAX_TOKEN_LEN)
        return too_long(ps, s, start, 0);
    return push_token(ps, s, start, (size_t)(s->p - start), 0, line);
}

/* A token between quotes q; s->p is at the opening quote. */
static int read_quoted(parser_t *ps, src_t *s, char q)
{
    unsigned line = s->line;
    const char *start = ++s->p;
    for (;;) {
        if (s->p >= s->end) {
            perr(ps, s->name, s->line, SH_EPARSE,
                 "unexpected end of file, expecting \";\" or \"}\"");
            return EV_ERR;
        }
        if ((size_t)(s->p - start) > MAX_TOKEN_LEN)
            return too_long(ps, s, start, q);
        char c = *s->p;
        if (c == '\0')
            return nul_byte(ps, s);
        if (c == '\n')
            s->line++;
        if (c == '\\') {
            s->p++;
            if (s->p < s->end) {
                if (*s->p == '\0')
                    return nul_byte(ps, s);
                if (*s->p == '\n')
                    s->line++;
                s->p++;
            }
            continue;
        }
        if (c == q)
            break;
        s->p++;
    }
    const char *end = s->p++;
    if (push_token(ps, s, start, (size_t)(end - start), 1, line) != 0)
        return EV_ERR;
    /* nginx's need_space: `"a"b` is an error; `")"` splits off a token. */
    if (s->p < s->end) {
        char c = *s->p;
        if (!is_space(c) && c != ';' && c != '{' && c != ')') {
            if (c == '\0')
                return nul_byte(ps, s);
            perr(ps, s->name, s->line, SH_EPARSE, "unexpected \"%c\"", c);
            return EV_ERR;
        }
    }
    return 0;
}

/*
 * Read one directive's tokens into ps->args. Returns EV_END (';'),
 * EV_BLOCK ('{'), EV_CLOSE ('}' with no tokens), EV_EOF (end with no
 * tokens) or EV_ERR with ps->err written.
 */
static int read_directive(parser_t *ps, src_t *s)
{
    drop_args(ps);
    for (;;) {
        while (s->p < s->end) {
            char c = *s->p;
            if (c == '\n') {
                s->line++;
                s->p++;
            } else if (is_space(c)) {
                s->p++;
            } else if (c == '#') {
                while (s->p < s->end && *s->p != '\n')
                    s->p++;
            } else {
                break;
            }
        }
        if (s->p >= s->end) {
            if (ps->nargs > 0) {
                perr(ps, s->name, s->line, SH_EPARSE,
                     "unexpected end of file, expecting \";\" or \"}\"");
                return EV_ERR;
            }
            return EV_EOF;
        }
        char c = *s->p;
        int rc;
        switch (c) {
        case ';':
        case '{':
            if (ps->nargs == 0) {
                perr(ps, s->name, s->line, SH_EPARSE, "unexpected \"%c\"", c);
                return EV_ERR;
            }
            s->p++;
            return c == ';' ? EV_END : EV_BLOCK;
        case '}':
            if (ps->nargs != 0) {
                perr(ps, s->name, s->line, SH_EPARSE, "unexpected \"}\"");
                return EV_ERR;
            }
            s->p++;
            return EV_CLOSE;
        case '"':
        case '\'':
            rc = read_quoted(ps, s, c);
            break;
        default:
            rc = read_plain(ps, s);
            break;
        }
        if (rc != 0)
            return EV_ERR;
    }
}

/* ------------------------------------------------------------- parser -- */

static int parse_seq(parser_t *ps, src_t *s, int in_block, sh_conf_node_t ***tail);

/* Move the directive's tokens into a new node appended at *tail. */
static sh_conf_node_t *take_node(parser_t *ps, src_t *s, sh_conf_node_t ***tail)
{
    sh_conf_node_t *n = sh_new(sh_conf_node_t);
    n->file = s->name;
    n->line = ps->dline;
    n->nargs = ps->nargs;
    n->args = sh_memdup(ps->args, ps->nargs * sizeof(char *));
    n->quoted = sh_memdup(ps->quoted, ps->nargs);
    ps->nargs = 0;
    **tail = n;
    *tail = &n->next;
    return n;
}

/*
 * Read the regular file at path (at most MAX_FILE_SIZE bytes) into a new
 * buffer. On failure writes "what: message" via perr with the given
 * location (line 0 for the main file) and returns a negative code.
 */
static int read_file(parser_t *ps, const char *path, const char *where, unsigned line, char **out,
                     size_t *outlen)
{
    int main_file = (line == 0);
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) {
        int e = errno;
        int code = (e == ENOENT || e == ENOTDIR) ? SH_ENOENT : SH_EIO;
        if (main_file)
            return perr(ps, path, 0, code, "%s", strerror(e));
        return perr(ps, where, line, code, "open() \"%s\" failed (%s)", path, strerror(e));
    }
    struct stat st;
    int rc = 0;
    if (fstat(fd, &st) != 0) {
        int e = errno;
        rc = main_file
                 ? perr(ps, path, 0, SH_EIO, "%s", strerror(e))
                 : perr(ps, where, line, SH_EIO, "fstat() \"%s\" failed (%s)", path, strerror(e));
        goto fail_fd;
    }
    if (!S_ISREG(st.st_mode)) {
        const char *why = S_ISDIR(st.st_mode) ? strerror(EISDIR) : "not a regular file";
        rc = main_file ? perr(ps, path, 0, SH_EIO, "%s", why)
                       : perr(ps, where, line, SH_EIO, "read() \"%s\" failed (%s)", path, why);
        goto fail_fd;
    }
    if ((uintmax_t)st.st_size > MAX_FILE_SIZE) {
        rc = main_file
                 ? perr(ps, path, 0, SH_ELIMIT, "file is too large (max %u bytes)", MAX_FILE_SIZE)
                 : perr(ps, where, line, SH_ELIMIT, "file \"%s\" is too large (max %u bytes)", path,
                        MAX_FILE_SIZE);
        goto fail_fd;
    }
    /* The size may change under us: read to EOF, never past the limit. */
    size_t cap = (size_t)st.st_size + 1, len = 0;
    char *buf = sh_malloc(cap);
    for (;;) {
        if (len == cap) {
            if (cap > MAX_FILE_SIZE) {
                rc = main_file
                         ? perr(ps, path, 0, SH_ELIMIT, "file is too large (max %u bytes)",
                                MAX_FILE_SIZE)
                         : perr(ps, where, line, SH_ELIMIT,
                                "file \"%s\" is too large (max %u bytes)", path, MAX_FILE_SIZE);
                goto fail_buf;
            }
            cap = cap * 2 > MAX_FILE_SIZE + 1 ? MAX_FILE_SIZE + 1 : cap * 2;
            buf = sh_realloc(buf, cap);
        }
        ssize_t n = read(fd, buf + len, cap - len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            int e = errno;
            rc = main_file ? perr(ps, path, 0, SH_EIO, "%s", strerror(e))
                           : perr(ps, where, line, SH_EIO, "read() \"%s\" failed (%s)", path,
                                  strerror(e));
            goto fail_buf;
        }
        if (n == 0)
            break;
        len += (size_t)n;
    }
    if (len > MAX_FILE_SIZE) {
        rc = main_file
                 ? perr(ps, path, 0, SH_ELIMIT, "file is too large (max %u bytes)", MAX_FILE_SIZE)
                 : perr(ps, where, line, SH_ELIMIT, "file \"%s\" is too large (max %u bytes)", path,
                        MAX_FILE_SIZE);
        goto fail_buf;
    }
    close(fd);
    *out = buf;
    *outlen = len;
    return 0;

fail_buf:
    sh_free(buf);
fail_fd:
    close(fd);
    return rc;
}

/* Parse one included file in place at *tail. */
static int include_file(parser_t *ps, src_t *from, unsigned line, const char *path,
                        sh_conf_node_t ***tail)
{
    if (ps->nfiles >= MAX_INCLUDED_FILES)
        return perr(ps, from->name, line, SH_ELIMIT, "too many included files (max %u)",
                    MAX_INCLUDED_FILES);
    ps->nfiles++;
    char *buf;
    size_t len;
    int rc = read_file(ps, path, from->name, line, &buf, &len);
    if (rc != 0)
        return rc;
    src_t sub = {.name = intern_name(ps->doc, path), .p = buf, .end = buf + len, .line = 1};
    ps->incdepth++;
    rc = parse_seq(ps, &sub, 0, tail);
    ps->incdepth--;
    sh_free(buf);
    return rc;
}

/* `include PATTERN;` (the tokens are in ps->args): expand it at *tail. */
static int include(parser_t *ps, src_t *s, int ev, sh_conf_node_t ***tail)
{
    unsigned line = ps->dline;
    if (ev == EV_BLOCK)
        return perr(ps, s->name, line, SH_EPARSE,
                    "directive \"include\" is not terminated by \";\"");
    if (ps->nargs != 2)
        return perr(ps, s->name, line, SH_EPARSE,
                    "invalid number of arguments in \"include\" directive");
    if (ps->incdepth >= MAX_INCLUDE_DEPTH)
        return perr(ps, s->name, line, SH_ELIMIT,
                    "include nesting too deep (max %u), possible include loop in \"%s\"",
                    MAX_INCLUDE_DEPTH, ps->args[1]);

    /* Relative patterns resolve against the main file's directory, as
     * nginx's conf prefix, whichever file the include is written in. */
    const char *pat = ps->args[1];
    size_t blen = pat[0] == '/' ? 0 : strlen(ps->base);
    size_t plen = strlen(pat);
    char *path = sh_malloc(blen + plen + 1);
    memcpy(path, ps->base, blen);
    memcpy(path + blen, pat, plen + 1);
    drop_args(ps);

    int rc = 0;
    if (strpbrk(path, "*?[") == NULL) {
        rc = include_file(ps, s, line, path, tail);
    } else {
        glob_t g;
        memset(&g, 0, sizeof(g));
        int grc = glob(path, 0, NULL, &g);
        if (grc == 0) {
            /* glob(3) sorts the names, which gives nginx's include order. */
            for (size_t i = 0; i < g.gl_pathc && rc == 0; i++)
                rc = include_file(ps, s, line, g.gl_pathv[i], tail);
        } else if (grc != GLOB_NOMATCH) {
            rc = perr(ps, s->name, line, SH_EIO, "glob() \"%s\" failed", path);
        }
        globfree(&g);
    }
    sh_free(path);
    return rc;
}

/*
 * Parse directives from s, appending nodes at *tail, until the end of the
 * text (in_block == 0) or the '}' closing the current block (in_block).
 */
static int parse_seq(parser_t *ps, src_t *s, int in_block, sh_conf_node_t ***tail)
{
    for (;;) {
        int ev = read_directive(ps, s);
        switch (ev) {
        case EV_ERR:
            return ps->code;
        case EV_EOF:
            if (in_block)
                return perr(ps, s->name, s->line, SH_EPARSE,
                            "unexpected end of file, expecting \"}\"");
            return 0;
        case EV_CLOSE:
            if (!in_block)
                return perr(ps, s->name, s->line, SH_EPARSE, "unexpected \"}\"");
            return 0;
        default:
            break;
        }
        if (strcmp(ps->args[0], "include") == 0) {
            int rc = include(ps, s, ev, tail);
            if (rc != 0)
                return rc;
            continue;
        }
        sh_conf_node_t *n = take_node(ps, s, tail);
        if (ev == EV_BLOCK) {
            n->block = 1;
            if (ps->depth >= MAX_BLOCK_DEPTH)
                return perr(ps, s->name, s->line, SH_ELIMIT, "too deep nesting of blocks (max %u)",
                            MAX_BLOCK_DEPTH);
            sh_conf_node_t **ctail = &n->child;
            ps->depth++;
            int rc = parse_seq(ps, s, 1, &ctail);
            ps->depth--;
            if (rc != 0)
                return rc;
        }
    }
}

/* Parse text as the main document; base is the include prefix. */
static int parse_main(const char *name, const char *text, size_t len, const char *base,
                      sh_conf_doc_t **out, char *err)
{
    char scratch[SH_CONF_ERRLEN];
    parser_t ps;
    memset(&ps, 0, sizeof(ps));
    ps.err = err != NULL ? err : scratch;
    ps.err[0] = '\0';
    ps.doc = sh_new(sh_conf_doc_t);
    ps.base = base;

    int rc;
    if (len > MAX_FILE_SIZE) {
        rc = perr(&ps, name, 0, SH_ELIMIT, "file is too large (max %u bytes)", MAX_FILE_SIZE);
    } else {
        src_t s = {.name = intern_name(ps.doc, name), .p = text, .end = text + len, .line = 1};
        sh_conf_node_t **tail = &ps.doc->root;
        rc = parse_seq(&ps, &s, 0, &tail);
    }
    drop_args(&ps);
    if (rc != 0) {
        sh_conf_doc_destroy(ps.doc);
        return rc;
    }
    *out = ps.doc;
    return 0;
}

/* "dir/" for dir (adding the slash), "" for NULL or "". */
static char *dir_prefix(const char *dir, size_t n)
{
    if (dir == NULL || n == 0)
        return sh_strdup("");
    char *p = sh_malloc(n + 2);
    memcpy(p, dir, n);
    if (dir[n - 1] != '/')
        p[n++] = '/';
    p[n] = '\0';
    return p;
}

/* ---------------------------------------------------------------- API -- */

int sh_conf_parse_file(const char *path, sh_conf_doc_t **out, char *err)
{
    char scratch[SH_CONF_ERRLEN];
    if (err == NULL)
        err = scratch;
    err[0] = '\0';
    *out = NULL;

    parser_t ps;
    memset(&ps, 0, sizeof(ps));
    ps.err = err;
    char *buf;
    size_t len;
    int rc = read_file(&ps, path, path, 0, &buf, &len);
    if (rc != 0)
        return rc;
    const char *slash = strrchr(path, '/');
    char *base = dir_prefix(path, slash != NULL ? (size_t)(slash - path + 1) : 0);
    rc = parse_main(path, buf, len, base, out, err);
    sh_free(base);
    sh_free(buf);
    return rc;
}

int sh_conf_parse_buffer(const char *name, const char *text, size_t len, const char *include_dir,
                         sh_conf_doc_t **out, char *err)
{
    *out = NULL;
    char *base = dir_prefix(include_dir, include_dir != NULL ? strlen(include_dir) : 0);
    int rc = parse_main(name, text != NULL ? text : "", text != NULL ? len : 0, base, out, err);
    sh_free(base);
    return rc;
}

const sh_conf_node_t *sh_conf_doc_root(const sh_conf_doc_t *doc)
{
    return doc != NULL ? doc->root : NULL;
}

unsigned sh_conf_doc_files(const sh_conf_doc_t *doc, const char **out, unsigned max)
{
    unsigned n = 0;
    for (const fname_t *f = doc->names; f != NULL; f = f->next)
        n++;
    /* the list is newest first: fill from the end for the reading order */
    unsigned i = n;
    for (const fname_t *f = doc->names; f != NULL; f = f->next) {
        i--;
        if (i < max)
            out[i] = f->name;
    }
    return n;
}

void sh_conf_doc_destroy(sh_conf_doc_t *doc)
{
    if (doc == NULL)
        return;
    free_nodes(doc->root);
    while (doc->names != NULL) {
        fname_t *f = doc->names;
        doc->names = f->next;
        sh_free(f);
    }
    sh_free(doc);
}
