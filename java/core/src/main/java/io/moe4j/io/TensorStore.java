package io.moe4j.io;

import io.moe4j.ops.Backend;
import io.moe4j.tensor.DType;
import io.moe4j.tensor.Tensor;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Set;

/**
 * Named tensors on disk: one safetensors file or a sharded set behind an index. Reads copy from
 * memory-mapped file ranges into backend tensors, converting between F32, BF16 and F16. Not
 * thread-safe: use one store per thread, or synchronize.
 */
public interface TensorStore extends AutoCloseable {

  /** The file name of a single-file checkpoint in an HF directory. */
  String SINGLE_FILE = "model.safetensors";

  /** The index of a sharded checkpoint in an HF directory. */
  String INDEX_FILE = "model.safetensors.index.json";

  /** All tensor names, sorted. */
  Set<String> names();

  boolean contains(String name);

  /** The header entry of {@code name}; an error naming the file(s) if there is none. */
  TensorInfo info(String name);

  /** The file that holds {@code name} (for messages). */
  Path fileOf(String name);

  /** The file this store was opened from: the safetensors file or the index (for messages). */
  Path source();

  /**
   * Copies tensor {@code name} into {@code destination} (same element count; shape is the caller's
   * business), converting F32/BF16/F16 to the destination's floating-point dtype; integer tensors
   * only into the same dtype.
   */
  void readInto(String name, Tensor destination, Backend backend);

  /** A new tensor on {@code backend} of the stored shape, converted to {@code as}. */
  default Tensor load(Backend backend, String name, DType as) {
    TensorInfo info = info(name);
    Tensor t = backend.empty(as, info.shapeArray());
    try {
      readInto(name, t, backend);
      return t;
    } catch (RuntimeException e) {
      t.close();
      throw e;
    }
  }

  /** Contents as floats (tensors below 2^31 elements; for tools and tests). */
  float[] readFloats(String name);

  @Override
  void close();

  /**
   * Opens the weights of an HF checkpoint directory: {@value #SINGLE_FILE} if present, else the
   * shards of {@value #INDEX_FILE} (the order transformers looks for them in).
   */
  static TensorStore open(Path directory) {
    if (!Files.isDirectory(directory))
      throw new IllegalArgumentException("checkpoint directory " + directory + " does not exist or is not a directory");
    Path single = directory.resolve(SINGLE_FILE);
    if (Files.exists(single)) return SafetensorsFile.open(single);
    Path index = directory.resolve(INDEX_FILE);
    if (Files.exists(index)) return ShardedSafetensors.open(index);
    throw new IllegalArgumentException(
        "checkpoint directory " + directory + " holds neither " + SINGLE_FILE + " nor " + INDEX_FILE);
  }
}
