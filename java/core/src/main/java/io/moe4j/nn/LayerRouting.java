package io.moe4j.nn;

/**
 * What the router of one MoE layer did in a forward pass.
 *
 * @param expertTokens assignments each expert received (after capacity dropping)
 * @param droppedFraction assignments dropped by capacity (token choice) or tokens no expert chose
 *     (Expert Choice), as a fraction of T·k (resp. T)
 * @param tokenExperts [T·k] expert of each (token, slot), -1 where dropped or unchosen
 * @param k slots per token (top-k; E for Expert Choice)
 */
public record LayerRouting(int layer, long[] expertTokens, double droppedFraction, int[] tokenExperts, int k) {}
