#pragma once

// GoogleTest helpers for arrow::Status / arrow::Result, after Arrow's
// testing/gtest_util.h.

#include <gtest/gtest.h>

#include <arrow/result.h>
#include <arrow/status.h>

#define FSTORE_CONCAT_IMPL(a, b) a##b
#define FSTORE_CONCAT(a, b) FSTORE_CONCAT_IMPL(a, b)

#define ASSERT_OK(expr)                                              \
  do {                                                               \
    ::arrow::Status _st = ::arrow::ToStatus(expr);                   \
    ASSERT_TRUE(_st.ok()) << "'" #expr "' failed: " << _st.ToString(); \
  } while (false)

#define EXPECT_OK(expr)                                              \
  do {                                                               \
    ::arrow::Status _st = ::arrow::ToStatus(expr);                   \
    EXPECT_TRUE(_st.ok()) << "'" #expr "' failed: " << _st.ToString(); \
  } while (false)

#define ASSERT_OK_AND_ASSIGN_IMPL(tmp, lhs, rexpr)                       \
  auto tmp = (rexpr);                                                    \
  ASSERT_TRUE(tmp.ok()) << "'" #rexpr "' failed: " << tmp.status().ToString(); \
  lhs = std::move(tmp).ValueUnsafe();

#define ASSERT_OK_AND_ASSIGN(lhs, rexpr) \
  ASSERT_OK_AND_ASSIGN_IMPL(FSTORE_CONCAT(_result_, __COUNTER__), lhs, rexpr)
