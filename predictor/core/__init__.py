"""The model core: where a bundle comes from (:mod:`.storage`), a verified bundle loaded (:mod:`.loaded`),
the evaluator (:mod:`.fastpath` + the C extension ``_fastpath``), TreeSHAP (:mod:`.treeshap` + ``_treeshap``)
and out-of-range flags (:mod:`.ranges` + ``_ranges``); every C extension of the predictor starts from
``_module.h``.

Imports ``common``, the ``bundle`` contract package and itself: no KServe, no transport, no metrics.
"""
