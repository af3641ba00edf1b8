# Every fstore build option, in one place.
option(FSTORE_BUILD_TESTS "Build the GoogleTest unit tests" ON)
option(FSTORE_BUILD_SERVER "Build the fstore binary (server and CLI)" ON)
option(FSTORE_BUILD_BENCHMARKS "Build the Google Benchmark binaries" OFF)
option(FSTORE_SANITIZE "Build with AddressSanitizer and UndefinedBehaviorSanitizer" OFF)
option(FSTORE_FUZZ "Build the libFuzzer targets (needs clang)" OFF)
option(FSTORE_JEMALLOC "Link the fstore binary with jemalloc (not with sanitizers)" ON)
option(FSTORE_WARNINGS_AS_ERRORS "Treat compiler warnings as errors" OFF)
set(FSTORE_PYARROW_DIR "" CACHE PATH
    "Directory of the pyarrow wheel whose Arrow C++ libraries we link (default: .venv's)")
