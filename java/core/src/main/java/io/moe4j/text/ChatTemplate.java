package io.moe4j.text;

import io.moe4j.text.jinja.JinjaTemplate;
import io.moe4j.text.jinja.TemplateException;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * Turns a conversation into the prompt text a chat model was trained on, as transformers'
 * {@code apply_chat_template(messages, tokenize=False, add_generation_prompt=...)} does: the model's
 * Jinja template from {@code tokenizer_config.json} rendered with {@code messages}, {@code
 * add_generation_prompt}, {@code bos_token} and {@code eos_token} (and any extra variables, e.g.
 * Qwen3's {@code enable_thinking}). Tokenize the result with {@link Tokenizer#encode} (no specials
 * added: the template writes them).
 *
 * <p>Models without a template get the plain fallback: one {@code "<role>: <content>\n"} line per
 * message, then {@code "assistant: "} when a generation prompt is asked for.
 */
public final class ChatTemplate {

  private final JinjaTemplate template;
  private final String bosToken;
  private final String eosToken;

  private ChatTemplate(JinjaTemplate template, String bosToken, String eosToken) {
    this.template = template;
    this.bosToken = bosToken;
    this.eosToken = eosToken;
  }

  /**
   * @param bosToken the text of bos, or null when the model has none (the template sees "")
   * @throws IllegalArgumentException if the template does not parse (names the line)
   */
  public static ChatTemplate of(String jinjaSource, String bosToken, String eosToken) {
    if (jinjaSource == null) {
      throw new IllegalArgumentException("chat template source must not be null");
    }
    try {
      return new ChatTemplate(JinjaTemplate.parse(jinjaSource), bosToken, eosToken);
    } catch (TemplateException e) {
      throw new IllegalArgumentException("chat template does not parse: " + e.getMessage(), e);
    }
  }

  /** The documented fallback for models that ship no template. */
  public static ChatTemplate plain(String bosToken, String eosToken) {
    return new ChatTemplate(null, bosToken, eosToken);
  }

  public boolean isPlain() {
    return template == null;
  }

  public String render(List<ChatMessage> messages, boolean addGenerationPrompt) {
    return render(messages, addGenerationPrompt, Map.of());
  }

  /**
   * @param extra more template variables (strings, numbers, booleans, lists, maps)
   * @throws IllegalArgumentException if the template rejects the conversation (its {@code
   *     raise_exception} message) or fails to render
   */
  public String render(List<ChatMessage> messages, boolean addGenerationPrompt, Map<String, ?> extra) {
    if (messages == null) {
      throw new IllegalArgumentException("messages must not be null");
    }
    if (template == null) {
      StringBuilder sb = new StringBuilder();
      for (ChatMessage m : messages) {
        sb.append(m.role()).append(": ").append(m.content()).append('\n');
      }
      if (addGenerationPrompt) {
        sb.append("assistant: ");
      }
      return sb.toString();
    }
    List<Map<String, Object>> list = new ArrayList<>(messages.size());
    for (ChatMessage m : messages) {
      Map<String, Object> map = new LinkedHashMap<>();
      map.put("role", m.role());
      map.put("content", m.content());
      list.add(map);
    }
    Map<String, Object> ctx = new HashMap<>(extra == null ? Map.of() : extra);
    ctx.put("messages", list);
    ctx.put("add_generation_prompt", addGenerationPrompt);
    ctx.put("bos_token", bosToken == null ? "" : bosToken);
    ctx.put("eos_token", eosToken == null ? "" : eosToken);
    try {
      return template.render(ctx);
    } catch (TemplateException e) {
      throw new IllegalArgumentException("chat template: " + e.getMessage(), e);
    }
  }
}
