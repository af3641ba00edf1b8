#include "fstore/python/python_transformation.h"

#include <cstdint>
#include <set>

#include <arrow/api.h>
#include <arrow/c/abi.h>
#include <arrow/c/bridge.h>
#include <arrow/compute/api.h>

#include "fstore/core/compute_init.h"
#include "fstore/python/embedded_python.h"
#include "fstore/python/internal/python_runtime.h"

namespace fstore {
namespace cp = arrow::compute;
using python_internal::CallDeadline;
using python_internal::FetchTraceback;
using python_internal::GilGuard;
using python_internal::Glue;
using python_internal::PyRef;
using python_internal::StrOf;

struct PythonTransformation::Handle {
  PyObject* namespace_ = nullptr;  // the module's globals, owned
  PyObject* function = nullptr;    // owned
  PyObject* input_mode = nullptr;  // "pyarrow" | "pandas", owned
};

namespace {

std::string TimeoutText(std::chrono::milliseconds timeout) {
  auto ms = timeout.count();
  if (ms % 1000 == 0) return std::to_string(ms / 1000) + "s";
  return std::to_string(ms) + "ms";
}

PyObject* GlueFunction(const char* name) { return PyDict_GetItemString(Glue(), name); }

// The SyntaxError pending (GIL held) as an InvalidArgument on `field`, with
// the line and column and the character position in the code; cleared.
Status SyntaxErrorStatus(const std::string& field, const std::string& code) {
  PyObject *type = nullptr, *value = nullptr, *tb = nullptr;
  PyErr_Fetch(&type, &value, &tb);
  PyErr_NormalizeException(&type, &value, &tb);
  PyRef t(type), v(value), b(tb);
  PyRef details(PyObject_CallOneArg(GlueFunction("syntax_error_details"), v.get()));
  long line = 0, column = 0;
  std::string message = "invalid syntax", text;
  if (details && PyTuple_Check(details.get()) && PyTuple_Size(details.get()) == 4) {
    line = PyLong_AsLong(PyTuple_GetItem(details.get(), 0));
    column = PyLong_AsLong(PyTuple_GetItem(details.get(), 1));
    message = StrOf(PyTuple_GetItem(details.get(), 2));
    text = StrOf(PyTuple_GetItem(details.get(), 3));
  }
  PyErr_Clear();
  std::optional<int> position;
  if (line > 0) {
    // 1-based character position of the error in the whole code text.
    size_t offset = 0;
    for (long l = 1; l < line && offset != std::string::npos; ++l) {
      offset = code.find('\n', offset);
      if (offset != std::string::npos) ++offset;
    }
    if (offset != std::string::npos) {
      position = static_cast<int>(offset) + static_cast<int>(std::max(column, 1L));
    }
  }
  std::string where = "line " + std::to_string(line);
  if (column > 0) where += ", column " + std::to_string(column);
  // "line 3, column 11: SyntaxError: invalid syntax: retur x"
  std::string out = where + ": " + std::string(reinterpret_cast<PyTypeObject*>(type)->tp_name) + ": " +
        message;
  size_t first = text.find_first_not_of(" \t");
  if (first != std::string::npos) out += ": " + text.substr(first);
  return MakeError(ErrorCode::kInvalidArgument, out, field, position);
}

std::string FieldNames(const arrow::Schema& schema) {
  std::string names;
  for (const auto& f : schema.fields()) {
    if (!names.empty()) names += ", ";
    names += f->name();
  }
  return names.empty() ? "no columns" : names;
}

bool IsNumber(const arrow::DataType& t) {
  return arrow::is_integer(t.id()) || arrow::is_floating(t.id()) || arrow::is_decimal(t.id());
}

// Whether a column of type `from` may stand for a declared `to` (then cast).
bool Compatible(const arrow::DataType& from, const arrow::DataType& to) {
  if (from.id() == arrow::Type::NA || from.Equals(to)) return true;
  if (from.id() == arrow::Type::DICTIONARY) {
    return Compatible(*static_cast<const arrow::DictionaryType&>(from).value_type(), to);
  }
  switch (to.id()) {
    case arrow::Type::INT64:
    case arrow::Type::DOUBLE:
      return IsNumber(from);
    case arrow::Type::STRING:
      return from.id() == arrow::Type::STRING || from.id() == arrow::Type::LARGE_STRING ||
             from.id() == arrow::Type::STRING_VIEW;
    case arrow::Type::BOOL:
      return from.id() == arrow::Type::BOOL;
    case arrow::Type::TIMESTAMP:
      return from.id() == arrow::Type::TIMESTAMP || from.id() == arrow::Type::DATE32 ||
             from.id() == arrow::Type::DATE64;
    case arrow::Type::LIST:
      if (from.id() == arrow::Type::LIST || from.id() == arrow::Type::LARGE_LIST ||
          from.id() == arrow::Type::FIXED_SIZE_LIST) {
        return Compatible(*from.field(0)->type(), *to.field(0)->type());
      }
      return false;
    default:
      return false;
  }
}

Result<std::shared_ptr<arrow::Array>> CastColumn(const std::shared_ptr<arrow::Array>& values,
                                                 const std::shared_ptr<arrow::DataType>& to) {
  if (values->type()->Equals(*to)) return values;
  if (values->type_id() == arrow::Type::NA) return arrow::MakeArrayOfNull(to, values->length());
  cp::CastOptions options = cp::CastOptions::Safe(to);
  options.allow_time_truncate = true;  // fstore keeps microseconds
  ARROW_ASSIGN_OR_RAISE(auto cast, cp::Cast(arrow::Datum(values), options));
  return cast.make_array();
}

// The transformed batch of `input` from the function's `output` (see the
// header's rules).
Result<std::shared_ptr<arrow::RecordBatch>> Conform(const PythonFunctionSpec& spec,
                                                    const arrow::RecordBatch& input,
                                                    const arrow::RecordBatch& output) {
  const std::string field = spec.field_prefix + ".output_columns";
  const bool same_rows = output.num_rows() == input.num_rows();
  std::set<std::string> declared;
  for (const auto& c : spec.output_columns) declared.insert(c.name);

  std::vector<std::shared_ptr<arrow::Field>> fields;
  std::vector<std::shared_ptr<arrow::Array>> arrays;
  auto declared_column = [&](const PythonColumn& c) -> Status {
    auto values = output.GetColumnByName(c.name);
    if (values == nullptr) {
      return Unprocessable(field, "the function's result has no column '" + c.name +
                                      "' (it returned: " + FieldNames(*output.schema()) + ")");
    }
    if (!Compatible(*values->type(), *c.type)) {
      return Unprocessable(field, "column '" + c.name + "' is declared " + c.type->ToString() +
                                      " but the function returned " + values->type()->ToString());
    }
    auto cast = CastColumn(values, c.type);
    if (!cast.ok()) {
      return Unprocessable(field, "column '" + c.name + "' (" + values->type()->ToString() +
                                      ") cannot be cast to its declared type " +
                                      c.type->ToString() + ": " + cast.status().message());
    }
    fields.push_back(arrow::field(c.name, c.type));
    arrays.push_back(*cast);
    return Status::OK();
  };
  for (const auto& f : input.schema()->fields()) {
    if (declared.count(f->name())) {
      for (const auto& c : spec.output_columns) {
        if (c.name == f->name()) ARROW_RETURN_NOT_OK(declared_column(c));
      }
      continue;
    }
    if (auto values = output.GetColumnByName(f->name())) {
      auto cast = CastColumn(values, f->type());
      if (!cast.ok()) {
        return Unprocessable(field, "column '" + f->name() + "' comes back as " +
                                        values->type()->ToString() + ", which cannot be cast to "
                                        "the input's " + f->type()->ToString() + ": " +
                                        cast.status().message());
      }
      fields.push_back(f);
      arrays.push_back(*cast);
    } else if (same_rows) {
      fields.push_back(f);
      arrays.push_back(input.GetColumnByName(f->name()));
    }
  }
  for (const auto& c : spec.output_columns) {
    if (input.schema()->GetFieldIndex(c.name) < 0) ARROW_RETURN_NOT_OK(declared_column(c));
  }
  return arrow::RecordBatch::Make(arrow::schema(fields), output.num_rows(), arrays);
}

}  // namespace

std::shared_ptr<arrow::Schema> TransformedSchema(const std::shared_ptr<arrow::Schema>& input,
                                                 const std::vector<PythonColumn>& output_columns) {
  std::vector<std::shared_ptr<arrow::Field>> fields = input->fields();
  for (const auto& c : output_columns) {
    int i = input->GetFieldIndex(c.name);
    if (i >= 0) {
      fields[i] = arrow::field(c.name, c.type);
    } else {
      fields.push_back(arrow::field(c.name, c.type));
    }
  }
  return arrow::schema(fields);
}

PythonTransformation::PythonTransformation(PythonFunctionSpec spec, std::unique_ptr<Handle> handle)
    : spec_(std::move(spec)), handle_(std::move(handle)) {}

PythonTransformation::~PythonTransformation() {
  if (!handle_) return;
  GilGuard gil;
  Py_XDECREF(handle_->function);
  Py_XDECREF(handle_->namespace_);
  Py_XDECREF(handle_->input_mode);
}

Result<std::shared_ptr<PythonTransformation>> PythonTransformation::Make(PythonFunctionSpec spec) {
  ARROW_RETURN_NOT_OK(InitializePython());
  ARROW_RETURN_NOT_OK(InitializeCompute());
  const std::string& prefix = spec.field_prefix;
  const std::string filename = "<python_transformation:" + spec.name + ">";
  const std::string module_name = "fstore_transformation_" + spec.name;
  auto handle = std::make_unique<Handle>();
  {
    GilGuard gil;
    PyRef ns;
    bool timed_out = false;
    {
      CallDeadline deadline(spec.timeout);
      ns = PyRef(PyObject_CallFunction(GlueFunction("load"), "s#ss", spec.code.data(),
                                       static_cast<Py_ssize_t>(spec.code.size()),
                                       filename.c_str(), module_name.c_str()));
      timed_out = deadline.fired();
    }
    if (!ns) {
      if (timed_out) {
        PyErr_Clear();
        return Unprocessable(prefix + ".timeout",
                             "running the code's module-level statements took longer than the "
                             "timeout (" + TimeoutText(spec.timeout) + ") and was stopped");
      }
      if (PyErr_ExceptionMatches(PyExc_SyntaxError)) return SyntaxErrorStatus(prefix + ".code", spec.code);
      return Unprocessable(prefix + ".code",
                           "running the code raised an exception:\n" + FetchTraceback());
    }
    PyRef fn(PyObject_CallFunction(GlueFunction("function_of"), "Os", ns.get(),
                                   spec.function.c_str()));
    if (!fn) {
      return Unprocessable(prefix + ".function", "looking up the function failed:\n" +
                                                     FetchTraceback());
    }
    if (PyUnicode_Check(fn.get())) {
      return Unprocessable(prefix + ".function", StrOf(fn.get()));
    }
    handle->namespace_ = ns.release();
    handle->function = fn.release();
    handle->input_mode =
        PyUnicode_FromString(spec.input == PythonInput::kPandas ? "pandas" : "pyarrow");
  }
  return std::shared_ptr<PythonTransformation>(
      new PythonTransformation(std::move(spec), std::move(handle)));
}

namespace {

// Exception text of a failed call, and whether the watchdog stopped it.
struct CallFailure {
  bool timed_out = false;
  std::string traceback;
};

}  // namespace

Result<std::shared_ptr<arrow::RecordBatch>> PythonTransformation::Call(
    const arrow::RecordBatch& input) const {
  struct ArrowArray in_array {};
  struct ArrowSchema in_schema {};
  struct ArrowArray out_array {};
  struct ArrowSchema out_schema {};
  ARROW_RETURN_NOT_OK(arrow::ExportRecordBatch(input, &in_array, &in_schema));
  std::optional<CallFailure> failure;
  {
    GilGuard gil;
    bool timed_out = false;
    PyRef result;
    {
      CallDeadline deadline(spec_.timeout);
      result = PyRef(PyObject_CallFunction(
          GlueFunction("call"), "OOKKKK", handle_->function, handle_->input_mode,
          static_cast<unsigned long long>(reinterpret_cast<uintptr_t>(&in_array)),
          static_cast<unsigned long long>(reinterpret_cast<uintptr_t>(&in_schema)),
          static_cast<unsigned long long>(reinterpret_cast<uintptr_t>(&out_array)),
          static_cast<unsigned long long>(reinterpret_cast<uintptr_t>(&out_schema))));
      timed_out = deadline.fired();
    }
    if (!result) failure = CallFailure{timed_out, FetchTraceback()};
  }
  // Whatever Python did not take over is released here (no GIL needed: these
  // are C++ Arrow objects; a buffer pyarrow made from numpy takes the GIL in
  // its own destructor).
  if (in_array.release != nullptr) in_array.release(&in_array);
  if (in_schema.release != nullptr) in_schema.release(&in_schema);
  if (failure) {
    if (out_array.release != nullptr) out_array.release(&out_array);
    if (out_schema.release != nullptr) out_schema.release(&out_schema);
    if (failure->timed_out) {
      return Unprocessable(spec_.field_prefix + ".timeout",
                           spec_.field_prefix + ": the function '" + spec_.function +
                               "' did not return within its timeout (" +
                               TimeoutText(spec_.timeout) + ") and was stopped:\n" +
                               failure->traceback);
    }
    return Unprocessable(spec_.field_prefix, spec_.field_prefix + ": the function '" +
                                                 spec_.function + "' raised an exception:\n" +
                                                 failure->traceback);
  }
  return arrow::ImportRecordBatch(&out_array, &out_schema);
}

Result<std::shared_ptr<arrow::RecordBatch>> PythonTransformation::Apply(
    const std::shared_ptr<arrow::RecordBatch>& input) const {
  ARROW_ASSIGN_OR_RAISE(auto output, Call(*input));
  return Conform(spec_, *input, *output);
}

Status PythonTransformation::CheckOutput(const std::shared_ptr<arrow::Schema>& input_schema) const {
  ARROW_ASSIGN_OR_RAISE(auto empty, arrow::RecordBatch::MakeEmpty(input_schema));
  auto output = Call(*empty);
  if (!output.ok()) {
    const auto* detail = ErrorOf(output.status());
    if (detail != nullptr && detail->field() == spec_.field_prefix) {
      return Unprocessable(spec_.field_prefix + ".code",
                           "the function '" + spec_.function +
                               "' raised an exception on an empty batch of the source's columns (" +
                               FieldNames(*input_schema) + "):\n" +
                               output.status().message().substr(
                                   output.status().message().find('\n') + 1));
    }
    return output.status();
  }
  return Conform(spec_, *empty, **output).status();
}

}  // namespace fstore
