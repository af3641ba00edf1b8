#pragma once

// Private to src/fstore/python/: the pieces of the embedded interpreter that
// need Python.h. Everything here requires InitializePython() to have
// succeeded; "GIL held" marks what must run while the caller holds the GIL.

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <chrono>
#include <cstdint>
#include <string>
#include <utility>

namespace fstore::python_internal {

/// Holds the GIL for its lifetime (PyGILState_Ensure/Release); reentrant.
class GilGuard {
 public:
  GilGuard() : state_(PyGILState_Ensure()) {}
  ~GilGuard() { PyGILState_Release(state_); }
  GilGuard(const GilGuard&) = delete;
  GilGuard& operator=(const GilGuard&) = delete;

 private:
  PyGILState_STATE state_;
};

/// An owned reference; destroy it with the GIL held.
class PyRef {
 public:
  PyRef() = default;
  explicit PyRef(PyObject* owned) : p_(owned) {}
  PyRef(PyRef&& o) noexcept : p_(std::exchange(o.p_, nullptr)) {}
  PyRef& operator=(PyRef&& o) noexcept {
    if (this != &o) {
      Py_XDECREF(p_);
      p_ = std::exchange(o.p_, nullptr);
    }
    return *this;
  }
  PyRef(const PyRef&) = delete;
  PyRef& operator=(const PyRef&) = delete;
  ~PyRef() { Py_XDECREF(p_); }

  PyObject* get() const { return p_; }
  explicit operator bool() const { return p_ != nullptr; }
  PyObject* release() { return std::exchange(p_, nullptr); }

 private:
  PyObject* p_ = nullptr;
};

/// The glue module (embedded_python.cc's kGlueSource); borrowed. GIL held.
PyObject* Glue();

/// The TimeoutError subclass the watchdog raises in a call past its deadline.
PyObject* TimeoutExceptionType();

/// The pending Python exception as traceback.format_exception's text (the
/// exception is cleared). GIL held.
std::string FetchTraceback();

/// str(obj), or "" on failure. GIL held.
std::string StrOf(PyObject* obj);

/// Bounds the Python code run by the current thread between construction and
/// destruction (both with the GIL held) by `timeout`: past it, a watchdog
/// thread raises TimeoutExceptionType() in this thread
/// (PyThreadState_SetAsyncExc), again every 250 ms until the call ends. The
/// exception is seen at the next bytecode boundary: a pure-Python loop stops;
/// a long call inside a C extension (a numpy kernel, time.sleep) only when it
/// returns to Python. A pending, unseen exception is cleared on destruction.
class CallDeadline {
 public:
  explicit CallDeadline(std::chrono::milliseconds timeout);
  ~CallDeadline();
  CallDeadline(const CallDeadline&) = delete;
  CallDeadline& operator=(const CallDeadline&) = delete;

  /// Whether the watchdog raised the timeout in this call.
  bool fired() const;

 private:
  uint64_t token_;
  unsigned long thread_ident_;
};

}  // namespace fstore::python_internal
