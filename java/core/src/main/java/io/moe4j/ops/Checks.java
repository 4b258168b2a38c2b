package io.moe4j.ops;

import io.moe4j.tensor.DType;
import io.moe4j.tensor.Device;
import io.moe4j.tensor.Tensor;
import java.util.Arrays;

/** Java-side argument checks with messages naming the operation, the argument, expected and got. */
final class Checks {

  private Checks() {}

  static IllegalArgumentException error(String op, String message) {
    return new IllegalArgumentException(op + ": " + message);
  }

  static void notNull(String op, String name, Tensor t) {
    if (t == null) throw error(op, name + " must not be null");
  }

  static void onDevice(String op, Device device, String name, Tensor t) {
    notNull(op, name, t);
    if (!t.device().equals(device))
      throw error(op, name + " must be on " + device + ", got " + t.device());
  }

  static void dtype(String op, String name, Tensor t, DType expected) {
    if (t.dtype() != expected) throw error(op, name + " must be " + expected + ", got " + t.dtype());
  }

  static void sameDtype(String op, String name, Tensor t, String otherName, Tensor other) {
    if (t.dtype() != other.dtype())
      throw error(op, name + " must have the dtype of " + otherName + " (" + other.dtype() + "), got " + t.dtype());
  }

  static void shape(String op, String name, Tensor t, long... expected) {
    if (!Arrays.equals(t.shape(), expected))
      throw error(op, name + " must have shape " + Arrays.toString(expected) + ", got " + Arrays.toString(t.shape()));
  }

  static void numel(String op, String name, Tensor t, long expected) {
    if (t.numel() != expected)
      throw error(op, name + " must have " + expected + " elements, got " + t.numel() + " " + Arrays.toString(t.shape()));
  }

  static void rankAtLeast(String op, String name, Tensor t, int rank) {
    if (t.rank() < rank)
      throw error(op, name + " must have rank >= " + rank + ", got shape " + Arrays.toString(t.shape()));
  }

  /** Rows of a [..., cols] tensor. */
  static long rows(Tensor t) {
    long cols = t.dim(-1);
    return cols == 0 ? 0 : t.numel() / cols;
  }
}
