/*
 * Error reporting and argument validation for the C ABI.
 *
 * Every exported function validates its arguments with an ArgCheck before any work. The first
 * failed check records a message naming the function, the argument, what was expected and what
 * came, in a thread-local buffer (moe4j_last_error / moe4j_cuda_last_error), and the function
 * returns its status code. Nothing aborts the process.
 */
#pragma once
#include <stdarg.h>
#include <stdint.h>

#include "moe4j.h"

namespace moe4j {

/* Records a message for this thread and returns `code`. printf-style. */
int32_t fail(int32_t code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void clear_error();
const char *last_error_message();

const char *dtype_name(int32_t dtype);
/* Element size in bytes, or 0 for an unknown code. */
int64_t dtype_size(int32_t dtype);

/* Do the byte ranges [a, a + a_bytes) and [b, b + b_bytes) overlap? Empty or NULL ranges never do. */
inline bool ranges_overlap(const void *a, int64_t a_bytes, const void *b, int64_t b_bytes) {
  if (a == nullptr || b == nullptr || a_bytes <= 0 || b_bytes <= 0) return false;
  uintptr_t x = (uintptr_t)a, y = (uintptr_t)b;
  return x < y + (uintptr_t)b_bytes && y < x + (uintptr_t)a_bytes;
}

class ArgCheck {
 public:
  explicit ArgCheck(const char *function) : fn_(function) { clear_error(); }

  /* dtype must be F32 or BF16 */
  ArgCheck &float_dtype(const char *name, int32_t dtype);
  /* dtype must be F32, BF16 or F16 */
  ArgCheck &castable_dtype(const char *name, int32_t dtype);
  ArgCheck &non_negative(const char *name, int64_t value);
  ArgCheck &positive(const char *name, int64_t value);
  ArgCheck &at_least(const char *name, int64_t value, int64_t minimum);
  /* a * b must not overflow int64 (and the byte count a * b * 8 neither). */
  ArgCheck &product_fits(const char *what, int64_t a, int64_t b);
  /* finite and > 0 */
  ArgCheck &positive_finite(const char *name, float value);
  ArgCheck &finite(const char *name, float value);
  ArgCheck &in_range(const char *name, float value, float lo_inclusive, float hi_exclusive);
  /* Non-null and aligned to `dtype`'s size unless `count` is 0 (empty buffers may be NULL). */
  ArgCheck &buffer(const char *name, const void *ptr, int64_t count, int32_t dtype);
  /* Two buffers of `bytes` each must not overlap (unless they are the same address and
   * `allow_same` is set). */
  ArgCheck &no_overlap(const char *a_name, const void *a, const char *b_name, const void *b,
                       int64_t bytes, bool allow_same);
  ArgCheck &require(bool ok, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

  bool failed() const { return status_ != MOE4J_OK; }
  int32_t status() const { return status_; }

 private:
  const char *fn_;
  int32_t status_ = MOE4J_OK;
};

}  // namespace moe4j
