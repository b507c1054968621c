/* lib/pipeline/prompt-template.h: prompt templates: the book's Alpaca
 * format_input, the Phi-3 format of its exercise 7.1, and templates from files.
 *
 * A template is text with placeholders:
 *
 *   {instruction} {input} {output}   the record's fields
 *   {?input} ... {/input}            kept only when the input is not empty
 *   {response}                       where the prompt ends and the response
 *                                    begins (default: right before {output})
 *   {{ and }}                        a literal { and }
 *
 * {instruction} and {output} must each appear once; {output} comes after
 * {response} and outside the optional section. The book's Alpaca format is
 *
 *   Below is an instruction ... the request.\n\n### Instruction:\n{instruction}
 *   {?input}\n\n### Input:\n{input}{/input}{response}\n\n### Response:\n{output}
 *
 * (one line in the template), so its prompt part is format_input(entry).
 * Plain computation, tested directly.
 */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

typedef struct _GptdPromptTemplate GptdPromptTemplate;

/* Parses @text; @where names it in errors (a file path or "template=alpaca").
 * Errors (GPTD_STAGE_ERROR_INPUT) name @where, the line and the column. */
GptdPromptTemplate *gptd__prompt_template_new (const char *text, const char *where,
                                               GError **error);
/* The built-in template @name ("alpaca" or "phi3"), or NULL. */
GptdPromptTemplate *gptd__prompt_template_builtin (const char *name);
/* Reads and parses a template file; one newline at its end is not part of the
 * template. */
GptdPromptTemplate *gptd__prompt_template_load (const char *path, GError **error);
void gptd__prompt_template_free (GptdPromptTemplate *tmpl);

/* Appends the text of one record to @out: the prompt only when @output is NULL,
 * else prompt and response. Sets *prompt_bytes to the bytes of the prompt. */
void gptd__prompt_template_render (const GptdPromptTemplate *tmpl, const char *instruction,
                                   const char *input, const char *output, GString *out,
                                   gsize *prompt_bytes);

G_DEFINE_AUTOPTR_CLEANUP_FUNC (GptdPromptTemplate, gptd__prompt_template_free)

G_END_DECLS
