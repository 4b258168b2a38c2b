package io.moe4j.text;

import java.util.OptionalInt;

/**
 * Text to token ids and back. Implementations are immutable and thread-safe.
 *
 * <p>{@link #encode} never adds special tokens: callers decide where bos/eos go (training data puts
 * bos before a prompt and eos after its answer), so one tokenizer serves both packing and prompting.
 */
public interface Tokenizer {

    /** Token ids of {@code text}, without any special token. */
    int[] encode(String text);

    /**
     * Text of {@code ids}. Special tokens are omitted; byte sequences that are not valid UTF-8 decode
     * to U+FFFD replacement characters, so a half-generated multi-byte character never throws.
     *
     * @throws IllegalArgumentException if an id is outside {@code [0, vocabSize())}
     */
    String decode(int[] ids);

    int vocabSize();

    int bosId();

    int eosId();

    int padId();

    /** Id of a special token given by its text (e.g. {@code "<|endoftext|>"}), empty if none. */
    OptionalInt tokenId(String token);

    /** True for bos, eos, pad and any other id that {@link #decode} omits. */
    boolean isSpecial(int id);
}
