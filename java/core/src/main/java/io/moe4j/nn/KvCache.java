package io.moe4j.nn;

import io.moe4j.ops.Backend;
import io.moe4j.tensor.DType;
import io.moe4j.tensor.Tensor;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;

/**
 * Keys and values of past tokens for incremental decoding: per layer k, v F32 [B, maxSeq, Hkv, D]
 * (after RoPE), and each sequence's length (the host copy is the truth, mirrored to an I32 tensor on
 * the device for the decode kernel).
 */
public final class KvCache implements AutoCloseable {

  private final Backend backend;
  private final int batch;
  private final int maxSeq;
  private final List<Tensor> keys = new ArrayList<>();
  private final List<Tensor> values = new ArrayList<>();
  private final int[] lengths;
  private Tensor lengthsOnDevice;

  KvCache(Backend backend, ModelConfig config, int batch, int maxSeq) {
    if (batch <= 0) throw new IllegalArgumentException("batch must be > 0, got " + batch);
    if (maxSeq <= 0) throw new IllegalArgumentException("maxSeq must be > 0, got " + maxSeq);
    this.backend = backend;
    this.batch = batch;
    this.maxSeq = maxSeq;
    this.lengths = new int[batch];
    try {
      for (int i = 0; i < config.numLayers(); i++) {
        keys.add(backend.empty(DType.F32, batch, maxSeq, config.numKvHeads(), config.headDim()));
        values.add(backend.empty(DType.F32, batch, maxSeq, config.numKvHeads(), config.headDim()));
      }
      lengthsOnDevice = backend.fromInts(lengths, batch);
    } catch (RuntimeException e) {
      close();
      throw e;
    }
  }

  public int batch() {
    return batch;
  }

  public int maxSeq() {
    return maxSeq;
  }

  /** Tokens cached for sequence b. */
  public int length(int b) {
    return lengths[b];
  }

  public int[] lengths() {
    return lengths.clone();
  }

  Tensor keys(int layer) {
    return keys.get(layer);
  }

  Tensor values(int layer) {
    return values.get(layer);
  }

  Tensor lengthsOnDevice() {
    return lengthsOnDevice;
  }

  /** Sets every sequence's length (after a prefill or to advance after a decode step). */
  void setLengths(int[] newLengths) {
    for (int b = 0; b < batch; b++)
      if (newLengths[b] < 0 || newLengths[b] > maxSeq)
        throw new IllegalArgumentException("sequence " + b + " would hold " + newLengths[b] + " tokens, the cache holds "
            + maxSeq + " (maxSeq)");
    System.arraycopy(newLengths, 0, lengths, 0, batch);
    lengthsOnDevice.close();
    lengthsOnDevice = backend.fromInts(lengths, batch);
  }

  @Override
  public void close() {
    keys.forEach(Tensor::close);
    values.forEach(Tensor::close);
    if (lengthsOnDevice != null) lengthsOnDevice.close();
  }

  @Override
  public String toString() {
    return "KvCache(batch " + batch + ", maxSeq " + maxSeq + ", lengths " + Arrays.toString(lengths) + ")";
  }
}
