package io.moe4j.io;

import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.SerializationFeature;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import io.moe4j.nn.ModelConfig;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;

/**
 * generation_config.json: the token generation starts with (-1 = none) and the tokens that stop it
 * (HF allows one id or a list, e.g. Qwen3's end-of-turn and end-of-text).
 */
public record GenerationConfig(int bosTokenId, List<Integer> eosTokenIds) {

  public static final String FILE_NAME = "generation_config.json";

  private static final ObjectMapper JSON = new ObjectMapper().enable(SerializationFeature.INDENT_OUTPUT);

  public GenerationConfig {
    eosTokenIds = List.copyOf(eosTokenIds);
    for (int id : eosTokenIds) if (id < 0) throw new IllegalArgumentException("eos token ids must be >= 0, got " + eosTokenIds);
  }

  /** One eos id, or none when {@code eosTokenId} is negative. */
  public GenerationConfig(int bosTokenId, int eosTokenId) {
    this(bosTokenId, eosTokenId >= 0 ? List.of(eosTokenId) : List.of());
  }

  public static GenerationConfig of(ModelConfig config) {
    return new GenerationConfig(config.bosTokenId(), config.eosTokenId());
  }

  /** The first eos id, -1 when there is none. */
  public int eosTokenId() {
    return eosTokenIds.isEmpty() ? -1 : eosTokenIds.get(0);
  }

  public String toJson() {
    ObjectNode o = JSON.createObjectNode();
    o.put("_from_model_config", true);
    if (bosTokenId >= 0) o.put("bos_token_id", bosTokenId);
    if (eosTokenIds.size() == 1) {
      o.put("eos_token_id", eosTokenIds.get(0));
    } else if (eosTokenIds.size() > 1) {
      ArrayNode ids = o.putArray("eos_token_id");
      eosTokenIds.forEach(ids::add);
    }
    try {
      return JSON.writeValueAsString(o) + "\n";
    } catch (JsonProcessingException e) {
      throw new IllegalStateException("cannot serialize generation config", e);
    }
  }

  public void write(Path file) {
    AtomicFiles.writeBytes(file, toJson().getBytes(StandardCharsets.UTF_8));
  }

  public static GenerationConfig read(Path file) {
    JsonNode root;
    try {
      root = JSON.readTree(Files.readString(file, StandardCharsets.UTF_8));
    } catch (NoSuchFileException e) {
      throw new IllegalArgumentException("generation config " + file + " does not exist");
    } catch (JsonProcessingException e) {
      throw new IllegalArgumentException("generation config " + file + " is not well-formed JSON: " + e.getOriginalMessage());
    } catch (IOException e) {
      throw new UncheckedIOException("cannot read generation config " + file + ": " + e.getMessage(), e);
    }
    if (root == null || !root.isObject()) throw new IllegalArgumentException("generation config " + file + " must be a JSON object");
    List<Integer> bos = ids(root, "bos_token_id", file);
    return new GenerationConfig(bos.isEmpty() ? -1 : bos.get(0), ids(root, "eos_token_id", file));
  }

  private static List<Integer> ids(JsonNode root, String key, Path file) {
    JsonNode n = root.get(key);
    List<Integer> out = new ArrayList<>();
    if (n == null || n.isNull()) return out;
    for (JsonNode id : n.isArray() ? n : List.of(n)) {
      if (!id.isIntegralNumber() || !id.canConvertToInt() || id.intValue() < 0)
        throw new IllegalArgumentException("generation config " + file + ": \"" + key + "\" must be a token id >= 0 or a list of them, got " + n);
      out.add(id.intValue());
    }
    return out;
  }
}
