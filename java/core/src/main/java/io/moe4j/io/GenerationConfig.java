package io.moe4j.io;

import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.SerializationFeature;
import com.fasterxml.jackson.databind.node.ObjectNode;
import io.moe4j.nn.ModelConfig;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;

/** generation_config.json: the special token ids generation starts and stops with (-1 = none). */
public record GenerationConfig(int bosTokenId, int eosTokenId) {

  public static final String FILE_NAME = "generation_config.json";

  private static final ObjectMapper JSON = new ObjectMapper().enable(SerializationFeature.INDENT_OUTPUT);

  public static GenerationConfig of(ModelConfig config) {
    return new GenerationConfig(config.bosTokenId(), config.eosTokenId());
  }

  public String toJson() {
    ObjectNode o = JSON.createObjectNode();
    o.put("_from_model_config", true);
    if (bosTokenId >= 0) o.put("bos_token_id", bosTokenId);
    if (eosTokenId >= 0) o.put("eos_token_id", eosTokenId);
    try {
      return JSON.writeValueAsString(o) + "\n";
    } catch (JsonProcessingException e) {
      throw new IllegalStateException("cannot serialize generation config", e);
    }
  }

  public void write(Path file) {
    AtomicFiles.writeBytes(file, toJson().getBytes(StandardCharsets.UTF_8));
  }

  /** Reads the ids; a list of eos ids contributes its first. */
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
    return new GenerationConfig(id(root, "bos_token_id", file), id(root, "eos_token_id", file));
  }

  private static int id(JsonNode root, String key, Path file) {
    JsonNode n = root.get(key);
    if (n == null || n.isNull()) return -1;
    if (n.isArray()) n = n.isEmpty() ? null : n.get(0);
    if (n == null) return -1;
    if (!n.isIntegralNumber() || !n.canConvertToInt() || n.intValue() < 0)
      throw new IllegalArgumentException("generation config " + file + ": \"" + key + "\" must be a token id >= 0, got " + root.get(key));
    return n.intValue();
  }
}
