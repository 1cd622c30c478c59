"""Look at a model card as a reader would: render its README.md to HTML and screenshot it in headless Chromium.

The Hub renders cards as GitHub-flavoured Markdown; this uses the `markdown` package with tables (close enough to
check that tables, pictures and code read well). Needs `pip install -e ".[preview]"` and the Debian packages
`chromium` (for the screenshot; without it only the HTML is written).

Usage:
    python scripts/preview_card.py model_cards/examples/minilm-sst2 [--width 900] [--height 4000]
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
from pathlib import Path

STYLE = """body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;max-width:820px;margin:24px auto;
color:#1f2328;line-height:1.5;font-size:15px} table{border-collapse:collapse;margin:8px 0} th,td{border:1px solid
#d0d7de;padding:4px 8px;font-size:13px;vertical-align:top} img{max-width:100%} pre{background:#f6f8fa;padding:10px;
overflow:auto} code{background:#f6f8fa} blockquote{color:#59636e;border-left:4px solid #d0d7de;margin:0;padding:0 12px}"""


def render_html(folder: Path) -> Path:
    import markdown

    text = (folder / "README.md").read_text(encoding="utf-8")
    body = re.sub(r"\A---\n.*?\n---\n", "", text, flags=re.S)  # the YAML header is shown as a side panel on the Hub
    html = markdown.markdown(body, extensions=["tables", "fenced_code"])
    out = folder / "README.preview.html"
    out.write_text(f"<!doctype html><meta charset='utf-8'><style>{STYLE}</style>{html}", encoding="utf-8")
    return out


def screenshot(html: Path, png: Path, width: int, height: int) -> bool:
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        print("chromium not found (apt-get install -y chromium): wrote the HTML only")
        return False
    subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                    f"--window-size={width},{height}", f"--screenshot={png}", html.resolve().as_uri()],
                   check=True, capture_output=True, timeout=120)
    return True


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("folder", type=Path, help="a folder with README.md (a saved model or a card copy)")
    parser.add_argument("--width", type=int, default=900)
    parser.add_argument("--height", type=int, default=4000)
    parser.add_argument("--png", type=Path, default=None, help="screenshot file (default: FOLDER/README.preview.png)")
    args = parser.parse_args(argv)
    html = render_html(args.folder)
    png = args.png or args.folder / "README.preview.png"
    if screenshot(html, png, args.width, args.height):
        print(f"wrote {html} and {png}")
    else:
        print(f"wrote {html}")


if __name__ == "__main__":
    main()
