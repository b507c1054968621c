/* judge-prompt.h: the book's scoring prompt for one instruction record
 * (chapter 7, "evaluating the fine-tuned LLM") and the score read from the
 * judging model's reply.
 */
#pragma once

#include <glib.h>
#include <json-glib/json-glib.h>

G_BEGIN_DECLS

/**
 * gptd__judge_format_input:
 * @instruction: the record's instruction.
 * @input: (nullable): the record's input; NULL or "" leaves the section out.
 *
 * The book's format_input(): the Alpaca preamble, "### Instruction:" and,
 * for a non-empty input, "### Input:".
 *
 * Returns: (transfer full): the text.
 */
char *gptd__judge_format_input (const char *instruction, const char *input);

/**
 * gptd__judge_prompt:
 * @record: the record: an object with string members "instruction",
 *   "output", @response_key and optionally "input".
 * @response_key: the member holding the response to score ("model_response").
 * @error: return location for a #GError.
 *
 * The book's scoring prompt: "Given the input `...` and correct output `...`,
 * score the model response `...` on a scale from 0 to 100, ...".
 *
 * Returns: (transfer full): the prompt, or NULL with GPTD_STAGE_ERROR_INPUT
 *   naming the member that is missing or not a string.
 */
char *gptd__judge_prompt (JsonObject *record, const char *response_key, GError **error);

/**
 * gptd__judge_parse_score:
 * @reply: the judging model's reply.
 * @score: (out): the score.
 *
 * Reads the score: the reply as Python's int() reads it (white space around
 * an optionally signed decimal integer), or else the only whole number in the
 * reply ("Score: 85").  It must be within 0..100.
 *
 * Returns: FALSE when the reply holds no integer, several, or one out of range.
 */
gboolean gptd__judge_parse_score (const char *reply, int *score);

G_END_DECLS
