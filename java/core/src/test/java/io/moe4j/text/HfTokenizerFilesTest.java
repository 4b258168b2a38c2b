package io.moe4j.text;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import java.io.ByteArrayOutputStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.HashMap;
import java.util.Iterator;
import java.util.Map;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** The Hugging Face files, read back as plain JSON and interpreted the way the HF library would. */
class HfTokenizerFilesTest {

    @TempDir
    Path dir;

    private final ByteTokenizer tokenizer = new ByteTokenizer();
    private final ObjectMapper mapper = new ObjectMapper();

    @Test
    void tokenizerJsonHasTheByteLevelBpeLayout() throws Exception {
        Path file = dir.resolve("tokenizer.json");
        tokenizer.writeHfTokenizerJson(file);
        JsonNode root = mapper.readTree(file.toFile());

        assertEquals("1.0", root.get("version").asText());
        assertTrue(root.get("normalizer").isNull());
        JsonNode post = root.get("post_processor");
        assertEquals("TemplateProcessing", post.get("type").asText());
        assertEquals("<|bos|>", post.get("single").get(0).get("SpecialToken").get("id").asText());
        assertEquals(257, post.get("special_tokens").get("<|bos|>").get("ids").get(0).asInt());
        JsonNode pre = root.get("pre_tokenizer");
        assertEquals("ByteLevel", pre.get("type").asText());
        assertFalse(pre.get("add_prefix_space").asBoolean());
        assertFalse(pre.get("use_regex").asBoolean());
        assertEquals("ByteLevel", root.get("decoder").get("type").asText());

        JsonNode model = root.get("model");
        assertEquals("BPE", model.get("type").asText());
        assertTrue(model.get("merges").isArray());
        assertEquals(0, model.get("merges").size());
        assertFalse(model.get("byte_fallback").asBoolean());

        JsonNode added = root.get("added_tokens");
        assertEquals(3, added.size());
        String[] names = {"<|pad|>", "<|bos|>", "<|endoftext|>"};
        for (int i = 0; i < 3; i++) {
            JsonNode token = added.get(i);
            assertEquals(256 + i, token.get("id").asInt());
            assertEquals(names[i], token.get("content").asText());
            assertTrue(token.get("special").asBoolean());
            assertFalse(token.get("normalized").asBoolean());
            assertEquals(256 + i, tokenizer.tokenId(names[i]).orElseThrow());
        }
    }

    @Test
    void vocabularyMapsEveryBytesCharacterToTheByte() throws Exception {
        Path file = dir.resolve("tokenizer.json");
        tokenizer.writeHfTokenizerJson(file);
        JsonNode vocab = mapper.readTree(file.toFile()).get("model").get("vocab");
        assertEquals(259, vocab.size());
        Map<Integer, String> tokenOfId = new HashMap<>();
        for (Iterator<Map.Entry<String, JsonNode>> it = vocab.fields(); it.hasNext(); ) {
            Map.Entry<String, JsonNode> entry = it.next();
            tokenOfId.put(entry.getValue().asInt(), entry.getKey());
        }
        assertEquals(259, tokenOfId.size(), "ids are not distinct");
        for (int b = 0; b < 256; b++) {
            String key = String.valueOf(tokenizer.byteLevelChar(b));
            assertEquals(b, vocab.get(key).asInt(), "byte " + b);
        }
        assertEquals(258, vocab.get("<|endoftext|>").asInt());
        // Written as raw UTF-8, e.g. the space byte appears as the character Ġ.
        String raw = Files.readString(file, StandardCharsets.UTF_8);
        assertTrue(raw.contains("\"Ġ\" : 32"), "space byte as Ġ");
    }

    @Test
    void tokenizingWithTheJsonMatchesEncodeAndDecode() throws Exception {
        Path file = dir.resolve("tokenizer.json");
        tokenizer.writeHfTokenizerJson(file);
        JsonNode vocab = mapper.readTree(file.toFile()).get("model").get("vocab");
        Map<Integer, Character> charOfId = new HashMap<>();
        vocab.fields().forEachRemaining(e -> {
            if (e.getKey().length() == 1) {
                charOfId.put(e.getValue().asInt(), e.getKey().charAt(0));
            }
        });
        String text = "  Leading spaces, tabs\t, newlines\n, ünïcödé and 🙂";
        // ByteLevel without regex or prefix space: one word, one symbol per byte; no merges.
        byte[] utf8 = text.getBytes(StandardCharsets.UTF_8);
        int[] hfIds = new int[utf8.length];
        for (int i = 0; i < utf8.length; i++) {
            String symbol = String.valueOf(tokenizer.byteLevelChar(utf8[i] & 0xFF));
            hfIds[i] = vocab.get(symbol).asInt();
        }
        assertArrayEquals(tokenizer.encode(text), hfIds);
        // ByteLevel decoder: symbols back to bytes, then UTF-8.
        ByteArrayOutputStream bytes = new ByteArrayOutputStream();
        ByteLevelAlphabet alphabet = new ByteLevelAlphabet();
        for (int id : hfIds) {
            bytes.write(alphabet.byteOf(charOfId.get(id)));
        }
        assertEquals(text, bytes.toString(StandardCharsets.UTF_8));
        assertEquals(text, tokenizer.decode(hfIds));
    }

    @Test
    void tokenizerConfigNamesTheSpecialsAndTheLength() throws Exception {
        Path file = dir.resolve("tokenizer_config.json");
        tokenizer.writeTokenizerConfig(file, 2048);
        JsonNode config = mapper.readTree(file.toFile());
        assertEquals("<|bos|>", config.get("bos_token").asText());
        assertEquals("<|endoftext|>", config.get("eos_token").asText());
        assertEquals("<|pad|>", config.get("pad_token").asText());
        assertEquals(2048, config.get("model_max_length").asInt());
        assertEquals("PreTrainedTokenizerFast", config.get("tokenizer_class").asText());
        assertFalse(config.get("clean_up_tokenization_spaces").asBoolean());
        assertEquals("<|endoftext|>", config.get("added_tokens_decoder").get("258").get("content").asText());

        Path unlimited = dir.resolve("unlimited.json");
        tokenizer.writeTokenizerConfig(unlimited);
        JsonNode length = mapper.readTree(unlimited.toFile()).get("model_max_length");
        assertTrue(length.isBigInteger() && length.bigIntegerValue().bitLength() > 64, length.toString());
    }
}
