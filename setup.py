"""Builds the predictor's optional C fast path; everything else is in pyproject.toml."""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "predictor._fastpath",
            sources=["predictor/_fastpath.c"],
            extra_compile_args=["-O3"],
            optional=True,  # without a compiler the pure-numpy evaluator is used
        )
    ]
)
