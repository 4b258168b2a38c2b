package io.moe4j.train.data;

import java.util.Arrays;

/**
 * The built-in synthetic tasks. A prompt is the task's prefix, its input and {@code '='}; the answer
 * follows. Inputs are short (numbers of 1 to 3 digits, strings of 3 to 8 letters from a small
 * alphabet) so a tiny model learns them in minutes on a CPU, yet each task has far more distinct
 * prompts than a training run sees, so held-out accuracy measures the rule, not memory.
 */
public enum SyntheticTask {

    /** {@code add:123+45=} → {@code 168}. */
    ADD("add:", Limits.MAX_DIGITS * 2 + 1, Limits.MAX_DIGITS + 1) {
        @Override
        String[] promptInputAndAnswer(SplitMix64 rng) {
            int a = randomNumber(rng);
            int b = randomNumber(rng);
            return new String[] {a + "+" + b, Integer.toString(a + b)};
        }
    },

    /** {@code copy:cafe=} → {@code cafe}. */
    COPY("copy:", Limits.MAX_LETTERS, Limits.MAX_LETTERS) {
        @Override
        String[] promptInputAndAnswer(SplitMix64 rng) {
            String s = randomLetters(rng);
            return new String[] {s, s};
        }
    },

    /** {@code rev:cafe=} → {@code efac}. */
    REVERSE("rev:", Limits.MAX_LETTERS, Limits.MAX_LETTERS) {
        @Override
        String[] promptInputAndAnswer(SplitMix64 rng) {
            String s = randomLetters(rng);
            return new String[] {s, new StringBuilder(s).reverse().toString()};
        }
    },

    /** {@code sort:cafe=} → {@code acef}. */
    SORT("sort:", Limits.MAX_LETTERS, Limits.MAX_LETTERS) {
        @Override
        String[] promptInputAndAnswer(SplitMix64 rng) {
            String s = randomLetters(rng);
            char[] sorted = s.toCharArray();
            Arrays.sort(sorted);
            return new String[] {s, new String(sorted)};
        }
    };

    /** Input sizes; a nested class so the constants above can use them before this point. */
    static final class Limits {
        static final int MIN_LETTERS = 3;
        static final int MAX_LETTERS = 8;
        static final char FIRST_LETTER = 'a';
        static final char LAST_LETTER = 'j';
        static final int MAX_DIGITS = 3;

        private Limits() {}
    }

    private final String prefix;
    private final int maxPromptChars;
    private final int maxAnswerChars;

    SyntheticTask(String prefix, int maxInputChars, int maxAnswerChars) {
        this.prefix = prefix;
        this.maxPromptChars = prefix.length() + maxInputChars + 1; // + the closing '='
        this.maxAnswerChars = maxAnswerChars;
    }

    /** {@code {input, answer}} drawn from {@code rng}; the prompt is prefix + input + '='. */
    abstract String[] promptInputAndAnswer(SplitMix64 rng);

    /** Draws one prompt and its answer. */
    public PromptAndAnswer sample(SplitMix64 rng) {
        String[] inputAndAnswer = promptInputAndAnswer(rng);
        return new PromptAndAnswer(prefix + inputAndAnswer[0] + "=", inputAndAnswer[1]);
    }

    /** Text that marks this task at the start of every prompt, e.g. {@code "add:"}. */
    public String prefix() {
        return prefix;
    }

    /** Longest prompt in characters (all ASCII, so also in bytes), prefix and '=' included. */
    public int maxPromptChars() {
        return maxPromptChars;
    }

    /** Longest answer in characters (ASCII). */
    public int maxAnswerChars() {
        return maxAnswerChars;
    }

    /** Stable small id of the task (its position in this enum), e.g. for task × expert statistics. */
    public int id() {
        return ordinal();
    }

    /** The task whose {@link #id()} is {@code id}. */
    public static SyntheticTask ofId(int id) {
        SyntheticTask[] all = values();
        if (id < 0 || id >= all.length) {
            throw new IllegalArgumentException("task id must be in [0, " + all.length + "), got " + id);
        }
        return all[id];
    }

    /** A prompt text and its exact answer text. */
    public record PromptAndAnswer(String prompt, String answer) {}

    /** 1, 2 or 3 digits with equal probability, then uniform among numbers with that many digits. */
    private static int randomNumber(SplitMix64 rng) {
        int digits = rng.nextInt(1, Limits.MAX_DIGITS);
        if (digits == 1) {
            return rng.nextInt(10);
        }
        int low = (int) Math.pow(10, digits - 1);
        return rng.nextInt(low, 10 * low - 1);
    }

    private static String randomLetters(SplitMix64 rng) {
        int length = rng.nextInt(Limits.MIN_LETTERS, Limits.MAX_LETTERS);
        char[] letters = new char[length];
        for (int i = 0; i < length; i++) {
            letters[i] = (char) rng.nextInt(Limits.FIRST_LETTER, Limits.LAST_LETTER);
        }
        return new String(letters);
    }
}
