package io.moe4j.text;

/** One turn of a conversation: {@code role} is "system", "user", "assistant" or "tool". */
public record ChatMessage(String role, String content) {

  public ChatMessage {
    if (role == null || role.isBlank()) {
      throw new IllegalArgumentException("chat message role must be a non-empty string, got " + role);
    }
    if (content == null) {
      throw new IllegalArgumentException("chat message content must not be null (role " + role + ")");
    }
  }

  public static ChatMessage system(String content) {
    return new ChatMessage("system", content);
  }

  public static ChatMessage user(String content) {
    return new ChatMessage("user", content);
  }

  public static ChatMessage assistant(String content) {
    return new ChatMessage("assistant", content);
  }
}
