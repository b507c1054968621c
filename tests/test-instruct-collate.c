/* test-instruct-collate.c: the instruct plugin's pure parts against the book's code
 * (tests/golden/instruct/make_goldens.py):
 *
 *  - custom_collate_fn: inputs and targets of a batch of mixed lengths, with the
 *    prompt masked (exercise 7.2) and cut to an allowed maximum length, row by row
 *    and through the data set's batches;
 *  - the loss of a collated batch on the tiny model of tests/golden/nn, the losses
 *    of two AdamW steps and the loss after them; the masked batch's loss;
 *  - the book's 85/10/5 split of the record list, batches, drop-last and seeded
 *    shuffles;
 *  - the Alpaca and Phi-3 text of a few records against the book's format_input,
 *    templates from files, and bad templates.
 */
#include "test-nn-util.h"

#include <glib/gstdio.h>
#include <json-glib/json-glib.h>

#include <gptd/stage.h>

#include "../plugins/instruct/collate.h"
#include "pipeline/prompt-template.h"

#define REL_TOL 1e-4

typedef struct {
  TnnGolden *g;
  guint32 pad;
  gint32 ignore;
  guint64 allowed;
  guint32 seed;
  guint n;
  const gint32 *lengths;
  const gint32 *prompts;
  guint32 *ids;          /* all sequences, one after the other */
  guint64 max_len;
} Collated;

static void
collated_load (Collated *c)
{
  g_autofree char *path = g_test_build_filename (G_TEST_DIST, "golden", "instruct",
                                                 "collate.bin", NULL);
  c->g = tnn_golden_load (path);
  const gint32 *cfg = tnn_golden_get (c->g, "config")->data;
  c->pad = cfg[0];
  c->ignore = cfg[1];
  c->allowed = cfg[2];
  c->seed = cfg[3];
  const TnnRecord *l = tnn_golden_get (c->g, "lengths");
  c->n = l->numel;
  c->lengths = l->data;
  c->prompts = tnn_golden_get (c->g, "prompts")->data;
  const TnnRecord *ids = tnn_golden_get (c->g, "ids");
  c->ids = g_new (guint32, ids->numel);
  for (size_t i = 0; i < ids->numel; i++)
    c->ids[i] = ((const gint32 *) ids->data)[i];
  c->max_len = 0;
  for (guint i = 0; i < c->n; i++)
    c->max_len = MAX (c->max_len, (guint64) c->lengths[i]);
}

static void
collated_clear (Collated *c)
{
  tnn_golden_free (c->g);
  g_free (c->ids);
}

static void
assert_ints (const char *what, const gint32 *got, const TnnRecord *want)
{
  for (size_t i = 0; i < want->numel; i++)
    if (got[i] != ((const gint32 *) want->data)[i])
      {
        g_printerr ("%s: element %zu is %d, the book's is %d\n", what, i, got[i],
                    ((const gint32 *) want->data)[i]);
        g_assert_cmpint (got[i], ==, ((const gint32 *) want->data)[i]);
      }
}

/* Collates the golden's sequences row by row and compares with @name. */
static void
check_rows (Collated *c, const char *name, gboolean mask, guint64 allowed)
{
  GptdCollateOptions opts = { c->pad, c->ignore, allowed, mask };
  guint64 T = gptd__collate_seq_len (c->max_len, allowed);
  g_autofree gint32 *inputs = g_new (gint32, c->n * T);
  g_autofree gint32 *targets = g_new (gint32, c->n * T);
  g_autofree gint32 *scratch = g_new (gint32, c->max_len + 1);
  g_autofree char *in_name = g_strconcat (name, ".inputs", NULL);
  g_autofree char *tg_name = g_strconcat (name, ".targets", NULL);
  const TnnRecord *want_in = tnn_golden_get (c->g, in_name);
  const TnnRecord *want_tg = tnn_golden_get (c->g, tg_name);
  guint64 off = 0;

  g_assert_cmpuint (want_in->ndim, ==, 2);
  g_assert_cmpuint (want_in->dims[0], ==, c->n);
  g_assert_cmpuint (want_in->dims[1], ==, T);
  for (guint r = 0; r < c->n; r++)
    {
      gptd__collate_row (c->ids + off, c->lengths[r], c->prompts[r], c->max_len, T, &opts,
                         scratch, inputs + r * T, targets + r * T);
      off += c->lengths[r];
    }
  assert_ints (in_name, inputs, want_in);
  assert_ints (tg_name, targets, want_tg);
}

static void
test_collate_rows (void)
{
  Collated c;
  collated_load (&c);
  check_rows (&c, "plain", FALSE, 0);
  check_rows (&c, "mask", TRUE, 0);
  check_rows (&c, "cut", TRUE, c.allowed);
  check_rows (&c, "cut-plain", FALSE, c.allowed);
  /* An allowed length above the longest changes nothing. */
  check_rows (&c, "plain", FALSE, c.max_len + 10);
  collated_clear (&c);
}

/* The same batches through the data set: one split, one batch of every record. */
static void
test_collate_set (void)
{
  Collated c;
  collated_load (&c);
  g_autoptr (GptdInstructSet) set = gptd__instruct_set_new ();
  guint64 off = 0;
  double all = 1.0;
  for (guint r = 0; r < c.n; r++)
    {
      gptd__instruct_set_add (set, c.ids + off, c.lengths[r], c.prompts[r]);
      off += c.lengths[r];
    }
  gptd__instruct_set_layout (set, &all, 1, c.n, 0, FALSE, 0);
  g_assert_cmpuint (gptd__instruct_set_split_batches (set, 0), ==, 1);
  g_autofree guint64 *order = g_new (guint64, c.n);
  gptd__instruct_set_order (set, 0, FALSE, 0, order);
  g_autofree gint32 *inputs = g_new (gint32, c.n * c.max_len);
  g_autofree gint32 *targets = g_new (gint32, c.n * c.max_len);
  guint32 lengths[16];
  guint rows;
  guint64 T;
  GptdCollateOptions opts = { c.pad, c.ignore, c.allowed, TRUE };
  gptd__instruct_set_collate (set, 0, order, 0, &opts, inputs, targets, lengths, &rows, &T);
  g_assert_cmpuint (rows, ==, c.n);
  g_assert_cmpuint (T, ==, c.allowed);
  assert_ints ("set cut.inputs", inputs, tnn_golden_get (c.g, "cut.inputs"));
  assert_ints ("set cut.targets", targets, tnn_golden_get (c.g, "cut.targets"));
  for (guint r = 0; r < c.n; r++)
    g_assert_cmpuint (lengths[r], ==, MIN ((guint64) c.lengths[r], T));
  collated_clear (&c);
}

static GptdGpt *
tiny_model (guint32 seed)
{
  GptdGptConfig cfg = {
    .n_layer = 2, .n_head = 2, .n_embd = 16, .context_length = 72, .vocab_size = 50,
    .dropout = 0.0f, .layer_norm_epsilon = 1e-5f,
  };
  GError *error = NULL;
  GptdGpt *m = gptd_gpt_new (&cfg, &error);
  g_assert_no_error (error);
  tnn_init_weights (m, seed);
  return m;
}

/* calc_loss_batch on the collated batch, two AdamW steps, the loss after. */
static void
test_collate_loss (void)
{
  Collated c;
  collated_load (&c);
  const TnnRecord *in = tnn_golden_get (c.g, "plain.inputs");
  const TnnRecord *tg = tnn_golden_get (c.g, "plain.targets");
  const float *hp = tnn_golden_get (c.g, "hparams")->data;
  int B = in->dims[0], T = in->dims[1];
  g_autoptr (GptdGpt) m = tiny_model (c.seed);
  GptdAdamWParams ap;
  GError *error = NULL;
  float losses[3], mask_loss;

  gptd_adamw_params_init (&ap);
  ap.weight_decay = hp[1];
  ap.decay_1d = TRUE;   /* torch.optim.AdamW (model.parameters ()) decays every tensor */
  g_autoptr (GptdAdamW) opt = gptd_adamw_new (m, &ap, &error);
  g_assert_no_error (error);
  for (int step = 0; step < 2; step++)
    {
      gptd_gpt_zero_grad (m);
      g_assert_true (gptd_gpt_forward (m, in->data, tg->data, B, T, GPTD_GPT_FORWARD_TRAIN,
                                       &losses[step], &error));
      g_assert_true (gptd_gpt_backward (m, 1.0f, &error));
      g_assert_no_error (error);
      gptd_adamw_step (opt, m, hp[0]);
    }
  g_assert_true (gptd_gpt_forward (m, in->data, tg->data, B, T, GPTD_GPT_FORWARD_NONE,
                                   &losses[2], &error));
  tnn_assert_close ("losses", losses, tnn_golden_get (c.g, "losses")->data, 3, REL_TOL);

  /* The masked batch: only the responses' targets count. */
  g_autoptr (GptdGpt) m0 = tiny_model (c.seed);
  const TnnRecord *min = tnn_golden_get (c.g, "mask.inputs");
  const TnnRecord *mtg = tnn_golden_get (c.g, "mask.targets");
  g_assert_true (gptd_gpt_forward (m0, min->data, mtg->data, min->dims[0], min->dims[1],
                                   GPTD_GPT_FORWARD_NONE, &mask_loss, &error));
  g_assert_no_error (error);
  tnn_assert_close ("masked loss", &mask_loss, tnn_golden_get (c.g, "mask_loss")->data, 1,
                    REL_TOL);
  collated_clear (&c);
}

/* The book: train = data[:int(n * 0.85)], test = the next int(n * 0.1), validation
 * the rest. */
static void
test_split_book (void)
{
  const double f[3] = { 0.85, 0.1, 0.05 };
  static const struct { guint64 n, train, test, val; } cases[] = {
    { 1100, 935, 110, 55 },
    { 11, 9, 1, 1 },
    { 7, 5, 0, 2 },
    { 20, 17, 2, 1 },
    { 0, 0, 0, 0 },
  };
  for (guint i = 0; i < G_N_ELEMENTS (cases); i++)
    {
      guint64 b[4];
      gptd__instruct_split_bounds (cases[i].n, f, 3, b);
      g_assert_cmpuint (b[0], ==, 0);
      g_assert_cmpuint (b[1] - b[0], ==, cases[i].train);
      g_assert_cmpuint (b[2] - b[1], ==, cases[i].test);
      g_assert_cmpuint (b[3] - b[2], ==, cases[i].val);
    }
  /* Fractions below 1 in all leave the end out. */
  const double g[2] = { 0.5, 0.25 };
  guint64 b[3];
  gptd__instruct_split_bounds (10, g, 2, b);
  g_assert_cmpuint (b[1], ==, 5);
  g_assert_cmpuint (b[2], ==, 7);
}

static void
test_set_batches (void)
{
  g_autoptr (GptdInstructSet) set = gptd__instruct_set_new ();
  const double f[3] = { 0.85, 0.1, 0.05 };
  for (guint32 r = 0; r < 41; r++)
    {
      guint32 ids[3] = { r, r, r };
      gptd__instruct_set_add (set, ids, 1 + r % 3, 1);
    }
  /* 41 records: 34 train (4 batches of 8, the last 2 dropped), 4 test, 3 val. */
  gptd__instruct_set_layout (set, f, 3, 8, 0, FALSE, 0);
  g_assert_cmpuint (gptd__instruct_set_split_records (set, 0), ==, 34);
  g_assert_cmpuint (gptd__instruct_set_split_batches (set, 0), ==, 4);
  g_assert_cmpuint (gptd__instruct_set_split_records (set, 1), ==, 4);
  g_assert_cmpuint (gptd__instruct_set_split_batches (set, 1), ==, 1);
  g_assert_cmpuint (gptd__instruct_set_split_records (set, 2), ==, 3);
  g_assert_cmpuint (gptd__instruct_set_split_batches (set, 2), ==, 1);

  guint64 a[34], b[34], c[34];
  gptd__instruct_set_order (set, 1, FALSE, 0, a);
  for (guint i = 0; i < 4; i++)
    g_assert_cmpuint (a[i], ==, 34 + i);
  /* A shuffle is a pure function of its key, a permutation of the split. */
  gptd__instruct_set_order (set, 0, TRUE, 42, a);
  gptd__instruct_set_order (set, 0, TRUE, 42, b);
  gptd__instruct_set_order (set, 0, TRUE, 43, c);
  g_assert_cmpmem (a, sizeof a, b, sizeof b);
  g_assert_true (memcmp (a, c, sizeof a) != 0);
  gboolean seen[34] = { 0 };
  for (guint i = 0; i < 34; i++)
    {
      g_assert_cmpuint (a[i], <, 34);
      g_assert_false (seen[a[i]]);
      seen[a[i]] = TRUE;
    }
  /* shuffle-records permutes before splitting: the test split changes. */
  gptd__instruct_set_layout (set, f, 3, 8, 0, TRUE, 7);
  gptd__instruct_set_order (set, 1, FALSE, 0, b);
  g_assert_true (memcmp (a, b, 4 * sizeof (guint64)) != 0);
  /* The last batch of a kept partial split holds the rest. */
  gptd__instruct_set_layout (set, f, 3, 8, -1, FALSE, 0);
  g_assert_cmpuint (gptd__instruct_set_split_batches (set, 0), ==, 5);
  gint32 inputs[8 * 3], targets[8 * 3];
  guint rows;
  guint64 T;
  GptdCollateOptions opts = { 100, -100, 0, FALSE };
  gptd__instruct_set_order (set, 0, FALSE, 0, a);
  gptd__instruct_set_collate (set, 0, a, 4, &opts, inputs, targets, NULL, &rows, &T);
  g_assert_cmpuint (rows, ==, 2);
  /* Records 32 (3 ids) and 33 (1 id), padded to 3: [32 32 32 | 32 32 pad] and
   * [33 pad pad | pad ignored ignored]. */
  g_assert_cmpuint (T, ==, 3);
  static const gint32 want_in[6] = { 32, 32, 32, 33, 100, 100 };
  static const gint32 want_tg[6] = { 32, 32, 100, 100, -100, -100 };
  g_assert_cmpmem (inputs, sizeof want_in, want_in, sizeof want_in);
  g_assert_cmpmem (targets, sizeof want_tg, want_tg, sizeof want_tg);
}

/* ---- Templates ---------------------------------------------------------------- */

static JsonArray *
alpaca_golden (JsonParser *parser)
{
  g_autofree char *path = g_test_build_filename (G_TEST_DIST, "golden", "instruct",
                                                 "alpaca.json", NULL);
  GError *error = NULL;
  g_assert_true (json_parser_load_from_file (parser, path, &error));
  g_assert_no_error (error);
  return json_node_get_array (json_parser_get_root (parser));
}

static void
check_template (const GptdPromptTemplate *tmpl, const char *prompt_key,
                const char *text_key)
{
  g_autoptr (JsonParser) parser = json_parser_new ();
  JsonArray *cases = alpaca_golden (parser);
  g_assert_cmpuint (json_array_get_length (cases), >=, 3);
  for (guint i = 0; i < json_array_get_length (cases); i++)
    {
      JsonObject *c = json_array_get_object_element (cases, i);
      JsonObject *r = json_object_get_object_member (c, "record");
      const char *prompt = json_object_get_string_member (c, prompt_key);
      const char *text = json_object_get_string_member (c, text_key);
      g_autoptr (GString) out = g_string_new (NULL);
      gsize pb = 0;

      gptd__prompt_template_render (tmpl, json_object_get_string_member (r, "instruction"),
                                    json_object_get_string_member (r, "input"), NULL, out,
                                    &pb);
      g_assert_cmpstr (out->str, ==, prompt);
      g_assert_cmpuint (pb, ==, strlen (prompt));
      g_string_truncate (out, 0);
      gptd__prompt_template_render (tmpl, json_object_get_string_member (r, "instruction"),
                                    json_object_get_string_member (r, "input"),
                                    json_object_get_string_member (r, "output"), out, &pb);
      g_assert_cmpstr (out->str, ==, text);
      g_assert_cmpuint (pb, ==, strlen (prompt));
    }
}

static void
test_template_alpaca (void)
{
  g_autoptr (GptdPromptTemplate) tmpl = gptd__prompt_template_builtin ("alpaca");
  g_assert_nonnull (tmpl);
  check_template (tmpl, "alpaca_prompt", "alpaca_text");
}

static void
test_template_phi3 (void)
{
  g_autoptr (GptdPromptTemplate) tmpl = gptd__prompt_template_builtin ("phi3");
  g_assert_nonnull (tmpl);
  check_template (tmpl, "phi3_prompt", "phi3_text");
  g_assert_null (gptd__prompt_template_builtin ("vicuna"));
}

/* The Alpaca format written as a file gives the built-in's text. */
static void
test_template_file (void)
{
  static const char alpaca_file[] =
    "Below is an instruction that describes a task. Write a response that "
    "appropriately completes the request.\n\n### Instruction:\n{instruction}{?input}\n\n"
    "### Input:\n{input}{/input}{response}\n\n### Response:\n{output}\n";
  g_autofree char *dir = g_dir_make_tmp ("gptd-template-XXXXXX", NULL);
  g_autofree char *path = g_build_filename (dir, "alpaca.txt", NULL);
  GError *error = NULL;
  g_assert_true (g_file_set_contents (path, alpaca_file, -1, &error));
  g_autoptr (GptdPromptTemplate) tmpl = gptd__prompt_template_load (path, &error);
  g_assert_no_error (error);
  check_template (tmpl, "alpaca_prompt", "alpaca_text");
  g_unlink (path);
  g_rmdir (dir);

  /* Braces: doubled ones are literal; without {response} the prompt ends at
   * {output}. */
  g_autoptr (GptdPromptTemplate) t2 =
      gptd__prompt_template_new ("{{Q}} {instruction}{?input} [{input}]{/input} A: {output}",
                                 "t2", &error);
  g_assert_no_error (error);
  g_autoptr (GString) out = g_string_new (NULL);
  gsize pb;
  gptd__prompt_template_render (t2, "why", "", "because", out, &pb);
  g_assert_cmpstr (out->str, ==, "{Q} why A: because");
  g_assert_cmpuint (pb, ==, strlen ("{Q} why A: "));
  g_string_truncate (out, 0);
  gptd__prompt_template_render (t2, "why", "x", "because", out, &pb);
  g_assert_cmpstr (out->str, ==, "{Q} why [x] A: because");
}

static void
test_template_bad (void)
{
  static const struct { const char *text; const char *message; } bad[] = {
    /* No {instruction}: a template must show the instruction. */
    { "Q: {input}\nA: {output}", "t: a template needs {instruction} and {output}" },
    /* No {output}. */
    { "Q: {instruction}", "t: a template needs {instruction} and {output}" },
    /* A misspelt placeholder, with its line and column. */
    { "Q: {instruction}\nI: {inptu}\nA: {output}", "t:2:4: unknown placeholder {inptu}" },
    /* An unclosed section. */
    { "{instruction}{?input} {input}{output}", "t:1:30: {output} inside the {?input}" },
    { "{instruction}{?input} {input}", "t:1:14: {?input} without its {/input}" },
    /* A brace left open on its line. */
    { "{instruction\n}{output}", "t:1:1: a '{' without its '}'" },
    /* {response} after the output. */
    { "{instruction}{output}{response}", "t:1:22: {response} after {output}" },
  };
  for (guint i = 0; i < G_N_ELEMENTS (bad); i++)
    {
      g_autoptr (GError) error = NULL;
      g_autoptr (GptdPromptTemplate) t = gptd__prompt_template_new (bad[i].text, "t", &error);
      g_assert_null (t);
      g_assert_error (error, GPTD_STAGE_ERROR, GPTD_STAGE_ERROR_INPUT);
      if (!g_str_has_prefix (error->message, bad[i].message))
        g_error ("template %u: got \"%s\", want it to start \"%s\"", i, error->message,
                 bad[i].message);
    }
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  gptd_nn_set_num_threads (1);
  g_test_add_func ("/instruct/collate/rows", test_collate_rows);
  g_test_add_func ("/instruct/collate/set", test_collate_set);
  g_test_add_func ("/instruct/collate/loss", test_collate_loss);
  g_test_add_func ("/instruct/split/book", test_split_book);
  g_test_add_func ("/instruct/set/batches", test_set_batches);
  g_test_add_func ("/instruct/template/alpaca", test_template_alpaca);
  g_test_add_func ("/instruct/template/phi3", test_template_phi3);
  g_test_add_func ("/instruct/template/file", test_template_file);
  g_test_add_func ("/instruct/template/bad", test_template_bad);
  return g_test_run ();
}
