/* daemon/http-metrics.c: the HTTP gateway's counters, shown by GET /metrics in
 * Prometheus' text exposition format (version 0.0.4): requests by endpoint and
 * status code, prompt and generated tokens, requests in flight and waiting in
 * the serving workers' queues, generated tokens per second over the last
 * minute. Touched on the main loop's thread only.
 */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

#include "http.h"

#include <stdlib.h>
#include <string.h>

/* Generated tokens per second of the last RATE_WINDOW seconds: a ring of
 * one-second buckets, each stamped with its second. */
#define RATE_WINDOW 60

struct _GptdHttpMetrics {
  GHashTable *requests;   /* "endpoint\tcode" -> guint64* */
  guint64 prompt_tokens;
  guint64 generated_tokens;
  int in_flight;
  int waiting;
  gint64 bucket_second[RATE_WINDOW];
  guint64 bucket_tokens[RATE_WINDOW];
};

/* The endpoints counted by name; any other path counts as "other". */
static const char *const endpoints[] = {
  "/v1/completions", "/v1/chat/completions", "/v1/classify", "/v1/models", "/health",
  "/metrics",
};

GptdHttpMetrics *
gptd__http_metrics_new (void)
{
  GptdHttpMetrics *m = g_new0 (GptdHttpMetrics, 1);
  m->requests = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, g_free);
  return m;
}

void
gptd__http_metrics_free (GptdHttpMetrics *m)
{
  if (m == NULL)
    return;
  g_hash_table_unref (m->requests);
  g_free (m);
}

void
gptd__http_metrics_request (GptdHttpMetrics *m, const char *path, guint status)
{
  const char *endpoint = "other";
  for (gsize i = 0; i < G_N_ELEMENTS (endpoints); i++)
    if (g_strcmp0 (path, endpoints[i]) == 0)
      endpoint = endpoints[i];
  if (g_str_has_prefix (path ? path : "", "/v1/models/"))
    endpoint = "/v1/models";
  char *key = g_strdup_printf ("%s\t%u", endpoint, status);
  guint64 *n = g_hash_table_lookup (m->requests, key);
  if (n == NULL)
    {
      n = g_new0 (guint64, 1);
      g_hash_table_insert (m->requests, key, n);
    }
  else
    g_free (key);
  (*n)++;
}

void
gptd__http_metrics_prompt_tokens (GptdHttpMetrics *m, guint64 n)
{
  m->prompt_tokens += n;
}

void
gptd__http_metrics_generated_tokens (GptdHttpMetrics *m, guint64 n)
{
  m->generated_tokens += n;
  gint64 now = g_get_monotonic_time () / G_USEC_PER_SEC;
  guint i = (guint) (now % RATE_WINDOW);
  if (m->bucket_second[i] != now)
    {
      m->bucket_second[i] = now;
      m->bucket_tokens[i] = 0;
    }
  m->bucket_tokens[i] += n;
}

void
gptd__http_metrics_in_flight (GptdHttpMetrics *m, int delta)
{
  m->in_flight += delta;
}

void
gptd__http_metrics_waiting (GptdHttpMetrics *m, int delta)
{
  m->waiting += delta;
}

static int
compare_keys (gconstpointer a, gconstpointer b)
{
  return strcmp (*(const char *const *) a, *(const char *const *) b);
}

char *
gptd__http_metrics_render (GptdHttpMetrics *m)
{
  GString *out = g_string_new (NULL);
  g_string_append (out,
                   "# HELP gptd_http_requests_total HTTP requests answered, by endpoint and "
                   "status code.\n"
                   "# TYPE gptd_http_requests_total counter\n");
  g_autofree gpointer *keys = g_hash_table_get_keys_as_array (m->requests, NULL);
  guint n_keys = g_hash_table_size (m->requests);
  qsort (keys, n_keys, sizeof *keys, compare_keys);
  for (guint i = 0; i < n_keys; i++)
    {
      const char *key = keys[i];
      const char *tab = strchr (key, '\t');
      const guint64 *n = g_hash_table_lookup (m->requests, key);
      g_string_append_printf (out,
                              "gptd_http_requests_total{endpoint=\"%.*s\",code=\"%s\"} %"
                              G_GUINT64_FORMAT "\n", (int) (tab - key), key, tab + 1, *n);
    }
  gint64 now = g_get_monotonic_time () / G_USEC_PER_SEC;
  guint64 recent = 0;
  for (guint i = 0; i < RATE_WINDOW; i++)
    if (m->bucket_second[i] > now - RATE_WINDOW && m->bucket_second[i] <= now)
      recent += m->bucket_tokens[i];
  g_string_append_printf (out,
                          "# HELP gptd_http_prompt_tokens_total Prompt tokens of the "
                          "requests forwarded to the daemon.\n"
                          "# TYPE gptd_http_prompt_tokens_total counter\n"
                          "gptd_http_prompt_tokens_total %" G_GUINT64_FORMAT "\n"
                          "# HELP gptd_http_generated_tokens_total Tokens generated for "
                          "HTTP clients.\n"
                          "# TYPE gptd_http_generated_tokens_total counter\n"
                          "gptd_http_generated_tokens_total %" G_GUINT64_FORMAT "\n"
                          "# HELP gptd_http_requests_in_flight Requests being answered by "
                          "the daemon.\n"
                          "# TYPE gptd_http_requests_in_flight gauge\n"
                          "gptd_http_requests_in_flight %d\n"
                          "# HELP gptd_http_queue_depth Requests sent to the daemon that "
                          "have had no answer yet (waiting for a serving worker).\n"
                          "# TYPE gptd_http_queue_depth gauge\n"
                          "gptd_http_queue_depth %d\n"
                          "# HELP gptd_http_tokens_per_second Tokens generated per second, "
                          "over the last minute.\n"
                          "# TYPE gptd_http_tokens_per_second gauge\n"
                          "gptd_http_tokens_per_second %.3f\n",
                          m->prompt_tokens, m->generated_tokens, m->in_flight, m->waiting,
                          (double) recent / RATE_WINDOW);
  return g_string_free (out, FALSE);
}
