package io.moe4j.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import io.moe4j.runtime.CudaSupport;
import java.io.ByteArrayOutputStream;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import org.junit.jupiter.api.Test;

class InfoCommandTest {

  record Result(int code, String out, String err) {}

  static Result run(String... args) {
    ByteArrayOutputStream out = new ByteArrayOutputStream(), err = new ByteArrayOutputStream();
    int code = Main.run(args, new PrintStream(out, true, StandardCharsets.UTF_8), new PrintStream(err, true, StandardCharsets.UTF_8));
    return new Result(code, out.toString(StandardCharsets.UTF_8), err.toString(StandardCharsets.UTF_8));
  }

  @Test
  void jsonListsBackendsWithReasons() throws Exception {
    Result r = run("info", "--json");
    assertEquals(0, r.code(), r.err());
    JsonNode info = new ObjectMapper().readTree(r.out());
    assertFalse(info.get("version").asText().isEmpty());
    assertTrue(info.get("libraries").get("cpu").get("path").asText().endsWith("libmoe4j_cpu.so"));
    assertTrue(info.get("libraries").get("cpu").get("build").has("flags"));
    assertTrue(info.get("cpu").get("cores").asInt() >= 1);
    JsonNode backends = info.get("backends");
    assertEquals("cpu", backends.get(0).get("name").asText());
    assertTrue(backends.get(0).get("available").asBoolean());
    JsonNode cuda = backends.get(1);
    assertEquals("cuda", cuda.get("name").asText());
    CudaSupport.Status s = CudaSupport.probe();
    assertEquals(s.available(), cuda.get("available").asBoolean());
    if (!s.available()) assertEquals(s.reason(), cuda.get("reason").asText());
    assertEquals(s.available() ? "cuda:0" : "cpu", info.get("default_device").asText());
  }

  @Test
  void textReportNamesEverySection() {
    Result r = run("info");
    assertEquals(0, r.code(), r.err());
    for (String section : new String[] {"moe4j ", "java ", "cpu ", "libmoe4j_cpu", "libmoe4j_cuda", "cublas", "backends", "simd in use"})
      assertTrue(r.out().contains(section), "missing " + section + " in:\n" + r.out());
  }

  @Test
  void badUsageExitsWithTwo() {
    assertEquals(2, run().code());
    assertEquals(2, run("frobnicate").code());
    Result r = run("info", "--bogus");
    assertEquals(2, r.code());
    assertTrue(r.err().contains("--bogus"), r.err());
  }
}
