"""A screenshot of a ccma report in headless Chromium, as a reader at 1400 px sees it.

    python tools/report_screenshot.py results/demo/report.html results/demo/report_1400px.png

Needs Debian's ``chromium`` (``apt-get install chromium``). Prints the screenshot's path.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

WIDTH = 1400     # px: a laptop browser window
HEIGHT = 3200    # px: the findings and the first dataset's tables


def screenshot(html: Path, png: Path, width: int = WIDTH, height: int = HEIGHT,
               timeout: float = 120) -> Path:
    """Render ``html`` at ``width`` x ``height`` into ``png``; raises when chromium fails."""
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        raise FileNotFoundError("chromium is not installed (apt-get install chromium)")
    png = Path(png).resolve()
    png.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as profile:  # a fresh profile: no state between runs
        proc = subprocess.run(
            [browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
             f"--user-data-dir={profile}", f"--window-size={width},{height}",
             f"--screenshot={png}", Path(html).resolve().as_uri()],
            capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0 or not png.is_file():
        raise RuntimeError(f"chromium exited with {proc.returncode}: {proc.stderr.strip()[-500:]}")
    return png


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("html", type=Path)
    parser.add_argument("png", type=Path)
    parser.add_argument("--width", type=int, default=WIDTH)
    parser.add_argument("--height", type=int, default=HEIGHT)
    args = parser.parse_args(argv)
    print(screenshot(args.html, args.png, args.width, args.height))
    return 0


if __name__ == "__main__":
    sys.exit(main())
