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

/* One frame -> a new Record, Py_None (new ref: decline) or NULL (error). */
static PyObject *parse_frame(const unsigned char *b, Py_ssize_t n, int64_t received_at,
                             PyObject *sender, int64_t ttl_us, int truncated, char *scratch) {
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
    if (pri > 191 || gt + 2 >= n || b[gt + 1] != '1' || b[gt + 2] != ' ')
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
    args[0] = PyLong_FromLongLong(timestamp);
    args[1] = PyLong_FromLongLong(received_at);
    if (nil_host) {
        Py_INCREF(sender);
        args[2] = sender;
    } else {
        args[2] = decode_interned(f[1], flen[1]);
    }
    if (flen[2] == 1 && f[2][0] == '-') {
        Py_INCREF(Py_None);
        args[3] = Py_None;
    } else {
        args[3] = decode_interned(f[2], flen[2]);
    }
    for (int i = 3; i < 5; i++) {
        if (flen[i] == 1 && f[i][0] == '-') {
            Py_INCREF(Py_None);
            args[i + 1] = Py_None;
        } else {
            args[i + 1] = decode(f[i], flen[i]);
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

static PyObject *native_parse(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    (void)self;
    if (nargs != 5) {
        PyErr_SetString(PyExc_TypeError,
                        "parse(data, received_at, sender, ttl_us, truncated) takes 5 arguments");
        return NULL;
    }
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
                                args[2], ttl_us, truncated, scratch);
    PyMem_Free(scratch);
    return rec;
}

static PyObject *native_parse_frames(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    (void)self;
    if (nargs != 4) {
        PyErr_SetString(PyExc_TypeError,
                        "parse_frames(frames, received_at, sender, ttl_us) takes 4 arguments");
        return NULL;
    }
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
        return out;
    }
    Py_ssize_t cap = 0;
    char *scratch = NULL;
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
                                    args[2], ttl_us, truncated, scratch);
        if (rec == NULL)
            goto error;
        PyList_SET_ITEM(out, i, rec);
    }
    PyMem_Free(scratch);
    return out;
error:
    PyMem_Free(scratch);
    Py_DECREF(out);
    return NULL;
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

static PyMethodDef methods[] = {
    {"parse", (PyCFunction)(void (*)(void))native_parse, METH_FASTCALL,
     "parse(data, received_at, sender, ttl_us, truncated) -> Record | None\n\n"
     "One RFC 5424 frame as parse_syslog reads it, or None: hand it to Python."},
    {"parse_frames", (PyCFunction)(void (*)(void))native_parse_frames, METH_FASTCALL,
     "parse_frames(frames, received_at, sender, ttl_us) -> list[Record | None]\n\n"
     "`parse` over a list of (bytes, truncated) frames from one sender."},
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
    if (str_rfc5424 == NULL || str_empty == NULL || str_truncated == NULL)
        return NULL;
    return PyModule_Create(&module_def);
}
