import io.moe4j.text.ByteTokenizer;
import java.nio.file.Path;

/**
 * Writes moe4j's byte-level tokenizer.json and tokenizer_config.json into the directory given as the
 * only argument, so the HF parity models use exactly the files moe4j itself produces.
 * Run as a single-file source program against java/core/target/classes (see make_models.py).
 */
public class WriteByteTokenizer {
  public static void main(String[] args) {
    if (args.length != 1) {
      throw new IllegalArgumentException("usage: WriteByteTokenizer OUT_DIR (got " + args.length + " arguments)");
    }
    Path dir = Path.of(args[0]);
    ByteTokenizer tok = new ByteTokenizer();
    tok.writeHfTokenizerJson(dir.resolve("tokenizer.json"));
    tok.writeTokenizerConfig(dir.resolve("tokenizer_config.json"));
  }
}
