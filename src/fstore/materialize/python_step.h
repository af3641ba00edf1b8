#pragma once

// A feature set's Python transformation as a materialization step
// (registry/definitions.h PythonTransformationDefinition, run by
// python/python_transformation.h): source rows in, the rows the features are
// computed from out.
//
// The step sees every source column (fstore cannot know which ones the code
// reads), with the timestamp fields already normalised to timestamp[us, UTC],
// one record batch at a time, in source order; it must be a row-wise function
// (it may drop rows), since the batches a run hands it are arbitrary slices of
// the source and the first chunk's batches include the windows' look-back.
// Its result holds the source columns it did not replace and its declared
// output columns (python_transformation.h), which features read by name.

#include <memory>
#include <string>
#include <vector>

#include <arrow/type_fwd.h>

#include "fstore/core/status.h"
#include "fstore/python/python_transformation.h"
#include "fstore/registry/definitions.h"

namespace fstore {

/// The run-time spec of `feature_set`'s Python transformation (which must be
/// set): declared types mapped to their Arrow storage types, the timeout
/// parsed. Errors name the python_transformation field.
Result<PythonFunctionSpec> PythonSpecOf(const FeatureSet& feature_set);

/// The columns `feature_set`'s features may read: `source_schema` (may be
/// null: then null) with the Python transformation's declared output columns
/// replacing or added; `source_schema` itself when the set has none.
/// Idempotent: applied to its own result it changes nothing.
Result<std::shared_ptr<arrow::Schema>> SchemaAfterPython(
    const FeatureSet& feature_set, const std::shared_ptr<arrow::Schema>& source_schema);

/// Applies the transformation to each record batch of `source`, in order,
/// and returns the transformed rows projected to `columns` (the columns the
/// plan reads: FeaturePlan::source_columns). Unprocessable, naming the
/// column, when the function dropped rows and did not return one of
/// `columns`; the function's own failures as PythonTransformation::Apply
/// reports them (the traceback in the message).
Result<std::shared_ptr<arrow::Table>> ApplyPythonStep(const PythonTransformation& transformation,
                                                      const std::shared_ptr<arrow::Table>& source,
                                                      const std::vector<std::string>& columns);

}  // namespace fstore
