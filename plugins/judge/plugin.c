/* plugin.c: the judge plugin's entry point.  It provides the judge stage
 * (judge.c): responses scored by a model served over Ollama's HTTP API. */
#include "config.h"

#include <gptd/plugin.h>

#include "judge-plugin.h"

GPTD_PLUGIN_DEFINE ("judge", "Scores responses with a model served by Ollama",
                    PACKAGE_VERSION, "MIT", &gptd__judge_type);
