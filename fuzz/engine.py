"""What every atheris target needs: instrumented code, then libFuzzer's loop.

Coverage comes from two places. Python modules of smps imported inside
``instrumented()`` get atheris' bytecode instrumentation. The Cython modules
(smps._native) are C: libFuzzer sees their branches only when they are built
with clang's ``-fsanitize=fuzzer-no-link``; ``make fuzz-build`` (fuzz/build.sh)
puts that build in build/fuzz-address (with AddressSanitizer) or
build/fuzz-none (FUZZ_SANITIZER=none), beside the normal in-place build, and
the targets import smps._native from there (``SMPS_FUZZ_NATIVE`` names the
folder). Those modules call libFuzzer's ``__sanitizer_cov_*`` hooks, which must
be in the global symbol namespace before the first import:

* with ASan, ``asan_with_fuzzer.so`` (ASan's runtime and libFuzzer) is
  LD_PRELOADed; a target started without it re-executes itself with it, so
  ``python -m fuzz.codec CRASH-FILE`` replays a finding as it is;
* without, atheris' bundled libFuzzer is loaded with RTLD_GLOBAL.

Without ASan the targets find exceptions, hangs and crashes, not silent
out-of-bounds reads or writes.
"""

import contextlib
import ctypes
import glob
import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BUILD = Path(os.environ.get("SMPS_FUZZ_NATIVE", REPO / "build" / "fuzz-address")).resolve()
NATIVE_BUILD = BUILD / "smps" / "_native"
ASAN_PRELOAD = BUILD / "asan_with_fuzzer.so"


def _preloaded() -> bool:
    """A libFuzzer is already in the process (the LD_PRELOADed ASan runtime)."""
    from atheris import native

    return native.libfuzzer_is_loaded()


def _load_libfuzzer() -> None:
    if ASAN_PRELOAD.exists():
        if not _preloaded():
            env = {
                **os.environ,
                "SMPS_FUZZ_NATIVE": str(BUILD),
                "LD_PRELOAD": str(ASAN_PRELOAD),
                "ASAN_OPTIONS": os.environ.get("ASAN_OPTIONS", "detect_leaks=0"),
            }
            os.execve(sys.executable, [sys.executable, *sys.orig_argv[1:]], env)
        return
    import atheris

    (core,) = glob.glob(os.path.join(os.path.dirname(atheris.__file__), "core_with_libfuzzer*.so"))
    ctypes.CDLL(core, mode=os.RTLD_NOW | os.RTLD_GLOBAL)


def _use_instrumented_native() -> None:
    if not any(NATIVE_BUILD.glob("pdu*.so")):
        sys.exit(f"{NATIVE_BUILD} has no instrumented build: run `make fuzz-build` first")
    if any(name.startswith("smps._native.") for name in sys.modules):
        raise RuntimeError("smps._native was imported before the instrumented build was chosen")
    import smps._native

    smps._native.__path__.insert(0, str(NATIVE_BUILD))


@contextlib.contextmanager
def instrumented():
    """Import the code under test inside this block (once per process)."""
    import atheris

    _load_libfuzzer()
    _use_instrumented_native()
    with atheris.instrument_imports(include=["smps"]):
        yield
    for name, module in list(sys.modules.items()):
        path = getattr(module, "__file__", None) or ""
        if name.startswith("smps._native.") and path.endswith(".so"):  # not plain .py ones
            assert Path(path).parent == NATIVE_BUILD, path


def run(test_one_input) -> None:
    """Hand control to libFuzzer (arguments from the command line, e.g. -max_total_time=60)."""
    import atheris

    # Without ASan the libFuzzer loaded above is atheris' own: internal_libfuzzer, or
    # atheris would take it for a preloaded one and skip its own set-up.
    atheris.Setup(sys.argv, test_one_input, internal_libfuzzer=not ASAN_PRELOAD.exists())
    atheris.Fuzz()
