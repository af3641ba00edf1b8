#include "fstore/python/embedded_python.h"

#include <algorithm>
#include <condition_variable>
#include <fstream>
#include <map>
#include <mutex>
#include <thread>

#include <spdlog/spdlog.h>

#include "fstore/python/internal/python_runtime.h"

#ifndef FSTORE_PYTHON_SITE_PACKAGES
#define FSTORE_PYTHON_SITE_PACKAGES ""
#endif

namespace fstore {
namespace python_internal {
namespace {

// Python-side helpers, run as the module `fstore_runtime` (not put in
// sys.modules: a transformation's own `import fstore...` is not ours to
// shadow). Written in Python because that is where these things are short.
constexpr const char* kGlueSource = R"PY(
import builtins
import linecache
import os
import site
import sys
import traceback


class TransformationTimeout(TimeoutError):
    """Raised by fstore inside a Python transformation that ran past its timeout."""


def setup_path(site_packages):
    # The venv's site-packages before the system's dist-packages (whose numpy
    # would not match the venv's pyarrow/pandas), after PYTHONPATH.
    if not sys.argv:
        sys.argv = ["fstore"]
    if not site_packages or not os.path.isdir(site_packages):
        return
    before = list(sys.path)
    site.addsitedir(site_packages)
    added = [p for p in sys.path if p not in before]
    pythonpath = {os.path.abspath(p) for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p}
    head = [p for p in before if p and os.path.abspath(p) in pythonpath]
    rest = [p for p in before if p not in head]
    sys.path[:] = head + added + rest


def format_exception(exc):
    # fstore's own frames (this module's) are not the user's business.
    tb = exc.__traceback__
    while tb is not None and tb.tb_frame.f_code.co_filename == "<fstore_runtime>":
        tb = tb.tb_next
    return "".join(traceback.format_exception(type(exc), exc, tb))


def syntax_error_details(exc):
    text = exc.text or ""
    return (exc.lineno or 0, exc.offset or 0, str(exc.msg), text.rstrip("\n"))


def load(code, filename, module_name):
    """Compiles `code` (SyntaxError propagates), runs it as a module, returns its namespace."""
    compiled = compile(code, filename, "exec", dont_inherit=True)
    # Tracebacks show the transformation's lines (linecache keeps entries
    # without an mtime).
    linecache.cache[filename] = (len(code), None, code.splitlines(True), filename)
    namespace = {"__name__": module_name, "__file__": filename, "__builtins__": builtins}
    exec(compiled, namespace)
    return namespace


def function_of(namespace, name):
    """The callable `name` of the namespace, or an error text."""
    if name not in namespace:
        defined = sorted(k for k, v in namespace.items()
                         if callable(v) and not k.startswith("_")
                         and getattr(v, "__module__", None) == namespace["__name__"])
        return ("'%s' is not defined by the code (%s)" %
                (name, "it defines: " + ", ".join(defined) if defined else "it defines no function"))
    fn = namespace[name]
    if not callable(fn):
        return "'%s' is a %s, not a function" % (name, type(fn).__name__)
    return fn


def _to_batch(result, pa):
    if isinstance(result, pa.RecordBatch):
        return result
    if isinstance(result, pa.Table):
        table = result.combine_chunks()
        batches = table.to_batches()
        if len(batches) == 1:
            return batches[0]
        if not batches:
            return pa.RecordBatch.from_arrays(
                [pa.array([], type=f.type) for f in table.schema], schema=table.schema)
        return pa.Table.from_batches(batches).combine_chunks().to_batches()[0]
    pandas = sys.modules.get("pandas")
    if pandas is not None and isinstance(result, pandas.DataFrame):
        # (via a Table: pandas' Arrow-backed columns convert to chunked arrays)
        return _to_batch(pa.Table.from_pandas(result, preserve_index=False), pa)
    raise TypeError("the transformation returned a %s.%s: expected a pyarrow.RecordBatch, "
                    "a pyarrow.Table or a pandas.DataFrame"
                    % (type(result).__module__, type(result).__qualname__))


def call(fn, input_mode, array_addr, schema_addr, out_array_addr, out_schema_addr):
    """Imports the input batch (Arrow C data interface), calls fn, exports its result."""
    import pyarrow as pa
    batch = pa.RecordBatch._import_from_c(array_addr, schema_addr)
    result = fn(batch.to_pandas() if input_mode == "pandas" else batch)
    _to_batch(result, pa)._export_to_c(out_array_addr, out_schema_addr)


def describe():
    import importlib.util
    import pyarrow
    return (sys.version, pyarrow.__version__, os.path.dirname(pyarrow.__file__), list(sys.path),
            importlib.util.find_spec("pandas") is not None)
)PY";

PyObject* g_glue = nullptr;               // the glue module's namespace (a dict), owned
PyObject* g_timeout_type = nullptr;       // TransformationTimeout, owned

// One thread for every call's deadline (CallDeadline).
class Watchdog {
 public:
  struct Entry {
    unsigned long thread_ident = 0;
    std::chrono::steady_clock::time_point deadline;
    bool fired = false;
  };

  static Watchdog& Instance() {
    // Never destroyed: its thread outlives static destruction.
    static Watchdog* instance = new Watchdog();
    return *instance;
  }

  uint64_t Arm(unsigned long ident, std::chrono::milliseconds timeout) {
    std::lock_guard lock(mutex_);
    uint64_t token = next_token_++;
    entries_[token] = Entry{ident, std::chrono::steady_clock::now() + timeout, false};
    if (!started_) {
      started_ = true;
      std::thread([this] { Loop(); }).detach();
    }
    changed_.notify_one();
    return token;
  }

  // Returns whether the entry fired.
  bool Disarm(uint64_t token) {
    std::lock_guard lock(mutex_);
    auto it = entries_.find(token);
    bool fired = it != entries_.end() && it->second.fired;
    if (it != entries_.end()) entries_.erase(it);
    return fired;
  }

  bool Fired(uint64_t token) {
    std::lock_guard lock(mutex_);
    auto it = entries_.find(token);
    return it != entries_.end() && it->second.fired;
  }

 private:
  void Loop() {
    std::unique_lock lock(mutex_);
    while (true) {
      auto now = std::chrono::steady_clock::now();
      auto earliest = std::chrono::steady_clock::time_point::max();
      std::vector<uint64_t> due;
      for (auto& [token, e] : entries_) {
        if (e.deadline <= now) {
          due.push_back(token);
        } else {
          earliest = std::min(earliest, e.deadline);
        }
      }
      if (due.empty()) {
        if (earliest == std::chrono::steady_clock::time_point::max()) {
          changed_.wait(lock);
        } else {
          changed_.wait_until(lock, earliest);
        }
        continue;
      }
      // Lock order is GIL, then mutex_ (a call arms and disarms holding the
      // GIL): never wait for the GIL while holding mutex_.
      lock.unlock();
      {
        GilGuard gil;
        std::lock_guard relock(mutex_);
        for (uint64_t token : due) {
          auto it = entries_.find(token);
          // Still armed with the GIL held here: the call is still running
          // (it disarms holding the GIL), so the exception lands in it.
          if (it == entries_.end()) continue;
          it->second.fired = true;
          it->second.deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(250);
          PyThreadState_SetAsyncExc(it->second.thread_ident, g_timeout_type);
        }
      }
      lock.lock();
    }
  }

  std::mutex mutex_;
  std::condition_variable changed_;
  std::map<uint64_t, Entry> entries_;
  uint64_t next_token_ = 1;
  bool started_ = false;
};

Status StartInterpreter() {
  PyConfig config;
  PyConfig_InitPythonConfig(&config);
  // The server owns SIGINT/SIGTERM; argv is not Python's.
  config.install_signal_handlers = 0;
  config.parse_argv = 0;
  PyStatus st = PyConfig_SetBytesString(&config, &config.program_name, "fstore");
  if (!PyStatus_Exception(st)) st = Py_InitializeFromConfig(&config);
  PyConfig_Clear(&config);
  if (PyStatus_Exception(st)) {
    return Unavailable(std::string("the embedded Python interpreter cannot start: ") +
                       (st.err_msg ? st.err_msg : "unknown error"));
  }
  // This thread holds the GIL now.
  PyRef module(PyModule_New("fstore_runtime"));
  PyObject* ns = module ? PyModule_GetDict(module.get()) : nullptr;
  if (ns == nullptr ||
      PyDict_SetItemString(ns, "__builtins__", PyEval_GetBuiltins()) != 0) {
    PyErr_Print();
    return Unavailable("the embedded Python interpreter cannot create its runtime module");
  }
  PyRef compiled(Py_CompileString(kGlueSource, "<fstore_runtime>", Py_file_input));
  PyRef ran(compiled ? PyEval_EvalCode(compiled.get(), ns, ns) : nullptr);
  if (!ran) {
    PyErr_Print();
    return Unavailable("the embedded Python interpreter cannot run its runtime module");
  }
  Py_INCREF(ns);
  g_glue = ns;
  g_timeout_type = PyDict_GetItemString(ns, "TransformationTimeout");
  Py_XINCREF(g_timeout_type);
  PyRef setup(PyObject_CallMethod(module.get(), "setup_path", "s", FSTORE_PYTHON_SITE_PACKAGES));
  if (!setup) {
    return Unavailable("the embedded Python interpreter cannot set its module path: " +
                       FetchTraceback());
  }
  PyRef pyarrow(PyImport_ImportModule("pyarrow"));
  if (!pyarrow) {
    return Unavailable("pyarrow cannot be imported by the embedded Python interpreter (it "
                       "should come from " FSTORE_PYTHON_SITE_PACKAGES
                       "; PYTHONPATH adds directories): " + FetchTraceback());
  }
  PyRef file(PyObject_GetAttrString(pyarrow.get(), "__file__"));
  spdlog::debug("embedded Python {} started; pyarrow from {}", Py_GetVersion(),
                file ? StrOf(file.get()) : std::string("?"));
  return Status::OK();
}

}  // namespace

PyObject* Glue() { return g_glue; }

PyObject* TimeoutExceptionType() { return g_timeout_type; }

std::string StrOf(PyObject* obj) {
  PyRef s(PyObject_Str(obj));
  if (!s) {
    PyErr_Clear();
    return {};
  }
  Py_ssize_t size = 0;
  const char* text = PyUnicode_AsUTF8AndSize(s.get(), &size);
  if (text == nullptr) {
    PyErr_Clear();
    return {};
  }
  return std::string(text, static_cast<size_t>(size));
}

std::string FetchTraceback() {
  PyObject *type = nullptr, *value = nullptr, *tb = nullptr;
  PyErr_Fetch(&type, &value, &tb);
  if (type == nullptr) return "unknown Python error";
  PyErr_NormalizeException(&type, &value, &tb);
  if (tb != nullptr && value != nullptr) PyException_SetTraceback(value, tb);
  PyRef t(type), v(value), b(tb);
  std::string text;
  if (g_glue != nullptr && v) {
    PyObject* format = PyDict_GetItemString(g_glue, "format_exception");
    PyRef formatted(format ? PyObject_CallOneArg(format, v.get()) : nullptr);
    if (formatted) text = StrOf(formatted.get());
    PyErr_Clear();
  }
  if (text.empty()) text = StrOf(v ? v.get() : t.get());
  while (!text.empty() && text.back() == '\n') text.pop_back();
  return text;
}

CallDeadline::CallDeadline(std::chrono::milliseconds timeout)
    : thread_ident_(PyThread_get_thread_ident()) {
  token_ = Watchdog::Instance().Arm(thread_ident_, timeout);
}

CallDeadline::~CallDeadline() {
  if (Watchdog::Instance().Disarm(token_)) {
    // A timeout raised just as the call returned is still pending: drop it,
    // or it would surface in whatever Python code this thread runs next.
    PyThreadState_SetAsyncExc(thread_ident_, nullptr);
  }
}

bool CallDeadline::fired() const { return Watchdog::Instance().Fired(token_); }

}  // namespace python_internal

using python_internal::GilGuard;
using python_internal::PyRef;

Status InitializePython() {
  static std::once_flag once;
  static Status* result = nullptr;
  std::call_once(once, [] {
    if (Py_IsInitialized()) {
      result = new Status(Internal("a Python interpreter was started outside fstore"));
      return;
    }
    Status st = python_internal::StartInterpreter();
    // Give the GIL back: from now on every call takes it (GilGuard). Done
    // even when the start failed half-way, so nothing is left holding it.
    if (Py_IsInitialized()) PyEval_SaveThread();
    if (!st.ok()) spdlog::error("{}", st.message());
    result = new Status(std::move(st));
  });
  return *result;
}

Result<PythonRuntimeInfo> DescribePython() {
  ARROW_RETURN_NOT_OK(InitializePython());
  PythonRuntimeInfo info;
  {
    GilGuard gil;
    PyObject* describe = PyDict_GetItemString(python_internal::Glue(), "describe");
    PyRef d(describe ? PyObject_CallNoArgs(describe) : nullptr);
    if (!d || !PyTuple_Check(d.get()) || PyTuple_Size(d.get()) != 5) {
      return Internal("describing the embedded Python failed: " +
                      python_internal::FetchTraceback());
    }
    info.python_version = python_internal::StrOf(PyTuple_GetItem(d.get(), 0));
    info.pyarrow_version = python_internal::StrOf(PyTuple_GetItem(d.get(), 1));
    info.pyarrow_dir = python_internal::StrOf(PyTuple_GetItem(d.get(), 2));
    PyObject* path = PyTuple_GetItem(d.get(), 3);
    for (Py_ssize_t i = 0; i < PyList_Size(path); ++i) {
      info.sys_path.push_back(python_internal::StrOf(PyList_GetItem(path, i)));
    }
    info.pandas_available = PyObject_IsTrue(PyTuple_GetItem(d.get(), 4)) == 1;
  }
  std::ifstream maps("/proc/self/maps");
  std::string line;
  while (std::getline(maps, line)) {
    size_t slash = line.find('/');
    if (slash == std::string::npos) continue;
    std::string file = line.substr(slash);
    size_t base = file.rfind('/');
    if (file.compare(base + 1, 12, "libarrow.so.") != 0) continue;
    if (std::find(info.libarrow_files.begin(), info.libarrow_files.end(), file) ==
        info.libarrow_files.end()) {
      info.libarrow_files.push_back(file);
    }
  }
  return info;
}

}  // namespace fstore
