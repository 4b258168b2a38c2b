package io.moe4j.train.data;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.moe4j.text.ByteTokenizer;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.EnumSet;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;

class ExactMatchTest {

  private static final ByteTokenizer TOKENIZER = new ByteTokenizer();
  private final ExactMatch exactMatch = new ExactMatch(TOKENIZER);

  private static Example example(SyntheticTask task, String prompt, String answer) {
    int[] text = TOKENIZER.encode(prompt);
    int[] tokens = new int[text.length + 1];
    tokens[0] = TOKENIZER.bosId();
    System.arraycopy(text, 0, tokens, 1, text.length);
    return new Example(task, prompt, answer, tokens);
  }

  /** A fake model: right on ADD and COPY, wrong on REVERSE, right on SORT only for odd lengths. */
  private static int[] fakeModel(int[] promptTokens, int maxNewTokens, int eosId) {
    String prompt = TOKENIZER.decode(promptTokens);
    String input = prompt.substring(prompt.indexOf(':') + 1, prompt.length() - 1);
    String answer;
    if (prompt.startsWith("add:")) {
      String[] terms = input.split("\\+");
      answer = Integer.toString(Integer.parseInt(terms[0]) + Integer.parseInt(terms[1]));
    } else if (prompt.startsWith("copy:")) {
      // Forgets to strip eos and keeps going: what follows eos must not count.
      int[] body = TOKENIZER.encode(input);
      int[] out = Arrays.copyOf(body, body.length + 2);
      out[body.length] = eosId;
      out[body.length + 1] = 'z';
      return out;
    } else if (prompt.startsWith("rev:")) {
      answer = input + "!";
    } else {
      char[] c = input.toCharArray();
      Arrays.sort(c);
      answer = input.length() % 2 == 1 ? new String(c) : new String(c) + "a";
    }
    return TOKENIZER.encode(answer);
  }

  @Test
  void accuraciesPerTaskAreExact() {
    List<Example> examples = List.of(
        example(SyntheticTask.ADD, "add:123+45=", "168"),
        example(SyntheticTask.ADD, "add:999+999=", "1998"),
        example(SyntheticTask.ADD, "add:0+7=", "7"),
        example(SyntheticTask.COPY, "copy:abc=", "abc"),
        example(SyntheticTask.COPY, "copy:jihgfedc=", "jihgfedc"),
        example(SyntheticTask.REVERSE, "rev:abc=", "cba"),
        example(SyntheticTask.REVERSE, "rev:aba=", "aba"),
        example(SyntheticTask.SORT, "sort:cba=", "abc"),
        example(SyntheticTask.SORT, "sort:dcba=", "abcd"),
        example(SyntheticTask.SORT, "sort:edcba=", "abcde"),
        example(SyntheticTask.SORT, "sort:jjii=", "iijj"));
    Map<SyntheticTask, Double> accuracy = exactMatch.evaluate(examples, ExactMatchTest::fakeModel);
    assertEquals(Map.of(SyntheticTask.ADD, 1.0, SyntheticTask.COPY, 1.0, SyntheticTask.REVERSE, 0.0,
        SyntheticTask.SORT, 0.5), accuracy);
    assertEquals(List.of(SyntheticTask.ADD, SyntheticTask.COPY, SyntheticTask.REVERSE, SyntheticTask.SORT),
        new ArrayList<>(accuracy.keySet()), "enum order");

    List<ExactMatch.Prediction> predictions = exactMatch.predict(examples, ExactMatchTest::fakeModel);
    assertEquals("abc", predictions.get(3).output());
    assertEquals("abc!", predictions.get(5).output());
    assertFalse(predictions.get(5).correct());
    assertEquals("abcda", predictions.get(8).output());
    assertEquals(7.0 / 11.0, ExactMatch.overall(predictions), 0.0);
  }

  @Test
  void onlyTasksPresentAreReported() {
    Map<SyntheticTask, Double> accuracy = exactMatch.evaluate(
        List.of(example(SyntheticTask.REVERSE, "rev:ab=", "ba")), ExactMatchTest::fakeModel);
    assertEquals(Map.of(SyntheticTask.REVERSE, 0.0), accuracy);
    assertTrue(exactMatch.evaluate(List.of(), ExactMatchTest::fakeModel).isEmpty());
  }

  @Test
  void generatorGetsThePromptABudgetAndEos() {
    List<int[]> prompts = new ArrayList<>();
    List<Integer> budgets = new ArrayList<>();
    ExactMatch.Generator recording = (prompt, maxNewTokens, eosId) -> {
      prompts.add(prompt);
      budgets.add(maxNewTokens);
      assertEquals(TOKENIZER.eosId(), eosId);
      return new int[0];
    };
    Example add = example(SyntheticTask.ADD, "add:1+2=", "3");
    Example sort = example(SyntheticTask.SORT, "sort:ba=", "ab");
    List<ExactMatch.Prediction> predictions = exactMatch.predict(List.of(add, sort), recording);
    assertTrue(Arrays.equals(add.promptTokens(), prompts.get(0)));
    // The longest answer of the task plus eos, not the length of this answer.
    assertEquals(List.of(5, 9), budgets);

    budgets.clear();
    new ExactMatch(TOKENIZER, new TaskSizes(2, 1, 5)).predict(List.of(add, sort), recording);
    assertEquals(List.of(4, 6), budgets);
    assertEquals("", predictions.get(0).output());
    assertFalse(predictions.get(0).correct());
  }

  @Test
  void heldOutPromptsSolvedByARuleScorePerfectly() {
    SyntheticTasks data = new SyntheticTasks(TOKENIZER, EnumSet.allOf(SyntheticTask.class), 23, 1);
    ExactMatch.Generator oracle = (prompt, maxNewTokens, eosId) ->
        TOKENIZER.encode(SyntheticTasksTest.expectedAnswer(TOKENIZER.decode(prompt)));
    Map<SyntheticTask, Double> accuracy = exactMatch.evaluate(data.heldOut(100, 3), oracle);
    assertEquals(SyntheticTask.values().length, accuracy.size());
    accuracy.values().forEach(a -> assertEquals(1.0, a));
  }

  @Test
  void misbehavingGeneratorsAreReported() {
    Example add = example(SyntheticTask.ADD, "add:1+2=", "3");
    IllegalStateException tooLong = assertThrows(IllegalStateException.class,
        () -> exactMatch.evaluate(List.of(add), (p, max, eos) -> new int[max + 1]));
    assertTrue(tooLong.getMessage().contains("at most 5"), tooLong.getMessage());
    assertThrows(IllegalStateException.class, () -> exactMatch.evaluate(List.of(add), (p, max, eos) -> null));
    assertThrows(IllegalArgumentException.class, () -> new ExactMatch(null));
    assertThrows(IllegalArgumentException.class, () -> new ExactMatch(TOKENIZER, null));
  }
}
