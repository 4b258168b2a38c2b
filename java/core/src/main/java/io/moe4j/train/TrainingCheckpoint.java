package io.moe4j.train;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.SerializationFeature;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import io.moe4j.io.HfCheckpoint;
import io.moe4j.io.SafetensorsFile;
import io.moe4j.io.SafetensorsWriter;
import io.moe4j.nn.ModelConfig;
import io.moe4j.nn.MoeTransformer;
import io.moe4j.tensor.DType;
import io.moe4j.tensor.Tensor;
import io.moe4j.text.ByteTokenizer;
import io.moe4j.text.HfTokenizer;
import io.moe4j.text.Tokenizer;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.stream.StreamSupport;

/**
 * A training checkpoint: a Hugging Face model directory (config.json, model.safetensors in F32 so
 * a resume is bit-exact, generation_config.json, tokenizer.json and tokenizer_config.json for
 * byte-level models) plus {@value #OPTIMIZER_FILE} (AdamW moments by parameter name) and
 * {@value #STATE_FILE}. All of it is written into a temporary directory that is renamed over the
 * previous checkpoint ({@link HfCheckpoint#save}), so a crash never leaves a half-written one.
 */
public final class TrainingCheckpoint {

  public static final String OPTIMIZER_FILE = "optimizer.safetensors";
  public static final String STATE_FILE = "trainer_state.json";
  private static final ObjectMapper JSON = new ObjectMapper().enable(SerializationFeature.INDENT_OUTPUT);

  private TrainingCheckpoint() {}

  /** What {@link #read} finds: the model config and the trainer state. */
  public record Contents(ModelConfig config, TrainerState state) {}

  public static void save(Path dir, MoeTransformer model, AdamW optimizer, TrainerState state, Tokenizer tokenizer) {
    Map<String, byte[]> extras = new LinkedHashMap<>();
    Path scratch = null;
    try {
      Path parent = dir.toAbsolutePath().getParent();
      Files.createDirectories(parent);
      // The writers below write files; their bytes travel into the atomic save as extra files.
      scratch = Files.createTempDirectory(parent, "." + dir.getFileName() + ".scratch-");
      SafetensorsWriter writer = new SafetensorsWriter(scratch.resolve(OPTIMIZER_FILE));
      writer.metadata("format", "moe4j-adamw");
      for (Map.Entry<String, Tensor> e : optimizer.stateTensors().entrySet())
        writer.add(e.getKey(), DType.F32, e.getValue(), model.backend());
      writer.write();
      extras.put(OPTIMIZER_FILE, Files.readAllBytes(scratch.resolve(OPTIMIZER_FILE)));
      if (tokenizer instanceof ByteTokenizer bytes) {
        bytes.writeHfTokenizerJson(scratch.resolve("tokenizer.json"));
        bytes.writeTokenizerConfig(scratch.resolve("tokenizer_config.json"));
        extras.put("tokenizer.json", Files.readAllBytes(scratch.resolve("tokenizer.json")));
        extras.put("tokenizer_config.json", Files.readAllBytes(scratch.resolve("tokenizer_config.json")));
      } else if (tokenizer instanceof HfTokenizer hf) {
        // the files it was loaded from, unchanged, so HF tools load the same tokenizer
        Path from = hf.file().toAbsolutePath().getParent();
        extras.put(HfTokenizer.TOKENIZER_JSON, Files.readAllBytes(hf.file()));
        for (String name : List.of(HfTokenizer.TOKENIZER_CONFIG_JSON, HfTokenizer.CHAT_TEMPLATE_JINJA, HfTokenizer.CHAT_TEMPLATE_JSON))
          if (Files.isRegularFile(from.resolve(name))) extras.put(name, Files.readAllBytes(from.resolve(name)));
      }
      extras.put(STATE_FILE, stateJson(state).getBytes(StandardCharsets.UTF_8));
      HfCheckpoint.save(dir, model.config(), model.parameters(), model.backend(), DType.F32, extras);
    } catch (IOException e) {
      throw new UncheckedIOException("cannot save checkpoint " + dir + ": " + e.getMessage(), e);
    } finally {
      if (scratch != null) deleteScratch(scratch);
    }
  }

  private static void deleteScratch(Path scratch) {
    try (var files = Files.list(scratch)) {
      for (Path f : (Iterable<Path>) files::iterator) Files.deleteIfExists(f);
      Files.deleteIfExists(scratch);
    } catch (IOException ignored) {
      // A leftover hidden scratch directory is harmless; the checkpoint itself is complete.
    }
  }

  /** Reads config.json and trainer_state.json, checking that the directory is a training checkpoint. */
  public static Contents read(Path dir) {
    if (!Files.isDirectory(dir)) throw new IllegalArgumentException("checkpoint " + dir + " is not a directory");
    Path state = dir.resolve(STATE_FILE);
    if (!Files.isRegularFile(state))
      throw new IllegalArgumentException("checkpoint " + dir + " has no " + STATE_FILE + " (not a moe4j training checkpoint)");
    if (!Files.isRegularFile(dir.resolve(OPTIMIZER_FILE)))
      throw new IllegalArgumentException("checkpoint " + dir + " has no " + OPTIMIZER_FILE);
    try {
      return new Contents(HfCheckpoint.readConfig(dir), parseState(Files.readString(state), state.toString()));
    } catch (IOException e) {
      throw new UncheckedIOException("cannot read " + state + ": " + e.getMessage(), e);
    }
  }

  public static void loadWeights(Path dir, MoeTransformer model) {
    HfCheckpoint.loadInto(dir, model.parameters(), model.backend());
  }

  /** Copies the saved moments into the optimizer; every moment must be present with its size. */
  public static void loadOptimizer(Path dir, AdamW optimizer, MoeTransformer model) {
    Path file = dir.resolve(OPTIMIZER_FILE);
    try (SafetensorsFile saved = SafetensorsFile.open(file)) {
      Map<String, Tensor> state = optimizer.stateTensors();
      for (Map.Entry<String, Tensor> e : state.entrySet()) {
        if (!saved.contains(e.getKey())) throw new IllegalArgumentException(file + " lacks '" + e.getKey() + "'");
        long n = saved.info(e.getKey()).numel();
        if (n != e.getValue().numel())
          throw new IllegalArgumentException(file + ": '" + e.getKey() + "' has " + n + " elements, the model needs "
              + e.getValue().numel());
      }
      for (Map.Entry<String, Tensor> e : state.entrySet()) saved.readInto(e.getKey(), e.getValue(), model.backend());
    }
  }

  static String stateJson(TrainerState s) {
    ObjectNode o = JSON.createObjectNode();
    o.put("format", "moe4j-trainer-state-1");
    o.put("step", s.step());
    o.put("optimizer_steps", s.optimizerSteps());
    o.put("skipped_steps", s.skippedSteps());
    o.put("seed", s.seed());
    o.put("data_position", s.dataPosition());
    o.put("batch_size", s.batchSize());
    o.put("seq_len", s.seqLen());
    o.put("grad_accumulation", s.gradAccumulation());
    o.put("num_experts", s.numExperts());
    o.put("frozen_experts", s.frozenExperts());
    ObjectNode sch = o.putObject("schedule");
    sch.put("peak_lr", s.schedule().peak());
    sch.put("min_lr", s.schedule().min());
    sch.put("warmup_steps", s.schedule().warmupSteps());
    sch.put("total_steps", s.schedule().totalSteps());
    sch.put("decay", s.schedule().decay().name().toLowerCase());
    ObjectNode adam = o.putObject("adamw");
    adam.put("beta1", s.beta1());
    adam.put("beta2", s.beta2());
    adam.put("eps", s.eps());
    adam.put("weight_decay", s.weightDecay());
    adam.put("max_grad_norm", s.maxGradNorm());
    o.put("mixed_precision", s.mixedPrecision());
    ArrayNode tasks = o.putArray("tasks");
    for (String t : s.tasks()) tasks.add(t);
    try {
      return JSON.writeValueAsString(o);
    } catch (IOException e) {
      throw new UncheckedIOException(e);
    }
  }

  static TrainerState parseState(String text, String source) {
    JsonNode o;
    try {
      o = JSON.readTree(text);
    } catch (IOException e) {
      throw new IllegalArgumentException(source + " is not valid JSON: " + e.getMessage(), e);
    }
    JsonNode sch = field(o, "schedule", source);
    JsonNode adam = field(o, "adamw", source);
    String decay = field(sch, "decay", source).asText();
    LrSchedule.Decay d;
    try {
      d = LrSchedule.Decay.valueOf(decay.toUpperCase());
    } catch (IllegalArgumentException e) {
      throw new IllegalArgumentException(source + ": schedule.decay must be cosine, linear or constant, got '" + decay + "'");
    }
    LrSchedule schedule = new LrSchedule((float) field(sch, "peak_lr", source).asDouble(), (float) field(sch, "min_lr", source).asDouble(),
        field(sch, "warmup_steps", source).asLong(), field(sch, "total_steps", source).asLong(), d);
    return new TrainerState(field(o, "step", source).asLong(), field(o, "optimizer_steps", source).asLong(),
        field(o, "skipped_steps", source).asLong(), field(o, "seed", source).asLong(), field(o, "data_position", source).asLong(),
        field(o, "batch_size", source).asInt(), field(o, "seq_len", source).asInt(), field(o, "grad_accumulation", source).asInt(),
        field(o, "num_experts", source).asInt(), field(o, "frozen_experts", source).asInt(), schedule,
        (float) field(adam, "beta1", source).asDouble(), (float) field(adam, "beta2", source).asDouble(),
        (float) field(adam, "eps", source).asDouble(), (float) field(adam, "weight_decay", source).asDouble(),
        (float) field(adam, "max_grad_norm", source).asDouble(),
        o.path("mixed_precision").asBoolean(false), // absent in checkpoints written before it existed
        o.has("tasks") ? StreamSupport.stream(o.get("tasks").spliterator(), false).map(JsonNode::asText).toList()
            : List.of());
  }

  private static JsonNode field(JsonNode o, String name, String source) {
    JsonNode v = o.get(name);
    if (v == null || v.isNull()) throw new IllegalArgumentException(source + " lacks \"" + name + "\"");
    return v;
  }
}
