"""What every atheris target needs: instrumented code, then libFuzzer's loop.

Coverage comes from two places. Python modules of smps imported inside
``instrumented()`` get atheris' bytecode instrumentation. The Cython modules
(smps._native) are C: libFuzzer sees their branches only when they are built
with clang's ``-fsanitize=fuzzer-no-link`` (``make fuzz-build`` puts that
build in build/fuzz-native, beside the normal in-place one, which stays as it
is). Such a build calls libFuzzer's ``__sanitizer_cov_*`` hooks, so atheris'
bundled libFuzzer is loaded into the global symbol namespace before the first
smps._native import, and the targets import smps._native from that build.

Without a sanitizer the targets find exceptions, hangs and crashes (segfaults,
aborts), not silent out-of-bounds reads: see the README's fuzzing paragraph.
"""

import contextlib
import ctypes
import glob
import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
NATIVE_BUILD = REPO / "build" / "fuzz-native" / "smps" / "_native"


def _load_libfuzzer_globally() -> None:
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

    _load_libfuzzer_globally()
    _use_instrumented_native()
    with atheris.instrument_imports(include=["smps"]):
        yield
    for name, module in list(sys.modules.items()):
        if name.startswith("smps._native.") and module is not None:
            assert Path(module.__file__).parent == NATIVE_BUILD, module.__file__


def run(test_one_input) -> None:
    """Hand control to libFuzzer (arguments from the command line, e.g. -max_total_time=60)."""
    import atheris

    # internal_libfuzzer: the libFuzzer loaded above is atheris' own; without this
    # atheris would take it for a preloaded one and skip its own set-up.
    atheris.Setup(sys.argv, test_one_input, internal_libfuzzer=True)
    atheris.Fuzz()
