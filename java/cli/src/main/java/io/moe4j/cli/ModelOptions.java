package io.moe4j.cli;

import io.moe4j.infer.LoadedModel;
import io.moe4j.infer.SamplingOptions;
import io.moe4j.infer.TextGenerator;
import io.moe4j.ops.Backend;
import io.moe4j.ops.Backends;
import io.moe4j.tensor.DType;
import io.moe4j.text.HfTokenizer;
import io.moe4j.text.Tokenizer;
import io.moe4j.text.Tokenizers;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.function.Function;
import org.apache.commons.cli.CommandLine;
import org.apache.commons.cli.Options;

/** The options that generate, chat and score share: which model, where, in which dtype, how to sample. */
final class ModelOptions {

  private ModelOptions() {}

  static void addModel(Options options) {
    options.addOption(null, "model", true, "Hugging Face model directory (config.json, *.safetensors, tokenizer.json)");
    options.addOption(null, "device", true, "auto | cpu | cuda | cuda:N (default auto)");
    options.addOption(null, "dtype", true, "weights in memory: bf16 | f32 (default bf16)");
  }

  static void addSampling(Options options) {
    options.addOption(null, "temperature", true, "0 = greedy (default 0.7)");
    options.addOption(null, "top-k", true, "keep the k most likely tokens, 0 = all (default 0)");
    options.addOption(null, "top-p", true, "nucleus sampling mass in (0, 1] (default 0.9)");
    options.addOption(null, "repetition-penalty", true, "> 1 discourages repeats, 1 = off (default 1)");
    options.addOption(null, "seed", true, "random seed for sampling (default 0)");
  }

  static Path modelDirectory(CommandLine cl) {
    if (!cl.hasOption("model")) throw new Main.UsageException("--model DIR is required");
    Path dir = Path.of(cl.getOptionValue("model"));
    if (!Files.isDirectory(dir)) throw new Main.UsageException("--model " + dir + " is not a directory");
    return dir;
  }

  static DType weightsDtype(CommandLine cl) {
    String v = cl.getOptionValue("dtype", "bf16");
    return switch (v) {
      case "bf16" -> DType.BF16;
      case "f32" -> DType.F32;
      default -> throw new Main.UsageException("--dtype must be bf16 or f32, got '" + v + "'");
    };
  }

  static Backend openBackend(CommandLine cl) {
    try {
      return Backends.open(cl.getOptionValue("device", "auto"));
    } catch (IllegalArgumentException e) {
      throw new Main.UsageException("--device: " + e.getMessage());
    }
  }

  static LoadedModel load(CommandLine cl, Backend backend) {
    return LoadedModel.load(modelDirectory(cl), backend, weightsDtype(cl));
  }

  /** The model directory's tokenizer.json (with tokenizer_config.json); close it after use. */
  static HfTokenizer tokenizer(CommandLine cl) {
    return Tokenizers.load(modelDirectory(cl));
  }

  /**
   * How a prompt becomes ids: a Hugging Face tokenizer adds what its post-processor and
   * tokenizer_config.json say (e.g. Mixtral's bos); other tokenizers get bos + text, as moe4j trains.
   */
  static Function<String, int[]> promptEncoder(Tokenizer tokenizer) {
    if (!(tokenizer instanceof HfTokenizer hf)) return TextGenerator.bosThenText(tokenizer);
    return text -> {
      int[] ids = hf.encodeWithSpecials(text);
      boolean wantsBos = hf.addBosToken().orElse(false) && hf.bosId() >= 0;
      if (!wantsBos || (ids.length > 0 && ids[0] == hf.bosId())) return ids;
      int[] withBos = new int[ids.length + 1];
      withBos[0] = hf.bosId();
      System.arraycopy(ids, 0, withBos, 1, ids.length);
      return withBos;
    };
  }

  static SamplingOptions sampling(CommandLine cl) {
    try {
      return new SamplingOptions(floatOption(cl, "temperature", 0.7f), intOption(cl, "top-k", 0),
          floatOption(cl, "top-p", 0.9f), floatOption(cl, "repetition-penalty", 1f), longOption(cl, "seed", 0));
    } catch (IllegalArgumentException e) {
      throw new Main.UsageException(e.getMessage());
    }
  }

  static int intOption(CommandLine cl, String name, int fallback) {
    String v = cl.getOptionValue(name);
    if (v == null) return fallback;
    try {
      return Integer.parseInt(v);
    } catch (NumberFormatException e) {
      throw new Main.UsageException("--" + name + " must be an integer, got '" + v + "'");
    }
  }

  static long longOption(CommandLine cl, String name, long fallback) {
    String v = cl.getOptionValue(name);
    if (v == null) return fallback;
    try {
      return Long.parseLong(v);
    } catch (NumberFormatException e) {
      throw new Main.UsageException("--" + name + " must be an integer, got '" + v + "'");
    }
  }

  static float floatOption(CommandLine cl, String name, float fallback) {
    String v = cl.getOptionValue(name);
    if (v == null) return fallback;
    try {
      return Float.parseFloat(v);
    } catch (NumberFormatException e) {
      throw new Main.UsageException("--" + name + " must be a number, got '" + v + "'");
    }
  }
}
