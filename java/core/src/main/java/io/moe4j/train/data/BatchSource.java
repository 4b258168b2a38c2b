package io.moe4j.train.data;

/**
 * An endless, seeded stream of training batches whose whole state is one {@code long}, so a trainer
 * checkpoints it with the step and resumes bit-exactly.
 */
public interface BatchSource {

    Batch nextBatch(int batchSize);

    int seqLen();

    /** The stream's state now; {@link #restore(long)} with it continues identically. */
    long position();

    void restore(long position);
}
