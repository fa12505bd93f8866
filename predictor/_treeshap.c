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
#define TREESHAP_ABI 2

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

/* -- leaf tables: Algorithm 2's leaf step done ahead of time for shallow trees ---------------------
 * At a leaf, TreeSHAP's answer depends on the row only through which of the leaf's distinct path
 * features x follows (one = 1 at every split on it) — the zero fractions are the tree's. For a leaf
 * with m distinct features there are 2^m such patterns: leaf_tables runs the leaf step once per
 * pattern (extend with every (zero, one), unwind each) and stores the m contributions; tree_shap_tables
 * then only finds each leaf's pattern for the row and adds one table row. Same numbers, a fraction of
 * the work, for trees shallow enough that the tables stay small (see treeshap.py).
 *
 * Arrays (all built here): steps: LStep per split on each leaf's path; leafs: LeafInfo per leaf;
 * feats: int32 distinct features per leaf; table: float64, 2^m * m per leaf (value already included). */
typedef struct {
    int32_t node; /* packed split node on the path */
    int32_t left; /* 1 when the path goes left there */
    int32_t slot; /* index of its feature among the leaf's distinct features */
} LStep;

typedef struct {
    int32_t first_step, n_steps; /* into steps */
    int32_t first_feat, m;       /* into feats; m distinct features */
    int64_t table;               /* into table: 2^m rows of m values */
} LeafInfo;

typedef struct {
    const PNode *nodes;
    const double *leaves, *covers, *inv;
    int32_t *trail;   /* (node, went left) pairs from the root down to the current node */
    Step *path;       /* scratch for the leaf step */
    int max_m;        /* the tables are refused above this many distinct features on a path */
    int64_t budget;   /* and above this many table values */
    /* counts (first pass) and outputs (second pass, when non-NULL) */
    int64_t n_leaves, n_steps, n_feats, n_values;
    LStep *steps;
    LeafInfo *leafs;
    int32_t *feats;
    double *table;
    int ok;
} Tables;

static void leaf_entry(Tables *b, int32_t leaf, int depth) {
    int32_t feats[64];
    double zero[64];
    int m = 0;
    for (int d = 0; d < depth; d++) {
        const int32_t node = b->trail[2 * d], went_left = b->trail[2 * d + 1];
        const int32_t f = b->nodes[node].feat;
        const int32_t child = b->nodes[node].left + (went_left ? 0 : 1);
        int j = 0;
        while (j < m && feats[j] != f) j++;
        if (j == m) {
            if (m == b->max_m) { b->ok = 0; return; } /* too many: no tables for this ensemble */
            feats[m] = f;
            zero[m++] = 1.0;
        }
        zero[j] *= b->covers[child] / b->covers[node];
        if (b->steps != NULL) {
            LStep *st = b->steps + b->n_steps + d;
            st->node = node;
            st->left = went_left;
            st->slot = j;
        }
    }
    const int64_t rows = (int64_t)1 << m;
    if (b->leafs != NULL) {
        LeafInfo *li = b->leafs + b->n_leaves;
        li->first_step = (int32_t)b->n_steps;
        li->n_steps = depth;
        li->first_feat = (int32_t)b->n_feats;
        li->m = m;
        li->table = b->n_values;
        memcpy(b->feats + b->n_feats, feats, (size_t)m * sizeof(int32_t));
        const double value = b->leaves[leaf];
        for (int64_t pattern = 0; pattern < rows; pattern++) {
            Step *path = b->path;
            extend(path, 0, 1.0, 1.0, -1, b->inv);
            for (int j = 0; j < m; j++) extend(path, j + 1, zero[j], (double)((pattern >> j) & 1), feats[j], b->inv);
            double *row = b->table + b->n_values + pattern * m;
            double cold = 0.0;
            for (int i = m - 1; i >= 0; i--) cold += path[i].weight * b->inv[m - i];
            cold *= (m + 1) * value;
            for (int j = 0; j < m; j++)
                row[j] = path[j + 1].one != 0.0
                             ? unwound_sum_hot(path, m, j + 1, b->inv) * (path[j + 1].one - path[j + 1].zero) * value
                             : -cold;
        }
    }
    b->n_leaves += 1;
    b->n_steps += depth;
    b->n_feats += m;
    b->n_values += rows * m;
    if (b->n_values > b->budget) b->ok = 0;
}

static void leaf_walk(Tables *b, int32_t id, int depth, int levels) {
    if (!b->ok) return;
    if (packed_is_leaf(b->nodes, id)) {
        leaf_entry(b, id, depth);
        return;
    }
    if (levels <= 0) { b->ok = -1; return; } /* malformed */
    b->trail[2 * depth] = id;
    b->trail[2 * depth + 1] = 1;
    leaf_walk(b, b->nodes[id].left, depth + 1, levels - 1);
    b->trail[2 * depth + 1] = 0;
    leaf_walk(b, b->nodes[id].left + 1, depth + 1, levels - 1);
}

/* leaf_tables(pnodes, leaves, covers, roots, depths, n_cols, max_m, budget)
 *   -> (steps, leafs, feats, table) as bytes, or None when a path has more than max_m distinct
 *   features or the table would exceed budget values. Validates the arrays like tree_shap. */
static PyObject *leaf_tables(PyObject *self, PyObject *args) {
    Py_buffer nodes_b, leaves_b, covers_b, roots_b, depths_b;
    Py_ssize_t n_cols;
    int max_m;
    long long budget;
    if (!PyArg_ParseTuple(args, "y*y*y*y*y*niL", &nodes_b, &leaves_b, &covers_b, &roots_b, &depths_b, &n_cols, &max_m,
                          &budget))
        return NULL;
    const PNode *nodes = (const PNode *)nodes_b.buf;
    const int32_t *roots = (const int32_t *)roots_b.buf, *depths = (const int32_t *)depths_b.buf;
    Py_ssize_t n_trees = roots_b.len / (Py_ssize_t)sizeof(int32_t);
    Py_ssize_t n_nodes = nodes_b.len / (Py_ssize_t)sizeof(PNode);
    int ok = n_cols > 0 && max_m >= 0 && max_m <= 30 && depths_b.len == roots_b.len &&
             nodes_b.len % (Py_ssize_t)sizeof(PNode) == 0 && leaves_b.len == n_nodes * (Py_ssize_t)sizeof(double) &&
             covers_b.len == leaves_b.len && packed_valid(nodes, n_nodes, roots, depths, n_trees, n_cols) &&
             covers_valid((const double *)covers_b.buf, n_nodes);
    PyObject *result = NULL, *parts[4] = {NULL, NULL, NULL, NULL};
    int32_t max_depth = 0;
    for (Py_ssize_t t = 0; ok && t < n_trees; t++) max_depth = depths[t] > max_depth ? depths[t] : max_depth;
    int32_t *trail = ok ? (int32_t *)malloc(2 * ((size_t)max_depth + 1) * sizeof(int32_t)) : NULL;
    Step *path = ok ? (Step *)malloc(((size_t)max_m + 2) * sizeof(Step)) : NULL;
    double *inv = ok ? (double *)malloc(((size_t)max_m + 3) * sizeof(double)) : NULL;
    if (ok && (trail == NULL || path == NULL || inv == NULL)) ok = -2;
    Tables b = {nodes, (const double *)leaves_b.buf, (const double *)covers_b.buf, inv, trail, path, max_m,
                (int64_t)budget, 0, 0, 0, 0, NULL, NULL, NULL, NULL, 1};
    if (ok == 1) {
        for (int k = 0; k < max_m + 3; k++) inv[k] = k == 0 ? 0.0 : 1.0 / (double)k;
        for (int pass = 0; pass < 2 && b.ok == 1; pass++) {
            if (pass == 1) { /* sizes known: allocate the outputs, walk again to fill them */
                parts[0] = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)(b.n_steps * (int64_t)sizeof(LStep)));
                parts[1] = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)(b.n_leaves * (int64_t)sizeof(LeafInfo)));
                parts[2] = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)(b.n_feats * (int64_t)sizeof(int32_t)));
                parts[3] = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)(b.n_values * (int64_t)sizeof(double)));
                if (!parts[0] || !parts[1] || !parts[2] || !parts[3]) { ok = -3; break; }
                b.steps = (LStep *)PyBytes_AS_STRING(parts[0]);
                b.leafs = (LeafInfo *)PyBytes_AS_STRING(parts[1]);
                b.feats = (int32_t *)PyBytes_AS_STRING(parts[2]);
                b.table = (double *)PyBytes_AS_STRING(parts[3]);
                b.n_leaves = b.n_steps = b.n_feats = b.n_values = 0;
            }
            for (Py_ssize_t t = 0; t < n_trees && b.ok == 1; t++) leaf_walk(&b, roots[t], 0, depths[t]);
        }
        if (ok == 1) ok = b.ok; /* 0: too big for tables (not an error); -1: malformed */
    }
    free(trail);
    free(path);
    free(inv);
    PyBuffer_Release(&nodes_b);
    PyBuffer_Release(&leaves_b);
    PyBuffer_Release(&covers_b);
    PyBuffer_Release(&roots_b);
    PyBuffer_Release(&depths_b);
    if (ok == 1) result = PyTuple_Pack(4, parts[0], parts[1], parts[2], parts[3]);
    for (int k = 0; k < 4; k++) Py_XDECREF(parts[k]);
    if (ok == 1) return result;
    if (ok == -3) return NULL; /* the allocation's own error */
    if (ok == -2) return PyErr_NoMemory();
    if (ok == 0 && b.ok == 0) Py_RETURN_NONE;
    PyErr_SetString(PyExc_ValueError, "leaf_tables: malformed packed tree arrays, covers or shapes");
    return NULL;
}

/* tree_shap_tables(pnodes, steps, leafs, feats, table, X, out, n_cols, scale): tree_shap's numbers from
 * leaf_tables' output (trusted: it was built by leaf_tables from validated arrays). */
static PyObject *tree_shap_tables(PyObject *self, PyObject *args) {
    Py_buffer nodes_b, steps_b, leafs_b, feats_b, table_b, x_b, out_b;
    Py_ssize_t n_cols;
    double scale;
    if (!PyArg_ParseTuple(args, "y*y*y*y*y*y*w*nd", &nodes_b, &steps_b, &leafs_b, &feats_b, &table_b, &x_b, &out_b,
                          &n_cols, &scale))
        return NULL;
    const PNode *nodes = (const PNode *)nodes_b.buf;
    const LStep *steps = (const LStep *)steps_b.buf;
    const LeafInfo *leafs = (const LeafInfo *)leafs_b.buf;
    const int32_t *feats = (const int32_t *)feats_b.buf;
    const double *table = (const double *)table_b.buf;
    Py_ssize_t n_leaves = leafs_b.len / (Py_ssize_t)sizeof(LeafInfo);
    Py_ssize_t n_nodes = nodes_b.len / (Py_ssize_t)sizeof(PNode);
    Py_ssize_t n_rows = n_cols > 0 ? x_b.len / (Py_ssize_t)sizeof(double) / n_cols : 0;
    int ok = n_cols > 0 && x_b.len == n_rows * n_cols * (Py_ssize_t)sizeof(double) && out_b.len == x_b.len;
    uint8_t *left = ok ? (uint8_t *)malloc((size_t)n_nodes + 1) : NULL;
    if (ok && left == NULL) ok = -1;
    if (ok == 1) {
        PyThreadState *ts = NULL;
        if (n_rows * n_leaves >= 20000) ts = PyEval_SaveThread();
        double *out = (double *)out_b.buf;
        memset(out, 0, (size_t)out_b.len);
        for (Py_ssize_t r = 0; r < n_rows; r++) {
            const double *x = (const double *)x_b.buf + r * n_cols;
            double *phi = out + r * n_cols;
            /* every node's direction once (a leaf shares a split with its siblings) */
            for (Py_ssize_t i = 0; i < n_nodes; i++) left[i] = (uint8_t)packed_goes_left(nodes + i, x);
            for (Py_ssize_t l = 0; l < n_leaves; l++) {
                const LeafInfo *li = leafs + l;
                const LStep *st = steps + li->first_step;
                int32_t pattern = (int32_t)((1u << li->m) - 1);
                for (int32_t s = 0; s < li->n_steps; s++)
                    if (left[st[s].node] != st[s].left) pattern &= ~(1 << st[s].slot);
                const double *row = table + li->table + (int64_t)pattern * li->m;
                const int32_t *f = feats + li->first_feat;
                for (int32_t j = 0; j < li->m; j++) phi[f[j]] += row[j];
            }
            for (Py_ssize_t j = 0; j < n_cols; j++) phi[j] *= scale;
        }
        if (ts != NULL) PyEval_RestoreThread(ts);
    }
    free(left);
    PyBuffer_Release(&nodes_b);
    PyBuffer_Release(&steps_b);
    PyBuffer_Release(&leafs_b);
    PyBuffer_Release(&feats_b);
    PyBuffer_Release(&table_b);
    PyBuffer_Release(&x_b);
    PyBuffer_Release(&out_b);
    if (ok == -1) return PyErr_NoMemory();
    if (!ok) {
        PyErr_SetString(PyExc_ValueError, "tree_shap_tables: shapes do not match");
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"tree_shap", tree_shap, METH_VARARGS, "Path-dependent TreeSHAP values of packed trees for a float64 matrix."},
    {"leaf_tables", leaf_tables, METH_VARARGS, "Each leaf's TreeSHAP contributions for every pattern of its features."},
    {"tree_shap_tables", tree_shap_tables, METH_VARARGS, "tree_shap's values from leaf_tables' output."},
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
