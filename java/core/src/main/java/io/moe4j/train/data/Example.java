package io.moe4j.train.data;

import java.util.Arrays;

/**
 * One synthetic example: a prompt, its exact answer, and the prompt as the model sees it (bos
 * followed by the prompt's tokens; generation continues from there).
 */
public record Example(SyntheticTask task, String prompt, String answer, int[] promptTokens) {

  public Example {
    if (task == null || prompt == null || answer == null || promptTokens == null) {
      throw new IllegalArgumentException("task, prompt, answer and promptTokens must not be null");
    }
    promptTokens = promptTokens.clone();
  }

  @Override
  public int[] promptTokens() {
    return promptTokens.clone();
  }

  @Override
  public boolean equals(Object other) {
    return other instanceof Example e
        && task == e.task
        && prompt.equals(e.prompt)
        && answer.equals(e.answer)
        && Arrays.equals(promptTokens, e.promptTokens);
  }

  @Override
  public int hashCode() {
    return 31 * (31 * (31 * task.hashCode() + prompt.hashCode()) + answer.hashCode())
        + Arrays.hashCode(promptTokens);
  }

  @Override
  public String toString() {
    return "Example[" + task + ", " + prompt + answer + "]";
  }
}
