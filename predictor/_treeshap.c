/* Per-feature contributions of tree ensembles: path-dependent TreeSHAP (Lundberg, Erion & Lee 2018,
 * "Consistent individualized feature attribution for tree ensembles", Algorithm 2), the algorithm
 * behind XGBoost's `pred_contribs=True` and shap's TreeExplainer(feature_perturbation="tree_path_dependent").
 *
 * tree_shap(pnodes, leaves, covers, roots, depths, X, out, n_cols, scale, check)
 *   the packed trees of _packed.h (the evaluator's own arrays) plus covers: float64 per packed node,
 *   the training weight that reached it (XGBoost: sum_hessian; scikit-learn: weighted_n_node_samples);
 *   X: float64 (n_rows, n_cols) row-major; out: float64 (n_rows, n_cols), overwritten with
 *   scale * sum over trees of each feature's SHAP value. The bias (the covers' expected value of the
 *   ensemble) does not depend on the row: predictor/treeshap.py computes it once.
 *   check: validate the arrays first (done once when an explainer is built, then trusted).
 *
 * One tree, one row: walk every node; the path from the root holds one step per distinct feature
 * split on so far, with `zero` (the share of training weight that would follow this way if the
 * feature were unknown), `one` (1 if x follows this way) and the permutation weights of subsets by
 * size. At a leaf each step's feature gets (sum of the weights with that step unwound) ×
 * (one - zero) × leaf value. A feature split on twice is unwound and re-extended, so it appears
 * once. O(leaves × depth²) per tree.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "_packed.h"

/* Bumped whenever tree_shap's signature changes: Python ignores a stale build (see treeshap.py). */
#define TREESHAP_ABI 1

typedef struct {
    int32_t feat;  /* the feature split on (-1: the path's first, featureless step) */
    double zero;   /* share of the training weight (cover) that follows this way */
    double one;    /* 1 when x follows this way, else 0 */
    double weight; /* permutation weight of the subsets with as many features as this index */
} Step;

typedef struct {
    const PNode *nodes;
    const double *leaves;
    const double *covers;
    const double *x;
    double *phi;
    const double *inv; /* inv[k] = 1/k for k = 1 .. max depth + 2 */
    int ok;
} Tree;

/* add a step (feat, zero, one) after path[0..n-1]; inv[k] = 1/k (multiplications: divisions are slow) */
static void extend(Step *path, int n, double zero, double one, int32_t feat, const double *inv) {
    path[n].feat = feat;
    path[n].zero = zero;
    path[n].one = one;
    path[n].weight = n == 0 ? 1.0 : 0.0;
    const double one_share = one * inv[n + 1], zero_share = zero * inv[n + 1];
    for (int i = n - 1; i >= 0; i--) {
        const double w = path[i].weight;
        path[i + 1].weight += one_share * w * (i + 1);
        path[i].weight = zero_share * w * (n - i);
    }
}

/* remove step k from path[0..n] (n + 1 steps): the weights as if it had never been added */
static void unwind(Step *path, int n, int k, const double *inv) {
    const double one = path[k].one, zero = path[k].zero;
    double next = path[n].weight;
    if (one != 0.0) {
        const double up = (n + 1) / one, down = zero * inv[n + 1];
        for (int i = n - 1; i >= 0; i--) {
            const double kept = path[i].weight;
            path[i].weight = next * up * inv[i + 1];
            next = kept - path[i].weight * down * (n - i);
        }
    } else {
        const double up = (n + 1) / zero;
        for (int i = n - 1; i >= 0; i--) path[i].weight *= up * inv[n - i];
    }
    for (int i = k; i < n; i++) {
        path[i].feat = path[i + 1].feat;
        path[i].zero = path[i + 1].zero;
        path[i].one = path[i + 1].one;
    }
}

/* the total weight unwind(path, n, k) would leave, for a step x follows (one != 0), without
 * changing the path */
static double unwound_sum_hot(const Step *path, int n, int k, const double *inv) {
    const double up = (n + 1) / path[k].one, down = path[k].zero * inv[n + 1];
    double next = path[n].weight, total = 0.0;
    for (int i = n - 1; i >= 0; i--) {
        const double w = next * up * inv[i + 1];
        total += w;
        next = path[i].weight - w * down * (n - i);
    }
    return total;
}

/* node `id` reached with the parent's path (n steps at parent[0..n-1]) and its own step to add;
 * `levels` bounds the splits still allowed below (a malformed tree cannot recurse for ever) */
static void recurse(Tree *t, int32_t id, const Step *parent, int n, double zero, double one, int32_t feat,
                    int levels) {
    Step *path = (Step *)parent + n;
    for (int i = 0; i < n; i++) path[i] = parent[i]; /* a few steps: cheaper than calling memcpy */
    extend(path, n, zero, one, feat, t->inv);
    const PNode *nd = t->nodes + id;
    if (packed_is_leaf(t->nodes, id)) {
        const double value = t->leaves[id];
        /* a step x does not follow (one = 0) unwinds to (n + 1) / zero * sum_i w_i / (n - i): times
         * (one - zero) that is -(n + 1) * sum_i w_i / (n - i), the same for every such step */
        double cold = 0.0;
        int have_cold = 0;
        for (int i = 1; i <= n; i++) {
            if (path[i].one != 0.0) {
                t->phi[path[i].feat] += unwound_sum_hot(path, n, i, t->inv) * (path[i].one - path[i].zero) * value;
                continue;
            }
            if (!have_cold) {
                for (int j = n - 1; j >= 0; j--) cold += path[j].weight * t->inv[n - j];
                cold *= (n + 1) * value;
                have_cold = 1;
            }
            t->phi[path[i].feat] -= cold;
        }
        return;
    }
    if (levels <= 0) {
        t->ok = 0;
        return;
    }
    const int32_t hot = nd->left + 1 - packed_goes_left(nd, t->x);
    const int32_t cold = hot == nd->left ? nd->left + 1 : nd->left;
    const double cover = t->covers[id];
    double in_zero = 1.0, in_one = 1.0;
    int k = 1;
    while (k <= n && path[k].feat != nd->feat) k++;
    if (k <= n) { /* split on this feature before: undo that step, redo it here */
        in_zero = path[k].zero;
        in_one = path[k].one;
        unwind(path, n, k, t->inv);
        n -= 1;
    }
    recurse(t, hot, path, n + 1, in_zero * t->covers[hot] / cover, in_one, nd->feat, levels - 1);
    if (!t->ok) return;
    recurse(t, cold, path, n + 1, in_zero * t->covers[cold] / cover, 0.0, nd->feat, levels - 1);
}

static int covers_valid(const double *covers, Py_ssize_t n_nodes) {
    for (Py_ssize_t i = 0; i < n_nodes; i++)
        if (!(covers[i] > 0.0) || isinf(covers[i])) return 0;
    return 1;
}

static PyObject *tree_shap(PyObject *self, PyObject *args) {
    Py_buffer nodes_b, leaves_b, covers_b, roots_b, depths_b, x_b, out_b;
    Py_ssize_t n_cols;
    double scale;
    int check;
    if (!PyArg_ParseTuple(args, "y*y*y*y*y*y*w*ndp", &nodes_b, &leaves_b, &covers_b, &roots_b, &depths_b, &x_b,
                          &out_b, &n_cols, &scale, &check))
        return NULL;
    const PNode *nodes = (const PNode *)nodes_b.buf;
    const int32_t *roots = (const int32_t *)roots_b.buf;
    const int32_t *depths = (const int32_t *)depths_b.buf;
    const double *X = (const double *)x_b.buf;
    double *out = (double *)out_b.buf;
    Py_ssize_t n_trees = roots_b.len / (Py_ssize_t)sizeof(int32_t);
    Py_ssize_t n_nodes = nodes_b.len / (Py_ssize_t)sizeof(PNode);
    Py_ssize_t n_rows = n_cols > 0 ? x_b.len / (Py_ssize_t)sizeof(double) / n_cols : 0;
    int ok = n_cols > 0 && x_b.len == n_rows * n_cols * (Py_ssize_t)sizeof(double) && out_b.len == x_b.len &&
             depths_b.len == roots_b.len && nodes_b.len % (Py_ssize_t)sizeof(PNode) == 0 &&
             leaves_b.len == n_nodes * (Py_ssize_t)sizeof(double) && covers_b.len == leaves_b.len;
    if (ok && check)
        ok = packed_valid(nodes, n_nodes, roots, depths, n_trees, n_cols) &&
             covers_valid((const double *)covers_b.buf, n_nodes);
    Step *paths = NULL;
    double *inv = NULL;
    int32_t max_depth = 0;
    if (ok) {
        for (Py_ssize_t t = 0; t < n_trees; t++) max_depth = depths[t] > max_depth ? depths[t] : max_depth;
        /* a path of at most max_depth + 2 steps per level, each level after its parent's */
        size_t levels = (size_t)max_depth + 2;
        paths = (Step *)malloc((levels * (levels + 1) / 2 + 1) * sizeof(Step));
        inv = (double *)malloc((levels + 1) * sizeof(double));
        if (paths == NULL || inv == NULL) ok = -1;
        else
            for (size_t k = 0; k <= levels; k++) inv[k] = k == 0 ? 0.0 : 1.0 / (double)k;
    }
    if (ok == 1) {
        PyThreadState *ts = NULL;
        if (n_rows * n_trees >= 2000) ts = PyEval_SaveThread();
        Tree tree = {nodes, (const double *)leaves_b.buf, (const double *)covers_b.buf, NULL, NULL, inv, 1};
        memset(out, 0, (size_t)out_b.len);
        for (Py_ssize_t r = 0; r < n_rows && tree.ok; r++) {
            tree.x = X + r * n_cols;
            tree.phi = out + r * n_cols;
            for (Py_ssize_t t = 0; t < n_trees && tree.ok; t++)
                recurse(&tree, roots[t], paths, 0, 1.0, 1.0, -1, depths[t]);
            for (Py_ssize_t j = 0; j < n_cols; j++) tree.phi[j] *= scale;
        }
        ok = tree.ok;
        if (ts != NULL) PyEval_RestoreThread(ts);
    }
    free(paths);
    free(inv);
    PyBuffer_Release(&nodes_b);
    PyBuffer_Release(&leaves_b);
    PyBuffer_Release(&covers_b);
    PyBuffer_Release(&roots_b);
    PyBuffer_Release(&depths_b);
    PyBuffer_Release(&x_b);
    PyBuffer_Release(&out_b);
    if (ok == -1) return PyErr_NoMemory();
    if (!ok) {
        PyErr_SetString(PyExc_ValueError, "tree_shap: malformed packed tree arrays, covers or shapes");
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"tree_shap", tree_shap, METH_VARARGS, "Path-dependent TreeSHAP values of packed trees for a float64 matrix."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_treeshap", NULL, -1, methods};

PyMODINIT_FUNC PyInit__treeshap(void) {
    PyObject *m = PyModule_Create(&module);
    if (m != NULL && PyModule_AddIntConstant(m, "ABI", TREESHAP_ABI) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
