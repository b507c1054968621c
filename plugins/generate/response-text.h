/* response-text.h: the response part of a generated Alpaca continuation, cut
 * out as the book's chapter 7 does.
 */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

/* The section header of the book's Alpaca prompts that precedes a response. */
#define GPTD_RESPONSE_HEADER "### Response:"

/**
 * gptd__response_extract:
 * @generated: the generated continuation (the text after the prompt).
 *
 * The book's extraction, generated_text[len(input_text):]
 * .replace("### Response:", "").strip(): every "### Response:" removed, then
 * white space stripped from both ends as Python's str.strip() does (the
 * characters of str.isspace(), Unicode spaces included).
 *
 * Returns: (transfer full): the response.
 */
char *gptd__response_extract (const char *generated);

G_END_DECLS
