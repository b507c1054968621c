/* utf8.c: the UTF-8 check that the core sources (text-source, table-source) apply to
 * the text they read: invalid UTF-8 is an error naming where it is and its byte
 * offset, or (invalid=replace) is replaced with U+FFFD and a warning is logged. NUL is
 * valid UTF-8 (U+0000) and passes as it is. */
#include "config.h"

#include <string.h>

#include "core.h"

/* g_utf8_validate() refuses NUL, which is valid UTF-8 (U+0000): validates the
 * runs between NULs instead. Sets *bad to the first invalid byte. */
static gboolean
utf8_validate_with_nul (const char *data, gsize len, const char **bad)
{
  const char *p = data, *end = data + len;
  while (p < end)
    {
      const char *nul = memchr (p, '\0', (gsize) (end - p));
      gsize n = nul ? (gsize) (nul - p) : (gsize) (end - p);
      if (!g_utf8_validate_len (p, n, bad))
        return FALSE;
      p += n + (nul ? 1 : 0);
    }
  return TRUE;
}

/* g_utf8_make_valid() for text that may hold NULs, which it would replace. */
static char *
utf8_make_valid_with_nul (const char *data, gsize len, gsize *out_len)
{
  GString *out = g_string_sized_new (len + 16);
  const char *p = data, *end = data + len;
  while (p < end)
    {
      const char *nul = memchr (p, '\0', (gsize) (end - p));
      gsize n = nul ? (gsize) (nul - p) : (gsize) (end - p);
      g_autofree char *fixed = g_utf8_make_valid (p, (gssize) n);
      g_string_append (out, fixed);
      if (nul)
        g_string_append_c (out, '\0');
      p += n + (nul ? 1 : 0);
    }
  *out_len = out->len;
  return g_string_free (out, FALSE);
}

gboolean
gptd__core_check_utf8 (GptdStageContext *ctx, const char *where, guint64 offset,
                       const guint8 *data, gsize len, gboolean replace, char **fixed,
                       gsize *fixed_len, GError **error)
{
  const char *bad = NULL;

  if (fixed)
    *fixed = NULL;
  if (utf8_validate_with_nul ((const char *) data, len, &bad))
    return TRUE;
  guint64 at = offset + (guint64) ((const guint8 *) bad - data);
  if (!replace)
    {
      g_set_error (error, GPTD_STAGE_ERROR, GPTD_STAGE_ERROR_INPUT,
                   "%s: invalid UTF-8 at byte offset %" G_GUINT64_FORMAT
                   " (set invalid=replace to replace it with U+FFFD)", where, at);
      return FALSE;
    }
  gptd_stage_log (ctx, G_LOG_LEVEL_WARNING,
                  "%s: invalid UTF-8 from byte offset %" G_GUINT64_FORMAT
                  " replaced with U+FFFD", where, at);
  if (fixed)
    {
      gsize n = 0;
      *fixed = utf8_make_valid_with_nul ((const char *) data, len, &n);
      if (fixed_len)
        *fixed_len = n;
    }
  return TRUE;
}
