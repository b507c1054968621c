/* response-text.c: the response part of a generated Alpaca continuation
 * (see response-text.h).
 */
#include "config.h"

#include <string.h>

#include "response-text.h"

/* Python's str.isspace() for one character: Unicode white space and the
 * separators U+001C..U+001F and U+0085. */
static gboolean
is_py_space (gunichar c)
{
  return g_unichar_isspace (c) || (c >= 0x1c && c <= 0x1f) || c == 0x85;
}

char *
gptd__response_extract (const char *generated)
{
  g_return_val_if_fail (generated != NULL, NULL);
  g_autoptr (GString) s = g_string_new (NULL);
  const char *p = generated;
  for (const char *hit; (hit = strstr (p, GPTD_RESPONSE_HEADER)) != NULL;
       p = hit + strlen (GPTD_RESPONSE_HEADER))
    g_string_append_len (s, p, hit - p);
  g_string_append (s, p);

  const char *start = s->str;
  const char *end = s->str + s->len;
  while (start < end && is_py_space (g_utf8_get_char (start)))
    start = g_utf8_next_char (start);
  while (end > start)
    {
      const char *prev = g_utf8_prev_char (end);
      if (!is_py_space (g_utf8_get_char (prev)))
        break;
      end = prev;
    }
  return g_strndup (start, end - start);
}
