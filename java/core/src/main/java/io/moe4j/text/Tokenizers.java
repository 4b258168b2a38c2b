package io.moe4j.text;

import java.nio.file.Files;
import java.nio.file.Path;

/** Picks the tokenizer for a model directory or a tokenizer file. */
public final class Tokenizers {

  private Tokenizers() {}

  /**
   * A Hugging Face tokenizer from {@code tokenizer.json}: the file itself, or a model directory that
   * holds one (with its {@code tokenizer_config.json}).
   *
   * @throws IllegalArgumentException naming the path when there is no tokenizer there
   */
  public static HfTokenizer load(Path modelDirOrTokenizerJson) {
    if (modelDirOrTokenizerJson == null) {
      throw new IllegalArgumentException("tokenizer path must not be null");
    }
    Path p = modelDirOrTokenizerJson;
    if (Files.isDirectory(p)) {
      Path json = p.resolve(HfTokenizer.TOKENIZER_JSON);
      if (!Files.isRegularFile(json)) {
        throw new IllegalArgumentException("model directory " + p + " has no "
            + HfTokenizer.TOKENIZER_JSON + " (only Hugging Face tokenizer.json files are"
            + " supported; tokenizer.model/vocab.json alone are not)");
      }
      return HfTokenizer.load(json);
    }
    if (!Files.exists(p)) {
      throw new IllegalArgumentException("tokenizer path " + p + " does not exist");
    }
    if (!p.getFileName().toString().endsWith(".json")) {
      throw new IllegalArgumentException(
          "tokenizer path " + p + " must be a tokenizer.json file or a model directory");
    }
    return HfTokenizer.load(p);
  }
}
