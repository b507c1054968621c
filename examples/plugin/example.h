/* example.h: the stage types of the example plugin, one per file. */
#ifndef EXAMPLE_H
#define EXAMPLE_H

#include <gptd/plugin.h>

extern const GptdStageType example_upper_type;
extern const GptdStageType example_word_count_type;

#endif /* EXAMPLE_H */
