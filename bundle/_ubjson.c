/* UBJSON (draft 12, big-endian, as XGBoost writes model.ubj) decoded in C: bundle/ubjson.py's
 * reader without the per-value Python overhead (a 1,200-tree model: ~170 ms in Python, a few here).
 *
 * loads(data, make_array) -> the decoded value. Objects -> dict, arrays -> list, strings -> str,
 * integers -> int, floats -> float, T/F/Z -> True/False/None, 'C' -> a one-character str.
 * A typed numeric array ("[$T#n") is not decoded value by value: make_array(T, offset, count) is
 * called with its type marker (an int, e.g. ord('d')), the offset of its first byte in data and
 * its element count, and what it returns (a numpy view, in bundle/ubjson.py) takes its place.
 * Anything malformed raises ValueError with the byte offset; nesting is limited to MAX_DEPTH.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

#define ABI 2  /* 2: counts bounded by the bytes left, no zero-width typed arrays */
#define MAX_DEPTH 256

typedef struct {
    const unsigned char *buf;
    Py_ssize_t pos, end;
    PyObject *make_array;
    int depth;
} Reader;

static PyObject *fail(Reader *r, const char *what) {
    PyErr_Format(PyExc_ValueError, "%s at byte %zd", what, r->pos);
    return NULL;
}

/* the next marker, skipping no-ops ('N'); -1 at the end of data (error set) */
static int marker(Reader *r) {
    while (r->pos < r->end) {
        unsigned char m = r->buf[r->pos++];
        if (m != 'N') return m;
    }
    fail(r, "unexpected end of data");
    return -1;
}

static int scalar_size(int m) {
    switch (m) {
    case 'i': case 'U': return 1;
    case 'I': return 2;
    case 'l': case 'd': return 4;
    case 'L': case 'D': return 8;
    default: return 0;
    }
}

static uint64_t big_endian(const unsigned char *p, int size) {
    uint64_t v = 0;
    for (int i = 0; i < size; i++) v = (v << 8) | p[i];
    return v;
}

/* an integer of marker m; 0 on success */
static int integer(Reader *r, int m, int64_t *out) {
    int size = scalar_size(m);
    if (size == 0 || m == 'd' || m == 'D') {
        fail(r, "bad integer marker");
        return -1;
    }
    if (r->end - r->pos < size) {
        fail(r, "unexpected end of data");
        return -1;
    }
    uint64_t v = big_endian(r->buf + r->pos, size);
    r->pos += size;
    switch (m) {
    case 'i': *out = (int8_t)v; break;
    case 'U': *out = (uint8_t)v; break;
    case 'I': *out = (int16_t)v; break;
    case 'l': *out = (int32_t)v; break;
    default: *out = (int64_t)v; break;
    }
    return 0;
}

static int length(Reader *r, Py_ssize_t *out) {
    int m = marker(r);
    if (m < 0) return -1;
    if (scalar_size(m) == 0 || m == 'd' || m == 'D') {
        fail(r, "bad length marker");
        return -1;
    }
    int64_t n;
    if (integer(r, m, &n) < 0) return -1;
    if (n < 0) {
        fail(r, "negative length");
        return -1;
    }
    if (n > r->end - r->pos) { /* no count can exceed the bytes left: refuse before allocating */
        fail(r, "length beyond the end of data");
        return -1;
    }
    *out = (Py_ssize_t)n;
    return 0;
}

static PyObject *string(Reader *r) {
    Py_ssize_t n;
    if (length(r, &n) < 0) return NULL;
    if (r->end - r->pos < n) return fail(r, "unexpected end of data");
    PyObject *s = PyUnicode_DecodeUTF8((const char *)r->buf + r->pos, n, "strict");
    r->pos += n;
    return s;
}

static PyObject *value(Reader *r, int m);

/* "$T" and "#n" after an opening bracket; typ/count 0/-1 when absent */
static int container_header(Reader *r, int *typ, Py_ssize_t *count) {
    *typ = 0;
    *count = -1;
    if (r->pos < r->end && r->buf[r->pos] == '$') {
        r->pos++;
        *typ = marker(r);
        if (*typ < 0) return -1;
    }
    if (r->pos < r->end && r->buf[r->pos] == '#') {
        r->pos++;
        if (length(r, count) < 0) return -1;
    }
    if (*typ && *count < 0) {
        fail(r, "typed container without a count");
        return -1;
    }
    return 0;
}

static PyObject *array(Reader *r) {
    int typ;
    Py_ssize_t count;
    if (container_header(r, &typ, &count) < 0) return NULL;
    if (typ == 'T' || typ == 'F' || typ == 'Z') /* elements of no bytes: a count would not be bounded */
        return fail(r, "typed array of a zero-width type");
    int size = typ ? scalar_size(typ) : 0;
    if (size) { /* a typed numeric array: handed over whole */
        if ((r->end - r->pos) / size < count) return fail(r, "unexpected end of data");
        Py_ssize_t start = r->pos;
        r->pos += size * count;
        return PyObject_CallFunction(r->make_array, "inn", typ, start, count);
    }
    PyObject *out = PyList_New(0);
    if (!out) return NULL;
    for (Py_ssize_t i = 0; count < 0 || i < count; i++) {
        int m = typ;
        if (!m) {
            m = marker(r);
            if (m < 0) goto error;
            if (count < 0 && m == ']') return out;
        }
        PyObject *v = value(r, m);
        if (!v || PyList_Append(out, v) < 0) {
            Py_XDECREF(v);
            goto error;
        }
        Py_DECREF(v);
    }
    return out;
error:
    Py_DECREF(out);
    return NULL;
}

static PyObject *object(Reader *r) {
    int typ;
    Py_ssize_t count;
    if (container_header(r, &typ, &count) < 0) return NULL;
    PyObject *out = PyDict_New();
    if (!out) return NULL;
    for (Py_ssize_t i = 0; count < 0 || i < count; i++) {
        if (count < 0 && r->pos < r->end && r->buf[r->pos] == '}') {
            r->pos++;
            return out;
        }
        PyObject *key = string(r);
        if (!key) goto error;
        int m = typ ? typ : marker(r);
        PyObject *v = m < 0 ? NULL : value(r, m);
        if (!v || PyDict_SetItem(out, key, v) < 0) {
            Py_DECREF(key);
            Py_XDECREF(v);
            goto error;
        }
        Py_DECREF(key);
        Py_DECREF(v);
    }
    return out;
error:
    Py_DECREF(out);
    return NULL;
}

static PyObject *value(Reader *r, int m) {
    int64_t n;
    switch (m) {
    case 'i': case 'U': case 'I': case 'l': case 'L':
        if (integer(r, m, &n) < 0) return NULL;
        return PyLong_FromLongLong(n);
    case 'd': case 'D': {
        int size = scalar_size(m);
        if (r->end - r->pos < size) return fail(r, "unexpected end of data");
        uint64_t bits = big_endian(r->buf + r->pos, size);
        r->pos += size;
        if (size == 4) {
            uint32_t b32 = (uint32_t)bits;
            float f;
            memcpy(&f, &b32, 4);
            return PyFloat_FromDouble((double)f);
        }
        double d;
        memcpy(&d, &bits, 8);
        return PyFloat_FromDouble(d);
    }
    case 'S': case 'H':
        return string(r);
    case 'C':
        if (r->pos >= r->end) return fail(r, "unexpected end of data");
        return PyUnicode_FromOrdinal(r->buf[r->pos++]);
    case 'T': Py_RETURN_TRUE;
    case 'F': Py_RETURN_FALSE;
    case 'Z': Py_RETURN_NONE;
    case '[':
    case '{': {
        if (++r->depth > MAX_DEPTH) return fail(r, "nested too deeply");
        PyObject *v = m == '[' ? array(r) : object(r);
        r->depth--;
        return v;
    }
    default:
        r->pos--;
        return fail(r, "unknown marker");
    }
}

static PyObject *loads(PyObject *self, PyObject *args) {
    Py_buffer data;
    PyObject *make_array;
    if (!PyArg_ParseTuple(args, "y*O", &data, &make_array)) return NULL;
    Reader r = {(const unsigned char *)data.buf, 0, data.len, make_array, 0};
    int m = marker(&r);
    PyObject *v = m < 0 ? NULL : value(&r, m);
    PyBuffer_Release(&data);
    return v;
}

static PyMethodDef methods[] = {
    {"loads", loads, METH_VARARGS, "loads(data, make_array) -> the decoded UBJSON value (see the module's C source)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_ubjson", "UBJSON decoding in C (bundle/ubjson.py).", -1, methods};

PyMODINIT_FUNC PyInit__ubjson(void) {
    PyObject *m = PyModule_Create(&module);
    if (m && PyModule_AddIntConstant(m, "ABI", ABI) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
