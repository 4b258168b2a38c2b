package io.moe4j.infer;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import io.moe4j.text.ChatMessage;
import io.moe4j.text.ChatTemplate;
import java.io.IOException;
import java.io.InputStream;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.HashSet;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.stream.Stream;
import org.junit.jupiter.api.DynamicTest;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.TestFactory;

/**
 * moe4j's chat-template rendering against Hugging Face's: every case in
 * {@code hfparity/chat_templates_expected.json} was rendered by transformers'
 * {@code apply_chat_template(tokenize=False)} (tools/hf_parity/chat_templates.py) with the Mixtral,
 * Qwen3 and OLMoE templates (Qwen3 also with tool definitions, written with |tojson);
 * {@link ChatTemplate} must give the same string, or, where the template
 * raised, an IllegalArgumentException carrying the template's own message.
 */
class HfParityChatTemplateTest {

  private static final String EXPECTED = "hfparity/chat_templates_expected.json";
  private static final ObjectMapper JSON = new ObjectMapper();

  private static String resource(String path) {
    try (InputStream in = HfParityChatTemplateTest.class.getResourceAsStream(path)) {
      if (in == null) throw new AssertionError("missing test resource " + path);
      return new String(in.readAllBytes(), StandardCharsets.UTF_8);
    } catch (IOException e) {
      throw new AssertionError(e);
    }
  }

  private static JsonNode cases() {
    try {
      return JSON.readTree(resource(EXPECTED)).get("cases");
    } catch (IOException e) {
      throw new AssertionError("cannot parse " + EXPECTED, e);
    }
  }

  private static String text(JsonNode n) {
    return n == null || n.isNull() ? null : n.asText();
  }

  @Test
  void expectedFileCoversEveryTemplateAndBothOutcomes() {
    JsonNode cases = cases();
    Set<String> templates = new HashSet<>();
    int errors = 0;
    for (JsonNode c : cases) {
      templates.add(c.get("template").asText());
      if (c.has("error")) errors++;
    }
    assertEquals(Set.of("mixtral.jinja", "qwen3.jinja", "olmoe.jinja"), templates);
    assertTrue(cases.size() >= 100, "cases: " + cases.size());
    assertTrue(errors > 0 && errors < cases.size(), "cases that raise: " + errors);
  }

  @TestFactory
  Stream<DynamicTest> rendersLikeTransformers() {
    Map<String, ChatTemplate> templates = new LinkedHashMap<>();
    List<DynamicTest> tests = new ArrayList<>();
    for (JsonNode c : cases()) {
      String file = c.get("template").asText();
      ChatTemplate template = templates.computeIfAbsent(file,
          f -> ChatTemplate.of(resource("/io/moe4j/text/chat/" + f), text(c.get("bos_token")), text(c.get("eos_token"))));
      List<ChatMessage> messages = new ArrayList<>();
      for (JsonNode m : c.get("messages")) messages.add(new ChatMessage(m.get("role").asText(), m.get("content").asText()));
      // JSON objects become LinkedHashMaps (key order kept, as Python dicts keep it), arrays Lists
      Map<String, Object> extra = new LinkedHashMap<>();
      c.get("extra").fields().forEachRemaining(e -> extra.put(e.getKey(), JSON.convertValue(e.getValue(), Object.class)));
      boolean generationPrompt = c.get("add_generation_prompt").asBoolean();
      String name = file + " | " + c.get("name").asText() + " | generation prompt " + generationPrompt
          + (extra.isEmpty() ? "" : " | " + extra);
      tests.add(DynamicTest.dynamicTest(name, () -> {
        if (c.has("error")) {
          // "TemplateError: <message>": the template's raise_exception text must reach the user
          String hf = c.get("error").asText();
          String message = hf.substring(hf.indexOf(": ") + 2);
          IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
              () -> template.render(messages, generationPrompt, extra));
          assertTrue(e.getMessage().contains(message), e.getMessage() + " should contain " + message);
        } else {
          String expected = c.get("expected").asText();
          assertEquals(expected, template.render(messages, generationPrompt, extra));
        }
      }));
    }
    return tests.stream();
  }
}
