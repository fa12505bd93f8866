/* The codec's request decoders in C (built by setup.py; optional at run time: predictor/codec/decode.py
 * decodes everything in Python too, and names a client's mistake there).
 *
 * decode_mapping: one {feature: value} dict -> a float64 row, for the common well-formed case;
 *   returns False when anything needs the careful (error-reporting) Python path.
 * fill_numeric, fill_categories: one tensor's values into its float64 column (same contract).
 * v2_json_columns: a plain V2 JSON infer body, straight from its bytes into the model's columns.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "_module.h"

/* decode_mapping(obj, names, kinds, tables, unknowns, out) -> bool
 * names: tuple of str; kinds: bytes (0 numeric, 1 categorical); tables: tuple of dict-or-None;
 * unknowns, defaults: float64 buffers (defaults NaN = required); out: writable float64 buffer of len(names). */
static PyObject *decode_mapping(PyObject *self, PyObject *args) {
    PyObject *obj, *names, *kinds, *tables;
    Py_buffer unk_b, out_b, def_b;
    if (!PyArg_ParseTuple(args, "OO!SO!y*y*w*", &obj, &PyTuple_Type, &names, &kinds, &PyTuple_Type, &tables, &unk_b,
                          &def_b, &out_b))
        return NULL;
    const double *defaults = (const double *)def_b.buf; /* NaN: required (no default) */
    Py_ssize_t found = 0;
    int ok = PyDict_CheckExact(obj);
    Py_ssize_t n = PyTuple_GET_SIZE(names);
    const char *kind = PyBytes_AS_STRING(kinds);
    const double *unknown = (const double *)unk_b.buf;
    double *out = (double *)out_b.buf;
    if (PyBytes_GET_SIZE(kinds) != n || PyTuple_GET_SIZE(tables) != n ||
        out_b.len < n * (Py_ssize_t)sizeof(double) || unk_b.len < n * (Py_ssize_t)sizeof(double) ||
        def_b.len < n * (Py_ssize_t)sizeof(double))
        ok = 0;
    if (ok && PyDict_GET_SIZE(obj) > n) ok = 0; /* extra keys: careful path */
    for (Py_ssize_t j = 0; ok && j < n; j++) {
        PyObject *v = PyDict_GetItemWithError(obj, PyTuple_GET_ITEM(names, j));
        if (v == NULL && PyErr_Occurred()) { PyErr_Clear(); ok = 0; break; }
        if (v != NULL) found++;
        if (v == NULL || v == Py_None) { /* absent or null: the default of an optional feature */
            if (isnan(defaults[j])) { ok = 0; break; }
            out[j] = defaults[j];
            continue;
        }
        if (kind[j] == 0) {
            if (PyFloat_CheckExact(v)) {
                double d = PyFloat_AS_DOUBLE(v);
                if (!isfinite(d)) { ok = 0; break; }
                out[j] = d;
            } else if (PyLong_CheckExact(v)) {
                double d = PyLong_AsDouble(v);
                if (d == -1.0 && PyErr_Occurred()) { PyErr_Clear(); ok = 0; break; }
                if (!isfinite(d)) { ok = 0; break; }
                out[j] = d;
            } else { ok = 0; break; }
        } else {
            if (!PyUnicode_CheckExact(v)) { ok = 0; break; }
            PyObject *table = PyTuple_GET_ITEM(tables, j);
            if (!PyDict_CheckExact(table)) { ok = 0; break; }
            PyObject *code = PyDict_GetItemWithError(table, v);
            if (code == NULL) {
                if (PyErr_Occurred()) { PyErr_Clear(); ok = 0; break; }
                out[j] = unknown[j];
            } else if (PyFloat_CheckExact(code)) {
                out[j] = PyFloat_AS_DOUBLE(code);
            } else { ok = 0; break; }
        }
    }
    if (ok && found != PyDict_GET_SIZE(obj)) ok = 0; /* a key that is not a feature */
    PyBuffer_Release(&unk_b);
    PyBuffer_Release(&def_b);
    PyBuffer_Release(&out_b);
    if (ok) Py_RETURN_TRUE;
    Py_RETURN_FALSE;
}

/* fill_numeric(values, out) -> bool: out[i] = values[i] for a list of exact ints/floats (not bool), all
 * finite; False (out half-written) when anything needs the careful Python path. */
static PyObject *fill_numeric(PyObject *self, PyObject *args) {
    PyObject *seq;
    Py_buffer out_b;
    if (!PyArg_ParseTuple(args, "O!w*", &PyList_Type, &seq, &out_b)) return NULL;
    Py_ssize_t n = PyList_GET_SIZE(seq);
    double *out = (double *)out_b.buf;
    int ok = out_b.len >= n * (Py_ssize_t)sizeof(double);
    for (Py_ssize_t i = 0; ok && i < n; i++) {
        PyObject *v = PyList_GET_ITEM(seq, i);
        double d;
        if (PyFloat_CheckExact(v)) {
            d = PyFloat_AS_DOUBLE(v);
        } else if (PyLong_CheckExact(v)) {
            d = PyLong_AsDouble(v);
            if (d == -1.0 && PyErr_Occurred()) { PyErr_Clear(); ok = 0; break; }
        } else { ok = 0; break; }
        if (!isfinite(d)) { ok = 0; break; }
        out[i] = d;
    }
    PyBuffer_Release(&out_b);
    if (ok) Py_RETURN_TRUE;
    Py_RETURN_FALSE;
}

/* fill_categories(values, table, unknown, out) -> bool: out[i] = table.get(v, unknown) for a list of str
 * (bytes: decoded as UTF-8 with replacement); False when a value is anything else (careful Python path). */
static PyObject *fill_categories(PyObject *self, PyObject *args) {
    PyObject *seq, *table;
    double unknown;
    Py_buffer out_b;
    if (!PyArg_ParseTuple(args, "O!O!dw*", &PyList_Type, &seq, &PyDict_Type, &table, &unknown, &out_b)) return NULL;
    Py_ssize_t n = PyList_GET_SIZE(seq);
    double *out = (double *)out_b.buf;
    int ok = out_b.len >= n * (Py_ssize_t)sizeof(double);
    PyObject *last = NULL; /* the previous str value and its code: columns repeat values (no hashing then) */
    double last_code = 0.0;
    for (Py_ssize_t i = 0; ok && i < n; i++) {
        PyObject *v = PyList_GET_ITEM(seq, i), *key = NULL, *code;
        if (last != NULL && PyUnicode_CheckExact(v) && PyUnicode_GET_LENGTH(v) == PyUnicode_GET_LENGTH(last) &&
            PyUnicode_KIND(v) == PyUnicode_KIND(last) &&
            memcmp(PyUnicode_DATA(v), PyUnicode_DATA(last),
                   (size_t)PyUnicode_GET_LENGTH(v) * PyUnicode_KIND(v)) == 0) {
            out[i] = last_code;
            continue;
        }
        if (PyUnicode_CheckExact(v)) {
            code = PyDict_GetItemWithError(table, v);
        } else if (PyBytes_CheckExact(v)) {
            key = PyUnicode_DecodeUTF8(PyBytes_AS_STRING(v), PyBytes_GET_SIZE(v), "replace");
            if (key == NULL) { PyErr_Clear(); ok = 0; break; }
            code = PyDict_GetItemWithError(table, key);
        } else { ok = 0; break; }
        if (code == NULL) {
            if (PyErr_Occurred()) { PyErr_Clear(); ok = 0; }
            else out[i] = unknown;
        } else if (PyFloat_CheckExact(code)) {
            out[i] = PyFloat_AS_DOUBLE(code);
        } else {
            ok = 0;
        }
        if (ok && key == NULL) { /* v is a str the list holds: remember it */
            last = v;
            last_code = out[i];
        }
        Py_XDECREF(key);
    }
    PyBuffer_Release(&out_b);
    if (ok) Py_RETURN_TRUE;
    Py_RETURN_FALSE;
}

/* v2_json_columns(body, names, kinds, tables, unknowns, max_rows) -> (bytearray, n_rows, id) or None
 * A V2 JSON infer body of the common plain shape, one [n]-shaped tensor per feature, read straight into the
 * transposed matrix (feature j's n values at [j * n, (j + 1) * n) of the float64 bytearray) with no Python
 * object per value: numbers as floats (integers exactly, others by PyOS_string_to_double, correctly
 * rounded like orjson), categories looked up by their bytes (unknown → unknowns[j]). None — parse it the
 * careful way, which also names any mistake — for anything else: escapes or non-ASCII in strings, null or
 * non-number values, integers of 16+ digits, values that overflow, another shape or datatype, a missing or
 * repeated feature, keys other than id/inputs/parameters (null)/outputs (null or []) and
 * name/shape/datatype/data/parameters (null), or data before its tensor's name, shape and datatype. */
typedef struct {
    const char *p, *end;
} JCur;

static void j_ws(JCur *c) {
    while (c->p < c->end && (*c->p == ' ' || *c->p == '\t' || *c->p == '\n' || *c->p == '\r')) c->p++;
}

static int j_char(JCur *c, char ch) {
    j_ws(c);
    if (c->p < c->end && *c->p == ch) { c->p++; return 1; }
    return 0;
}

static int j_null(JCur *c) {
    j_ws(c);
    if (c->end - c->p >= 4 && memcmp(c->p, "null", 4) == 0) { c->p += 4; return 1; }
    return 0;
}

/* a string of printable ASCII without escapes */
static int j_str(JCur *c, const char **s, Py_ssize_t *n) {
    if (!j_char(c, '"')) return 0;
    const char *start = c->p;
    while (c->p < c->end) {
        unsigned char ch = (unsigned char)*c->p;
        if (ch == '"') break;
        if (ch == '\\' || ch < 0x20 || ch >= 0x80) return 0;
        c->p++;
    }
    if (c->p >= c->end) return 0;
    *s = start;
    *n = c->p - start;
    c->p++;
    return 1;
}

static int j_is(const char *s, Py_ssize_t n, const char *lit) {
    return (size_t)n == strlen(lit) && memcmp(s, lit, (size_t)n) == 0;
}

#define J_DIGIT(q) ((q) < c->end && *(q) >= '0' && *(q) <= '9')

/* a JSON number, finite as a double */
static int j_num(JCur *c, double *out) {
    j_ws(c);
    const char *s = c->p, *q = s;
    int neg = 0, whole = 1;
    if (q < c->end && *q == '-') { neg = 1; q++; }
    if (q < c->end && *q == '0') q++;
    else if (J_DIGIT(q)) { while (J_DIGIT(q)) q++; }
    else return 0;
    Py_ssize_t digits = q - s - neg;
    if (q < c->end && *q == '.') {
        whole = 0;
        q++;
        if (!J_DIGIT(q)) return 0;
        while (J_DIGIT(q)) q++;
    }
    if (q < c->end && (*q == 'e' || *q == 'E')) {
        whole = 0;
        q++;
        if (q < c->end && (*q == '+' || *q == '-')) q++;
        if (!J_DIGIT(q)) return 0;
        while (J_DIGIT(q)) q++;
    }
    if (whole) { /* an int, as orjson gives it (so "-0" is 0): exact below 10^15 */
        if (digits > 15) return 0;
        int64_t v = 0;
        for (const char *d = s + neg; d < q; d++) v = v * 10 + (*d - '0');
        *out = (double)(neg ? -v : v);
    } else {
        char buf[64];
        if (q - s >= (Py_ssize_t)sizeof buf) return 0;
        memcpy(buf, s, (size_t)(q - s));
        buf[q - s] = 0;
        char *endp = NULL;
        double d = PyOS_string_to_double(buf, &endp, NULL); /* overflow: ±inf, refused below */
        if (d == -1.0 && PyErr_Occurred()) { PyErr_Clear(); return 0; }
        if (endp != buf + (q - s) || !isfinite(d)) return 0;
        *out = d;
    }
    c->p = q;
    return 1;
}

typedef struct {
    const char *s;
    Py_ssize_t n;
    double code;
} JCat;

static uint64_t j_hash(const char *s, Py_ssize_t n) {
    uint64_t h = 1469598103934665603ULL;
    for (Py_ssize_t i = 0; i < n; i++) h = (h ^ (unsigned char)s[i]) * 1099511628211ULL;
    return h;
}

/* one categorical column's table as open addressing on the categories' UTF-8 bytes; NULL when it is
 * not a dict of str → float */
static JCat *j_table(PyObject *table, Py_ssize_t *mask) {
    if (!PyDict_CheckExact(table)) return NULL;
    Py_ssize_t size = 8;
    while (size < 2 * PyDict_GET_SIZE(table) + 2) size *= 2;
    JCat *slots = (JCat *)PyMem_Calloc((size_t)size, sizeof(JCat));
    if (slots == NULL) return NULL;
    Py_ssize_t pos = 0;
    PyObject *key, *value;
    while (PyDict_Next(table, &pos, &key, &value)) {
        Py_ssize_t n;
        const char *s = PyUnicode_CheckExact(key) ? PyUnicode_AsUTF8AndSize(key, &n) : NULL;
        if (s == NULL || !PyFloat_CheckExact(value)) { PyErr_Clear(); PyMem_Free(slots); return NULL; }
        Py_ssize_t i = (Py_ssize_t)(j_hash(s, n) & (uint64_t)(size - 1));
        while (slots[i].s != NULL) i = (i + 1) & (size - 1);
        slots[i].s = s;
        slots[i].n = n;
        slots[i].code = PyFloat_AS_DOUBLE(value);
    }
    *mask = size - 1;
    return slots;
}

static const JCat *j_lookup(const JCat *slots, Py_ssize_t mask, const char *s, Py_ssize_t n) {
    Py_ssize_t i = (Py_ssize_t)(j_hash(s, n) & (uint64_t)mask);
    while (slots[i].s != NULL) {
        if (slots[i].n == n && memcmp(slots[i].s, s, (size_t)n) == 0) return &slots[i];
        i = (i + 1) & mask;
    }
    return NULL;
}

/* one tensor object into its column of XT; 0: not the plain case */
static int j_tensor(JCur *c, PyObject *names, const char *kind, PyObject *tables, const double *unknown,
                    Py_ssize_t max_rows, PyObject **xt, Py_ssize_t *n_rows, char *seen) {
    Py_ssize_t F = PyTuple_GET_SIZE(names), j = -1, shape = -1, count = -1;
    int have_type = 0, have_params = 0;
    if (!j_char(c, '{')) return 0;
    for (;;) {
        const char *k;
        Py_ssize_t kn;
        if (!j_str(c, &k, &kn) || !j_char(c, ':')) return 0;
        if (j_is(k, kn, "name")) {
            const char *s;
            Py_ssize_t n;
            if (j >= 0 || !j_str(c, &s, &n)) return 0;
            for (Py_ssize_t f = 0; f < F && j < 0; f++) {
                Py_ssize_t fn;
                const char *fs = PyUnicode_AsUTF8AndSize(PyTuple_GET_ITEM(names, f), &fn);
                if (fs == NULL) { PyErr_Clear(); return 0; }
                if (fn == n && memcmp(fs, s, (size_t)n) == 0) j = f;
            }
            if (j < 0 || seen[j]) return 0; /* unknown or repeated: the careful path names it */
            seen[j] = 1;
        } else if (j_is(k, kn, "shape")) {
            if (shape >= 0 || !j_char(c, '[')) return 0;
            j_ws(c);
            Py_ssize_t d = 0;
            const char *q = c->p; /* digits only: what pydantic would coerce is the careful path's */
            while (J_DIGIT(q) && d <= max_rows) d = d * 10 + (*q++ - '0');
            if (q == c->p || (*c->p == '0' && q - c->p > 1) || d < 1 || d > max_rows) return 0;
            c->p = q;
            if (!j_char(c, ']')) return 0;
            shape = d;
            if (*n_rows < 0) {
                *n_rows = shape;
                *xt = PyByteArray_FromStringAndSize(NULL, F * shape * (Py_ssize_t)sizeof(double));
                if (*xt == NULL) { PyErr_Clear(); return 0; }
            } else if (shape != *n_rows) return 0;
        } else if (j_is(k, kn, "datatype")) {
            const char *s;
            Py_ssize_t n;
            if (have_type || j < 0 || !j_str(c, &s, &n)) return 0;
            if (kind[j] ? !j_is(s, n, "BYTES")
                        : !(j_is(s, n, "FP64") || j_is(s, n, "FP32") || j_is(s, n, "INT64") || j_is(s, n, "INT32")))
                return 0;
            have_type = 1;
        } else if (j_is(k, kn, "data")) {
            if (count >= 0 || j < 0 || shape < 0 || !have_type || !j_char(c, '[')) return 0;
            double *col = (double *)PyByteArray_AS_STRING(*xt) + j * shape;
            count = 0;
            if (kind[j]) {
                Py_ssize_t mask;
                JCat *slots = j_table(PyTuple_GET_ITEM(tables, j), &mask);
                if (slots == NULL) return 0;
                const char *last = NULL;
                Py_ssize_t last_n = -1;
                double last_code = 0.0;
                int ok = 1;
                do {
                    const char *s;
                    Py_ssize_t n;
                    if (count >= shape || !j_str(c, &s, &n)) { ok = 0; break; }
                    if (n != last_n || memcmp(s, last, (size_t)n) != 0) {
                        const JCat *hit = j_lookup(slots, mask, s, n);
                        last = s;
                        last_n = n;
                        last_code = hit != NULL ? hit->code : unknown[j];
                    }
                    col[count++] = last_code;
                } while (j_char(c, ','));
                PyMem_Free(slots);
                if (!ok) return 0;
            } else {
                do {
                    if (count >= shape || !j_num(c, &col[count])) return 0;
                    count++;
                } while (j_char(c, ','));
            }
            if (!j_char(c, ']') || count != shape) return 0;
        } else if (j_is(k, kn, "parameters")) {
            if (have_params || !j_null(c)) return 0;
            have_params = 1;
        } else {
            return 0;
        }
        if (j_char(c, ',')) continue;
        if (j_char(c, '}')) break;
        return 0;
    }
    return j >= 0 && count >= 0; /* name, shape, datatype, data all given */
}

static PyObject *v2_json_columns(PyObject *self, PyObject *args) {
    Py_buffer body_b, unk_b;
    PyObject *names, *kinds, *tables;
    Py_ssize_t max_rows;
    if (!PyArg_ParseTuple(args, "y*O!SO!y*n", &body_b, &PyTuple_Type, &names, &kinds, &PyTuple_Type, &tables,
                          &unk_b, &max_rows))
        return NULL;
    Py_ssize_t F = PyTuple_GET_SIZE(names);
    PyObject *xt = NULL, *id = NULL, *result = NULL;
    Py_ssize_t n_rows = -1, n_tensors = 0;
    char *seen = (char *)PyMem_Calloc((size_t)(F > 0 ? F : 1), 1);
    int ok = seen != NULL && F > 0 && PyBytes_GET_SIZE(kinds) == F && PyTuple_GET_SIZE(tables) == F &&
             unk_b.len == F * (Py_ssize_t)sizeof(double);
    int have_id = 0, have_inputs = 0, have_params = 0, have_outputs = 0;
    JCur cur = {(const char *)body_b.buf, (const char *)body_b.buf + body_b.len}, *c = &cur;
    if (ok && !j_char(c, '{')) ok = 0;
    while (ok) {
        const char *k;
        Py_ssize_t kn;
        if (!j_str(c, &k, &kn) || !j_char(c, ':')) { ok = 0; break; }
        if (j_is(k, kn, "id") && !have_id) {
            const char *s;
            Py_ssize_t n;
            have_id = 1;
            if (!j_null(c)) {
                if (!j_str(c, &s, &n) || (id = PyUnicode_DecodeASCII(s, n, NULL)) == NULL) { ok = 0; break; }
            }
        } else if (j_is(k, kn, "parameters") && !have_params) {
            have_params = 1;
            if (!j_null(c)) { ok = 0; break; }
        } else if (j_is(k, kn, "outputs") && !have_outputs) {
            have_outputs = 1;
            if (!j_null(c) && !(j_char(c, '[') && j_char(c, ']'))) { ok = 0; break; }
        } else if (j_is(k, kn, "inputs") && !have_inputs) {
            have_inputs = 1;
            if (!j_char(c, '[')) { ok = 0; break; }
            do {
                if (!j_tensor(c, names, PyBytes_AS_STRING(kinds), tables, (const double *)unk_b.buf, max_rows, &xt,
                              &n_rows, seen)) { ok = 0; break; }
                n_tensors++;
            } while (j_char(c, ','));
            if (!ok || !j_char(c, ']')) { ok = 0; break; }
        } else {
            ok = 0;
            break;
        }
        if (j_char(c, ',')) continue;
        if (j_char(c, '}')) break;
        ok = 0;
    }
    if (ok) {
        j_ws(c);
        ok = c->p == c->end && have_inputs && n_tensors == F; /* every feature exactly once */
    }
    if (PyErr_Occurred()) PyErr_Clear();
    if (ok) result = Py_BuildValue("(OnO)", xt, n_rows, id != NULL ? id : Py_None);
    Py_XDECREF(xt);
    Py_XDECREF(id);
    PyMem_Free(seen);
    PyBuffer_Release(&body_b);
    PyBuffer_Release(&unk_b);
    if (result == NULL && !PyErr_Occurred()) Py_RETURN_NONE;
    return result;
}

static PyMethodDef methods[] = {
    {"decode_mapping", decode_mapping, METH_VARARGS, "Decode one well-formed {feature: value} dict."},
    {"fill_numeric", fill_numeric, METH_VARARGS, "A list of finite ints/floats into a float64 buffer."},
    {"fill_categories", fill_categories, METH_VARARGS, "A list of categories (str/bytes) into their codes."},
    {"v2_json_columns", v2_json_columns, METH_VARARGS, "A plain V2 JSON body's columns, decoded straight from bytes."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_codec", NULL, -1, methods};

/* Bumped whenever a function's signature changes: Python ignores a stale build (see decode.py). */
#define CODEC_ABI 1

PyMODINIT_FUNC PyInit__codec(void) { return module_with_abi(&module, CODEC_ABI); }
