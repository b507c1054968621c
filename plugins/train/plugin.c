/* plugin.c: the train plugin's entry point. It provides token-windows (the book's
 * sliding-window data set), gpt-trainer (the book's pretraining loop) and
 * classifier-trainer (its classification fine-tuning). */
#include <gptd/plugin.h>

#include "train-plugin.h"

GPTD_PLUGIN_DEFINE ("train", "Sliding-window data sets, GPT pretraining with exact resume "
                    "and classification fine-tuning", "0.1.0", "MIT",
                    &gptd__token_windows_type, &gptd__gpt_trainer_type,
                    &gptd__classifier_trainer_type);
