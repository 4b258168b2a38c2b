package io.moe4j.io;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.moe4j.nn.ModelConfig;
import io.moe4j.nn.Parameter;
import io.moe4j.ops.Backend;
import io.moe4j.ops.Backends;
import io.moe4j.tensor.DType;
import io.moe4j.tensor.HalfFloats;
import java.io.IOException;
import java.io.RandomAccessFile;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.TreeSet;
import java.util.stream.Collectors;
import java.util.stream.Stream;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class HfCheckpointTest {

  private static Backend cpu;
  private final List<Parameter> owned = new ArrayList<>();

  @TempDir Path tmp;

  @BeforeAll
  static void open() {
    cpu = Backends.open("cpu");
  }

  @AfterAll
  static void close() {
    cpu.close();
  }

  @AfterEach
  void free() {
    owned.forEach(Parameter::close);
    owned.clear();
  }

  private Parameter param(String name, long seed, long... shape) {
    int n = (int) Arrays.stream(shape).reduce(1, (a, b) -> a * b);
    Parameter p = new Parameter(name, cpu.fromFloats(SafetensorsFileTest.random(n, seed), DType.F32, shape),
        cpu.zeros(DType.F32, shape), true);
    owned.add(p);
    return p;
  }

  /** A small Mixtral-named parameter set: plain tensors and stacked experts. */
  private List<Parameter> model(long seed) {
    return List.of(
        param("model.embed_tokens.weight", seed, 11, 8),
        param("model.layers.0.self_attn.q_proj.weight", seed + 1, 8, 8),
        param("model.layers.0.input_layernorm.weight", seed + 2, 8),
        param("model.layers.0.block_sparse_moe.gate.weight", seed + 3, 4, 8),
        param("model.layers.0.block_sparse_moe.experts.{j}.w1.weight", seed + 4, 4, 6, 8),
        param("model.layers.0.block_sparse_moe.experts.{j}.w2.weight", seed + 5, 4, 8, 6),
        param("lm_head.weight", seed + 6, 11, 8));
  }

  private static float[] values(Parameter p) {
    return cpu.toFloats(p.value());
  }

  private static String error(Runnable r) {
    IllegalArgumentException e = assertThrows(IllegalArgumentException.class, r::run);
    return e.getMessage();
  }

  private static void contains(String message, String... parts) {
    for (String p : parts) assertTrue(message.contains(p), () -> "expected '" + p + "' in: " + message);
  }

  private static Set<String> listing(Path dir) throws IOException {
    try (Stream<Path> s = Files.list(dir)) {
      return s.map(p -> p.getFileName().toString()).collect(Collectors.toCollection(TreeSet::new));
    }
  }

  @Test
  void f32RoundTripIsBitExactWithExpertsExpanded() throws IOException {
    Path dir = tmp.resolve("ckpt");
    List<Parameter> saved = model(10);
    byte[] tokenizer = "{\"model\": {}}".getBytes(StandardCharsets.UTF_8);
    HfCheckpoint.save(dir, ModelConfig.demo(), saved, cpu, DType.F32, Map.of("tokenizer.json", tokenizer));

    assertEquals(Set.of("config.json", "generation_config.json", "model.safetensors", "tokenizer.json"), listing(dir));
    assertEquals(Set.of("ckpt"), listing(tmp), "no temporary directories left");
    assertArrayEquals(tokenizer, Files.readAllBytes(dir.resolve("tokenizer.json")));
    assertEquals(ModelConfig.demo(), HfCheckpoint.readConfig(dir));
    assertEquals(new GenerationConfig(257, 258), GenerationConfig.read(dir.resolve("generation_config.json")));

    try (SafetensorsFile f = SafetensorsFile.open(dir.resolve("model.safetensors"))) {
      assertEquals(5 + 4 + 4, f.names().size());
      assertTrue(f.contains("model.layers.0.block_sparse_moe.experts.3.w2.weight"));
      assertEquals(List.of(6L, 8L), f.info("model.layers.0.block_sparse_moe.experts.2.w1.weight").shape());
      float[] w1 = values(saved.get(4));
      assertArrayEquals(Arrays.copyOfRange(w1, 2 * 48, 3 * 48), f.readFloats("model.layers.0.block_sparse_moe.experts.2.w1.weight"));
    }

    List<Parameter> loaded = model(99);
    HfCheckpoint.loadInto(dir, loaded, cpu);
    for (int i = 0; i < saved.size(); i++) assertArrayEquals(values(saved.get(i)), values(loaded.get(i)), saved.get(i).name());
  }

  @Test
  void bf16RoundTripIsWithinRounding() {
    Path dir = tmp.resolve("bf16");
    List<Parameter> saved = model(20);
    HfCheckpoint.save(dir, ModelConfig.demo(), saved, cpu, DType.BF16, Map.of());
    List<Parameter> loaded = model(98);
    HfCheckpoint.loadInto(dir, loaded, cpu);
    for (int i = 0; i < saved.size(); i++) {
      float[] a = values(saved.get(i));
      float[] b = values(loaded.get(i));
      for (int k = 0; k < a.length; k++) assertEquals(HalfFloats.roundToBf16(a[k]), b[k], saved.get(i).name());
    }
  }

  @Test
  void shardedAndSingleFileAgree() throws IOException {
    Path single = tmp.resolve("single");
    List<Parameter> saved = model(30);
    HfCheckpoint.save(single, ModelConfig.demo(), saved, cpu, DType.BF16, Map.of());

    // Split the same tensors over two shards plus an index, as HF's sharded writers do.
    Path sharded = tmp.resolve("sharded");
    Files.createDirectories(sharded);
    Files.copy(single.resolve("config.json"), sharded.resolve("config.json"));
    Map<String, String> weightMap = new java.util.TreeMap<>();
    try (SafetensorsFile f = SafetensorsFile.open(single.resolve("model.safetensors"))) {
      SafetensorsWriter a = new SafetensorsWriter(sharded.resolve("model-00001-of-00002.safetensors"));
      SafetensorsWriter b = new SafetensorsWriter(sharded.resolve("model-00002-of-00002.safetensors"));
      int i = 0;
      for (String name : f.names()) {
        boolean first = i++ % 2 == 0;
        (first ? a : b).add(name, DType.BF16, f.info(name).shapeArray(), f.readFloats(name));
        weightMap.put(name, first ? "model-00001-of-00002.safetensors" : "model-00002-of-00002.safetensors");
      }
      a.write();
      b.write();
    }
    new SafetensorsIndex(Map.of("total_size", 1234), weightMap).write(sharded.resolve(TensorStore.INDEX_FILE));

    List<Parameter> fromSingle = model(1);
    List<Parameter> fromSharded = model(2);
    HfCheckpoint.loadInto(single, fromSingle, cpu);
    HfCheckpoint.loadInto(sharded, fromSharded, cpu);
    for (int i = 0; i < saved.size(); i++) assertArrayEquals(values(fromSingle.get(i)), values(fromSharded.get(i)));

    // A name missing from the map, a shard path leaving the directory, a missing shard file.
    Map<String, String> withoutHead = new java.util.TreeMap<>(weightMap);
    withoutHead.remove("lm_head.weight");
    new SafetensorsIndex(Map.of(), withoutHead).write(sharded.resolve(TensorStore.INDEX_FILE));
    String m = error(() -> HfCheckpoint.loadInto(sharded, model(3), cpu));
    contains(m, "lm_head.weight", "missing from", TensorStore.INDEX_FILE);
    Map<String, String> escaping = new java.util.TreeMap<>(weightMap);
    escaping.put("lm_head.weight", "../elsewhere.safetensors");
    new SafetensorsIndex(Map.of(), escaping).write(sharded.resolve(TensorStore.INDEX_FILE));
    m = error(() -> HfCheckpoint.loadInto(sharded, model(3), cpu));
    contains(m, "plain file name", "../elsewhere.safetensors");
    new SafetensorsIndex(Map.of(), weightMap).write(sharded.resolve(TensorStore.INDEX_FILE));
    Files.delete(sharded.resolve("model-00002-of-00002.safetensors"));
    m = error(() -> HfCheckpoint.loadInto(sharded, model(3), cpu));
    contains(m, "model-00002-of-00002.safetensors", "does not exist", TensorStore.INDEX_FILE);
  }

  @Test
  void shardedSaveSplitsByBytesAndLoadsBack() throws IOException {
    Path dir = tmp.resolve("sharded-save");
    List<Parameter> saved = model(70);
    // F32 tensors here are 128..384 bytes (the embedding and head 352), 800 bytes per shard.
    HfCheckpoint.save(dir, ModelConfig.demo(), saved, cpu, DType.F32, Map.of(), 800);
    Set<String> files = listing(dir);
    assertTrue(files.contains(TensorStore.INDEX_FILE) && !files.contains(TensorStore.SINGLE_FILE), files.toString());
    List<String> shards = files.stream().filter(f -> f.startsWith("model-")).toList();
    assertTrue(shards.size() >= 3, shards.toString());
    for (int i = 0; i < shards.size(); i++)
      assertEquals(String.format("model-%05d-of-%05d.safetensors", i + 1, shards.size()), shards.get(i));
    SafetensorsIndex index = SafetensorsIndex.read(dir.resolve(TensorStore.INDEX_FILE));
    assertEquals(13, index.weightMap().size());
    long total = 0;
    for (String shard : shards) {
      try (SafetensorsFile f = SafetensorsFile.open(dir.resolve(shard))) {
        long bytes = f.names().stream().mapToLong(n -> f.info(n).byteLength()).sum();
        assertTrue(bytes <= 800, shard + " holds " + bytes + " bytes");
        for (String n : f.names()) assertEquals(shard, index.weightMap().get(n));
        total += bytes;
      }
    }
    assertEquals(((Number) index.metadata().get("total_size")).longValue(), total);
    List<Parameter> loaded = model(71);
    HfCheckpoint.loadInto(dir, loaded, cpu);
    for (int i = 0; i < saved.size(); i++) assertArrayEquals(values(saved.get(i)), values(loaded.get(i)));

    // One shard's worth is written as a plain model.safetensors.
    HfCheckpoint.save(dir, ModelConfig.demo(), saved, cpu, DType.F32, Map.of(), 1L << 30);
    assertEquals(Set.of("config.json", "generation_config.json", "model.safetensors"), listing(dir));
    String m = error(() -> HfCheckpoint.save(dir, ModelConfig.demo(), saved, cpu, DType.F32,
        Map.of("model-00001-of-00002.safetensors", new byte[0]), 800));
    contains(m, "model-00001-of-00002.safetensors");
  }

  @Test
  void overwritingReplacesTheDirectoryAtomically() throws IOException {
    Path dir = tmp.resolve("ckpt");
    HfCheckpoint.save(dir, ModelConfig.demo(), model(40), cpu, DType.F32, Map.of("old-only.txt", new byte[] {1}));
    List<Parameter> second = model(41);
    HfCheckpoint.save(dir, ModelConfig.demo(), second, cpu, DType.F32, Map.of("tokenizer.json", new byte[] {2}));
    assertEquals(Set.of("config.json", "generation_config.json", "model.safetensors", "tokenizer.json"), listing(dir));
    assertEquals(Set.of("ckpt"), listing(tmp), "old and temporary directories removed");
    List<Parameter> loaded = model(0);
    HfCheckpoint.loadInto(dir, loaded, cpu);
    for (int i = 0; i < second.size(); i++) assertArrayEquals(values(second.get(i)), values(loaded.get(i)));
  }

  @Test
  void bothReplacementPathsLeaveOnlyTheNewDirectory() throws IOException {
    for (boolean exchange : new boolean[] {true, false}) {
      Path target = tmp.resolve("target-" + exchange);
      Files.createDirectories(target);
      Files.writeString(target.resolve("a.txt"), "old");
      Path fresh = tmp.resolve(".fresh-" + exchange);
      Files.createDirectories(fresh);
      Files.writeString(fresh.resolve("b.txt"), "new");
      HfCheckpoint.swapIn(fresh, target, exchange);
      assertEquals(Set.of("b.txt"), listing(target));
      assertFalse(Files.exists(fresh));
    }
    assertEquals(Set.of("target-true", "target-false"), listing(tmp), "old directories deleted");
  }

  @Test
  void exchangeSwapsTwoDirectoriesAtomically() throws IOException {
    Path a = Files.createDirectories(tmp.resolve("a"));
    Path b = Files.createDirectories(tmp.resolve("b"));
    Files.writeString(a.resolve("in-a"), "1");
    Files.writeString(b.resolve("in-b"), "2");
    org.junit.jupiter.api.Assumptions.assumeTrue(DirectorySwap.exchange(a, b), "renameat2(RENAME_EXCHANGE) unsupported here");
    assertEquals(Set.of("in-b"), listing(a));
    assertEquals(Set.of("in-a"), listing(b));
  }

  @Test
  void failedSaveLeavesTheOldCheckpoint() throws IOException {
    Path dir = tmp.resolve("ckpt");
    List<Parameter> first = model(50);
    HfCheckpoint.save(dir, ModelConfig.demo(), first, cpu, DType.F32, Map.of());
    List<Parameter> duplicate = new ArrayList<>(model(51));
    duplicate.add(param("lm_head.weight", 52, 11, 8));
    String m = error(() -> HfCheckpoint.save(dir, ModelConfig.demo(), duplicate, cpu, DType.F32, Map.of()));
    contains(m, "lm_head.weight", "twice");
    m = error(() -> HfCheckpoint.save(dir, ModelConfig.demo(), model(53), cpu, DType.F32, Map.of("config.json", new byte[0])));
    contains(m, "config.json");
    m = error(() -> HfCheckpoint.save(dir, ModelConfig.demo(), model(53), cpu, DType.F32, Map.of("../x", new byte[0])));
    contains(m, "plain file names");
    assertEquals(Set.of("ckpt"), listing(tmp));
    List<Parameter> loaded = model(0);
    HfCheckpoint.loadInto(dir, loaded, cpu);
    for (int i = 0; i < first.size(); i++) assertArrayEquals(values(first.get(i)), values(loaded.get(i)));
  }

  @Test
  void badCheckpointsGiveClearErrorsAndLeaveParametersUnchanged() throws IOException {
    Path dir = tmp.resolve("ckpt");
    HfCheckpoint.save(dir, ModelConfig.demo(), model(60), cpu, DType.F32, Map.of());

    // Mis-shaped: the loading model's lm_head is [12, 8].
    List<Parameter> misShaped = new ArrayList<>(model(61));
    misShaped.set(6, param("lm_head.weight", 62, 12, 8));
    float[] before = values(misShaped.get(0));
    String m = error(() -> HfCheckpoint.loadInto(dir, misShaped, cpu));
    contains(m, dir.toString(), "lm_head.weight", "model.safetensors", "[11, 8]", "expected [12, 8]");
    assertArrayEquals(before, values(misShaped.get(0)), "nothing copied when a check fails");

    // More experts than stored: experts.4 is missing.
    List<Parameter> grown = new ArrayList<>(model(63));
    grown.set(4, param("model.layers.0.block_sparse_moe.experts.{j}.w1.weight", 64, 5, 6, 8));
    m = error(() -> HfCheckpoint.loadInto(dir, grown, cpu));
    contains(m, "experts.4.w1.weight", "missing from", "model.safetensors", "[6, 8]");

    // Truncated weights file.
    Path file = dir.resolve("model.safetensors");
    try (RandomAccessFile raf = new RandomAccessFile(file.toFile(), "rw")) {
      raf.setLength(raf.length() - 10);
    }
    m = error(() -> HfCheckpoint.loadInto(dir, model(65), cpu));
    contains(m, file.toString(), "truncated");

    // No weights at all; no directory.
    Files.delete(file);
    m = error(() -> HfCheckpoint.loadInto(dir, model(66), cpu));
    contains(m, "neither model.safetensors nor model.safetensors.index.json");
    m = error(() -> HfCheckpoint.loadInto(tmp.resolve("nothing"), model(67), cpu));
    contains(m, "does not exist");
  }

  @Test
  void wrongDtypeInCheckpointIsRejected() throws IOException {
    Path dir = tmp.resolve("ints");
    Files.createDirectories(dir);
    new SafetensorsWriter(dir.resolve("model.safetensors"))
        .addBytes("model.layers.0.input_layernorm.weight", SafetensorsDType.I32, new long[] {8}, new byte[32])
        .write();
    String m = error(() -> HfCheckpoint.loadInto(dir, List.of(param("model.layers.0.input_layernorm.weight", 1, 8)), cpu));
    contains(m, "input_layernorm", "I32", "expected F32, BF16 or F16");
  }
}
