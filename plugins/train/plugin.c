/* plugin.c: the train plugin's entry point. It provides token-windows (the book's
 * sliding-window data set), classification-dataset (the book's labelled data set
 * for classification fine-tuning), gpt-trainer (the book's pretraining loop) and
 * classifier-trainer (its classification fine-tuning). */
#include "config.h"

#include <gptd/plugin.h>

#include "train-plugin.h"

GPTD_PLUGIN_DEFINE ("train", "Sliding-window and classification data sets, GPT "
                    "pretraining with exact resume and classification fine-tuning",
                    PACKAGE_VERSION, "MIT",
                    &gptd__token_windows_type, &gptd__classification_dataset_type,
                    &gptd__gpt_trainer_type, &gptd__classifier_trainer_type);
