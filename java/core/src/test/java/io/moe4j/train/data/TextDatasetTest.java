package io.moe4j.train.data;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.moe4j.text.ByteTokenizer;
import io.moe4j.text.Tokenizer;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashSet;
import java.util.List;
import java.util.Set;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class TextDatasetTest {

  private static final ByteTokenizer TOKENIZER = new ByteTokenizer();

  @TempDir
  Path dir;

  private Path write(String name, String text) throws IOException {
    return Files.writeString(dir.resolve(name), text, StandardCharsets.UTF_8);
  }

  private static String text(String seed, int repeats) {
    StringBuilder sb = new StringBuilder();
    for (int i = 0; i < repeats; i++) {
      sb.append(seed).append(' ').append(i).append(" ünï — ").append('\n');
    }
    return sb.toString();
  }

  /** The expected stream, built without the dataset code: file bytes with eos between files. */
  private static int[] expectedStream(String... texts) {
    List<Integer> all = new ArrayList<>();
    for (int i = 0; i < texts.length; i++) {
      if (i > 0) {
        all.add(TOKENIZER.eosId());
      }
      for (byte b : texts[i].getBytes(StandardCharsets.UTF_8)) {
        all.add(b & 0xFF);
      }
    }
    return all.stream().mapToInt(Integer::intValue).toArray();
  }

  @Test
  void filesAreJoinedWithEosAndSplitNinetyTen() throws IOException {
    String a = text("alpha", 40);
    String b = text("beta", 30);
    int[] stream = expectedStream(a, b);
    TextDataset data = new TextDataset(List.of(write("a.txt", a), write("b.txt", b)), TOKENIZER, 16, 1);
    assertEquals(stream.length, data.totalTokens());
    int validation = (int) Math.ceil(stream.length * 0.1);
    assertEquals(validation, data.validationTokens());
    assertEquals(stream.length - validation, data.trainTokens());

    // Validation windows tile the validation part: inputs then the last target of each window.
    List<Batch> batches = data.validationBatches(5);
    int windows = (validation - 1) / 16;
    assertEquals(windows, batches.stream().mapToInt(Batch::batchSize).sum());
    assertEquals((windows + 4) / 5, batches.size());
    int position = data.trainTokens();
    for (Batch batch : batches) {
      assertEquals(batch.batchSize(), batch.taskIds().length);
      for (int row = 0; row < batch.batchSize(); row++) {
        int[] inputs = Arrays.copyOfRange(batch.tokens(), row * 16, row * 16 + 16);
        int[] targets = Arrays.copyOfRange(batch.targets(), row * 16, row * 16 + 16);
        assertArrayEquals(Arrays.copyOfRange(stream, position, position + 16), inputs);
        assertArrayEquals(Arrays.copyOfRange(stream, position + 1, position + 17), targets);
        assertEquals(Batch.NO_TASK, batch.taskIds()[row]);
        position += 16;
      }
    }
    assertTrue(position + 1 <= stream.length && position + 17 > stream.length, "tiles to the end");
    assertEquals(batches.size(), data.validationBatches(5).size());
    assertArrayEquals(batches.get(0).tokens(), data.validationBatches(5).get(0).tokens());
  }

  @Test
  void trainingWindowsAreShiftedSlicesOfTheTrainingPart() throws IOException {
    String a = text("gamma", 30);
    String b = text("zeta", 30);
    int[] stream = expectedStream(a, b);
    TextDataset data = new TextDataset(List.of(write("a.txt", a), write("b.txt", b)), TOKENIZER, 32, 5);
    int separator = a.getBytes(StandardCharsets.UTF_8).length;
    int acrossFiles = 0;
    int lastStart = -1;
    int firstStart = Integer.MAX_VALUE;
    for (int step = 0; step < 300; step++) {
      Batch batch = data.nextTrainBatch(4);
      assertEquals(4 * 32, batch.tokens().length);
      assertEquals(4 * 32, batch.targetCount(), "text targets are never ignored");
      for (int row = 0; row < 4; row++) {
        int[] inputs = Arrays.copyOfRange(batch.tokens(), row * 32, row * 32 + 32);
        int[] targets = Arrays.copyOfRange(batch.targets(), row * 32, row * 32 + 32);
        int start = findWindow(stream, inputs, targets, data.trainTokens());
        assertTrue(start >= 0, "window is not a slice of the training part");
        lastStart = Math.max(lastStart, start);
        acrossFiles += start <= separator && separator <= start + 32 ? 1 : 0;
        firstStart = Math.min(firstStart, start);
      }
    }
    assertTrue(acrossFiles > 0, "some window spans the eos between the files");
    // Windows reach both ends of the training part, never into validation.
    assertTrue(firstStart < 40 && lastStart > data.trainTokens() - 33 - 40, firstStart + " " + lastStart);
    assertTrue(lastStart + 33 <= data.trainTokens());
  }

  private static int findWindow(int[] stream, int[] inputs, int[] targets, int trainEnd) {
    for (int start = 0; start + inputs.length + 1 <= trainEnd; start++) {
      if (Arrays.equals(stream, start, start + inputs.length, inputs, 0, inputs.length)
          && Arrays.equals(stream, start + 1, start + 1 + targets.length, targets, 0, targets.length)) {
        return start;
      }
    }
    return -1;
  }

  @Test
  void sameSeedAndRestoredPositionGiveTheSameBatches() throws IOException {
    Path file = write("a.txt", text("delta", 50));
    TextDataset a = new TextDataset(List.of(file), TOKENIZER, 8, 42);
    TextDataset b = new TextDataset(List.of(file), TOKENIZER, 8, 42);
    for (int i = 0; i < 3; i++) {
      Batch x = a.nextTrainBatch(3);
      assertArrayEquals(x.tokens(), b.nextTrainBatch(3).tokens());
    }
    long position = a.position();
    List<Batch> expected = new ArrayList<>();
    for (int i = 0; i < 5; i++) {
      expected.add(a.nextTrainBatch(3));
    }
    TextDataset resumed = new TextDataset(List.of(file), TOKENIZER, 8, -1);
    resumed.restore(position);
    for (Batch batch : expected) {
      Batch again = resumed.nextTrainBatch(3);
      assertArrayEquals(batch.tokens(), again.tokens());
      assertArrayEquals(batch.targets(), again.targets());
    }
  }

  @Test
  void smallTextKeepsOneWholeWindowForValidation() throws IOException {
    String small = "abcdefghijklmnopqrstuvwxyz"; // 26 tokens, seqLen 10: validation 11, training 15
    TextDataset data = new TextDataset(List.of(write("s.txt", small)), TOKENIZER, 10, 0);
    assertEquals(11, data.validationTokens());
    assertEquals(15, data.trainTokens());
    assertEquals(1, data.validationBatches(8).size());
    assertEquals("pqrstuvwxy", TOKENIZER.decode(data.validationBatches(8).get(0).tokens()));
    Set<String> windows = new HashSet<>();
    for (int i = 0; i < 200; i++) {
      Batch batch = data.nextTrainBatch(1);
      int[] targets = batch.targets();
      String window = TOKENIZER.decode(batch.tokens()) + (char) targets[targets.length - 1];
      assertTrue(small.substring(0, 15).contains(window) && window.length() == 11, window);
      windows.add(window);
    }
    // Every one of the 5 windows that fit in the 15 training tokens, and no other.
    assertEquals(Set.of("abcdefghijk", "bcdefghijkl", "cdefghijklm", "defghijklmn", "efghijklmno"), windows);
  }

  @Test
  void errorsNameTheProblem() throws IOException {
    Path missing = dir.resolve("missing.txt");
    IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
        () -> new TextDataset(List.of(missing), TOKENIZER, 8, 0));
    assertTrue(e.getMessage().contains(missing.toString()), e.getMessage());

    Path tiny = write("tiny.txt", "short text");
    e = assertThrows(IllegalArgumentException.class, () -> new TextDataset(List.of(tiny), TOKENIZER, 8, 0));
    assertTrue(e.getMessage().contains("hold 10 tokens") && e.getMessage().contains("needs at least 18"),
        e.getMessage());

    Path binary = Files.write(dir.resolve("bad.txt"), new byte[] {'a', (byte) 0xFF, 'b'});
    e = assertThrows(IllegalArgumentException.class, () -> new TextDataset(List.of(binary), TOKENIZER, 1, 0));
    assertTrue(e.getMessage().contains(binary.toString()) && e.getMessage().contains("UTF-8"), e.getMessage());

    Path ok = write("ok.txt", text("eps", 10));
    assertThrows(IllegalArgumentException.class, () -> new TextDataset(List.of(), TOKENIZER, 8, 0));
    assertThrows(IllegalArgumentException.class, () -> new TextDataset(List.of(ok), TOKENIZER, 0, 0));
    TextDataset data = new TextDataset(List.of(ok), TOKENIZER, 8, 0);
    assertThrows(IllegalArgumentException.class, () -> data.nextTrainBatch(0));
    assertThrows(IllegalArgumentException.class, () -> data.validationBatches(0));

    Tokenizer noEos = new Tokenizer() { // a tokenizer whose config names no eos token
      public int[] encode(String text) { return TOKENIZER.encode(text); }
      public String decode(int[] ids) { return TOKENIZER.decode(ids); }
      public int vocabSize() { return TOKENIZER.vocabSize(); }
      public int bosId() { return -1; }
      public int eosId() { return -1; }
      public int padId() { return -1; }
      public java.util.OptionalInt tokenId(String token) { return java.util.OptionalInt.empty(); }
      public boolean isSpecial(int id) { return false; }
    };
    assertEquals(ok.toFile().length(), new TextDataset(List.of(ok), noEos, 8, 0).totalTokens(), "one file needs no separator");
    e = assertThrows(IllegalArgumentException.class, () -> new TextDataset(List.of(ok, ok), noEos, 8, 0));
    assertTrue(e.getMessage().contains("no eos token"), e.getMessage());
  }
}
