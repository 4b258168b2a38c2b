package io.moe4j.io;

import io.moe4j.nn.ModelConfig;
import io.moe4j.nn.Parameter;
import io.moe4j.ops.Backend;
import io.moe4j.tensor.DType;
import io.moe4j.tensor.Tensor;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.file.Files;
import java.nio.file.LinkOption;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Comparator;
import java.util.HashSet;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.Set;
import java.util.TreeMap;
import java.util.regex.Pattern;

/**
 * Hugging Face checkpoint directories: config.json, model.safetensors (or shards behind
 * model.safetensors.index.json when reading), generation_config.json and whatever else the caller
 * adds (tokenizer.json, ...). Stacked expert parameters ([E, ...], name with {@code {j}}) are stored
 * as E separate HF tensors, slice j of dimension 0 under the name with {@code {j}} replaced by j.
 *
 * <p>Saving is all-or-nothing: everything is written and synced in a sibling temporary directory
 * that is then renamed to the target. An existing target is swapped with the new directory in one
 * atomic renameat2(RENAME_EXCHANGE) on Linux and then deleted; where that is unavailable it is
 * renamed aside (to {@code .<name>.old-*}), the new one renamed in, and the old one deleted. A crash
 * leaves either the old or the new directory complete (on the fallback path, a crash between the
 * two renames leaves the old one complete under its {@code .old-*} name).
 */
public final class HfCheckpoint {

  private static final Set<String> RESERVED =
      Set.of(HfConfig.FILE_NAME, TensorStore.SINGLE_FILE, TensorStore.INDEX_FILE, GenerationConfig.FILE_NAME);

  private static final Pattern SHARD_NAME = Pattern.compile("model-\\d+-of-\\d+\\.safetensors");

  private HfCheckpoint() {}

  /** One HF tensor of a parameter: the whole value, or expert j's slice of a stacked one. */
  private record Slot(String hfName, Parameter parameter, long elementOffset, long[] shape) {}

  private static List<Slot> slots(List<Parameter> params) {
    List<Slot> out = new ArrayList<>();
    Set<String> seen = new HashSet<>();
    for (Parameter p : params) {
      Tensor v = p.value();
      if (!p.stackedExperts()) {
        out.add(new Slot(p.name(), p, 0, v.shape()));
      } else {
        if (v.rank() < 1)
          throw new IllegalArgumentException("parameter " + p.name() + ": stacked expert weights need rank >= 1, got " + v);
        long[] full = v.shape();
        long[] slice = Arrays.copyOfRange(full, 1, full.length);
        long sliceNumel = full[0] == 0 ? 0 : v.numel() / full[0];
        for (long j = 0; j < full[0]; j++)
          out.add(new Slot(p.name().replace(Parameter.EXPERT_INDEX, Long.toString(j)), p, j * sliceNumel, slice));
      }
    }
    for (Slot s : out)
      if (!seen.add(s.hfName())) throw new IllegalArgumentException("parameter tensor name '" + s.hfName() + "' occurs twice");
    return out;
  }

  // ---- saving -------------------------------------------------------------------------------

  /**
   * Writes {@code dir} atomically with all weights in one model.safetensors. {@code weightsDtype}
   * (F32, BF16 or F16) is the stored type of every parameter; {@code extraFiles} (plain file names →
   * contents, may be empty) are written as they are.
   */
  public static void save(
      Path dir, ModelConfig config, List<Parameter> params, Backend backend, DType weightsDtype, Map<String, byte[]> extraFiles) {
    save(dir, config, params, backend, weightsDtype, extraFiles, Long.MAX_VALUE);
  }

  /**
   * As {@link #save(Path, ModelConfig, List, Backend, DType, Map)}, splitting the weights into
   * shards of at most {@code maxShardBytes} of tensor data each (a larger single tensor gets a shard
   * of its own) named model-0000i-of-0000n.safetensors behind model.safetensors.index.json, as
   * transformers' save_pretrained does; one shard is written as plain model.safetensors.
   */
  public static void save(Path dir, ModelConfig config, List<Parameter> params, Backend backend, DType weightsDtype,
      Map<String, byte[]> extraFiles, long maxShardBytes) {
    if (maxShardBytes <= 0) throw new IllegalArgumentException("save: maxShardBytes must be > 0, got " + maxShardBytes);
    if (dir == null || config == null || params == null || backend == null)
      throw new IllegalArgumentException("save: dir, config, params and backend must not be null");
    if (weightsDtype == null || !weightsDtype.isFloatingPoint())
      throw new IllegalArgumentException("save: weightsDtype must be F32, BF16 or F16, got " + weightsDtype);
    Map<String, byte[]> extras = extraFiles == null ? Map.of() : extraFiles;
    for (String name : extras.keySet()) {
      if (name == null || name.isEmpty() || name.contains("/") || name.contains("\\") || name.startsWith("."))
        throw new IllegalArgumentException("save: extra file names must be plain file names, got '" + name + "'");
      if (RESERVED.contains(name) || SHARD_NAME.matcher(name).matches())
        throw new IllegalArgumentException("save: extra file '" + name + "' would replace the checkpoint's own " + name);
    }
    List<Slot> slots = slots(params);
    Path target = dir.toAbsolutePath();
    Path parent = target.getParent();
    if (Files.exists(target, LinkOption.NOFOLLOW_LINKS) && !Files.isDirectory(target, LinkOption.NOFOLLOW_LINKS))
      throw new IllegalArgumentException("save: " + dir + " exists and is not a directory");
    Path temp = AtomicFiles.sibling(target, "tmp");
    try {
      Files.createDirectories(parent);
      Files.createDirectory(temp);
      HfConfig.write(config, temp.resolve(HfConfig.FILE_NAME), weightsDtype);
      GenerationConfig.of(config).write(temp.resolve(GenerationConfig.FILE_NAME));
      writeWeights(temp, slots, backend, weightsDtype, maxShardBytes);
      for (Map.Entry<String, byte[]> e : extras.entrySet()) AtomicFiles.writeBytes(temp.resolve(e.getKey()), e.getValue());
      AtomicFiles.syncDirectory(temp);
      swapIn(temp, target, true);
    } catch (IOException e) {
      AtomicFiles.deleteQuietly(temp);
      throw new UncheckedIOException("cannot save checkpoint " + dir + ": " + e.getMessage(), e);
    } catch (RuntimeException | Error e) {
      AtomicFiles.deleteQuietly(temp);
      throw e;
    }
  }

  private static void writeWeights(Path dir, List<Slot> slots, Backend backend, DType dtype, long maxShardBytes) {
    List<Slot> sorted = new ArrayList<>(slots);
    sorted.sort(Comparator.comparing(Slot::hfName));
    List<List<Slot>> shards = new ArrayList<>();
    long filled = 0;
    long total = 0;
    for (Slot s : sorted) {
      long bytes = Arrays.stream(s.shape()).reduce(1, Math::multiplyExact) * dtype.size();
      if (shards.isEmpty() || (filled > 0 && filled + bytes > maxShardBytes)) {
        shards.add(new ArrayList<>());
        filled = 0;
      }
      shards.get(shards.size() - 1).add(s);
      filled += bytes;
      total += bytes;
    }
    if (shards.size() <= 1) {
      writeShard(dir.resolve(TensorStore.SINGLE_FILE), shards.isEmpty() ? List.of() : shards.get(0), backend, dtype);
      return;
    }
    Map<String, String> weightMap = new TreeMap<>();
    for (int i = 0; i < shards.size(); i++) {
      String name = String.format(Locale.ROOT, "model-%05d-of-%05d.safetensors", i + 1, shards.size());
      writeShard(dir.resolve(name), shards.get(i), backend, dtype);
      for (Slot s : shards.get(i)) weightMap.put(s.hfName(), name);
    }
    new SafetensorsIndex(Map.of("total_size", total), weightMap).write(dir.resolve(TensorStore.INDEX_FILE));
  }

  private static void writeShard(Path file, List<Slot> slots, Backend backend, DType dtype) {
    SafetensorsWriter writer = new SafetensorsWriter(file);
    for (Slot s : slots) writer.add(s.hfName(), dtype, s.parameter().value().view(s.elementOffset(), s.shape()), backend);
    writer.write();
  }

  /**
   * Puts the finished {@code temp} directory at {@code target}: a plain rename when there is none
   * yet; else an atomic exchange where the platform has one ({@code exchange}), or the old directory
   * renamed aside and the new one renamed in. The old one is deleted last.
   */
  static void swapIn(Path temp, Path target, boolean exchange) throws IOException {
    Path parent = target.getParent();
    if (!Files.exists(target, LinkOption.NOFOLLOW_LINKS)) {
      AtomicFiles.move(temp, target);
      AtomicFiles.syncDirectory(parent);
      return;
    }
    if (exchange && DirectorySwap.exchange(temp, target)) {
      AtomicFiles.syncDirectory(parent);
      AtomicFiles.deleteQuietly(temp); // holds the old checkpoint now; the new one is in place either way
      return;
    }
    Path old = AtomicFiles.sibling(target, "old");
    AtomicFiles.move(target, old);
    try {
      AtomicFiles.move(temp, target);
    } catch (IOException e) {
      AtomicFiles.move(old, target);
      throw e;
    }
    AtomicFiles.syncDirectory(parent);
    AtomicFiles.deleteQuietly(old);
  }

  // ---- loading ------------------------------------------------------------------------------

  /** The model config of a checkpoint directory. */
  public static ModelConfig readConfig(Path dir) {
    return HfConfig.read(dir.resolve(HfConfig.FILE_NAME));
  }

  /**
   * Copies every parameter's tensor(s) from {@code dir} (single file or sharded) into
   * {@code parameter.value()}, converted to its dtype. All names and shapes are checked before
   * anything is copied, so a mismatched checkpoint leaves the parameters as they were.
   */
  public static void loadInto(Path dir, List<Parameter> params, Backend backend) {
    if (dir == null || params == null || backend == null)
      throw new IllegalArgumentException("loadInto: dir, params and backend must not be null");
    List<Slot> slots = slots(params);
    try (TensorStore store = TensorStore.open(dir)) {
      for (Slot s : slots) {
        if (!store.contains(s.hfName()))
          throw new IllegalArgumentException("checkpoint " + dir + ": tensor '" + s.hfName() + "' (parameter " + s.parameter().name()
              + ", shape " + Arrays.toString(s.shape()) + ") is missing from " + store.source());
        TensorInfo info = store.info(s.hfName());
        if (!info.hasShape(s.shape()))
          throw new IllegalArgumentException("checkpoint " + dir + ": tensor '" + s.hfName() + "' in " + store.fileOf(s.hfName())
              + " has shape " + info.shape() + ", expected " + Arrays.toString(s.shape()) + " (parameter " + s.parameter().name() + ")");
        if (!info.dtype().isFloatingPoint())
          throw new IllegalArgumentException("checkpoint " + dir + ": tensor '" + s.hfName() + "' in " + store.fileOf(s.hfName())
              + " is " + info.dtype() + ", expected F32, BF16 or F16");
      }
      for (Slot s : slots) {
        Tensor part = s.parameter().value().view(s.elementOffset(), s.shape());
        store.readInto(s.hfName(), part, backend);
      }
    }
  }
}
