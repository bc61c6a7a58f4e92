#!/usr/bin/env bash
# Renders DIR/report.html in headless Chromium and fails if the page did not
# load as a report or the screenshot is blank.
#
#   scripts/browser-check.sh DIR [SCREENSHOT.png]
#
# Installs Debian's `chromium` with apt-get when it is missing. The browser
# runs with a fresh profile and every background fetch turned off, so the
# report must render from the file alone (report.html is self-contained).
# Exit codes: 0 rendered, 1 blank or not a report, 2 usage or setup error.
set -euo pipefail

usage() {
  echo "usage: $0 DIR [SCREENSHOT.png]   (DIR holds a run's report.html)" >&2
  exit 2
}

[[ $# -ge 1 && $# -le 2 ]] || usage
dir=$1
html=$dir/report.html
[[ -f $html ]] || { echo "browser-check: $html not found" >&2; exit 2; }
html=$(realpath "$html")
shot=$(realpath -m "${2:-$dir/report.png}")

# Ubuntu's chromium-browser is a snap shim; Debian's package is `chromium`.
if ! command -v chromium >/dev/null 2>&1; then
  echo "browser-check: installing chromium (apt-get)" >&2
  sudo=""
  [[ $(id -u) -eq 0 ]] || sudo="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -qq
  $sudo apt-get install -y -qq --no-install-recommends chromium >/dev/null
fi

profile=$(mktemp -d)
trap 'rm -rf "$profile"' EXIT

browse() {
  # The render must not wait on anything but the file: no network services,
  # no first-run UI, a profile of its own. Chromium's D-Bus complaints on a
  # machine without a session bus are noise, so stderr is kept aside.
  timeout 120 chromium --headless --no-sandbox --disable-gpu --disable-quic \
    --no-first-run --disable-background-networking --disable-component-update \
    --disable-sync --user-data-dir="$profile" "$@" "file://$html" 2>"$profile/stderr" || {
    echo "browser-check: chromium failed:" >&2
    tail -5 "$profile/stderr" >&2
    exit 2
  }
}

browse --window-size=1280,2000 --screenshot="$shot" >/dev/null
browse --dump-dom >"$profile/dom.html"

# Standard-library Python only: decode the PNG (zlib + the five PNG row
# filters), count distinct colours and the share of pixels that differ from
# the background; and check the DOM is the report, not an error page.
python3 - "$shot" "$profile/dom.html" "$dir/summary.json" <<'PY'
import json, struct, sys, zlib

MIN_COLOURS = 16        # text, table rules, chart lines and fills
MIN_INK = 0.01          # share of pixels that are not background

def pixels(path):
    data = open(path, "rb").read()
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        sys.exit(f"browser-check: {path} is not a PNG")
    pos, idat, header = 8, [], None
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat.append(body)
        pos += 12 + length
    width, height, depth, colour_type, _, _, interlace = header
    if depth != 8 or colour_type not in (2, 6) or interlace:
        sys.exit(f"browser-check: unexpected PNG format {header}")
    bpp = 3 if colour_type == 2 else 4
    stride = width * bpp
    raw = zlib.decompress(b"".join(idat))
    prev = bytearray(stride)
    rows = []
    for y in range(height):
        start = y * (stride + 1)
        kind, line = raw[start], bytearray(raw[start + 1:start + 1 + stride])
        if kind == 1:
            for i in range(bpp, stride):
                line[i] = (line[i] + line[i - bpp]) & 255
        elif kind == 2:
            line = bytearray((a + b) & 255 for a, b in zip(line, prev))
        elif kind == 3:
            for i in range(stride):
                left = line[i - bpp] if i >= bpp else 0
                line[i] = (line[i] + (left + prev[i]) // 2) & 255
        elif kind == 4:
            for i in range(stride):
                a = line[i - bpp] if i >= bpp else 0
                b, c = prev[i], (prev[i - bpp] if i >= bpp else 0)
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        prev = line
        rows.append(bytes(line))
    return width, height, bpp, rows

shot, dom_path, summary_path = sys.argv[1:4]
width, height, bpp, rows = pixels(shot)
counts = {}
for row in rows:
    for i in range(0, len(row), bpp):
        colour = row[i:i + 3]
        counts[colour] = counts.get(colour, 0) + 1
total = width * height
background = max(counts.values())
ink = 1 - background / total
print(f"browser-check: {shot}: {width}x{height}, {len(counts)} colours, "
      f"{ink:.1%} of pixels off the background")
problems = []
if len(counts) < MIN_COLOURS or ink < MIN_INK:
    problems.append(f"the screenshot is blank (needs ≥ {MIN_COLOURS} colours "
                    f"and ≥ {MIN_INK:.0%} ink)")
dom = open(dom_path, encoding="utf-8", errors="replace").read()
try:
    scenario = json.load(open(summary_path))["scenario"]
except (OSError, ValueError, KeyError):
    scenario = None
if "<svg" not in dom:
    problems.append("the rendered page has no inline chart (<svg>)")
if scenario and scenario not in dom:
    problems.append(f"the rendered page does not name the scenario {scenario!r}")
if problems:
    for problem in problems:
        print(f"browser-check: FAIL {problem}", file=sys.stderr)
    sys.exit(1)
print("browser-check: ok")
PY
