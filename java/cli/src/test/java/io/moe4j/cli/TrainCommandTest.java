package io.moe4j.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.moe4j.io.HfConfig;
import io.moe4j.nn.ModelConfig;
import io.moe4j.text.ByteTokenizer;
import io.moe4j.train.TrainingCheckpoint;
import java.io.ByteArrayOutputStream;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** {@code moe4j train} end to end on a tiny model, and its argument errors. */
class TrainCommandTest {

  record Result(int status, String out, String err) {}

  static Result run(String... args) {
    ByteArrayOutputStream out = new ByteArrayOutputStream(), err = new ByteArrayOutputStream();
    int status = Main.run(args, new PrintStream(out, true, StandardCharsets.UTF_8), new PrintStream(err, true, StandardCharsets.UTF_8));
    return new Result(status, out.toString(StandardCharsets.UTF_8), err.toString(StandardCharsets.UTF_8));
  }

  static Path tinyConfig(Path dir) {
    ModelConfig c = new ModelConfig(ModelConfig.Architecture.MIXTRAL, ByteTokenizer.VOCAB_SIZE, 32, 2, 2, 1, 16, 0, 64, 4, 2, true,
        1, List.of(), ModelConfig.QkNorm.NONE, 1e-5f, 10000f, 64, false, 0.01f, 0.001f, ModelConfig.Routing.TOKEN_CHOICE, 0f, 0, 0,
        ByteTokenizer.BOS_ID, ByteTokenizer.EOS_ID, 0.02f);
    Path file = dir.resolve("tiny.json");
    HfConfig.write(c, file);
    return file;
  }

  static void assertUsage(String expected, String... args) {
    Result r = run(args);
    assertEquals(2, r.status(), r.err());
    assertTrue(r.err().contains(expected), "expected '" + expected + "' in: " + r.err());
  }

  @Test
  void badOptionsNameTheOptionAndWhatCame(@TempDir Path tmp) throws Exception {
    assertUsage("--steps must be > 0, got -3", "train", "--steps", "-3");
    assertUsage("--batch-size must be a whole number, got 'many'", "train", "--batch-size", "many");
    assertUsage("--lr must be > 0, got 0", "train", "--lr", "0");
    assertUsage("--routing must be token-choice or expert-choice, got 'random'", "train", "--routing", "random");
    assertUsage("--tasks must list tasks from add,copy,reverse,sort,shift, got 'divide'", "train", "--tasks", "add,divide");
    assertUsage("--seq-len must be >= 23", "train", "--seq-len", "5");
    assertUsage("--preset must be demo, got 'huge'", "train", "--preset", "huge");
    assertUsage("--freeze-old needs --add-experts", "train", "--freeze-old");
    assertUsage("--add-experts needs --resume", "train", "--add-experts", "2");
    assertUsage("--data " + tmp.resolve("missing.txt") + " is not a readable file", "train", "--data", tmp.resolve("missing.txt").toString());
    Path empty = Files.createDirectory(tmp.resolve("empty"));
    assertUsage("--resume " + empty + " has no trainer_state.json", "train", "--resume", empty.toString());
    assertUsage("unexpected argument 'extra'", "train", "extra");
  }

  @Test
  void trainsWritesArtifactsResumesAndGrows(@TempDir Path tmp) throws Exception {
    Path config = tinyConfig(tmp);
    Path out = tmp.resolve("run");
    Result r = run("train", "--config", config.toString(), "--tasks", "copy", "--steps", "4", "--batch-size", "4", "--out", out.toString(),
        "--eval-prompts", "3", "--device", "cpu");
    assertEquals(0, r.status(), r.err());
    assertTrue(r.out().contains("trained 4 steps"), r.out());
    assertTrue(r.out().contains("exact match at step 4"), r.out());
    assertTrue(r.out().contains("copy:"), "prints held-out prompts with answers: " + r.out());
    for (String f : List.of("metrics.jsonl", "loss.png", "expert_load_layers.png", "expert_load_tasks.png", "checkpoint/config.json",
        "checkpoint/model.safetensors", "checkpoint/tokenizer.json", "checkpoint/" + TrainingCheckpoint.STATE_FILE))
      assertTrue(Files.size(out.resolve(f)) > 0, f);
    List<String> lines = Files.readAllLines(out.resolve("metrics.jsonl"));
    assertEquals(4, lines.stream().filter(l -> l.contains("\"loss\"")).count(), "one line per step");
    assertTrue(lines.get(0).startsWith("{\"step\":1,\"loss\":"), lines.get(0));
    assertTrue(lines.get(0).contains("\"expert_load\":[{\"layer\":0,\"tokens\":["), lines.get(0));

    assertUsage("must exceed the checkpoint's step 4, got 3", "train", "--resume", out.toString(), "--steps", "3");
    Result grown = run("train", "--resume", out.toString(), "--steps", "6", "--add-experts", "2", "--freeze-old", "--tasks", "copy",
        "--eval-prompts", "3", "--device", "cpu");
    assertEquals(0, grown.status(), grown.err());
    assertTrue(grown.out().contains("resumed") && grown.out().contains("at step 4, added 2 experts per MoE layer (old ones frozen)"),
        grown.out());
    assertEquals(6, HfConfig.read(out.resolve("checkpoint/config.json")).numExperts());
    List<String> after = Files.readAllLines(out.resolve("metrics.jsonl"));
    assertEquals(6, after.stream().filter(l -> l.contains("\"loss\"")).count(), "the resumed run appends steps 5 and 6");
    assertTrue(after.stream().anyMatch(l -> l.startsWith("{\"step\":6,") && l.contains("\"tokens\":[") ), "step 6 logged");
  }
}
