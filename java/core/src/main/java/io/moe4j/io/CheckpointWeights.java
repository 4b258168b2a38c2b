package io.moe4j.io;

import io.moe4j.nn.Parameter;
import io.moe4j.nn.ParameterSource;
import io.moe4j.ops.Backend;
import io.moe4j.tensor.DType;
import io.moe4j.tensor.Tensor;
import java.util.Arrays;

/**
 * Parameters read from a checkpoint for inference: matrices in {@code matrixDtype} (BF16 keeps a
 * bf16 checkpoint bf16; the GEMMs widen it inside their packing), norm scales in F32, no gradients.
 * Stacked expert weights are assembled from the per-expert tensors (name with {@code {j}} replaced
 * by 0 .. E-1). Every tensor's shape is checked against what the model expects.
 */
public final class CheckpointWeights implements ParameterSource {

  private final Backend backend;
  private final TensorStore store;
  private final DType matrixDtype;

  public CheckpointWeights(Backend backend, TensorStore store, DType matrixDtype) {
    if (matrixDtype != DType.F32 && matrixDtype != DType.BF16)
      throw new IllegalArgumentException("matrixDtype must be F32 or BF16, got " + matrixDtype);
    this.backend = backend;
    this.store = store;
    this.matrixDtype = matrixDtype;
  }

  @Override
  public Parameter create(String name, Kind kind, long... shape) {
    DType dtype = kind == Kind.NORM ? DType.F32 : matrixDtype;
    Tensor value = backend.empty(dtype, shape);
    try {
      if (name.contains(Parameter.EXPERT_INDEX)) {
        long[] slice = Arrays.copyOfRange(shape, 1, shape.length);
        long sliceSize = value.numel() / shape[0];
        for (int j = 0; j < shape[0]; j++) read(name.replace(Parameter.EXPERT_INDEX, Integer.toString(j)), slice,
            value.view(j * sliceSize, slice));
      } else {
        read(name, shape, value);
      }
      return new Parameter(name, value, null, kind == Kind.MATRIX);
    } catch (RuntimeException e) {
      value.close();
      throw e;
    }
  }

  private void read(String name, long[] expected, Tensor destination) {
    TensorInfo info = store.info(name);
    if (!info.hasShape(expected))
      throw new IllegalArgumentException("tensor '" + name + "' of " + store.fileOf(name) + " must have shape "
          + Arrays.toString(expected) + " for this config, got " + info.shape());
    store.readInto(name, destination, backend);
  }
}
