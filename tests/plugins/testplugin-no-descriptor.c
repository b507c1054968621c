/* testplugin-no-descriptor.c: a shared object that exports no plugin descriptor; the
 * loader must skip it with a warning naming this file. */
#include "config.h"

#include <glib.h>
#include <gmodule.h>

G_MODULE_EXPORT int gptd_test_not_a_plugin (void);

G_MODULE_EXPORT int
gptd_test_not_a_plugin (void)
{
  return 42;
}
