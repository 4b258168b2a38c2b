package io.moe4j.infer;

import java.util.List;
import java.util.Set;

/**
 * When generation stops: after maxNewTokens, on any of the eos ids (not emitted), or when the text
 * contains one of the stop strings (the text is cut before it).
 */
public record GenerationOptions(int maxNewTokens, Set<Integer> eosIds, List<String> stopStrings, SamplingOptions sampling) {

  public GenerationOptions {
    if (maxNewTokens < 0) throw new IllegalArgumentException("max new tokens must be >= 0, got " + maxNewTokens);
    eosIds = Set.copyOf(eosIds);
    stopStrings = List.copyOf(stopStrings);
    for (String s : stopStrings)
      if (s.isEmpty()) throw new IllegalArgumentException("stop strings must not be empty");
    if (sampling == null) throw new IllegalArgumentException("sampling must not be null");
  }
}
