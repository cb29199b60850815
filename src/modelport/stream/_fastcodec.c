/* modelport.stream._fastcodec: the stream worker's common batch in C.
 *
 * Two functions, each an exact shortcut for a Python path that stays the reference (see
 * modelport/stream/fastcodec.py, which also holds their pure-Python equivalents):
 *
 *   rows(values, names, picks, allow_extra) -> (matrix bytes, pick columns) | None
 *       Each message a JSON object whose inputs `names` are all JSON numbers: the float64
 *       matrix (row-major, one row per message, one column per name) that
 *       `Signature.coerce(list(map(orjson.loads, values)))` makes, and for each name in `picks`
 *       the JSON text `orjson.dumps(record.get(name))` writes (a column as `fill` takes it:
 *       joined with commas unless a text holds one).  Returns None for anything it
 *       does not take on exactly (a message it cannot read, a duplicate input, a number out of
 *       range, text needing escapes, ...): the caller then takes the Python path, which decides
 *       and explains.  It never raises for message content.
 *
 *   fill(pieces, columns) -> list of bytes
 *       pieces[0] + columns[0][i] + pieces[1] + ... + pieces[k] for each row i, where a column
 *       is a list of bytes or one bytes object joining its texts with commas (then no text may
 *       hold a comma: numbers, say, as orjson writes a list of them).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

#define MAX_DEPTH 64
#define MAX_NUMBER 64 /* longer number text is left to the Python path */

typedef struct {
    const unsigned char *p;
    const unsigned char *end;
} Cursor;

static void skip_ws(Cursor *c) {
    while (c->p < c->end && (*c->p == ' ' || *c->p == '\t' || *c->p == '\n' || *c->p == '\r'))
        c->p++;
}

/* A JSON number at c->p, checked against the grammar.  On success sets *start, *len and
 * *integer (no fraction, no exponent) and moves past it. */
static int scan_number(Cursor *c, const unsigned char **start, Py_ssize_t *len, int *integer) {
    const unsigned char *p = c->p, *end = c->end;
    *start = p;
    *integer = 1;
    if (p < end && *p == '-') p++;
    if (p >= end) return 0;
    if (*p == '0') {
        p++;
    } else if (*p >= '1' && *p <= '9') {
        while (p < end && *p >= '0' && *p <= '9') p++;
    } else {
        return 0;
    }
    if (p < end && *p == '.') {
        *integer = 0;
        p++;
        if (p >= end || *p < '0' || *p > '9') return 0;
        while (p < end && *p >= '0' && *p <= '9') p++;
    }
    if (p < end && (*p == 'e' || *p == 'E')) {
        *integer = 0;
        p++;
        if (p < end && (*p == '+' || *p == '-')) p++;
        if (p >= end || *p < '0' || *p > '9') return 0;
        while (p < end && *p >= '0' && *p <= '9') p++;
    }
    *len = p - *start;
    c->p = p;
    return 1;
}

static const double POWERS[] = {1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,
                                 1e8,  1e9,  1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
                                 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};

/* Clinger's fast path: number text with at most 15 significant digits and a decimal exponent
 * within 22 is m * 10^e or m / 10^e with m and 10^|e| exact doubles, so one IEEE operation
 * rounds it correctly.  0 for anything else (then the general conversion). */
static int simple_number(const unsigned char *s, Py_ssize_t len, double *out) {
    const unsigned char *p = s, *end = s + len;
    int negative = 0, digits = 0;
    int64_t mantissa = 0, exponent = 0;
    if (*p == '-') {
        negative = 1;
        p++;
    }
    while (p < end && *p == '0') p++; /* leading zeros are not significant */
    for (; p < end && *p >= '0' && *p <= '9'; p++) {
        if (++digits > 15) return 0;
        mantissa = mantissa * 10 + (*p - '0');
    }
    if (p < end && *p == '.') {
        p++;
        if (digits == 0)
            for (; p < end && *p == '0'; p++) exponent--;
        for (; p < end && *p >= '0' && *p <= '9'; p++) {
            if (++digits > 15) return 0;
            mantissa = mantissa * 10 + (*p - '0');
            exponent--;
        }
    }
    if (p < end) { /* e or E */
        int sign = 1;
        int64_t e = 0;
        p++;
        if (*p == '+' || *p == '-') sign = *p++ == '-' ? -1 : 1;
        for (; p < end; p++) {
            e = e * 10 + (*p - '0');
            if (e > 1000) return 0;
        }
        exponent += sign * e;
    }
    if (exponent < -22 || exponent > 22) return 0;
    double v = (double)mantissa;
    v = exponent < 0 ? v / POWERS[-exponent] : v * POWERS[exponent];
    *out = negative ? -v : v;
    return 1;
}

/* Whether integer text is short enough for int64 (at most 18 digits, a sign aside). */
static int short_int(const unsigned char *s, Py_ssize_t len) {
    return len - (s[0] == '-') <= 18;
}

/* The value of number text as orjson gives it, as a double; 0 if out of range or too long. */
static int number_value(const unsigned char *s, Py_ssize_t len, int integer, double *out) {
    char buf[MAX_NUMBER + 1];
    if (len > MAX_NUMBER) return 0;
    if (!integer && simple_number(s, len, out)) return 1;
    memcpy(buf, s, (size_t)len);
    buf[len] = '\0';
    if (integer && short_int(s, len)) { /* an int: -0 is 0, and (double) rounds to nearest */
        *out = (double)strtoll(buf, NULL, 10);
        return 1;
    }
    char *stop = NULL;
    double v = PyOS_string_to_double(buf, &stop, NULL);  /* correctly rounded, any locale */
    if (v == -1.0 && PyErr_Occurred()) {
        PyErr_Clear();
        return 0;
    }
    if (stop != buf + len || !Py_IS_FINITE(v)) return 0;  /* orjson refuses infinities */
    if (integer) return 0;  /* a big int: orjson's value need not be this double */
    *out = v;
    return 1;
}

/* Length of the UTF-8 sequence at p (valid, shortest form, no surrogates), or 0. */
static int utf8_length(const unsigned char *p, const unsigned char *end) {
    unsigned char b = p[0];
    if (b < 0xC2 || b > 0xF4) return 0;
    int n = b < 0xE0 ? 2 : b < 0xF0 ? 3 : 4;
    if (end - p < n) return 0;
    for (int i = 1; i < n; i++)
        if ((p[i] & 0xC0) != 0x80) return 0;
    if (b == 0xE0 && p[1] < 0xA0) return 0;  /* overlong */
    if (b == 0xED && p[1] >= 0xA0) return 0; /* surrogate */
    if (b == 0xF0 && p[1] < 0x90) return 0;  /* overlong */
    if (b == 0xF4 && p[1] >= 0x90) return 0; /* above U+10FFFF */
    return n;
}

static int hex4(const unsigned char *p, unsigned *out) {
    unsigned v = 0;
    for (int i = 0; i < 4; i++) {
        unsigned char h = p[i];
        v <<= 4;
        if (h >= '0' && h <= '9') v |= (unsigned)(h - '0');
        else if (h >= 'a' && h <= 'f') v |= (unsigned)(h - 'a' + 10);
        else if (h >= 'A' && h <= 'F') v |= (unsigned)(h - 'A' + 10);
        else return 0;
    }
    *out = v;
    return 1;
}

/* A JSON string at c->p (on its opening quote).  Sets *plain when it holds only printable
 * ASCII without escapes (then its text, quotes included, is what orjson.dumps writes for it).
 * An escaped surrogate must be half of a pair, as orjson requires. */
static int scan_string(Cursor *c, int *plain) {
    const unsigned char *p = c->p + 1, *end = c->end;
    *plain = 1;
    while (p < end) {
        unsigned char b = *p;
        if (b == '"') {
            c->p = p + 1;
            return 1;
        }
        if (b < 0x20) return 0;
        if (b == '\\') {
            *plain = 0;
            if (p + 1 >= end) return 0;
            unsigned char e = p[1];
            if (e == 'u') {
                unsigned cp;
                if (end - p < 6 || !hex4(p + 2, &cp)) return 0;
                p += 6;
                if (cp >= 0xDC00 && cp <= 0xDFFF) return 0; /* a low surrogate first */
                if (cp >= 0xD800 && cp <= 0xDBFF) {        /* needs its low surrogate */
                    unsigned low;
                    if (end - p < 6 || p[0] != '\\' || p[1] != 'u' || !hex4(p + 2, &low) ||
                        low < 0xDC00 || low > 0xDFFF)
                        return 0;
                    p += 6;
                }
            } else if (e == '"' || e == '\\' || e == '/' || e == 'b' || e == 'f' || e == 'n' ||
                       e == 'r' || e == 't') {
                p += 2;
            } else {
                return 0;
            }
        } else if (b >= 0x80) {
            *plain = 0;
            int n = utf8_length(p, end);
            if (!n) return 0;
            p += n;
        } else {
            p++;
        }
    }
    return 0;
}

static int skip_value(Cursor *c, int depth);

static int skip_container(Cursor *c, int depth, unsigned char close) {
    if (depth >= MAX_DEPTH) return 0;
    c->p++;
    skip_ws(c);
    if (c->p < c->end && *c->p == close) {
        c->p++;
        return 1;
    }
    for (;;) {
        if (close == '}') {
            int plain;
            skip_ws(c);
            if (c->p >= c->end || *c->p != '"' || !scan_string(c, &plain)) return 0;
            skip_ws(c);
            if (c->p >= c->end || *c->p != ':') return 0;
            c->p++;
        }
        if (!skip_value(c, depth + 1)) return 0;
        skip_ws(c);
        if (c->p >= c->end) return 0;
        if (*c->p == ',') {
            c->p++;
            continue;
        }
        if (*c->p == close) {
            c->p++;
            return 1;
        }
        return 0;
    }
}

static int literal(Cursor *c, const char *word, Py_ssize_t n) {
    if (c->end - c->p < n || memcmp(c->p, word, (size_t)n) != 0) return 0;
    c->p += n;
    return 1;
}

/* Any JSON value that orjson.loads accepts (within MAX_DEPTH), checked and passed over. */
static int skip_value(Cursor *c, int depth) {
    skip_ws(c);
    if (c->p >= c->end) return 0;
    switch (*c->p) {
    case '{':
        return skip_container(c, depth, '}');
    case '[':
        return skip_container(c, depth, ']');
    case '"': {
        int plain;
        return scan_string(c, &plain);
    }
    case 't':
        return literal(c, "true", 4);
    case 'f':
        return literal(c, "false", 5);
    case 'n':
        return literal(c, "null", 4);
    default: {
        const unsigned char *s;
        Py_ssize_t len;
        int integer;
        double v;
        if (!scan_number(c, &s, &len, &integer)) return 0;
        if (integer && short_int(s, len)) return 1;
        return number_value(s, len, 0, &v); /* finite as a double, as orjson needs */
    }
    }
}

/* The JSON text orjson.dumps writes for the value at c->p, if it is the value's own text: an
 * int of at most 18 digits (not -0), a plain string, true, false or null.  Moves past it. */
static int pick_text(Cursor *c, const unsigned char **s, Py_ssize_t *len) {
    const unsigned char *start = c->p;
    int ok;
    switch (*start) {
    case '"': {
        int plain;
        ok = scan_string(c, &plain) && plain;
        break;
    }
    case 't':
        ok = literal(c, "true", 4);
        break;
    case 'f':
        ok = literal(c, "false", 5);
        break;
    case 'n':
        ok = literal(c, "null", 4);
        break;
    default: {
        const unsigned char *n;
        Py_ssize_t nlen;
        int integer;
        ok = scan_number(c, &n, &nlen, &integer) && integer && short_int(n, nlen) &&
             !(nlen == 2 && n[0] == '-' && n[1] == '0');
    }
    }
    *s = start;
    *len = c->p - start;
    return ok;
}

typedef struct {
    const char *text;
    Py_ssize_t len;
} Name;

static int names_from(PyObject *tuple, Name **out, Py_ssize_t *count) {
    if (!PyTuple_Check(tuple)) {
        PyErr_SetString(PyExc_TypeError, "names must be a tuple of bytes");
        return 0;
    }
    Py_ssize_t n = PyTuple_GET_SIZE(tuple);
    Name *names = PyMem_Calloc((size_t)(n ? n : 1), sizeof(Name));
    if (!names) {
        PyErr_NoMemory();
        return 0;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *item = PyTuple_GET_ITEM(tuple, i);
        if (!PyBytes_Check(item)) {
            PyMem_Free(names);
            PyErr_SetString(PyExc_TypeError, "names must be a tuple of bytes");
            return 0;
        }
        names[i].text = PyBytes_AS_STRING(item);
        names[i].len = PyBytes_GET_SIZE(item);
    }
    *out = names;
    *count = n;
    return 1;
}

static Py_ssize_t find(const Name *names, Py_ssize_t n, const unsigned char *s, Py_ssize_t len) {
    for (Py_ssize_t i = 0; i < n; i++)
        if (names[i].len == len && memcmp(names[i].text, s, (size_t)len) == 0) return i;
    return -1;
}

enum { REFUSED = 0, TAKEN = 1 };

/* One message into row `out` (n_names doubles) and its pick texts (spans into the message;
 * start NULL for a pick the message lacks). */
static int read_row(const unsigned char *data, Py_ssize_t size, const Name *names,
                    Py_ssize_t n_names, const Name *picks, Py_ssize_t n_picks, int allow_extra,
                    double *out, const unsigned char **pick_s, Py_ssize_t *pick_len,
                    unsigned char *seen) {
    Cursor c = {data, data + size};
    memset(seen, 0, (size_t)n_names);
    for (Py_ssize_t j = 0; j < n_picks; j++) pick_s[j] = NULL;
    Py_ssize_t found = 0;
    skip_ws(&c);
    if (c.p >= c.end || *c.p != '{') return REFUSED;
    c.p++;
    skip_ws(&c);
    if (c.p < c.end && *c.p == '}') return REFUSED; /* no inputs */
    for (;;) {
        int plain;
        skip_ws(&c);
        if (c.p >= c.end || *c.p != '"') return REFUSED;
        const unsigned char *key = c.p + 1;
        if (!scan_string(&c, &plain) || !plain) return REFUSED;
        Py_ssize_t key_len = c.p - 1 - key;
        skip_ws(&c);
        if (c.p >= c.end || *c.p != ':') return REFUSED;
        c.p++;
        skip_ws(&c);
        if (c.p >= c.end) return REFUSED;
        Py_ssize_t input = find(names, n_names, key, key_len);
        Py_ssize_t pick = find(picks, n_picks, key, key_len);
        if (pick >= 0) {
            if (pick_s[pick] != NULL) return REFUSED; /* a duplicate: the last one would win */
            Cursor at = c;
            if (!pick_text(&at, &pick_s[pick], &pick_len[pick])) return REFUSED;
        }
        if (input >= 0) {
            const unsigned char *s;
            Py_ssize_t len;
            int integer;
            if (seen[input]) return REFUSED;
            if (!scan_number(&c, &s, &len, &integer)) return REFUSED; /* not a number */
            if (!number_value(s, len, integer, &out[input])) return REFUSED;
            seen[input] = 1;
            found++;
        } else if (!allow_extra) { /* coerce refuses any field but the inputs */
            return REFUSED;
        } else if (!skip_value(&c, 1)) {
            return REFUSED;
        }
        skip_ws(&c);
        if (c.p >= c.end) return REFUSED;
        if (*c.p == ',') {
            c.p++;
            continue;
        }
        if (*c.p != '}') return REFUSED;
        c.p++;
        break;
    }
    skip_ws(&c);
    if (c.p != c.end || found != n_names) return REFUSED;
    return TAKEN;
}

/* One pick's texts ("null" where missing) as a joined column when none holds a comma, else
 * as a list of bytes. */
static PyObject *pick_column(const unsigned char **spans, const Py_ssize_t *lens, Py_ssize_t n) {
    Py_ssize_t total = n - 1;
    int commas = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        if (spans[i] == NULL) {
            total += 4;
            continue;
        }
        total += lens[i];
        commas = commas || memchr(spans[i], ',', (size_t)lens[i]) != NULL;
    }
    if (!commas) {
        PyObject *joined = PyBytes_FromStringAndSize(NULL, total);
        if (!joined) return NULL;
        char *w = PyBytes_AS_STRING(joined);
        for (Py_ssize_t i = 0; i < n; i++) {
            if (i) *w++ = ',';
            const char *text = spans[i] ? (const char *)spans[i] : "null";
            Py_ssize_t len = spans[i] ? lens[i] : 4;
            memcpy(w, text, (size_t)len);
            w += len;
        }
        return joined;
    }
    PyObject *column = PyList_New(n);
    if (!column) return NULL;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *text = spans[i] ? PyBytes_FromStringAndSize((const char *)spans[i], lens[i])
                                  : PyBytes_FromStringAndSize("null", 4);
        if (!text) {
            Py_DECREF(column);
            return NULL;
        }
        PyList_SET_ITEM(column, i, text);
    }
    return column;
}

static PyObject *rows(PyObject *self, PyObject *args) {
    PyObject *values, *names_obj, *picks_obj;
    int allow_extra;
    if (!PyArg_ParseTuple(args, "O!OOp", &PyList_Type, &values, &names_obj, &picks_obj,
                          &allow_extra))
        return NULL;
    Name *names = NULL, *picks = NULL;
    Py_ssize_t n_names, n_picks;
    PyObject *matrix = NULL, *columns = NULL, *result = NULL;
    const unsigned char **pick_s = NULL;
    Py_ssize_t *pick_len = NULL, *spans_len = NULL;
    const unsigned char **spans = NULL;
    unsigned char *seen = NULL;
    if (!names_from(names_obj, &names, &n_names) || !names_from(picks_obj, &picks, &n_picks))
        goto done;
    Py_ssize_t n = PyList_GET_SIZE(values);
    if (n == 0 || n_names == 0) {
        result = Py_NewRef(Py_None);
        goto done;
    }
    matrix = PyBytes_FromStringAndSize(NULL, n * n_names * (Py_ssize_t)sizeof(double));
    pick_s = PyMem_Calloc((size_t)(n_picks ? n_picks : 1), sizeof(*pick_s));
    pick_len = PyMem_Calloc((size_t)(n_picks ? n_picks : 1), sizeof(*pick_len));
    spans = PyMem_Calloc((size_t)(n * (n_picks ? n_picks : 1)), sizeof(*spans));
    spans_len = PyMem_Calloc((size_t)(n * (n_picks ? n_picks : 1)), sizeof(*spans_len));
    seen = PyMem_Malloc((size_t)n_names);
    if (!matrix || !pick_s || !pick_len || !spans || !spans_len || !seen) {
        if (!PyErr_Occurred()) PyErr_NoMemory();
        goto done;
    }
    double *cells = (double *)PyBytes_AS_STRING(matrix);
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *value = PyList_GET_ITEM(values, i);
        if (!PyBytes_Check(value) ||
            read_row((const unsigned char *)PyBytes_AS_STRING(value), PyBytes_GET_SIZE(value),
                     names, n_names, picks, n_picks, allow_extra, cells + i * n_names, pick_s,
                     pick_len, seen) != TAKEN) {
            result = Py_NewRef(Py_None);
            goto done;
        }
        for (Py_ssize_t j = 0; j < n_picks; j++) {
            spans[j * n + i] = pick_s[j];
            spans_len[j * n + i] = pick_len[j];
        }
    }
    columns = PyList_New(n_picks);
    if (!columns) goto done;
    for (Py_ssize_t j = 0; j < n_picks; j++) {
        PyObject *column = pick_column(spans + j * n, spans_len + j * n, n);
        if (!column) goto done;
        PyList_SET_ITEM(columns, j, column);
    }
    result = PyTuple_Pack(2, matrix, columns);
done:
    Py_XDECREF(matrix);
    Py_XDECREF(columns);
    PyMem_Free(names);
    PyMem_Free(picks);
    PyMem_Free(pick_s);
    PyMem_Free(pick_len);
    PyMem_Free(spans);
    PyMem_Free(spans_len);
    PyMem_Free(seen);
    return result;
}

/* Where each column's next text is: a list's item i, or the next comma-separated text of a
 * joined column (one bytes object holding n texts separated by n - 1 commas). */
typedef struct {
    PyObject *list;          /* NULL for a joined column */
    const char *at, *end;    /* a joined column's unread part */
} Column;

static PyObject *fill(PyObject *self, PyObject *args) {
    PyObject *pieces, *columns, *out = NULL;
    if (!PyArg_ParseTuple(args, "O!O!", &PyTuple_Type, &pieces, &PyList_Type, &columns))
        return NULL;
    Py_ssize_t k = PyList_GET_SIZE(columns);
    if (PyTuple_GET_SIZE(pieces) != k + 1) {
        PyErr_SetString(PyExc_ValueError, "fill needs one piece more than columns");
        return NULL;
    }
    Py_ssize_t fixed = 0;
    for (Py_ssize_t j = 0; j <= k; j++) {
        PyObject *piece = PyTuple_GET_ITEM(pieces, j);
        if (!PyBytes_Check(piece)) {
            PyErr_SetString(PyExc_TypeError, "pieces must be bytes");
            return NULL;
        }
        fixed += PyBytes_GET_SIZE(piece);
    }
    Column *cols = PyMem_Calloc((size_t)(k ? k : 1), sizeof(Column));
    const char **texts = PyMem_Calloc((size_t)(k ? k : 1), sizeof(char *));
    Py_ssize_t *sizes = PyMem_Calloc((size_t)(k ? k : 1), sizeof(Py_ssize_t));
    if (!cols || !texts || !sizes) {
        PyErr_NoMemory();
        goto done;
    }
    Py_ssize_t n = -1;
    for (Py_ssize_t j = 0; j < k; j++) {
        PyObject *column = PyList_GET_ITEM(columns, j);
        Py_ssize_t rows;
        if (PyList_Check(column)) {
            cols[j].list = column;
            rows = PyList_GET_SIZE(column);
            for (Py_ssize_t i = 0; i < rows; i++)
                if (!PyBytes_Check(PyList_GET_ITEM(column, i))) {
                    PyErr_SetString(PyExc_TypeError, "columns must be lists of bytes or bytes");
                    goto done;
                }
        } else if (PyBytes_Check(column)) {
            cols[j].at = PyBytes_AS_STRING(column);
            cols[j].end = cols[j].at + PyBytes_GET_SIZE(column);
            rows = 1;
            for (const char *c = cols[j].at; (c = memchr(c, ',', (size_t)(cols[j].end - c)));
                 c++)
                rows++;
        } else {
            PyErr_SetString(PyExc_TypeError, "columns must be lists of bytes or bytes");
            goto done;
        }
        if (n < 0) {
            n = rows;
        } else if (rows != n) {
            PyErr_SetString(PyExc_ValueError, "columns differ in length");
            goto done;
        }
    }
    if (n < 0) {
        PyErr_SetString(PyExc_ValueError, "fill needs at least one column");
        goto done;
    }
    out = PyList_New(n);
    if (!out) goto done;
    for (Py_ssize_t i = 0; i < n; i++) {
        Py_ssize_t size = fixed;
        for (Py_ssize_t j = 0; j < k; j++) {
            if (cols[j].list) {
                PyObject *cell = PyList_GET_ITEM(cols[j].list, i);
                texts[j] = PyBytes_AS_STRING(cell);
                sizes[j] = PyBytes_GET_SIZE(cell);
            } else {
                const char *comma = memchr(cols[j].at, ',', (size_t)(cols[j].end - cols[j].at));
                texts[j] = cols[j].at;
                sizes[j] = (comma ? comma : cols[j].end) - cols[j].at;
                cols[j].at += sizes[j] + (comma != NULL);
            }
            size += sizes[j];
        }
        PyObject *row = PyBytes_FromStringAndSize(NULL, size);
        if (!row) {
            Py_CLEAR(out);
            goto done;
        }
        char *w = PyBytes_AS_STRING(row);
        for (Py_ssize_t j = 0; j <= k; j++) {
            PyObject *piece = PyTuple_GET_ITEM(pieces, j);
            memcpy(w, PyBytes_AS_STRING(piece), (size_t)PyBytes_GET_SIZE(piece));
            w += PyBytes_GET_SIZE(piece);
            if (j < k) {
                memcpy(w, texts[j], (size_t)sizes[j]);
                w += sizes[j];
            }
        }
        PyList_SET_ITEM(out, i, row);
    }
done:
    PyMem_Free(cols);
    PyMem_Free(texts);
    PyMem_Free(sizes);
    return out;
}

static PyMethodDef methods[] = {
    {"rows", rows, METH_VARARGS,
     "rows(values, names, picks, allow_extra) -> (matrix, pick columns) or None"},
    {"fill", fill, METH_VARARGS, "fill(pieces, columns) -> list of bytes"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_fastcodec",
    "The stream worker's common batch in C (see modelport.stream.fastcodec).", -1, methods,
};

PyMODINIT_FUNC PyInit__fastcodec(void) { return PyModule_Create(&module); }
