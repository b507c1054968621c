/* cli.h: the one-shot subcommands of gptd: `gptd run`, `gptd validate` and
 * `gptd plugins`.
 *
 * Each function takes the arguments that follow the subcommand (argv[0] is the
 * subcommand's name, as for a main()), parses its own options with GOptionContext,
 * loads the plugins and does its work in the foreground. They return the process
 * exit status.
 *
 *   FILE may also be the name of a shipped pipeline (`gptd run quickstart`: looked up
 *   in the installed pipelines directory, or the source tree's when run from the
 *   build tree, then the current directory) or "-" for standard input.
 *
 *   gptd run FILE [--set KEY=VALUE]... [--run-dir DIR] [--resume RUNDIR] [--quiet]
 *       Runs a pipeline with a progress line on a terminal (plain log lines when
 *       stderr is not a terminal). The run directory (default
 *       ./runs/NAME-YYYYmmdd-HHMMSS) receives the pipeline as submitted
 *       (pipeline.pipeline) and the event log (events.jsonl). SIGINT and SIGTERM
 *       cancel the run cleanly. --resume RUNDIR runs the pipeline saved in RUNDIR
 *       again in that directory, with the stages told to resume (FILE is then
 *       optional).
 *       Exit: 0 success, 1 a stage failed ("stage NAME: error" on stderr), 2 bad
 *       usage or an invalid pipeline (every problem printed), 130 cancelled.
 *
 *   gptd validate FILE [--set KEY=VALUE]... [--json]
 *       Loads and checks a pipeline, printing every problem.
 *       Exit: 0 valid, 1 invalid, 2 bad usage.
 *
 *   gptd generate -m MODEL_DIR [-p PROMPT | PROMPT...] [-n N] [--temperature T]
 *                 [--top-k K] [--top-p P] [--seed S] [--threads N] [--quiet]
 *                 [--weights fp32|bf16|q8]
 *       Loads a model directory (or a run's checkpoint/ root) and prints the prompt
 *       and its continuation as it is generated, without a pipeline or a daemon.
 *       Exit: 0, 1 the model cannot be loaded or generation failed, 2 bad usage.
 *
 *   gptd quantize MODEL_DIR OUT_DIR --weights bf16|q8
 *       Converts a float32 model directory's linear layers and head and saves
 *       them, with the rest of the model and its tokenizer, to OUT_DIR.
 *       Exit: 0, 1 the model cannot be read, converted or written, 2 bad usage.
 *
 *   gptd plugins [TYPE] [--json]
 *       Lists every stage type of every plugin found, or describes one stage type
 *       (parameters, inputs and outputs), as gst-inspect does.
 *       Exit: 0, 1 when TYPE is unknown, 2 bad usage.
 *
 * --set KEY=VALUE is repeatable: "var=value" fills ${var}, "stage.key=value" sets a
 * stage's key.
 */
#ifndef GPTD_CLI_H
#define GPTD_CLI_H

#include <glib.h>

G_BEGIN_DECLS

/* Exit statuses of the subcommands. */
#define GPTD_CLI_EXIT_OK 0
#define GPTD_CLI_EXIT_FAILED 1
#define GPTD_CLI_EXIT_USAGE 2
#define GPTD_CLI_EXIT_CANCELLED 130

/* `gptd run`: see above. */
int gptd_cli_run (int argc, char **argv);
/* `gptd validate`: see above. */
int gptd_cli_validate (int argc, char **argv);
/* `gptd generate`: see above. */
int gptd_cli_generate (int argc, char **argv);
/* `gptd quantize`: see above. */
int gptd_cli_quantize (int argc, char **argv);
/* `gptd plugins`: see above. */
int gptd_cli_plugins (int argc, char **argv);

G_END_DECLS

#endif /* GPTD_CLI_H */
