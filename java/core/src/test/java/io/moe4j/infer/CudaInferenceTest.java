package io.moe4j.infer;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import io.moe4j.io.HfCheckpoint;
import io.moe4j.nn.ModelConfig;
import io.moe4j.nn.MoeTransformer;
import io.moe4j.ops.Backend;
import io.moe4j.ops.Backends;
import io.moe4j.runtime.CudaSupport;
import io.moe4j.tensor.DType;
import io.moe4j.text.ByteTokenizer;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;
import java.util.Set;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * The same checkpoint on cpu and cuda: greedy generation gives the same tokens and scores agree to
 * f32/bf16 rounding of differently ordered sums (1e-3 relative on the nll). Runs only with a GPU.
 */
@Tag("gpu")
class CudaInferenceTest {

  @TempDir Path dir;

  @Test
  void cpuAndCudaAgreeForEachArchitecture() {
    CudaSupport.Status s = CudaSupport.probe();
    assumeTrue(s.available(), () -> "cuda unavailable: " + s.reason());
    try (Backend cpu = Backends.open("cpu"); Backend cuda = Backends.open("cuda:0")) {
      for (ModelConfig.Architecture arch : ModelConfig.Architecture.values()) {
        ModelConfig c = HfModelInferenceTest.config(arch);
        Path saved = dir.resolve(arch.modelType());
        try (MoeTransformer source = new MoeTransformer(cpu, c, 3)) {
          HfCheckpoint.save(saved, c, source.parameters(), cpu, DType.BF16, Map.of());
        }
        ByteTokenizer tokenizer = new ByteTokenizer();
        GenerationOptions greedy = new GenerationOptions(12, Set.of(), List.of(), SamplingOptions.greedy());
        try (LoadedModel a = LoadedModel.load(saved, cpu, DType.BF16); LoadedModel b = LoadedModel.load(saved, cuda, DType.BF16)) {
          List<Completion> ca = new TextGenerator(a.model(), tokenizer, TextGenerator.bosThenText(tokenizer))
              .generate(List.of("add:12+7=", "sort:dcba="), greedy, null);
          List<Completion> cb = new TextGenerator(b.model(), tokenizer, TextGenerator.bosThenText(tokenizer))
              .generate(List.of("add:12+7=", "sort:dcba="), greedy, null);
          for (int i = 0; i < ca.size(); i++) assertArrayEquals(ca.get(i).tokens(), cb.get(i).tokens(), arch + " prompt " + i);
          ScoreResult sa = new Scorer(a.model(), TextGenerator.bosThenText(tokenizer)).score("hello moe4j");
          ScoreResult sb = new Scorer(b.model(), TextGenerator.bosThenText(tokenizer)).score("hello moe4j");
          for (int i = 0; i < sa.nll().length; i++) assertEquals(sa.nll()[i], sb.nll()[i], 1e-3 * Math.abs(sa.nll()[i]) + 1e-4);
        }
      }
    }
  }
}
