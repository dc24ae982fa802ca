#!/bin/bash
# Install what torpor, its demo and its tests need on Debian 12 (run as root), idempotently:
# gcc-multilib (32-bit workloads), criu (for its `crit` image decoder), tmux (terminal tests),
# libnftables1 (the network lock of TCP connections), a virtualenv with torpor.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
dpkg -s gcc-multilib >/dev/null 2>&1 || need+=(gcc-multilib)
dpkg -s criu >/dev/null 2>&1 || need+=(criu)
dpkg -s make >/dev/null 2>&1 || need+=(make)
dpkg -s tmux >/dev/null 2>&1 || need+=(tmux)
dpkg -s libnftables1 >/dev/null 2>&1 || need+=(libnftables1)
if ((${#need[@]})); then
    echo "setup: installing ${need[*]}" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq "${need[@]}" >/dev/null
fi

python=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$python" -m venv .venv
fi
# compat mode: a plain path entry, so `import torpor` works from any directory.
.venv/bin/pip install -q --disable-pip-version-check -e '.[test]' \
    --config-settings editable_mode=compat 2>&1 | grep -v '^WARNING: Location' || true
.venv/bin/python -c 'import torpor.images, elftools, click, rich' # fails loudly if the install did
