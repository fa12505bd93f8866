/* Per-feature contributions of tree ensembles: path-dependent TreeSHAP (Lundberg, Erion & Lee 2018,
 * "Consistent individualized feature attribution for tree ensembles", Algorithm 2), the algorithm
 * behind XGBoost's `pred_contribs=True` and shap's TreeExplainer(feature_perturbation="tree_path_dependent").
 *
 * tree_shap(pnodes, leaves, covers, roots, depths, X, out, n_cols, scale, check)
 *   the packed trees of _packed.h (the evaluator's own arrays) plus covers: float64 per packed node,
 *   the training weight that reached it (XGBoost: sum_hessian; scikit-learn: weighted_n_node_samples);
 *   X: float64 (n_rows, n_cols) row-major; out: float64 (n_rows, n_cols), overwritten with
 *   scale * sum over trees of each feature's SHAP value. The bias (the covers' expected value of the
 *   ensemble) does not depend on the row: predictor/core/treeshap.py computes it once.
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

#include "_module.h"
#include "_packed.h"

/* Bumped whenever tree_shap's signature changes: Python ignores a stale build (see treeshap.py). */
#define TREESHAP_ABI 3

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

/* The end of a call: every buffer it held released, then None, or MemoryError (ok == -1), or
 * ValueError(error) (ok == 0). */
static PyObject *release_and_answer(int ok, const char *error, Py_buffer *held[], size_t n) {
    for (size_t i = 0; i < n; i++) PyBuffer_Release(held[i]);
    if (ok == -1) return PyErr_NoMemory();
    if (!ok) {
        PyErr_SetString(PyExc_ValueError, error);
        return NULL;
    }
    Py_RETURN_NONE;
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
    Py_buffer *held[] = {&nodes_b, &leaves_b, &covers_b, &roots_b, &depths_b, &x_b, &out_b};
    return release_and_answer(ok, "tree_shap: malformed packed tree arrays, covers or shapes", held,
                              sizeof held / sizeof *held);
}

/* -- block tables: Algorithm 2 done ahead of time for shallow subtrees -------------------------------
 * What a subtree adds to the contributions depends on the row only through (a) for each distinct
 * feature split on above it, whether x follows every such split, and (b) which way x goes at each of
 * its own splits — the zero fractions are the tree's. block_tables cuts every tree into blocks: the
 * highest subtrees whose (a) + (b) fit in `block_bits` bits, else single leaves with at most `max_m`
 * distinct path features. Per block and per pattern of its bits it stores the summed contributions of
 * the block's leaves to the block's features (leaf values included). tree_shap_blocks then evaluates
 * a block's few splits to get its pattern and adds one table row: for XGBoost's depth-4 trees four
 * blocks (two ancestor splits and three own splits, 32 rows) instead of sixteen leaves. The same
 * per-leaf numbers as Algorithm 2, summed ahead of time.
 *
 * Arrays (all built here), the blocks of each tree in depth-first order, the trees in order:
 *   steps: KStep per split a block's pattern reads (its ancestors', then its own in preorder);
 *   blocks: Block; feats: uint16 per block feature (the ancestors' distinct features first);
 *   table: float64, 2^bits rows of n_feat values per block.
 * A pattern bit is 1 when x does not go the step's `want` way (1: left): an ancestor feature's bit
 * (shared by its splits) when x leaves the path at one of them, a block split's bit when x goes right. */
typedef struct { /* 8 bytes: a row reads them all, so small is fast (hence at most 65535 columns) */
    float thr;
    uint16_t feat;
    uint8_t bit;
    uint8_t flags; /* 1: want (left), 2: NaN goes left */
} KStep;

typedef struct {
    uint16_t n_steps, n_feat; /* this block's steps and features follow the previous block's */
    uint32_t table;           /* into table: 2^bits rows of n_feat values */
} Block;

#define MAX_COLS 65535
#define MAX_VALUES 4294967295LL

#define MAX_BITS 30
#define PREFETCH_CHUNK 32

typedef struct {
    const PNode *nodes;
    const double *leaves, *covers, *inv;
    int32_t *trail;  /* (node, went left) pairs from the root down to the current node */
    Step *path;      /* scratch for the leaf step */
    int max_m;       /* no tables when a leaf's path has more distinct features than this */
    int block_bits;  /* a subtree is one block when its pattern has at most this many bits */
    int64_t budget;  /* and none above this many table values */
    int64_t n_blocks, n_steps, n_feats, n_values; /* counts (first pass), then positions (second) */
    KStep *steps;    /* outputs: NULL in the first pass */
    Block *blocks;
    uint16_t *feats;
    double *table;
    int ok; /* 1; 0: too big for tables (not an error); -1: malformed */
} Tables;

static int slot_of(const int32_t *feats, int n, int32_t f) {
    int j = 0;
    while (j < n && feats[j] != f) j++;
    return j;
}

/* the splits in the subtree of id, or cap + 1 once there are more than cap; -1: malformed */
static int count_splits(const PNode *nodes, int32_t id, int levels, int cap) {
    if (packed_is_leaf(nodes, id)) return 0;
    if (levels <= 0) return -1;
    if (cap <= 0) return cap + 1;
    const int l = count_splits(nodes, nodes[id].left, levels - 1, cap - 1);
    if (l < 0 || l + 1 > cap) return l < 0 ? -1 : cap + 1;
    const int r = count_splits(nodes, nodes[id].left + 1, levels - 1, cap - 1 - l);
    return r < 0 ? -1 : 1 + l + r;
}

/* the block's own splits in preorder (their number was checked by count_splits) */
static void collect_splits(const PNode *nodes, int32_t id, int32_t *sub, int *n) {
    if (packed_is_leaf(nodes, id)) return;
    sub[(*n)++] = id;
    collect_splits(nodes, nodes[id].left, sub, n);
    collect_splits(nodes, nodes[id].left + 1, sub, n);
}

typedef struct {
    int top;             /* depth of the block's root: trail[0 .. top) are its ancestors */
    uint32_t key;        /* the pattern */
    const int32_t *anc;  /* the ancestors' distinct features: key bits 0 .. m_a - 1 */
    int m_a;
    const int32_t *sub;  /* the block's splits: key bits m_a .. */
    int n_sub;
    const int32_t *feats; /* the block's features: where each leaf's contributions go */
    int n_feat;
    double *row;
} Fill;

/* Algorithm 2's leaf step for the leaf at trail depth `depth`, under the pattern, added to the row */
static void fill_leaf(Tables *b, const Fill *fl, int32_t leaf, int depth) {
    int32_t feats[MAX_BITS + 1];
    double zero[MAX_BITS + 1], one[MAX_BITS + 1];
    int m = 0;
    for (int d = 0; d < depth; d++) {
        const int32_t node = b->trail[2 * d], went_left = b->trail[2 * d + 1];
        const int32_t f = b->nodes[node].feat;
        const int32_t child = b->nodes[node].left + (went_left ? 0 : 1);
        int followed;
        if (d < fl->top) followed = !((fl->key >> slot_of(fl->anc, fl->m_a, f)) & 1);
        else followed = (int32_t)((fl->key >> (fl->m_a + slot_of(fl->sub, fl->n_sub, node))) & 1) != went_left;
        const int j = slot_of(feats, m, f);
        if (j == m) {
            feats[m] = f;
            zero[m] = one[m] = 1.0;
            m++;
        }
        zero[j] *= b->covers[child] / b->covers[node];
        if (!followed) one[j] = 0.0;
    }
    const double value = b->leaves[leaf];
    Step *path = b->path;
    extend(path, 0, 1.0, 1.0, -1, b->inv);
    for (int j = 0; j < m; j++) extend(path, j + 1, zero[j], one[j], feats[j], b->inv);
    double cold = 0.0;
    for (int i = m - 1; i >= 0; i--) cold += path[i].weight * b->inv[m - i];
    cold *= (m + 1) * value;
    for (int j = 0; j < m; j++)
        fl->row[slot_of(fl->feats, fl->n_feat, feats[j])] +=
            one[j] != 0.0 ? unwound_sum_hot(path, m, j + 1, b->inv) * (1.0 - zero[j]) * value : -cold;
}

static void fill_walk(Tables *b, const Fill *fl, int32_t id, int depth) {
    if (packed_is_leaf(b->nodes, id)) {
        fill_leaf(b, fl, id, depth);
        return;
    }
    b->trail[2 * depth] = id;
    b->trail[2 * depth + 1] = 1;
    fill_walk(b, fl, b->nodes[id].left, depth + 1);
    b->trail[2 * depth + 1] = 0;
    fill_walk(b, fl, b->nodes[id].left + 1, depth + 1);
}

/* the subtree of id (its ancestors on the trail, with m_a distinct features anc) as one block */
static void emit_block(Tables *b, int32_t id, int top, const int32_t *anc, int m_a) {
    int32_t sub[MAX_BITS + 1], feats[2 * MAX_BITS + 2];
    int n_sub = 0;
    collect_splits(b->nodes, id, sub, &n_sub);
    int n_feat = m_a;
    memcpy(feats, anc, (size_t)m_a * sizeof(int32_t));
    for (int k = 0; k < n_sub; k++) {
        const int32_t f = b->nodes[sub[k]].feat;
        if (slot_of(feats, n_feat, f) == n_feat) feats[n_feat++] = f;
    }
    const int bits = m_a + n_sub;
    const int64_t rows = (int64_t)1 << bits;
    if (b->blocks != NULL) {
        Block *bl = b->blocks + b->n_blocks;
        bl->n_steps = (uint16_t)(top + n_sub);
        bl->n_feat = (uint16_t)n_feat;
        bl->table = (uint32_t)b->n_values;
        KStep *st = b->steps + b->n_steps;
        for (int k = 0; k < top + n_sub; k++) {
            const int32_t node = k < top ? b->trail[2 * k] : sub[k - top];
            const PNode *nd = b->nodes + node;
            st[k].thr = nd->thr;
            st[k].feat = (uint16_t)nd->feat;
            st[k].bit = (uint8_t)(k < top ? slot_of(anc, m_a, nd->feat) : m_a + k - top);
            st[k].flags = (uint8_t)((k < top ? b->trail[2 * k + 1] != 0 : 1) | (nd->dl != 0) << 1);
        }
        for (int j = 0; j < n_feat; j++) b->feats[b->n_feats + j] = (uint16_t)feats[j];
        double *table = b->table + b->n_values;
        memset(table, 0, (size_t)(rows * n_feat) * sizeof(double));
        Fill fl = {top, 0, anc, m_a, sub, n_sub, feats, n_feat, NULL};
        for (int64_t key = 0; key < rows; key++) {
            fl.key = (uint32_t)key;
            fl.row = table + key * n_feat;
            fill_walk(b, &fl, id, top);
        }
    }
    b->n_blocks += 1;
    b->n_steps += top + n_sub;
    b->n_feats += n_feat;
    b->n_values += rows * n_feat;
    if (b->n_values > b->budget || top + n_sub > UINT16_MAX) b->ok = 0;
}

static void block_walk(Tables *b, int32_t id, int depth, int levels) {
    if (b->ok != 1) return;
    int32_t anc[MAX_BITS + 1];
    int m_a = 0;
    for (int d = 0; d < depth; d++) {
        const int32_t f = b->nodes[b->trail[2 * d]].feat;
        if (slot_of(anc, m_a, f) < m_a) continue;
        if (m_a == b->max_m) { b->ok = 0; return; } /* too many for a leaf below: no tables */
        anc[m_a++] = f;
    }
    const int leaf = packed_is_leaf(b->nodes, id);
    const int cap = b->block_bits - m_a;
    const int splits = leaf ? 0 : cap < 0 ? 1 : count_splits(b->nodes, id, levels, cap);
    if (splits < 0) { b->ok = -1; return; }
    if (leaf || splits <= cap) {
        emit_block(b, id, depth, anc, m_a);
        return;
    }
    if (levels <= 0) { b->ok = -1; return; }
    b->trail[2 * depth] = id;
    b->trail[2 * depth + 1] = 1;
    block_walk(b, b->nodes[id].left, depth + 1, levels - 1);
    b->trail[2 * depth + 1] = 0;
    block_walk(b, b->nodes[id].left + 1, depth + 1, levels - 1);
}

/* block_tables(pnodes, leaves, covers, roots, depths, n_cols, max_m, block_bits, budget)
 *   -> (steps, blocks, feats, table) as bytes, or None when a leaf's path has more than max_m distinct
 *   features or the table would exceed budget values. Validates the arrays like tree_shap. */
static PyObject *block_tables(PyObject *self, PyObject *args) {
    Py_buffer nodes_b, leaves_b, covers_b, roots_b, depths_b;
    Py_ssize_t n_cols;
    int max_m, block_bits;
    long long budget;
    if (!PyArg_ParseTuple(args, "y*y*y*y*y*niiL", &nodes_b, &leaves_b, &covers_b, &roots_b, &depths_b, &n_cols,
                          &max_m, &block_bits, &budget))
        return NULL;
    const PNode *nodes = (const PNode *)nodes_b.buf;
    const int32_t *roots = (const int32_t *)roots_b.buf, *depths = (const int32_t *)depths_b.buf;
    Py_ssize_t n_trees = roots_b.len / (Py_ssize_t)sizeof(int32_t);
    Py_ssize_t n_nodes = nodes_b.len / (Py_ssize_t)sizeof(PNode);
    if (n_cols > MAX_COLS) budget = -1; /* the steps store columns in 16 bits: no tables */
    if (budget > MAX_VALUES) budget = MAX_VALUES;
    int ok = n_cols > 0 && max_m >= 0 && max_m <= MAX_BITS && block_bits >= 0 && block_bits <= max_m &&
             depths_b.len == roots_b.len && nodes_b.len % (Py_ssize_t)sizeof(PNode) == 0 &&
             leaves_b.len == n_nodes * (Py_ssize_t)sizeof(double) && covers_b.len == leaves_b.len &&
             packed_valid(nodes, n_nodes, roots, depths, n_trees, n_cols) &&
             covers_valid((const double *)covers_b.buf, n_nodes);
    PyObject *result = NULL, *parts[4] = {NULL, NULL, NULL, NULL};
    int32_t max_depth = 0;
    for (Py_ssize_t t = 0; ok && t < n_trees; t++) max_depth = depths[t] > max_depth ? depths[t] : max_depth;
    int32_t *trail = ok ? (int32_t *)malloc(2 * ((size_t)max_depth + 1) * sizeof(int32_t)) : NULL;
    Step *path = ok ? (Step *)malloc(((size_t)max_m + 2) * sizeof(Step)) : NULL;
    double *inv = ok ? (double *)malloc(((size_t)max_m + 3) * sizeof(double)) : NULL;
    if (ok && (trail == NULL || path == NULL || inv == NULL)) ok = -2;
    Tables b = {nodes, (const double *)leaves_b.buf, (const double *)covers_b.buf, inv, trail, path, max_m,
                block_bits, (int64_t)budget, 0, 0, 0, 0, NULL, NULL, NULL, NULL, 1};
    if (ok == 1) {
        for (int k = 0; k < max_m + 3; k++) inv[k] = k == 0 ? 0.0 : 1.0 / (double)k;
        for (int pass = 0; pass < 2 && b.ok == 1; pass++) {
            if (pass == 1) { /* sizes known: allocate the outputs, walk again to fill them */
                parts[0] = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)(b.n_steps * (int64_t)sizeof(KStep)));
                parts[1] = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)(b.n_blocks * (int64_t)sizeof(Block)));
                parts[2] = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)(b.n_feats * (int64_t)sizeof(uint16_t)));
                parts[3] = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)(b.n_values * (int64_t)sizeof(double)));
                if (!parts[0] || !parts[1] || !parts[2] || !parts[3]) { ok = -3; break; }
                b.steps = (KStep *)PyBytes_AS_STRING(parts[0]);
                b.blocks = (Block *)PyBytes_AS_STRING(parts[1]);
                b.feats = (uint16_t *)PyBytes_AS_STRING(parts[2]);
                b.table = (double *)PyBytes_AS_STRING(parts[3]);
                b.n_blocks = b.n_steps = b.n_feats = b.n_values = 0;
            }
            for (Py_ssize_t t = 0; t < n_trees && b.ok == 1; t++) block_walk(&b, roots[t], 0, depths[t]);
        }
        if (ok == 1) ok = b.ok;
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
    PyErr_SetString(PyExc_ValueError, "block_tables: malformed packed tree arrays, covers or shapes");
    return NULL;
}

/* tree_shap_blocks(steps, blocks, feats, table, X, out, n_cols, scale): tree_shap's numbers from
 * block_tables' output (trusted: block_tables built it from validated arrays). */
static PyObject *tree_shap_blocks(PyObject *self, PyObject *args) {
    Py_buffer steps_b, blocks_b, feats_b, table_b, x_b, out_b;
    Py_ssize_t n_cols;
    double scale;
    if (!PyArg_ParseTuple(args, "y*y*y*y*y*w*nd", &steps_b, &blocks_b, &feats_b, &table_b, &x_b, &out_b, &n_cols,
                          &scale))
        return NULL;
    const Block *blocks = (const Block *)blocks_b.buf;
    const double *table = (const double *)table_b.buf;
    Py_ssize_t n_blocks = blocks_b.len / (Py_ssize_t)sizeof(Block);
    Py_ssize_t n_rows = n_cols > 0 ? x_b.len / (Py_ssize_t)sizeof(double) / n_cols : 0;
    int ok = n_cols > 0 && x_b.len == n_rows * n_cols * (Py_ssize_t)sizeof(double) && out_b.len == x_b.len;
    float *xf = ok ? (float *)malloc((size_t)n_cols * sizeof(float)) : NULL;
    if (ok && xf == NULL) ok = -1;
    if (ok == 1) {
        PyThreadState *ts = NULL;
        if (n_rows * n_blocks >= 20000) ts = PyEval_SaveThread();
        double *out = (double *)out_b.buf;
        memset(out, 0, (size_t)out_b.len);
        for (Py_ssize_t r = 0; r < n_rows; r++) {
            const double *x = (const double *)x_b.buf + r * n_cols;
            double *phi = out + r * n_cols;
            for (Py_ssize_t j = 0; j < n_cols; j++) xf[j] = (float)x[j]; /* the split rule compares floats */
            const KStep *st = (const KStep *)steps_b.buf;
            const uint16_t *f = (const uint16_t *)feats_b.buf;
            /* the table rows are random reads from megabytes: find a chunk of blocks' rows and
             * prefetch them all first, so that their cache misses overlap, then add them */
            const double *rows[PREFETCH_CHUNK];
            for (Py_ssize_t k0 = 0; k0 < n_blocks; k0 += PREFETCH_CHUNK) {
                const int n = n_blocks - k0 < PREFETCH_CHUNK ? (int)(n_blocks - k0) : PREFETCH_CHUNK;
                for (int i = 0; i < n; i++) {
                    const Block *bl = blocks + k0 + i;
                    uint32_t key = 0;
                    for (int32_t s = 0; s < bl->n_steps; s++, st++) {
                        const float fv = xf[st->feat];
                        const uint32_t left = (uint32_t)((fv <= st->thr) | ((fv != fv) & (st->flags >> 1)));
                        key |= (left ^ (st->flags & 1u)) << st->bit;
                    }
                    const double *row = table + bl->table + (int64_t)key * bl->n_feat;
                    __builtin_prefetch(row);
                    __builtin_prefetch(row + bl->n_feat - 1);
                    rows[i] = row;
                }
                for (int i = 0; i < n; i++) {
                    const int nf = blocks[k0 + i].n_feat;
                    for (int j = 0; j < nf; j++) phi[f[j]] += rows[i][j];
                    f += nf;
                }
            }
            for (Py_ssize_t j = 0; j < n_cols; j++) phi[j] *= scale;
        }
        if (ts != NULL) PyEval_RestoreThread(ts);
    }
    free(xf);
    Py_buffer *held[] = {&steps_b, &blocks_b, &feats_b, &table_b, &x_b, &out_b};
    return release_and_answer(ok, "tree_shap_blocks: shapes do not match", held, sizeof held / sizeof *held);
}

static PyMethodDef methods[] = {
    {"tree_shap", tree_shap, METH_VARARGS, "Path-dependent TreeSHAP values of packed trees for a float64 matrix."},
    {"block_tables", block_tables, METH_VARARGS, "Each block's TreeSHAP contributions for every pattern of its bits."},
    {"tree_shap_blocks", tree_shap_blocks, METH_VARARGS, "tree_shap's values from block_tables' output."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_treeshap", NULL, -1, methods};

PyMODINIT_FUNC PyInit__treeshap(void) { return module_with_abi(&module, TREESHAP_ABI); }
