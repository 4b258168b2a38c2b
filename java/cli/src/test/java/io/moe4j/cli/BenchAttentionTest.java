package io.moe4j.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** {@code moe4j bench attention --quick} on the cpu: tables, JSON fields, the naive baseline and the chart. */
class BenchAttentionTest {

  @Test
  void quickRunWritesEveryFamilyWithSameRunBaselines(@TempDir Path dir) throws Exception {
    Path json = dir.resolve("attention.json");
    InfoCommandTest.Result r = InfoCommandTest.run("bench", "attention", "--device", "cpu", "--quick", "--json", json.toString());
    assertEquals(0, r.code(), r.err());
    for (String table : new String[] {"forward", "backward (2.5x fwd)", "decode", "vs naive", "of copy"})
      assertTrue(r.out().contains(table), "missing '" + table + "' in:\n" + r.out());
    assertTrue(Files.size(dir.resolve("attention.png")) > 0);

    JsonNode cases = new ObjectMapper().readTree(json.toFile());
    List<String> families = new ArrayList<>();
    cases.forEach(c -> families.add(c.get("family").asText()));
    assertEquals(List.of("forward", "backward", "decode"), families);

    JsonNode fwd = cases.get(0);
    assertEquals("fwd S=512 D=64 causal", fwd.get("caseName").asText());
    assertTrue(fwd.get("timing").get("medianMs").asDouble() > 0);
    assertTrue(fwd.get("throughput").asDouble() > 0);
    double naiveMs = fwd.get("baselines").get("naive_materialized").get("timing").get("medianMs").asDouble();
    assertEquals(naiveMs / fwd.get("timing").get("medianMs").asDouble(),
        fwd.get("ratios").get("vs_naive_materialized").asDouble(), 1e-9);
    // the baseline computes the same function: f32 outputs agree to rounding
    assertTrue(fwd.get("max_abs_diff_vs_naive").asDouble() < 1e-5, fwd.toString());
    JsonNode scratch = fwd.get("scratchBytes");
    // by construction: flash keeps tiles only; naive holds an S×S f32 matrix per thread (S = 512)
    assertTrue(scratch.get("naiveBytes").asLong() >= 512L * 512 * 4, scratch.toString());
    assertTrue(scratch.get("flashBytes").asLong() < scratch.get("naiveBytes").asLong(), scratch.toString());

    JsonNode bwd = cases.get(1);
    assertTrue(bwd.get("fwd_bwd_throughput").asDouble() > 0);
    JsonNode decode = cases.get(2);
    assertEquals("GB/s", decode.get("unit").asText());
    double copy = decode.get("baselines").get("copy_bandwidth").get("throughput").asDouble();
    assertEquals(decode.get("throughput").asDouble() / copy, decode.get("ratios").get("of_copy_bandwidth").asDouble(), 1e-9);
  }
}
