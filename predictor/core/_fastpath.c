/* Lean evaluators for the predictor's fast path (built by setup.py; optional at run time).
 *
 * eval_packed / eval_batch: sum (or mean) of tree ensembles over a float64 row-major matrix
 *   (trees packed by predictor/core/fastpath.py: pack_trees; layout in _packed.h).
 *   mode 0 = XGBoost (x cast to float32; x < thr -> left; NaN -> default_left)
 *   mode 1 = scikit-learn (x cast to float32; x <= thr -> left)
 * Requests are decoded by the codec's extension (predictor/codec/_codec.c), range flags computed by
 * _ranges.c; the packed trees' layout is shared with _treeshap.c (_packed.h).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stdint.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "_module.h"
#include "_packed.h"

/* eval_packed: the sums over a layout made for speed (fastpath.py: pack_trees; the
 *   layout and its walk are in _packed.h): a leaf loops on itself, so every tree is walked a fixed
 *   `depth` steps without a data-dependent branch, and several walks overlap in the CPU.
 *   leaves: float64 leaf value per packed node; roots, depths: int32 per tree.
 *   exp_out: write exp(prediction) (a log-target model's price) instead of the prediction.
 * Small requests keep the GIL: releasing and re-taking it costs more than the walk. */
/* The buffers eval_packed and eval_batch take (PNode trees, a float64 row-major matrix, its output),
 * and the sizes read from them. */
typedef struct {
    Py_buffer nodes, leaves, roots, depths, x, out;
    Py_ssize_t n_trees, n_nodes, n_rows;
} PackedArgs;

/* the sizes; 0 when the buffers' lengths do not fit together (or n_cols is not positive) */
static int packed_shapes(PackedArgs *a, Py_ssize_t n_cols) {
    a->n_trees = a->roots.len / (Py_ssize_t)sizeof(int32_t);
    a->n_nodes = a->nodes.len / (Py_ssize_t)sizeof(PNode);
    a->n_rows = n_cols > 0 ? a->x.len / (Py_ssize_t)sizeof(double) / n_cols : 0;
    return n_cols > 0 && a->out.len >= a->n_rows * (Py_ssize_t)sizeof(double) && a->depths.len == a->roots.len &&
           a->leaves.len == a->n_nodes * (Py_ssize_t)sizeof(double) && a->nodes.len % (Py_ssize_t)sizeof(PNode) == 0;
}

static void packed_release(PackedArgs *a) {
    PyBuffer_Release(&a->nodes);
    PyBuffer_Release(&a->leaves);
    PyBuffer_Release(&a->roots);
    PyBuffer_Release(&a->depths);
    PyBuffer_Release(&a->x);
    PyBuffer_Release(&a->out);
}

static PyObject *eval_packed(PyObject *self, PyObject *args) {
    PackedArgs a;
    Py_ssize_t n_cols;
    int mode, check, exp_out;
    double scale, base;
    if (!PyArg_ParseTuple(args, "y*y*y*y*y*w*niddpp", &a.nodes, &a.leaves, &a.roots, &a.depths, &a.x, &a.out,
                          &n_cols, &mode, &scale, &base, &exp_out, &check))
        return NULL;
    int ok = packed_shapes(&a, n_cols);
    const PNode *nodes = (const PNode *)a.nodes.buf;
    const double *leaves = (const double *)a.leaves.buf;
    const int32_t *roots = (const int32_t *)a.roots.buf;
    const int32_t *depths = (const int32_t *)a.depths.buf;
    const double *X = (const double *)a.x.buf;
    double *out = (double *)a.out.buf;
    Py_ssize_t n_trees = a.n_trees, n_nodes = a.n_nodes, n_rows = a.n_rows;
    if (ok && check) ok = packed_valid(nodes, n_nodes, roots, depths, n_trees, n_cols);
    if (ok) {
        PyThreadState *ts = NULL;
        if (n_rows * n_trees >= 100000) ts = PyEval_SaveThread();
        /* The two branches below walk the trees in opposite orders on purpose, and so look alike
         * (``duplicates`` lists them): one row has no rows to interleave, so four trees' walks are
         * interleaved over it; a batch interleaves four rows over one tree, whose nodes then stay in
         * cache. A shared inner loop would need one of the two orders for both, or a branch per step. */
        if (n_rows == 1) {
            /* one row: four trees at a time, their walks interleaved */
            const double *x = X;
            float facc = (float)base;
            double acc = 0.0;
            Py_ssize_t t = 0;
            for (; t + 4 <= n_trees; t += 4) {
                int32_t a = roots[t], b = roots[t + 1], c = roots[t + 2], d = roots[t + 3];
                int32_t da = depths[t], db = depths[t + 1], dc = depths[t + 2], dd = depths[t + 3];
                int32_t dm = da > db ? da : db;
                dm = dm > dc ? dm : dc;
                dm = dm > dd ? dm : dd;
                for (int32_t s = 0; s < dm; s++) {
                    WALK(a, x);
                    WALK(b, x);
                    WALK(c, x);
                    WALK(d, x);
                }
                if (mode == 0) {
                    facc += (float)leaves[a];
                    facc += (float)leaves[b];
                    facc += (float)leaves[c];
                    facc += (float)leaves[d];
                } else {
                    acc += leaves[a];
                    acc += leaves[b];
                    acc += leaves[c];
                    acc += leaves[d];
                }
            }
            for (; t < n_trees; t++) {
                int32_t a = roots[t];
                for (int32_t s = 0; s < depths[t]; s++) WALK(a, x);
                if (mode == 0) facc += (float)leaves[a]; else acc += leaves[a];
            }
            out[0] = mode == 0 ? (double)facc : acc * scale + base;
            if (exp_out) out[0] = exp(out[0]);
        } else {
            /* rows in blocks, trees outer: a tree's nodes stay in cache while four rows at a time walk it */
            enum { BLOCK = 64 };
            double acc[BLOCK];
            float facc[BLOCK];
            for (Py_ssize_t r0 = 0; r0 < n_rows; r0 += BLOCK) {
                Py_ssize_t nb = n_rows - r0 < BLOCK ? n_rows - r0 : BLOCK;
                const double *xb = X + r0 * n_cols;
                for (Py_ssize_t b = 0; b < nb; b++) {
                    acc[b] = 0.0;
                    facc[b] = (float)base; /* XGBoost sums base_score and leaves in float32 */
                }
                for (Py_ssize_t t = 0; t < n_trees; t++) {
                    int32_t root = roots[t], depth = depths[t];
                    Py_ssize_t b = 0;
                    for (; b + 4 <= nb; b += 4) {
                        const double *x0 = xb + b * n_cols, *x1 = x0 + n_cols, *x2 = x1 + n_cols, *x3 = x2 + n_cols;
                        int32_t a = root, c = root, d = root, e = root;
                        for (int32_t s = 0; s < depth; s++) {
                            WALK(a, x0);
                            WALK(c, x1);
                            WALK(d, x2);
                            WALK(e, x3);
                        }
                        if (mode == 0) {
                            facc[b] += (float)leaves[a];
                            facc[b + 1] += (float)leaves[c];
                            facc[b + 2] += (float)leaves[d];
                            facc[b + 3] += (float)leaves[e];
                        } else {
                            acc[b] += leaves[a];
                            acc[b + 1] += leaves[c];
                            acc[b + 2] += leaves[d];
                            acc[b + 3] += leaves[e];
                        }
                    }
                    for (; b < nb; b++) {
                        const double *x0 = xb + b * n_cols;
                        int32_t a = root;
                        for (int32_t s = 0; s < depth; s++) WALK(a, x0);
                        if (mode == 0) facc[b] += (float)leaves[a]; else acc[b] += leaves[a];
                    }
                }
                for (Py_ssize_t b = 0; b < nb; b++) {
                    double v = mode == 0 ? (double)facc[b] : acc[b] * scale + base;
                    out[r0 + b] = exp_out ? exp(v) : v;
                }
            }
        }
        if (ts != NULL) PyEval_RestoreThread(ts);
    }
    packed_release(&a);
    if (!ok) {
        PyErr_SetString(PyExc_ValueError, "eval_packed: malformed packed tree arrays or shapes");
        return NULL;
    }
    Py_RETURN_NONE;
}

/* eval_batch: eval_packed's sums for many rows, faster: rows in blocks of BATCH_BLOCK, trees outer (a
 *   tree's nodes stay in L1 while the block walks it), BATCH_CHAINS walks interleaved, the rows split
 *   over n_threads threads (contiguous runs of blocks). Every row still adds its trees' leaves in tree
 *   order, so each result is the very number eval_packed gives.
 *   A block is converted once to float32, feature-major and twice over: feature j of row b at
 *   xf[j * BATCH_BLOCK + b] as is and at xf[(n_cols + j) * BATCH_BLOCK + b] with NaN → -inf. bnodes are
 *   the packed nodes with feat = (feat + (dl ? n_cols : 0)) * BATCH_BLOCK (fastpath.py: batch_nodes), so
 *   `xf[feat + b] <= thr` alone is the split rule: NaN goes left iff dl (-inf <= thr; NaN <= thr never).
 *   That needs thr != NaN where dl (batch_nodes returns None otherwise and eval_packed is used). */
enum { BATCH_BLOCK = 64, BATCH_CHAINS = 16, BATCH_MAX_THREADS = 64 };

typedef struct {
    const PNode *nodes;
    const double *leaves;
    const int32_t *roots, *depths;
    const double *X;
    double *out;
    Py_ssize_t n_trees, n_cols, row0, row1;
    int mode, exp_out;
    double scale, base;
    int failed; /* out of memory */
} BatchJob;

static void batch_rows(BatchJob *job) {
    const PNode *nodes = job->nodes;
    const double *leaves = job->leaves;
    const Py_ssize_t n_cols = job->n_cols, n_trees = job->n_trees;
    const int mode = job->mode;
    /* the block feature-major: value j of row b at xf[j * BATCH_BLOCK + b] (bnodes' feat is j * BATCH_BLOCK),
     * so all chains address their rows from one base */
    float *xf = (float *)malloc(sizeof(float) * (size_t)(BATCH_BLOCK * 2 * n_cols));
    if (xf == NULL) { job->failed = 1; return; }
    double acc[BATCH_BLOCK];
    float facc[BATCH_BLOCK];
    for (Py_ssize_t r0 = job->row0; r0 < job->row1; r0 += BATCH_BLOCK) {
        Py_ssize_t nb = job->row1 - r0 < BATCH_BLOCK ? job->row1 - r0 : BATCH_BLOCK;
        for (Py_ssize_t b = 0; b < nb; b++) {
            const double *x = job->X + (r0 + b) * n_cols;
            for (Py_ssize_t j = 0; j < n_cols; j++) {
                float f = (float)x[j];
                xf[j * BATCH_BLOCK + b] = f;
                xf[(n_cols + j) * BATCH_BLOCK + b] = f != f ? -INFINITY : f;
            }
            acc[b] = 0.0;
            facc[b] = (float)job->base; /* XGBoost sums base_score and leaves in float32 */
        }
        for (Py_ssize_t t = 0; t < n_trees; t++) {
            const int32_t root = job->roots[t], depth = job->depths[t];
            Py_ssize_t b = 0;
            for (; b + BATCH_CHAINS <= nb; b += BATCH_CHAINS) {
                const float *xb = xf + b;
                Py_ssize_t id[BATCH_CHAINS];
                for (int k = 0; k < BATCH_CHAINS; k++) id[k] = root;
                for (int32_t s = 0; s < depth; s++)
                    for (int k = 0; k < BATCH_CHAINS; k++) {
                        const PNode *nd = nodes + id[k];
                        id[k] = (Py_ssize_t)nd->left + 1 - (xb[(Py_ssize_t)nd->feat + k] <= nd->thr);
                    }
                if (mode == 0)
                    for (int k = 0; k < BATCH_CHAINS; k++) facc[b + k] += (float)leaves[id[k]];
                else
                    for (int k = 0; k < BATCH_CHAINS; k++) acc[b + k] += leaves[id[k]];
            }
            for (; b < nb; b++) {
                const float *xb = xf + b;
                int32_t i0 = root;
                for (int32_t s = 0; s < depth; s++) {
                    const PNode *nd = nodes + i0;
                    i0 = nd->left + 1 - (xb[nd->feat] <= nd->thr);
                }
                if (mode == 0) facc[b] += (float)leaves[i0]; else acc[b] += leaves[i0];
            }
        }
        for (Py_ssize_t b = 0; b < nb; b++) {
            double v = mode == 0 ? (double)facc[b] : acc[b] * job->scale + job->base;
            job->out[r0 + b] = job->exp_out ? exp(v) : v;
        }
    }
    free(xf);
}

static void *batch_thread(void *arg) {
    batch_rows((BatchJob *)arg);
    return NULL;
}

static PyObject *eval_batch(PyObject *self, PyObject *args) {
    PackedArgs a;
    Py_ssize_t n_cols;
    int mode, check, exp_out, n_threads;
    double scale, base;
    if (!PyArg_ParseTuple(args, "y*y*y*y*y*w*niddpip", &a.nodes, &a.leaves, &a.roots, &a.depths, &a.x, &a.out,
                          &n_cols, &mode, &scale, &base, &exp_out, &n_threads, &check))
        return NULL;
    int ok = packed_shapes(&a, n_cols);
    Py_ssize_t n_trees = a.n_trees, n_nodes = a.n_nodes, n_rows = a.n_rows;
    if (ok && check)
        ok = packed_valid((const PNode *)a.nodes.buf, n_nodes, (const int32_t *)a.roots.buf,
                          (const int32_t *)a.depths.buf, n_trees, 2 * n_cols * BATCH_BLOCK);
    for (Py_ssize_t i = 0; ok && check && i < n_nodes; i++) /* a row's values start at multiples of the block */
        ok = ((const PNode *)a.nodes.buf)[i].feat % BATCH_BLOCK == 0;
    int failed = 0;
    if (ok) {
        BatchJob jobs[BATCH_MAX_THREADS];
        pthread_t tids[BATCH_MAX_THREADS];
        int started[BATCH_MAX_THREADS] = {0};
        if (n_threads < 1) n_threads = 1;
        if (n_threads > BATCH_MAX_THREADS) n_threads = BATCH_MAX_THREADS;
        /* each thread a run of whole blocks */
        Py_ssize_t n_blocks = (n_rows + BATCH_BLOCK - 1) / BATCH_BLOCK;
        if (n_threads > n_blocks) n_threads = n_blocks > 0 ? (int)n_blocks : 1;
        for (int k = 0; k < n_threads; k++) {
            BatchJob j = {(const PNode *)a.nodes.buf, (const double *)a.leaves.buf, (const int32_t *)a.roots.buf,
                          (const int32_t *)a.depths.buf, (const double *)a.x.buf, (double *)a.out.buf, n_trees,
                          n_cols, 0, 0, mode, exp_out, scale, base, 0};
            j.row0 = n_blocks * k / n_threads * BATCH_BLOCK;
            j.row1 = k + 1 == n_threads ? n_rows : n_blocks * (k + 1) / n_threads * BATCH_BLOCK;
            jobs[k] = j;
        }
        PyThreadState *ts = NULL;
        if (n_rows * n_trees >= 100000) ts = PyEval_SaveThread();
        for (int k = 1; k < n_threads; k++) started[k] = pthread_create(&tids[k], NULL, batch_thread, &jobs[k]) == 0;
        batch_rows(&jobs[0]);
        for (int k = 1; k < n_threads; k++) {
            if (started[k]) pthread_join(tids[k], NULL);
            else batch_rows(&jobs[k]); /* no thread to be had: this one does it */
            failed |= jobs[k].failed;
        }
        failed |= jobs[0].failed;
        if (ts != NULL) PyEval_RestoreThread(ts);
    }
    packed_release(&a);
    if (!ok) {
        PyErr_SetString(PyExc_ValueError, "eval_batch: malformed packed tree arrays or shapes");
        return NULL;
    }
    if (failed) return PyErr_NoMemory();
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"eval_packed", eval_packed, METH_VARARGS, "Evaluate a breadth-first packed ensemble (fixed-depth walks)."},
    {"eval_batch", eval_batch, METH_VARARGS, "eval_packed for many rows: blocked, interleaved, threaded."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_fastpath", NULL, -1, methods};

/* Bumped whenever a function's signature changes: Python ignores a stale build (see fastpath.py). */
#define FASTPATH_ABI 4

PyMODINIT_FUNC PyInit__fastpath(void) {
    PyObject *m = module_with_abi(&module, FASTPATH_ABI);
    if (m != NULL && PyModule_AddIntConstant(m, "BATCH_BLOCK", BATCH_BLOCK) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
