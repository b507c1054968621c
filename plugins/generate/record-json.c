/* record-json.c: JSON values written as Python's json.dump() writes them
 * (ensure_ascii, indent or the one-line separators, repr() of floats).
 */
#include "config.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "record-json.h"

/* Appends @s as a JSON string with Python's ensure_ascii escaping: `"` and
 * `\` escaped, the short escapes for \b \f \n \r \t, every other character
 * outside ' '..'~' as \uXXXX (lowercase hex, UTF-16 surrogate pairs). */
static void
append_string (GString *out, const char *s)
{
  g_string_append_c (out, '"');
  for (const char *p = s; *p != '\0'; p = g_utf8_next_char (p))
    {
      gunichar c = g_utf8_get_char_validated (p, -1);
      if (c == (gunichar) -1 || c == (gunichar) -2)
        {
          /* Not UTF-8 (json-glib only hands out valid text): one U+FFFD. */
          g_string_append (out, "\\ufffd");
          continue;
        }
      switch (c)
        {
        case '"': g_string_append (out, "\\\""); continue;
        case '\\': g_string_append (out, "\\\\"); continue;
        case '\b': g_string_append (out, "\\b"); continue;
        case '\f': g_string_append (out, "\\f"); continue;
        case '\n': g_string_append (out, "\\n"); continue;
        case '\r': g_string_append (out, "\\r"); continue;
        case '\t': g_string_append (out, "\\t"); continue;
        default: break;
        }
      if (c >= ' ' && c <= '~')
        g_string_append_c (out, (char) c);
      else if (c < 0x10000)
        g_string_append_printf (out, "\\u%04x", c);
      else
        {
          gunichar v = c - 0x10000;
          g_string_append_printf (out, "\\u%04x\\u%04x", 0xd800 + (v >> 10),
                                  0xdc00 + (v & 0x3ff));
        }
    }
  g_string_append_c (out, '"');
}

/* Appends @v as Python's repr(float): the shortest digits that read back as
 * @v, positional when the exponent is in [-4, 16), else d.ddde+XX. */
static void
append_double (GString *out, double v)
{
  if (isnan (v))
    {
      g_string_append (out, "NaN");
      return;
    }
  if (isinf (v))
    {
      g_string_append (out, v > 0 ? "Infinity" : "-Infinity");
      return;
    }
  char buf[64];
  for (int prec = 1; prec <= 17; prec++)
    {
      g_snprintf (buf, sizeof buf, "%.*e", prec - 1, v);
      if (g_ascii_strtod (buf, NULL) == v)
        break;
    }
  /* buf is [-]d[.ddd]e[+-]XX: split it into sign, digits and exponent. */
  const char *p = buf;
  if (*p == '-')
    {
      g_string_append_c (out, '-');
      p++;
    }
  char digits[32];
  int nd = 0;
  for (; *p != 'e'; p++)
    if (*p != '.' && nd < (int) sizeof digits - 1)
      digits[nd++] = *p;
  while (nd > 1 && digits[nd - 1] == '0')
    nd--;
  digits[nd] = '\0';
  int exp = atoi (p + 1);
  if (exp >= -4 && exp < 16)
    {
      if (exp < 0)
        {
          g_string_append (out, "0.");
          for (int i = 0; i < -exp - 1; i++)
            g_string_append_c (out, '0');
          g_string_append (out, digits);
        }
      else
        {
          for (int i = 0; i <= exp; i++)
            g_string_append_c (out, i < nd ? digits[i] : '0');
          g_string_append_c (out, '.');
          if (nd > exp + 1)
            g_string_append (out, digits + exp + 1);
          else
            g_string_append_c (out, '0');
        }
      return;
    }
  g_string_append_c (out, digits[0]);
  if (nd > 1)
    {
      g_string_append_c (out, '.');
      g_string_append (out, digits + 1);
    }
  g_string_append_printf (out, "e%c%02d", exp < 0 ? '-' : '+', abs (exp));
}

/* The line break and indentation before an item at @level. */
static void
append_newline (GString *out, int indent, int level)
{
  g_string_append_c (out, '\n');
  for (int i = 0; i < indent * level; i++)
    g_string_append_c (out, ' ');
}

void
gptd__record_json_append (GString *out, JsonNode *node, int indent, int level)
{
  switch (json_node_get_node_type (node))
    {
    case JSON_NODE_NULL:
      g_string_append (out, "null");
      return;
    case JSON_NODE_VALUE:
      {
        GType t = json_node_get_value_type (node);
        if (t == G_TYPE_INT64)
          g_string_append_printf (out, "%" G_GINT64_FORMAT, json_node_get_int (node));
        else if (t == G_TYPE_DOUBLE)
          append_double (out, json_node_get_double (node));
        else if (t == G_TYPE_BOOLEAN)
          g_string_append (out, json_node_get_boolean (node) ? "true" : "false");
        else
          append_string (out, json_node_get_string (node));
        return;
      }
    case JSON_NODE_ARRAY:
      {
        JsonArray *a = json_node_get_array (node);
        guint n = json_array_get_length (a);
        if (n == 0)
          {
            g_string_append (out, "[]");
            return;
          }
        g_string_append_c (out, '[');
        for (guint i = 0; i < n; i++)
          {
            if (i > 0)
              g_string_append (out, indent >= 0 ? "," : ", ");
            if (indent >= 0)
              append_newline (out, indent, level + 1);
            gptd__record_json_append (out, json_array_get_element (a, i), indent,
                                      level + 1);
          }
        if (indent >= 0)
          append_newline (out, indent, level);
        g_string_append_c (out, ']');
        return;
      }
    case JSON_NODE_OBJECT:
      {
        JsonObject *o = json_node_get_object (node);
        g_autoptr (GList) members = json_object_get_members (o);
        if (members == NULL)
          {
            g_string_append (out, "{}");
            return;
          }
        g_string_append_c (out, '{');
        for (GList *l = members; l != NULL; l = l->next)
          {
            if (l != members)
              g_string_append (out, indent >= 0 ? "," : ", ");
            if (indent >= 0)
              append_newline (out, indent, level + 1);
            append_string (out, l->data);
            g_string_append (out, ": ");
            gptd__record_json_append (out, json_object_get_member (o, l->data),
                                      indent, level + 1);
          }
        if (indent >= 0)
          append_newline (out, indent, level);
        g_string_append_c (out, '}');
        return;
      }
    }
}
