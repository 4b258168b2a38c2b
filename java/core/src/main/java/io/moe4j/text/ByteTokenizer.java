package io.moe4j.text;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.SerializationFeature;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.math.BigInteger;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.util.List;
import java.util.OptionalInt;

/**
 * One token per UTF-8 byte (ids 0..255), then three specials: 256 {@code <|pad|>}, 257
 * {@code <|bos|>}, 258 {@code <|endoftext|>} (eos). Needs no vocabulary file and can represent any
 * text, which is what the synthetic tasks and small text-file experiments want.
 *
 * <p>Literal special-token text in the input is encoded as its bytes, never as the special id, so
 * data cannot inject control tokens. A Hugging Face tokenizer loaded from
 * {@link #writeHfTokenizerJson} gives the same ids and text with two exceptions: it matches added
 * tokens in raw text, and its decode keeps specials unless asked to skip them.
 */
public final class ByteTokenizer implements Tokenizer {

  public static final int PAD_ID = 256;
  public static final int BOS_ID = 257;
  public static final int EOS_ID = 258;
  public static final int VOCAB_SIZE = 259;

  public static final String PAD_TOKEN = "<|pad|>";
  public static final String BOS_TOKEN = "<|bos|>";
  public static final String EOS_TOKEN = "<|endoftext|>";

  /** What Hugging Face writes for "no length limit" (int(1e30)). */
  private static final BigInteger HF_NO_MAX_LENGTH = new BigInteger("1000000000000000019884624838656");

  private static final List<String> SPECIAL_TOKENS = List.of(PAD_TOKEN, BOS_TOKEN, EOS_TOKEN);

  private final ByteLevelAlphabet alphabet = new ByteLevelAlphabet();

  @Override
  public int[] encode(String text) {
    if (text == null) {
      throw new IllegalArgumentException("text must not be null");
    }
    byte[] bytes = text.getBytes(StandardCharsets.UTF_8);
    int[] ids = new int[bytes.length];
    for (int i = 0; i < bytes.length; i++) {
      ids[i] = bytes[i] & 0xFF;
    }
    return ids;
  }

  @Override
  public String decode(int[] ids) {
    if (ids == null) {
      throw new IllegalArgumentException("ids must not be null");
    }
    byte[] bytes = new byte[ids.length];
    int n = 0;
    for (int i = 0; i < ids.length; i++) {
      int id = ids[i];
      if (id < 0 || id >= VOCAB_SIZE) {
        throw new IllegalArgumentException(
            "ids[" + i + "] must be in [0, " + VOCAB_SIZE + "), got " + id);
      }
      if (id < 256) {
        bytes[n++] = (byte) id;
      }
    }
    // new String(...) replaces malformed UTF-8 with U+FFFD instead of throwing.
    return new String(bytes, 0, n, StandardCharsets.UTF_8);
  }

  @Override
  public int vocabSize() {
    return VOCAB_SIZE;
  }

  @Override
  public int bosId() {
    return BOS_ID;
  }

  @Override
  public int eosId() {
    return EOS_ID;
  }

  @Override
  public int padId() {
    return PAD_ID;
  }

  @Override
  public OptionalInt tokenId(String token) {
    int index = SPECIAL_TOKENS.indexOf(token);
    return index < 0 ? OptionalInt.empty() : OptionalInt.of(256 + index);
  }

  @Override
  public boolean isSpecial(int id) {
    return id >= 256 && id < VOCAB_SIZE;
  }

  /** The byte-level character that stands for byte {@code b} in the Hugging Face files. */
  public char byteLevelChar(int b) {
    return alphabet.charOf(b);
  }

  /**
   * Writes a Hugging Face {@code tokenizer.json} that tokenizes and decodes like this tokenizer: a
   * BPE model without merges whose vocabulary is the 256 byte-level characters (so every byte stays
   * one token with id = byte value), ByteLevel pre-tokenizer and decoder without regex splitting or
   * prefix space, and the specials as added tokens. Its post-processor puts bos before a text (as
   * Llama/Mixtral tokenizers do), because moe4j trains byte-level models on bos + text: Hugging Face's
   * {@code tokenizer(text)} and {@link HfTokenizer#encodeWithSpecials} then give what the model saw,
   * while {@link #encode} (no specials) equals {@code encode(text, add_special_tokens=False)}.
   */
  public void writeHfTokenizerJson(Path file) {
    ObjectMapper mapper = new ObjectMapper();
    ObjectNode root = mapper.createObjectNode();
    root.put("version", "1.0");
    root.putNull("truncation");
    root.putNull("padding");
    ArrayNode added = root.putArray("added_tokens");
    for (int i = 0; i < SPECIAL_TOKENS.size(); i++) {
      ObjectNode token = added.addObject();
      token.put("id", 256 + i);
      token.put("content", SPECIAL_TOKENS.get(i));
      token.put("single_word", false);
      token.put("lstrip", false);
      token.put("rstrip", false);
      token.put("normalized", false);
      token.put("special", true);
    }
    root.putNull("normalizer");
    ObjectNode pre = root.putObject("pre_tokenizer");
    pre.put("type", "ByteLevel");
    pre.put("add_prefix_space", false);
    pre.put("trim_offsets", false);
    pre.put("use_regex", false);
    ObjectNode post = root.putObject("post_processor");
    post.put("type", "TemplateProcessing");
    ArrayNode single = post.putArray("single");
    single.addObject().putObject("SpecialToken").put("id", SPECIAL_TOKENS.get(1)).put("type_id", 0);
    single.addObject().putObject("Sequence").put("id", "A").put("type_id", 0);
    ArrayNode pair = post.putArray("pair");
    pair.addObject().putObject("SpecialToken").put("id", SPECIAL_TOKENS.get(1)).put("type_id", 0);
    pair.addObject().putObject("Sequence").put("id", "A").put("type_id", 0);
    pair.addObject().putObject("Sequence").put("id", "B").put("type_id", 1);
    ObjectNode bos = post.putObject("special_tokens").putObject(SPECIAL_TOKENS.get(1));
    bos.put("id", SPECIAL_TOKENS.get(1));
    bos.putArray("ids").add(256 + 1);
    bos.putArray("tokens").add(SPECIAL_TOKENS.get(1));
    ObjectNode decoder = root.putObject("decoder");
    decoder.put("type", "ByteLevel");
    decoder.put("add_prefix_space", false);
    decoder.put("trim_offsets", false);
    decoder.put("use_regex", false);
    ObjectNode model = root.putObject("model");
    model.put("type", "BPE");
    model.putNull("dropout");
    model.putNull("unk_token");
    model.putNull("continuing_subword_prefix");
    model.putNull("end_of_word_suffix");
    model.put("fuse_unk", false);
    model.put("byte_fallback", false);
    model.put("ignore_merges", false);
    ObjectNode vocab = model.putObject("vocab");
    for (int b = 0; b < 256; b++) {
      vocab.put(String.valueOf(alphabet.charOf(b)), b);
    }
    // Also in the model vocabulary (as GPT-2 does) so tools that size the embedding from the
    // model vocabulary alone see all 259 ids; without merges BPE can never produce them.
    for (int i = 0; i < SPECIAL_TOKENS.size(); i++) {
      vocab.put(SPECIAL_TOKENS.get(i), 256 + i);
    }
    model.putArray("merges");
    write(mapper, file, root);
  }

  /** {@code tokenizer_config.json} without a length limit. */
  public void writeTokenizerConfig(Path file) {
    writeTokenizerConfig(file, null);
  }

  /** {@code tokenizer_config.json} naming the specials and the model's context length. */
  public void writeTokenizerConfig(Path file, int modelMaxLength) {
    if (modelMaxLength <= 0) {
      throw new IllegalArgumentException("modelMaxLength must be > 0, got " + modelMaxLength);
    }
    writeTokenizerConfig(file, BigInteger.valueOf(modelMaxLength));
  }

  private void writeTokenizerConfig(Path file, BigInteger modelMaxLength) {
    ObjectMapper mapper = new ObjectMapper();
    ObjectNode root = mapper.createObjectNode();
    ObjectNode decoderMap = root.putObject("added_tokens_decoder");
    for (int i = 0; i < SPECIAL_TOKENS.size(); i++) {
      ObjectNode token = decoderMap.putObject(String.valueOf(256 + i));
      token.put("content", SPECIAL_TOKENS.get(i));
      token.put("lstrip", false);
      token.put("normalized", false);
      token.put("rstrip", false);
      token.put("single_word", false);
      token.put("special", true);
    }
    root.put("bos_token", BOS_TOKEN);
    root.put("eos_token", EOS_TOKEN);
    root.put("pad_token", PAD_TOKEN);
    // transformers would otherwise strip spaces before punctuation on decode.
    root.put("clean_up_tokenization_spaces", false);
    root.put("model_max_length", modelMaxLength == null ? HF_NO_MAX_LENGTH : modelMaxLength);
    root.put("tokenizer_class", "PreTrainedTokenizerFast");
    write(mapper, file, root);
  }

  private static void write(ObjectMapper mapper, Path file, ObjectNode root) {
    if (file == null) {
      throw new IllegalArgumentException("file must not be null");
    }
    try {
      // Hugging Face files are UTF-8 JSON with the byte-level characters written as themselves.
      mapper.enable(SerializationFeature.INDENT_OUTPUT).writeValue(file.toFile(), root);
    } catch (IOException e) {
      throw new UncheckedIOException("cannot write " + file + ": " + e.getMessage(), e);
    }
  }
}
