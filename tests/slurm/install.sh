#!/usr/bin/env bash
# Install Debian's SLURM daemons and munge for the single-node test cluster
# (tests/slurm/start.sh). Idempotent: a fast no-op when everything is there.
#
# Needs root (or passwordless sudo) and a Debian/Ubuntu package mirror.
set -euo pipefail

pkgs=(munge slurmctld slurmd slurm-client)

missing=()
for p in "${pkgs[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
        missing+=("$p")
    fi
done

if [ ${#missing[@]} -eq 0 ]; then
    echo "install.sh: already installed: ${pkgs[*]}"
    exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    SUDO="sudo -n"
fi

echo "install.sh: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
# Refresh the index only when apt has never been updated (a bare container
# image) or when the install fails with a stale index.
if ! compgen -G "/var/lib/apt/lists/*_Packages" >/dev/null; then
    $SUDO apt-get update -q
fi
# policy-rc.d: keep the packages' postinst from starting daemons with the
# default config; start.sh starts them with ours.
policy=/usr/sbin/policy-rc.d
created_policy=0
if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' | $SUDO tee "$policy" >/dev/null
    $SUDO chmod +x "$policy"
    created_policy=1
fi
cleanup() { if [ "$created_policy" = 1 ]; then $SUDO rm -f "$policy"; fi; }
trap cleanup EXIT

if ! $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"; then
    $SUDO apt-get update -q
    $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
echo "install.sh: done"
