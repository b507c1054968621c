/* plugin.c: the generate plugin's entry point.  It provides the generator
 * stage (generator.c): text generation from a GPT-2 model directory, and the
 * responder stage (responder.c): a response to each instruction record; and the
 * classifier stage (classifier.c): predictions of a fine-tuned classifier. */
#include "config.h"

#include <gptd/plugin.h>

#include "generate-plugin.h"

GPTD_PLUGIN_DEFINE ("generate", "Text generation and classification with GPT-2 models",
                    PACKAGE_VERSION, "MIT", &gptd__generator_type, &gptd__responder_type,
                    &gptd__classifier_type);
