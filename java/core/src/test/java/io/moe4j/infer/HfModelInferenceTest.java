package io.moe4j.infer;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import io.moe4j.io.HfCheckpoint;
import io.moe4j.io.SafetensorsFile;
import io.moe4j.io.SafetensorsWriter;
import io.moe4j.io.TensorInfo;
import io.moe4j.nn.ModelConfig;
import io.moe4j.nn.MoeTransformer;
import io.moe4j.ops.Backend;
import io.moe4j.ops.Backends;
import io.moe4j.tensor.DType;
import io.moe4j.text.ByteTokenizer;
import java.io.IOException;
import java.nio.channels.FileChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Small random-weight checkpoints in each HF layout (Mixtral, Qwen3-MoE, OLMoE), written and loaded
 * back: F32 checkpoints reproduce the source model's logits bitwise; BF16 ones stay BF16 in memory
 * and match an F32 model of the same (rounded) weights within the bf16 rounding of activations;
 * greedy generation with the KV cache equals greedy over full forwards; sharded and single-file
 * directories agree; bad directories give messages naming the file and tensor.
 */
class HfModelInferenceTest {

  private static Backend backend;

  @TempDir Path dir;

  @BeforeAll
  static void open() {
    backend = Backends.open("cpu");
  }

  @AfterAll
  static void close() {
    assertEquals(0, backend.memoryStats().liveBytes(), "memory returned");
    backend.close();
  }

  static ModelConfig config(ModelConfig.Architecture arch) {
    ModelConfig.QkNorm qk = switch (arch) {
      case MIXTRAL -> ModelConfig.QkNorm.NONE;
      case QWEN3_MOE -> ModelConfig.QkNorm.PER_HEAD;
      case OLMOE -> ModelConfig.QkNorm.WHOLE;
    };
    // Qwen3-MoE gets a dense first layer (mlp_only_layers), the others are all-MoE.
    List<Integer> dense = arch == ModelConfig.Architecture.QWEN3_MOE ? List.of(0) : List.of();
    return new ModelConfig(arch, 259, 32, 2, 4, 2, 8, 48, 24, 4, 2, arch == ModelConfig.Architecture.MIXTRAL, 1, dense,
        qk, 1e-5f, 10000f, 128, false, 0.01f, 0f, ModelConfig.Routing.TOKEN_CHOICE, 0f, 0, 0, 257, 258, 0.2f);
  }

  private static int[] prompt() {
    return TextGenerator.bosThenText(new ByteTokenizer()).apply("add:12+7=");
  }

  private Path save(ModelConfig c, DType dtype, long seed) {
    Path out = dir.resolve(c.architecture().modelType() + "-" + dtype + "-" + seed);
    try (MoeTransformer source = new MoeTransformer(backend, c, seed)) {
      HfCheckpoint.save(out, c, source.parameters(), backend, dtype, Map.of());
    }
    return out;
  }

  @Test
  void f32CheckpointsReproduceTheSourceModelBitwise() {
    for (ModelConfig.Architecture arch : ModelConfig.Architecture.values()) {
      ModelConfig c = config(arch);
      int[] ids = prompt();
      float[] expected;
      try (MoeTransformer source = new MoeTransformer(backend, c, 5)) {
        expected = source.logits(ids, 1, ids.length);
      }
      Path saved = save(c, DType.F32, 5);
      try (LoadedModel loaded = LoadedModel.load(saved, backend, DType.F32)) {
        assertEquals(c, loaded.config());
        assertArrayEquals(expected, loaded.model().logits(ids, 1, ids.length), 0f, arch.toString());
        assertEquals(Set.of(258), loaded.eosIds());
      }
    }
  }

  @Test
  void bf16WeightsStayBf16AndMatchTheirF32Widening() {
    for (ModelConfig.Architecture arch : ModelConfig.Architecture.values()) {
      Path saved = save(config(arch), DType.BF16, 6);
      int[] ids = prompt();
      try (LoadedModel narrow = LoadedModel.load(saved, backend, DType.BF16);
          LoadedModel wide = LoadedModel.load(saved, backend, DType.F32)) {
        assertEquals(DType.BF16, narrow.model().parameter("model.embed_tokens.weight").value().dtype());
        assertEquals(DType.F32, narrow.model().parameter("model.norm.weight").value().dtype());
        float[] a = narrow.model().logits(ids, 1, ids.length);
        float[] b = wide.model().logits(ids, 1, ids.length);
        // The BF16 path rounds the input of each of the ~8 GEMMs on a token's path to bf16 (relative
        // 2^-9 each); the errors add up to about 1% of the logits' scale, bounded here by 3%.
        double worst = 0;
        double scale = 0;
        for (int i = 0; i < a.length; i++) {
          worst = Math.max(worst, Math.abs(a[i] - b[i]));
          scale = Math.max(scale, Math.abs(b[i]));
        }
        assertTrue(worst < 0.03 * scale, arch + ": bf16 vs widened logits differ by " + worst + " at scale " + scale);
      }
    }
  }

  @Test
  void greedyWithKvCacheEqualsGreedyOverFullForwards() {
    for (ModelConfig.Architecture arch : ModelConfig.Architecture.values()) {
      Path saved = save(config(arch), DType.BF16, 7);
      try (LoadedModel loaded = LoadedModel.load(saved, backend, DType.BF16)) {
        MoeTransformer model = loaded.model();
        int[][] prompts = {prompt(), TextGenerator.bosThenText(new ByteTokenizer()).apply("rev:abc=")};
        TextGenerator generator = new TextGenerator(model, new ByteTokenizer(), TextGenerator.bosThenText(new ByteTokenizer()));
        List<Completion> completions = generator.generateIds(prompts,
            new GenerationOptions(8, Set.of(), List.of(), SamplingOptions.greedy()), null);
        for (int b = 0; b < prompts.length; b++) {
          int[] seq = prompts[b].clone();
          List<Integer> expected = new ArrayList<>();
          for (int step = 0; step < 8; step++) {
            float[] logits = model.logits(seq, 1, seq.length);
            int v = model.config().vocabSize();
            float[] last = java.util.Arrays.copyOfRange(logits, (seq.length - 1) * v, seq.length * v);
            int next = Sampler.argmax(last);
            expected.add(next);
            seq = java.util.Arrays.copyOf(seq, seq.length + 1);
            seq[seq.length - 1] = next;
          }
          assertArrayEquals(expected.stream().mapToInt(Integer::intValue).toArray(), completions.get(b).tokens(),
              arch + " prompt " + b);
          assertEquals("length", completions.get(b).finishReason());
        }
        GenerationStats stats = generator.lastStats();
        assertEquals(prompts[0].length + prompts[1].length, stats.promptTokens());
        assertEquals(16, stats.generatedTokens());
      }
    }
  }

  @Test
  void expertChoiceCheckpointsDecodeWithTheCausalFallback() {
    ModelConfig c = config(ModelConfig.Architecture.MIXTRAL).withRouting(ModelConfig.Routing.EXPERT_CHOICE, 2f);
    Path saved = save(c, DType.F32, 12);
    try (LoadedModel loaded = LoadedModel.load(saved, backend, DType.F32)) {
      assertEquals(ModelConfig.Routing.EXPERT_CHOICE, loaded.config().routing());
      MoeTransformer model = loaded.model();
      int[] seq = prompt();
      List<Completion> out = new TextGenerator(model, new ByteTokenizer(), TextGenerator.bosThenText(new ByteTokenizer()))
          .generateIds(new int[][] {seq}, new GenerationOptions(6, Set.of(), List.of(), SamplingOptions.greedy()), null);
      // the cached decode and a full (causal-routing) forward pick the same tokens
      for (int next : out.get(0).tokens()) {
        float[] logits = model.logits(seq, 1, seq.length);
        int v = model.config().vocabSize();
        assertEquals(Sampler.argmax(java.util.Arrays.copyOfRange(logits, (seq.length - 1) * v, seq.length * v)), next);
        seq = java.util.Arrays.copyOf(seq, seq.length + 1);
        seq[seq.length - 1] = next;
      }
    }
  }

  @Test
  void shardedAndSingleFileDirectoriesAgree() throws IOException {
    ModelConfig c = config(ModelConfig.Architecture.MIXTRAL);
    Path single = save(c, DType.BF16, 8);
    Path sharded = dir.resolve("sharded");
    Files.createDirectories(sharded);
    Files.copy(single.resolve("config.json"), sharded.resolve("config.json"));
    Map<String, String> weightMap = new LinkedHashMap<>();
    try (SafetensorsFile file = SafetensorsFile.open(single.resolve("model.safetensors"))) {
      SafetensorsWriter[] shards = {new SafetensorsWriter(sharded.resolve("model-00001-of-00002.safetensors")),
          new SafetensorsWriter(sharded.resolve("model-00002-of-00002.safetensors"))};
      int i = 0;
      for (String name : file.names()) {
        TensorInfo info = file.info(name);
        int shard = i++ % 2;
        shards[shard].add(name, DType.BF16, info.shapeArray(), file.readFloats(name));
        weightMap.put(name, "model-0000" + (shard + 1) + "-of-00002.safetensors");
      }
      for (SafetensorsWriter w : shards) w.write();
    }
    StringBuilder index = new StringBuilder("{\"metadata\": {}, \"weight_map\": {");
    int n = 0;
    for (Map.Entry<String, String> e : weightMap.entrySet())
      index.append(n++ == 0 ? "" : ", ").append('"').append(e.getKey()).append("\": \"").append(e.getValue()).append('"');
    index.append("}}");
    Files.writeString(sharded.resolve("model.safetensors.index.json"), index.toString());
    int[] ids = prompt();
    try (LoadedModel a = LoadedModel.load(single, backend, DType.BF16);
        LoadedModel b = LoadedModel.load(sharded, backend, DType.BF16)) {
      assertArrayEquals(a.model().logits(ids, 1, ids.length), b.model().logits(ids, 1, ids.length), 0f);
    }
  }

  @Test
  void badDirectoriesNameTheFileAndTensor() throws IOException {
    ModelConfig c = config(ModelConfig.Architecture.OLMOE);
    Path saved = save(c, DType.F32, 9);

    // config with one layer more than the weights hold: a missing tensor
    Path missing = dir.resolve("missing");
    copyDir(saved, missing);
    editConfig(missing, json -> json.put("num_hidden_layers", 3));
    RuntimeException e1 = assertThrows(RuntimeException.class, () -> LoadedModel.load(missing, backend, DType.F32));
    assertTrue(e1.getMessage().contains("model.layers.2"), e1.getMessage());

    // wrong width: a mis-shaped tensor
    Path misShaped = dir.resolve("misshaped");
    copyDir(saved, misShaped);
    editConfig(misShaped, json -> json.put("intermediate_size", 20));
    RuntimeException e2 = assertThrows(RuntimeException.class, () -> LoadedModel.load(misShaped, backend, DType.F32));
    assertTrue(e2.getMessage().contains("must have shape") && e2.getMessage().contains("model.safetensors"), e2.getMessage());

    // unsupported architecture
    Path other = dir.resolve("other");
    copyDir(saved, other);
    editConfig(other, json -> json.put("model_type", "gpt2"));
    RuntimeException e3 = assertThrows(RuntimeException.class, () -> LoadedModel.load(other, backend, DType.F32));
    assertTrue(e3.getMessage().contains("gpt2"), e3.getMessage());

    // truncated weights file
    Path truncated = dir.resolve("truncated");
    copyDir(saved, truncated);
    try (FileChannel ch = FileChannel.open(truncated.resolve("model.safetensors"), StandardOpenOption.WRITE)) {
      ch.truncate(ch.size() / 2);
    }
    RuntimeException e4 = assertThrows(RuntimeException.class, () -> LoadedModel.load(truncated, backend, DType.F32));
    assertTrue(e4.getMessage().contains("model.safetensors"), e4.getMessage());
    assertEquals(0, backend.memoryStats().liveBytes(), "nothing leaked by failed loads");
  }

  private static void editConfig(Path checkpoint, java.util.function.Consumer<ObjectNode> edit) throws IOException {
    ObjectMapper mapper = new ObjectMapper();
    ObjectNode json = (ObjectNode) mapper.readTree(checkpoint.resolve("config.json").toFile());
    edit.accept(json);
    mapper.writeValue(checkpoint.resolve("config.json").toFile(), json);
  }

  private static void copyDir(Path from, Path to) throws IOException {
    Files.createDirectories(to);
    try (var files = Files.list(from)) {
      for (Path f : (Iterable<Path>) files::iterator) Files.copy(f, to.resolve(f.getFileName()));
    }
  }

  @Test
  void scoreMatchesTheMeanOfPerTokenLosses() {
    Path saved = save(config(ModelConfig.Architecture.QWEN3_MOE), DType.F32, 10);
    try (LoadedModel loaded = LoadedModel.load(saved, backend, DType.F32)) {
      Scorer scorer = new Scorer(loaded.model(), TextGenerator.bosThenText(new ByteTokenizer()));
      ScoreResult r = scorer.score("hello world");
      assertEquals(12, r.tokens().length);
      assertEquals(11, r.nll().length);
      double sum = 0;
      for (float v : r.nll()) {
        assertTrue(v > 0 && Float.isFinite(v));
        sum += v;
      }
      assertEquals(Math.exp(sum / 11), r.perplexity(), 1e-9);
      // The first predicted token's nll equals -log softmax of the logits after bos.
      int v = loaded.config().vocabSize();
      float[] logits = loaded.model().logits(new int[] {257}, 1, 1);
      double max = Double.NEGATIVE_INFINITY;
      for (int i = 0; i < v; i++) max = Math.max(max, logits[i]);
      double z = 0;
      for (int i = 0; i < v; i++) z += Math.exp(logits[i] - max);
      double expected = -(logits['h'] - max - Math.log(z));
      assertEquals(expected, r.nll()[0], 1e-4);
      assertTrue(new String(new byte[] {'h'}, StandardCharsets.US_ASCII).equals("h"));
    }
  }
}
