"""Build the compiled hot paths in smps/_native with Cython.

Set SMPS_DEBUG=1 to build with line tracing (CYTHON_TRACE) and C assertions,
for profilers and leak hunting; the default build is optimised.
"""

import os
from pathlib import Path

from Cython.Build import cythonize
from setuptools import Extension, setup

DEBUG = os.environ.get("SMPS_DEBUG", "") not in ("", "0")

macros = [("CYTHON_TRACE", "1"), ("CYTHON_TRACE_NOGIL", "1")] if DEBUG else [("NDEBUG", "1")]
compile_args = ["-O0", "-g"] if DEBUG else ["-O2"]

extensions = [
    Extension(
        f"smps._native.{pyx.stem}",
        [str(pyx)],
        define_macros=macros,
        extra_compile_args=compile_args,
    )
    for pyx in sorted(Path("smps/_native").glob("*.pyx"))
]

setup(
    ext_modules=cythonize(
        extensions,
        language_level=3,
        compiler_directives={
            "binding": False,
            "linetrace": DEBUG,
            "embedsignature": True,
        },
        nthreads=os.cpu_count() or 1,
    ),
)
