/* plugin.c: the instruct plugin's entry point. It provides json-source (records
 * from JSON arrays or JSON Lines), prompt-format (the book's Alpaca prompts) and
 * instruction-collator (the book's instruction data set and custom_collate_fn). */
#include "config.h"

#include <gptd/plugin.h>

#include "instruct-plugin.h"

GPTD_PLUGIN_DEFINE ("instruct", "Instruction data: JSON records, prompt templates, the "
                    "instruction collator", PACKAGE_VERSION, "MIT", &gptd__json_source_type,
                    &gptd__prompt_format_type, &gptd__instruction_collator_type);
