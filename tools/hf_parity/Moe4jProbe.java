import io.moe4j.infer.Completion;
import io.moe4j.infer.GenerationOptions;
import io.moe4j.infer.LoadedModel;
import io.moe4j.infer.SamplingOptions;
import io.moe4j.infer.TextGenerator;
import io.moe4j.ops.Backend;
import io.moe4j.ops.Backends;
import io.moe4j.tensor.DType;
import io.moe4j.text.HfTokenizer;
import io.moe4j.text.Tokenizers;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.List;
import java.util.stream.Collectors;

/**
 * What the CLI cannot print, for compare.py: the token ids of a greedy continuation (the CLI streams
 * text only, and random models produce byte sequences that are not valid UTF-8) and the decoded text
 * of given ids. Output is one JSON line; ids are ints, text is escaped as \\uXXXX.
 *
 * <pre>
 * greedy DIR bf16|f32 MAX_NEW PROMPT  -> {"prompt_ids": [...], "ids": [...], "finish": "..."}
 * decode DIR ID...                    -> {"text": "...", "with_specials": "..."}
 * </pre>
 */
public class Moe4jProbe {
  public static void main(String[] args) {
    if (args.length < 2) {
      throw new IllegalArgumentException("usage: greedy DIR DTYPE MAX_NEW PROMPT | decode DIR ID... (got " + args.length + " arguments)");
    }
    Path dir = Path.of(args[1]);
    switch (args[0]) {
      case "greedy" -> greedy(dir, args);
      case "decode" -> decode(dir, args);
      default -> throw new IllegalArgumentException("mode must be greedy or decode, got '" + args[0] + "'");
    }
  }

  private static void greedy(Path dir, String[] args) {
    if (args.length != 5) {
      throw new IllegalArgumentException("greedy needs DIR DTYPE MAX_NEW PROMPT, got " + (args.length - 1) + " arguments");
    }
    DType dtype = switch (args[2]) {
      case "f32" -> DType.F32;
      case "bf16" -> DType.BF16;
      default -> throw new IllegalArgumentException("DTYPE must be f32 or bf16, got '" + args[2] + "'");
    };
    int maxNew = Integer.parseInt(args[3]);
    try (HfTokenizer tok = Tokenizers.load(dir);
       Backend backend = Backends.open("cpu");
       LoadedModel loaded = LoadedModel.load(dir, backend, dtype)) {
      // the CLI's prompt encoding (ModelOptions.promptEncoder): what the post-processor adds,
      // then bos when tokenizer_config.json asks for it and it is not there yet
      java.util.function.Function<String, int[]> encoder = text -> {
        int[] ids = tok.encodeWithSpecials(text);
        boolean wantsBos = tok.addBosToken().orElse(false) && tok.bosId() >= 0;
        if (!wantsBos || (ids.length > 0 && ids[0] == tok.bosId())) return ids;
        int[] withBos = new int[ids.length + 1];
        withBos[0] = tok.bosId();
        System.arraycopy(ids, 0, withBos, 1, ids.length);
        return withBos;
      };
      TextGenerator gen = new TextGenerator(loaded.model(), tok, encoder);
      GenerationOptions opts = new GenerationOptions(maxNew, loaded.eosIds(), List.of(),
          new SamplingOptions(0f, 0, 1f, 1f, 0));
      Completion c = gen.generate(List.of(args[4]), opts, (seq, piece) -> {}).get(0);
      System.out.println("{\"prompt_ids\": " + ints(encoder.apply(args[4])) + ", \"ids\": " + ints(c.tokens())
          + ", \"finish\": \"" + c.finishReason() + "\"}");
    }
  }

  private static void decode(Path dir, String[] args) {
    int[] ids = Arrays.stream(args, 2, args.length).mapToInt(Integer::parseInt).toArray();
    try (HfTokenizer tok = Tokenizers.load(dir)) {
      System.out.println("{\"text\": " + str(tok.decode(ids)) + ", \"with_specials\": " + str(tok.decodeWithSpecials(ids)) + "}");
    }
  }

  private static String ints(int[] a) {
    return Arrays.stream(a).mapToObj(Integer::toString).collect(Collectors.joining(", ", "[", "]"));
  }

  private static String str(String s) {
    StringBuilder sb = new StringBuilder("\"");
    for (char ch : s.toCharArray()) {
      if (ch >= 0x20 && ch < 0x7f && ch != '"' && ch != '\\') sb.append(ch);
      else sb.append(String.format("\\u%04x", (int) ch));
    }
    return sb.append('"').toString();
  }
}
