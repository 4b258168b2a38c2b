package io.moe4j.cli;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import io.moe4j.text.HfTokenizer;
import io.moe4j.text.Tokenizers;
import java.io.PrintStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import org.apache.commons.cli.CommandLine;
import org.apache.commons.cli.Options;

/**
 * {@code moe4j tokenize --model DIR | --tokenizer FILE --text T [--json] [--specials]}: the token ids
 * and pieces of a text under a Hugging Face tokenizer.json, as a table or as JSON
 * {@code {"ids": [...], "pieces": [...]}}.
 */
final class TokenizeCommand {

  private static final String USAGE = "moe4j tokenize (--model DIR | --tokenizer FILE) --text T [--json] [--specials]";

  int run(String[] args, PrintStream out, PrintStream err) {
    Options options = new Options();
    options.addOption(null, "model", true, "a Hugging Face model directory (with tokenizer.json)");
    options.addOption(null, "tokenizer", true, "a tokenizer.json file");
    options.addOption(null, "text", true, "the text to tokenize");
    options.addOption(null, "json", false, "print {\"ids\": [...], \"pieces\": [...]}");
    options.addOption(null, "specials", false, "add the specials of the tokenizer's post-processor (e.g. bos)");
    CommandLine cl = Main.parse(options, args, USAGE, null, out);
    if (cl == null) return 0; // --help
    Path source = tokenizerPath(cl);
    if (!cl.hasOption("text")) {
      throw new Main.UsageException("--text is required (the text to tokenize)");
    }
    String text = cl.getOptionValue("text");
    try (HfTokenizer tokenizer = Tokenizers.load(source)) {
      int[] ids = cl.hasOption("specials") ? tokenizer.encodeWithSpecials(text) : tokenizer.encode(text);
      List<String> pieces = tokenizer.pieces(ids);
      if (cl.hasOption("json")) {
        ObjectMapper mapper = new ObjectMapper();
        ObjectNode root = mapper.createObjectNode();
        ArrayNode idArray = root.putArray("ids");
        for (int id : ids) {
          idArray.add(id);
        }
        ArrayNode pieceArray = root.putArray("pieces");
        pieces.forEach(pieceArray::add);
        out.println(root.toString());
      } else {
        printTable(ids, pieces, tokenizer, out);
      }
    }
    return 0;
  }

  private static Path tokenizerPath(CommandLine cl) {
    boolean model = cl.hasOption("model");
    boolean file = cl.hasOption("tokenizer");
    if (model == file) {
      throw new Main.UsageException(model
          ? "give either --model or --tokenizer, not both"
          : "--model DIR or --tokenizer FILE is required");
    }
    if (model) {
      Path dir = Path.of(cl.getOptionValue("model"));
      if (!Files.isDirectory(dir)) {
        throw new Main.UsageException("--model must be a model directory, got '" + dir + "'"
            + (Files.exists(dir) ? " (a file; use --tokenizer for a tokenizer.json)" : " (does not exist)"));
      }
      return dir;
    }
    Path json = Path.of(cl.getOptionValue("tokenizer"));
    if (!Files.isRegularFile(json)) {
      throw new Main.UsageException("--tokenizer must be a tokenizer.json file, got '" + json + "'"
          + (Files.isDirectory(json) ? " (a directory; use --model)" : " (does not exist)"));
    }
    return json;
  }

  private static void printTable(int[] ids, List<String> pieces, HfTokenizer tokenizer, PrintStream out) {
    int width = "id".length();
    for (int id : ids) {
      width = Math.max(width, Integer.toString(id).length());
    }
    out.printf("%" + width + "s  piece%n", "id");
    for (int i = 0; i < ids.length; i++) {
      out.printf("%" + width + "d  %s%s%n", ids[i], visible(pieces.get(i)),
          tokenizer.isSpecial(ids[i]) ? "  (special)" : "");
    }
    out.println(ids.length + " tokens");
  }

  /** Control characters written as escapes so a piece stays on its row. */
  static String visible(String piece) {
    StringBuilder sb = new StringBuilder();
    piece.codePoints().forEach(cp -> {
      switch (cp) {
        case '\n' -> sb.append("\\n");
        case '\t' -> sb.append("\\t");
        case '\r' -> sb.append("\\r");
        default -> {
          if (Character.isISOControl(cp)) {
            sb.append(String.format("\\u%04x", cp));
          } else {
            sb.appendCodePoint(cp);
          }
        }
      }
    });
    return sb.toString();
  }
}
