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
 * A hand-written BPE tokenizer.json. Vocabulary a=0 b=1 c=2 d=3 ab=4 cd=5 abcd=6 bc=7, merges by
 * rank: (a b) 0, (c d) 1, (ab cd) 2, (b c) 3; words split on whitespace; {@code <unk>}=8 for unknown
 * characters; added tokens {@code <|end|>}=9 (special), {@code <x>}=10 (not special), {@code <s>}=11
 * (special, bos, added by the post-processor). The library numbers added tokens that are not in the
 * model vocabulary from the vocabulary's size on, so the file must declare exactly those ids. Expected ids follow from BPE: repeatedly merge the
 * adjacent pair with the lowest rank.
 */
class HfTokenizerBpeTest {

    private static final String TOKENIZER_JSON = """
            {
              "version": "1.0",
              "truncation": {"direction": "Right", "max_length": 2, "strategy": "LongestFirst", "stride": 0},
              "padding": null,
              "added_tokens": [
                {"id": 8, "content": "<unk>", "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": true},
                {"id": 9, "content": "<|end|>", "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": true},
                {"id": 10, "content": "<x>", "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": false},
                {"id": 11, "content": "<s>", "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": true}
              ],
              "normalizer": null,
              "pre_tokenizer": {"type": "WhitespaceSplit"},
              "post_processor": {
                "type": "TemplateProcessing",
                "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
                "pair": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                         {"Sequence": {"id": "B", "type_id": 1}}],
                "special_tokens": {"<s>": {"id": "<s>", "ids": [11], "tokens": ["<s>"]}}
              },
              "decoder": null,
              "model": {
                "type": "BPE", "dropout": null, "unk_token": "<unk>", "continuing_subword_prefix": null,
                "end_of_word_suffix": null, "fuse_unk": false, "byte_fallback": false,
                "vocab": {"a": 0, "b": 1, "c": 2, "d": 3, "ab": 4, "cd": 5, "abcd": 6, "bc": 7, "<unk>": 8},
                "merges": ["a b", "c d", "ab cd", "b c"]
              }
            }
            """;

    private static final String CONFIG_JSON = """
            {
              "bos_token": {"__type": "AddedToken", "content": "<s>", "lstrip": false, "normalized": false, "rstrip": false, "single_word": false},
              "eos_token": "<|end|>",
              "pad_token": null,
              "add_bos_token": true,
              "clean_up_tokenization_spaces": false,
              "chat_template": "{{ bos_token }}{% for m in messages %}{{ m['content'] }}{{ eos_token }}{% endfor %}"
            }
            """;

    @TempDir
    Path dir;

    private HfTokenizer load() throws Exception {
        Files.writeString(dir.resolve("tokenizer.json"), TOKENIZER_JSON);
        Files.writeString(dir.resolve("tokenizer_config.json"), CONFIG_JSON);
        return Tokenizers.load(dir.resolve("tokenizer.json"));
    }

    @Test
    void mergesFollowTheirRanks() throws Exception {
        try (HfTokenizer t = load()) {
            // a b c d: (a b) rank 0 -> ab c d; (c d) rank 1 -> ab cd; (ab cd) rank 2 -> abcd
            assertArrayEquals(new int[] {6}, t.encode("abcd"));
            // b c d: (c d) rank 1 beats (b c) rank 3 -> b cd, and (b cd) is no merge
            assertArrayEquals(new int[] {1, 5}, t.encode("bcd"));
            // a b c: ab c, and (ab c) is no merge
            assertArrayEquals(new int[] {4, 2}, t.encode("abc"));
            assertArrayEquals(new int[] {7}, t.encode("bc"));
            // e is not in the vocabulary: <unk>; words are split on whitespace first
            assertArrayEquals(new int[] {4, 8, 6, 1, 5}, t.encode("abe abcd  bcd"));
            assertEquals(List.of("ab", "<unk>", "abcd", "b", "cd"), t.pieces(t.encode("abe abcd  bcd")));
            // the file's truncation (max_length 2) is not applied: Hugging Face truncates only when asked
            assertEquals(5, t.encode("abe abcd  bcd").length);
        }
    }

    @Test
    void addedAndSpecialTokens() throws Exception {
        try (HfTokenizer t = load()) {
            assertEquals(12, t.vocabSize());
            assertEquals(11, t.bosId());
            assertEquals(9, t.eosId());
            assertEquals(-1, t.padId());
            assertEquals(true, t.addBosToken().orElseThrow());
            // added tokens are matched in raw text before the model runs
            assertArrayEquals(new int[] {6, 9, 10, 4}, t.encode("abcd<|end|><x>ab"));
            // the post-processor adds <s>
            assertArrayEquals(new int[] {11, 6, 9}, t.encodeWithSpecials("abcd<|end|>"));
            assertTrue(t.isSpecial(8) && t.isSpecial(9) && t.isSpecial(11));
            assertFalse(t.isSpecial(10), "<x> is an added token but not special");
            assertFalse(t.isSpecial(6));
            // no decoder: tokens are joined with spaces; specials are skipped, <x> is kept
            assertEquals("abcd <x> ab", t.decode(new int[] {11, 6, 9, 10, 4}));
            assertEquals("<s> abcd <|end|> <x> ab", t.decodeWithSpecials(new int[] {11, 6, 9, 10, 4}));
            assertEquals(10, t.tokenId("<x>").getAsInt());
        }
    }

    @Test
    void chatTemplateFromTheConfig() throws Exception {
        try (HfTokenizer t = load()) {
            ChatTemplate chat = t.chat();
            assertFalse(chat.isPlain());
            String prompt = chat.render(List.of(ChatMessage.user("abcd"), ChatMessage.assistant("bc")), false);
            assertEquals("<s>abcd<|end|>bc<|end|>", prompt);
            assertArrayEquals(new int[] {11, 6, 9, 7, 9}, t.encode(prompt));
        }
    }

    @Test
    void chatTemplateJinjaFileBesideTheTokenizer() throws Exception {
        Files.writeString(dir.resolve("tokenizer.json"), TOKENIZER_JSON);
        Files.writeString(dir.resolve("tokenizer_config.json"), "{\"eos_token\": \"<|end|>\"}");
        Files.writeString(dir.resolve("chat_template.jinja"), "{% for m in messages %}[{{ m.content }}]{% endfor %}");
        try (HfTokenizer t = Tokenizers.load(dir)) {
            assertEquals(-1, t.bosId());
            assertEquals("[abcd]", t.chat().render(List.of(ChatMessage.user("abcd")), true));
        }
    }

    @Test
    void addedTokenIdsThatTheLibraryWouldRenumberAreRejected() throws Exception {
        // <x> declared as 12 while the library gives it 10: ids and pieces would disagree
        Files.writeString(dir.resolve("tokenizer.json"), TOKENIZER_JSON.replace("{\"id\": 10, \"content\": \"<x>\"",
                "{\"id\": 12, \"content\": \"<x>\""));
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> Tokenizers.load(dir));
        assertTrue(e.getMessage().contains("<x>") && e.getMessage().contains("12") && e.getMessage().contains("10"),
                e.getMessage());
    }

    @Test
    void cleanUpTokenizationSpacesLikeTransformers() {
        assertEquals("Hello, world. I'm here, aren't you? Yes!",
                HfTokenizer.cleanUpTokenizationSpaces("Hello , world . I 'm here , are n't you ? Yes !"));
    }
}
