package io.moe4j.text;

import ai.djl.huggingface.tokenizers.Encoding;
import ai.djl.huggingface.tokenizers.HuggingFaceTokenizer;
import com.fasterxml.jackson.core.JacksonException;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import java.io.ByteArrayInputStream;
import java.io.IOException;
import java.io.InputStream;
import java.io.UncheckedIOException;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.BitSet;
import java.util.HashMap;
import java.util.Iterator;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.OptionalInt;

/**
 * A Hugging Face {@code tokenizer.json} run by the Hugging Face tokenizers library itself (Rust,
 * through DJL's JNI binding, whose jar bundles the native library), so ids and text equal what
 * Hugging Face produces for the same file.
 *
 * <p>{@code tokenizer_config.json} beside the file, when present, names bos/eos/pad, {@code
 * add_bos_token}, {@code clean_up_tokenization_spaces} and the chat template (also read from {@code
 * chat_template.jinja} or {@code chat_template.json}, where newer transformers put it). Without it,
 * {@link #bosId()}, {@link #eosId()} and {@link #padId()} are -1.
 *
 * <p>Thread-safe; {@link #close()} frees the native tokenizer, after which every method throws
 * {@link IllegalStateException}.
 */
public final class HfTokenizer implements Tokenizer, AutoCloseable {

  public static final String TOKENIZER_JSON = "tokenizer.json";
  public static final String TOKENIZER_CONFIG_JSON = "tokenizer_config.json";
  public static final String CHAT_TEMPLATE_JINJA = "chat_template.jinja";
  public static final String CHAT_TEMPLATE_JSON = "chat_template.json";

  private final Path file;
  private final HuggingFaceTokenizer hf;
  private final String[] idToToken;
  private final Map<String, Integer> tokenToId;
  private final BitSet special;
  private final String bosToken;
  private final String eosToken;
  private final String padToken;
  private final int bosId;
  private final int eosId;
  private final int padId;
  private final Boolean addBosToken;
  private final boolean cleanUpTokenizationSpaces;
  private final String chatTemplate;
  private volatile boolean closed;

  private HfTokenizer(Path file, HuggingFaceTokenizer hf, Vocabulary vocab, Config config) {
    this.file = file;
    this.hf = hf;
    this.idToToken = vocab.idToToken;
    this.tokenToId = vocab.tokenToId;
    this.special = vocab.special;
    this.bosToken = config.bosToken;
    this.eosToken = config.eosToken;
    this.padToken = config.padToken;
    this.bosId = idOf(config.bosToken);
    this.eosId = idOf(config.eosToken);
    this.padId = idOf(config.padToken);
    for (int id : new int[] {bosId, eosId, padId}) {
      if (id >= 0) {
        special.set(id);
      }
    }
    this.addBosToken = config.addBosToken;
    this.cleanUpTokenizationSpaces = config.cleanUpTokenizationSpaces;
    this.chatTemplate = config.chatTemplate;
  }

  /**
   * Loads {@code tokenizer.json} (a file, or a directory holding one) and the optional config files
   * beside it.
   *
   * @throws IllegalArgumentException if the file is missing or is not a valid tokenizer
   */
  public static HfTokenizer load(Path tokenizerJsonOrDir) {
    if (tokenizerJsonOrDir == null) {
      throw new IllegalArgumentException("tokenizer path must not be null");
    }
    Path file = Files.isDirectory(tokenizerJsonOrDir)
        ? tokenizerJsonOrDir.resolve(TOKENIZER_JSON) : tokenizerJsonOrDir;
    byte[] bytes = readFile(file, "tokenizer file");
    ObjectMapper mapper = new ObjectMapper();
    JsonNode root;
    try {
      root = mapper.readTree(bytes);
    } catch (IOException e) {
      throw new IllegalArgumentException(
          "tokenizer file " + file + " is not valid JSON: " + e.getMessage(), e);
    }
    if (root == null || !root.isObject()) {
      throw new IllegalArgumentException("tokenizer file " + file + " must hold a JSON object");
    }
    Vocabulary vocab = Vocabulary.of(file, root);
    Path dir = file.toAbsolutePath().getParent();
    Config config = Config.read(dir, mapper);
    HuggingFaceTokenizer hf = open(file, bytes);
    try {
      checkAddedTokenIds(file, hf, vocab.added());
    } catch (RuntimeException e) {
      hf.close();
      throw e;
    }
    return new HfTokenizer(file, hf, vocab, config);
  }

  private static HuggingFaceTokenizer open(Path file, byte[] bytes) {
    DjlOffline.ensure();
    // Hugging Face only truncates or pads when asked; without these options DJL applies
    // whatever truncation/padding the file carries.
    Map<String, String> options = Map.of(
        "addSpecialTokens", "false",
        "truncation", "false",
        "padding", "false");
    try (InputStream in = new ByteArrayInputStream(bytes)) {
      return HuggingFaceTokenizer.newInstance(in, options);
    } catch (IOException e) {
      throw new UncheckedIOException("cannot read " + file + ": " + e.getMessage(), e);
    } catch (RuntimeException e) {
      // The Rust parser rejects tokenizer files with a message naming the bad field.
      throw new IllegalArgumentException(
          "tokenizer file " + file + " was rejected by the Hugging Face tokenizers library: "
              + e.getMessage(), e);
    }
  }

  /**
   * The library numbers added tokens that are not in the model vocabulary itself (from the model
   * vocabulary's size on) and ignores the ids the file declares; a file whose declared ids differ
   * would make {@link #pieces} and {@link #tokenId} disagree with {@link #encode}.
   */
  private static void checkAddedTokenIds(Path file, HuggingFaceTokenizer hf, Map<String, Integer> added) {
    for (Map.Entry<String, Integer> e : added.entrySet()) {
      long[] ids = hf.encode(e.getKey(), false, false).getIds();
      if (ids.length == 1 && ids[0] != e.getValue()) {
        throw new IllegalArgumentException("tokenizer file " + file + ": added token " + e.getKey()
            + " declares id " + e.getValue() + " but the tokenizers library gives it id " + ids[0]
            + " (added tokens not in model.vocab must be numbered from the vocabulary size on)");
      }
    }
  }

  static byte[] readFile(Path file, String what) {
    try {
      return Files.readAllBytes(file);
    } catch (NoSuchFileException e) {
      throw new IllegalArgumentException(what + " " + file + " does not exist", e);
    } catch (IOException e) {
      throw new IllegalArgumentException("cannot read " + what + " " + file + ": " + e, e);
    }
  }

  /** The {@code tokenizer.json} this was loaded from. */
  public Path file() {
    return file;
  }

  @Override
  public int[] encode(String text) {
    return encode(text, false);
  }

  /** Ids with the specials that the file's post-processor adds (e.g. bos for Llama/Mixtral). */
  public int[] encodeWithSpecials(String text) {
    return encode(text, true);
  }

  /** Token strings of {@code text} as the tokenizer produced them (no specials added). */
  public List<String> tokens(String text) {
    checkText(text);
    Encoding e = hf().encode(text, false, false);
    return List.of(e.getTokens());
  }

  private int[] encode(String text, boolean addSpecials) {
    checkText(text);
    long[] ids = hf().encode(text, addSpecials, false).getIds();
    int[] out = new int[ids.length];
    for (int i = 0; i < ids.length; i++) {
      out[i] = Math.toIntExact(ids[i]);
    }
    return out;
  }

  private static void checkText(String text) {
    if (text == null) {
      throw new IllegalArgumentException("text must not be null");
    }
  }

  @Override
  public String decode(int[] ids) {
    long[] longs = checkedIds(ids);
    String text = hf().decode(longs, true);
    return cleanUpTokenizationSpaces ? cleanUpTokenizationSpaces(text) : text;
  }

  /** Text of {@code ids} with the special tokens written out. */
  public String decodeWithSpecials(int[] ids) {
    String text = hf().decode(checkedIds(ids), false);
    return cleanUpTokenizationSpaces ? cleanUpTokenizationSpaces(text) : text;
  }

  /** The token string of each id ({@code convert_ids_to_tokens} in transformers). */
  public List<String> pieces(int[] ids) {
    checkedIds(ids);
    List<String> pieces = new ArrayList<>(ids.length);
    for (int i = 0; i < ids.length; i++) {
      String token = idToToken[ids[i]];
      if (token == null) {
        throw new IllegalArgumentException(
            "ids[" + i + "] = " + ids[i] + " has no token in " + file);
      }
      pieces.add(token);
    }
    return pieces;
  }

  private long[] checkedIds(int[] ids) {
    if (ids == null) {
      throw new IllegalArgumentException("ids must not be null");
    }
    long[] longs = new long[ids.length];
    for (int i = 0; i < ids.length; i++) {
      if (ids[i] < 0 || ids[i] >= idToToken.length) {
        throw new IllegalArgumentException(
            "ids[" + i + "] must be in [0, " + idToToken.length + "), got " + ids[i]);
      }
      longs[i] = ids[i];
    }
    return longs;
  }

  /**
   * What transformers' {@code clean_up_tokenization} does when the config asks for it: removes the
   * space that word-level tokenizers leave before punctuation and English contractions.
   */
  static String cleanUpTokenizationSpaces(String text) {
    return text.replace(" .", ".")
        .replace(" ?", "?")
        .replace(" !", "!")
        .replace(" ,", ",")
        .replace(" ' ", "'")
        .replace(" n't", "n't")
        .replace(" 'm", "'m")
        .replace(" 's", "'s")
        .replace(" 've", "'ve")
        .replace(" 're", "'re");
  }

  /** One more than the largest id of the model vocabulary and the added tokens. */
  @Override
  public int vocabSize() {
    return idToToken.length;
  }

  @Override
  public int bosId() {
    return bosId;
  }

  @Override
  public int eosId() {
    return eosId;
  }

  @Override
  public int padId() {
    return padId;
  }

  /** Id of any token (added or from the model vocabulary) given by its exact string. */
  @Override
  public OptionalInt tokenId(String token) {
    Integer id = token == null ? null : tokenToId.get(token);
    return id == null ? OptionalInt.empty() : OptionalInt.of(id);
  }

  @Override
  public boolean isSpecial(int id) {
    return id >= 0 && special.get(id);
  }

  public Optional<String> bosToken() {
    return Optional.ofNullable(bosToken);
  }

  public Optional<String> eosToken() {
    return Optional.ofNullable(eosToken);
  }

  public Optional<String> padToken() {
    return Optional.ofNullable(padToken);
  }

  /** {@code add_bos_token} from the config, empty when it does not say. */
  public Optional<Boolean> addBosToken() {
    return Optional.ofNullable(addBosToken);
  }

  /** The Jinja chat template, empty when the model ships none. */
  public Optional<String> chatTemplate() {
    return Optional.ofNullable(chatTemplate);
  }

  /** The chat template of this model, or the plain fallback when it ships none. */
  public ChatTemplate chat() {
    return chatTemplate == null
        ? ChatTemplate.plain(bosToken, eosToken)
        : ChatTemplate.of(chatTemplate, bosToken, eosToken);
  }

  private int idOf(String token) {
    if (token == null) {
      return -1;
    }
    Integer id = tokenToId.get(token);
    return id == null ? -1 : id;
  }

  private HuggingFaceTokenizer hf() {
    if (closed) {
      throw new IllegalStateException("tokenizer " + file + " is closed");
    }
    return hf;
  }

  @Override
  public void close() {
    if (!closed) {
      closed = true;
      hf.close();
    }
  }

  /** Token strings by id from {@code model.vocab} and {@code added_tokens}. */
  private record Vocabulary(String[] idToToken, Map<String, Integer> tokenToId, BitSet special,
                Map<String, Integer> added) {

    static Vocabulary of(Path file, JsonNode root) {
      Map<String, Integer> tokenToId = new HashMap<>();
      Map<Integer, String> byId = new HashMap<>();
      Map<String, Integer> addedTokens = new LinkedHashMap<>();
      BitSet special = new BitSet();
      JsonNode model = root.get("model");
      if (model == null || !model.isObject()) {
        throw new IllegalArgumentException("tokenizer file " + file + " has no \"model\" object");
      }
      JsonNode vocab = model.get("vocab");
      if (vocab != null && vocab.isObject()) {
        // BPE, WordPiece, WordLevel: {"token": id}
        for (Iterator<Map.Entry<String, JsonNode>> it = vocab.fields(); it.hasNext(); ) {
          Map.Entry<String, JsonNode> e = it.next();
          put(file, e.getKey(), e.getValue(), tokenToId, byId);
        }
      } else if (vocab != null && vocab.isArray()) {
        // Unigram: [[piece, score], ...], id = position
        for (int i = 0; i < vocab.size(); i++) {
          JsonNode entry = vocab.get(i);
          if (!entry.isArray() || entry.isEmpty() || !entry.get(0).isTextual()) {
            throw new IllegalArgumentException("tokenizer file " + file
                + ": model.vocab[" + i + "] must be [piece, score], got " + entry);
          }
          tokenToId.putIfAbsent(entry.get(0).asText(), i);
          byId.put(i, entry.get(0).asText());
        }
      } else {
        throw new IllegalArgumentException("tokenizer file " + file
            + ": model.vocab must be an object or an array, got "
            + (vocab == null ? "nothing" : vocab.getNodeType()));
      }
      JsonNode added = root.get("added_tokens");
      if (added != null && added.isArray()) {
        for (JsonNode token : added) {
          JsonNode content = token.get("content");
          if (content == null || !content.isTextual()) {
            throw new IllegalArgumentException("tokenizer file " + file
                + ": every added token needs a \"content\" string, got " + token);
          }
          int id = put(file, content.asText(), token.get("id"), tokenToId, byId);
          // added tokens win over a vocabulary entry with the same text, as in Hugging Face
          tokenToId.put(content.asText(), id);
          addedTokens.put(content.asText(), id);
          if (token.path("special").asBoolean(false)) {
            special.set(id);
          }
        }
      }
      int size = byId.keySet().stream().mapToInt(Integer::intValue).max().orElse(-1) + 1;
      String[] idToToken = new String[size];
      byId.forEach((id, token) -> idToToken[id] = token);
      return new Vocabulary(idToToken, Map.copyOf(tokenToId), special, addedTokens);
    }

    private static int put(Path file, String token, JsonNode idNode,
                 Map<String, Integer> tokenToId, Map<Integer, String> byId) {
      if (idNode == null || !idNode.canConvertToInt() || idNode.asInt() < 0) {
        throw new IllegalArgumentException("tokenizer file " + file + ": token '" + token
            + "' needs an id >= 0, got " + idNode);
      }
      int id = idNode.asInt();
      tokenToId.putIfAbsent(token, id);
      byId.put(id, token);
      return id;
    }
  }

  /** What {@code tokenizer_config.json} (and the chat template files) say. */
  private record Config(String bosToken, String eosToken, String padToken, Boolean addBosToken,
              boolean cleanUpTokenizationSpaces, String chatTemplate) {

    static Config read(Path dir, ObjectMapper mapper) {
      JsonNode root = readJson(dir.resolve(TOKENIZER_CONFIG_JSON), mapper);
      String bos = null;
      String eos = null;
      String pad = null;
      Boolean addBos = null;
      boolean cleanUp = false;
      String template = null;
      if (root != null) {
        bos = tokenText(root.get("bos_token"));
        eos = tokenText(root.get("eos_token"));
        pad = tokenText(root.get("pad_token"));
        JsonNode ab = root.get("add_bos_token");
        addBos = ab != null && ab.isBoolean() ? ab.asBoolean() : null;
        cleanUp = root.path("clean_up_tokenization_spaces").asBoolean(false);
        template = templateText(dir.resolve(TOKENIZER_CONFIG_JSON), root.get("chat_template"));
      }
      if (template == null && Files.isRegularFile(dir.resolve(CHAT_TEMPLATE_JINJA))) {
        template = new String(readFile(dir.resolve(CHAT_TEMPLATE_JINJA), "chat template"),
            java.nio.charset.StandardCharsets.UTF_8);
      }
      if (template == null) {
        JsonNode json = readJson(dir.resolve(CHAT_TEMPLATE_JSON), mapper);
        if (json != null) {
          template = templateText(dir.resolve(CHAT_TEMPLATE_JSON), json.get("chat_template"));
        }
      }
      return new Config(bos, eos, pad, addBos, cleanUp, template);
    }

    private static JsonNode readJson(Path file, ObjectMapper mapper) {
      if (!Files.isRegularFile(file)) {
        return null;
      }
      try {
        JsonNode node = mapper.readTree(file.toFile());
        if (node == null || !node.isObject()) {
          throw new IllegalArgumentException(file + " must hold a JSON object");
        }
        return node;
      } catch (JacksonException e) {
        throw new IllegalArgumentException(file + " is not valid JSON: " + e.getOriginalMessage(), e);
      } catch (IOException e) {
        throw new IllegalArgumentException("cannot read " + file + ": " + e, e);
      }
    }

    /** A token is written as a string or, by older transformers, as an AddedToken object. */
    private static String tokenText(JsonNode node) {
      if (node == null || node.isNull()) {
        return null;
      }
      if (node.isTextual()) {
        return node.asText();
      }
      JsonNode content = node.get("content");
      return content != null && content.isTextual() ? content.asText() : null;
    }

    /** A single template, or a list of named ones of which "default" is the chat template. */
    private static String templateText(Path file, JsonNode node) {
      if (node == null || node.isNull()) {
        return null;
      }
      if (node.isTextual()) {
        return node.asText();
      }
      if (node.isArray()) {
        for (JsonNode named : node) {
          if ("default".equals(named.path("name").asText(null))
              && named.path("template").isTextual()) {
            return named.get("template").asText();
          }
        }
        return null;
      }
      throw new IllegalArgumentException(
          file + ": chat_template must be a string or a list of {name, template}, got "
              + node.getNodeType());
    }
  }
}
