#!/bin/sh
# Regenerates the build system from configure.ac and Makefile.am.
# automake ships tap-driver.sh but does not install it by itself; copy it in.
set -e
cd "$(dirname "$0")"
mkdir -p build-aux m4
cp -f "$(automake --print-libdir)/tap-driver.sh" build-aux/tap-driver.sh
autoreconf -fi
