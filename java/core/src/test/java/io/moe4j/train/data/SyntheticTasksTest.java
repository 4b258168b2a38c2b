package io.moe4j.train.data;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.moe4j.text.ByteTokenizer;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.EnumMap;
import java.util.EnumSet;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;
import org.junit.jupiter.api.Test;

class SyntheticTasksTest {

  private static final ByteTokenizer TOKENIZER = new ByteTokenizer();
  private static final Set<SyntheticTask> ALL = EnumSet.allOf(SyntheticTask.class);
  private static final int SEQ_LEN = 24;

  private static SyntheticTasks dataset(Set<SyntheticTask> tasks, long seed) {
    return new SyntheticTasks(TOKENIZER, tasks, SEQ_LEN, seed);
  }

  @Test
  void sameSeedGivesTheSameBatches() {
    SyntheticTasks a = dataset(ALL, 42);
    SyntheticTasks b = dataset(EnumSet.of(SyntheticTask.SHIFT, SyntheticTask.SORT, SyntheticTask.ADD, SyntheticTask.COPY,
        SyntheticTask.REVERSE), 42);
    SyntheticTasks other = dataset(ALL, 43);
    boolean differs = false;
    for (int i = 0; i < 5; i++) {
      Batch x = a.nextBatch(16);
      Batch y = b.nextBatch(16);
      Batch z = other.nextBatch(16);
      assertArrayEquals(x.tokens(), y.tokens());
      assertArrayEquals(x.targets(), y.targets());
      assertArrayEquals(x.taskIds(), y.taskIds());
      differs |= !Arrays.equals(x.tokens(), z.tokens());
    }
    assertTrue(differs, "another seed must give other batches");
  }

  @Test
  void restoringAPositionContinuesIdentically() {
    SyntheticTasks data = dataset(ALL, 7);
    for (int i = 0; i < 3; i++) {
      data.nextBatch(8);
    }
    long position = data.position();
    List<Batch> expected = new ArrayList<>();
    for (int i = 0; i < 4; i++) {
      expected.add(data.nextBatch(8));
    }
    SyntheticTasks resumed = dataset(ALL, 12345);
    resumed.restore(position);
    for (Batch batch : expected) {
      Batch again = resumed.nextBatch(8);
      assertArrayEquals(batch.tokens(), again.tokens());
      assertArrayEquals(batch.targets(), again.targets());
      assertArrayEquals(batch.taskIds(), again.taskIds());
    }
    assertEquals(data.position(), resumed.position());
  }

  @Test
  void trainingNeverEmitsAHeldOutPrompt() {
    SyntheticTasks data = dataset(ALL, 2024);
    Set<String> evaluation = new HashSet<>();
    for (Example e : data.heldOut(500, 1)) {
      assertTrue(SyntheticTasks.isHeldOut(e.prompt()), e.prompt());
      evaluation.add(e.prompt());
    }
    assertEquals(500 * ALL.size(), evaluation.size());
    int rows = 0;
    Set<String> trainingPrompts = new HashSet<>();
    while (rows < 20_000) {
      Batch batch = data.nextBatch(100);
      for (int row = 0; row < batch.batchSize(); row++) {
        String prompt = promptOfRow(batch, row);
        assertFalse(SyntheticTasks.isHeldOut(prompt), prompt);
        assertFalse(evaluation.contains(prompt), prompt);
        trainingPrompts.add(prompt);
      }
      rows += batch.batchSize();
    }
    // Enough distinct prompts that the check above means something (1-digit sums repeat).
    assertTrue(trainingPrompts.size() > 15_000, "distinct prompts " + trainingPrompts.size());
  }

  @Test
  void heldOutShareIsAboutOneInTen() {
    SplitMix64 rng = new SplitMix64(5);
    for (SyntheticTask task : SyntheticTask.values()) {
      int held = 0;
      int draws = 20_000;
      for (int i = 0; i < draws; i++) {
        held += SyntheticTasks.isHeldOut(task.sample(rng).prompt()) ? 1 : 0;
      }
      // Expected 2000 with sd about 42 (ADD repeats small sums, so allow more).
      assertTrue(held > 1700 && held < 2300, task + " held out " + held);
    }
  }

  @Test
  void targetsCoverExactlyTheAnswerAndEos() {
    SyntheticTasks data = dataset(ALL, 3);
    Batch batch = data.nextBatch(200);
    assertEquals(200, batch.batchSize());
    assertEquals(SEQ_LEN, batch.seqLen());
    int learned = 0;
    for (int row = 0; row < batch.batchSize(); row++) {
      int base = row * SEQ_LEN;
      int[] tokens = Arrays.copyOfRange(batch.tokens(), base, base + SEQ_LEN);
      int[] targets = Arrays.copyOfRange(batch.targets(), base, base + SEQ_LEN);
      assertEquals(TOKENIZER.bosId(), tokens[0]);
      String prompt = promptOfRow(batch, row);
      int promptTokens = 1 + prompt.length();
      int firstPad = indexOf(tokens, TOKENIZER.padId(), SEQ_LEN);
      // Inputs: bos prompt answer (no eos: eos is only a target).
      String answer = TOKENIZER.decode(Arrays.copyOfRange(tokens, promptTokens, firstPad));
      assertEquals(expectedAnswer(prompt), answer, prompt);
      for (int i = 0; i < SEQ_LEN; i++) {
        if (i < promptTokens - 1 || i >= firstPad) {
          assertEquals(Batch.IGNORE_INDEX, targets[i], "row " + row + " position " + i);
        } else if (i < firstPad - 1) {
          assertEquals(tokens[i + 1], targets[i], "row " + row + " position " + i);
          learned++;
        } else {
          assertEquals(TOKENIZER.eosId(), targets[i], "row " + row + ": eos after the answer");
          learned++;
        }
        if (i >= firstPad) {
          assertEquals(TOKENIZER.padId(), tokens[i]);
        }
      }
    }
    assertEquals(learned, batch.targetCount());
  }

  @Test
  void answersAreCorrect() {
    SyntheticTasks data = dataset(ALL, 11);
    Map<SyntheticTask, Integer> seen = new EnumMap<>(SyntheticTask.class);
    for (int i = 0; i < 4000; i++) {
      Example e = data.nextExample();
      seen.merge(e.task(), 1, Integer::sum);
      assertTrue(e.prompt().startsWith(e.task().prefix()) && e.prompt().endsWith("="), e.prompt());
      String input = e.prompt().substring(e.task().prefix().length(), e.prompt().length() - 1);
      switch (e.task()) {
        case ADD -> {
          String[] terms = input.split("\\+");
          assertEquals(2, terms.length, e.prompt());
          for (String term : terms) {
            assertTrue(term.matches("[0-9]{3}"), "zero-padded to 3 digits: " + e.prompt());
          }
          assertTrue(e.answer().matches("[0-9]{4}"), "zero-padded to 4 digits: " + e);
          assertEquals(Integer.parseInt(terms[0]) + Integer.parseInt(terms[1]),
              Integer.parseInt(e.answer()), e.toString());
        }
        case COPY -> {
          assertLetters(input);
          assertEquals(input, e.answer());
        }
        case REVERSE -> {
          assertLetters(input);
          assertEquals(input.length(), e.answer().length());
          for (int k = 0; k < input.length(); k++) {
            assertEquals(input.charAt(k), e.answer().charAt(input.length() - 1 - k), e.toString());
          }
        }
        case SORT -> {
          assertLetters(input);
          char[] in = input.toCharArray();
          char[] out = e.answer().toCharArray();
          for (int k = 1; k < out.length; k++) {
            assertTrue(out[k - 1] <= out[k], e.toString());
          }
          Arrays.sort(in);
          assertArrayEquals(in, out, "same letters: " + e);
        }
        case SHIFT -> {
          assertLetters(input);
          assertEquals(input.length(), e.answer().length());
          for (int k = 0; k < input.length(); k++) {
            char in = input.charAt(k), out = e.answer().charAt(k);
            assertEquals(in == 'j' ? 'a' : (char) (in + 1), out, e.toString());
          }
        }
        default -> throw new AssertionError(e.task());
      }
      int[] promptTokens = e.promptTokens();
      assertEquals(TOKENIZER.bosId(), promptTokens[0]);
      assertEquals(e.prompt(), TOKENIZER.decode(promptTokens));
    }
    for (SyntheticTask task : SyntheticTask.values()) {
      int expected = 4000 / SyntheticTask.values().length;
      assertTrue(seen.getOrDefault(task, 0) > 0.85 * expected, task + " drawn " + seen.get(task) + " of 4000");
    }
  }

  @Test
  void onlyTheChosenTasksAreDrawn() {
    Set<SyntheticTask> chosen = EnumSet.of(SyntheticTask.ADD, SyntheticTask.SORT);
    SyntheticTasks data = new SyntheticTasks(TOKENIZER, chosen, 23, 9);
    assertEquals(List.of(SyntheticTask.ADD, SyntheticTask.SORT), data.tasks());
    Set<Integer> ids = new HashSet<>();
    for (int i = 0; i < 20; i++) {
      Batch batch = data.nextBatch(50);
      for (int row = 0; row < batch.batchSize(); row++) {
        SyntheticTask task = SyntheticTask.ofId(batch.taskIds()[row]);
        assertTrue(chosen.contains(task), task.toString());
        assertTrue(promptOfRow(batch, row).startsWith(task.prefix()), promptOfRow(batch, row));
        ids.add(batch.taskIds()[row]);
      }
    }
    assertEquals(Set.of(SyntheticTask.ADD.id(), SyntheticTask.SORT.id()), ids);
    for (Example e : data.heldOut(20, 0)) {
      assertTrue(chosen.contains(e.task()));
    }

    SyntheticTasks addOnly = new SyntheticTasks(TOKENIZER, Set.of(SyntheticTask.ADD), 17, 9);
    for (int i = 0; i < 500; i++) {
      assertEquals(SyntheticTask.ADD, addOnly.nextExample().task());
    }
  }

  @Test
  void seqLenMustHoldTheLongestExample() {
    assertEquals(17, SyntheticTasks.requiredSeqLen(List.of(SyntheticTask.ADD)));
    assertEquals(23, SyntheticTasks.requiredSeqLen(List.of(SyntheticTask.COPY)));
    assertEquals(22, SyntheticTasks.requiredSeqLen(List.of(SyntheticTask.REVERSE)));
    assertEquals(23, SyntheticTasks.requiredSeqLen(ALL));
    IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
        () -> new SyntheticTasks(TOKENIZER, EnumSet.of(SyntheticTask.ADD, SyntheticTask.COPY), 20, 0));
    assertTrue(e.getMessage().contains("seqLen must be >= 23")
        && e.getMessage().contains("ADD needs 17")
        && e.getMessage().contains("COPY needs 23")
        && e.getMessage().contains("got 20"), e.getMessage());
    // Exactly the required length works and fits the longest examples.
    SyntheticTasks tight = new SyntheticTasks(TOKENIZER, ALL, 23, 0);
    int longest = 0;
    for (int i = 0; i < 50; i++) {
      Batch batch = tight.nextBatch(100);
      for (int row = 0; row < 100; row++) {
        int used = indexOf(Arrays.copyOfRange(batch.tokens(), row * 23, row * 23 + 23), TOKENIZER.padId(), 23);
        longest = Math.max(longest, used);
      }
    }
    assertEquals(23, longest, "some row fills the whole sequence");
    assertThrows(IllegalArgumentException.class, () -> new SyntheticTasks(TOKENIZER, Set.of(), 30, 0));
    assertThrows(IllegalArgumentException.class, () -> new SyntheticTasks(null, ALL, 30, 0));
    assertThrows(IllegalArgumentException.class, () -> tight.nextBatch(0));
  }

  @Test
  void heldOutExamplesAreDistinctGroupedAndSeeded() {
    SyntheticTasks data = dataset(ALL, 0);
    long before = data.position();
    List<Example> examples = data.heldOut(50, 77);
    assertEquals(before, data.position(), "evaluation draws leave the training stream alone");
    assertEquals(50 * ALL.size(), examples.size());
    Set<String> prompts = new HashSet<>();
    for (int i = 0; i < examples.size(); i++) {
      Example e = examples.get(i);
      assertEquals(SyntheticTask.values()[i / 50], e.task());
      assertTrue(prompts.add(e.prompt()), "duplicate " + e.prompt());
      assertEquals(expectedAnswer(e.prompt()), e.answer());
    }
    assertEquals(examples, dataset(ALL, 999).heldOut(50, 77));
    assertNotEquals(examples, data.heldOut(50, 78));
    assertThrows(IllegalArgumentException.class, () -> data.heldOut(0, 1));
  }

  @Test
  void taskSizesBoundInputsAndSeqLen() {
    TaskSizes small = new TaskSizes(1, 2, 4);
    // "copy:" + 4 letters + "=" + 4 letters + bos, eos less one.
    assertEquals(1 + 10 + 4, SyntheticTasks.requiredSeqLen(List.of(SyntheticTask.COPY), small));
    assertEquals(1 + 8 + 2, SyntheticTasks.requiredSeqLen(List.of(SyntheticTask.ADD), small));
    SyntheticTasks data = new SyntheticTasks(TOKENIZER, ALL, small, 15, 4);
    assertEquals(small, data.sizes());
    Set<Integer> lengths = new HashSet<>();
    for (int i = 0; i < 2000; i++) {
      Example e = data.nextExample();
      String input = e.prompt().substring(e.task().prefix().length(), e.prompt().length() - 1);
      if (e.task() == SyntheticTask.ADD) {
        assertTrue(input.matches("[0-9]\\+[0-9]"), e.prompt());
      } else {
        assertTrue(input.matches("[a-j]{2,4}"), e.prompt());
        lengths.add(input.length());
      }
      assertEquals(expectedAnswer(e.prompt()), e.answer());
    }
    assertEquals(Set.of(2, 3, 4), lengths);

    TaskSizes large = new TaskSizes(9, 10, 20);
    SyntheticTasks hard = new SyntheticTasks(TOKENIZER, Set.of(SyntheticTask.ADD, SyntheticTask.SORT), large,
        SyntheticTasks.requiredSeqLen(List.of(SyntheticTask.ADD, SyntheticTask.SORT), large), 4);
    boolean sawNineDigits = false;
    for (int i = 0; i < 2000; i++) {
      Example e = hard.nextExample();
      assertEquals(expectedAnswer(e.prompt()), e.answer());
      assertTrue(e.prompt().matches("add:[0-9]{9}\\+[0-9]{9}=|sort:.*"), e.prompt());
      sawNineDigits |= e.prompt().matches("add:[1-9][0-9]{8}\\+.*");
    }
    assertTrue(sawNineDigits);
    hard.nextBatch(64);

    IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> new TaskSizes(0, 3, 8));
    assertTrue(e.getMessage().contains("maxDigits"), e.getMessage());
    assertThrows(IllegalArgumentException.class, () -> new TaskSizes(10, 3, 8));
    assertThrows(IllegalArgumentException.class, () -> new TaskSizes(3, 5, 4));
    assertThrows(IllegalArgumentException.class, () -> new TaskSizes(3, 0, 4));
    assertThrows(IllegalArgumentException.class, () -> new TaskSizes(3, 1, 65));
  }

  @Test
  void bothDatasetsServeAsBatchSources() {
    BatchSource source = dataset(ALL, 8);
    long start = source.position();
    Batch first = source.nextBatch(4);
    source.restore(start);
    assertArrayEquals(first.tokens(), source.nextBatch(4).tokens());
    assertEquals(SEQ_LEN, source.seqLen());
  }

  private static void assertLetters(String s) {
    assertTrue(s.matches("[a-j]{3,8}"), s);
  }

  /** The prompt of a batch row: the text after bos up to and including '='. */
  private static String promptOfRow(Batch batch, int row) {
    int base = row * batch.seqLen();
    int end = base + 1;
    while (batch.tokens()[end] != '=') {
      end++;
    }
    return TOKENIZER.decode(Arrays.copyOfRange(batch.tokens(), base + 1, end + 1));
  }

  private static int indexOf(int[] values, int value, int otherwise) {
    for (int i = 0; i < values.length; i++) {
      if (values[i] == value) {
        return i;
      }
    }
    return otherwise;
  }

  /** The answer computed independently of the task code. */
  static String expectedAnswer(String prompt) {
    int colon = prompt.indexOf(':');
    String input = prompt.substring(colon + 1, prompt.length() - 1);
    switch (prompt.substring(0, colon)) {
      case "add": { // operands zero-padded to one width, the sum to one digit more
        int plus = input.indexOf('+');
        int sum = Integer.parseInt(input.substring(0, plus)) + Integer.parseInt(input.substring(plus + 1));
        return String.format("%0" + (plus + 1) + "d", sum);
      }
      case "copy":
        return input;
      case "rev":
        return new StringBuilder(input).reverse().toString();
      case "sort": {
        char[] c = input.toCharArray();
        Arrays.sort(c);
        return new String(c);
      }
      case "rot": {
        StringBuilder out = new StringBuilder();
        for (char c : input.toCharArray()) out.append(c == 'j' ? 'a' : (char) (c + 1));
        return out.toString();
      }
      default:
        throw new AssertionError(prompt);
    }
  }
}
