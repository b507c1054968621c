/* tests/e2e/e2e-json.c: reads JSON for the HTTP tests, which have no other JSON
 * reader. `e2e-json PATH` prints the value at PATH (members and array indexes
 * separated by dots, e.g. choices.0.text) of the JSON object on standard input:
 * a string as it is, without a newline, anything else as JSON. `e2e-json --sse
 * PATH` reads a server-sent event stream instead: it prints the PATH of every
 * `data:` event, concatenated (events without it add nothing), and fails
 * unless the stream ends with `data: [DONE]`. `e2e-json --count` prints the
 * number of events before [DONE]. Exit status: 0, 1 when PATH is not there or
 * the input is not JSON, 3 when a stream does not end with [DONE].
 */
#include <json-glib/json-glib.h>
#include <stdio.h>
#include <string.h>

static JsonNode *
lookup (JsonNode *node, const char *path)
{
  g_auto (GStrv) parts = g_strsplit (path, ".", -1);
  for (guint i = 0; parts[i] != NULL && node != NULL; i++)
    {
      if (*parts[i] == '\0')
        continue;
      if (JSON_NODE_HOLDS_OBJECT (node))
        node = json_object_get_member (json_node_get_object (node), parts[i]);
      else if (JSON_NODE_HOLDS_ARRAY (node))
        {
          guint64 k;
          JsonArray *a = json_node_get_array (node);
          if (!g_ascii_string_to_unsigned (parts[i], 10, 0, G_MAXUINT, &k, NULL)
              || k >= json_array_get_length (a))
            return NULL;
          node = json_array_get_element (a, (guint) k);
        }
      else
        return NULL;
    }
  return node;
}

static gboolean
print_at (const char *text, gssize len, const char *path, gboolean missing_ok)
{
  g_autoptr (JsonParser) parser = json_parser_new ();
  if (!json_parser_load_from_data (parser, text, len, NULL))
    return FALSE;
  JsonNode *node = lookup (json_parser_get_root (parser), path);
  if (node == NULL || JSON_NODE_HOLDS_NULL (node))
    return missing_ok;
  if (JSON_NODE_HOLDS_VALUE (node) && json_node_get_value_type (node) == G_TYPE_STRING)
    fputs (json_node_get_string (node), stdout);
  else
    {
      g_autofree char *json = json_to_string (node, FALSE);
      fputs (json, stdout);
    }
  return TRUE;
}

int
main (int argc, char **argv)
{
  GString *in = g_string_new (NULL);
  char buf[65536];
  size_t n;
  while ((n = fread (buf, 1, sizeof buf, stdin)) > 0)
    g_string_append_len (in, buf, (gssize) n);
  if (argc == 2 && argv[1][0] != '-')
    return print_at (in->str, (gssize) in->len, argv[1], FALSE) ? 0 : 1;
  if (argc < 2 || (strcmp (argv[1], "--sse") != 0 && strcmp (argv[1], "--count") != 0))
    {
      fprintf (stderr, "usage: e2e-json PATH | --sse PATH | --count  (JSON on stdin)\n");
      return 2;
    }
  gboolean count = strcmp (argv[1], "--count") == 0;
  g_auto (GStrv) events = g_strsplit (in->str, "\n\n", -1);
  guint n_events = 0;
  gboolean done = FALSE;
  for (guint i = 0; events[i] != NULL; i++)
    {
      const char *e = events[i];
      if (*e == '\0')
        continue;
      if (done || !g_str_has_prefix (e, "data: "))
        return 3;  /* something after [DONE], or not an event */
      if (strcmp (e + 6, "[DONE]") == 0)
        {
          done = TRUE;
          continue;
        }
      n_events++;
      if (!count && !print_at (e + 6, -1, argv[2], TRUE))
        return 1;
    }
  if (count)
    printf ("%u\n", n_events);
  return done ? 0 : 3;
}
