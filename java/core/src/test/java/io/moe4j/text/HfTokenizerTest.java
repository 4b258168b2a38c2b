package io.moe4j.text;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * The byte-level tokenizer.json that {@link ByteTokenizer} writes, run by the Hugging Face
 * tokenizers library, tokenizes like ByteTokenizer itself.
 */
class HfTokenizerTest {

  private static final String[] TEXTS = {
    "", "hello world", "  two  spaces\tand\ttabs\nnew line", "Grüße, naïve café — ½ € ✓",
    "日本語のテキスト", "emoji 😀👍🏽 family 👨‍👩‍👧 flag 🇩🇪", "mixed ascii 123 !@#$%^&*()",
  };

  @TempDir
  Path dir;

  private HfTokenizer byteLevel() {
    ByteTokenizer bt = new ByteTokenizer();
    bt.writeHfTokenizerJson(dir.resolve("tokenizer.json"));
    bt.writeTokenizerConfig(dir.resolve("tokenizer_config.json"));
    return Tokenizers.load(dir);
  }

  @Test
  void byteLevelFileEncodesAndDecodesLikeByteTokenizer() {
    ByteTokenizer bt = new ByteTokenizer();
    try (HfTokenizer hf = byteLevel()) {
      for (String text : TEXTS) {
        int[] ids = hf.encode(text);
        assertArrayEquals(bt.encode(text), ids, text);
        assertEquals(text, hf.decode(ids), text);
        assertEquals(bt.decode(ids), hf.decode(ids), text);
        int[] withBos = new int[ids.length + 1];
        withBos[0] = ByteTokenizer.BOS_ID;
        System.arraycopy(ids, 0, withBos, 1, ids.length);
        assertArrayEquals(withBos, hf.encodeWithSpecials(text), "the post-processor adds bos, as moe4j trains");
      }
      StringBuilder longText = new StringBuilder();
      for (int i = 0; i < 3000; i++) {
        longText.append("token ").append(i).append(' ');
      }
      assertArrayEquals(bt.encode(longText.toString()), hf.encode(longText.toString()), "no truncation");
    }
  }

  @Test
  void specialsComeFromTheConfig() {
    try (HfTokenizer hf = byteLevel()) {
      assertEquals(ByteTokenizer.VOCAB_SIZE, hf.vocabSize());
      assertEquals(ByteTokenizer.BOS_ID, hf.bosId());
      assertEquals(ByteTokenizer.EOS_ID, hf.eosId());
      assertEquals(ByteTokenizer.PAD_ID, hf.padId());
      assertEquals("<|endoftext|>", hf.eosToken().orElseThrow());
      assertEquals(258, hf.tokenId("<|endoftext|>").getAsInt());
      assertEquals(104, hf.tokenId(String.valueOf(new ByteTokenizer().byteLevelChar('h'))).getAsInt());
      assertFalse(hf.tokenId("nope").isPresent());
      for (int id = 0; id < 256; id++) {
        assertFalse(hf.isSpecial(id));
      }
      assertTrue(hf.isSpecial(256) && hf.isSpecial(257) && hf.isSpecial(258));
      // Hugging Face matches added tokens in raw text (ByteTokenizer deliberately does not)
      assertArrayEquals(new int[] {257, 'h', 'i', 258}, hf.encode("<|bos|>hi<|endoftext|>"));
      // decode skips specials; decodeWithSpecials writes them
      assertEquals("hi", hf.decode(new int[] {257, 'h', 'i', 258}));
      assertEquals("<|bos|>hi<|endoftext|>", hf.decodeWithSpecials(new int[] {257, 'h', 'i', 258}));
      assertEquals(List.of("<|bos|>", "h", "Ġ", "<|pad|>"), hf.pieces(new int[] {257, 'h', ' ', 256}));
      assertEquals(List.of("a", "Ġ", "b"), hf.tokens("a b"));
      // half a UTF-8 character decodes to a replacement character, not an exception
      assertEquals("x\uFFFD", hf.decode(new int[] {'x', 0xF0, 0x9F}));
      assertTrue(hf.chat().isPlain(), "ByteTokenizer's config has no chat template");
    }
  }

  @Test
  void badIdsAndClosedTokenizer() {
    HfTokenizer hf = byteLevel();
    IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> hf.decode(new int[] {1, 259}));
    assertEquals("ids[1] must be in [0, 259), got 259", e.getMessage());
    assertThrows(IllegalArgumentException.class, () -> hf.pieces(new int[] {-1}));
    assertThrows(IllegalArgumentException.class, () -> hf.encode(null));
    hf.close();
    hf.close();
    IllegalStateException closed = assertThrows(IllegalStateException.class, () -> hf.encode("x"));
    assertTrue(closed.getMessage().contains("closed"), closed.getMessage());
  }

  @Test
  void missingAndMalformedFilesNameThePath() throws Exception {
    Path missing = dir.resolve("nothing/tokenizer.json");
    IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> Tokenizers.load(missing));
    assertTrue(e.getMessage().contains(missing.toString()), e.getMessage());

    Path emptyDir = Files.createDirectory(dir.resolve("empty"));
    e = assertThrows(IllegalArgumentException.class, () -> Tokenizers.load(emptyDir));
    assertTrue(e.getMessage().contains(emptyDir.toString()) && e.getMessage().contains("tokenizer.json"), e.getMessage());

    Path notJson = dir.resolve("broken.json");
    Files.writeString(notJson, "{\"model\": ");
    e = assertThrows(IllegalArgumentException.class, () -> Tokenizers.load(notJson));
    assertTrue(e.getMessage().contains(notJson.toString()) && e.getMessage().contains("not valid JSON"), e.getMessage());

    // valid JSON that the Rust library rejects: its message is passed on, with the file
    Path badModel = dir.resolve("bad-model.json");
    Files.writeString(badModel, "{\"model\": {\"type\": \"Nope\", \"vocab\": {\"a\": 0}}}");
    e = assertThrows(IllegalArgumentException.class, () -> Tokenizers.load(badModel));
    assertTrue(e.getMessage().contains(badModel.toString())
        && e.getMessage().contains("rejected by the Hugging Face tokenizers library"), e.getMessage());

    Path badMerges = dir.resolve("bad-merges.json");
    Files.writeString(badMerges, "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": [\"a b c\"]}}");
    e = assertThrows(IllegalArgumentException.class, () -> Tokenizers.load(badMerges));
    assertTrue(e.getMessage().contains(badMerges.toString()), e.getMessage());

    Path noModel = dir.resolve("no-model.json");
    Files.writeString(noModel, "{\"version\": \"1.0\"}");
    e = assertThrows(IllegalArgumentException.class, () -> Tokenizers.load(noModel));
    assertTrue(e.getMessage().contains("\"model\""), e.getMessage());

    Path txt = dir.resolve("vocab.txt");
    Files.writeString(txt, "a\n");
    e = assertThrows(IllegalArgumentException.class, () -> Tokenizers.load(txt));
    assertTrue(e.getMessage().contains(txt.toString()), e.getMessage());
  }

  @Test
  void malformedConfigNamesTheConfigFile() throws Exception {
    new ByteTokenizer().writeHfTokenizerJson(dir.resolve("tokenizer.json"));
    Files.writeString(dir.resolve("tokenizer_config.json"), "{\"bos_token\": ");
    IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> Tokenizers.load(dir));
    assertTrue(e.getMessage().contains("tokenizer_config.json"), e.getMessage());
  }
}
