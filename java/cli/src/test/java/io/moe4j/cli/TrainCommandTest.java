package io.moe4j.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.moe4j.io.HfConfig;
import io.moe4j.nn.ModelConfig;
import io.moe4j.text.ByteTokenizer;
import io.moe4j.train.TrainerState;
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
    assertUsage("--preset must be one of demo, moe-100m, moe-1b, got 'huge'", "train", "--preset", "huge");
    assertUsage("--freeze-old needs --add-experts", "train", "--freeze-old");
    assertUsage("--add-experts needs --resume", "train", "--add-experts", "2");
    assertUsage("--data " + tmp.resolve("missing.txt") + " is not a readable file", "train", "--data", tmp.resolve("missing.txt").toString());
    Path empty = Files.createDirectory(tmp.resolve("empty"));
    assertUsage("--resume " + empty + " has no trainer_state.json", "train", "--resume", empty.toString());
    assertUsage("unexpected argument 'extra'", "train", "extra");
    assertUsage("--tokenizer applies to --data text files", "train", "--tokenizer", tmp.toString());
  }

  /** A word-level Hugging Face tokenizer: 12 words, unk, bos, eos. */
  static final String WORD_TOKENIZER_JSON = """
      {"version": "1.0", "truncation": null, "padding": null,
       "added_tokens": [
         {"id": 0, "content": "<unk>", "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": true},
         {"id": 1, "content": "<s>", "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": true},
         {"id": 2, "content": "</s>", "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": true}],
       "normalizer": null, "pre_tokenizer": {"type": "WhitespaceSplit"}, "post_processor": null, "decoder": null,
       "model": {"type": "WordLevel", "unk_token": "<unk>", "vocab": {"<unk>": 0, "<s>": 1, "</s>": 2, "the": 3, "cat": 4,
         "sat": 5, "on": 6, "mat": 7, "a": 8, "dog": 9, "ran": 10, "to": 11, "red": 12, "big": 13, "door": 14}}}
      """;

  @Test
  void trainsOnTextWithAHuggingFaceTokenizer(@TempDir Path tmp) throws Exception {
    Path tok = Files.createDirectory(tmp.resolve("tok"));
    Files.writeString(tok.resolve("tokenizer.json"), WORD_TOKENIZER_JSON);
    Files.writeString(tok.resolve("tokenizer_config.json"), "{\"bos_token\": \"<s>\", \"eos_token\": \"</s>\"}");
    Path a = tmp.resolve("a.txt"), b = tmp.resolve("b.txt");
    Files.writeString(a, "the cat sat on the mat . a dog ran to the red door ".repeat(40));
    Files.writeString(b, "the big dog sat on a red mat ".repeat(40));
    Path out = tmp.resolve("run");
    Result r = run("train", "--data", a.toString(), b.toString(), "--tokenizer", tok.toString(), "--seq-len", "16", "--steps", "3",
        "--batch-size", "4", "--out", out.toString(), "--device", "cpu");
    assertEquals(0, r.status(), r.err());
    assertTrue(r.out().contains("tokenizer " + tok.resolve("tokenizer.json") + " (vocab 15)"), r.out());
    Path ckpt = out.resolve("checkpoint");
    ModelConfig trained = HfConfig.read(ckpt.resolve("config.json"));
    assertEquals(15, trained.vocabSize(), "the demo model takes the tokenizer's vocabulary");
    assertEquals(1, trained.bosTokenId());
    assertEquals(2, trained.eosTokenId());
    assertEquals(WORD_TOKENIZER_JSON, Files.readString(ckpt.resolve("tokenizer.json")), "the tokenizer's own file is saved");
    assertEquals(Files.readString(tok.resolve("tokenizer_config.json")), Files.readString(ckpt.resolve("tokenizer_config.json")));

    // resuming without --tokenizer takes the checkpoint's, and generation reads it back
    Result resumed = run("train", "--resume", out.toString(), "--data", a.toString(), b.toString(), "--steps", "4", "--device", "cpu");
    assertEquals(0, resumed.status(), resumed.err());
    assertTrue(resumed.out().contains("tokenizer " + ckpt.resolve("tokenizer.json")), resumed.out());
    Result gen = run("generate", "--model", ckpt.toString(), "--device", "cpu", "--prompt", "the cat", "--max-new-tokens", "3");
    assertEquals(0, gen.status(), gen.err());

    Path small = tmp.resolve("vocab8.json");
    HfConfig.write(HfConfig.read(tinyConfig(tmp)).withVocabulary(8, 1, 2), small);
    assertUsage("the model's vocab_size 8 is smaller than the tokenizer's 15", "train", "--config", small.toString(),
        "--data", a.toString(), "--tokenizer", tok.toString(), "--steps", "1", "--out", tmp.resolve("x").toString());
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

  @Test
  void resumeKeepsTheCheckpointsSettingsAndAFreshRunStartsANewLog(@TempDir Path tmp) throws Exception {
    Path config = tinyConfig(tmp);
    Path out = tmp.resolve("run");
    Result r = run("train", "--config", config.toString(), "--tasks", "copy,sort", "--steps", "3", "--batch-size", "4",
        "--grad-accumulation", "2", "--seed", "5", "--seq-len", "40", "--precision", "bf16", "--out", out.toString(),
        "--eval-prompts", "2", "--device", "cpu");
    assertEquals(0, r.status(), r.err());
    assertTrue(r.out().contains("seq 40, batch 4 x 2") && r.out().contains("bf16 compute / f32 master"), r.out());
    TrainerState first = TrainingCheckpoint.read(out.resolve("checkpoint")).state();
    assertEquals(List.of("COPY", "SORT"), first.tasks());
    assertTrue(first.mixedPrecision());
    assertEquals(5, first.seed());
    assertEquals(2, first.gradAccumulation());

    // no options but --resume and --steps: tasks, seed, seq len, batch, accumulation and precision are the checkpoint's
    Result resumed = run("train", "--resume", out.toString(), "--steps", "5", "--eval-prompts", "2", "--device", "cpu");
    assertEquals(0, resumed.status(), resumed.err());
    assertTrue(resumed.out().contains("synthetic tasks [COPY, SORT], seq 40, batch 4 x 2, steps 5")
        && resumed.out().contains("bf16 compute / f32 master"), resumed.out());
    TrainerState second = TrainingCheckpoint.read(out.resolve("checkpoint")).state();
    assertEquals(5, second.step());
    assertEquals(first.tasks(), second.tasks());
    assertEquals(first.seed(), second.seed());
    assertEquals(first.seqLen(), second.seqLen());
    assertTrue(second.mixedPrecision());
    List<String> lines = Files.readAllLines(out.resolve("metrics.jsonl"));
    assertEquals(List.of(1L, 2L, 3L, 4L, 5L), lossSteps(lines), "steps 1-3, then the resumed 4-5");

    // a fresh run into the same directory starts a new log instead of appending to the old one
    Result fresh = run("train", "--config", config.toString(), "--tasks", "copy", "--steps", "2", "--batch-size", "4",
        "--out", out.toString(), "--eval-prompts", "2", "--device", "cpu");
    assertEquals(0, fresh.status(), fresh.err());
    assertTrue(fresh.out().contains(", f32"), "f32 is the default on cpu: " + fresh.out());
    assertEquals(List.of(1L, 2L), lossSteps(Files.readAllLines(out.resolve("metrics.jsonl"))));
    assertUsage("--precision must be f32 or bf16, got 'fp8'", "train", "--precision", "fp8");
  }

  private static List<Long> lossSteps(List<String> metricsLines) {
    return metricsLines.stream().filter(l -> l.contains("\"loss\"")).map(l -> Long.parseLong(l.replaceAll("^\\{\"step\":(\\d+),.*$", "$1")))
        .toList();
  }
}
