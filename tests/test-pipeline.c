/* test-pipeline.c: the pipeline file loader — one bad pipeline per kind of problem
 * (each must be reported exactly once, naming file, line, stage and key), a file
 * with many problems that must all be reported, variables and settings, parameter
 * values, and the loaded graph. */
#include "config.h"

#include <string.h>

#include "test-pipeline-util.h"

static GptdRegistry *registry;

#define HEAD "[pipeline]\nname=t\n"

typedef struct {
  const char *what;          /* what the case checks */
  const char *text;
  const char *settings[3];
  GptdPipelineError code;
  guint line;                /* 0: the problem has no line */
  const char *stage;
  const char *key;
  const char *message;       /* a substring of the message */
} BadCase;

static const BadCase bad_cases[] = {
  /* ---- syntax ---- */
  { "a line that is neither group, key=value nor comment",
    HEAD "[stage a]\ntype=test-counter\nthis is not a key\n", { NULL },
    GPTD_PIPELINE_ERROR_SYNTAX, 5, "a", NULL, "expected key=value" },
  { "a key given twice in one group",
    HEAD "[stage a]\ntype=test-counter\ncount=1\ncount=2\n", { NULL },
    GPTD_PIPELINE_ERROR_SYNTAX, 6, "a", "count", "given twice in the group (first on line 5)" },
  { "a stage group given twice",
    HEAD "[stage a]\ntype=test-counter\n[stage a]\ntype=test-counter\n", { NULL },
    GPTD_PIPELINE_ERROR_SYNTAX, 5, "a", NULL, "appears twice (first on line 3)" },
  { "a key before the first group",
    "name=t\n[pipeline]\n[stage a]\ntype=test-counter\n", { NULL },
    GPTD_PIPELINE_ERROR_SYNTAX, 1, NULL, "name", "before the first group" },
  { "a key name with a space",
    HEAD "[stage a]\ntype=test-counter\nco unt=1\n", { NULL },
    GPTD_PIPELINE_ERROR_SYNTAX, 5, "a", NULL, "not a valid key" },
  { "'${' never closed",
    HEAD "[stage a]\ntype=test-counter\ncount=${n\n", { NULL },
    GPTD_PIPELINE_ERROR_SYNTAX, 5, "a", "count", "without a closing" },
  { "text that is not UTF-8",
    HEAD "[stage a]\ntype=test-c\xff\n", { NULL },
    GPTD_PIPELINE_ERROR_SYNTAX, 4, NULL, NULL, "invalid UTF-8 at byte offset 39" },
  /* ---- groups ---- */
  { "a group that is neither [pipeline] nor [stage NAME]",
    HEAD "[stages a]\ntype=test-counter\n[stage b]\ntype=test-counter\n", { NULL },
    GPTD_PIPELINE_ERROR_BAD_GROUP, 3, NULL, NULL, "unknown group [stages a]" },
  { "a stage name with a dot (dots separate stage and output)",
    HEAD "[stage a.b]\ntype=test-counter\n[stage c]\ntype=test-counter\n", { NULL },
    GPTD_PIPELINE_ERROR_BAD_GROUP, 3, NULL, NULL, "not a valid stage name" },
  { "no [pipeline] group",
    "[stage a]\ntype=test-counter\n", { NULL },
    GPTD_PIPELINE_ERROR_NO_PIPELINE, 0, NULL, NULL, "no [pipeline] group" },
  { "no stages",
    HEAD, { NULL },
    GPTD_PIPELINE_ERROR_NO_STAGES, 0, NULL, NULL, "at least one stage" },
  /* ---- the pipeline's name (it becomes part of a run directory's name) ---- */
  { "a name that climbs out of the runs directory",
    "[pipeline]\nname=../../etc/x\n[stage a]\ntype=test-counter\n", { NULL },
    GPTD_PIPELINE_ERROR_BAD_VALUE, 2, NULL, "name", "contains '/'" },
  { "a name of two dots",
    "[pipeline]\nname=..\n[stage a]\ntype=test-counter\n", { NULL },
    GPTD_PIPELINE_ERROR_BAD_VALUE, 2, NULL, "name", "contains '..'" },
  { "a name with a control character",
    "[pipeline]\nname=a\x1b[2Jb\n[stage a]\ntype=test-counter\n", { NULL },
    GPTD_PIPELINE_ERROR_BAD_VALUE, 2, NULL, "name", "control character" },
  { "an empty name",
    "[pipeline]\nname=\n[stage a]\ntype=test-counter\n", { NULL },
    GPTD_PIPELINE_ERROR_BAD_VALUE, 2, NULL, "name", "empty" },
  { "a name longer than a file name may be",
    "[pipeline]\nname=" "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
    "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
    "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\n[stage a]\ntype=test-counter\n", { NULL },
    GPTD_PIPELINE_ERROR_BAD_VALUE, 2, NULL, "name", "longer than 200 bytes" },
  /* ---- stage types and keys ---- */
  { "a stage without type=",
    HEAD "[stage a]\ncount=3\n", { NULL },
    GPTD_PIPELINE_ERROR_MISSING_KEY, 3, "a", "type", "needs type=" },
  { "an unknown stage type, with the closest name",
    HEAD "[stage a]\ntype=test-countr\n", { NULL },
    GPTD_PIPELINE_ERROR_NO_SUCH_STAGE_TYPE, 4, "a", "type", "did you mean 'test-counter'?" },
  { "an unknown key, with the closest name",
    HEAD "[stage a]\ntype=test-counter\ncont=3\n", { NULL },
    GPTD_PIPELINE_ERROR_NO_SUCH_KEY, 5, "a", "cont", "did you mean 'count'?" },
  { "a required key missing",
    HEAD "[stage c]\ntype=test-counter\n[stage t]\ntype=test-pass\ninput=c\n"
    "[stage p]\ntype=test-params\ninput.tokens=t\n", { NULL },
    GPTD_PIPELINE_ERROR_MISSING_KEY, 8, "p", "size", "required by stage type test-params" },
  /* ---- values ---- */
  { "an integer that is not one",
    HEAD "[stage a]\ntype=test-counter\ncount=ten\n", { NULL },
    GPTD_PIPELINE_ERROR_BAD_VALUE, 5, "a", "count", "'ten' is not an integer" },
  { "an integer out of range",
    HEAD "[stage a]\ntype=test-counter\ncount=-1\n", { NULL },
    GPTD_PIPELINE_ERROR_BAD_VALUE, 5, "a", "count", "out of range [0, 1000000000]" },
  { "a hexadecimal number (strtod reads 0x10 as 16)",
    HEAD "[stage a]\ntype=test-params\nsize=1\nrate=0x1\n", { NULL },
    GPTD_PIPELINE_ERROR_BAD_VALUE, 6, "a", "rate", "'0x1' is not a number (write it in decimal" },
  { "a number with a hexadecimal exponent",
    HEAD "[stage a]\ntype=test-params\nsize=1\nrate=0x.8p0\n", { NULL },
    GPTD_PIPELINE_ERROR_BAD_VALUE, 6, "a", "rate", "'0x.8p0' is not a number" },
  { "infinity spelled out",
    HEAD "[stage a]\ntype=test-params\nsize=1\nrate=infinity\n", { NULL },
    GPTD_PIPELINE_ERROR_BAD_VALUE, 6, "a", "rate", "'infinity' is not a number" },
  { "an exponent without digits",
    HEAD "[stage a]\ntype=test-params\nsize=1\nrate=1e\n", { NULL },
    GPTD_PIPELINE_ERROR_BAD_VALUE, 6, "a", "rate", "'1e' is not a number" },
  { "a hexadecimal number in a list",
    HEAD "[stage a]\ntype=test-params\nsize=1\nsplit=0.9,0x0\n", { NULL },
    GPTD_PIPELINE_ERROR_BAD_VALUE, 6, "a", "split", "'0x0' is not a number" },
  { "a double at an exclusive bound",
    HEAD "[stage a]\ntype=test-params\nsize=1\nrate=0\n", { NULL },
    GPTD_PIPELINE_ERROR_BAD_VALUE, 6, "a", "rate", "out of range (0, 1]" },
  { "an enum value not among the choices",
    HEAD "[stage a]\ntype=test-params\nsize=1\nmode=medium\n", { NULL },
    GPTD_PIPELINE_ERROR_BAD_VALUE, 6, "a", "mode", "one of: fast, slow" },
  { "a boolean that is not one",
    HEAD "[stage a]\ntype=test-params\nsize=1\nflag=maybe\n", { NULL },
    GPTD_PIPELINE_ERROR_BAD_VALUE, 6, "a", "flag", "not a boolean" },
  { "a number list with a word in it",
    HEAD "[stage a]\ntype=test-params\nsize=1\nsplit=0.9,x\n", { NULL },
    GPTD_PIPELINE_ERROR_BAD_VALUE, 6, "a", "split", "'x' is not a number" },
  { "a number list item out of range",
    HEAD "[stage a]\ntype=test-params\nsize=1\nsplit=0.9,1.5\n", { NULL },
    GPTD_PIPELINE_ERROR_BAD_VALUE, 6, "a", "split", "1.5 is out of range [0, 1]" },
  { "an undefined variable",
    HEAD "[stage a]\ntype=test-counter\ncount=${gptd_test_nope}\n", { NULL },
    GPTD_PIPELINE_ERROR_UNDEFINED_VARIABLE, 5, "a", "count", "${gptd_test_nope}" },
  { "variables that refer to each other",
    "[pipeline]\nname=t\nx=${y}\ny=${x}\n[stage a]\ntype=test-counter\ncount=${x}\n",
    { NULL },
    GPTD_PIPELINE_ERROR_UNDEFINED_VARIABLE, 7, "a", "count", "loop" },
  { "the check() hook of the stage type",
    HEAD "[stage a]\ntype=test-params\nsize=1\nlow=5\nhigh=1\n", { NULL },
    GPTD_PIPELINE_ERROR_CHECK, 3, "a", NULL, "low (5) is above high (1)" },
  /* ---- links ---- */
  { "a dangling input, with the closest stage name",
    HEAD "[stage counter]\ntype=test-counter\n[stage f]\ntype=test-fail\ninput=countr\n",
    { NULL },
    GPTD_PIPELINE_ERROR_NO_SUCH_STAGE, 7, "f", "input", "no stage is called 'countr' (did you mean 'counter'?)" },
  { "an empty input=",
    HEAD "[stage c]\ntype=test-counter\n[stage f]\ntype=test-fail\ninput=\n", { NULL },
    GPTD_PIPELINE_ERROR_BAD_VALUE, 7, "f", "input", "name the stage" },
  { "a named input the stage type does not have",
    HEAD "[stage c]\ntype=test-counter\n[stage f]\ntype=test-fail\ninput=c\ninput.extra=c\n",
    { NULL },
    GPTD_PIPELINE_ERROR_NO_SUCH_PAD, 8, "f", "input.extra", "has no input 'extra'" },
  { "input= on a stage type with only named inputs",
    HEAD "[stage c]\ntype=test-counter\n[stage p]\ntype=test-params\nsize=1\ninput=c\n",
    { NULL },
    GPTD_PIPELINE_ERROR_NO_SUCH_PAD, 8, "p", "input", "no default input" },
  { "input= on a source",
    HEAD "[stage c]\ntype=test-counter\n[stage d]\ntype=test-counter\ninput=c\n", { NULL },
    GPTD_PIPELINE_ERROR_NO_SUCH_PAD, 7, "d", "input", "has no inputs" },
  { "reading from a sink",
    HEAD "[stage c]\ntype=test-counter\n[stage s]\ntype=test-sink\ninput=c\n"
    "[stage f]\ntype=test-fail\ninput=s\n", { NULL },
    GPTD_PIPELINE_ERROR_NO_SUCH_PAD, 10, "f", "input", "has no outputs" },
  { "reading from a stage with several outputs without naming one",
    HEAD "[stage c]\ntype=test-counter\n[stage sp]\ntype=test-split\ninput=c\n"
    "[stage f]\ntype=test-fail\ninput=sp\n", { NULL },
    GPTD_PIPELINE_ERROR_NO_SUCH_PAD, 10, "f", "input", "several outputs" },
  { "naming an output the producer does not have",
    HEAD "[stage c]\ntype=test-counter\n[stage sp]\ntype=test-split\ninput=c\n"
    "[stage f]\ntype=test-fail\ninput=sp.middle\n", { NULL },
    GPTD_PIPELINE_ERROR_NO_SUCH_PAD, 10, "f", "input", "no output 'middle' (its outputs: even, odd)" },
  { "a link between mismatched message types",
    HEAD "[stage c]\ntype=test-counter\n[stage p]\ntype=test-params\nsize=1\ninput.tokens=c\n",
    { NULL },
    GPTD_PIPELINE_ERROR_LINK, 8, "p", "input.tokens", "sends gptd.Document" },
  { "an epochs input linked to a stage that does not serve epochs",
    HEAD "[stage c]\ntype=test-counter\n[stage pass]\ntype=test-pass\ninput=c\n"
    "[stage t]\ntype=test-trainer\ninput=pass\n", { NULL },
    GPTD_PIPELINE_ERROR_LINK, 10, "t", "input", "does not serve epoch requests" },
  { "one input linked twice",
    HEAD "[stage c]\ntype=test-counter\n[stage f]\ntype=test-fail\ninput=c\ninput.default=c\n",
    { NULL },
    GPTD_PIPELINE_ERROR_LINK, 8, "f", "input.default", "linked twice" },
  { "a default input left unlinked",
    HEAD "[stage f]\ntype=test-fail\n", { NULL },
    GPTD_PIPELINE_ERROR_UNLINKED, 3, "f", "input", "is not linked" },
  { "a named input left unlinked",
    HEAD "[stage c]\ntype=test-counter\n[stage j]\ntype=test-join\ninput.right=c\n", { NULL },
    GPTD_PIPELINE_ERROR_UNLINKED, 5, "j", "input.left", "input 'left' (gptd.Document)" },
  { "an optional input may stay unlinked, but a required one may not",
    HEAD "[stage j]\ntype=test-join\n", { NULL },
    GPTD_PIPELINE_ERROR_UNLINKED, 3, "j", "input.left", "add input.left=STAGE" },
  { "two stages feeding each other",
    HEAD "[stage a]\ntype=test-fail\ninput=b\n[stage b]\ntype=test-fail\ninput=a\n", { NULL },
    GPTD_PIPELINE_ERROR_CYCLE, 3, "a", NULL, "cycle: a -> b -> a" },
  { "a stage feeding itself",
    HEAD "[stage a]\ntype=test-fail\ninput=a\n", { NULL },
    GPTD_PIPELINE_ERROR_CYCLE, 3, "a", NULL, "cycle: a -> a" },
  /* ---- settings ---- */
  { "a setting that is not KEY=VALUE",
    HEAD "[stage a]\ntype=test-counter\n", { "count", NULL },
    GPTD_PIPELINE_ERROR_BAD_SETTING, 0, NULL, NULL, "not KEY=VALUE" },
  { "a setting for a stage that does not exist",
    HEAD "[stage a]\ntype=test-counter\n", { "ghost.count=1", NULL },
    GPTD_PIPELINE_ERROR_NO_SUCH_STAGE, 0, "ghost", "count", "no stage called 'ghost'" },
  { "a setting for a mistyped stage gets the closest stage name",
    HEAD "[stage counter]\ntype=test-counter\n", { "conuter.count=1", NULL },
    GPTD_PIPELINE_ERROR_NO_SUCH_STAGE, 0, "conuter", "count",
    "no stage called 'conuter' (did you mean 'counter'?)" },
  { "a variable set that nothing uses, close to one that is used",
    HEAD "[stage a]\ntype=test-counter\ncount=${count}\n", { "count=2", "cuont=3", NULL },
    GPTD_PIPELINE_ERROR_BAD_SETTING, 0, NULL, "cuont",
    "no ${cuont} in the pipeline uses this variable (did you mean count?)" },
  { "a variable set that nothing uses, meant as a stage key",
    HEAD "[stage a]\ntype=test-counter\n", { "interval=3", NULL },
    GPTD_PIPELINE_ERROR_BAD_SETTING, 0, NULL, "interval", "write STAGE.KEY=VALUE" },
  { "an inline comment is not part of the value",
    HEAD "[stage a]\ntype=test-counter\ncount=many   # how many\n", { NULL },
    GPTD_PIPELINE_ERROR_BAD_VALUE, 5, "a", "count", "'many' is not an integer" },
  { "a setting giving a stage key a bad value",
    HEAD "[stage a]\ntype=test-counter\ncount=1\n", { "a.count=many", NULL },
    GPTD_PIPELINE_ERROR_BAD_VALUE, 0, "a", "count", "'many' is not an integer" },
};

static void
test_bad (gconstpointer data)
{
  const BadCase *c = data;
  g_test_message ("checks: %s", c->what);
  g_autoptr (GPtrArray) problems = NULL;
  g_autoptr (GError) error = NULL;
  g_autoptr (GptdPipeline) p = gptd_pipeline_load_data (registry, c->text, -1, "test.pipeline",
                                                        c->settings, &problems, &error);
  g_assert_null (p);
  g_assert_nonnull (problems);
  for (guint i = 0; i < problems->len; i++)
    g_test_message ("problem: %s", ((GptdPipelineProblem *) problems->pdata[i])->text);
  g_assert_cmpuint (problems->len, ==, 1);
  GptdPipelineProblem *pr = problems->pdata[0];
  g_assert_cmpint (pr->code, ==, c->code);
  g_assert_error (error, GPTD_PIPELINE_ERROR, (gint) c->code);
  g_assert_cmpstr (pr->file, ==, "test.pipeline");
  g_assert_cmpuint (pr->line, ==, c->line);
  g_assert_cmpstr (pr->stage, ==, c->stage);
  g_assert_cmpstr (pr->key, ==, c->key);
  g_assert_nonnull (strstr (pr->message, c->message));
  g_assert_cmpstr (error->message, ==, pr->text);
  /* The text shown to users names file, line, stage and key. */
  g_autoptr (GString) want = g_string_new ("test.pipeline");
  if (c->line)
    g_string_append_printf (want, ":%u", c->line);
  g_string_append (want, ": ");
  if (c->stage)
    g_string_append_printf (want, "stage %s: ", c->stage);
  if (c->key)
    g_string_append_printf (want, "key %s: ", c->key);
  g_assert_true (g_str_has_prefix (pr->text, want->str));
  if (c->settings[0] && c->code != GPTD_PIPELINE_ERROR_BAD_SETTING)
    g_assert_nonnull (strstr (pr->text, "--set"));
}

/* Every problem of a file is reported, in the order of the file, not only the first. */
static void
test_many_problems (void)
{
  const char *text =
    "[pipeline]\n"
    "name=many\n"
    "[stage corpus]\n"
    "type=text-sorce\n"                 /* 4: unknown type */
    "path=x.txt\n"
    "[stage count]\n"
    "type=test-counter\n"
    "count=lots\n"                      /* 8: bad value */
    "delay=3\n"                         /* 9: unknown key */
    "[stage params]\n"                  /* 10: missing size */
    "type=test-params\n"
    "rate=2\n"                          /* 12: out of range */
    "[stage sink]\n"
    "type=test-sink\n"
    "input=cuont\n"                     /* 15: dangling input */
    "[stage loop1]\n"                   /* 16: cycle */
    "type=test-fail\n"
    "input=loop2\n"
    "[stage loop2]\n"
    "type=test-fail\n"
    "input=loop1\n"
    "size=${undefined_gptd_var}\n";     /* 22: undefined variable; no such key */
  g_autoptr (GPtrArray) problems = NULL;
  g_autoptr (GError) error = NULL;
  g_autoptr (GptdPipeline) p = gptd_pipeline_load_data (registry, text, -1, "many.pipeline",
                                                        NULL, &problems, &error);
  g_assert_null (p);
  g_assert_error (error, GPTD_PIPELINE_ERROR, GPTD_PIPELINE_ERROR_INVALID);
  struct { GptdPipelineError code; guint line; const char *stage; const char *key; } want[] = {
    { GPTD_PIPELINE_ERROR_NO_SUCH_STAGE_TYPE, 4, "corpus", "type" },
    { GPTD_PIPELINE_ERROR_BAD_VALUE, 8, "count", "count" },
    { GPTD_PIPELINE_ERROR_NO_SUCH_KEY, 9, "count", "delay" },
    { GPTD_PIPELINE_ERROR_BAD_VALUE, 12, "params", "rate" },
    { GPTD_PIPELINE_ERROR_MISSING_KEY, 10, "params", "size" },
    { GPTD_PIPELINE_ERROR_UNDEFINED_VARIABLE, 22, "loop2", "size" },
    { GPTD_PIPELINE_ERROR_NO_SUCH_KEY, 22, "loop2", "size" },
    { GPTD_PIPELINE_ERROR_NO_SUCH_STAGE, 15, "sink", "input" },
    { GPTD_PIPELINE_ERROR_CYCLE, 16, "loop1", NULL },
  };
  for (guint i = 0; i < problems->len; i++)
    g_test_message ("problem: %s", ((GptdPipelineProblem *) problems->pdata[i])->text);
  g_assert_cmpuint (problems->len, ==, G_N_ELEMENTS (want));
  for (guint i = 0; i < G_N_ELEMENTS (want); i++)
    {
      GptdPipelineProblem *pr = problems->pdata[i];
      g_assert_cmpint (pr->code, ==, want[i].code);
      g_assert_cmpuint (pr->line, ==, want[i].line);
      g_assert_cmpstr (pr->stage, ==, want[i].stage);
      g_assert_cmpstr (pr->key, ==, want[i].key);
      g_assert_cmpstr (pr->file, ==, "many.pipeline");
      /* The summary error lists every problem. */
      g_assert_nonnull (strstr (error->message, pr->text));
    }
  g_assert_true (g_str_has_prefix (error->message, "9 problems:"));
}

static void
test_missing_file (void)
{
  g_autoptr (GPtrArray) problems = NULL;
  g_autoptr (GError) error = NULL;
  g_autoptr (GptdPipeline) p =
    gptd_pipeline_load_file (registry, "/nonexistent/gptd/x.pipeline", NULL, &problems, &error);
  g_assert_null (p);
  g_assert_error (error, GPTD_PIPELINE_ERROR, GPTD_PIPELINE_ERROR_IO);
  g_assert_nonnull (strstr (error->message, "/nonexistent/gptd/x.pipeline"));
  g_assert_cmpuint (problems->len, ==, 1);
}

/* ---- Valid pipelines --------------------------------------------------------- */

static GptdPipeline *
load_ok (const char *text, const char *filename, const char *const *settings)
{
  g_autoptr (GError) error = NULL;
  GptdPipeline *p = gptd_pipeline_load_data (registry, text, -1, filename, settings, NULL,
                                             &error);
  g_assert_no_error (error);
  g_assert_nonnull (p);
  return p;
}

static void
test_graph (void)
{
  const char *text =
    "# a comment\n"
    "\n"
    "[pipeline]\n"
    "name = graph\n"
    "[stage c]\n"
    "type = test-counter\n"
    "  count = 4  \n"
    "[stage sp]\n"
    "type=test-split\n"
    "input=c\n"
    "[stage odd]\n"
    "type=test-sink\n"
    "input=sp.odd\n"
    "[stage p]\n"
    "type=test-params\n"
    "size=3\n"
    "input.tokens=tok\n"
    "[stage tok]\n"
    "type=test-pass\n"
    "input=sp.even\n";
  g_autoptr (GptdPipeline) p = load_ok (text, "dir/graph.pipeline", NULL);
  g_assert_cmpstr (gptd_pipeline_get_name (p), ==, "graph");
  g_assert_cmpstr (gptd_pipeline_get_filename (p), ==, "dir/graph.pipeline");
  g_assert_cmpstr (gptd_pipeline_get_text (p), ==, text);
  g_assert_true (gptd_pipeline_get_registry (p) == registry);
  g_assert_cmpuint (gptd_pipeline_get_n_stages (p), ==, 5);
  const char *names[] = { "c", "sp", "odd", "p", "tok" };
  for (guint i = 0; i < 5; i++)
    {
      g_assert_cmpstr (gptd_pipeline_get_stage_name (p, i), ==, names[i]);
      g_assert_cmpint (gptd_pipeline_find_stage (p, names[i]), ==, (int) i);
    }
  g_assert_cmpint (gptd_pipeline_find_stage (p, "nope"), ==, -1);
  g_assert_true (gptd_pipeline_get_stage_type (p, 0) == gptd_registry_lookup (registry, "test-counter"));
  /* Whitespace around keys and values is not part of them. */
  g_assert_cmpint (gptd_params_get_int (gptd_pipeline_get_stage_params (p, 0), "count"), ==, 4);
}

static void
test_name_from_filename (void)
{
  g_autoptr (GptdPipeline) p =
    load_ok ("[pipeline]\n[stage a]\ntype=test-counter\n", "/x/y/my-run.pipeline", NULL);
  g_assert_cmpstr (gptd_pipeline_get_name (p), ==, "my-run");
  /* A file name that would not do as a pipeline name is replaced. */
  g_autoptr (GptdPipeline) q =
    load_ok ("[pipeline]\n[stage a]\ntype=test-counter\n", "/x/y/a..b.pipeline", NULL);
  g_assert_cmpstr (gptd_pipeline_get_name (q), ==, "pipeline");
}

/* A name made of variables is checked once expanded: a setting cannot smuggle a
 * path into it. */
static void
test_name_from_setting (void)
{
  const char *text = "[pipeline]\nname=run-${who}\nwho=me\n[stage a]\ntype=test-counter\n";
  const char *settings[] = { "who=x/../../y", NULL };
  g_autoptr (GError) error = NULL;
  g_autoptr (GPtrArray) problems = NULL;
  g_autoptr (GptdPipeline) p = gptd_pipeline_load_data (registry, text, -1, "test.pipeline",
                                                        settings, &problems, &error);
  g_assert_null (p);
  g_assert_error (error, GPTD_PIPELINE_ERROR, GPTD_PIPELINE_ERROR_BAD_VALUE);
  g_assert_cmpuint (problems->len, ==, 1);
  GptdPipelineProblem *pr = problems->pdata[0];
  g_assert_cmpuint (pr->line, ==, 2);
  g_assert_cmpstr (pr->key, ==, "name");
  g_assert_nonnull (strstr (pr->message, "contains '/'"));
  g_autoptr (GptdPipeline) ok = load_ok (text, "test.pipeline", NULL);
  g_assert_cmpstr (gptd_pipeline_get_name (ok), ==, "run-me");
}

static const char *
param_of (GptdPipeline *p, const char *stage, const char *key)
{
  int i = gptd_pipeline_find_stage (p, stage);
  g_assert_cmpint (i, >=, 0);
  return gptd_params_get_string (gptd_pipeline_get_stage_params (p, (guint) i), key);
}

static void
test_variables (void)
{
  const char *text =
    "[pipeline]\n"
    "name=vars-${who}\n"
    "who=default\n"
    "dir=${base}/data\n"
    "base=/srv\n"
    "[stage a]\n"
    "type=test-params\n"
    "size=${size}\n"
    "name=${who}:${dir}:$${literal}:${GPTD_TEST_ENV_VAR}\n"
    "input.tokens=t\n"
    "[stage c]\n"
    "type=test-counter\n"
    "[stage t]\n"
    "type=test-pass\n"
    "input=c\n";
  g_setenv ("GPTD_TEST_ENV_VAR", "from-env", TRUE);
  g_setenv ("who", "env-who", TRUE);
  g_setenv ("size", "7", TRUE);

  /* [pipeline] defaults beat the environment; the environment fills the rest. */
  {
    g_autoptr (GptdPipeline) p = load_ok (text, "v.pipeline", NULL);
    g_assert_cmpstr (param_of (p, "a", "name"), ==, "default:/srv/data:${literal}:from-env");
    g_assert_cmpstr (param_of (p, "a", "size"), ==, "7");
    g_assert_cmpstr (gptd_pipeline_get_name (p), ==, "vars-default");
  }
  /* Settings beat both, and may define what is used inside [pipeline] values. */
  {
    const char *settings[] = { "who=set", "base=/opt", "size=9", NULL };
    g_autoptr (GptdPipeline) p = load_ok (text, "v.pipeline", settings);
    g_assert_cmpstr (param_of (p, "a", "name"), ==, "set:/opt/data:${literal}:from-env");
    g_assert_cmpint (gptd_params_get_int (gptd_pipeline_get_stage_params (p, 0), "size"), ==, 9);
    g_assert_cmpstr (gptd_pipeline_get_name (p), ==, "vars-set");
  }
  /* stage.key settings override a key, or add one. */
  {
    const char *settings[] = { "a.name=plain", "c.count=3", "a.flag=yes", NULL };
    g_autoptr (GptdPipeline) p = load_ok (text, "v.pipeline", settings);
    const GptdParams *a = gptd_pipeline_get_stage_params (p, 0);
    g_assert_cmpstr (gptd_params_get_string (a, "name"), ==, "plain");
    g_assert_true (gptd_params_get_bool (a, "flag"));
    g_assert_true (gptd_params_is_set (a, "flag"));
    g_assert_cmpint (gptd_params_get_int (gptd_pipeline_get_stage_params (p, 1), "count"), ==, 3);
  }
  g_unsetenv ("GPTD_TEST_ENV_VAR");
  g_unsetenv ("who");
  g_unsetenv ("size");
}

/* Loads @text in a subprocess that must finish within @seconds; returns its
 * problems through the parent's assertions on the subprocess' stdout. */
static GPtrArray *
load_problems (const char *text, const char *const *settings, double *seconds)
{
  g_autoptr (GPtrArray) problems = NULL;
  g_autoptr (GError) error = NULL;
  g_autoptr (GTimer) timer = g_timer_new ();
  g_autoptr (GptdPipeline) p = gptd_pipeline_load_data (registry, text, -1, "test.pipeline",
                                                        settings, &problems, &error);
  *seconds = g_timer_elapsed (timer, NULL);
  for (guint i = 0; problems && i < problems->len; i++)
    g_test_message ("problem: %s", ((GptdPipelineProblem *) problems->pdata[i])->text);
  return g_steal_pointer (&problems);
}

/* Variables that each use the next one four times: expanding without memory of
 * what was expanded takes 4^20 steps and the value would grow to terabytes. It
 * is refused quickly, with one problem naming the variable that grew too large. */
static void
test_variables_exponential (void)
{
  if (!g_test_subprocess ())
    {
      /* The old expansion never finishes: the subprocess is killed after 20 s. */
      g_test_trap_subprocess (NULL, 20 * G_USEC_PER_SEC, G_TEST_SUBPROCESS_DEFAULT);
      g_test_trap_assert_passed ();
      return;
    }
  g_autoptr (GString) text = g_string_new ("[pipeline]\nname=t\n");
  for (int i = 0; i < 20; i++)
    g_string_append_printf (text, "v%d=${v%d}${v%d}${v%d}${v%d}\n", i, i + 1, i + 1, i + 1,
                            i + 1);
  g_string_append (text, "v20=abcdefgh\n[stage a]\ntype=test-params\nsize=1\nname=${v0}\n");
  g_assert_cmpuint (text->len, <, 1500);
  double seconds;
  g_autoptr (GPtrArray) problems = load_problems (text->str, NULL, &seconds);
  g_test_message ("refused in %.3f s", seconds);
  g_assert_cmpfloat (seconds, <, 1.0);
  g_assert_nonnull (problems);
  g_assert_cmpuint (problems->len, ==, 1);
  GptdPipelineProblem *pr = problems->pdata[0];
  g_assert_cmpint (pr->code, ==, GPTD_PIPELINE_ERROR_BAD_VALUE);
  g_assert_cmpstr (pr->stage, ==, "a");
  g_assert_cmpstr (pr->key, ==, "name");
  /* v11 is the first whose value (8 * 4^9 bytes) passes 1 MiB. */
  g_assert_nonnull (strstr (pr->message, "${v11}"));
  g_assert_nonnull (strstr (pr->message, "1 MiB"));

  /* Each value stays under the limit, but many uses add up: refused in total. */
  g_autoptr (GString) many = g_string_new ("[pipeline]\nname=t\n");
  for (int i = 0; i < 16; i++)
    g_string_append_printf (many, "w%d=${w%d}${w%d}\n", i, i + 1, i + 1);
  g_string_append (many, "w16=abcdefg\n[stage a]\ntype=test-params\nsize=1\n");
  for (int i = 0; i < 40; i++)
    g_string_append_printf (many, "k%d=${w0}\n", i);
  g_autoptr (GPtrArray) total = load_problems (many->str, NULL, &seconds);
  g_assert_cmpfloat (seconds, <, 1.0);
  g_assert_nonnull (total);
  g_assert_cmpuint (total->len, >=, 1);
  pr = total->pdata[0];
  g_assert_cmpint (pr->code, ==, GPTD_PIPELINE_ERROR_BAD_VALUE);
  g_assert_nonnull (strstr (pr->message, "in total"));
}

/* A chain of 17 variables, each naming the next, is legal: nesting is not a loop. */
static void
test_variables_chain (void)
{
  g_autoptr (GString) text = g_string_new ("[pipeline]\nname=t\n");
  for (int i = 0; i < 17; i++)
    g_string_append_printf (text, "c%d=${c%d}\n", i, i + 1);
  g_string_append (text, "c17=end\n[stage a]\ntype=test-params\nsize=1\nname=${c0}\n");
  g_autoptr (GptdPipeline) p = load_ok (text->str, "c.pipeline", NULL);
  g_assert_cmpstr (param_of (p, "a", "name"), ==, "end");

  /* Deeper chains are legal too, up to a nesting limit far above any real file. */
  g_autoptr (GString) deep = g_string_new ("[pipeline]\nname=t\n");
  for (int i = 0; i < 200; i++)
    g_string_append_printf (deep, "c%d=${c%d}.\n", i, i + 1);
  g_string_append (deep, "c200=end\n[stage a]\ntype=test-params\nsize=1\nname=${c0}\n");
  g_autoptr (GptdPipeline) q = load_ok (deep->str, "c.pipeline", NULL);
  g_assert_cmpuint (strlen (param_of (q, "a", "name")), ==, 203);
}

/* A loop of variables is reported once, naming the variables in it, however many
 * values use it and however often each variable uses the next. */
static void
test_variables_cycle (void)
{
  if (!g_test_subprocess ())
    {
      g_test_trap_subprocess (NULL, 20 * G_USEC_PER_SEC, G_TEST_SUBPROCESS_DEFAULT);
      g_test_trap_assert_passed ();
      return;
    }
  const char *text =
    "[pipeline]\n"
    "name=t\n"
    "x=${y}${y}${y}\n"
    "y=${z}${z}${z}\n"
    "z=${x}${x}${x}\n"
    "[stage a]\n"
    "type=test-params\n"
    "size=1\n"
    "name=${x}\n"
    "file=${y}\n";
  double seconds;
  g_autoptr (GPtrArray) problems = load_problems (text, NULL, &seconds);
  g_assert_cmpfloat (seconds, <, 1.0);
  g_assert_nonnull (problems);
  g_assert_cmpuint (problems->len, ==, 1);
  GptdPipelineProblem *pr = problems->pdata[0];
  g_assert_cmpint (pr->code, ==, GPTD_PIPELINE_ERROR_UNDEFINED_VARIABLE);
  g_assert_cmpuint (pr->line, ==, 9);
  g_assert_cmpstr (pr->key, ==, "name");
  g_assert_nonnull (strstr (pr->message, "loop: ${x} -> ${y} -> ${z} -> ${x}"));

  /* A variable that names itself, given as a setting. */
  const char *settings[] = { "self=a${self}", NULL };
  g_autoptr (GPtrArray) self = load_problems (HEAD "[stage a]\ntype=test-params\nsize=1\n"
                                              "name=${self}\nfile=${self}\n",
                                              settings, &seconds);
  g_assert_nonnull (self);
  g_assert_cmpuint (self->len, ==, 1);
  pr = self->pdata[0];
  g_assert_nonnull (strstr (pr->message, "loop: ${self} -> ${self}"));
}

static void
test_escapes (void)
{
  g_autoptr (GptdPipeline) p =
    load_ok ("[pipeline]\n[stage c]\ntype=test-counter\n[stage a]\ntype=test-params\n"
             "size=1\ninput.tokens=t\nname=\\sa\\tb\\\\c\\q\n"
             "[stage t]\ntype=test-pass\ninput=c\n", "e.pipeline", NULL);
  g_assert_cmpstr (param_of (p, "a", "name"), ==, " a\tb\\c\\q");
}

/* `key=value  # comment`: a '#' after white space starts a comment; \# is a '#'
 * that does not, and a '#' inside a word is kept. */
static void
test_inline_comments (void)
{
  g_autoptr (GptdPipeline) p =
    load_ok ("[pipeline]\nname=c   # the name\n[stage c]\ntype=test-counter  # a source\n"
             "count=3\t# three\n[stage a]\ntype=test-params\n"
             "size=1 #one\ninput.tokens=t\nname=issue\\s\\#5 and #6 x#y  # done\n"
             "[stage t]\ntype=test-pass\ninput=c\n", "c.pipeline", NULL);
  g_assert_cmpstr (gptd_pipeline_get_name (p), ==, "c");
  g_assert_cmpstr (param_of (p, "c", "count"), ==, "3");
  g_assert_cmpstr (param_of (p, "a", "size"), ==, "1");
  g_assert_cmpstr (param_of (p, "a", "name"), ==, "issue #5 and");
}

static void
test_params (void)
{
  g_autoptr (GptdPipeline) p =
    load_ok ("[pipeline]\n[stage c]\ntype=test-counter\n[stage t]\ntype=test-pass\ninput=c\n"
             "[stage a]\ntype=test-params\nsize=100\nmode=slow\nfile=data/x.txt\n"
             "input.tokens=t\nsplit=0.8, 0.1 ,0.1\nrate=1\n",
             "/some/dir/p.pipeline", NULL);
  const GptdParams *a = gptd_pipeline_get_stage_params (p, 2);
  g_assert_cmpint (gptd_params_get_int (a, "size"), ==, 100);
  g_assert_cmpfloat (gptd_params_get_double (a, "size"), ==, 100.0);
  g_assert_cmpfloat (gptd_params_get_double (a, "rate"), ==, 1.0);
  g_assert_cmpstr (gptd_params_get_string (a, "mode"), ==, "slow");
  g_assert_cmpint (gptd_params_get_int (a, "mode"), ==, 1);
  g_assert_false (gptd_params_get_bool (a, "flag"));
  g_assert_true (gptd_params_has (a, "flag"));
  g_assert_false (gptd_params_is_set (a, "flag"));
  g_assert_false (gptd_params_has (a, "file") == FALSE);
  /* PATH values resolve against the pipeline file's directory. */
  g_assert_cmpstr (gptd_params_get_string (a, "file"), ==, "/some/dir/data/x.txt");
  g_autofree char *other = gptd_params_resolve_path (a, "../y");
  g_assert_cmpstr (other, ==, "/some/y");
  g_autofree char *absolute = gptd_params_resolve_path (a, "/abs");
  g_assert_cmpstr (absolute, ==, "/abs");
  gsize n = 0;
  const double *split = gptd_params_get_double_list (a, "split", &n);
  g_assert_cmpuint (n, ==, 3);
  g_assert_cmpfloat (split[0], ==, 0.8);
  g_assert_cmpfloat (split[2], ==, 0.1);
  /* Defaults apply; a key with no default and no value is absent. */
  g_assert_cmpstr (gptd_params_get_string (a, "name"), ==, "x");
  const GptdParams *c = gptd_pipeline_get_stage_params (p, 0);
  g_assert_cmpint (gptd_params_get_int (c, "count"), ==, 10);
  g_assert_true (gptd_params_get_bool (c, "log"));
}

static void
test_params_new (void)
{
  const GptdStageType *t = gptd_registry_lookup (registry, "test-params");
  g_autoptr (GError) error = NULL;
  const char *good[] = { "size=5", "file=a.txt", NULL };
  g_autoptr (GptdParams) params = gptd_params_new (t, good, "/base", &error);
  g_assert_no_error (error);
  g_assert_cmpint (gptd_params_get_int (params, "size"), ==, 5);
  g_assert_cmpstr (gptd_params_get_string (params, "file"), ==, "/base/a.txt");

  const char *missing[] = { "rate=0.1", NULL };
  g_assert_null (gptd_params_new (t, missing, NULL, &error));
  g_assert_error (error, GPTD_PIPELINE_ERROR, GPTD_PIPELINE_ERROR_MISSING_KEY);
  g_clear_error (&error);
  const char *unknown[] = { "size=1", "sise=2", NULL };
  g_assert_null (gptd_params_new (t, unknown, NULL, &error));
  g_assert_error (error, GPTD_PIPELINE_ERROR, GPTD_PIPELINE_ERROR_NO_SUCH_KEY);
  g_clear_error (&error);
  const char *checked[] = { "size=1", "low=3", "high=2", NULL };
  g_assert_null (gptd_params_new (t, checked, NULL, &error));
  g_assert_error (error, GPTD_STAGE_ERROR, GPTD_STAGE_ERROR_FAILED);
}

static void
test_settings_from_proto (void)
{
  Gptd__Setting a = GPTD__SETTING__INIT, b = GPTD__SETTING__INIT;
  a.key = (char *) "x";
  a.value = (char *) "1";
  b.key = (char *) "s.k";
  b.value = (char *) "a=b";
  Gptd__Setting *list[] = { &a, &b };
  g_auto (GStrv) s = gptd_settings_from_proto (list, 2);
  g_assert_cmpuint (g_strv_length (s), ==, 2);
  g_assert_cmpstr (s[0], ==, "x=1");
  g_assert_cmpstr (s[1], ==, "s.k=a=b");
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  registry = test_registry ();
  for (guint i = 0; i < G_N_ELEMENTS (bad_cases); i++)
    {
      g_autofree char *path = g_strdup_printf ("/pipeline/bad/%02u", i);
      g_test_add_data_func (path, &bad_cases[i], test_bad);
    }
  g_test_add_func ("/pipeline/bad/many-problems", test_many_problems);
  g_test_add_func ("/pipeline/bad/missing-file", test_missing_file);
  g_test_add_func ("/pipeline/graph", test_graph);
  g_test_add_func ("/pipeline/name-from-filename", test_name_from_filename);
  g_test_add_func ("/pipeline/name-from-setting", test_name_from_setting);
  g_test_add_func ("/pipeline/variables", test_variables);
  g_test_add_func ("/pipeline/variables/exponential", test_variables_exponential);
  g_test_add_func ("/pipeline/variables/chain", test_variables_chain);
  g_test_add_func ("/pipeline/variables/cycle", test_variables_cycle);
  g_test_add_func ("/pipeline/escapes", test_escapes);
  g_test_add_func ("/pipeline/inline-comments", test_inline_comments);
  g_test_add_func ("/pipeline/params", test_params);
  g_test_add_func ("/pipeline/params-new", test_params_new);
  g_test_add_func ("/pipeline/settings-from-proto", test_settings_from_proto);
  int rc = g_test_run ();
  gptd_registry_free (registry);
  return rc;
}
