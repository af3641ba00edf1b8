#pragma once

// A user's Python function over record batches, run in the embedded
// interpreter (embedded_python.h). The function takes a pyarrow.RecordBatch
// (or, with input kPandas, a pandas.DataFrame of it) and returns a
// pyarrow.RecordBatch, a pyarrow.Table or a pandas.DataFrame holding at least
// the declared output columns.
//
// Batches cross through the Arrow C data interface (arrow/c/bridge.h and
// pyarrow's _import_from_c/_export_to_c) without copying: a column the
// function returns unchanged comes back with the very buffers it was given.
//
// Result of Apply, the "transformed batch": every input column in input order
// -- replaced by the output column of the same name when the function returns
// one (cast back to the input's type), else the input's own column when the
// function returned as many rows as it was given, else left out -- and the
// declared output columns (cast to their declared types) replacing an input
// column of the same name or appended in declared order. A function that
// filters rows must so return the columns its callers need (join keys,
// timestamps); one that keeps the rows may return only its new columns.
//
// Thread safety: a PythonTransformation is immutable after Make; any thread
// may call Apply/CheckOutput concurrently. Calls take the GIL, so Python code
// runs one call at a time in the process.
//
// Trust: the code runs inside the server process with its privileges. Who
// may define feature sets may run code; that is the feature.

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include <arrow/type_fwd.h>

#include "fstore/core/status.h"

namespace fstore {

enum class PythonInput {
  kPyArrow,  ///< the function gets a pyarrow.RecordBatch
  kPandas,   ///< the function gets batch.to_pandas()
};

/// A declared output column: its name and the Arrow type it is cast to.
struct PythonColumn {
  std::string name;
  std::shared_ptr<arrow::DataType> type;
};

struct PythonFunctionSpec {
  std::string code;                  ///< module source defining the function
  std::string function = "transform";
  PythonInput input = PythonInput::kPyArrow;
  /// Bound on each call (and on running the module's code once in Make).
  std::chrono::milliseconds timeout{60'000};
  std::vector<PythonColumn> output_columns;
  /// Tracebacks name the code "<python_transformation:NAME>".
  std::string name = "transformation";
  /// Field names in errors: "<field_prefix>.code", ".function", ".output_columns".
  std::string field_prefix = "python_transformation";
};

class PythonTransformation {
 public:
  /// Compiles the code, runs it once as a module (under the timeout) and
  /// finds the function. Errors: a SyntaxError is InvalidArgument on
  /// "<prefix>.code" with its line and column (and the character position);
  /// an exception while running the module is Unprocessable on "<prefix>.code"
  /// with its traceback; a missing or non-callable function Unprocessable on
  /// "<prefix>.function"; a runaway module Unprocessable on "<prefix>.timeout";
  /// no usable interpreter is Unavailable.
  static Result<std::shared_ptr<PythonTransformation>> Make(PythonFunctionSpec spec);

  ~PythonTransformation();
  PythonTransformation(const PythonTransformation&) = delete;
  PythonTransformation& operator=(const PythonTransformation&) = delete;

  /// The transformed batch of `input` (see the top of this file). An
  /// exception in the function is Unprocessable with the Python traceback in
  /// the message; a call past the timeout is Unprocessable on
  /// "<prefix>.timeout"; a missing declared column or one that cannot be cast
  /// to its declared type is Unprocessable on "<prefix>.output_columns".
  Result<std::shared_ptr<arrow::RecordBatch>> Apply(
      const std::shared_ptr<arrow::RecordBatch>& input) const;

  /// Runs the function on an empty batch of `input_schema` and checks that
  /// its result has the declared columns with compatible types (numbers for
  /// int/float, strings, booleans, timestamps, lists of compatible elements;
  /// an all-null column matches any type). Unprocessable on "<prefix>.code"
  /// (the function raised) or "<prefix>.output_columns".
  Status CheckOutput(const std::shared_ptr<arrow::Schema>& input_schema) const;

  const PythonFunctionSpec& spec() const { return spec_; }

 private:
  struct Handle;  // the function object, behind Python.h
  PythonTransformation(PythonFunctionSpec spec, std::unique_ptr<Handle> handle);

  Result<std::shared_ptr<arrow::RecordBatch>> Call(const arrow::RecordBatch& input) const;

  PythonFunctionSpec spec_;
  std::unique_ptr<Handle> handle_;
};

/// The schema of Apply's result for an input of `input_schema`, when the
/// function keeps the rows: input fields, declared columns replacing or
/// appended (declared types).
std::shared_ptr<arrow::Schema> TransformedSchema(const std::shared_ptr<arrow::Schema>& input_schema,
                                                 const std::vector<PythonColumn>& output_columns);

}  // namespace fstore
