/* bpe-carry.c: cutting documents that arrive in chunks into segments that encode
 * independently: each chunk's text is appended to what was carried over, the part
 * before gptd_bpe_split_point() is handed on and the rest carried to the next
 * chunk, so a document encodes exactly as it would whole. */
#include "config.h"

#include <string.h>

#include "bpe-plugin.h"

void
gptd_bpe_carry_init (GptdBpeCarry *carry)
{
  memset (carry, 0, sizeof *carry);
  carry->buf = g_string_new (NULL);
}

void
gptd_bpe_carry_clear (GptdBpeCarry *carry)
{
  if (carry->buf)
    g_string_free (carry->buf, TRUE);
  g_free (carry->source);
  g_free (carry->label);
  g_free (carry->record);
  memset (carry, 0, sizeof *carry);
}

void
gptd_bpe_segment_clear (GptdBpeSegment *seg)
{
  g_clear_pointer (&seg->text, g_free);
  g_clear_pointer (&seg->source, g_free);
  g_clear_pointer (&seg->label, g_free);
  g_clear_pointer (&seg->record, g_free);
}

/* Segments larger than this are cut further (where the pre-tokenizer would), so
 * that one large document still keeps several workers busy. */
#define SEGMENT_MAX ((gsize) 1 << 20)

static void
emit_one (GptdBpeCarry *carry, gsize len, gboolean begins, gboolean last, GArray *segments)
{
  /* The bytes as they are: text may hold NULs (U+0000), where g_strndup() would
   * stop and pad the rest with zeros. */
  char *text = g_malloc (len + 1);
  memcpy (text, carry->buf->str, len);
  text[len] = '\0';
  GptdBpeSegment seg = { text, len, carry->offset, begins, last,
                         carry->n_docs, g_strdup (carry->source), g_strdup (carry->label),
                         carry->index, NULL, 0 };
  if (begins)
    {
      seg.record = g_strdup (carry->record);
      seg.prompt_bytes = carry->prompt_bytes;
    }
  g_array_append_val (segments, seg);
  g_string_erase (carry->buf, 0, (gssize) len);
  carry->offset += len;
}

static void
emit (GptdBpeCarry *carry, const GptdBpe *bpe, GptdBpeSpecialMode special, gsize len,
      gboolean begins, gboolean last, GArray *segments)
{
  while (bpe && len > SEGMENT_MAX && carry->prompt_bytes == 0)
    {
      gsize cut = gptd_bpe_split_point (bpe, carry->buf->str, SEGMENT_MAX, special);
      if (cut == 0)
        break;
      emit_one (carry, cut, begins, FALSE, segments);
      begins = FALSE;
      len -= cut;
    }
  emit_one (carry, len, begins, last, segments);
}

void
gptd_bpe_carry_end (GptdBpeCarry *carry, GArray *segments)
{
  if (!carry->open)
    return;
  emit (carry, NULL, GPTD_BPE_SPECIAL_TEXT, carry->buf->len, carry->held, TRUE, segments);
  carry->held = FALSE;
  carry->open = FALSE;
}

void
gptd_bpe_carry_feed (GptdBpeCarry *carry, const GptdBpe *bpe, GptdBpeSpecialMode special,
                     const Gptd__Document *doc, GArray *segments)
{
  const char *source = doc->source ? doc->source : "";
  gboolean begins = FALSE;
  if (!carry->open || carry->index != doc->index || g_strcmp0 (carry->source, source) != 0)
    {
      gptd_bpe_carry_end (carry, segments);
      g_free (carry->source);
      g_free (carry->label);
      g_free (carry->record);
      carry->source = g_strdup (source);
      carry->label = doc->label && *doc->label ? g_strdup (doc->label) : NULL;
      carry->record = doc->record && *doc->record ? g_strdup (doc->record) : NULL;
      carry->prompt_bytes = doc->prompt_bytes;
      carry->index = doc->index;
      carry->offset = doc->offset;
      carry->open = TRUE;
      carry->n_docs++;
      begins = TRUE;
    }
  g_string_append_len (carry->buf, (const char *) doc->text.data, (gssize) doc->text.len);
  if (doc->last)
    {
      emit (carry, bpe, special, carry->buf->len, begins || carry->held, TRUE, segments);
      carry->open = FALSE;
      carry->held = FALSE;
      return;
    }
  if (carry->prompt_bytes > 0)
    {
      carry->held = carry->held || begins;
      return;
    }
  gsize cut = gptd_bpe_split_point (bpe, carry->buf->str, carry->buf->len, special);
  if (cut > 0 || begins)
    emit (carry, bpe, special, cut, begins, FALSE, segments);
}
