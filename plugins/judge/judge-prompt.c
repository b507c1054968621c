/* judge-prompt.c: the book's scoring prompt and reading a score from a reply
 * (see judge-prompt.h).
 */
#include "config.h"

#include <gptd/stage.h>

#include <stdlib.h>
#include <string.h>

#include "judge-prompt.h"
#include "pipeline/prompt-template.h"

char *
gptd__judge_format_input (const char *instruction, const char *input)
{
  /* The prompt part of prompt-format's template=alpaca is format_input(entry). */
  g_autoptr (GptdPromptTemplate) alpaca = gptd__prompt_template_builtin ("alpaca");
  GString *s = g_string_new (NULL);
  gsize prompt_bytes = 0;
  gptd__prompt_template_render (alpaca, instruction, input != NULL ? input : "", NULL, s,
                                &prompt_bytes);
  return g_string_free (s, FALSE);
}

/* The string member @name of @record; "" for an absent optional member. */
static const char *
get_member (JsonObject *record, const char *name, gboolean optional, GError **error)
{
  JsonNode *n = json_object_get_member (record, name);
  if (n == NULL && optional)
    return "";
  if (n == NULL)
    {
      g_set_error (error, GPTD_STAGE_ERROR, GPTD_STAGE_ERROR_INPUT,
                   "the record has no \"%s\" member", name);
      return NULL;
    }
  if (!JSON_NODE_HOLDS_VALUE (n) || json_node_get_value_type (n) != G_TYPE_STRING)
    {
      g_set_error (error, GPTD_STAGE_ERROR, GPTD_STAGE_ERROR_INPUT,
                   "the record's \"%s\" member is not a string", name);
      return NULL;
    }
  return json_node_get_string (n);
}

char *
gptd__judge_prompt (JsonObject *record, const char *response_key, GError **error)
{
  const char *instruction = get_member (record, "instruction", FALSE, error);
  if (instruction == NULL)
    return NULL;
  const char *input = get_member (record, "input", TRUE, error);
  if (input == NULL)
    return NULL;
  const char *output = get_member (record, "output", FALSE, error);
  if (output == NULL)
    return NULL;
  const char *response = get_member (record, response_key, FALSE, error);
  if (response == NULL)
    return NULL;
  g_autofree char *formatted = gptd__judge_format_input (instruction, input);
  return g_strdup_printf ("Given the input `%s` and correct output `%s`, "
                          "score the model response `%s` on a scale from 0 to "
                          "100, where 100 is the best score. Respond with the "
                          "integer number only.", formatted, output, response);
}

/* Python's str.isspace() for one character. */
static gboolean
is_py_space (gunichar c)
{
  return g_unichar_isspace (c) || (c >= 0x1c && c <= 0x1f) || c == 0x85;
}

/* Python's int(@reply) for ASCII digits: surrounding white space, a sign,
 * digits with single underscores between them. */
static gboolean
parse_python_int (const char *reply, gint64 *value)
{
  const char *p = reply;
  while (*p != '\0' && is_py_space (g_utf8_get_char (p)))
    p = g_utf8_next_char (p);
  gboolean neg = FALSE;
  if (*p == '+' || *p == '-')
    neg = *p++ == '-';
  if (!g_ascii_isdigit (*p))
    return FALSE;
  gint64 v = 0;
  for (; g_ascii_isdigit (*p) || (*p == '_' && g_ascii_isdigit (p[1])); p++)
    if (*p != '_')
      v = MIN (v * 10 + (*p - '0'), (gint64) 1 << 40);
  while (*p != '\0' && is_py_space (g_utf8_get_char (p)))
    p = g_utf8_next_char (p);
  if (*p != '\0')
    return FALSE;
  *value = neg ? -v : v;
  return TRUE;
}

gboolean
gptd__judge_parse_score (const char *reply, int *score)
{
  g_return_val_if_fail (reply != NULL && score != NULL, FALSE);
  gint64 v = 0;
  if (!parse_python_int (reply, &v))
    {
      /* The only run of digits in the reply, if there is exactly one. */
      const char *found = NULL;
      for (const char *p = reply; *p != '\0'; p++)
        if (g_ascii_isdigit (*p) && (p == reply || !g_ascii_isdigit (p[-1])))
          {
            if (found != NULL)
              return FALSE;
            found = p;
          }
      if (found == NULL)
        return FALSE;
      v = 0;
      for (const char *p = found; g_ascii_isdigit (*p); p++)
        v = MIN (v * 10 + (*p - '0'), (gint64) 1 << 40);
    }
  if (v < 0 || v > 100)
    return FALSE;
  *score = (int) v;
  return TRUE;
}
