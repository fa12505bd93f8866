/* The out-of-range flags in C (built by setup.py; optional at run time: predictor/core/ranges.py has the
 * numpy path). */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>

#include "_module.h"

/* out_of_range(X, lo, hi, unk, mask) -> int: mask[i, j] = X < lo | X > hi | X == unk (NaN unk never matches);
 * returns the number of flagged values. */
static PyObject *out_of_range(PyObject *self, PyObject *args) {
    Py_buffer x_b, lo_b, hi_b, unk_b, mask_b;
    if (!PyArg_ParseTuple(args, "y*y*y*y*w*", &x_b, &lo_b, &hi_b, &unk_b, &mask_b)) return NULL;
    Py_ssize_t n_cols = lo_b.len / (Py_ssize_t)sizeof(double);
    Py_ssize_t total = x_b.len / (Py_ssize_t)sizeof(double);
    long count = -1;
    if (n_cols > 0 && hi_b.len == lo_b.len && unk_b.len == lo_b.len && total % n_cols == 0 && mask_b.len >= total) {
        const double *X = (const double *)x_b.buf, *lo = (const double *)lo_b.buf, *hi = (const double *)hi_b.buf;
        const double *unk = (const double *)unk_b.buf;
        uint8_t *mask = (uint8_t *)mask_b.buf;
        count = 0;
        for (Py_ssize_t i = 0; i < total; i++) {
            Py_ssize_t j = i % n_cols;
            double v = X[i];
            uint8_t bad = (v < lo[j]) | (v > hi[j]) | (v == unk[j]);
            mask[i] = bad;
            count += bad;
        }
    }
    PyBuffer_Release(&x_b);
    PyBuffer_Release(&lo_b);
    PyBuffer_Release(&hi_b);
    PyBuffer_Release(&unk_b);
    PyBuffer_Release(&mask_b);
    if (count < 0) {
        PyErr_SetString(PyExc_ValueError, "out_of_range: shapes do not match");
        return NULL;
    }
    return PyLong_FromLong(count);
}

static PyMethodDef methods[] = {
    {"out_of_range", out_of_range, METH_VARARGS, "Flag values outside [lo, hi] or equal to unk."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_ranges", NULL, -1, methods};

/* Bumped whenever a function's signature changes: Python ignores a stale build (see ranges.py). */
#define RANGES_ABI 1

PyMODINIT_FUNC PyInit__ranges(void) { return module_with_abi(&module, RANGES_ABI); }
