/* bench/tokenizer/bpe-naive-train.h: a straightforward BPE trainer, the baseline
 * the benchmark compares gptd's trainer with and the reference its tests check
 * it against. Each step recounts every adjacent pair of every word.
 */
#ifndef GPTD_BPE_NAIVE_TRAIN_H
#define GPTD_BPE_NAIVE_TRAIN_H

#include <glib.h>

/* Trains on texts[0, n_texts) (pieces of the GPT-2 pre-tokenizer; occurrences of
 * the special tokens cut the text and are not learned from) until there are
 * vocab_size tokens, special tokens included, or no pair occurs twice. The same
 * rules as gptd_bpe_trainer_train(): most frequent pair, ties to the smaller left
 * id then the smaller right id, ids 0-255 the bytes in GPT-2's order.
 *
 * Returns the byte strings of the tokens in id order, special tokens last (a
 * GPtrArray of GBytes). */
GPtrArray *gptd_naive_bpe_train (const char *const *texts,
                                 const gsize        *lens,
                                 guint               n_texts,
                                 const char *const  *special,
                                 guint               vocab_size);

#endif
