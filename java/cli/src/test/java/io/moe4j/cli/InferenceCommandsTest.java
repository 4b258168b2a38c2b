package io.moe4j.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import io.moe4j.io.HfCheckpoint;
import io.moe4j.nn.ModelConfig;
import io.moe4j.nn.MoeTransformer;
import io.moe4j.ops.Backend;
import io.moe4j.ops.Backends;
import io.moe4j.tensor.DType;
import io.moe4j.text.ByteTokenizer;
import java.io.ByteArrayInputStream;
import java.io.ByteArrayOutputStream;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** generate, score and chat end to end on a small random Mixtral-shaped checkpoint with a byte-level tokenizer. */
class InferenceCommandsTest {

  @TempDir static Path dir;
  static Path model;

  @BeforeAll
  static void writeCheckpoint() throws Exception {
    model = dir.resolve("tiny-mixtral");
    ModelConfig c = new ModelConfig(ModelConfig.Architecture.MIXTRAL, 259, 32, 2, 4, 2, 8, 0, 24, 4, 2, true, 1, List.of(),
        ModelConfig.QkNorm.NONE, 1e-5f, 10000f, 128, false, 0.01f, 0f, ModelConfig.Routing.TOKEN_CHOICE, 0f, 0, 0, 257, 258,
        0.2f);
    Path tok = dir.resolve("tok");
    Files.createDirectories(tok);
    ByteTokenizer bytes = new ByteTokenizer();
    bytes.writeHfTokenizerJson(tok.resolve("tokenizer.json"));
    bytes.writeTokenizerConfig(tok.resolve("tokenizer_config.json"));
    try (Backend cpu = Backends.open("cpu"); MoeTransformer m = new MoeTransformer(cpu, c, 1)) {
      HfCheckpoint.save(model, c, m.parameters(), cpu, DType.BF16, Map.of(
          "tokenizer.json", Files.readAllBytes(tok.resolve("tokenizer.json")),
          "tokenizer_config.json", Files.readAllBytes(tok.resolve("tokenizer_config.json"))));
    }
  }

  private static InfoCommandTest.Result run(String... args) {
    return InfoCommandTest.run(args);
  }

  @Test
  void greedyGenerateIsReproducibleAndReportsStats() {
    String[] args = {"generate", "--model", model.toString(), "--device", "cpu", "--prompt", "add:1+2=", "--temperature",
        "0", "--max-new-tokens", "6", "--stats"};
    InfoCommandTest.Result a = run(args);
    assertEquals(0, a.code(), a.err());
    InfoCommandTest.Result b = run(args);
    assertEquals(a.out(), b.out(), "greedy is deterministic");
    assertTrue(a.err().contains("time to first token") && a.err().contains("bandwidth bound"), a.err());
    assertTrue(a.err().contains("decode: 5 tokens") || a.err().contains("decode: 6 tokens") || a.err().contains("tokens in"),
        a.err());
  }

  @Test
  void promptsFileDecodesAsOneBatch() throws Exception {
    Path prompts = dir.resolve("prompts.txt");
    Files.writeString(prompts, "copy:abc=\nrev:abc=\n\nsort:cba=\n");
    InfoCommandTest.Result r = run("generate", "--model", model.toString(), "--device", "cpu", "--prompts-file",
        prompts.toString(), "--max-new-tokens", "4", "--temperature", "0.8", "--top-k", "20", "--top-p", "0.9",
        "--repetition-penalty", "1.1", "--seed", "7", "--stop", "=");
    assertEquals(0, r.code(), r.err());
    assertTrue(r.out().contains("=== prompt 1: copy:abc=") && r.out().contains("=== prompt 3: sort:cba="), r.out());
  }

  @Test
  void scoreJsonHasTokensNllAndPerplexity() throws Exception {
    InfoCommandTest.Result r = run("score", "--model", model.toString(), "--device", "cpu", "--text", "hello", "--json");
    assertEquals(0, r.code(), r.err());
    JsonNode json = new ObjectMapper().readTree(r.out());
    assertEquals(6, json.get("tokens").size(), "bos + 5 bytes");
    assertEquals(257, json.get("tokens").get(0).asInt());
    assertEquals(5, json.get("nll").size());
    double sum = 0;
    for (JsonNode v : json.get("nll")) sum += v.asDouble();
    assertEquals(Math.exp(sum / 5), json.get("perplexity").asDouble(), 1e-4 * json.get("perplexity").asDouble());
  }

  @Test
  void chatAnswersEachTurnAndResets() {
    ByteArrayOutputStream out = new ByteArrayOutputStream();
    ByteArrayOutputStream err = new ByteArrayOutputStream();
    int code = new ChatCommand().run(
        new String[] {"--model", model.toString(), "--device", "cpu", "--max-new-tokens", "5", "--temperature", "0"},
        new ByteArrayInputStream("hi\n/reset\nhello again\n/exit\n".getBytes(StandardCharsets.UTF_8)),
        new PrintStream(out, true, StandardCharsets.UTF_8), new PrintStream(err, true, StandardCharsets.UTF_8));
    String text = out.toString(StandardCharsets.UTF_8);
    assertEquals(0, code, err.toString(StandardCharsets.UTF_8));
    assertTrue(text.contains("(conversation cleared)"), text);
    assertEquals(4, text.split("> ", -1).length - 1, "four prompts shown: " + text);
  }

  @Test
  void badOptionsNameTheOption() {
    InfoCommandTest.Result missing = run("generate", "--prompt", "x");
    assertEquals(2, missing.code());
    assertTrue(missing.err().contains("--model"), missing.err());
    InfoCommandTest.Result both = run("generate", "--model", model.toString(), "--prompt", "x", "--prompts-file", "f");
    assertEquals(2, both.code());
    assertTrue(both.err().contains("exactly one of --prompt"), both.err());
    InfoCommandTest.Result temp = run("generate", "--model", model.toString(), "--prompt", "x", "--temperature", "-1");
    assertEquals(2, temp.code());
    assertTrue(temp.err().contains("temperature must be finite and >= 0, got -1.0"), temp.err());
    InfoCommandTest.Result dtype = run("score", "--model", model.toString(), "--text", "x", "--dtype", "fp8");
    assertEquals(2, dtype.code());
    assertTrue(dtype.err().contains("--dtype must be bf16 or f32, got 'fp8'"), dtype.err());
    InfoCommandTest.Result notDir = run("score", "--model", dir.resolve("nope").toString(), "--text", "x");
    assertEquals(2, notDir.code());
    assertTrue(notDir.err().contains("is not a directory"), notDir.err());
  }
}
