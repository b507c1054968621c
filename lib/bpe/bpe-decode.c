/* lib/bpe/bpe-decode.c: decoding token ids to bytes, and the incremental decoder
 * that emits only complete UTF-8 characters while tokens stream in.
 */
#include "bpe/bpe-internal.h"

static gboolean
check_id (const GptdBpe *bpe, guint32 id, gsize index, GError **error)
{
  if (G_LIKELY (id < bpe->n_vocab && bpe->tok_kind[id] != 0))
    return TRUE;
  g_set_error (error, GPTD_BPE_ERROR, GPTD_BPE_ERROR_UNKNOWN_ID,
               "token id %u (at position %" G_GSIZE_FORMAT ") is not in the vocabulary %s "
               "(%u ids)", id, index, bpe->source, bpe->n_vocab);
  return FALSE;
}

gboolean
gptd_bpe_decode (const GptdBpe  *bpe,
                 const guint32  *ids,
                 gsize           n_ids,
                 GString        *out,
                 GError        **error)
{
  g_return_val_if_fail (bpe != NULL, FALSE);
  g_return_val_if_fail (ids != NULL || n_ids == 0, FALSE);
  g_return_val_if_fail (out != NULL, FALSE);

  gsize total = 0;
  for (gsize i = 0; i < n_ids; i++)
    {
      if (!check_id (bpe, ids[i], i, error))
        return FALSE;
      total += bpe->tok_off[ids[i] + 1] - bpe->tok_off[ids[i]];
    }
  gsize old = out->len;
  g_string_set_size (out, old + total);
  char *p = out->str + old;
  for (gsize i = 0; i < n_ids; i++)
    {
      guint32 off = bpe->tok_off[ids[i]], n = bpe->tok_off[ids[i] + 1] - off;
      memcpy (p, bpe->tok_bytes + off, n);
      p += n;
    }
  return TRUE;
}

struct _GptdBpeDecoder {
  GptdBpe    *bpe;
  GByteArray *buf;      /* held-back bytes, then the new token's */
  guint64     n_pushed; /* for messages */
};

GptdBpeDecoder *
gptd_bpe_decoder_new (GptdBpe *bpe)
{
  g_return_val_if_fail (bpe != NULL, NULL);
  GptdBpeDecoder *d = g_new0 (GptdBpeDecoder, 1);
  d->bpe = gptd_bpe_ref (bpe);
  d->buf = g_byte_array_new ();
  return d;
}

void
gptd_bpe_decoder_free (GptdBpeDecoder *decoder)
{
  if (!decoder)
    return;
  gptd_bpe_unref (decoder->bpe);
  g_byte_array_unref (decoder->buf);
  g_free (decoder);
}

/* Appends buf's complete characters to out (invalid parts as U+FFFD) and keeps
 * only a trailing incomplete character, unless final. */
static void
flush (GptdBpeDecoder *d, GString *out, gboolean final)
{
  const guint8 *b = d->buf->data;
  gsize n = d->buf->len, i = 0;
  while (i < n)
    {
      gsize ok = gptd__bpe_utf8_find_invalid (b + i, n - i);
      g_string_append_len (out, (const char *) b + i, (gssize) ok);
      i += ok;
      if (i >= n)
        break;
      if (!final && gptd__bpe_utf8_is_incomplete (b + i, n - i))
        break;
      g_string_append (out, "\xEF\xBF\xBD");
      i += gptd__bpe_utf8_invalid_len (b + i, n - i);
    }
  g_byte_array_remove_range (d->buf, 0, (guint) i);
}

gboolean
gptd_bpe_decoder_push (GptdBpeDecoder *decoder,
                       guint32         id,
                       GString        *out,
                       GError        **error)
{
  g_return_val_if_fail (decoder != NULL, FALSE);
  g_return_val_if_fail (out != NULL, FALSE);
  const GptdBpe *bpe = decoder->bpe;
  if (!check_id (bpe, id, decoder->n_pushed, error))
    return FALSE;
  decoder->n_pushed++;
  guint32 off = bpe->tok_off[id], n = bpe->tok_off[id + 1] - off;
  if (decoder->buf->len == 0 && gptd__bpe_utf8_find_invalid (bpe->tok_bytes + off, n) == n)
    {
      g_string_append_len (out, (const char *) bpe->tok_bytes + off, n);
      return TRUE;
    }
  g_byte_array_append (decoder->buf, bpe->tok_bytes + off, n);
  flush (decoder, out, FALSE);
  return TRUE;
}

void
gptd_bpe_decoder_finish (GptdBpeDecoder *decoder, GString *out)
{
  g_return_if_fail (decoder != NULL);
  g_return_if_fail (out != NULL);
  flush (decoder, out, TRUE);
  decoder->n_pushed = 0;
}
