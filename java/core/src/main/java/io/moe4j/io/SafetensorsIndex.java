package io.moe4j.io;

import com.fasterxml.jackson.core.JsonParser;
import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.SerializationFeature;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.util.Collections;
import java.util.Iterator;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.TreeMap;

/**
 * model.safetensors.index.json of a sharded checkpoint: {"metadata": {...}, "weight_map": {tensor
 * name: shard file name}}. Shard names must be plain file names in the index's directory.
 */
public record SafetensorsIndex(Map<String, Object> metadata, Map<String, String> weightMap) {

  private static final ObjectMapper JSON =
      new ObjectMapper().enable(JsonParser.Feature.STRICT_DUPLICATE_DETECTION).enable(SerializationFeature.INDENT_OUTPUT);

  public SafetensorsIndex {
    metadata = Collections.unmodifiableMap(new LinkedHashMap<>(metadata));
    weightMap = Collections.unmodifiableMap(new TreeMap<>(weightMap));
  }

  public static SafetensorsIndex read(Path file) {
    String text;
    try {
      text = Files.readString(file, StandardCharsets.UTF_8);
    } catch (NoSuchFileException e) {
      throw new IllegalArgumentException("safetensors index " + file + " does not exist");
    } catch (IOException e) {
      throw new UncheckedIOException("cannot read safetensors index " + file + ": " + e.getMessage(), e);
    }
    JsonNode root;
    try {
      root = JSON.readTree(text);
    } catch (JsonProcessingException e) {
      throw new IllegalArgumentException("safetensors index " + file + " is not well-formed JSON: " + e.getOriginalMessage());
    }
    if (root == null || !root.isObject()) throw new IllegalArgumentException("safetensors index " + file + " must be a JSON object");
    JsonNode map = root.get("weight_map");
    if (map == null || !map.isObject())
      throw new IllegalArgumentException("safetensors index " + file + " needs a \"weight_map\" object {tensor name: shard file}");
    Map<String, String> weights = new TreeMap<>();
    for (Iterator<Map.Entry<String, JsonNode>> it = map.fields(); it.hasNext(); ) {
      Map.Entry<String, JsonNode> e = it.next();
      if (!e.getValue().isTextual())
        throw new IllegalArgumentException("safetensors index " + file + ": weight_map entry '" + e.getKey() + "' must name a shard file, got " + e.getValue());
      checkShardName(file, e.getKey(), e.getValue().textValue());
      weights.put(e.getKey(), e.getValue().textValue());
    }
    Map<String, Object> metadata = new LinkedHashMap<>();
    JsonNode meta = root.get("metadata");
    if (meta != null && meta.isObject())
      for (Iterator<Map.Entry<String, JsonNode>> it = meta.fields(); it.hasNext(); ) {
        Map.Entry<String, JsonNode> e = it.next();
        metadata.put(e.getKey(), JSON.convertValue(e.getValue(), Object.class));
      }
    return new SafetensorsIndex(metadata, weights);
  }

  /** Rejects names that would leave the checkpoint directory. */
  private static void checkShardName(Path file, String tensor, String shard) {
    if (shard.isEmpty() || shard.contains("/") || shard.contains("\\") || shard.equals(".") || shard.equals(".."))
      throw new IllegalArgumentException("safetensors index " + file + ": shard of tensor '" + tensor
          + "' must be a plain file name in the same directory, got '" + shard + "'");
  }

  /** Writes the index atomically; "total_size" goes into metadata when given. */
  public void write(Path file) {
    ObjectNode root = JSON.createObjectNode();
    root.set("metadata", JSON.valueToTree(metadata));
    ObjectNode map = root.putObject("weight_map");
    weightMap.forEach(map::put);
    try {
      AtomicFiles.writeBytes(file, JSON.writeValueAsBytes(root));
    } catch (JsonProcessingException e) {
      throw new IllegalStateException("cannot serialize safetensors index " + file, e);
    }
  }
}
