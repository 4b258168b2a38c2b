package io.moe4j.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** {@code moe4j bench train --quick} on the cpu: whole training steps timed, op-family shares, JSON and chart. */
class BenchTrainTest {

  @Test
  void quickRunTimesTrainingStepsAndSplitsThemByOpFamily(@TempDir Path dir) throws Exception {
    Path json = dir.resolve("train.json");
    InfoCommandTest.Result r = InfoCommandTest.run("bench", "train", "--device", "cpu", "--quick", "--json", json.toString());
    assertEquals(0, r.code(), r.err());
    assertTrue(Files.size(dir.resolve("train.png")) > 0);
    JsonNode cases = new ObjectMapper().readTree(json.toFile());
    assertEquals(1, cases.size(), cases.toString());
    JsonNode demo = cases.get(0);
    assertEquals("demo", demo.get("caseName").asText());
    assertEquals("GFLOP/s", demo.get("unit").asText());
    assertTrue(demo.get("timing").get("medianMs").asDouble() > 0);
    double fraction = demo.get("fractionOfPeak").asDouble();
    assertTrue(fraction > 0 && fraction < 1.2, "fraction of the measured FMA peak: " + fraction);
    Matcher m = Pattern.compile("([0-9.]+) tokens/s.*attention (\\d+)%, routing (\\d+)%, expert GEMM (\\d+)%, other (\\d+)%")
        .matcher(demo.get("shape").asText());
    assertTrue(m.find(), demo.get("shape").asText());
    assertTrue(Double.parseDouble(m.group(1)) > 0, "tokens/s");
    int sum = 0;
    for (int g = 2; g <= 5; g++) sum += Integer.parseInt(m.group(g));
    assertTrue(Math.abs(sum - 100) <= 2, "shares add up to the step (rounded): " + sum);
    assertTrue(Integer.parseInt(m.group(4)) > 0, "expert GEMM takes part of a MoE step");
  }
}
