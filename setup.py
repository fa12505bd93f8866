"""Builds the predictor's optional C extensions; everything else is in pyproject.toml.

``bundle._ubjson`` decodes ``model.ubj``; ``predictor.core._fastpath`` predicts (and decodes requests);
``predictor.core._treeshap`` explains. The last two read the packed trees of ``predictor/core/_packed.h``;
each extension has its own interface version, so a change to one does not retire a built copy of
another. Without a compiler the pure-Python/numpy paths are used.
"""

from setuptools import Extension, setup

PACKED = ["predictor/core/_packed.h"]

setup(
    ext_modules=[
        Extension(
            "bundle._ubjson",
            sources=["bundle/_ubjson.c"],
            extra_compile_args=["-O3"],
            optional=True,  # without a compiler bundle/ubjson.py decodes in Python
        ),
        Extension(
            "predictor.core._fastpath",
            sources=["predictor/core/_fastpath.c"],
            depends=PACKED,
            extra_compile_args=["-O3", "-pthread"],
            extra_link_args=["-pthread"],  # eval_batch splits large batches over threads
            optional=True,  # without a compiler the pure-numpy evaluator is used
        ),
        Extension(
            "predictor.core._treeshap",
            sources=["predictor/core/_treeshap.c"],
            depends=PACKED,
            extra_compile_args=["-O3"],
            optional=True,  # without a compiler explanations run in Python (slowly)
        ),
    ]
)
