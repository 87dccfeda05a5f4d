#!/usr/bin/env bash
# Installs what building and testing xgan needs on Debian 12 (run as root), skipping packages
# that are already there so it is quick and works offline once done.
#   bash scripts/setup.sh            build + test dependencies
#   bash scripts/setup.sh --torch    also Debian's python3-torch (with scipy for the FID golden data
#                                    and matplotlib for the benchmark chart), only needed to
#                                    regenerate golden data (tests/golden/*.py) or run bench/*.py
set -euo pipefail

pkgs=(g++ cmake make libeigen3-dev nlohmann-json3-dev catch2 libcli11-dev libstb-dev
      libbenchmark-dev zlib1g-dev)
if [[ "${1:-}" == "--torch" ]]; then
  pkgs+=(python3-torch python3-numpy libopenblas0-openmp python3-scipy python3-matplotlib)
fi

missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}"
  if [[ $(id -u) -ne 0 ]]; then
    echo "setup: need root to install packages (run as root or with sudo)" >&2
    exit 1
  fi
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
echo "setup: dependencies present"
