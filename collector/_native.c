/* Parse stage, native: RFC 5424 frames (bytes) -> Record, at C speed.
 *
 * Mirrors collector/parse.py + rfc5424.py + times.py for the common shape of
 * an RFC 5424 message and nothing else: whenever a frame is unusual (no
 * "<PRI>1 ", a time without an offset or not valid, malformed or odd
 * STRUCTURED-DATA, non-ASCII in the timestamp, an event time outside the
 * clock-skew window) it answers None and the pure parser, which stays the
 * specification, reads that frame. Pure: no clock, no I/O, no global state
 * but the Record type and a few constant strings.
 *
 * Decoding: the pure parser decodes the whole frame (UTF-8, invalid bytes ->
 * U+FFFD) and then splits on ASCII characters. UTF-8's decoder never lets an
 * ASCII byte take part in a multi-byte sequence or an invalid run, so
 * decoding each field's bytes on its own gives the same text; escapes in
 * SD values swap two ASCII bytes for one, which keeps that true.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h> /* T_OBJECT_EX, READONLY: the slots of Record */
#include <limits.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static PyObject *record_type;   /* collector.record.Record */
/* Record is a slots dataclass whose __init__ only stores its twelve
 * arguments: when its slots are what that implies (checked at import),
 * records are filled slot by slot here instead of running that __init__
 * (about a third of the cost of a message). */
#define NFIELDS 12
static const char *const field_names[NFIELDS] = {
    "timestamp", "received_at", "host",    "service",           "procid", "msgid",
    "facility",  "level",       "message", "structured_data", "fields", "format"};
static Py_ssize_t slot_offset[NFIELDS];
static int direct_slots;
static PyObject *str_rfc5424;   /* "rfc5424" */
static PyObject *str_empty;     /* "" */
static PyObject *str_truncated; /* "truncated" */

/* Contract: a parsed time more than 5 minutes ahead is distrusted
 * (record.MAX_FUTURE_US). */
#define MAX_FUTURE_US 300000000LL
/* times.MIN_SECONDS / MAX_SECONDS: what RFC 3339 can write. */
#define MIN_SECONDS (-62135596800LL)
#define MAX_SECONDS 253402300799LL

/* --- times: RFC 3339 (times.py _parse_timestamp / _seconds_of) ---------- */

static const int64_t fraction_scale[7] = {0, 100000, 10000, 1000, 100, 10, 1};
static const int days_in_month[13] = {0, 31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};

static int64_t days_from_civil(int64_t y, int64_t m, int64_t d) {
    /* times.days_from_civil (H. Hinnant); y >= 0 here, so C division floors. */
    y -= m <= 2;
    int64_t era = y / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

static int is_leap(int64_t y) { return y % 4 == 0 && (y % 100 != 0 || y % 400 == 0); }

static inline int is_digit(unsigned char c) { return c >= '0' && c <= '9'; }

static int two(const unsigned char *s) {
    return (s[0] - '0') * 10 + (s[1] - '0');
}

/* 1: *out = µs since the epoch. 0: not a time this code reads the same way
 * as times.parse_timestamp with certainty (no offset: it depends on the
 * default timezone; invalid: the pure parser records why) -> decline. */
static int parse_timestamp(const unsigned char *s, Py_ssize_t n, int64_t *out) {
    if (n < 19)
        return 0;
    for (Py_ssize_t i = 0; i < n; i++)
        if (s[i] >= 0x80)
            return 0; /* str.isdecimal() takes other scripts' digits: leave to Python */
    Py_ssize_t end;
    int kind; /* 1: Z, 2: +hh:mm, 3: +hhmm */
    unsigned char last = s[n - 1];
    if (last == 'Z' || last == 'z') {
        kind = 1;
        end = n - 1;
    } else if (n >= 25 && s[n - 3] == ':' && (s[n - 6] == '+' || s[n - 6] == '-')) {
        kind = 2;
        end = n - 6;
    } else if (n >= 24 && (s[n - 5] == '+' || s[n - 5] == '-') && is_digit(s[n - 4]) &&
               is_digit(s[n - 3]) && is_digit(s[n - 2]) && is_digit(s[n - 1])) {
        kind = 3;
        end = n - 5;
    } else {
        return 0; /* no offset: read in the default timezone, by Python */
    }
    int64_t us = 0;
    if (end != 19) {
        if (end < 21 || s[19] != '.')
            return 0;
        for (Py_ssize_t i = 20; i < end; i++)
            if (!is_digit(s[i]))
                return 0;
        Py_ssize_t digits = end - 20;
        if (digits > 6)
            digits = 6; /* microseconds kept, the rest dropped */
        for (Py_ssize_t i = 0; i < digits; i++)
            us = us * 10 + (s[20 + i] - '0');
        us *= fraction_scale[digits];
    }
    if (!(s[4] == '-' && s[7] == '-' && (s[10] == 'T' || s[10] == 't' || s[10] == ' ') &&
          s[13] == ':' && s[16] == ':'))
        return 0;
    static const int pos[14] = {0, 1, 2, 3, 5, 6, 8, 9, 11, 12, 14, 15, 17, 18};
    for (int i = 0; i < 14; i++)
        if (!is_digit(s[pos[i]]))
            return 0;
    int64_t y = two(s) * 100 + two(s + 2);
    int mo = two(s + 5), d = two(s + 8), h = two(s + 11), mi = two(s + 14), sec = two(s + 17);
    /* times.valid_date: RFC 3339 §5.7, a leap second (60) accepted. */
    if (!(y >= 1 && y <= 9999 && mo >= 1 && mo <= 12 && d >= 1 && d <= days_in_month[mo] &&
          (mo != 2 || d < 29 || is_leap(y)) && h < 24 && mi < 60 && sec <= 60))
        return 0;
    int64_t secs = days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + sec;
    if (kind != 1) {
        const unsigned char *off = s + end; /* "+hh:mm" or "+hhmm" */
        const unsigned char *om = s + n - 2;
        if (!(is_digit(off[1]) && is_digit(off[2]) && is_digit(om[0]) && is_digit(om[1])))
            return 0;
        int oh = two(off + 1), omin = two(om);
        if (oh > 23 || omin > 59)
            return 0;
        int64_t o = oh * 3600 + omin * 60;
        secs = off[0] == '-' ? secs + o : secs - o;
        if (secs < MIN_SECONDS || secs > MAX_SECONDS)
            return 0;
    }
    *out = secs * 1000000 + us;
    return 1;
}

/* --- STRUCTURED-DATA (rfc5424.split_structured_data) ---------------------- */

/* A byte of SD-NAME this code accepts: PRINTUSASCII but `=`, SP, `]`, `"`
 * (RFC 5424 §6.3.2), and neither `[` nor `\` (the pure parser reads names
 * with those in its own ways: leave them to it). */
static inline int name_byte(unsigned char c) {
    return c > ' ' && c < 0x7f && c != '=' && c != ']' && c != '"' && c != '[' && c != '\\';
}

static Py_ssize_t read_name(const unsigned char *r, Py_ssize_t pos, Py_ssize_t n) {
    while (pos < n && name_byte(r[pos]))
        pos++;
    return pos;
}

/* Add one value under `name` in `params`: a repeated name keeps every value
 * as a list, in order. Returns -1 with an exception set on failure. */
static int add_param(PyObject *params, PyObject *name, PyObject *value) {
    PyObject *old = PyDict_GetItemWithError(params, name); /* borrowed */
    if (old == NULL) {
        if (PyErr_Occurred())
            return -1;
        return PyDict_SetItem(params, name, value);
    }
    if (PyList_CheckExact(old))
        return PyList_Append(old, value);
    PyObject *list = PyList_New(2);
    if (list == NULL)
        return -1;
    Py_INCREF(old);
    Py_INCREF(value);
    PyList_SET_ITEM(list, 0, old);
    PyList_SET_ITEM(list, 1, value);
    int rc = PyDict_SetItem(params, name, list);
    Py_DECREF(list);
    return rc;
}

/* The params dict of `sd_id` in `out`, created (in order of appearance) if
 * new; a repeated SD-ID merges into the first (as the pure parser does).
 * Borrowed reference, or NULL with an exception set. */
static PyObject *element(PyObject *out, const unsigned char *id, Py_ssize_t len) {
    PyObject *key = PyUnicode_DecodeASCII((const char *)id, len, NULL);
    if (key == NULL)
        return NULL;
    PyObject *params = PyDict_GetItemWithError(out, key);
    if (params == NULL && !PyErr_Occurred()) {
        params = PyDict_New();
        if (params != NULL) {
            int rc = PyDict_SetItem(out, key, params);
            Py_DECREF(params); /* out holds it */
            if (rc < 0)
                params = NULL;
        }
    }
    Py_DECREF(key);
    return params;
}

/* Read SD-ELEMENTs from r[0] == '['. Returns 1 with *sd (new ref) and *msg_at
 * (offset of MSG in r, == n for none); 0 to decline; -1 on error. */
static int parse_sd(const unsigned char *r, Py_ssize_t n, PyObject **sd, Py_ssize_t *msg_at,
                    char *scratch) {
    PyObject *out = PyDict_New();
    if (out == NULL)
        return -1;
    Py_ssize_t pos = 0;
    for (;;) {
        /* SD-ELEMENT = "[" SD-ID *(SP SD-PARAM) "]" */
        pos++;
        Py_ssize_t id_end = read_name(r, pos, n);
        if (id_end == pos || id_end >= n || (r[id_end] != ' ' && r[id_end] != ']'))
            goto decline;
        PyObject *params = element(out, r + pos, id_end - pos);
        if (params == NULL)
            goto error;
        pos = id_end;
        while (r[pos] == ' ') {
            /* SD-PARAM = PARAM-NAME "=" %d34 PARAM-VALUE %d34 */
            pos++;
            Py_ssize_t name_end = read_name(r, pos, n);
            if (name_end == pos || name_end + 1 >= n || r[name_end] != '=' ||
                r[name_end + 1] != '"')
                goto decline;
            PyObject *name = PyUnicode_DecodeASCII((const char *)r + pos, name_end - pos, NULL);
            if (name == NULL)
                goto error;
            /* PARAM-VALUE: `\"`, `\\` and `\]` are escapes (§6.3.3); any
             * other backslash stays; an unescaped `]` is kept as text. */
            pos = name_end + 2;
            Py_ssize_t len = 0;
            while (pos < n && r[pos] != '"') {
                unsigned char c = r[pos];
                if (c == '\\' && pos + 1 < n &&
                    (r[pos + 1] == '"' || r[pos + 1] == '\\' || r[pos + 1] == ']')) {
                    c = r[pos + 1];
                    pos++;
                }
                scratch[len++] = (char)c;
                pos++;
            }
            if (pos >= n) { /* no closing quote */
                Py_DECREF(name);
                goto decline;
            }
            pos++; /* the closing quote */
            PyObject *value = PyUnicode_DecodeUTF8(scratch, len, "replace");
            if (value == NULL) {
                Py_DECREF(name);
                goto error;
            }
            int rc = add_param(params, name, value);
            Py_DECREF(name);
            Py_DECREF(value);
            if (rc < 0)
                goto error;
            if (pos >= n)
                goto decline;
        }
        if (r[pos] != ']')
            goto decline;
        pos++;
        if (pos == n) {
            *msg_at = n;
            break;
        }
        if (r[pos] == ' ') {
            *msg_at = pos + 1;
            break;
        }
        if (r[pos] != '[')
            goto decline;
    }
    *sd = out;
    return 1;
decline:
    Py_DECREF(out);
    return 0;
error:
    Py_DECREF(out);
    return -1;
}

/* --- SYSLOG-MSG (parse.parse_syslog -> rfc5424.parse_rfc5424) ------------- */

static PyObject *decode(const unsigned char *p, Py_ssize_t n) {
    return PyUnicode_DecodeUTF8((const char *)p, n, "replace");
}

static PyObject *decode_interned(const unsigned char *p, Py_ssize_t n) {
    PyObject *s = decode(p, n);
    if (s != NULL)
        PyUnicode_InternInPlace(&s);
    return s;
}

/* A batch's memory of the last value of a header field: the frames of one
 * connection repeat HOSTNAME, APP-NAME, often PROCID and MSGID, so the str
 * made for the last one is reused (same text, one decode less). */
#define MEMO_BYTES 64
typedef struct {
    unsigned char b[MEMO_BYTES];
    Py_ssize_t n;
    PyObject *s;
} Memo;

typedef struct {
    PyObject *received_at; /* one int for the batch */
    Memo memo[4];          /* HOSTNAME, APP-NAME, PROCID, MSGID */
} Batch;

static void batch_clear(Batch *batch) {
    Py_CLEAR(batch->received_at);
    for (int i = 0; i < 4; i++)
        Py_CLEAR(batch->memo[i].s);
}

static PyObject *memo_decode(Memo *m, const unsigned char *p, Py_ssize_t n, int intern) {
    if (m != NULL && m->s != NULL && m->n == n && memcmp(m->b, p, (size_t)n) == 0) {
        Py_INCREF(m->s);
        return m->s;
    }
    PyObject *s = intern ? decode_interned(p, n) : decode(p, n);
    if (m != NULL && s != NULL && n <= MEMO_BYTES) {
        Py_INCREF(s);
        Py_XSETREF(m->s, s);
        memcpy(m->b, p, (size_t)n);
        m->n = n;
    }
    return s;
}

/* --- RFC 3164 (parse.parse_syslog_pure -> rfc3164.parse_rfc3164) ---------- */
/* The common device shape only: `<PRI>Mmm dd [yyyy] hh:mm:ss[.ffffff]
 * HOSTNAME TAG[PID]: MSG`, read with rfc3164.py's rules. Declined (to
 * Python): a default timezone that is not a fixed offset (DST rules), a zone
 * word after the time, an invalid date, a receipt time outside 1900..9000, a
 * hostless first token holding `:` (`sshd[1]:`, IPv6), a TAG holding `=`
 * (key=value bodies), a Cisco `%FAC-SEV-MNEMONIC:`, non-ASCII before MSG,
 * and every other header shape (sequence numbers, `*`, uptimes, RFC 3339). */

#define NO_ZONE INT64_MIN
static PyObject *str_rfc3164; /* "rfc3164" */
static PyObject *build_record(PyObject **args);

static inline int is_alpha(unsigned char c) { return (c | 0x20) >= 'a' && (c | 0x20) <= 'z'; }
static inline int is_alnum(unsigned char c) { return is_alpha(c) || is_digit(c); }
/* rfc3164._NAME_CHAR for ASCII: letters, digits, `-`, `.`, `_` */
static inline int host_char(unsigned char c) {
    return is_alnum(c) || c == '-' || c == '.' || c == '_';
}

/* rfc3164._MONTHS: "Jan", "JAN" or "jan" -> 1..12; 0 for anything else. */
static int month_of(const unsigned char *p) {
    static const char names[12][4] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                      "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
    for (int i = 0; i < 12; i++) {
        const char *m = names[i];
        if (p[0] == m[0] && p[1] == m[1] && p[2] == m[2])
            return i + 1;
        if (p[0] == m[0] && p[1] == (m[1] & ~0x20) && p[2] == (m[2] & ~0x20))
            return i + 1;
        if (p[0] == (m[0] | 0x20) && p[1] == m[1] && p[2] == m[2])
            return i + 1;
    }
    return 0;
}

static int valid_date(int64_t y, int mo, int d, int h, int mi, int s) {
    return y >= 1 && y <= 9999 && mo >= 1 && mo <= 12 && d >= 1 && d <= days_in_month[mo] &&
           (mo != 2 || d < 29 || is_leap(y)) && h < 24 && mi < 60 && s <= 60;
}

/* The civil year of a day count since 1970-01-01 (H. Hinnant), days >= 0. */
static int64_t year_of_days(int64_t z) {
    z += 719468;
    int64_t era = z / 146097;
    int64_t doe = z - era * 146097;
    int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    int64_t mp = (5 * doy + 2) / 153;
    return yoe + era * 400 + (mp >= 10);
}

static PyObject *parse_3164(const unsigned char *b, Py_ssize_t n, Py_ssize_t q, int pri,
                            int64_t received_at, PyObject *sender, int64_t ttl_us, int truncated,
                            Batch *batch, int64_t zone) {
    if (zone == NO_ZONE || n - q < 3)
        Py_RETURN_NONE;
    /* TIMESTAMP: ([A-Za-z]{3}) {1,2}(\d{1,2})(?: (\d{4}))? (\d\d):(\d\d):(\d\d)(?:\.(\d{1,6}))? */
    int mo = month_of(b + q);
    if (mo == 0)
        Py_RETURN_NONE;
    q += 3;
    if (q >= n || b[q] != ' ')
        Py_RETURN_NONE;
    q++;
    if (q < n && b[q] == ' ')
        q++;
    if (q >= n || !is_digit(b[q]))
        Py_RETURN_NONE;
    int d = b[q++] - '0';
    if (q < n && is_digit(b[q]))
        d = d * 10 + (b[q++] - '0');
    int64_t year = -1;
    if (q + 5 < n && b[q] == ' ' && is_digit(b[q + 1]) && is_digit(b[q + 2]) &&
        is_digit(b[q + 3]) && is_digit(b[q + 4]) && b[q + 5] == ' ') {
        year = two(b + q + 1) * 100 + two(b + q + 3);
        q += 5;
    }
    if (!(q + 9 <= n && b[q] == ' ' && is_digit(b[q + 1]) && is_digit(b[q + 2]) &&
          b[q + 3] == ':' && is_digit(b[q + 4]) && is_digit(b[q + 5]) && b[q + 6] == ':' &&
          is_digit(b[q + 7]) && is_digit(b[q + 8])))
        Py_RETURN_NONE;
    int h = two(b + q + 1), mi = two(b + q + 4), s = two(b + q + 7);
    q += 9;
    int64_t frac = 0;
    if (q < n && b[q] == '.') {
        Py_ssize_t k = 0;
        while (q + 1 + k < n && k < 7 && is_digit(b[q + 1 + k]))
            k++;
        if (k == 0 || k == 7)
            Py_RETURN_NONE; /* no digit, or more than 6: another shape */
        for (Py_ssize_t i = 0; i < k; i++)
            frac = frac * 10 + (b[q + 1 + i] - '0');
        frac *= fraction_scale[k];
        q += 1 + k;
    }
    if (q < n && b[q] == ' ') { /* (?: ([A-Z]{1,5})(?=:))?: a zone word */
        Py_ssize_t k = 0;
        while (q + 1 + k < n && k < 6 && b[q + 1 + k] >= 'A' && b[q + 1 + k] <= 'Z')
            k++;
        if (k >= 1 && k <= 5 && q + 1 + k < n && b[q + 1 + k] == ':')
            Py_RETURN_NONE;
    }
    if (q < n && b[q] == ':') /* :?(?: |\Z) */
        q++;
    if (q < n) {
        if (b[q] != ' ')
            Py_RETURN_NONE;
        q++;
    }
    /* rfc3164._month_day_time in a fixed-offset zone: local_to_seconds is
     * the civil time less the offset; no year: the nearest to the receipt. */
    int64_t secs;
    if (year >= 0) {
        if (!valid_date(year, mo, d, h, mi, s))
            Py_RETURN_NONE; /* invalid_timestamp: said by Python */
        secs = days_from_civil(year, mo, d) * 86400 + h * 3600 + mi * 60 + s - zone;
    } else {
        int64_t rs = received_at / 1000000; /* received_at > 0 here: floors */
        int64_t local = rs + zone;
        if (received_at < 0 || local < 0)
            Py_RETURN_NONE;
        int64_t ry = year_of_days(local / 86400);
        if (ry < 1900 || ry > 9000)
            Py_RETURN_NONE;
        static const int order[9] = {0, -1, 1, -2, 2, -3, 3, -4, 4};
        int found = 0;
        int64_t best = 0;
        for (int i = 0; i < 9; i++) {
            int64_t y = ry + order[i];
            if (!valid_date(y, mo, d, h, mi, s))
                continue;
            int64_t c = days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + s - zone;
            int64_t dc = c > rs ? c - rs : rs - c, db = best > rs ? best - rs : rs - best;
            if (!found || dc < db) {
                best = c;
                found = 1;
            }
        }
        if (!found)
            Py_RETURN_NONE;
        secs = best;
    }
    int64_t timestamp = secs * 1000000 + frac;
    if (timestamp < received_at - ttl_us || timestamp > received_at + MAX_FUTURE_US)
        Py_RETURN_NONE; /* clock skew: restamped by Python */

    /* [HOSTNAME SP]: the first token when it is a name (letters, digits, -._,
     * starting and ending with a letter or digit) followed by SP or the end. */
    Py_ssize_t t_end = q;
    while (t_end < n && b[t_end] != ' ') {
        if (b[t_end] >= 0x80 || b[t_end] == ':')
            Py_RETURN_NONE; /* non-ASCII, or a `:` (a hostless TAG, IPv6) */
        t_end++;
    }
    Py_ssize_t host_at = -1, host_len = 0;
    if (t_end > q && is_alnum(b[q]) && is_alnum(b[t_end - 1])) {
        Py_ssize_t r = q;
        while (r < t_end && host_char(b[r]))
            r++;
        if (r == t_end) {
            host_at = q;
            host_len = t_end - q;
            q = t_end < n ? t_end + 1 : t_end;
        }
    }
    /* [TAG][[PID]][:][SP/TAB]: TAG up to SP, TAB, `[` or `:`. */
    if (q < n && b[q] == '%')
        Py_RETURN_NONE; /* Cisco: left to Python */
    Py_ssize_t tag_at = q, tag_len = 0;
    if (!(q < n && b[q] == '{')) {
        while (q < n && b[q] != ' ' && b[q] != '\t' && b[q] != '[' && b[q] != ':') {
            if (b[q] >= 0x80 || b[q] == '=')
                Py_RETURN_NONE; /* non-ASCII; `=`: maybe key=value pairs */
            q++;
        }
        tag_len = q - tag_at;
    }
    Py_ssize_t pid_at = 0, pid_len = 0;
    if (q < n && b[q] == '[') {
        Py_ssize_t k = q + 1;
        while (k < n && k < q + 1 + 128 && b[k] != ']') {
            if (b[k] >= 0x80)
                Py_RETURN_NONE; /* 128 characters are not 128 bytes */
            k++;
        }
        if (k < n && b[k] == ']') {
            pid_at = q + 1;
            pid_len = k - pid_at;
            q = k + 1;
        }
    }
    if (q < n && b[q] == ':')
        q++;
    if (q < n && (b[q] == ' ' || b[q] == '\t'))
        q++;
    if (tag_len == 0 && q < n && b[q] == '%')
        Py_RETURN_NONE; /* a Cisco mnemonic may name the service: Python */

    PyObject *args[NFIELDS] = {NULL};
    if (batch != NULL) {
        Py_INCREF(batch->received_at);
        args[1] = batch->received_at;
    } else {
        args[1] = PyLong_FromLongLong(received_at);
    }
    args[0] = PyLong_FromLongLong(timestamp);
    if (host_at < 0) {
        Py_INCREF(sender);
        args[2] = sender;
    } else {
        args[2] = memo_decode(batch ? &batch->memo[0] : NULL, b + host_at, host_len, 1);
    }
    if (tag_len == 0) {
        Py_INCREF(Py_None);
        args[3] = Py_None;
    } else {
        args[3] = memo_decode(batch ? &batch->memo[1] : NULL, b + tag_at, tag_len, 1);
    }
    if (pid_len == 0) {
        Py_INCREF(Py_None);
        args[4] = Py_None;
    } else {
        args[4] = memo_decode(batch ? &batch->memo[2] : NULL, b + pid_at, pid_len, 0);
    }
    Py_INCREF(Py_None);
    args[5] = Py_None; /* MSGID */
    args[6] = PyLong_FromLong(pri >> 3);
    args[7] = PyLong_FromLong(pri & 7);
    if (q >= n) {
        Py_INCREF(str_empty);
        args[8] = str_empty;
    } else {
        args[8] = decode(b + q, n - q);
    }
    Py_INCREF(Py_None);
    args[9] = Py_None;
    if (truncated) {
        args[10] = PyDict_New();
        if (args[10] != NULL && PyDict_SetItem(args[10], str_truncated, Py_True) < 0)
            Py_CLEAR(args[10]);
    } else {
        Py_INCREF(Py_None);
        args[10] = Py_None;
    }
    Py_INCREF(str_rfc3164);
    args[11] = str_rfc3164;
    return build_record(args);
}

/* One frame -> a new Record, Py_None (new ref: decline) or NULL (error).
 * `batch` (or NULL) carries what frames of one batch share; `zone` is
 * parsing.default_timezone's fixed offset in seconds, or NO_ZONE. */
static PyObject *parse_frame(const unsigned char *b, Py_ssize_t n, int64_t received_at,
                             PyObject *sender, int64_t ttl_us, int truncated, char *scratch,
                             Batch *batch, int64_t zone) {
    /* PRI = "<" PRIVAL ">", PRIVAL 0..191 in 1-3 digits; then VERSION "1" SP */
    if (n < 4 || b[0] != '<')
        Py_RETURN_NONE;
    Py_ssize_t gt = 1;
    while (gt < 5 && gt < n && b[gt] != '>')
        gt++;
    if (gt == 1 || gt >= 5 || gt >= n)
        Py_RETURN_NONE;
    int pri = 0;
    for (Py_ssize_t i = 1; i < gt; i++) {
        if (!is_digit(b[i]))
            Py_RETURN_NONE;
        pri = pri * 10 + (b[i] - '0');
    }
    if (pri > 191)
        Py_RETURN_NONE;
    if (gt + 1 < n && is_alpha(b[gt + 1])) /* "Mmm": RFC 3164's TIMESTAMP */
        return parse_3164(b, n, gt + 1, pri, received_at, sender, ttl_us, truncated, batch, zone);
    if (gt + 2 >= n || b[gt + 1] != '1' || b[gt + 2] != ' ')
        Py_RETURN_NONE;
    /* HEADER: TIMESTAMP SP HOSTNAME SP APP-NAME SP PROCID SP MSGID, each
     * non-empty (two spaces in a row: not this grammar). */
    const unsigned char *f[5];
    Py_ssize_t flen[5];
    Py_ssize_t pos = gt + 3;
    const unsigned char *rest = NULL;
    Py_ssize_t rest_len = 0;
    for (int i = 0; i < 5; i++) {
        const unsigned char *sp = memchr(b + pos, ' ', (size_t)(n - pos));
        Py_ssize_t end = sp ? sp - b : n;
        if (end == pos)
            Py_RETURN_NONE;
        if (sp == NULL && i < 4)
            Py_RETURN_NONE; /* fewer than six header parts */
        f[i] = b + pos;
        flen[i] = end - pos;
        pos = end + 1;
        if (i == 4) {
            if (sp == NULL) {
                rest = (const unsigned char *)"-"; /* SD missing altogether */
                rest_len = 1;
            } else {
                rest = b + pos;
                rest_len = n - pos;
            }
        }
    }
    int64_t timestamp;
    if (flen[0] == 1 && f[0][0] == '-')
        timestamp = received_at;
    else if (!parse_timestamp(f[0], flen[0], &timestamp))
        Py_RETURN_NONE;
    /* finish_record's clock-skew rule: restamping is left to Python. */
    if (timestamp < received_at - ttl_us || timestamp > received_at + MAX_FUTURE_US)
        Py_RETURN_NONE;

    const unsigned char *msg;
    Py_ssize_t msg_len;
    PyObject *sd = NULL;
    if (rest_len > 0 && rest[0] == '-') {
        if (rest_len == 1) {
            msg = rest + 1;
            msg_len = 0;
        } else if (rest[1] == ' ') {
            msg = rest + 2;
            msg_len = rest_len - 2;
        } else {
            msg = rest; /* "-text": SD left out, MSG starts with "-" */
            msg_len = rest_len;
        }
    } else if (rest_len > 0 && rest[0] == '[') {
        /* The pure parser hides escapes with NUL and SOH and reads text
         * holding them another way: leave such frames to it. */
        if (memchr(rest, 0, (size_t)rest_len) || memchr(rest, 1, (size_t)rest_len))
            Py_RETURN_NONE;
        Py_ssize_t msg_at;
        int found = parse_sd(rest, rest_len, &sd, &msg_at, scratch);
        if (found < 0)
            return NULL;
        if (found == 0)
            Py_RETURN_NONE; /* malformed SD: Python keeps it all as MSG */
        msg = rest + msg_at;
        msg_len = rest_len - msg_at;
    } else {
        msg = rest; /* SD omitted: everything after MSGID is MSG */
        msg_len = rest_len;
    }
    if (msg_len > 0 && msg[0] == ' ') {
        msg++; /* one SP after SD is framing (rsyslog's protocol-23 format) */
        msg_len--;
    }
    if (msg_len >= 3 && msg[0] == 0xEF && msg[1] == 0xBB && msg[2] == 0xBF) {
        msg += 3; /* MSG-UTF8's BOM (§6.4) */
        msg_len -= 3;
    }

    PyObject *args[NFIELDS] = {NULL};
    int nil_host = flen[1] == 1 && f[1][0] == '-';
    if (batch != NULL) {
        Py_INCREF(batch->received_at);
        args[1] = batch->received_at;
    } else {
        args[1] = PyLong_FromLongLong(received_at);
    }
    if (timestamp == received_at && args[1] != NULL) {
        Py_INCREF(args[1]);
        args[0] = args[1];
    } else {
        args[0] = PyLong_FromLongLong(timestamp);
    }
    if (nil_host) {
        Py_INCREF(sender);
        args[2] = sender;
    } else {
        args[2] = memo_decode(batch ? &batch->memo[0] : NULL, f[1], flen[1], 1);
    }
    for (int i = 2; i < 5; i++) {
        if (flen[i] == 1 && f[i][0] == '-') {
            Py_INCREF(Py_None);
            args[i + 1] = Py_None;
        } else {
            /* APP-NAME interned (as the pure parser does), PROCID, MSGID not */
            args[i + 1] = memo_decode(batch ? &batch->memo[i - 1] : NULL, f[i], flen[i], i == 2);
        }
    }
    args[6] = PyLong_FromLong(pri >> 3);
    args[7] = PyLong_FromLong(pri & 7);
    if (msg_len == 0) {
        Py_INCREF(str_empty);
        args[8] = str_empty;
    } else {
        args[8] = decode(msg, msg_len);
    }
    if (sd == NULL) {
        Py_INCREF(Py_None);
        sd = Py_None;
    }
    args[9] = sd;
    if (truncated) {
        args[10] = PyDict_New();
        if (args[10] != NULL && PyDict_SetItem(args[10], str_truncated, Py_True) < 0)
            Py_CLEAR(args[10]);
    } else {
        Py_INCREF(Py_None);
        args[10] = Py_None;
    }
    Py_INCREF(str_rfc5424);
    args[11] = str_rfc5424;
    return build_record(args);
}

/* A Record of args[0..NFIELDS) (each a new reference or NULL after an
 * error, all consumed); NULL with an exception set on failure. */
static PyObject *build_record(PyObject **args) {
    PyObject *rec = NULL;
    for (int i = 0; i < NFIELDS; i++)
        if (args[i] == NULL)
            goto done;
    if (direct_slots) {
        PyTypeObject *t = (PyTypeObject *)record_type;
        rec = t->tp_alloc(t, 0);
        if (rec != NULL) {
            for (int i = 0; i < NFIELDS; i++) {
                *(PyObject **)((char *)rec + slot_offset[i]) = args[i]; /* steals */
                args[i] = NULL;
            }
        }
    } else {
        rec = PyObject_Vectorcall(record_type, args, NFIELDS, NULL);
    }
done:
    for (int i = 0; i < NFIELDS; i++)
        Py_XDECREF(args[i]);
    return rec;
}

/* received_at and ttl_us from Python ints. 1: read; 0: outside what this
 * code handles (decline every frame: Python applies its own rules); -1: error. */
static int read_times(PyObject *received_at_o, PyObject *ttl_o, int64_t *received_at,
                      int64_t *ttl_us) {
    /* Times are within ±2.6e17 µs; these bounds keep the window's sums in int64. */
    const long long bound = 1000000000000000000LL;
    int overflow = 0;
    long long now = PyLong_AsLongLongAndOverflow(received_at_o, &overflow);
    if (now == -1 && PyErr_Occurred())
        return -1;
    if (overflow || now > bound || now < -bound)
        return 0;
    long long ttl = PyLong_AsLongLongAndOverflow(ttl_o, &overflow);
    if (ttl == -1 && PyErr_Occurred())
        return -1;
    if (overflow || ttl > 4 * bound || ttl < 0)
        return 0;
    *received_at = now;
    *ttl_us = ttl;
    return 1;
}

/* The optional `zone` argument: the default timezone's fixed UTC offset in
 * seconds (None: not a fixed offset; RFC 3164 times then go to Python). */
static int read_zone(PyObject *o, int64_t *zone) {
    *zone = NO_ZONE;
    if (o == NULL || o == Py_None)
        return 0;
    int overflow = 0;
    long long v = PyLong_AsLongLongAndOverflow(o, &overflow);
    if (v == -1 && PyErr_Occurred())
        return -1;
    if (!overflow && v > -86400 && v < 86400)
        *zone = v; /* (datetime.timezone's range) */
    return 0;
}

static PyObject *native_parse(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    (void)self;
    if (nargs != 5 && nargs != 6) {
        PyErr_SetString(PyExc_TypeError, "parse(data, received_at, sender, ttl_us, truncated"
                                         "[, zone]) takes 5 or 6 arguments");
        return NULL;
    }
    int64_t zone;
    if (read_zone(nargs == 6 ? args[5] : NULL, &zone) < 0)
        return NULL;
    if (!PyBytes_Check(args[0])) {
        PyErr_SetString(PyExc_TypeError, "data must be bytes");
        return NULL;
    }
    int64_t received_at, ttl_us;
    int usable = read_times(args[1], args[3], &received_at, &ttl_us);
    if (usable < 0)
        return NULL;
    if (usable == 0)
        Py_RETURN_NONE;
    int truncated = PyObject_IsTrue(args[4]);
    if (truncated < 0)
        return NULL;
    Py_ssize_t n = PyBytes_GET_SIZE(args[0]);
    char *scratch = PyMem_Malloc((size_t)n + 1);
    if (scratch == NULL)
        return PyErr_NoMemory();
    PyObject *rec = parse_frame((const unsigned char *)PyBytes_AS_STRING(args[0]), n, received_at,
                                args[2], ttl_us, truncated, scratch, NULL, zone);
    PyMem_Free(scratch);
    return rec;
}

/* parse_frames' work; *declined counts the Nones and, when it is 0, *cut
 * the frames flagged truncated. */
static PyObject *frames_to_records(PyObject *const *args, Py_ssize_t nargs, Py_ssize_t *declined,
                                   Py_ssize_t *cut) {
    *declined = *cut = 0;
    int64_t zone;
    if (read_zone(nargs == 5 ? args[4] : NULL, &zone) < 0)
        return NULL;
    PyObject *frames = args[0];
    if (!PyList_Check(frames)) {
        PyErr_SetString(PyExc_TypeError, "frames must be a list of (bytes, bool)");
        return NULL;
    }
    int64_t received_at, ttl_us;
    int usable = read_times(args[1], args[3], &received_at, &ttl_us);
    if (usable < 0)
        return NULL;
    Py_ssize_t count = PyList_GET_SIZE(frames);
    PyObject *out = PyList_New(count);
    if (out == NULL)
        return NULL;
    if (usable == 0) {
        for (Py_ssize_t i = 0; i < count; i++) {
            Py_INCREF(Py_None);
            PyList_SET_ITEM(out, i, Py_None);
        }
        *declined = count; /* (*cut is only told when nothing is declined) */
        return out;
    }
    Py_ssize_t cap = 0;
    char *scratch = NULL;
    Batch batch;
    memset(&batch, 0, sizeof batch);
    batch.received_at = PyLong_FromLongLong(received_at);
    if (batch.received_at == NULL)
        goto error;
    for (Py_ssize_t i = 0; i < count; i++) {
        PyObject *frame = PyList_GET_ITEM(frames, i);
        if (!PyTuple_Check(frame) || PyTuple_GET_SIZE(frame) != 2 ||
            !PyBytes_Check(PyTuple_GET_ITEM(frame, 0))) {
            PyErr_SetString(PyExc_TypeError, "frames must be a list of (bytes, bool)");
            goto error;
        }
        PyObject *data = PyTuple_GET_ITEM(frame, 0);
        int truncated = PyObject_IsTrue(PyTuple_GET_ITEM(frame, 1));
        if (truncated < 0)
            goto error;
        Py_ssize_t n = PyBytes_GET_SIZE(data);
        if (n + 1 > cap) {
            PyMem_Free(scratch);
            cap = n + 1 > 4096 ? n + 1 : 4096;
            scratch = PyMem_Malloc((size_t)cap);
            if (scratch == NULL) {
                PyErr_NoMemory();
                goto error;
            }
        }
        PyObject *rec = parse_frame((const unsigned char *)PyBytes_AS_STRING(data), n, received_at,
                                    args[2], ttl_us, truncated, scratch, &batch, zone);
        if (rec == NULL)
            goto error;
        PyList_SET_ITEM(out, i, rec);
        *declined += rec == Py_None;
        *cut += truncated;
    }
    PyMem_Free(scratch);
    batch_clear(&batch);
    return out;
error:
    PyMem_Free(scratch);
    batch_clear(&batch);
    Py_DECREF(out);
    return NULL;
}

static PyObject *native_parse_frames(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 4 && nargs != 5) {
        PyErr_SetString(PyExc_TypeError,
                        "parse_frames(frames, received_at, sender, ttl_us[, zone]) takes 4 or 5 "
                        "arguments");
        return NULL;
    }
    Py_ssize_t declined, cut;
    return frames_to_records(args, nargs, &declined, &cut);
}

static PyObject *native_parse_batch(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 4 && nargs != 5) {
        PyErr_SetString(PyExc_TypeError,
                        "parse_batch(frames, received_at, sender, ttl_us[, zone]) takes 4 or 5 "
                        "arguments");
        return NULL;
    }
    Py_ssize_t declined, cut;
    PyObject *recs = frames_to_records(args, nargs, &declined, &cut);
    if (recs == NULL)
        return NULL;
    return Py_BuildValue("(Nnn)", recs, declined, cut);
}

/* direct_slots = 1 when Record is a type whose twelve fields, in order, are
 * writable object slots and nothing runs after __init__ stores them; else
 * records are made by calling Record (same result, slower). */
static int find_slots(void) {
    direct_slots = 0;
    if (!PyType_Check(record_type))
        return 0;
    PyTypeObject *t = (PyTypeObject *)record_type;
    if (t->tp_alloc == NULL || PyObject_HasAttrString(record_type, "__post_init__"))
        return 0;
    PyObject *fields = PyObject_GetAttrString(record_type, "__dataclass_fields__");
    if (fields == NULL) {
        PyErr_Clear();
        return 0;
    }
    int ok = PyDict_Check(fields) && PyDict_GET_SIZE(fields) == NFIELDS;
    Py_ssize_t pos = 0;
    PyObject *key, *value;
    for (int i = 0; ok && PyDict_Next(fields, &pos, &key, &value); i++)
        ok = PyUnicode_Check(key) && PyUnicode_CompareWithASCIIString(key, field_names[i]) == 0;
    Py_DECREF(fields);
    for (int i = 0; ok && i < NFIELDS; i++) {
        PyObject *d = PyDict_GetItemString(t->tp_dict, field_names[i]); /* borrowed */
        ok = d != NULL && Py_IS_TYPE(d, &PyMemberDescr_Type);
        if (ok) {
            PyMemberDef *m = ((PyMemberDescrObject *)d)->d_member;
            ok = m->type == T_OBJECT_EX && !(m->flags & READONLY);
            slot_offset[i] = m->offset;
        }
    }
    direct_slots = ok;
    return 0;
}

static PyObject *native_direct_slots(PyObject *self, PyObject *unused) {
    (void)self;
    (void)unused;
    return PyBool_FromLong(direct_slots);
}

/* --- framing (framing.StreamFramer, the specification) ------------------- */
/* A TCP byte stream -> frames, over whole read buffers, with the same state
 * kept across reads as the Python framer keeps: every step below is a line
 * of framing.py (its names in comments), so the two give the same frames,
 * flags and drops for any split of any stream (tests/test_native.py). */

enum { F_IDLE, F_COUNTED, F_DELIMITED, F_PREFIX, F_PENDING };
#define PREFIX_WINDOW 20 /* framing._PREFIX_WINDOW */
#define PREFIX_CAP 32    /* a held prefix is at most PREFIX_WINDOW bytes */
#define HELD_KEEP 65536  /* a frame buffer larger than this is freed between frames */

typedef struct {
    PyObject_HEAD
    Py_ssize_t max_bytes;
    unsigned long long max_count;
    int counting;  /* octet_counting */
    int nul;       /* nul_delimits */
    int nul_mode;  /* this connection ends its frames with NUL */
    int state;
    int discard;   /* the rest of this frame is thrown away */
    int joinable;  /* F_DELIMITED: the held frame may take continuation lines */
    unsigned long long remaining; /* F_COUNTED: bytes still to come */
    unsigned char *held;          /* the frame so far, at most max_bytes */
    Py_ssize_t held_len, held_cap;
    unsigned char prefix[PREFIX_CAP]; /* F_PREFIX/F_PENDING: a line's first bytes */
    Py_ssize_t prefix_len;
    PyObject *drop; /* drop(reason, n) */
} Framer;

static PyObject *str_bad_length, *str_incomplete_frame;

static inline int is_strip(unsigned char c) { return c == '\n' || c == '\r' || c == 0; }
static inline int nonzero_digit(unsigned char c) { return c > '0' && c <= '9'; }

static Py_ssize_t rstrip_len(const unsigned char *p, Py_ssize_t n) {
    while (n > 0 && is_strip(p[n - 1]))
        n--;
    return n;
}

static int all_digits(const unsigned char *p, Py_ssize_t n) {
    if (n <= 0)
        return 0; /* b"".isdigit() is False */
    for (Py_ssize_t i = 0; i < n; i++)
        if (!is_digit(p[i]))
            return 0;
    return 1;
}

/* data.find(byte, start, stop) with stop clamped; -1 when absent. */
static inline Py_ssize_t find_byte(const unsigned char *d, Py_ssize_t start, Py_ssize_t stop,
                                   unsigned char c) {
    if (start >= stop)
        return -1;
    const unsigned char *p = memchr(d + start, c, (size_t)(stop - start));
    return p ? p - d : -1;
}

static int emit(PyObject *out, const unsigned char *p, Py_ssize_t n, int cut) {
    PyObject *b = PyBytes_FromStringAndSize((const char *)p, n);
    if (b == NULL)
        return -1;
    PyObject *t = PyTuple_New(2);
    if (t == NULL) {
        Py_DECREF(b);
        return -1;
    }
    PyObject *flag = cut ? Py_True : Py_False;
    Py_INCREF(flag);
    PyTuple_SET_ITEM(t, 0, b);
    PyTuple_SET_ITEM(t, 1, flag);
    int rc = PyList_Append(out, t);
    Py_DECREF(t);
    return rc;
}

static int call_drop(Framer *f, PyObject *reason) {
    if (f->drop == NULL)
        return 0;
    PyObject *r = PyObject_CallFunction(f->drop, "Oi", reason, 1);
    if (r == NULL)
        return -1;
    Py_DECREF(r);
    return 0;
}

static int set_prefix(Framer *f, const unsigned char *p, Py_ssize_t n) {
    if (n > PREFIX_CAP) { /* cannot happen (see framing.py): fail loudly, not overflow */
        PyErr_SetString(PyExc_RuntimeError, "framer: prefix longer than its window");
        return -1;
    }
    memcpy(f->prefix, p, (size_t)n);
    f->prefix_len = n;
    return 0;
}

/* _reset */
static void f_reset(Framer *f) {
    f->state = F_IDLE;
    f->held_len = 0;
    if (f->held_cap > HELD_KEEP) {
        PyMem_Free(f->held);
        f->held = NULL;
        f->held_cap = 0;
    }
    f->discard = 0;
    f->joinable = 0;
    f->remaining = 0;
    f->prefix_len = 0;
}

static int hold(Framer *f, const unsigned char *p, Py_ssize_t n) {
    if (f->held_len + n > f->held_cap) {
        Py_ssize_t want = f->held_cap ? f->held_cap : 256;
        while (want < f->held_len + n)
            want *= 2;
        if (want > f->max_bytes)
            want = f->max_bytes;
        unsigned char *h = PyMem_Realloc(f->held, (size_t)want);
        if (h == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        f->held = h;
        f->held_cap = want;
    }
    memcpy(f->held + f->held_len, p, (size_t)n);
    f->held_len += n;
    return 0;
}

/* _absorb: add part of the current frame, holding at most max_bytes of it. */
static int absorb(Framer *f, const unsigned char *seg, Py_ssize_t n, PyObject *out) {
    if (f->discard || n == 0)
        return 0;
    Py_ssize_t room = f->max_bytes - f->held_len;
    if (n <= room)
        return hold(f, seg, n);
    if (room > 0) {
        if (hold(f, seg, room) < 0)
            return -1;
        seg += room;
        n -= room;
    }
    /* Beyond the cap: only a tail of strippable bytes keeps the frame whole. */
    for (Py_ssize_t i = 0; i < n; i++) {
        if (!is_strip(seg[i])) {
            if (emit(out, f->held, rstrip_len(f->held, f->held_len), 1) < 0)
                return -1;
            f->held_len = 0;
            f->discard = 1;
            return 0;
        }
    }
    return 0;
}

/* _finish: the current frame ended. */
static int finish(Framer *f, PyObject *out) {
    if (!f->discard) {
        Py_ssize_t n = rstrip_len(f->held, f->held_len);
        if (n > 0 && emit(out, f->held, n, 0) < 0)
            return -1;
    }
    f_reset(f);
    return 0;
}

/* _starts_frame: 1 yes, 0 no, -1 too few bytes yet to tell (None). */
static int starts_frame(const unsigned char *d, Py_ssize_t n, Py_ssize_t i) {
    if (i >= n)
        return -1;
    unsigned char c = d[i];
    if (c == '<')
        return 1;
    if (!nonzero_digit(c))
        return 0;
    Py_ssize_t sp = find_byte(d, i + 1, i + PREFIX_WINDOW < n ? i + PREFIX_WINDOW : n, ' ');
    if (sp < 0)
        return n - i < PREFIX_WINDOW && all_digits(d + i, n - i) ? -1 : 0;
    if (!all_digits(d + i, sp - i))
        return 0;
    return sp + 1 >= n ? -1 : d[sp + 1] == '<';
}

/* _find_delim */
static Py_ssize_t find_delim(Framer *f, const unsigned char *d, Py_ssize_t n, Py_ssize_t start) {
    if (f->nul_mode)
        return find_byte(d, start, n, 0);
    Py_ssize_t lf = find_byte(d, start, n, '\n');
    if (!f->nul)
        return lf;
    Py_ssize_t nul = find_byte(d, start, lf >= 0 ? lf : n, 0);
    return nul >= 0 ? nul : lf;
}

/* _go_on: a frame begun in an earlier read goes on. Returns where the next
 * frame starts, -1 when all was taken, -2 on error. */
static Py_ssize_t go_on(Framer *f, const unsigned char *d, Py_ssize_t n, PyObject *out) {
    if (f->state == F_PENDING) {
        int new = starts_frame(d, n, 0);
        if (new < 0)
            return set_prefix(f, d, n) < 0 ? -2 : -1;
        if (new)
            return finish(f, out) < 0 ? -2 : 0;
        if (absorb(f, (const unsigned char *)"\n", 1, out) < 0)
            return -2;
        f->state = F_DELIMITED;
    }
    Py_ssize_t q = 0;
    for (;;) {
        Py_ssize_t end = find_delim(f, d, n, q);
        if (end < 0)
            return absorb(f, d + q, n - q, out) < 0 ? -2 : -1;
        if (absorb(f, d + q, end - q, out) < 0)
            return -2;
        if (d[end] == 0) {
            f->nul_mode = 1;
        } else if (f->joinable) {
            Py_ssize_t nxt = end + 1;
            int new = starts_frame(d, n, nxt);
            if (new < 0) {
                f->state = F_PENDING;
                return set_prefix(f, d + nxt, n - nxt) < 0 ? -2 : -1;
            }
            if (!new) {
                if (absorb(f, (const unsigned char *)"\n", 1, out) < 0)
                    return -2;
                q = nxt;
                continue;
            }
        }
        return finish(f, out) < 0 ? -2 : end + 1;
    }
}

/* A complete frame d[0:n] found in one read: stripped, cut to max_bytes. */
static inline int emit_whole(Framer *f, PyObject *out, const unsigned char *p, Py_ssize_t n) {
    Py_ssize_t len = rstrip_len(p, n);
    if (len > f->max_bytes)
        return emit(out, p, rstrip_len(p, f->max_bytes), 1);
    if (len > 0)
        return emit(out, p, len, 0);
    return 0;
}

/* _scan: frames from d[pos:], starting at a frame boundary; whatever is left
 * becomes the held state. 0, or -1 on error. */
static int scan(Framer *f, const unsigned char *d, Py_ssize_t n, Py_ssize_t pos, PyObject *out) {
    int counting = f->counting;
    int nul_mode = f->nul_mode;
    int joining = counting && !nul_mode;
    Py_ssize_t lf_at = nul_mode ? n : -1;
    Py_ssize_t nul_at = f->nul ? -1 : n;
    while (pos < n) {
        unsigned char c = d[pos];
        if (counting && nonzero_digit(c)) { /* maybe MSG-LEN */
            Py_ssize_t lim = pos + PREFIX_WINDOW < n ? pos + PREFIX_WINDOW : n;
            Py_ssize_t sp = find_byte(d, pos + 1, lim, ' ');
            if (sp < 0) {
                if (n - pos < PREFIX_WINDOW && all_digits(d + pos, n - pos)) {
                    f->state = F_PREFIX;
                    return set_prefix(f, d + pos, n - pos);
                }
            } else {
                Py_ssize_t start = sp + 1;
                if (!all_digits(d + pos, sp - pos)) {
                    /* not a count: a line */
                } else if (start >= n) {
                    f->state = F_PREFIX; /* is a "<" next? wait and see */
                    return set_prefix(f, d + pos, n - pos);
                } else if (d[start] == '<') {
                    unsigned long long count = 0; /* <= 19 digits: fits */
                    for (Py_ssize_t i = pos; i < sp; i++)
                        count = count * 10 + (unsigned long long)(d[i] - '0');
                    if (count > f->max_count) {
                        /* A bad length loses this frame only: skip to a delimiter. */
                        if (call_drop(f, str_bad_length) < 0)
                            return -1;
                        f->discard = 1;
                        f->state = F_DELIMITED;
                        pos = start;
                    } else if (count <= (unsigned long long)(n - start)) {
                        Py_ssize_t end = start + (Py_ssize_t)count;
                        if (emit_whole(f, out, d + start, end - start) < 0)
                            return -1;
                        pos = end;
                        continue;
                    } else {
                        f->state = F_COUNTED;
                        f->remaining = count - (unsigned long long)(n - start);
                        return absorb(f, d + start, n - start, out);
                    }
                }
            }
        }
        /* Delimited frame (RFC 6587 §3.4.2), joined over continuation lines. */
        Py_ssize_t fstart = pos, end;
        int joinable = joining && c == '<';
        for (;;) {
            if (lf_at < pos) {
                lf_at = find_byte(d, pos, n, '\n');
                if (lf_at < 0)
                    lf_at = n;
            }
            if (nul_at < pos) {
                nul_at = find_byte(d, pos, n, 0);
                if (nul_at < 0)
                    nul_at = n;
            }
            if (lf_at < nul_at) {
                end = lf_at;
                if (!joinable)
                    break;
                Py_ssize_t nxt = end + 1;
                if (nxt < n) {
                    unsigned char b = d[nxt];
                    int new;
                    if (b == '<')
                        break;
                    if (nonzero_digit(b)) {
                        new = starts_frame(d, n, nxt);
                        if (new == 1)
                            break;
                    } else {
                        new = 0;
                    }
                    if (new >= 0) {
                        pos = nxt; /* a continuation line: the frame goes on */
                        continue;
                    }
                }
                /* The next line's first bytes are still to come. */
                if (absorb(f, d + fstart, end - fstart, out) < 0)
                    return -1;
                f->state = F_PENDING;
                f->joinable = 1;
                return set_prefix(f, d + nxt, n - nxt);
            }
            end = nul_at;
            if (end < n && end > fstart && !nul_mode) {
                /* A NUL ended a frame: from now on LF is part of messages. */
                nul_mode = f->nul_mode = 1;
                joining = 0;
                lf_at = n;
            }
            break;
        }
        if (end >= n) {
            f->state = F_DELIMITED;
            f->joinable = joinable;
            return absorb(f, d + fstart, n - fstart, out);
        }
        if (f->discard) {
            f->discard = 0;
            f->state = F_IDLE;
        } else if (end > fstart && emit_whole(f, out, d + fstart, end - fstart) < 0) {
            return -1;
        }
        pos = end + 1;
    }
    return 0;
}

static PyObject *framer_feed(Framer *f, PyObject *arg) {
    Py_buffer view;
    if (PyObject_GetBuffer(arg, &view, PyBUF_SIMPLE) < 0)
        return NULL;
    PyObject *out = PyList_New(0);
    unsigned char *joined = NULL;
    const unsigned char *d = view.buf;
    Py_ssize_t n = view.len, pos = 0;
    if (out == NULL)
        goto error;
    if (f->state == F_PREFIX || (f->state == F_PENDING && f->prefix_len > 0)) {
        /* data = self._prefix + data */
        joined = PyMem_Malloc((size_t)(f->prefix_len + n) + 1);
        if (joined == NULL) {
            PyErr_NoMemory();
            goto error;
        }
        memcpy(joined, f->prefix, (size_t)f->prefix_len);
        if (n > 0)
            memcpy(joined + f->prefix_len, d, (size_t)n);
        n += f->prefix_len;
        d = joined;
        f->prefix_len = 0;
        if (f->state == F_PREFIX)
            f->state = F_IDLE;
    }
    if (f->state == F_COUNTED) {
        unsigned long long need = f->remaining;
        if ((unsigned long long)n < need) {
            if (absorb(f, d, n, out) < 0)
                goto error;
            f->remaining = need - (unsigned long long)n;
            goto done;
        }
        if (absorb(f, d, (Py_ssize_t)need, out) < 0 || finish(f, out) < 0)
            goto error;
        pos = (Py_ssize_t)need;
    } else if (f->state != F_IDLE) {
        pos = go_on(f, d, n, out);
        if (pos == -2)
            goto error;
        if (pos < 0)
            goto done;
    }
    if (scan(f, d, n, pos, out) < 0)
        goto error;
done:
    PyMem_Free(joined);
    PyBuffer_Release(&view);
    return out;
error:
    PyMem_Free(joined);
    PyBuffer_Release(&view);
    Py_XDECREF(out);
    return NULL;
}

/* flush(): the wait for a continuation line is over. */
static int do_flush(Framer *f, PyObject *out) {
    if (f->state != F_PENDING)
        return 0;
    unsigned char prefix[PREFIX_CAP];
    Py_ssize_t plen = f->prefix_len;
    memcpy(prefix, f->prefix, (size_t)plen);
    if (finish(f, out) < 0)
        return -1;
    if (plen > 0) { /* the next line's first bytes: a frame of their own now */
        memcpy(f->prefix, prefix, (size_t)plen);
        f->prefix_len = plen;
        f->state = F_PREFIX;
    }
    return 0;
}

static PyObject *framer_flush(Framer *f, PyObject *unused) {
    PyObject *out = PyList_New(0);
    if (out != NULL && do_flush(f, out) < 0)
        Py_CLEAR(out);
    return out;
}

/* eof(): an unterminated last line is a message; an incomplete octet-counted
 * frame is dropped and counted. */
static PyObject *framer_eof(Framer *f, PyObject *unused) {
    PyObject *out = PyList_New(0);
    if (out == NULL)
        return NULL;
    if (do_flush(f, out) < 0)
        goto error;
    if (f->state == F_PREFIX) {
        Py_ssize_t n = rstrip_len(f->prefix, f->prefix_len);
        if (n > 0 && emit(out, f->prefix, n, 0) < 0)
            goto error;
    } else if (f->state == F_DELIMITED) {
        if (finish(f, out) < 0)
            goto error;
    } else if (f->state == F_COUNTED && !f->discard) {
        if (call_drop(f, str_incomplete_frame) < 0)
            goto error;
    }
    f_reset(f);
    return out;
error:
    f_reset(f);
    Py_DECREF(out);
    return NULL;
}

static PyObject *framer_pending(Framer *f, void *closure) {
    return PyBool_FromLong(f->state == F_PENDING);
}

static PyObject *framer_buffered(Framer *f, void *closure) {
    return PyLong_FromSsize_t(f->held_len + f->prefix_len);
}

static PyObject *framer_new(PyTypeObject *type, PyObject *args, PyObject *kwds) {
    static char *kwlist[] = {"max_bytes", "octet_counting", "nul_delimits", "max_count", "drop",
                             NULL};
    Py_ssize_t max_bytes;
    int counting = 1, nul = 1;
    PyObject *max_count_o = Py_None, *drop = NULL;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "n|$ppOO", kwlist, &max_bytes, &counting, &nul,
                                     &max_count_o, &drop))
        return NULL;
    if (max_bytes < 1) {
        PyErr_SetString(PyExc_ValueError, "max_bytes must be at least 1");
        return NULL;
    }
    unsigned long long max_count;
    if (max_count_o == Py_None) {
        /* max(1024 * max_bytes, 1 << 26) */
        unsigned long long m = (unsigned long long)max_bytes;
        max_count = m > (1ULL << 50) ? ULLONG_MAX : m * 1024;
        if (max_count < (1ULL << 26))
            max_count = 1ULL << 26;
    } else {
        int overflow = 0;
        long long v = PyLong_AsLongLongAndOverflow(max_count_o, &overflow);
        if (v == -1 && PyErr_Occurred())
            return NULL;
        if (overflow > 0)
            max_count = ULLONG_MAX; /* above every 19-digit count */
        else if (overflow < 0 || v < 0) {
            PyErr_SetString(PyExc_ValueError, "max_count must not be negative");
            return NULL;
        } else
            max_count = (unsigned long long)v;
    }
    if (drop != NULL && drop != Py_None && !PyCallable_Check(drop)) {
        PyErr_SetString(PyExc_TypeError, "drop must be callable");
        return NULL;
    }
    Framer *f = (Framer *)type->tp_alloc(type, 0);
    if (f == NULL)
        return NULL;
    f->max_bytes = max_bytes;
    f->max_count = max_count;
    f->counting = counting;
    f->nul = nul;
    f->state = F_IDLE;
    if (drop == NULL || drop == Py_None) {
        f->drop = NULL;
    } else {
        Py_INCREF(drop);
        f->drop = drop;
    }
    return (PyObject *)f;
}

static int framer_traverse(Framer *f, visitproc visit, void *arg) {
    Py_VISIT(f->drop);
    return 0;
}

static int framer_clear(Framer *f) {
    Py_CLEAR(f->drop);
    return 0;
}

static void framer_dealloc(Framer *f) {
    PyObject_GC_UnTrack(f);
    framer_clear(f);
    PyMem_Free(f->held);
    Py_TYPE(f)->tp_free((PyObject *)f);
}

static PyMethodDef framer_methods[] = {
    {"feed", (PyCFunction)framer_feed, METH_O,
     "feed(data) -> list[(bytes, bool)]: frames completed by data, in stream order."},
    {"flush", (PyCFunction)framer_flush, METH_NOARGS,
     "flush() -> list[(bytes, bool)]: a message held for a continuation line ends here."},
    {"eof", (PyCFunction)framer_eof, METH_NOARGS,
     "eof() -> list[(bytes, bool)]: the peer closed; the last line, if any."},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef framer_getset[] = {
    {"pending", (getter)framer_pending, NULL, "A message ended by LF is held.", NULL},
    {"buffered", (getter)framer_buffered, NULL, "Bytes held for an unfinished frame.", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyMemberDef framer_members[] = {
    {"max_bytes", T_PYSSIZET, offsetof(Framer, max_bytes), READONLY, NULL},
    {NULL, 0, 0, 0, NULL},
};

static PyTypeObject FramerType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "collector._native.Framer",
    .tp_basicsize = sizeof(Framer),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_doc = "Framer(max_bytes, *, octet_counting=True, nul_delimits=True, max_count=None, "
              "drop=None)\n\nframing.StreamFramer at C speed: same frames, flags and drops.",
    .tp_new = framer_new,
    .tp_dealloc = (destructor)framer_dealloc,
    .tp_traverse = (traverseproc)framer_traverse,
    .tp_clear = (inquiry)framer_clear,
    .tp_methods = framer_methods,
    .tp_getset = framer_getset,
    .tp_members = framer_members,
};

/* --- column helpers for eviction (collector/shard.py) ----------------------
 * An open shard holding late records keeps an `order` index (logical ->
 * physical position); evicting from it read each evicted record's codes and
 * renumbered the whole index one Python int at a time (~0.1 s a million).
 * These do the same over the arrays' buffers. shard.py has the pure
 * versions; tests/test_native_columns.py holds both to the same answers. */

/* A C-contiguous buffer of unsigned ints of 1 or 4 bytes ('B' or 'I'). */
static int get_uints(PyObject *obj, Py_buffer *view, int writable, int allow_bytes) {
    if (PyObject_GetBuffer(obj, view, (writable ? PyBUF_WRITABLE : 0) | PyBUF_FORMAT | PyBUF_C_CONTIGUOUS) < 0)
        return -1;
    const char *f = view->format != NULL ? view->format : "B";
    if (f[0] == '@' || f[0] == '=')
        f++;
    int ok = (view->itemsize == 4 && strcmp(f, "I") == 0) ||
             (allow_bytes && view->itemsize == 1 && strcmp(f, "B") == 0);
    if (!ok || view->ndim > 1) {
        PyBuffer_Release(view);
        PyErr_SetString(PyExc_TypeError, "expected an array of 'I' (or bytes of 'B') values");
        return -1;
    }
    return 0;
}

static inline uint32_t uint_at(const Py_buffer *v, Py_ssize_t i) {
    if (v->itemsize == 1)
        return ((const uint8_t *)v->buf)[i];
    uint32_t x;
    memcpy(&x, (const char *)v->buf + 4 * i, 4);
    return x;
}

/* uncount_at(counts, col, phys): counts[col[p]] -= 1 for each p in phys. */
static PyObject *native_uncount_at(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 3 || !PyList_Check(args[0])) {
        PyErr_SetString(PyExc_TypeError, "uncount_at(counts: list, col, phys)");
        return NULL;
    }
    PyObject *counts = args[0];
    Py_buffer col, phys;
    if (get_uints(args[1], &col, 0, 1) < 0)
        return NULL;
    if (get_uints(args[2], &phys, 0, 0) < 0) {
        PyBuffer_Release(&col);
        return NULL;
    }
    Py_ssize_t ncodes = PyList_GET_SIZE(counts);
    Py_ssize_t ncol = col.len / col.itemsize, nphys = phys.len / 4;
    int64_t *tally = PyMem_Calloc(ncodes > 0 ? (size_t)ncodes : 1, sizeof(int64_t));
    PyObject *result = NULL;
    if (tally == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    for (Py_ssize_t i = 0; i < nphys; i++) {
        uint32_t p = uint_at(&phys, i);
        if ((Py_ssize_t)p >= ncol) {
            PyErr_SetString(PyExc_IndexError, "position out of the column");
            goto done;
        }
        uint32_t c = uint_at(&col, p);
        if ((Py_ssize_t)c >= ncodes) {
            PyErr_SetString(PyExc_IndexError, "code out of the counts");
            goto done;
        }
        tally[c]++;
    }
    for (Py_ssize_t c = 0; c < ncodes; c++) {
        if (tally[c] == 0)
            continue;
        PyObject *n = PyLong_FromLongLong(tally[c]);
        if (n == NULL)
            goto done;
        PyObject *left = PyNumber_Subtract(PyList_GET_ITEM(counts, c), n);
        Py_DECREF(n);
        if (left == NULL)
            goto done;
        PyList_SetItem(counts, c, left); /* steals left */
    }
    result = Py_NewRef(Py_None);
done:
    PyMem_Free(tally);
    PyBuffer_Release(&col);
    PyBuffer_Release(&phys);
    return result;
}

/* shift_down(order, m) -> None: order[i] -= m for every i, in place; every
 * value must be >= m (ValueError, nothing changed, otherwise). */
static PyObject *native_shift_down(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "shift_down(order, m)");
        return NULL;
    }
    long long m = PyLong_AsLongLong(args[1]);
    if (m == -1 && PyErr_Occurred())
        return NULL;
    if (m < 0 || m > UINT32_MAX) {
        PyErr_SetString(PyExc_ValueError, "m out of range");
        return NULL;
    }
    Py_buffer v;
    if (get_uints(args[0], &v, 1, 0) < 0)
        return NULL;
    uint32_t *a = (uint32_t *)v.buf; /* an array's buffer is aligned for its items */
    Py_ssize_t n = v.len / 4;
    for (Py_ssize_t i = 0; i < n; i++) {
        if (a[i] < (uint32_t)m) {
            PyBuffer_Release(&v);
            PyErr_SetString(PyExc_ValueError, "a value below m");
            return NULL;
        }
    }
    for (Py_ssize_t i = 0; i < n; i++)
        a[i] -= (uint32_t)m;
    PyBuffer_Release(&v);
    Py_RETURN_NONE;
}

/* span_sum(offs, phys) -> int: the sum of offs[p + 1] - offs[p] over p in
 * phys (the bytes of those messages in a text heap; offs 'I' or 'q'). */
static PyObject *native_span_sum(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "span_sum(offs, phys)");
        return NULL;
    }
    Py_buffer offs, phys;
    if (PyObject_GetBuffer(args[0], &offs, PyBUF_FORMAT | PyBUF_C_CONTIGUOUS) < 0)
        return NULL;
    const char *f = offs.format != NULL ? offs.format : "B";
    if (f[0] == '@' || f[0] == '=')
        f++;
    int wide = offs.itemsize == 8 && strcmp(f, "q") == 0;
    if (!wide && !(offs.itemsize == 4 && strcmp(f, "I") == 0)) {
        PyBuffer_Release(&offs);
        PyErr_SetString(PyExc_TypeError, "offs: expected an array of 'I' or 'q'");
        return NULL;
    }
    if (get_uints(args[1], &phys, 0, 0) < 0) {
        PyBuffer_Release(&offs);
        return NULL;
    }
    Py_ssize_t noffs = offs.len / offs.itemsize, nphys = phys.len / 4;
    long long total = 0;
    PyObject *result = NULL;
    for (Py_ssize_t i = 0; i < nphys; i++) {
        uint32_t p = uint_at(&phys, i);
        if ((Py_ssize_t)p + 1 >= noffs) {
            PyErr_SetString(PyExc_IndexError, "position out of the offsets");
            goto done;
        }
        if (wide) {
            int64_t a, b;
            memcpy(&a, (const char *)offs.buf + 8 * (Py_ssize_t)p, 8);
            memcpy(&b, (const char *)offs.buf + 8 * ((Py_ssize_t)p + 1), 8);
            total += b - a;
        } else {
            total += (long long)uint_at(&offs, (Py_ssize_t)p + 1) - (long long)uint_at(&offs, p);
        }
    }
    result = PyLong_FromLongLong(total);
done:
    PyBuffer_Release(&offs);
    PyBuffer_Release(&phys);
    return result;
}

/* sum_at(col, phys) -> int: the sum of col[p] over p in phys. */
static PyObject *native_sum_at(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "sum_at(col, phys)");
        return NULL;
    }
    Py_buffer col, phys;
    if (get_uints(args[0], &col, 0, 0) < 0)
        return NULL;
    if (get_uints(args[1], &phys, 0, 0) < 0) {
        PyBuffer_Release(&col);
        return NULL;
    }
    Py_ssize_t ncol = col.len / 4, nphys = phys.len / 4;
    unsigned long long total = 0;
    PyObject *result = NULL;
    for (Py_ssize_t i = 0; i < nphys; i++) {
        uint32_t p = uint_at(&phys, i);
        if ((Py_ssize_t)p >= ncol) {
            PyErr_SetString(PyExc_IndexError, "position out of the column");
            goto done;
        }
        total += uint_at(&col, p);
    }
    result = PyLong_FromUnsignedLongLong(total);
done:
    PyBuffer_Release(&col);
    PyBuffer_Release(&phys);
    return result;
}

/* min_of(order) -> int: the smallest value (ValueError when empty). */
static PyObject *native_min_of(PyObject *self, PyObject *arg) {
    Py_buffer v;
    if (get_uints(arg, &v, 0, 0) < 0)
        return NULL;
    Py_ssize_t n = v.len / 4;
    if (n == 0) {
        PyBuffer_Release(&v);
        PyErr_SetString(PyExc_ValueError, "min_of() of an empty array");
        return NULL;
    }
    uint32_t lo = UINT32_MAX;
    for (Py_ssize_t i = 0; i < n; i++) {
        uint32_t x = uint_at(&v, i);
        if (x < lo)
            lo = x;
    }
    PyBuffer_Release(&v);
    return PyLong_FromUnsignedLong(lo);
}

/* --- the module ------------------------------------------------------------ */

static PyMethodDef methods[] = {
    {"parse", (PyCFunction)(void (*)(void))native_parse, METH_FASTCALL,
     "parse(data, received_at, sender, ttl_us, truncated) -> Record | None\n\n"
     "One RFC 5424 frame as parse_syslog reads it, or None: hand it to Python."},
    {"parse_frames", (PyCFunction)(void (*)(void))native_parse_frames, METH_FASTCALL,
     "parse_frames(frames, received_at, sender, ttl_us) -> list[Record | None]\n\n"
     "`parse` over a list of (bytes, truncated) frames from one sender."},
    {"parse_batch", (PyCFunction)(void (*)(void))native_parse_batch, METH_FASTCALL,
     "parse_batch(frames, received_at, sender, ttl_us) -> (list[Record | None], declined, "
     "truncated)\n\n`parse_frames`, with how many frames it declined (None) and how many are "
     "flagged truncated."},
    {"uncount_at", (PyCFunction)(void (*)(void))native_uncount_at, METH_FASTCALL,
     "uncount_at(counts, col, phys) -> None: counts[col[p]] -= 1 for each p in phys."},
    {"shift_down", (PyCFunction)(void (*)(void))native_shift_down, METH_FASTCALL,
     "shift_down(order, m) -> None: subtract m from every value, in place."},
    {"min_of", native_min_of, METH_O, "min_of(order) -> int: the smallest value."},
    {"sum_at", (PyCFunction)(void (*)(void))native_sum_at, METH_FASTCALL,
     "sum_at(col, phys) -> int: the sum of col[p] over p in phys."},
    {"span_sum", (PyCFunction)(void (*)(void))native_span_sum, METH_FASTCALL,
     "span_sum(offs, phys) -> int: the sum of offs[p + 1] - offs[p] over p in phys."},
    {"direct_slots", native_direct_slots, METH_NOARGS,
     "direct_slots() -> bool: records filled slot by slot (True) or made by calling Record."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT, "collector._native",
    "The native hot path: RFC 5424 frames -> Record, declining (None) whatever it "
    "does not read exactly as collector.parse does.",
    -1, methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__native(void) {
    /* COLLECTOR_PURE=1 forces the pure path: the module refuses to load, so
     * every importer falls back exactly as when it was never built. */
    const char *pure = getenv("COLLECTOR_PURE");
    if (pure != NULL && pure[0] != '\0' && strcmp(pure, "0") != 0) {
        PyErr_SetString(PyExc_ImportError, "COLLECTOR_PURE is set");
        return NULL;
    }
    PyObject *rec_mod = PyImport_ImportModule("collector.record");
    if (rec_mod == NULL)
        return NULL;
    record_type = PyObject_GetAttrString(rec_mod, "Record");
    Py_DECREF(rec_mod);
    if (record_type == NULL)
        return NULL;
    if (find_slots() < 0)
        return NULL;
    str_rfc5424 = PyUnicode_InternFromString("rfc5424");
    str_empty = PyUnicode_InternFromString("");
    str_truncated = PyUnicode_InternFromString("truncated");
    str_rfc3164 = PyUnicode_InternFromString("rfc3164");
    str_bad_length = PyUnicode_InternFromString("bad_length");
    str_incomplete_frame = PyUnicode_InternFromString("incomplete_frame");
    if (str_rfc5424 == NULL || str_empty == NULL || str_truncated == NULL || str_rfc3164 == NULL ||
        str_bad_length == NULL || str_incomplete_frame == NULL)
        return NULL;
    if (PyType_Ready(&FramerType) < 0)
        return NULL;
    PyObject *mod = PyModule_Create(&module_def);
    if (mod == NULL)
        return NULL;
    Py_INCREF(&FramerType);
    if (PyModule_AddObject(mod, "Framer", (PyObject *)&FramerType) < 0) {
        Py_DECREF(&FramerType);
        Py_DECREF(mod);
        return NULL;
    }
    return mod;
}
