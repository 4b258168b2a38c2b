package io.moe4j.infer;

/** One generated continuation: its text, token ids, and why it ended ("eos", "stop", "length"). */
public record Completion(String text, int[] tokens, String finishReason) {}
