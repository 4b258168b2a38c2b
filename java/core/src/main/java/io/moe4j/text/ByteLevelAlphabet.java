package io.moe4j.text;

import java.util.Arrays;

/**
 * GPT-2's reversible byte-to-unicode table, used by Hugging Face's ByteLevel pre-tokenizer and
 * decoder: printable Latin-1 bytes stand for themselves, every other byte (controls, space, DEL,
 * NBSP, soft hyphen) is shifted to U+0100 and up in byte order, so every byte is a visible,
 * non-whitespace character that survives JSON and whitespace splitting.
 */
public final class ByteLevelAlphabet {

  private static final int SHIFT_BASE = 256;

  private final char[] charOfByte = new char[256];
  private final int[] byteOfChar;

  public ByteLevelAlphabet() {
    int shifted = 0;
    for (int b = 0; b < 256; b++) {
      charOfByte[b] = keepsItself(b) ? (char) b : (char) (SHIFT_BASE + shifted++);
    }
    int maxChar = 0;
    for (char c : charOfByte) {
      maxChar = Math.max(maxChar, c);
    }
    byteOfChar = new int[maxChar + 1];
    Arrays.fill(byteOfChar, -1);
    for (int b = 0; b < 256; b++) {
      byteOfChar[charOfByte[b]] = b;
    }
  }

  private static boolean keepsItself(int b) {
    return (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
  }

  /** The character that stands for byte {@code b} (0..255). */
  public char charOf(int b) {
    if (b < 0 || b > 255) {
      throw new IllegalArgumentException("byte must be in [0, 255], got " + b);
    }
    return charOfByte[b];
  }

  /** The byte that {@code c} stands for, or -1 if {@code c} is not in the alphabet. */
  public int byteOf(char c) {
    return c < byteOfChar.length ? byteOfChar[c] : -1;
  }
}
