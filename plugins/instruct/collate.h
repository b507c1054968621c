/* collate.h: the instruction data set behind the instruction-collator stage (the
 * book's InstructionDataset, its 85/10/5 split and custom_collate_fn).
 *
 * Records are token sequences (a prompt of prompt_tokens ids followed by the
 * response). They are split in record order into consecutive parts as the book
 * does it (train = data[:int(n * 0.85)], test = the next int(n * 0.1), validation
 * = the rest), grouped into batches in order or in a seeded shuffled order, and
 * each batch is collated exactly as custom_collate_fn does:
 *
 *   batch_max_length = max(len(item) + 1 for item in batch)
 *   padded  = item + [pad] + [pad] * (batch_max_length - len(item) - 1)
 *   inputs  = padded[:-1];  targets = padded[1:]
 *   every target equal to pad except the first -> ignore_index
 *   (mask-prompt, the book's exercise 7.2) targets[:prompt_tokens - 1] -> ignore_index
 *   inputs, targets = inputs[:allowed_max_length], targets[:allowed_max_length]
 *
 * Everything here is plain computation without a stage context, so it is tested
 * directly.
 */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

/* The most splits a record list can be cut into. */
#define GPTD__INSTRUCT_MAX_SPLITS 3

typedef struct {
  guint32 pad_id;
  gint32 ignore_index;
  guint64 allowed_max_length;  /* 0: no truncation */
  gboolean mask_prompt;
} GptdCollateOptions;

/* Returns the sequence length of a collated batch whose longest record has
 * @max_len ids: min(max_len, allowed_max_length). */
guint64 gptd__collate_seq_len (guint64 max_len, guint64 allowed_max_length);

/* Collates one record of @len ids (@prompt_tokens of them the prompt) into a
 * batch of records of at most @max_len ids: writes the first @seq_len inputs and
 * targets of the row (seq_len from gptd__collate_seq_len()). @scratch has room
 * for @max_len + 1 ids. */
void gptd__collate_row (const guint32 *ids, guint64 len, guint64 prompt_tokens,
                        guint64 max_len, guint64 seq_len,
                        const GptdCollateOptions *opts, gint32 *scratch,
                        gint32 *inputs, gint32 *targets);

/* Cuts @n records into @n_fractions consecutive parts as the book does:
 * part k (k < n_fractions - 1) has int(n * f_k) records, and the last part has
 * the rest when the fractions sum to 1 (within 1e-9), else int(n * f_last).
 * @bounds has @n_fractions + 1 entries. */
void gptd__instruct_split_bounds (guint64 n, const double *fractions,
                                  guint n_fractions, guint64 *bounds);

/* ---- The data set ---------------------------------------------------------- */

typedef struct _GptdInstructSet GptdInstructSet;

GptdInstructSet *gptd__instruct_set_new (void);
void gptd__instruct_set_free (GptdInstructSet *set);

/* Appends a record of @n ids whose first @prompt_tokens ids are the prompt. */
void gptd__instruct_set_add (GptdInstructSet *set, const guint32 *ids, gsize n,
                             guint32 prompt_tokens);
guint64 gptd__instruct_set_n_records (const GptdInstructSet *set);
/* The ids of record @i (in arrival order) and their number. */
const guint32 *gptd__instruct_set_record (const GptdInstructSet *set, guint64 i,
                                          guint64 *len, guint64 *prompt_tokens);

/* Lays out the splits: the records (in arrival order, or permuted by
 * @record_key when @shuffle_records) are cut by gptd__instruct_split_bounds();
 * batches of @batch_size; the last partial batch of split @drop_last_split is
 * dropped (-1: of none). Call once every record has been added. */
void gptd__instruct_set_layout (GptdInstructSet *set, const double *fractions,
                                guint n_fractions, guint64 batch_size,
                                int drop_last_split, gboolean shuffle_records,
                                guint64 record_key);

guint gptd__instruct_set_n_splits (const GptdInstructSet *set);
/* Records and batches of split @k. */
guint64 gptd__instruct_set_split_records (const GptdInstructSet *set, guint k);
guint64 gptd__instruct_set_split_batches (const GptdInstructSet *set, guint k);

/* Fills @order (split_records(k) entries) with the split's record positions
 * in serving order: in order, or shuffled by Fisher-Yates keyed by @key. */
void gptd__instruct_set_order (const GptdInstructSet *set, guint k, gboolean shuffle,
                               guint64 key, guint64 *order);

/* Collates batch @b of split @k in @order into @inputs and @targets (room for
 * batch_size * the longest record's length). Sets *rows, *seq_len and, when
 * @lengths is not NULL, each row's unpadded length (at most seq_len). */
void gptd__instruct_set_collate (const GptdInstructSet *set, guint k,
                                 const guint64 *order, guint64 b,
                                 const GptdCollateOptions *opts, gint32 *inputs,
                                 gint32 *targets, guint32 *lengths, guint *rows,
                                 guint64 *seq_len);

/* The largest record length (ids). */
guint64 gptd__instruct_set_max_len (const GptdInstructSet *set);

G_DEFINE_AUTOPTR_CLEANUP_FUNC (GptdInstructSet, gptd__instruct_set_free)

G_END_DECLS
