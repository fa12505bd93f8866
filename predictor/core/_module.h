/* What every C extension of the predictor starts from: its module, carrying its interface version as ``ABI``
 * (the Python side ignores a build of another version: predictor/core/fastpath.py, load_extension).
 * Included by predictor/core/_fastpath.c, _treeshap.c, _ranges.c and predictor/codec/_codec.c. */
#ifndef PREDICTOR_MODULE_H
#define PREDICTOR_MODULE_H

#include <Python.h>

/* the module of `def` with the int constant ABI = abi; NULL (an exception set) when either fails */
static inline PyObject *module_with_abi(struct PyModuleDef *def, int abi) {
    PyObject *m = PyModule_Create(def);
    if (m != NULL && PyModule_AddIntConstant(m, "ABI", abi) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}

#endif
