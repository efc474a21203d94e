/* SPDX-License-Identifier: Apache-2.0 */
/*
 * HTTP dates (see httpdate.h). Calendar arithmetic is done here on
 * integers (days from civil dates), not with gmtime/timegm, so the codec
 * is pure and the same on every libc.
 */
#include "http/httpdate.h"

#include <string.h>

#include "core/err.h"

static const char wdays[7][4] = {"Thu", "Fri", "Sat", "Sun",
                                 "Mon", "Tue", "Wed"}; /* 1970-01-01: Thu */
static const char months[12][4] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                   "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};

/* Days since 1970-01-01 of y-m-d (m 1..12), proleptic Gregorian. */
static int64_t days_from_civil(int64_t y, int m, int d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

static void civil_from_days(int64_t z, int64_t *y, int *m, int *d)
{
    z += 719468;
    int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    int64_t doe = z - era * 146097;
    int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    int64_t mp = (5 * doy + 2) / 153;
    *d = (int)(doy - (153 * mp + 2) / 5 + 1);
    *m = (int)(mp < 10 ? mp + 3 : mp - 9);
    *y = yoe + era * 400 + (*m <= 2);
}

static void two(char *p, int v)
{
    p[0] = (char)('0' + v / 10 % 10);
    p[1] = (char)('0' + v % 10);
}

size_t sh_http_date_format(char *out, int64_t t)
{
    const int64_t max = 253402300799; /* 9999-12-31 23:59:59 */
    if (t < 0)
        t = 0;
    if (t > max)
        t = max;
    int64_t days = t / 86400, secs = t % 86400;
    int64_t y;
    int m, d;
    civil_from_days(days, &y, &m, &d);
    memcpy(out, wdays[days % 7], 3);
    memcpy(out + 3, ", ", 2);
    two(out + 5, d);
    out[7] = ' ';
    memcpy(out + 8, months[m - 1], 3);
    out[11] = ' ';
    two(out + 12, (int)(y / 100));
    two(out + 14, (int)(y % 100));
    out[16] = ' ';
    two(out + 17, (int)(secs / 3600));
    out[19] = ':';
    two(out + 20, (int)(secs / 60 % 60));
    out[22] = ':';
    two(out + 23, (int)(secs % 60));
    memcpy(out + 25, " GMT", 5); /* with the NUL */
    return SH_HTTP_DATE_LEN;
}

/* n digits at p, or -1. */
static int digits(const char *p, const char *end, int n)
{
    if (end - p < n)
        return -1;
    int v = 0;
    for (int i = 0; i < n; i++) {
        if (p[i] < '0' || p[i] > '9')
            return -1;
        v = v * 10 + (p[i] - '0');
    }
    return v;
}

static int month_of(const char *p, const char *end)
{
    if (end - p < 3)
        return -1;
    for (int i = 0; i < 12; i++)
        if (memcmp(p, months[i], 3) == 0)
            return i + 1;
    return -1;
}

/* "HH:MM:SS" */
static int hms(const char *p, const char *end, int *sec)
{
    int h = digits(p, end, 2), mi = digits(p + 3, end, 2), s = digits(p + 6, end, 2);
    if (end - p < 8 || h < 0 || mi < 0 || s < 0 || p[2] != ':' || p[5] != ':' || h > 23 ||
        mi > 59 || s > 60)
        return -1;
    *sec = h * 3600 + mi * 60 + (s == 60 ? 59 : s);
    return 0;
}

static int month_days(int64_t y, int m)
{
    static const int md[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    if (m == 2 && ((y % 4 == 0 && y % 100 != 0) || y % 400 == 0))
        return 29;
    return md[m - 1];
}

int sh_http_date_parse(const char *s, size_t len, int64_t *t)
{
    const char *p = s, *end = s + len;
    int d, m, sec;
    int64_t y;
    /* the weekday: "Sun," (IMF), "Sunday," (RFC 850) or "Sun " (asctime) */
    const char *sp = memchr(p, ' ', len);
    if (sp == NULL || sp - p < 3)
        return SH_EPARSE;
    if (sp[-1] == ',' && sp - p == 4) { /* IMF-fixdate: Sun, 06 Nov 1994 08:49:37 GMT */
        p = sp + 1;
        if (end - p != 24 || p[2] != ' ' || p[6] != ' ' || p[11] != ' ' ||
            memcmp(p + 20, " GMT", 4) != 0)
            return SH_EPARSE;
        d = digits(p, end, 2);
        m = month_of(p + 3, end);
        y = digits(p + 7, end, 4);
        if (hms(p + 12, end, &sec) != 0)
            return SH_EPARSE;
    } else if (sp[-1] == ',') { /* RFC 850: Sunday, 06-Nov-94 08:49:37 GMT */
        p = sp + 1;
        if (end - p != 22 || p[2] != '-' || p[6] != '-' || p[9] != ' ' ||
            memcmp(p + 18, " GMT", 4) != 0)
            return SH_EPARSE;
        d = digits(p, end, 2);
        m = month_of(p + 3, end);
        y = digits(p + 7, end, 2);
        if (y >= 0)
            y += y < 70 ? 2000 : 1900;
        if (hms(p + 10, end, &sec) != 0)
            return SH_EPARSE;
    } else if (sp - p == 3) { /* asctime: Sun Nov  6 08:49:37 1994 */
        p = sp + 1;
        if (end - p != 20 || p[3] != ' ' || p[6] != ' ' || p[15] != ' ')
            return SH_EPARSE;
        m = month_of(p, end);
        d = p[4] == ' ' ? digits(p + 5, end, 1) : digits(p + 4, end, 2);
        y = digits(p + 16, end, 4);
        if (hms(p + 7, end, &sec) != 0)
            return SH_EPARSE;
    } else {
        return SH_EPARSE;
    }
    if (d < 1 || m < 1 || y < 1970 || d > month_days(y, m))
        return SH_EPARSE;
    *t = days_from_civil(y, m, d) * 86400 + sec;
    return 0;
}
