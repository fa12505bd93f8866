"""Builds the predictor's optional C extensions; everything else is in pyproject.toml.

``predictor._fastpath`` predicts (and decodes requests); ``predictor._treeshap`` explains. Both read
the packed trees of ``predictor/_packed.h``; each has its own interface version, so a change to one
does not retire a built copy of the other. Without a compiler the pure-Python/numpy paths are used.
"""

from setuptools import Extension, setup

PACKED = ["predictor/_packed.h"]

setup(
    ext_modules=[
        Extension(
            "predictor._fastpath",
            sources=["predictor/_fastpath.c"],
            depends=PACKED,
            extra_compile_args=["-O3", "-pthread"],
            extra_link_args=["-pthread"],  # eval_batch splits large batches over threads
            optional=True,  # without a compiler the pure-numpy evaluator is used
        ),
        Extension(
            "predictor._treeshap",
            sources=["predictor/_treeshap.c"],
            depends=PACKED,
            extra_compile_args=["-O3"],
            optional=True,  # without a compiler explanations run in Python (slowly)
        ),
    ]
)
