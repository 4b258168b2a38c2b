package io.moe4j.train;

import io.moe4j.train.data.Batch;
import io.moe4j.train.data.SyntheticTask;
import io.moe4j.train.data.SyntheticTasks;
import io.moe4j.train.data.TextDataset;
import java.util.List;

/**
 * What the {@link Trainer} draws batches from: the synthetic tasks or a text dataset, behind one
 * small interface. The position is one long (the data generator's state), so a checkpoint can
 * store it and a resumed run draws exactly the batches the uninterrupted run would have.
 */
public interface TrainingData {

  /** The next training batch of {@code batchSize} rows of {@link #seqLen()} tokens. */
  Batch nextBatch(int batchSize);

  int seqLen();

  /** The stream position; {@link #restore(long)} with it continues identically. */
  long position();

  void restore(long position);

  /** Names of the tasks that {@link Batch#taskIds()} index (empty for plain text). */
  List<String> taskNames();

  /** The tasks batches are drawn from (synthetic data; empty for plain text), kept in checkpoints. */
  default List<String> trainedTasks() {
    return List.of();
  }

  static TrainingData synthetic(SyntheticTasks tasks) {
    if (tasks == null) throw new IllegalArgumentException("tasks must not be null");
    return new TrainingData() {
      @Override
      public Batch nextBatch(int batchSize) {
        return tasks.nextBatch(batchSize);
      }

      @Override
      public int seqLen() {
        return tasks.seqLen();
      }

      @Override
      public long position() {
        return tasks.position();
      }

      @Override
      public void restore(long position) {
        tasks.restore(position);
      }

      @Override
      public List<String> taskNames() {
        // Batch task ids are SyntheticTask ids over the whole enum, not indexes into this subset.
        return java.util.Arrays.stream(SyntheticTask.values()).map(Enum::name).toList();
      }

      @Override
      public List<String> trainedTasks() {
        return tasks.tasks().stream().map(Enum::name).toList();
      }
    };
  }

  static TrainingData text(TextDataset dataset) {
    if (dataset == null) throw new IllegalArgumentException("dataset must not be null");
    return new TrainingData() {
      @Override
      public Batch nextBatch(int batchSize) {
        return dataset.nextTrainBatch(batchSize);
      }

      @Override
      public int seqLen() {
        return dataset.seqLen();
      }

      @Override
      public long position() {
        return dataset.position();
      }

      @Override
      public void restore(long position) {
        dataset.restore(position);
      }

      @Override
      public List<String> taskNames() {
        return List.of();
      }
    };
  }
}
