/* stop-strings.c: the stop-string matcher of text generation: generated text
 * goes in piece by piece, and what comes out is the text that can be shown,
 * up to the first occurrence of any stop string.  A tail that could still
 * become a stop string is held back until the next piece tells, so that a stop
 * string split over several tokens is never partly shown.
 */
#include "config.h"

#include <gptd/generate.h>

#include <string.h>

struct _GptdStopMatcher {
  GPtrArray *stops;  /* char*: the stop strings, none empty */
  gsize longest;     /* the length of the longest, in bytes */
  GString *held;     /* text received and not yet released */
  gboolean matched;  /* a stop string was found: everything else is dropped */
};

GptdStopMatcher *
gptd_stop_matcher_new (const char *const *stops, GError **error)
{
  g_autoptr (GPtrArray) list = g_ptr_array_new_with_free_func (g_free);
  gsize longest = 0;
  for (gsize i = 0; stops != NULL && stops[i] != NULL; i++)
    {
      const char *s = stops[i];
      if (*s == '\0')
        {
          g_set_error (error, GPTD_GENERATE_ERROR, GPTD_GENERATE_ERROR_OPTIONS,
                       "stop string %" G_GSIZE_FORMAT " is empty", i + 1);
          return NULL;
        }
      if (!g_utf8_validate (s, -1, NULL))
        {
          g_set_error (error, GPTD_GENERATE_ERROR, GPTD_GENERATE_ERROR_OPTIONS,
                       "stop string %" G_GSIZE_FORMAT " is not valid UTF-8", i + 1);
          return NULL;
        }
      if (strlen (s) > GPTD_STOP_STRING_MAX_BYTES)
        {
          g_set_error (error, GPTD_GENERATE_ERROR, GPTD_GENERATE_ERROR_OPTIONS,
                       "stop string %" G_GSIZE_FORMAT " is %" G_GSIZE_FORMAT
                       " bytes long, more than %d", i + 1, strlen (s),
                       GPTD_STOP_STRING_MAX_BYTES);
          return NULL;
        }
      g_ptr_array_add (list, g_strdup (s));
      longest = MAX (longest, strlen (s));
    }
  if (list->len > GPTD_STOP_STRINGS_MAX)
    {
      g_set_error (error, GPTD_GENERATE_ERROR, GPTD_GENERATE_ERROR_OPTIONS,
                   "%u stop strings: at most %d may be given", list->len,
                   GPTD_STOP_STRINGS_MAX);
      return NULL;
    }
  GptdStopMatcher *m = g_new0 (GptdStopMatcher, 1);
  m->stops = g_steal_pointer (&list);
  m->longest = longest;
  m->held = g_string_new (NULL);
  return m;
}

void
gptd_stop_matcher_free (GptdStopMatcher *matcher)
{
  if (matcher == NULL)
    return;
  g_ptr_array_unref (matcher->stops);
  g_string_free (matcher->held, TRUE);
  g_free (matcher);
}

gboolean
gptd_stop_matcher_is_empty (const GptdStopMatcher *matcher)
{
  return matcher == NULL || matcher->stops->len == 0;
}

/* Whether held[pos..] is the start of some stop string (the whole of a stop
 * string counts too). */
static gboolean
is_stop_prefix (const GptdStopMatcher *m, gsize pos)
{
  const char *tail = m->held->str + pos;
  gsize n = m->held->len - pos;
  for (guint i = 0; i < m->stops->len; i++)
    {
      const char *s = m->stops->pdata[i];
      if (strlen (s) >= n && memcmp (s, tail, n) == 0)
        return TRUE;
    }
  return FALSE;
}

gboolean
gptd_stop_matcher_push (GptdStopMatcher *matcher, const char *text, gsize len,
                        GString *out)
{
  g_return_val_if_fail (matcher != NULL && out != NULL, FALSE);
  g_return_val_if_fail (text != NULL || len == 0, FALSE);
  GptdStopMatcher *m = matcher;
  if (m->matched)
    return TRUE;
  g_string_append_len (m->held, text, (gssize) len);

  /* The earliest complete occurrence of any stop string.  Held text never
   * starts a match before its beginning: released text had no suffix that
   * begins one. */
  const char *h = m->held->str;
  gsize first = G_MAXSIZE;
  for (guint i = 0; i < m->stops->len; i++)
    {
      const char *at = g_strstr_len (h, (gssize) m->held->len, m->stops->pdata[i]);
      if (at != NULL)
        first = MIN (first, (gsize) (at - h));
    }
  if (first != G_MAXSIZE)
    {
      g_string_append_len (out, h, (gssize) first);
      g_string_truncate (m->held, 0);
      m->matched = TRUE;
      return TRUE;
    }

  /* Release all but the longest tail that is the start of a stop string:
   * only the last longest - 1 bytes can be one. */
  gsize keep_from = m->held->len;
  gsize lo = m->held->len >= m->longest ? m->held->len - m->longest + 1 : 0;
  for (gsize pos = lo; pos < m->held->len; pos++)
    if (is_stop_prefix (m, pos))
      {
        keep_from = pos;
        break;
      }
  g_string_append_len (out, h, (gssize) keep_from);
  g_string_erase (m->held, 0, (gssize) keep_from);
  return FALSE;
}

void
gptd_stop_matcher_finish (GptdStopMatcher *matcher, GString *out)
{
  g_return_if_fail (matcher != NULL && out != NULL);
  if (!matcher->matched)
    g_string_append_len (out, matcher->held->str, (gssize) matcher->held->len);
  g_string_truncate (matcher->held, 0);
}

gsize
gptd_stop_matcher_get_held (const GptdStopMatcher *matcher)
{
  g_return_val_if_fail (matcher != NULL, 0);
  return matcher->held->len;
}
