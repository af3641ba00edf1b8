#pragma once

// The process's one embedded CPython interpreter (Debian's libpython3.11),
// started on first use and never finalized (CPython cannot be restarted, and
// finalizing while other threads may still hold Python objects -- batches
// whose buffers came from pandas -- is unsafe; the OS reclaims it at exit).
//
// Threads: after initialization no thread holds the GIL; every call into
// Python takes it (PyGILState_Ensure) and gives it back. Python code of
// different callers therefore runs one at a time: two materialization jobs
// with Python transformations serialize on the GIL, while everything that does
// not call Python (serving, HTTP, other jobs) never waits for it.
//
// Module search path: CPython's own (the Debian stdlib), PYTHONPATH when set
// (CPython honours it itself), then the site-packages of the pyarrow wheel
// whose Arrow C++ libraries fstore links (compiled in from cmake/Arrow.cmake;
// pandas is importable when installed there), placed before the system's
// dist-packages so that the venv's numpy/pandas win. pyarrow imported here
// uses the libarrow.so already loaded by the binary (same soname, same
// wheel), which is what makes the zero-copy batch exchange valid.
//
// No Python header leaks through this interface: it is used by code that does
// not include Python.h.

#include <string>
#include <vector>

#include "fstore/core/status.h"

namespace fstore {

/// Starts the interpreter and imports pyarrow, once per process; thread-safe.
/// Later calls return the first call's result. Unavailable when libpython
/// cannot start or pyarrow cannot be imported (with the Python traceback).
Status InitializePython();

/// What the embedded interpreter runs with, for diagnostics and tests.
struct PythonRuntimeInfo {
  std::string python_version;   ///< sys.version
  std::string pyarrow_version;  ///< pyarrow.__version__
  std::string pyarrow_dir;      ///< the directory of the imported pyarrow package
  std::vector<std::string> sys_path;
  /// Distinct libarrow.so files mapped into the process (/proc/self/maps):
  /// exactly one when the binary and pyarrow share the wheel's libarrow.
  std::vector<std::string> libarrow_files;
  bool pandas_available = false;
};
Result<PythonRuntimeInfo> DescribePython();

}  // namespace fstore
