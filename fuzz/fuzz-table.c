/* fuzz/fuzz-table.c: table-source's parsing of TSV and CSV (quoting, header,
 * columns by index or name, labels, invalid UTF-8), through a pipeline run into
 * dump. The first byte picks the format, header, columns and invalid= mode; the
 * rest is the file. The run must succeed or fail with an error, never crash. */
#include "config.h"

#include <gptd/pipeline.h>
#include <gptd/runner.h>

#include "fuzz-util.h"

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  fuzz_init_logging ();
  if (size == 0)
    return 0;
  guint8 mode = data[0];
  g_autofree char *path = fuzz_write ("table.txt", data + 1, size - 1);
  g_autofree char *out = g_build_filename (fuzz_dir (), "out.jsonl", NULL);
  gboolean header = (mode & 2) != 0;
  g_autofree char *text = g_strdup_printf (
    "[pipeline]\nname=fuzz\n"
    "[stage t]\ntype=table-source\npath=%s\nformat=%s\nheader=%s\n"
    "label-column=%s\ntext-column=%s\n%sinvalid=%s\n"
    "[stage d]\ntype=dump\ninput=t\npath=%s\n",
    path, (mode & 1) ? "csv" : "tsv", header ? "true" : "false",
    header && (mode & 4) ? "label" : "1", header && (mode & 4) ? "text" : "2",
    (mode & 8) ? "labels=ham,spam\n" : "", (mode & 16) ? "replace" : "error", out);
  g_autoptr (GError) error = NULL;
  g_autoptr (GptdPipeline) p = gptd_pipeline_load_data (fuzz_registry (), text, -1,
                                                        "fuzz.pipeline", NULL, NULL, &error);
  g_assert (p != NULL);
  g_autoptr (GptdRunner) runner = gptd_runner_new (p, fuzz_dir (), NULL, NULL);
  if (!gptd_runner_run (runner, &error))
    g_assert (error != NULL);
  return 0;
}
