/* The packed tree layout shared by the predictor's C extensions (_fastpath.c: eval_packed,
 * _treeshap.c: tree_shap); built by predictor/core/fastpath.py: pack_trees (PNODE_DTYPE).
 *
 *   PNode[] (16 bytes), each tree breadth-first so a split's right child is left + 1; a split sends x
 *   left when (float)x <= thr (thr rounded so that this equals XGBoost's `x < split` / scikit-learn's
 *   `x <= thr`), NaN goes left iff dl; a leaf loops on itself (left = its own index, thr = +inf, dl = 1).
 *   roots, depths: int32 per tree (depth = the number of splits on the longest root-to-leaf path).
 */
#ifndef HOUSING_PACKED_H
#define HOUSING_PACKED_H

#include <Python.h>
#include <math.h>
#include <stdint.h>

typedef struct {
    float thr;
    int32_t left;
    int32_t feat;
    int32_t dl;
} PNode;

/* 1 when row x goes to the left child of nd (the rule every packed walk uses) */
static inline int packed_goes_left(const PNode *nd, const double *x) {
    float fv = (float)x[nd->feat];
    return (fv <= nd->thr) | ((fv != fv) & nd->dl);
}

#define WALK(id, x)                                                                 \
    do {                                                                            \
        const PNode *nd_ = nodes + (id);                                            \
        (id) = nd_->left + 1 - packed_goes_left(nd_, (x));                          \
    } while (0)

static inline int packed_is_leaf(const PNode *nodes, int32_t i) {
    const PNode *nd = nodes + i;
    return nd->left == i && isinf(nd->thr) && nd->thr > 0 && nd->dl == 1;
}

static int packed_valid(const PNode *nodes, Py_ssize_t n_nodes, const int32_t *roots, const int32_t *depths,
                        Py_ssize_t n_trees, Py_ssize_t n_cols) {
    /* every walk stays inside the array: a split's children exist; a node that can only go left
     * (thr = +inf, dl = 1) may point at itself */
    for (Py_ssize_t i = 0; i < n_nodes; i++) {
        const PNode *nd = nodes + i;
        if (nd->feat < 0 || nd->feat >= n_cols || nd->left < 0 || nd->left >= n_nodes) return 0;
        if (!packed_is_leaf(nodes, (int32_t)i) && (Py_ssize_t)nd->left + 1 >= n_nodes) return 0;
    }
    for (Py_ssize_t t = 0; t < n_trees; t++)
        if (roots[t] < 0 || roots[t] >= n_nodes || depths[t] < 0 || depths[t] > 4096) return 0;
    return 1;
}

#endif
