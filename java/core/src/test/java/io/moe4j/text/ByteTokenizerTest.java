package io.moe4j.text;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.charset.StandardCharsets;
import java.util.HashSet;
import java.util.OptionalInt;
import java.util.Set;
import org.junit.jupiter.api.Test;

class ByteTokenizerTest {

  private final ByteTokenizer tokenizer = new ByteTokenizer();

  @Test
  void asciiEncodesToItsBytesAndBack() {
    String text = "Hello, world!\n\tadd:123+45=168";
    int[] ids = tokenizer.encode(text);
    assertEquals(text.length(), ids.length);
    for (int i = 0; i < text.length(); i++) {
      assertEquals(text.charAt(i), ids[i]);
    }
    assertEquals(text, tokenizer.decode(ids));
  }

  @Test
  void multiByteUtf8RoundTrips() {
    String text = "héllo — 日本語 🙂 ß\u0000";
    byte[] utf8 = text.getBytes(StandardCharsets.UTF_8);
    int[] ids = tokenizer.encode(text);
    assertEquals(utf8.length, ids.length);
    for (int i = 0; i < utf8.length; i++) {
      assertEquals(utf8[i] & 0xFF, ids[i]);
    }
    assertArrayEquals(new int[] {0xC3, 0xA9}, tokenizer.encode("é"));
    assertArrayEquals(new int[] {0xF0, 0x9F, 0x99, 0x82}, tokenizer.encode("🙂"));
    assertEquals(text, tokenizer.decode(ids));
    assertEquals("", tokenizer.decode(tokenizer.encode("")));
  }

  @Test
  void decodeOmitsSpecials() {
    int[] ids = {ByteTokenizer.BOS_ID, 'a', ByteTokenizer.PAD_ID, 'b', ByteTokenizer.EOS_ID};
    assertEquals("ab", tokenizer.decode(ids));
    assertTrue(tokenizer.isSpecial(256) && tokenizer.isSpecial(257) && tokenizer.isSpecial(258));
    assertFalse(tokenizer.isSpecial(255));
    assertFalse(tokenizer.isSpecial(0));
  }

  @Test
  void invalidUtf8DecodesWithReplacementCharacters() {
    assertEquals("\uFFFD", tokenizer.decode(new int[] {0xC3}));
    assertEquals("a\uFFFDb", tokenizer.decode(new int[] {'a', 0xFF, 'b'}));
    // A 4-byte emoji cut after two bytes, as a generation stopped mid-character would leave it.
    String cut = tokenizer.decode(new int[] {'x', 0xF0, 0x9F});
    assertTrue(cut.startsWith("x") && cut.length() > 1 && cut.substring(1).chars().allMatch(c -> c == 0xFFFD),
        cut);
  }

  @Test
  void decodeRejectsIdsOutsideTheVocabulary() {
    IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
        () -> tokenizer.decode(new int[] {'a', 259}));
    assertTrue(e.getMessage().contains("ids[1]") && e.getMessage().contains("259"), e.getMessage());
    assertThrows(IllegalArgumentException.class, () -> tokenizer.decode(new int[] {-1}));
    assertThrows(IllegalArgumentException.class, () -> tokenizer.encode(null));
  }

  @Test
  void specialsHaveTheirFixedIds() {
    assertEquals(259, tokenizer.vocabSize());
    assertEquals(256, tokenizer.padId());
    assertEquals(257, tokenizer.bosId());
    assertEquals(258, tokenizer.eosId());
    assertEquals(OptionalInt.of(256), tokenizer.tokenId("<|pad|>"));
    assertEquals(OptionalInt.of(257), tokenizer.tokenId("<|bos|>"));
    assertEquals(OptionalInt.of(258), tokenizer.tokenId("<|endoftext|>"));
    assertEquals(OptionalInt.empty(), tokenizer.tokenId("a"));
    assertEquals(OptionalInt.empty(), tokenizer.tokenId("<|unknown|>"));
  }

  @Test
  void specialTokenTextInDataIsPlainBytes() {
    int[] ids = tokenizer.encode("<|endoftext|>");
    assertEquals("<|endoftext|>".length(), ids.length);
    for (int id : ids) {
      assertFalse(tokenizer.isSpecial(id));
    }
  }

  @Test
  void byteLevelAlphabetIsABijectionOfVisibleCharacters() {
    ByteLevelAlphabet alphabet = new ByteLevelAlphabet();
    Set<Character> chars = new HashSet<>();
    for (int b = 0; b < 256; b++) {
      char c = alphabet.charOf(b);
      assertTrue(chars.add(c), "byte " + b + " shares its character");
      assertEquals(b, alphabet.byteOf(c));
      assertFalse(Character.isWhitespace(c) || Character.isISOControl(c), "byte " + b + " -> U+"
          + Integer.toHexString(c));
    }
    assertEquals(256, chars.size());
    // Fixed points and shifted bytes as GPT-2 defines them.
    assertEquals('a', alphabet.charOf('a'));
    assertEquals('~', alphabet.charOf('~'));
    assertEquals('\u00FF', alphabet.charOf(0xFF));
    assertEquals('\u0100', alphabet.charOf(0));
    assertEquals('\u010A', alphabet.charOf('\n')); // "Ċ"
    assertEquals('\u0120', alphabet.charOf(' ')); // "Ġ"
    assertEquals('\u0121', alphabet.charOf(0x7F));
    assertEquals('\u0143', alphabet.charOf(0xAD)); // the last shifted byte: 68 shifted in all
    assertEquals(-1, alphabet.byteOf('\u0144'));
    assertEquals(-1, alphabet.byteOf(' '));
    assertThrows(IllegalArgumentException.class, () -> alphabet.charOf(256));
  }
}
