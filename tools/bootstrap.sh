#!/bin/sh
# Installs what gptd needs on Debian (or Ubuntu), then configures and builds it.
# Installs packages as root, or through sudo when run by another user. Extra
# arguments are passed to ./configure.
set -e
cd "$(dirname "$0")/.."
as_root=
[ "$(id -u)" -eq 0 ] || as_root=sudo
if command -v apt-get >/dev/null 2>&1; then
  $as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  $as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    build-essential autoconf automake libtool pkg-config \
    libglib2.0-dev libjson-glib-dev libuv1-dev \
    libprotobuf-c-dev protobuf-c-compiler libopenblas-dev libsystemd-dev libsoup-3.0-dev \
    libopenmpi-dev openmpi-bin abigail-tools curl \
    xz-utils ca-certificates >/dev/null
else
  echo "bootstrap: apt-get not found; install the packages listed in README.md by hand" >&2
fi
./autogen.sh >/dev/null
./configure --quiet "$@"
make -j"$(nproc)" >/dev/null
echo "gptd is built: daemon/gptd and daemon/gptctl"
