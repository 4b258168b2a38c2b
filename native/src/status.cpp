#include "status.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

namespace moe4j {

static thread_local char g_message[1024];

int32_t fail(int32_t code, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(g_message, sizeof g_message, fmt, ap);
  va_end(ap);
  return code;
}

void clear_error() { g_message[0] = '\0'; }

const char *last_error_message() { return g_message; }

const char *dtype_name(int32_t dtype) {
  switch (dtype) {
    case MOE4J_DTYPE_F32: return "F32";
    case MOE4J_DTYPE_BF16: return "BF16";
    case MOE4J_DTYPE_F16: return "F16";
    case MOE4J_DTYPE_I32: return "I32";
    case MOE4J_DTYPE_I64: return "I64";
    case MOE4J_DTYPE_U8: return "U8";
    default: return "unknown";
  }
}

int64_t dtype_size(int32_t dtype) {
  switch (dtype) {
    case MOE4J_DTYPE_F32: case MOE4J_DTYPE_I32: return 4;
    case MOE4J_DTYPE_BF16: case MOE4J_DTYPE_F16: return 2;
    case MOE4J_DTYPE_I64: return 8;
    case MOE4J_DTYPE_U8: return 1;
    default: return 0;
  }
}

ArgCheck &ArgCheck::float_dtype(const char *name, int32_t dtype) {
  if (failed() || dtype == MOE4J_DTYPE_F32 || dtype == MOE4J_DTYPE_BF16) return *this;
  status_ = fail(MOE4J_ERR_UNSUPPORTED, "%s: %s must be F32 or BF16, got %s (code %d)", fn_, name,
                 dtype_name(dtype), dtype);
  return *this;
}

ArgCheck &ArgCheck::castable_dtype(const char *name, int32_t dtype) {
  if (failed() || dtype == MOE4J_DTYPE_F32 || dtype == MOE4J_DTYPE_BF16 ||
      dtype == MOE4J_DTYPE_F16)
    return *this;
  status_ = fail(MOE4J_ERR_UNSUPPORTED, "%s: %s must be F32, BF16 or F16, got %s (code %d)", fn_,
                 name, dtype_name(dtype), dtype);
  return *this;
}

ArgCheck &ArgCheck::non_negative(const char *name, int64_t value) {
  if (failed() || value >= 0) return *this;
  status_ = fail(MOE4J_ERR_INVALID_ARGUMENT, "%s: %s must be >= 0, got %lld", fn_, name,
                 (long long)value);
  return *this;
}

ArgCheck &ArgCheck::positive(const char *name, int64_t value) {
  if (failed() || value > 0) return *this;
  status_ = fail(MOE4J_ERR_INVALID_ARGUMENT, "%s: %s must be > 0, got %lld", fn_, name,
                 (long long)value);
  return *this;
}

ArgCheck &ArgCheck::at_least(const char *name, int64_t value, int64_t minimum) {
  if (failed() || value >= minimum) return *this;
  status_ = fail(MOE4J_ERR_INVALID_ARGUMENT, "%s: %s must be >= %lld, got %lld", fn_, name,
                 (long long)minimum, (long long)value);
  return *this;
}

ArgCheck &ArgCheck::product_fits(const char *what, int64_t a, int64_t b) {
  if (failed() || a < 0 || b < 0) return *this;
  const int64_t limit = INT64_MAX / 8; /* leave room for the byte count of an 8-byte dtype */
  if (a == 0 || b <= limit / a) return *this;
  status_ = fail(MOE4J_ERR_INVALID_ARGUMENT, "%s: %s = %lld * %lld overflows int64", fn_, what,
                 (long long)a, (long long)b);
  return *this;
}

ArgCheck &ArgCheck::positive_finite(const char *name, float value) {
  if (failed() || (isfinite(value) && value > 0.0f)) return *this;
  status_ = fail(MOE4J_ERR_INVALID_ARGUMENT, "%s: %s must be finite and > 0, got %g", fn_, name,
                 (double)value);
  return *this;
}

ArgCheck &ArgCheck::finite(const char *name, float value) {
  if (failed() || isfinite(value)) return *this;
  status_ = fail(MOE4J_ERR_INVALID_ARGUMENT, "%s: %s must be finite, got %g", fn_, name,
                 (double)value);
  return *this;
}

ArgCheck &ArgCheck::in_range(const char *name, float value, float lo, float hi) {
  if (failed() || (value >= lo && value < hi)) return *this;
  status_ = fail(MOE4J_ERR_INVALID_ARGUMENT, "%s: %s must be in [%g, %g), got %g", fn_, name,
                 (double)lo, (double)hi, (double)value);
  return *this;
}

ArgCheck &ArgCheck::buffer(const char *name, const void *ptr, int64_t count, int32_t dtype) {
  if (failed() || count == 0) return *this;
  if (ptr == nullptr) {
    status_ = fail(MOE4J_ERR_INVALID_ARGUMENT, "%s: %s is NULL but holds %lld elements", fn_,
                   name, (long long)count);
    return *this;
  }
  int64_t align = dtype_size(dtype);
  if (align > 1 && ((uintptr_t)ptr % (uintptr_t)align) != 0) {
    status_ = fail(MOE4J_ERR_INVALID_ARGUMENT, "%s: %s (address %p) must be %lld-byte aligned for %s",
                   fn_, name, ptr, (long long)align, dtype_name(dtype));
  }
  return *this;
}

ArgCheck &ArgCheck::no_overlap(const char *a_name, const void *a, const char *b_name,
                               const void *b, int64_t bytes, bool allow_same) {
  if (failed() || (allow_same && a == b)) return *this;
  if (ranges_overlap(a, bytes, b, bytes)) {
    status_ = fail(MOE4J_ERR_INVALID_ARGUMENT, "%s: %s and %s overlap (%lld bytes each)%s", fn_,
                   a_name, b_name, (long long)bytes, allow_same ? " and are not the same buffer" : "");
  }
  return *this;
}

ArgCheck &ArgCheck::require(bool ok, const char *fmt, ...) {
  if (failed() || ok) return *this;
  char detail[768];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(detail, sizeof detail, fmt, ap);
  va_end(ap);
  status_ = fail(MOE4J_ERR_INVALID_ARGUMENT, "%s: %s", fn_, detail);
  return *this;
}

}  // namespace moe4j
