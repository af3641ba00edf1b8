#pragma once

#include <string>

namespace fstore {

/// A random (version 4) UUID in canonical lower-case text form. Thread-safe.
std::string NewUuid();

/// True for canonical 8-4-4-4-12 hex text.
bool LooksLikeUuid(std::string_view text);

}  // namespace fstore
