#!/bin/sh
# Build smps/_native for coverage-guided fuzzing (make fuzz-build).
#
#   fuzz/build.sh PYTHON OUT address|none
#
# Compiles the Cython modules with clang's -fsanitize=fuzzer-no-link (libFuzzer's
# coverage hooks) into OUT/smps/_native, beside the normal in-place build. With
# "address" they are built with AddressSanitizer too, and OUT/asan_with_fuzzer.so
# is made: ASan's runtime and libFuzzer in one library to LD_PRELOAD. atheris'
# docs ask for such a preload (ASan's weak coverage hooks would otherwise take
# the extension's coverage away from libFuzzer); its wheels do not ship one, so
# it is linked here from clang's own runtimes (Debian: clang, libclang-rt-14-dev).
set -eu
python=$1 out=$2 sanitizer=$3
command -v clang >/dev/null || { echo "$0: needs clang (Debian: apt-get install clang libclang-rt-14-dev)" >&2; exit 1; }
case $sanitizer in
    address) flags=-fsanitize=address,fuzzer-no-link ;;
    none) flags=-fsanitize=fuzzer-no-link ;;
    *) echo "$0: sanitizer must be address or none, not $sanitizer" >&2; exit 2 ;;
esac
CC=clang LDSHARED="clang -shared" CFLAGS="$flags" \
    "$python" setup.py --quiet build_ext --build-lib "$out" --build-temp "$out/temp"
if [ "$sanitizer" = address ]; then
    asan=$(clang -print-file-name=libclang_rt.asan-x86_64.a)
    fuzzer=$(clang -print-file-name=libclang_rt.fuzzer_no_main-x86_64.a)
    [ -f "$asan" ] && [ -f "$fuzzer" ] || { echo "$0: clang's runtimes are missing (Debian: apt-get install libclang-rt-14-dev)" >&2; exit 1; }
    objects=$out/temp/runtime
    rm -rf "$objects" && mkdir -p "$objects"
    # asan_preinit only works in an executable (.preinit_array); LD_PRELOAD runs first anyway.
    (cd "$objects" && ar x "$asan" && rm -f asan_preinit.cpp.o && ar x "$fuzzer")
    clang++ -shared -o "$out/asan_with_fuzzer.so" "$objects"/*.o -lpthread -ldl -lm -lrt
fi
