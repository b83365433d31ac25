/* Query stage, native: records -> the API's JSON bytes, at C speed.
 *
 * Mirrors collector/query.py's `record_json` byte for byte: compact JSON,
 * keys in the contract's order, every string escaped as Python's
 * `json.encoder.encode_basestring_ascii` escapes it (`\"`, `\\`, `\b \f \n
 * \r \t`, other code points below 0x20 and from 0x7f on as `\u00XX` with
 * lower-case hex, code points past U+FFFF as a surrogate pair, lone
 * surrogates as themselves), times as RFC 3339 UTC with microseconds and
 * `Z`. Whenever a record is unusual (a value of an unexpected type, a time
 * outside years 0001..9999, a level or facility code outside its table) the
 * row is handed to the Python renderer given as `fallback`, which stays the
 * specification; non-empty `structured_data` and `fields` are written by the
 * Python function given as `object_json`. Pure: no I/O, no clock; the only
 * global state is the Record type's slot layout and the name tables set by
 * `setup`.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h> /* T_OBJECT_EX: the slots of Record */
#include <limits.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define NFIELDS 12
static const char *const field_names[NFIELDS] = {
    "timestamp", "received_at", "host",    "service",         "procid", "msgid",
    "facility",  "level",       "message", "structured_data", "fields", "format"};
enum { F_TS, F_RECV, F_HOST, F_SERVICE, F_PROCID, F_MSGID, F_FAC, F_LEVEL, F_MESSAGE, F_SD,
       F_FIELDS, F_FORMAT };
static PyTypeObject *record_type; /* collector.record.Record, or NULL before setup() */
static Py_ssize_t slot_offset[NFIELDS];

#define MAX_NAMES 32
static char level_json[MAX_NAMES][24]; /* "\"err\"" ... */
static size_t level_len[MAX_NAMES];
static int nlevels;
static char facility_json[MAX_NAMES][24];
static size_t facility_len[MAX_NAMES];
static int nfacilities;

/* times.MIN_US / MAX_US: years 0001..9999. */
#define MIN_US (-62135596800LL * 1000000LL)
#define MAX_US (253402300799LL * 1000000LL + 999999LL)

/* --- the output buffer: a bytes object grown as needed --------------------- */

typedef struct {
    PyObject *bytes; /* the result, resized at the end */
    char *p;         /* write position */
    char *end;
} Out;

static int out_init(Out *o, Py_ssize_t size) {
    o->bytes = PyBytes_FromStringAndSize(NULL, size);
    if (o->bytes == NULL)
        return -1;
    o->p = PyBytes_AS_STRING(o->bytes);
    o->end = o->p + size;
    return 0;
}

/* Room for `n` more bytes (out_grow when there is not). */
static int out_grow(Out *o, Py_ssize_t n);
static inline int out_reserve(Out *o, Py_ssize_t n) {
    return o->end - o->p >= n ? 0 : out_grow(o, n);
}

static int out_grow(Out *o, Py_ssize_t n) {
    char *start = PyBytes_AS_STRING(o->bytes);
    Py_ssize_t used = o->p - start;
    Py_ssize_t size = o->end - start;
    Py_ssize_t want = used + n;
    if (want < 0 || size > PY_SSIZE_T_MAX / 2) {
        PyErr_NoMemory();
        return -1;
    }
    while (size < want)
        size *= 2;
    if (_PyBytes_Resize(&o->bytes, size) < 0)
        return -1;
    start = PyBytes_AS_STRING(o->bytes);
    o->p = start + used;
    o->end = start + size;
    return 0;
}

static inline void put(Out *o, const char *s, size_t n) {
    memcpy(o->p, s, n);
    o->p += n;
}
#define PUT_LIT(o, lit) put((o), (lit), sizeof(lit) - 1)

static PyObject *out_finish(Out *o) {
    Py_ssize_t used = o->p - PyBytes_AS_STRING(o->bytes);
    if (_PyBytes_Resize(&o->bytes, used) < 0)
        return NULL;
    PyObject *b = o->bytes;
    o->bytes = NULL;
    return b;
}

/* --- strings: encode_basestring_ascii ------------------------------------- */

static const char hexdigits[] = "0123456789abcdef";

static inline char *put_u(char *p, Py_UCS4 c) {
    p[0] = '\\';
    p[1] = 'u';
    p[2] = hexdigits[(c >> 12) & 0xf];
    p[3] = hexdigits[(c >> 8) & 0xf];
    p[4] = hexdigits[(c >> 4) & 0xf];
    p[5] = hexdigits[c & 0xf];
    return p + 6;
}

static inline char *put_escaped(char *p, Py_UCS4 c) {
    switch (c) {
    case '\\': *p++ = '\\'; *p++ = '\\'; return p;
    case '"': *p++ = '\\'; *p++ = '"'; return p;
    case '\b': *p++ = '\\'; *p++ = 'b'; return p;
    case '\f': *p++ = '\\'; *p++ = 'f'; return p;
    case '\n': *p++ = '\\'; *p++ = 'n'; return p;
    case '\r': *p++ = '\\'; *p++ = 'r'; return p;
    case '\t': *p++ = '\\'; *p++ = 't'; return p;
    default:
        if (c >= 0x10000) {
            Py_UCS4 v = c - 0x10000;
            p = put_u(p, 0xd800 | ((v >> 10) & 0x3ff));
            return put_u(p, 0xdc00 | (v & 0x3ff));
        }
        return put_u(p, c);
    }
}

/* Printed as is: ' ' .. '~' but the quote and the backslash. */
static inline int plain(Py_UCS4 c) { return c >= ' ' && c <= '~' && c != '\\' && c != '"'; }

/* plain() of each byte, for the ASCII loop (filled by the module's init). */
static unsigned char plain_byte[256];

/* `n` ASCII bytes as JSON string content: plain runs copied at once, the
 * rest escaped. The caller reserves 6 bytes per byte. */
static char *put_ascii_run(char *p, const unsigned char *d, Py_ssize_t n) {
    Py_ssize_t i = 0;
    while (i < n) {
        Py_ssize_t j = i;
        while (j < n && plain_byte[d[j]])
            j++;
        memcpy(p, d + i, (size_t)(j - i));
        p += j - i;
        if (j < n)
            p = put_escaped(p, d[j++]);
        i = j;
    }
    return p;
}

/* A str as a JSON string literal. */
static int put_str(Out *o, PyObject *s) {
    Py_ssize_t n = PyUnicode_GET_LENGTH(s);
    int ascii = PyUnicode_IS_ASCII(s);
    /* Worst cases: 6 bytes per ASCII character, 12 per code point past U+FFFF. */
    if (n > (PY_SSIZE_T_MAX - 2) / 12) {
        PyErr_NoMemory();
        return -1;
    }
    if (out_reserve(o, n * (ascii ? 6 : 12) + 2) < 0)
        return -1;
    char *p = o->p;
    *p++ = '"';
    if (ascii) {
        const unsigned char *d = PyUnicode_1BYTE_DATA(s);
        p = put_ascii_run(p, d, n);
    } else {
        int kind = PyUnicode_KIND(s);
        const void *d = PyUnicode_DATA(s);
        for (Py_ssize_t i = 0; i < n; i++) {
            Py_UCS4 c = PyUnicode_READ(kind, d, i);
            if (plain(c))
                *p++ = (char)c;
            else
                p = put_escaped(p, c);
        }
    }
    *p++ = '"';
    o->p = p;
    return 0;
}

/* A str the Python renderers made (ASCII by construction), as is. */
static int put_ascii(Out *o, PyObject *s) {
    if (!PyUnicode_Check(s) || !PyUnicode_IS_ASCII(s)) {
        PyErr_SetString(PyExc_ValueError, "a JSON renderer returned a non-ASCII string");
        return -1;
    }
    Py_ssize_t n = PyUnicode_GET_LENGTH(s);
    if (out_reserve(o, n) < 0)
        return -1;
    put(o, (const char *)PyUnicode_1BYTE_DATA(s), (size_t)n);
    return 0;
}

/* --- times ------------------------------------------------------------------ */

static inline void two(char *p, int v) {
    p[0] = (char)('0' + v / 10);
    p[1] = (char)('0' + v % 10);
}

/* "YYYY-MM-DDTHH:MM:SS.ffffffZ" with quotes (29 bytes, reserved by the
 * caller); 1 when outside years 0001..9999 (the row goes to Python). */
static long long last_secs = LLONG_MIN; /* the second whose text is in last_head */
static char last_head[20];                  /* "YYYY-MM-DDTHH:MM:SS" */

static int put_time_us(Out *o, long long us) {
    if (us < MIN_US || us > MAX_US)
        return 1;
    long long secs = us / 1000000, frac = us % 1000000;
    if (frac < 0) {
        frac += 1000000;
        secs -= 1;
    }
    char *p = o->p; /* the caller reserved the room */
    if (secs != last_secs) {
        /* Records of one page mostly share their seconds: formatted once. */
        long long days = secs / 86400, sod = secs % 86400;
        if (sod < 0) {
            sod += 86400;
            days -= 1;
        }
        /* H. Hinnant's civil_from_days. */
        long long z = days + 719468;
        long long era = (z >= 0 ? z : z - 146096) / 146097;
        long long doe = z - era * 146097;
        long long yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
        long long y = yoe + era * 400;
        long long doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        long long mp = (5 * doy + 2) / 153;
        int d = (int)(doy - (153 * mp + 2) / 5 + 1);
        int m = (int)(mp < 10 ? mp + 3 : mp - 9);
        y += m <= 2;
        char *h = last_head;
        two(h, (int)(y / 100));
        two(h + 2, (int)(y % 100));
        h[4] = '-';
        two(h + 5, m);
        h[7] = '-';
        two(h + 8, d);
        h[10] = 'T';
        two(h + 11, (int)(sod / 3600));
        h[13] = ':';
        two(h + 14, (int)(sod / 60 % 60));
        h[16] = ':';
        two(h + 17, (int)(sod % 60));
        last_secs = secs;
    }
    p[0] = '"';
    memcpy(p + 1, last_head, 19);
    p[20] = '.';
    int f = (int)frac;
    for (int k = 26; k >= 21; k--) {
        p[k] = (char)('0' + f % 10);
        f /= 10;
    }
    p[27] = 'Z';
    p[28] = '"';
    o->p = p + 29;
    return 0;
}

/* put_time_us of an int object; 1 when it is not an int of that range. */
static int put_time(Out *o, PyObject *v) {
    if (!PyLong_CheckExact(v))
        return 1;
    int overflow = 0;
    long long us = PyLong_AsLongLongAndOverflow(v, &overflow);
    if (us == -1 && PyErr_Occurred())
        return -1;
    if (overflow)
        return 1;
    return put_time_us(o, us);
}

/* --- one row ---------------------------------------------------------------- */

/* A str or None, for host, service, procid, msgid. 1: neither (to Python). */
static int put_opt(Out *o, PyObject *v) {
    if (v == Py_None) {
        if (out_reserve(o, 4) < 0)
            return -1;
        PUT_LIT(o, "null");
        return 0;
    }
    if (!PyUnicode_CheckExact(v))
        return 1;
    return put_str(o, v);
}

/* A small table code (level, facility) -> its index, or -1 when out of it. */
static int code_of(PyObject *v, int n) {
    if (!PyLong_CheckExact(v))
        return -1;
    int overflow = 0;
    long c = PyLong_AsLongAndOverflow(v, &overflow);
    if (overflow || c < 0 || c >= n)
        return -1;
    return (int)c;
}

/* structured_data / fields: None or {} -> {}, another dict -> object_json(it). */
static int put_extra(Out *o, PyObject *v, PyObject *object_json) {
    if (v == Py_None || (PyDict_CheckExact(v) && PyDict_GET_SIZE(v) == 0)) {
        if (out_reserve(o, 2) < 0)
            return -1;
        PUT_LIT(o, "{}");
        return 0;
    }
    if (!PyDict_CheckExact(v))
        return 1;
    PyObject *text = PyObject_CallOneArg(object_json, v);
    if (text == NULL)
        return -1;
    int r = put_ascii(o, text);
    Py_DECREF(text);
    return r;
}

#define TRY(call)                                                                              \
    do {                                                                                       \
        int r_ = (call);                                                                       \
        if (r_ != 0)                                                                           \
            return r_;                                                                         \
    } while (0)

/* One record's JSON. 0: written; 1: unusual (the caller rewinds and asks
 * Python); -1: error. */
static int put_row(Out *o, PyObject *id, PyObject *const *f, PyObject *object_json) {
    if (!PyUnicode_CheckExact(id) || !PyUnicode_CheckExact(f[F_MESSAGE]) ||
        !PyUnicode_CheckExact(f[F_FORMAT]))
        return 1;
    int level = code_of(f[F_LEVEL], nlevels);
    if (level < 0)
        return 1;
    int fac = f[F_FAC] == Py_None ? -2 : code_of(f[F_FAC], nfacilities);
    if (fac == -1)
        return 1;
    if (out_reserve(o, 7) < 0)
        return -1;
    PUT_LIT(o, "{\"id\":");
    TRY(put_str(o, id));
    if (out_reserve(o, 13 + 29 + 15 + 29 + 8) < 0)
        return -1;
    PUT_LIT(o, ",\"timestamp\":");
    TRY(put_time(o, f[F_TS]));
    PUT_LIT(o, ",\"received_at\":");
    TRY(put_time(o, f[F_RECV]));
    PUT_LIT(o, ",\"host\":");
    TRY(put_opt(o, f[F_HOST]));
    if (out_reserve(o, 11) < 0)
        return -1;
    PUT_LIT(o, ",\"service\":");
    TRY(put_opt(o, f[F_SERVICE]));
    if (out_reserve(o, 10) < 0)
        return -1;
    PUT_LIT(o, ",\"procid\":");
    TRY(put_opt(o, f[F_PROCID]));
    if (out_reserve(o, 9) < 0)
        return -1;
    PUT_LIT(o, ",\"msgid\":");
    TRY(put_opt(o, f[F_MSGID]));
    if (out_reserve(o, 12 + 24 + 9 + 24 + 11) < 0)
        return -1;
    PUT_LIT(o, ",\"facility\":");
    if (fac == -2)
        PUT_LIT(o, "null");
    else
        put(o, facility_json[fac], facility_len[fac]);
    PUT_LIT(o, ",\"level\":");
    put(o, level_json[level], level_len[level]);
    PUT_LIT(o, ",\"message\":");
    TRY(put_str(o, f[F_MESSAGE]));
    if (out_reserve(o, 19) < 0)
        return -1;
    PUT_LIT(o, ",\"structured_data\":");
    TRY(put_extra(o, f[F_SD], object_json));
    if (out_reserve(o, 10) < 0)
        return -1;
    PUT_LIT(o, ",\"fields\":");
    TRY(put_extra(o, f[F_FIELDS], object_json));
    if (out_reserve(o, 10) < 0)
        return -1;
    PUT_LIT(o, ",\"format\":");
    TRY(put_str(o, f[F_FORMAT]));
    if (out_reserve(o, 1) < 0)
        return -1;
    PUT_LIT(o, "}");
    return 0;
}

/* put_row, and on 1 the Python renderer's text instead (`call` makes it). */
static int put_row_or(Out *o, PyObject *id, PyObject *const *f, PyObject *object_json,
                      PyObject *fallback, PyObject *rec) {
    Py_ssize_t mark_at = o->p - PyBytes_AS_STRING(o->bytes);
    int r = put_row(o, id, f, object_json);
    if (r <= 0)
        return r;
    o->p = PyBytes_AS_STRING(o->bytes) + mark_at; /* rewind (the buffer may have moved) */
    PyObject *text = PyObject_CallFunctionObjArgs(fallback, rec, id, NULL);
    if (text == NULL)
        return -1;
    r = put_ascii(o, text);
    Py_DECREF(text);
    return r;
}

/* --- the module ------------------------------------------------------------- */

static int read_record(PyObject *rec, PyObject **f) {
    for (int i = 0; i < NFIELDS; i++) {
        f[i] = *(PyObject **)((char *)rec + slot_offset[i]);
        if (f[i] == NULL)
            return 1; /* an unset slot: Python raises what it raises */
    }
    return 0;
}

static PyObject *render_records(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    (void)self;
    if (nargs != 4) {
        PyErr_SetString(PyExc_TypeError,
                        "records(items, separator, fallback, object_json) takes 4 arguments");
        return NULL;
    }
    if (record_type == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "collector._render.setup() was not called");
        return NULL;
    }
    PyObject *items = args[0], *sep = args[1], *fallback = args[2], *object_json = args[3];
    if (!PyBytes_Check(sep)) {
        PyErr_SetString(PyExc_TypeError, "separator must be bytes");
        return NULL;
    }
    PyObject *seq = PySequence_Fast(items, "items must be a sequence of (id, record)");
    if (seq == NULL)
        return NULL;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    PyObject **rows = PySequence_Fast_ITEMS(seq);
    const char *sep_s = PyBytes_AS_STRING(sep);
    Py_ssize_t sep_n = PyBytes_GET_SIZE(sep);
    Out o;
    if (out_init(&o, 512 * (n ? n : 1)) < 0) {
        Py_DECREF(seq);
        return NULL;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *row = rows[i];
        if (!PyTuple_CheckExact(row) || PyTuple_GET_SIZE(row) != 2) {
            PyErr_SetString(PyExc_TypeError, "items must be (id, record) pairs");
            goto fail;
        }
        PyObject *id = PyTuple_GET_ITEM(row, 0), *rec = PyTuple_GET_ITEM(row, 1);
        if (i && sep_n) {
            if (out_reserve(&o, sep_n) < 0)
                goto fail;
            put(&o, sep_s, (size_t)sep_n);
        }
        PyObject *f[NFIELDS];
        int r;
        if (Py_TYPE(rec) != record_type || read_record(rec, f) != 0) {
            PyObject *text = PyObject_CallFunctionObjArgs(fallback, rec, id, NULL);
            if (text == NULL)
                goto fail;
            r = put_ascii(&o, text);
            Py_DECREF(text);
        } else {
            r = put_row_or(&o, id, f, object_json, fallback, rec);
        }
        if (r < 0)
            goto fail;
    }
    Py_DECREF(seq);
    return out_finish(&o);
fail:
    Py_DECREF(seq);
    Py_XDECREF(o.bytes);
    return NULL;
}

/* An unsigned or signed integer array's element `i` (buffer protocol). */
static inline long long item_at(const Py_buffer *b, Py_ssize_t i, int is_signed) {
    switch (b->itemsize) {
    case 1:
        return is_signed ? (long long)((const int8_t *)b->buf)[i]
                         : (long long)((const uint8_t *)b->buf)[i];
    case 2:
        return is_signed ? (long long)((const int16_t *)b->buf)[i]
                         : (long long)((const uint16_t *)b->buf)[i];
    case 4:
        return is_signed ? (long long)((const int32_t *)b->buf)[i]
                         : (long long)((const uint32_t *)b->buf)[i];
    default: return ((const int64_t *)b->buf)[i];
    }
}

/* An integer array (array, bytes, bytearray) as a buffer; 0 ok, -1 error. */
static int int_buffer(PyObject *o, Py_buffer *b, int *is_signed) {
    if (PyObject_GetBuffer(o, b, PyBUF_FORMAT | PyBUF_C_CONTIGUOUS) < 0)
        return -1;
    const char *f = b->format ? b->format : "B";
    char c = f[0];
    int ok = (b->itemsize == 1 || b->itemsize == 2 || b->itemsize == 4 || b->itemsize == 8) &&
             f[1] == '\0' && strchr("bBhHiIlLqQ", c) != NULL && !(b->itemsize == 8 && c == 'Q');
    if (!ok) {
        PyBuffer_Release(b);
        PyErr_SetString(PyExc_TypeError, "an array of integers was expected");
        return -1;
    }
    *is_signed = c == 'b' || c == 'h' || c == 'i' || c == 'l' || c == 'q';
    return 0;
}

/* --- rows straight from a shard's or a block's columns ----------------------- */

/* An id "<ts hex>-<seq hex>" (record.make_id), quoted. */
static void put_id(Out *o, long long ts, long long seq) {
    char *p = o->p; /* the caller reserved 2 + 2 * 17 + 1 bytes */
    *p++ = '"';
    long long parts[2] = {ts, seq};
    for (int h = 0; h < 2; h++) {
        unsigned long long v;
        if (parts[h] < 0) {
            *p++ = '-';
            v = 0ULL - (unsigned long long)parts[h];
        } else {
            v = (unsigned long long)parts[h];
        }
        char digits[17];
        int nd = 0;
        do {
            digits[nd++] = hexdigits[v & 0xf];
            v >>= 4;
        } while (v);
        while (nd)
            *p++ = digits[--nd];
        *p++ = h == 0 ? '-' : '"';
    }
    o->p = p;
}

/* A message's UTF-8 bytes (surrogates passed) as a JSON string: ASCII
 * escaped straight from the bytes, anything else decoded first. */
static int put_utf8(Out *o, const unsigned char *d, Py_ssize_t n) {
    Py_ssize_t i = 0;
    while (i < n && d[i] < 0x80)
        i++;
    if (i < n) {
        PyObject *s = PyUnicode_DecodeUTF8((const char *)d, n, "surrogatepass");
        if (s == NULL)
            return -1;
        int r = put_str(o, s);
        Py_DECREF(s);
        return r;
    }
    if (n > (PY_SSIZE_T_MAX - 2) / 6) {
        PyErr_NoMemory();
        return -1;
    }
    if (out_reserve(o, n * 6 + 2) < 0)
        return -1;
    char *p = o->p;
    *p++ = '"';
    p = put_ascii_run(p, d, n);
    *p++ = '"';
    o->p = p;
    return 0;
}

enum { C_RECV, C_HOST, C_SERVICE, C_PROCID, C_MSGID, C_FAC, C_LEVEL, C_FORMAT, NCOLS };
#define NO_FACILITY 255 /* shard.NO_FACILITY, block.FACILITY_OUT's None */

typedef struct {
    Py_buffer keys_ts, keys_seq, offs, col[NCOLS];
    int ts_signed, seq_signed, offs_signed, col_signed[NCOLS];
    int have_keys, have_offs, have_col[NCOLS];
    PyObject *names[5]; /* host, service, procid, msgid, format: fast sequences */
    Py_ssize_t nnames[5];
    Py_ssize_t nbufs;
    Py_buffer *bufs;
    long long *starts;
} Source;

static void source_release(Source *s) {
    if (s->have_keys) {
        PyBuffer_Release(&s->keys_ts);
        PyBuffer_Release(&s->keys_seq);
    }
    if (s->have_offs)
        PyBuffer_Release(&s->offs);
    for (int c = 0; c < NCOLS; c++)
        if (s->have_col[c])
            PyBuffer_Release(&s->col[c]);
    for (int k = 0; k < 5; k++)
        Py_XDECREF(s->names[k]);
    if (s->bufs != NULL) {
        for (Py_ssize_t j = 0; j < s->nbufs; j++)
            if (s->bufs[j].obj != NULL)
                PyBuffer_Release(&s->bufs[j]);
        PyMem_Free(s->bufs);
    }
    PyMem_Free(s->starts);
}

/* rows(ts, seqs, idx, phys, cols, names, text, extras, separator, fallback, object_json)
 *
 * The JSON of records straight from columns: record k has the key
 * (ts[idx[k]], seqs[idx[k]]) and its other values at phys[k] of `cols`
 * (received_at, host, service, procid, msgid codes, facility, level, format
 * code: integer arrays), the codes naming values of `names` (host, service,
 * procid, msgid, format sequences); its message at [offs[p], offs[p+1] - gap) of
 * `text` = (buffers, starts, offs[, gap]) laid out as `texts` reads them (gap 1:
 * each message is followed by a separator byte, as in a sealed block's group;
 * 0 when absent); `extras`
 * None or a list of (structured_data, fields) per record. `fallback(k)`
 * writes record k in Python when it is unusual. */
static PyObject *render_rows(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    (void)self;
    if (nargs != 11) {
        PyErr_SetString(PyExc_TypeError, "rows() takes 11 arguments");
        return NULL;
    }
    if (record_type == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "collector._render.setup() was not called");
        return NULL;
    }
    PyObject *idx = args[2], *phys = args[3], *cols = args[4], *names = args[5], *text = args[6],
             *extras = args[7], *sep = args[8], *fallback = args[9], *object_json = args[10];
    if (!PyList_CheckExact(idx) || !PyList_CheckExact(phys) ||
        PyList_GET_SIZE(idx) != PyList_GET_SIZE(phys) || !PyTuple_CheckExact(cols) ||
        PyTuple_GET_SIZE(cols) != NCOLS || !PyTuple_CheckExact(names) ||
        PyTuple_GET_SIZE(names) != 5 || !PyTuple_CheckExact(text) ||
        (PyTuple_GET_SIZE(text) != 3 && PyTuple_GET_SIZE(text) != 4) ||
        !PyList_CheckExact(PyTuple_GET_ITEM(text, 0)) ||
        !PyList_CheckExact(PyTuple_GET_ITEM(text, 1)) ||
        PyList_GET_SIZE(PyTuple_GET_ITEM(text, 0)) != PyList_GET_SIZE(PyTuple_GET_ITEM(text, 1)) ||
        PyList_GET_SIZE(PyTuple_GET_ITEM(text, 0)) == 0 || !PyBytes_Check(sep) ||
        (extras != Py_None &&
         (!PyList_CheckExact(extras) || PyList_GET_SIZE(extras) != PyList_GET_SIZE(idx)))) {
        PyErr_SetString(PyExc_TypeError, "rows(): arguments of the wrong shape");
        return NULL;
    }
    Source src;
    memset(&src, 0, sizeof src);
    Out o;
    o.bytes = NULL;
    Py_ssize_t n = PyList_GET_SIZE(idx);
    if (int_buffer(args[0], &src.keys_ts, &src.ts_signed) < 0)
        return NULL;
    if (int_buffer(args[1], &src.keys_seq, &src.seq_signed) < 0) {
        PyBuffer_Release(&src.keys_ts);
        return NULL;
    }
    src.have_keys = 1;
    for (int c = 0; c < NCOLS; c++) {
        if (int_buffer(PyTuple_GET_ITEM(cols, c), &src.col[c], &src.col_signed[c]) < 0)
            goto fail;
        src.have_col[c] = 1;
    }
    for (int k = 0; k < 5; k++) {
        src.names[k] = PySequence_Fast(PyTuple_GET_ITEM(names, k), "rows(): names must be sequences");
        if (src.names[k] == NULL)
            goto fail;
        src.nnames[k] = PySequence_Fast_GET_SIZE(src.names[k]);
    }
    if (int_buffer(PyTuple_GET_ITEM(text, 2), &src.offs, &src.offs_signed) < 0)
        goto fail;
    src.have_offs = 1;
    long long gap = 0;
    if (PyTuple_GET_SIZE(text) == 4) {
        gap = PyLong_AsLongLong(PyTuple_GET_ITEM(text, 3));
        if (gap == -1 && PyErr_Occurred())
            goto fail;
        if (gap < 0 || gap > 1) {
            PyErr_SetString(PyExc_ValueError, "rows(): the text gap is 0 or 1");
            goto fail;
        }
    }
    PyObject *buffers = PyTuple_GET_ITEM(text, 0), *starts = PyTuple_GET_ITEM(text, 1);
    src.nbufs = PyList_GET_SIZE(buffers);
    src.bufs = PyMem_Calloc((size_t)src.nbufs, sizeof(Py_buffer));
    src.starts = PyMem_Calloc((size_t)src.nbufs, sizeof(long long));
    if (src.bufs == NULL || src.starts == NULL) {
        PyErr_NoMemory();
        goto fail;
    }
    for (Py_ssize_t j = 0; j < src.nbufs; j++) {
        src.starts[j] = PyLong_AsLongLong(PyList_GET_ITEM(starts, j));
        if (src.starts[j] == -1 && PyErr_Occurred())
            goto fail;
        if (PyObject_GetBuffer(PyList_GET_ITEM(buffers, j), &src.bufs[j], PyBUF_SIMPLE) < 0) {
            src.bufs[j].obj = NULL;
            goto fail;
        }
    }
    Py_ssize_t nkeys = src.keys_ts.len / src.keys_ts.itemsize;
    if (src.keys_seq.len / src.keys_seq.itemsize < nkeys)
        nkeys = src.keys_seq.len / src.keys_seq.itemsize;
    Py_ssize_t nrows = src.offs.len / src.offs.itemsize - 1;
    for (int c = 0; c < NCOLS; c++)
        if (src.col[c].len / src.col[c].itemsize < nrows)
            nrows = src.col[c].len / src.col[c].itemsize;
    const char *sep_s = PyBytes_AS_STRING(sep);
    Py_ssize_t sep_n = PyBytes_GET_SIZE(sep);
    if (out_init(&o, 512 * (n ? n : 1)) < 0)
        goto fail;
    for (Py_ssize_t k = 0; k < n; k++) {
        Py_ssize_t i = PyLong_AsSsize_t(PyList_GET_ITEM(idx, k));
        Py_ssize_t p = PyLong_AsSsize_t(PyList_GET_ITEM(phys, k));
        if ((i == -1 || p == -1) && PyErr_Occurred())
            goto fail;
        if (i < 0 || i >= nkeys || p < 0 || p >= nrows) {
            PyErr_SetString(PyExc_IndexError, "rows(): index out of range");
            goto fail;
        }
        if (k && sep_n) {
            if (out_reserve(&o, sep_n) < 0)
                goto fail;
            put(&o, sep_s, (size_t)sep_n);
        }
        Py_ssize_t mark_at = o.p - PyBytes_AS_STRING(o.bytes);
        int r = 0;
        PyObject *value[5];
        for (int c = 0; c < 5 && r == 0; c++) {
            long long code = item_at(&src.col[c == 4 ? C_FORMAT : C_HOST + c], p,
                                     src.col_signed[c == 4 ? C_FORMAT : C_HOST + c]);
            if (code < 0 || code >= src.nnames[c]) {
                PyErr_SetString(PyExc_IndexError, "rows(): a code outside its names");
                goto fail;
            }
            value[c] = PySequence_Fast_GET_ITEM(src.names[c], code);
        }
        long long lvl = item_at(&src.col[C_LEVEL], p, src.col_signed[C_LEVEL]);
        long long fac = item_at(&src.col[C_FAC], p, src.col_signed[C_FAC]);
        if (lvl < 0 || lvl >= nlevels || (fac != NO_FACILITY && (fac < 0 || fac >= nfacilities)) ||
            !PyUnicode_CheckExact(value[4]))
            r = 1;
        /* Everything before the message needs at most this much room. */
        if (r == 0 && out_reserve(&o, 7 + 37 + 13 + 29 + 15 + 29 + 8) < 0)
            goto fail;
        if (r == 0) {
            PUT_LIT(&o, "{\"id\":");
            long long ts = item_at(&src.keys_ts, i, src.ts_signed);
            put_id(&o, ts, item_at(&src.keys_seq, i, src.seq_signed));
            PUT_LIT(&o, ",\"timestamp\":");
            r = put_time_us(&o, ts);
        }
        if (r == 0) {
            PUT_LIT(&o, ",\"received_at\":");
            r = put_time_us(&o, item_at(&src.col[C_RECV], p, src.col_signed[C_RECV]));
        }
        static const char *const keys[4] = {",\"host\":", ",\"service\":", ",\"procid\":",
                                            ",\"msgid\":"};
        static const size_t key_len[4] = {8, 11, 10, 9};
        for (int c = 0; c < 4 && r == 0; c++) {
            size_t kl = key_len[c];
            if (out_reserve(&o, (Py_ssize_t)kl) < 0)
                goto fail;
            put(&o, keys[c], kl);
            r = put_opt(&o, value[c]);
        }
        if (r == 0) {
            if (out_reserve(&o, 12 + 24 + 9 + 24 + 11) < 0)
                goto fail;
            PUT_LIT(&o, ",\"facility\":");
            if (fac == NO_FACILITY)
                PUT_LIT(&o, "null");
            else
                put(&o, facility_json[fac], facility_len[fac]);
            PUT_LIT(&o, ",\"level\":");
            put(&o, level_json[lvl], level_len[lvl]);
            PUT_LIT(&o, ",\"message\":");
            long long o0 = item_at(&src.offs, p, src.offs_signed);
            long long o1 = item_at(&src.offs, p + 1, src.offs_signed);
            Py_ssize_t lo = 0, hi = src.nbufs;
            while (hi - lo > 1) {
                Py_ssize_t mid = (lo + hi) / 2;
                if (src.starts[mid] <= o0)
                    lo = mid;
                else
                    hi = mid;
            }
            long long a = o0 - src.starts[lo], b = o1 - gap - src.starts[lo];
            if (a < 0 || b < a || b > src.bufs[lo].len) {
                PyErr_SetString(PyExc_IndexError, "rows(): a message outside its buffer");
                goto fail;
            }
            r = put_utf8(&o, (const unsigned char *)src.bufs[lo].buf + a, (Py_ssize_t)(b - a));
        }
        PyObject *sd = Py_None, *fields = Py_None;
        if (r == 0 && extras != Py_None) {
            PyObject *pair = PyList_GET_ITEM(extras, k);
            if (!PyTuple_CheckExact(pair) || PyTuple_GET_SIZE(pair) != 2)
                r = 1;
            else {
                sd = PyTuple_GET_ITEM(pair, 0);
                fields = PyTuple_GET_ITEM(pair, 1);
            }
        }
        if (r == 0) {
            if (out_reserve(&o, 19) < 0)
                goto fail;
            PUT_LIT(&o, ",\"structured_data\":");
            r = put_extra(&o, sd, object_json);
        }
        if (r == 0) {
            if (out_reserve(&o, 10) < 0)
                goto fail;
            PUT_LIT(&o, ",\"fields\":");
            r = put_extra(&o, fields, object_json);
        }
        if (r == 0) {
            if (out_reserve(&o, 10) < 0)
                goto fail;
            PUT_LIT(&o, ",\"format\":");
            r = put_str(&o, value[4]);
        }
        if (r == 0) {
            if (out_reserve(&o, 1) < 0)
                goto fail;
            PUT_LIT(&o, "}");
        }
        if (r < 0)
            goto fail;
        if (r > 0) {
            o.p = PyBytes_AS_STRING(o.bytes) + mark_at;
            PyObject *index = PyLong_FromSsize_t(k);
            if (index == NULL)
                goto fail;
            PyObject *row = PyObject_CallOneArg(fallback, index);
            Py_DECREF(index);
            if (row == NULL)
                goto fail;
            r = put_ascii(&o, row);
            Py_DECREF(row);
            if (r < 0)
                goto fail;
        }
    }
    source_release(&src);
    return out_finish(&o);
fail:
    source_release(&src);
    Py_XDECREF(o.bytes);
    return NULL;
}

/* The JSON of each name (a str of printable ASCII) of a table, quoted. */
static int read_names(PyObject *names, char table[][24], size_t *lens, int *count) {
    PyObject *seq = PySequence_Fast(names, "names must be a sequence of str");
    if (seq == NULL)
        return -1;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    if (n > MAX_NAMES) {
        Py_DECREF(seq);
        PyErr_SetString(PyExc_ValueError, "too many names");
        return -1;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *s = PySequence_Fast_GET_ITEM(seq, i);
        const char *text = PyUnicode_Check(s) ? PyUnicode_AsUTF8(s) : NULL;
        size_t len = text == NULL ? 0 : strlen(text);
        int ok = text != NULL && len + 3 <= sizeof table[0];
        for (size_t k = 0; ok && k < len; k++)
            ok = plain((unsigned char)text[k]);
        if (!ok) {
            Py_DECREF(seq);
            if (!PyErr_Occurred())
                PyErr_SetString(PyExc_ValueError, "names must be short printable ASCII");
            return -1;
        }
        table[i][0] = '"';
        memcpy(table[i] + 1, text, len);
        table[i][len + 1] = '"';
        table[i][len + 2] = '\0';
        lens[i] = len + 2;
    }
    *count = (int)n;
    Py_DECREF(seq);
    return 0;
}

static PyObject *render_setup(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    (void)self;
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "setup(Record, LEVELS, FACILITIES) takes 3 arguments");
        return NULL;
    }
    if (!PyType_Check(args[0])) {
        PyErr_SetString(PyExc_TypeError, "setup: Record must be a type");
        return NULL;
    }
    PyTypeObject *t = (PyTypeObject *)args[0];
    Py_ssize_t offsets[NFIELDS];
    for (int i = 0; i < NFIELDS; i++) {
        PyObject *d = PyDict_GetItemString(t->tp_dict, field_names[i]); /* borrowed */
        if (d == NULL || !Py_IS_TYPE(d, &PyMemberDescr_Type) ||
            ((PyMemberDescrObject *)d)->d_member->type != T_OBJECT_EX) {
            PyErr_Format(PyExc_TypeError, "setup: Record.%s is not an object slot",
                         field_names[i]);
            return NULL;
        }
        offsets[i] = ((PyMemberDescrObject *)d)->d_member->offset;
    }
    if (read_names(args[1], level_json, level_len, &nlevels) < 0 ||
        read_names(args[2], facility_json, facility_len, &nfacilities) < 0)
        return NULL;
    memcpy(slot_offset, offsets, sizeof offsets);
    Py_INCREF(t);
    Py_XSETREF(record_type, t);
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"setup", (PyCFunction)(void (*)(void))render_setup, METH_FASTCALL,
     "setup(Record, LEVELS, FACILITIES) -> None: the record type and name tables, once."},
    {"records", (PyCFunction)(void (*)(void))render_records, METH_FASTCALL,
     "records(items, separator, fallback, object_json) -> bytes\n\n"
     "The JSON of each (id, record) pair, `separator` between them, as\n"
     "`fallback(record, id)` (query.record_json) writes it; unusual records\n"
     "are written by `fallback` itself, non-empty dicts by `object_json`."},
    {"rows", (PyCFunction)(void (*)(void))render_rows, METH_FASTCALL,
     "rows(ts, seqs, idx, phys, cols, names, text, extras, separator, fallback, object_json)\n"
     "-> bytes: records' JSON straight from a shard's or a block's columns."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT, "collector._render",
    "Records -> the API's JSON at C speed, byte for byte as collector.query writes it.",
    -1, methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__render(void) {
    /* COLLECTOR_PURE=1 forces the pure path, as for collector._native. */
    const char *pure = getenv("COLLECTOR_PURE");
    if (pure != NULL && pure[0] != '\0' && strcmp(pure, "0") != 0) {
        PyErr_SetString(PyExc_ImportError, "COLLECTOR_PURE is set");
        return NULL;
    }
    for (int c = 0; c < 256; c++)
        plain_byte[c] = (unsigned char)plain((Py_UCS4)c);
    return PyModule_Create(&module_def);
}
