/* validate-result.c: the answer to a validate request (gptd.ValidateResult), made
 * from the problems a pipeline load found, for `gptd validate --json` and the
 * daemon alike. */
#include "config.h"

#include <gptd/pipeline.h>

Gptd__ValidateResult *
gptd_validate_result_new (GPtrArray *problems, const GError *error)
{
  Gptd__ValidateResult *vr = g_new0 (Gptd__ValidateResult, 1);
  gptd__validate_result__init (vr);
  vr->valid = error == NULL;
  if (error == NULL)
    return vr;
  gsize n = problems ? problems->len : 0;
  gsize m = MAX (n, 1);
  vr->problems = g_new0 (char *, m);
  vr->details = g_new0 (Gptd__Problem *, m);
  for (gsize i = 0; i < n; i++)
    {
      const GptdPipelineProblem *p = problems->pdata[i];
      Gptd__Problem *d = g_new0 (Gptd__Problem, 1);
      gptd__problem__init (d);
      d->file = g_strdup (p->file ? p->file : "");
      d->line = p->line;
      d->stage = g_strdup (p->stage ? p->stage : "");
      d->key = g_strdup (p->key ? p->key : "");
      d->message = g_strdup (p->message ? p->message : p->text);
      vr->problems[i] = g_strdup (p->text);
      vr->details[i] = d;
    }
  if (n == 0)
    {
      Gptd__Problem *d = g_new0 (Gptd__Problem, 1);
      gptd__problem__init (d);
      d->file = g_strdup ("");
      d->stage = g_strdup ("");
      d->key = g_strdup ("");
      d->message = g_strdup (error->message);
      vr->problems[0] = g_strdup (error->message);
      vr->details[0] = d;
      n = 1;
    }
  vr->n_problems = n;
  vr->n_details = n;
  return vr;
}

void
gptd_validate_result_free (Gptd__ValidateResult *result)
{
  if (result == NULL)
    return;
  for (gsize i = 0; i < result->n_details; i++)
    {
      Gptd__Problem *d = result->details[i];
      g_free (d->file);
      g_free (d->stage);
      g_free (d->key);
      g_free (d->message);
      g_free (d);
    }
  for (gsize i = 0; i < result->n_problems; i++)
    g_free (result->problems[i]);
  g_free (result->details);
  g_free (result->problems);
  g_free (result);
}
