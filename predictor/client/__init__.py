"""What the serving process never runs: ``housing serve``/``housing predict`` (:mod:`.cli`) and the V2 request
builder (:mod:`.v2_request`). The MLflow ``pyfunc`` model of a bundle is :mod:`registry.pyfunc_model`.

May import core; no serving subpackage imports it.
"""
