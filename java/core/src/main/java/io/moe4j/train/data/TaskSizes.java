package io.moe4j.train.data;

/**
 * How large the synthetic inputs are: numbers of 1 to {@code maxDigits} digits, written zero-padded to
 * {@code maxDigits} (ADD), strings of {@code minLetters} to {@code maxLetters} letters from
 * {@code 'a'..'j'} (COPY, REVERSE, SORT, SHIFT).
 * {@link #DEFAULT} is what the tasks are specified with; smaller sizes make quicker experiments,
 * larger ones harder tasks.
 */
public record TaskSizes(int maxDigits, int minLetters, int maxLetters) {

    /** Numbers of 1 to 3 digits, strings of 3 to 8 letters. */
    public static final TaskSizes DEFAULT = new TaskSizes(3, 3, 8);

    /** Sums of two 9-digit numbers still fit in an int. */
    public static final int MAX_DIGITS_LIMIT = 9;

    public static final int MAX_LETTERS_LIMIT = 64;

    public TaskSizes {
        if (maxDigits < 1 || maxDigits > MAX_DIGITS_LIMIT) {
            throw new IllegalArgumentException(
                    "maxDigits must be in [1, " + MAX_DIGITS_LIMIT + "], got " + maxDigits);
        }
        if (minLetters < 1 || maxLetters < minLetters || maxLetters > MAX_LETTERS_LIMIT) {
            throw new IllegalArgumentException("need 1 <= minLetters <= maxLetters <= " + MAX_LETTERS_LIMIT
                    + ", got minLetters=" + minLetters + ", maxLetters=" + maxLetters);
        }
    }
}
