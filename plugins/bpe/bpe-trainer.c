/* bpe-trainer.c: the `bpe-trainer` stage — learns a byte-level BPE vocabulary from
 * the Documents it receives and writes it as encoder.json + vocab.bpe into the
 * directory path=, where bpe-tokenizer (vocab=that directory) can load it. */
#include "config.h"

#include <string.h>

#include "bpe-plugin.h"

typedef struct {
  GptdBpeTrainer *trainer;
  GptdBpe        *cutter;    /* a vocabulary with the same special tokens, to cut chunks */
  char           *path;
  guint           vocab_size;
  GptdBpeCarry    carry;
  GArray         *segments;
  guint64         n_bytes;
} Trainer;

static const GptdParamSpec trainer_params[] = {
  { "path", GPTD_PARAM_PATH, NULL, 0, 0, NULL,
    "Directory to write the vocabulary to (encoder.json and vocab.bpe; created if "
    "missing)", GPTD_PARAM_REQUIRED },
  { "vocab-size", GPTD_PARAM_INT, "50257", 257, 16777215, NULL,
    "Tokens in the vocabulary: 256 bytes, the merges learned, and the special tokens", 0 },
  { "special", GPTD_PARAM_STRING, "<|endoftext|>", 0, 0, NULL,
    "Comma-separated special tokens (each like <|...|> or [...]), given the last ids; "
    "their text in the documents is not learned from", 0 },
  { NULL }
};

static const GptdPadSpec trainer_inputs[] = {
  { "default", "gptd.Document", 0 },
  { NULL }
};

static void
trainer_destroy (gpointer data)
{
  Trainer *t = data;
  if (!t)
    return;
  gptd_bpe_trainer_free (t->trainer);
  gptd_bpe_unref (t->cutter);
  g_free (t->path);
  gptd_bpe_carry_clear (&t->carry);
  if (t->segments)
    {
      for (guint i = 0; i < t->segments->len; i++)
        gptd_bpe_segment_clear (&g_array_index (t->segments, GptdBpeSegment, i));
      g_array_free (t->segments, TRUE);
    }
  g_free (t);
}

static gpointer
trainer_create (GptdStageContext *ctx, const GptdParams *params, GError **error)
{
  Trainer *t = g_new0 (Trainer, 1);
  t->path = g_strdup (gptd_params_get_string (params, "path"));
  t->vocab_size = (guint) gptd_params_get_int (params, "vocab-size");
  g_auto (GStrv) items = g_strsplit (gptd_params_get_string (params, "special"), ",", -1);
  g_autoptr (GPtrArray) special = g_ptr_array_new ();
  for (guint i = 0; items[i]; i++)
    {
      char *s = g_strstrip (items[i]);
      if (*s)
        g_ptr_array_add (special, s);
    }
  g_ptr_array_add (special, NULL);
  t->trainer = gptd_bpe_trainer_new ((const char *const *) special->pdata, error);
  if (!t->trainer)
    {
      g_prefix_error (error, "special: ");
      trainer_destroy (t);
      return NULL;
    }
  /* Cutting chunks needs only the special tokens: an empty training gives a
   * vocabulary of the bytes and the special tokens. */
  g_autoptr (GptdBpeTrainer) empty = gptd_bpe_trainer_new ((const char *const *) special->pdata, NULL);
  t->cutter = gptd_bpe_trainer_train (empty, 256 + special->len - 1, error);
  if (!t->cutter)
    {
      trainer_destroy (t);
      return NULL;
    }
  gptd_bpe_carry_init (&t->carry);
  t->segments = g_array_new (FALSE, FALSE, sizeof (GptdBpeSegment));
  return t;
}

/* The first byte of @text that is not valid UTF-8. NUL is valid (U+0000), where
 * g_utf8_validate() stops: the runs between NULs are validated instead. */
static const char *
first_invalid (const char *text, gsize len)
{
  const char *p = text, *end = text + len;
  while (p < end)
    {
      const char *nul = memchr (p, '\0', (gsize) (end - p));
      gsize n = nul ? (gsize) (nul - p) : (gsize) (end - p);
      const char *bad = NULL;
      if (!g_utf8_validate_len (p, n, &bad))
        return bad;
      p += n + (nul ? 1 : 0);
    }
  return end;
}

static gboolean
add_segments (Trainer *t, GError **error)
{
  gboolean ok = TRUE;
  for (guint i = 0; i < t->segments->len; i++)
    {
      GptdBpeSegment *seg = &g_array_index (t->segments, GptdBpeSegment, i);
      if (ok && !gptd_bpe_trainer_add_text (t->trainer, seg->text, seg->len, NULL))
        {
          const char *end = first_invalid (seg->text, seg->len);
          g_set_error (error, GPTD_BPE_ERROR, GPTD_BPE_ERROR_INVALID_UTF8,
                       "%s: invalid UTF-8 at byte offset %" G_GUINT64_FORMAT, seg->source,
                       seg->offset + (guint64) (end - seg->text));
          ok = FALSE;
        }
      t->n_bytes += seg->len;
      gptd_bpe_segment_clear (seg);
    }
  g_array_set_size (t->segments, 0);
  return ok;
}

static gboolean
trainer_process (gpointer data, GptdStageContext *ctx, guint input, const ProtobufCMessage *msg,
                 GError **error)
{
  Trainer *t = data;
  gptd_bpe_carry_feed (&t->carry, t->cutter, GPTD_BPE_SPECIAL_ALLOWED,
                       (const Gptd__Document *) msg, t->segments);
  return add_segments (t, error);
}

static gboolean
trainer_finish (gpointer data, GptdStageContext *ctx, GError **error)
{
  Trainer *t = data;
  gptd_bpe_carry_end (&t->carry, t->segments);
  if (!add_segments (t, error))
    return FALSE;
  gint64 t0 = g_get_monotonic_time ();
  g_autoptr (GptdBpe) bpe = gptd_bpe_trainer_train (t->trainer, t->vocab_size, error);
  if (!bpe || !gptd_bpe_save (bpe, t->path, error))
    return FALSE;
  guint n = gptd_bpe_get_n_vocab (bpe);
  gptd_stage_log (ctx, G_LOG_LEVEL_INFO,
                  "trained a vocabulary of %u tokens on %" G_GUINT64_FORMAT " bytes of "
                  "%" G_GUINT64_FORMAT " document%s in %.2f s; wrote %s", n, t->n_bytes,
                  t->carry.n_docs, t->carry.n_docs == 1 ? "" : "s",
                  (g_get_monotonic_time () - t0) / 1e6, t->path);
  if (n < t->vocab_size)
    gptd_stage_log (ctx, G_LOG_LEVEL_WARNING,
                    "the text ran out of pairs that occur twice: %u tokens instead of %u",
                    n, t->vocab_size);
  return TRUE;
}

const GptdStageType gptd__bpe_trainer_type = {
  .name = "bpe-trainer",
  .description = "Learns a byte-level BPE vocabulary from Documents and writes it as "
                 "encoder.json + vocab.bpe",
  .params = trainer_params,
  .inputs = trainer_inputs,
  .outputs = NULL,
  .create = trainer_create,
  .process = trainer_process,
  .finish = trainer_finish,
  .destroy = trainer_destroy,
};
