/* train-plugin.h: the stage types of the train plugin (token-windows,
 * classification-dataset, gpt-trainer and classifier-trainer) and what their
 * files share. */
#pragma once

#include <gptd/stage.h>

G_BEGIN_DECLS

extern const GptdStageType gptd__token_windows_type;
extern const GptdStageType gptd__classification_dataset_type;
extern const GptdStageType gptd__gpt_trainer_type;
extern const GptdStageType gptd__classifier_trainer_type;

G_END_DECLS
