package io.moe4j.io;

import io.moe4j.ops.Backend;
import io.moe4j.tensor.Tensor;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.HashMap;
import java.util.Map;
import java.util.Set;

/**
 * A checkpoint split over several safetensors files behind model.safetensors.index.json. Shards are
 * opened (and their headers validated) on first use, so reading a few tensors of a large model
 * touches only their files.
 */
public final class ShardedSafetensors implements TensorStore {

  private final Path indexFile;
  private final SafetensorsIndex index;
  private final Map<String, SafetensorsFile> open = new HashMap<>();
  private boolean closed;

  private ShardedSafetensors(Path indexFile, SafetensorsIndex index) {
    this.indexFile = indexFile;
    this.index = index;
  }

  public static ShardedSafetensors open(Path indexFile) {
    return new ShardedSafetensors(indexFile, SafetensorsIndex.read(indexFile));
  }

  public SafetensorsIndex index() {
    return index;
  }

  @Override
  public Set<String> names() {
    return index.weightMap().keySet();
  }

  @Override
  public boolean contains(String name) {
    return index.weightMap().containsKey(name);
  }

  private SafetensorsFile shardOf(String name) {
    if (closed) throw new IllegalStateException("sharded checkpoint " + indexFile + " is closed");
    String shard = index.weightMap().get(name);
    if (shard == null)
      throw new IllegalArgumentException("safetensors index " + indexFile + " has no tensor '" + name + "' in its weight_map ("
          + index.weightMap().size() + " tensors)");
    SafetensorsFile file = open.get(shard);
    if (file == null) {
      Path path = indexFile.resolveSibling(shard);
      if (!Files.exists(path))
        throw new IllegalArgumentException("safetensors index " + indexFile + " maps tensor '" + name + "' to shard " + path
            + ", which does not exist");
      file = SafetensorsFile.open(path);
      open.put(shard, file);
    }
    if (!file.contains(name))
      throw new IllegalArgumentException("safetensors index " + indexFile + " maps tensor '" + name + "' to " + file.path()
          + ", but that file's header has no such tensor");
    return file;
  }

  @Override
  public TensorInfo info(String name) {
    return shardOf(name).info(name);
  }

  @Override
  public Path source() {
    return indexFile;
  }

  @Override
  public Path fileOf(String name) {
    return shardOf(name).path();
  }

  @Override
  public void readInto(String name, Tensor destination, Backend backend) {
    shardOf(name).readInto(name, destination, backend);
  }

  @Override
  public float[] readFloats(String name) {
    return shardOf(name).readFloats(name);
  }

  @Override
  public void close() {
    if (closed) return;
    closed = true;
    open.values().forEach(SafetensorsFile::close);
    open.clear();
  }
}
