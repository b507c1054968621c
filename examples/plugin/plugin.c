/* plugin.c: the example plugin's entry point: its descriptor, listing its stage
 * types. Only this symbol is exported (the Makefile builds with
 * -fvisibility=hidden; GPTD_PLUGIN_DEFINE marks the descriptor for export). */
#include "example.h"

GPTD_PLUGIN_DEFINE ("example", "Example stages: upper, word-count", "1.0", "MIT",
                    &example_upper_type, &example_word_count_type);
