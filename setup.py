"""Builds the predictor's optional C extensions; everything else is in pyproject.toml.

``bundle._ubjson`` decodes ``model.ubj``; ``predictor.codec._codec`` decodes requests;
``predictor.core._fastpath`` predicts, ``predictor.core._ranges`` flags out-of-range values and
``predictor.core._treeshap`` explains. ``_fastpath`` and ``_treeshap`` read the packed trees of
``predictor/core/_packed.h``; the predictor's four start from ``predictor/core/_module.h``. Each extension
has its own interface version, so a change to one does not retire a built copy of another. Without a
compiler the pure-Python/numpy paths are used.
"""

from setuptools import Extension, setup

MODULE = ["predictor/core/_module.h"]
PACKED = [*MODULE, "predictor/core/_packed.h"]

setup(
    ext_modules=[
        Extension(
            "bundle._ubjson",
            sources=["bundle/_ubjson.c"],
            extra_compile_args=["-O3"],
            optional=True,  # without a compiler bundle/ubjson.py decodes in Python
        ),
        Extension(
            "predictor.codec._codec",
            sources=["predictor/codec/_codec.c"],
            depends=MODULE,
            include_dirs=["predictor/core"],
            extra_compile_args=["-O3"],
            optional=True,  # without a compiler predictor/codec/decode.py decodes in Python
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
            "predictor.core._ranges",
            sources=["predictor/core/_ranges.c"],
            depends=MODULE,
            extra_compile_args=["-O3"],
            optional=True,  # without a compiler numpy flags them
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
