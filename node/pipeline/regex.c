/* SPDX-License-Identifier: Apache-2.0 */
/*
 * PCRE2 behind sh_regex_* (see regex.h). Patterns are compiled with
 * PCRE2_UTF off (nginx matches bytes), JIT-compiled once when PCRE2 has a
 * JIT for this machine, and are read-only afterwards.
 *
 * Matching needs a pcre2_match_data block. Allocating one per match would
 * put a malloc on every routed request, so each thread keeps one, created
 * on its first match and freed by a thread-specific-data destructor when
 * the thread ends (workers are pthreads). The block holds the first
 * SH_REGEX_MAX_CAPTURES pairs; a pattern with more groups still matches
 * (PCRE2 reports "ovector too small" as 0, which we treat as a match).
 */
#include "node/pipeline/regex.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/err.h"

struct sh_regex_s {
    pcre2_code *code;
    char *pattern;
    int ngroups;
    int nnames;
    PCRE2_SPTR name_table;
    uint32_t name_entry_size;
    unsigned jit : 1;
};

int sh_regex_compile(const char *pattern, int caseless, sh_regex_t **out, char *err, size_t errlen)
{
    int ec = 0;
    PCRE2_SIZE eoff = 0;
    *out = NULL;
    pcre2_code *code = pcre2_compile((PCRE2_SPTR)pattern, PCRE2_ZERO_TERMINATED,
                                     caseless ? PCRE2_CASELESS : 0, &ec, &eoff, NULL);
    if (code == NULL) {
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(ec, msg, sizeof(msg));
        snprintf(err, errlen, "%s at offset %zu", (const char *)msg, (size_t)eoff);
        return SH_EINVAL;
    }
    sh_regex_t *re = sh_new(sh_regex_t);
    re->code = code;
    re->pattern = sh_strdup(pattern);
    /* JIT is an optimisation: without one (no JIT for this CPU), the
     * interpreter gives the same answers. */
    re->jit = pcre2_jit_compile(code, PCRE2_JIT_COMPLETE) == 0;
    uint32_t v = 0;
    pcre2_pattern_info(code, PCRE2_INFO_CAPTURECOUNT, &v);
    re->ngroups = (int)v;
    pcre2_pattern_info(code, PCRE2_INFO_NAMECOUNT, &v);
    re->nnames = (int)v;
    pcre2_pattern_info(code, PCRE2_INFO_NAMEENTRYSIZE, &re->name_entry_size);
    pcre2_pattern_info(code, PCRE2_INFO_NAMETABLE, &re->name_table);
    *out = re;
    return 0;
}

void sh_regex_destroy(sh_regex_t *re)
{
    if (re == NULL)
        return;
    pcre2_code_free(re->code);
    sh_free(re->pattern);
    sh_free(re);
}

/* ------------------------------------------------- per-thread match data -- */

static pthread_key_t md_key;
static pthread_once_t md_once = PTHREAD_ONCE_INIT;
static _Thread_local pcre2_match_data *md_cached;

static void md_free(void *p)
{
    pcre2_match_data_free(p);
}

static void md_key_init(void)
{
    pthread_key_create(&md_key, md_free);
}

static pcre2_match_data *thread_md(void)
{
    if (md_cached == NULL) {
        pthread_once(&md_once, md_key_init);
        md_cached = pcre2_match_data_create(SH_REGEX_MAX_CAPTURES, NULL);
        if (md_cached == NULL)
            abort(); /* out of memory (style.md, rule 6) */
        pthread_setspecific(md_key, md_cached);
    }
    return md_cached;
}

int sh_regex_match(const sh_regex_t *re, const char *subject, size_t len, size_t *ovec)
{
    pcre2_match_data *md = thread_md();
    int rc = re->jit ? pcre2_jit_match(re->code, (PCRE2_SPTR)subject, len, 0, 0, md, NULL)
                     : pcre2_match(re->code, (PCRE2_SPTR)subject, len, 0, 0, md, NULL);
    if (rc == PCRE2_ERROR_NOMATCH)
        return 0;
    if (rc < 0)
        return SH_EIO;
    if (ovec != NULL) {
        const PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
        uint32_t pairs = pcre2_get_ovector_count(md);
        /* rc == 0: more groups than pairs; all pairs are meaningful */
        uint32_t set = rc == 0 ? pairs : (uint32_t)rc;
        for (uint32_t i = 0; i < SH_REGEX_MAX_CAPTURES; i++) {
            if (i < set && i < pairs && ov[2 * i] != PCRE2_UNSET) {
                ovec[2 * i] = ov[2 * i];
                ovec[2 * i + 1] = ov[2 * i + 1];
            } else {
                ovec[2 * i] = ovec[2 * i + 1] = SH_REGEX_UNSET;
            }
        }
    }
    return 1;
}

int sh_regex_ngroups(const sh_regex_t *re)
{
    return re->ngroups;
}

int sh_regex_nnames(const sh_regex_t *re)
{
    return re->nnames;
}

const char *sh_regex_name(const sh_regex_t *re, int i, int *group)
{
    PCRE2_SPTR e = re->name_table + (size_t)i * re->name_entry_size;
    *group = (e[0] << 8) | e[1];
    return (const char *)e + 2;
}

int sh_regex_group(const sh_regex_t *re, const char *name, size_t len)
{
    for (int i = 0; i < re->nnames; i++) {
        int g;
        const char *n = sh_regex_name(re, i, &g);
        if (strlen(n) == len && memcmp(n, name, len) == 0)
            return g;
    }
    return -1;
}

const char *sh_regex_pattern(const sh_regex_t *re)
{
    return re->pattern;
}
