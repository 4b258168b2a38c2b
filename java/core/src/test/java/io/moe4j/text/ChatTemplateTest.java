package io.moe4j.text;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.io.InputStream;
import java.nio.charset.StandardCharsets;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;

/**
 * The chat templates of Mixtral-8x7B-Instruct-v0.1, Qwen3 (MoE) and OLMoE-1B-7B-Instruct, rendered
 * for the same conversations; expected strings follow from Jinja's rules with transformers'
 * settings (trim_blocks, lstrip_blocks).
 */
class ChatTemplateTest {

  private static final List<ChatMessage> TWO_TURNS = List.of(
      ChatMessage.user("Hi"), ChatMessage.assistant("Hello"), ChatMessage.user("How are you?"));

  static String resource(String name) {
    try (InputStream in = ChatTemplateTest.class.getResourceAsStream("chat/" + name)) {
      return new String(in.readAllBytes(), StandardCharsets.UTF_8);
    } catch (IOException e) {
      throw new AssertionError(e);
    }
  }

  @Test
  void mixtral() {
    ChatTemplate t = ChatTemplate.of(resource("mixtral.jinja"), "<s>", "</s>");
    assertEquals("<s>[INST] Hi [/INST]Hello</s>[INST] How are you? [/INST]", t.render(TWO_TURNS, true));
  }

  @Test
  void mixtralRejectsNonAlternatingRoles() {
    ChatTemplate t = ChatTemplate.of(resource("mixtral.jinja"), "<s>", "</s>");
    IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
        () -> t.render(List.of(ChatMessage.assistant("Hello")), true));
    assertTrue(e.getMessage().contains("Conversation roles must alternate user/assistant/user/assistant/..."),
        e.getMessage());
    IllegalArgumentException sys = assertThrows(IllegalArgumentException.class,
        () -> t.render(List.of(ChatMessage.user("a"), new ChatMessage("system", "b")), true));
    assertTrue(sys.getMessage().contains("Only user and assistant roles are supported!"), sys.getMessage());
  }

  @Test
  void olmoe() {
    ChatTemplate t = ChatTemplate.of(resource("olmoe.jinja"), "<|endoftext|>", "<|endoftext|>");
    assertEquals("<|endoftext|><|user|>\nHi\n<|assistant|>\nHello<|endoftext|>\n<|user|>\nHow are you?\n"
        + "<|assistant|>\n", t.render(TWO_TURNS, true));
    assertEquals("<|endoftext|><|system|>\nBe brief.\n<|user|>\nHi\n",
        t.render(List.of(ChatMessage.system("Be brief."), ChatMessage.user("Hi")), false));
  }

  @Test
  void qwen3() {
    ChatTemplate t = ChatTemplate.of(resource("qwen3.jinja"), null, "<|im_end|>");
    String expected = "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\nHello<|im_end|>\n"
        + "<|im_start|>user\nHow are you?<|im_end|>\n<|im_start|>assistant\n";
    assertEquals(expected, t.render(TWO_TURNS, true));
    assertEquals(expected + "<think>\n\n</think>\n\n",
        t.render(TWO_TURNS, true, Map.of("enable_thinking", false)));
    assertEquals(expected, t.render(TWO_TURNS, true, Map.of("enable_thinking", true)));
  }

  @Test
  void qwen3ThinkingBlockOnTheLastAssistantTurn() {
    ChatTemplate t = ChatTemplate.of(resource("qwen3.jinja"), null, "<|im_end|>");
    // an assistant turn after the last user query gets the (here empty) thinking block
    assertEquals("<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\nHello<|im_end|>\n",
        t.render(List.of(ChatMessage.user("Hi"), ChatMessage.assistant("Hello")), false));
    // reasoning inside the content is split out and re-wrapped
    assertEquals("<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n"
            + "<|im_start|>assistant\n<think>\nweigh it\n</think>\n\nHello<|im_end|>\n",
        t.render(List.of(ChatMessage.system("Be brief."), ChatMessage.user("Hi"),
            ChatMessage.assistant("<think>\nweigh it\n</think>\n\nHello")), false));
  }

  @Test
  void qwen3ToolsAndToolResponses() {
    ChatTemplate t = ChatTemplate.of(resource("qwen3.jinja"), null, "<|im_end|>");
    Map<String, Object> function = new LinkedHashMap<>();
    function.put("name", "now");
    function.put("parameters", Map.of());
    Map<String, Object> tool = new LinkedHashMap<>();
    tool.put("type", "function");
    tool.put("function", function);
    String rendered = t.render(List.of(ChatMessage.user("Time?"), new ChatMessage("tool", "12:00")), true,
        Map.of("tools", List.of(tool)));
    assertEquals("<|im_start|>system\n# Tools\n\nYou may call one or more functions to assist with the user query."
        + "\n\nYou are provided with function signatures within <tools></tools> XML tags:\n<tools>"
        + "\n{\"type\": \"function\", \"function\": {\"name\": \"now\", \"parameters\": {}}}"
        + "\n</tools>\n\nFor each function call, return a json object with function name and arguments within"
        + " <tool_call></tool_call> XML tags:\n<tool_call>\n{\"name\": <function-name>, \"arguments\": "
        + "<args-json-object>}\n</tool_call><|im_end|>\n"
        + "<|im_start|>user\nTime?<|im_end|>\n"
        + "<|im_start|>user\n<tool_response>\n12:00\n</tool_response><|im_end|>\n"
        + "<|im_start|>assistant\n", rendered);
  }

  @Test
  void plainFallback() {
    ChatTemplate t = ChatTemplate.plain("<s>", "</s>");
    assertTrue(t.isPlain());
    assertEquals("user: Hi\nassistant: Hello\nuser: How are you?\nassistant: ", t.render(TWO_TURNS, true));
    assertEquals("user: Hi\n", t.render(List.of(ChatMessage.user("Hi")), false));
  }

  @Test
  void badTemplateAndMessagesAreClearErrors() {
    IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
        () -> ChatTemplate.of("{% for m in messages %}{{ m.content }}", "<s>", "</s>"));
    assertTrue(e.getMessage().contains("endfor"), e.getMessage());
    IllegalArgumentException line = assertThrows(IllegalArgumentException.class,
        () -> ChatTemplate.of("ok\n{{ 1 + }}", "<s>", "</s>"));
    assertTrue(line.getMessage().contains("line 2"), line.getMessage());
    assertThrows(IllegalArgumentException.class, () -> new ChatMessage("", "x"));
    assertThrows(IllegalArgumentException.class, () -> new ChatMessage("user", null));
  }
}
