/* lib/pipeline/prompt-template.c: parsing and rendering prompt templates (see
 * prompt-template.h).
 */
#include "pipeline/prompt-template.h"

#include <string.h>

#include <gptd/stage.h>

typedef enum {
  PIECE_TEXT,
  PIECE_INSTRUCTION,
  PIECE_INPUT,
  PIECE_OUTPUT,
  PIECE_RESPONSE,
  PIECE_IF_INPUT,
  PIECE_END_INPUT,
} PieceKind;

typedef struct {
  PieceKind kind;
  char *text;       /* PIECE_TEXT */
} Piece;

struct _GptdPromptTemplate {
  GArray *pieces;   /* Piece */
};

static const char alpaca_template[] =
  "Below is an instruction that describes a task. "
  "Write a response that appropriately completes the request."
  "\n\n### Instruction:\n{instruction}"
  "{?input}\n\n### Input:\n{input}{/input}"
  "{response}\n\n### Response:\n{output}";

static const char phi3_template[] =
  "<|user|>\n{instruction}"
  "{?input}\n{input}{/input}"
  "{response}\n<|assistant|>:\n{output}";

static const struct {
  const char *name;
  PieceKind kind;
} placeholders[] = {
  { "instruction", PIECE_INSTRUCTION },
  { "input", PIECE_INPUT },
  { "output", PIECE_OUTPUT },
  { "response", PIECE_RESPONSE },
  { "?input", PIECE_IF_INPUT },
  { "/input", PIECE_END_INPUT },
};

static void
piece_clear (gpointer data)
{
  Piece *p = data;
  g_free (p->text);
}

void
gptd__prompt_template_free (GptdPromptTemplate *tmpl)
{
  if (tmpl == NULL)
    return;
  g_array_unref (tmpl->pieces);
  g_free (tmpl);
}

/* Line and column (1-based, in bytes) of @p in @text. */
static void
position_of (const char *text, const char *p, int *line, int *col)
{
  *line = 1;
  *col = 1;
  for (const char *s = text; s < p; s++)
    {
      if (*s == '\n')
        {
          (*line)++;
          *col = 1;
        }
      else
        (*col)++;
    }
}

/* Sets @error naming @where, the line and column of @p; returns NULL. */
static gpointer
fail_at (GError **error, const char *where, const char *text, const char *p,
         const char *message)
{
  int line, col;
  position_of (text, p, &line, &col);
  g_set_error (error, GPTD_STAGE_ERROR, GPTD_STAGE_ERROR_INPUT, "%s:%d:%d: %s", where, line,
               col, message);
  return NULL;
}

static void
add_text (GArray *pieces, GString *lit)
{
  if (lit->len == 0)
    return;
  Piece p = { PIECE_TEXT, g_strndup (lit->str, lit->len) };
  g_array_append_val (pieces, p);
  g_string_truncate (lit, 0);
}

GptdPromptTemplate *
gptd__prompt_template_new (const char *text, const char *where, GError **error)
{
  g_autoptr (GptdPromptTemplate) tmpl = g_new0 (GptdPromptTemplate, 1);
  g_autoptr (GString) lit = g_string_new (NULL);
  const char *s = text;
  int n_instruction = 0, n_output = 0, n_response = 0;
  const char *open_if = NULL;

  tmpl->pieces = g_array_new (FALSE, FALSE, sizeof (Piece));
  g_array_set_clear_func (tmpl->pieces, piece_clear);
  while (*s)
    {
      if (s[0] == '{' && s[1] == '{')
        {
          g_string_append_c (lit, '{');
          s += 2;
          continue;
        }
      if (s[0] == '}' && s[1] == '}')
        {
          g_string_append_c (lit, '}');
          s += 2;
          continue;
        }
      if (s[0] == '}')
        {
          return fail_at (error, where, text, s,
                          "a lone '}' (write '}}' for a literal brace)");
        }
      if (s[0] != '{')
        {
          g_string_append_c (lit, *s++);
          continue;
        }
      const char *close = strchr (s, '}');
      const char *nl = strchr (s, '\n');
      if (close == NULL || (nl != NULL && nl < close))
        {
          return fail_at (error, where, text, s, "a '{' without its '}' on the same line "
                          "(write '{{' for a literal brace)");
        }
      g_autofree char *name = g_strndup (s + 1, close - s - 1);
      Piece piece = { PIECE_TEXT, NULL };
      gboolean known = FALSE;
      for (guint i = 0; i < G_N_ELEMENTS (placeholders); i++)
        if (strcmp (name, placeholders[i].name) == 0)
          {
            piece.kind = placeholders[i].kind;
            known = TRUE;
          }
      if (!known)
        {
          g_autofree char *msg = g_strdup_printf (
              "unknown placeholder {%s}; the placeholders are {instruction}, {input}, "
              "{output}, {response} and the section {?input}...{/input}", name);
          return fail_at (error, where, text, s, msg);
        }
      switch (piece.kind)
        {
        case PIECE_INSTRUCTION:
          n_instruction++;
          break;
        case PIECE_OUTPUT:
          if (open_if)
            return fail_at (error, where, text, s,
                            "{output} inside the {?input} section");
          n_output++;
          break;
        case PIECE_RESPONSE:
          if (open_if)
            return fail_at (error, where, text, s,
                            "{response} inside the {?input} section");
          if (n_output > 0)
            return fail_at (error, where, text, s, "{response} after {output}");
          n_response++;
          break;
        case PIECE_IF_INPUT:
          if (open_if)
            return fail_at (error, where, text, s, "a {?input} section inside another");
          open_if = s;
          break;
        case PIECE_END_INPUT:
          if (!open_if)
            return fail_at (error, where, text, s, "{/input} without its {?input}");
          open_if = NULL;
          break;
        default:
          break;
        }
      add_text (tmpl->pieces, lit);
      g_array_append_val (tmpl->pieces, piece);
      s = close + 1;
    }
  add_text (tmpl->pieces, lit);
  if (open_if)
    return fail_at (error, where, text, open_if, "{?input} without its {/input}");
  if (n_instruction != 1 || n_output != 1 || n_response > 1)
    {
      g_set_error (error, GPTD_STAGE_ERROR, GPTD_STAGE_ERROR_INPUT,
                   "%s: a template needs {instruction} and {output} once each and "
                   "{response} at most once (it has %d, %d and %d)", where,
                   n_instruction, n_output, n_response);
      return NULL;
    }
  return g_steal_pointer (&tmpl);
}

GptdPromptTemplate *
gptd__prompt_template_builtin (const char *name)
{
  const char *text = NULL;
  g_autofree char *where = g_strdup_printf ("template=%s", name);
  if (g_strcmp0 (name, "alpaca") == 0)
    text = alpaca_template;
  else if (g_strcmp0 (name, "phi3") == 0)
    text = phi3_template;
  if (text == NULL)
    return NULL;
  GptdPromptTemplate *tmpl = gptd__prompt_template_new (text, where, NULL);
  g_assert (tmpl != NULL);
  return tmpl;
}

GptdPromptTemplate *
gptd__prompt_template_load (const char *path, GError **error)
{
  g_autofree char *text = NULL;
  gsize len = 0;
  if (!g_file_get_contents (path, &text, &len, error))
    return NULL;
  if (strlen (text) != len || !g_utf8_validate (text, (gssize) len, NULL))
    {
      g_set_error (error, GPTD_STAGE_ERROR, GPTD_STAGE_ERROR_INPUT,
                   "%s: a template must be UTF-8 text without NUL bytes", path);
      return NULL;
    }
  if (len > 0 && text[len - 1] == '\n')
    text[len - 1] = '\0';
  return gptd__prompt_template_new (text, path, error);
}

void
gptd__prompt_template_render (const GptdPromptTemplate *tmpl, const char *instruction,
                              const char *input, const char *output, GString *out,
                              gsize *prompt_bytes)
{
  gsize start = out->len;
  gboolean has_input = input != NULL && *input != '\0';
  gboolean skipping = FALSE, in_prompt = TRUE;

  *prompt_bytes = 0;
  for (guint i = 0; i < tmpl->pieces->len; i++)
    {
      const Piece *p = &g_array_index (tmpl->pieces, Piece, i);
      if (p->kind == PIECE_END_INPUT)
        {
          skipping = FALSE;
          continue;
        }
      if (skipping)
        continue;
      if (in_prompt && (p->kind == PIECE_RESPONSE || p->kind == PIECE_OUTPUT))
        {
          *prompt_bytes = out->len - start;
          in_prompt = FALSE;
          if (output == NULL)
            return;
        }
      switch (p->kind)
        {
        case PIECE_TEXT:
          g_string_append (out, p->text);
          break;
        case PIECE_INSTRUCTION:
          g_string_append (out, instruction);
          break;
        case PIECE_INPUT:
          g_string_append (out, input ? input : "");
          break;
        case PIECE_OUTPUT:
          g_string_append (out, output);
          break;
        case PIECE_IF_INPUT:
          skipping = !has_input;
          break;
        default:
          break;
        }
    }
}
