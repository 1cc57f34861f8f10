#!/usr/bin/env bash
# Renders every SVG picture of docs/ to PNG with rsvg-convert (Debian:
# `apt-get install librsvg2-bin`) and fails if one does not render or comes
# out blank. The PNGs go to OUT (default: a temporary folder) to be looked at.
#
#   docs/check-svgs.sh [OUT]
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
out="${1:-$(mktemp -d)}"
mkdir -p "$out"
if ! command -v rsvg-convert >/dev/null; then
    echo "rsvg-convert not found: apt-get install librsvg2-bin" >&2
    exit 2
fi
failed=0
for svg in "$here"/*.svg; do
    png="$out/$(basename "${svg%.svg}").png"
    if ! rsvg-convert --background-color=white "$svg" -o "$png"; then
        echo "FAILED to render $svg" >&2
        failed=1
        continue
    fi
    # A blank picture compresses to almost nothing: a chart with axes,
    # text and data is tens of kilobytes.
    size=$(stat -c %s "$png")
    if [ "$size" -lt 8000 ]; then
        echo "BLANK? $png is only $size bytes" >&2
        failed=1
        continue
    fi
    echo "ok $png ($size bytes)"
done
exit "$failed"
