"""Builds the optional C part of the stream worker (``modelport.stream._fastcodec``).

Everything else is in pyproject.toml. Without a C compiler the build of the extension is
skipped and the worker takes its pure-Python path, which gives the same results.
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "modelport.stream._fastcodec",
            ["src/modelport/stream/_fastcodec.c"],
            extra_compile_args=["-O2"],
            optional=True,
        )
    ]
)
