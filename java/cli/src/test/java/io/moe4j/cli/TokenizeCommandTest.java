package io.moe4j.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import io.moe4j.text.ByteTokenizer;
import java.nio.file.Path;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class TokenizeCommandTest {

  @TempDir
  Path dir;

  @BeforeEach
  void writeTokenizer() {
    ByteTokenizer bt = new ByteTokenizer();
    bt.writeHfTokenizerJson(dir.resolve("tokenizer.json"));
    bt.writeTokenizerConfig(dir.resolve("tokenizer_config.json"));
  }

  @Test
  void jsonHasIdsAndPieces() throws Exception {
    InfoCommandTest.Result r = InfoCommandTest.run("tokenize", "--model", dir.toString(), "--text", "hé <|endoftext|>", "--json");
    assertEquals(0, r.code(), r.err());
    JsonNode json = new ObjectMapper().readTree(r.out());
    int[] expected = {'h', 0xC3, 0xA9, ' ', ByteTokenizer.EOS_ID};
    assertEquals(expected.length, json.get("ids").size(), r.out());
    for (int i = 0; i < expected.length; i++) {
      assertEquals(expected[i], json.get("ids").get(i).asInt(), r.out());
    }
    assertEquals("h", json.get("pieces").get(0).asText());
    assertEquals("Ã", json.get("pieces").get(1).asText());
    assertEquals("Ġ", json.get("pieces").get(3).asText());
    assertEquals("<|endoftext|>", json.get("pieces").get(4).asText());
  }

  @Test
  void tableFromTheTokenizerFile() {
    InfoCommandTest.Result r = InfoCommandTest.run("tokenize", "--tokenizer", dir.resolve("tokenizer.json").toString(),
        "--text", "a\n<|bos|>");
    assertEquals(0, r.code(), r.err());
    String[] lines = r.out().split("\n");
    assertEquals(" id  piece", lines[0]);
    assertEquals(" 97  a", lines[1]);
    assertEquals(" 10  Ċ", lines[2]);
    assertEquals("257  <|bos|>  (special)", lines[3]);
    assertEquals("3 tokens", lines[4]);
  }

  @Test
  void badUsageNamesTheOption() {
    InfoCommandTest.Result r = InfoCommandTest.run("tokenize", "--text", "x");
    assertEquals(2, r.code());
    assertTrue(r.err().contains("--model DIR or --tokenizer FILE"), r.err());

    r = InfoCommandTest.run("tokenize", "--model", dir.toString());
    assertEquals(2, r.code());
    assertTrue(r.err().contains("--text"), r.err());

    r = InfoCommandTest.run("tokenize", "--model", dir.resolve("missing").toString(), "--text", "x");
    assertEquals(2, r.code());
    assertTrue(r.err().contains("--model") && r.err().contains("does not exist"), r.err());

    r = InfoCommandTest.run("tokenize", "--tokenizer", dir.toString(), "--text", "x");
    assertEquals(2, r.code());
    assertTrue(r.err().contains("--tokenizer") && r.err().contains("directory"), r.err());

    r = InfoCommandTest.run("tokenize", "--model", dir.toString(), "--tokenizer", dir.resolve("tokenizer.json").toString(), "--text", "x");
    assertEquals(2, r.code());
    assertTrue(r.err().contains("not both"), r.err());
  }

  @Test
  void modelDirectoryWithoutTokenizerIsARuntimeError() throws Exception {
    Path empty = java.nio.file.Files.createDirectory(dir.resolve("empty"));
    InfoCommandTest.Result r = InfoCommandTest.run("tokenize", "--model", empty.toString(), "--text", "x");
    assertEquals(1, r.code());
    assertTrue(r.err().contains("tokenizer.json") && r.err().contains(empty.toString()), r.err());
  }
}
