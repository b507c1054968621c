/* core.c: the core plugin's entry point — registers text-source, table-source and
 * dump. Each stage lives in its own file. */
#include "config.h"

#include <gptd/plugin.h>
#include "core.h"

GPTD_PLUGIN_DEFINE ("core", "Basic sources and sinks: text-source, table-source, dump",
                    PACKAGE_VERSION, "MIT", &gptd__text_source_type,
                    &gptd__table_source_type, &gptd__dump_type);
