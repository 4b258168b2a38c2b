package io.moe4j.nn;

/**
 * Where the modules of a model get their parameters: fresh seeded values for training
 * ({@link RandomInit}) or the tensors of a checkpoint ({@code io.moe4j.io.CheckpointWeights}). Modules only say
 * what they need: the HF name, whether it is a projection matrix (random normal, weight decay), the
 * token embedding (random normal, no decay) or a norm scale (ones, no decay), and the shape.
 */
public interface ParameterSource {

  enum Kind {
    /** A projection matrix (an untied LM head too): N(0, initializerRange²), weight decay. */
    MATRIX,
    /** The token embedding (and so a tied LM head): N(0, initializerRange²), no weight decay. */
    EMBEDDING,
    /** An RMSNorm scale: ones, no weight decay. */
    NORM
  }

  Parameter create(String name, Kind kind, long... shape);
}
