/* instruct-plugin.h: the stage types of the instruct plugin (json-source,
 * prompt-format, instruction-collator): the data side of the book's chapter 7. */
#pragma once

#include <gptd/stage.h>

G_BEGIN_DECLS

extern const GptdStageType gptd__json_source_type;
extern const GptdStageType gptd__prompt_format_type;
extern const GptdStageType gptd__instruction_collator_type;

G_END_DECLS
