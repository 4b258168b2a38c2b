package io.moe4j.cli;

import com.fasterxml.jackson.databind.ObjectMapper;
import io.moe4j.infer.LoadedModel;
import io.moe4j.infer.ScoreResult;
import io.moe4j.infer.Scorer;
import io.moe4j.ops.Backend;
import io.moe4j.text.HfTokenizer;
import java.io.IOException;
import java.io.PrintStream;
import java.io.UncheckedIOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.Map;
import org.apache.commons.cli.CommandLine;
import org.apache.commons.cli.Options;

/**
 * {@code moe4j score --model DIR (--text T | --file F) [--json]}: the negative log-likelihood of each
 * token of the text given the ones before it, and the perplexity. Nothing is generated.
 */
final class ScoreCommand {

  int run(String[] args, PrintStream out, PrintStream err) {
    Options options = new Options();
    ModelOptions.addModel(options);
    options.addOption(null, "text", true, "the text to score");
    options.addOption(null, "file", true, "a UTF-8 file to score");
    options.addOption(null, "json", false, "print {\"tokens\": [...], \"nll\": [...], \"perplexity\": x}");
    CommandLine cl = Main.parse(options, args, "moe4j score --model DIR (--text TEXT | --file FILE) [--json]", null, out);
    if (cl == null) return 0; // --help
    String text = text(cl);
    try (HfTokenizer tokenizer = ModelOptions.tokenizer(cl);
        Backend backend = ModelOptions.openBackend(cl);
        LoadedModel loaded = ModelOptions.load(cl, backend)) {
      ScoreResult r;
      try {
        r = new Scorer(loaded.model(), ModelOptions.promptEncoder(tokenizer)).score(text);
      } catch (IllegalArgumentException e) {
        throw new Main.UsageException("--text/--file: " + e.getMessage());
      }
      if (cl.hasOption("json")) {
        Map<String, Object> json = new LinkedHashMap<>();
        json.put("tokens", r.tokens());
        json.put("nll", r.nll());
        json.put("perplexity", r.perplexity());
        try {
          out.println(new ObjectMapper().writeValueAsString(json));
        } catch (IOException e) {
          throw new UncheckedIOException(e);
        }
      } else {
        out.printf("%6s  %8s  %s%n", "pos", "nll", "token");
        for (int i = 0; i < r.nll().length; i++)
          out.printf("%6d  %8.4f  %s%n", i + 1, r.nll()[i], printable(tokenizer.decode(new int[] {r.tokens()[i + 1]})));
        out.printf("perplexity %.4f over %d tokens%n", r.perplexity(), r.nll().length);
      }
    }
    return 0;
  }

  private static String printable(String piece) {
    return piece.replace("\n", "\\n").replace("\t", "\\t");
  }

  private static String text(CommandLine cl) {
    if (cl.hasOption("text") == cl.hasOption("file")) throw new Main.UsageException("give exactly one of --text or --file");
    if (cl.hasOption("text")) return cl.getOptionValue("text");
    Path file = Path.of(cl.getOptionValue("file"));
    try {
      return Files.readString(file, StandardCharsets.UTF_8);
    } catch (NoSuchFileException e) {
      throw new Main.UsageException("--file " + file + " does not exist");
    } catch (IOException e) {
      throw new UncheckedIOException("cannot read --file " + file + ": " + e.getMessage(), e);
    }
  }
}
