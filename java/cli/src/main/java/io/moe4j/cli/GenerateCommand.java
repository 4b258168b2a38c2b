package io.moe4j.cli;

import io.moe4j.infer.Completion;
import io.moe4j.infer.GenerationOptions;
import io.moe4j.infer.GenerationStats;
import io.moe4j.infer.LoadedModel;
import io.moe4j.infer.MemoryBandwidth;
import io.moe4j.infer.TextGenerator;
import io.moe4j.ops.Backend;
import io.moe4j.text.HfTokenizer;
import java.io.IOException;
import java.io.PrintStream;
import java.io.UncheckedIOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import org.apache.commons.cli.CommandLine;
import org.apache.commons.cli.Options;

/**
 * {@code moe4j generate --model DIR (--prompt T | --prompts-file F) [...]}: continues prompts. One
 * prompt streams its text as it is produced; several (one per line of the file) decode as one batch
 * and print in order.
 */
final class GenerateCommand {

  int run(String[] args, PrintStream out, PrintStream err) {
    Options options = new Options();
    ModelOptions.addModel(options);
    options.addOption(null, "prompt", true, "the text to continue");
    options.addOption(null, "prompts-file", true, "a file with one prompt per line, decoded as one batch");
    options.addOption(null, "max-new-tokens", true, "at most this many new tokens per prompt (default 128)");
    options.addOption(null, "stop", true, "stop when the text contains this string (repeatable)");
    ModelOptions.addSampling(options);
    options.addOption(null, "stats", false, "print prompt and decode tokens/s, time to first token, bandwidth bound");
    CommandLine cl = Main.parse(options, args,
        "moe4j generate --model DIR (--prompt TEXT | --prompts-file FILE) [options]", null, out);
    if (cl == null) return 0; // --help
    List<String> prompts = prompts(cl);
    int maxNew = ModelOptions.intOption(cl, "max-new-tokens", 128);
    if (maxNew < 0) throw new Main.UsageException("--max-new-tokens must be >= 0, got " + maxNew);
    List<String> stops = cl.hasOption("stop") ? Arrays.asList(cl.getOptionValues("stop")) : List.of();
    if (stops.contains("")) throw new Main.UsageException("--stop must not be empty");
    try (HfTokenizer tokenizer = ModelOptions.tokenizer(cl);
        Backend backend = ModelOptions.openBackend(cl);
        LoadedModel loaded = ModelOptions.load(cl, backend)) {
      TextGenerator generator = new TextGenerator(loaded.model(), tokenizer, ModelOptions.promptEncoder(tokenizer));
      GenerationOptions generation = new GenerationOptions(maxNew, loaded.eosIds(), stops, ModelOptions.sampling(cl));
      boolean stream = prompts.size() == 1;
      List<Completion> completions = generator.generate(prompts, generation, stream ? (b, piece) -> {
        out.print(piece);
        out.flush();
      } : null);
      if (stream) {
        out.println();
      } else {
        for (int b = 0; b < completions.size(); b++) {
          out.println("=== prompt " + (b + 1) + ": " + prompts.get(b));
          out.println(completions.get(b).text());
        }
      }
      if (cl.hasOption("stats")) printStats(generator.lastStats(), loaded, backend, err);
    }
    return 0;
  }

  private static List<String> prompts(CommandLine cl) {
    if (cl.hasOption("prompt") == cl.hasOption("prompts-file"))
      throw new Main.UsageException("give exactly one of --prompt TEXT or --prompts-file FILE");
    if (cl.hasOption("prompt")) return List.of(cl.getOptionValue("prompt"));
    Path file = Path.of(cl.getOptionValue("prompts-file"));
    try {
      List<String> prompts = new ArrayList<>();
      for (String line : Files.readAllLines(file, StandardCharsets.UTF_8)) if (!line.isBlank()) prompts.add(line);
      if (prompts.isEmpty()) throw new Main.UsageException("--prompts-file " + file + " holds no prompt (one per line)");
      return prompts;
    } catch (NoSuchFileException e) {
      throw new Main.UsageException("--prompts-file " + file + " does not exist");
    } catch (IOException e) {
      throw new UncheckedIOException("cannot read --prompts-file " + file + ": " + e.getMessage(), e);
    }
  }

  static void printStats(GenerationStats s, LoadedModel loaded, Backend backend, PrintStream err) {
    double gbPerSecond = MemoryBandwidth.copyGigabytesPerSecond(backend);
    long activeBytes = loaded.activeWeightBytesPerToken();
    double bound = gbPerSecond * 1e9 / activeBytes;
    double perSequence = s.decodeTokensPerSecond() / s.batch();
    err.printf("prompt: %d tokens in %.3f s (%.1f tokens/s); time to first token %.3f s%n", s.promptTokens(),
        s.prefillSeconds(), s.prefillTokensPerSecond(), s.prefillSeconds());
    err.printf("decode: %d tokens in %.3f s (%.1f tokens/s, %.1f per sequence, batch %d)%n", s.generatedTokens(),
        s.decodeSeconds(), s.decodeTokensPerSecond(), perSequence, s.batch());
    err.printf("bandwidth bound: %.1f MB of active weights per token at %.1f GB/s (measured copy) = %.1f tokens/s per"
        + " sequence; reached %.0f%%%n", activeBytes / 1e6, gbPerSecond, bound, 100 * perSequence / bound);
  }
}
