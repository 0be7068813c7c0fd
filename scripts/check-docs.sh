#!/usr/bin/env bash
# Checks the documentation: the book in docs/ builds with mdbook, and every
# link between the repository's Markdown files resolves, anchors included.
#
#   scripts/check-docs.sh            build docs/book, then check every link
#
# What is checked, offline (external sites are never fetched):
#   - `mdbook build docs` succeeds (a page missing from SUMMARY.md is an error:
#     book.toml sets create-missing = false), and every page under docs/src is
#     listed in docs/src/SUMMARY.md;
#   - every Markdown link and image of every tracked *.md file (README.md, the
#     book's pages, helm/, k8s/, nginx/, loadtest/ ...), outside code: a
#     relative target must exist; a `#anchor` must be a heading of the target
#     as GitHub renders it and, for a book page, an id of the page mdbook
#     built; a page of the book may link only within docs/ (anything else is
#     linked by its GitHub URL, which then must name an existing file and
#     heading of this repository);
#   - every URL of this repository (https://github.com/ssehub/ssehub...) in
#     any other tracked file (the image's labels, the console's page, the
#     chart's metadata) names an existing file and heading likewise;
#   - every relative href and src in the main part of each built page resolves
#     to a file of the build, or to docs/ itself (the images), and its
#     fragment to an id of the target page.
# One PASS/FAIL line per file, then "N passed, M failed"; exit 1 on a failure.
# mdbook comes from scripts/install-test-deps.sh.
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT" || exit 1

MDBOOK="$(command -v mdbook || echo "${CARGO_HOME:-$HOME/.cargo}/bin/mdbook")"
if [[ ! -x "$MDBOOK" ]]; then
  echo "FAIL mdbook build: mdbook is not installed (scripts/install-test-deps.sh installs it)"
  echo "0 passed, 1 failed"
  exit 1
fi

if output="$("$MDBOOK" build docs 2>&1)"; then
  build_ok=1
  echo "PASS mdbook build ($("$MDBOOK" --version))"
else
  build_ok=0
  echo "FAIL mdbook build"
  printf '%s\n' "$output" | sed 's/^/    /'
fi

MARKDOWN="$(mktemp)"
# Every Markdown file of the repository, those not committed yet included.
{ git ls-files -- '*.md'; git ls-files --others --exclude-standard -- '*.md'; } >"$MARKDOWN" 2>/dev/null
OTHERS="$(mktemp)"
trap 'rm -f "$MARKDOWN" "$OTHERS"' EXIT
{ git ls-files; git ls-files --others --exclude-standard; } >"$OTHERS" 2>/dev/null

BUILD_OK="$build_ok" python3 - "$ROOT" "$MARKDOWN" "$OTHERS" <<'PY'
import html.parser
import os
import re
import sys
import unicodedata

root = sys.argv[1]
book_src = os.path.join(root, "docs", "src")
book_out = os.path.join(root, "docs", "book")
repo_url = "https://github.com/ssehub/ssehub"
build_ok = os.environ.get("BUILD_OK") == "1"

passed = 0
failed = 0


def report(name, problems, note=""):
    global passed, failed
    if problems:
        failed += 1
        print(f"FAIL {name}")
        for problem in problems:
            print(f"    {problem}")
    else:
        passed += 1
        print(f"PASS {name}{note}")


def prose_lines(text):
    """The lines of a Markdown text outside fenced code, with inline code
    spans blanked (a link inside backquotes is an example, not a link)."""
    fence = None
    for number, line in enumerate(text.split("\n"), 1):
        stripped = line.lstrip()
        marker = re.match(r"(`{3,}|~{3,})", stripped)
        if fence is None and marker:
            fence = marker.group(1)[0] * len(marker.group(1))
            continue
        if fence is not None:
            if stripped.startswith(fence):
                fence = None
            continue
        yield number, re.sub(r"(`+)(?:(?!\1).)+?\1", lambda m: " " * len(m.group(0)), line)


def heading_text(line):
    match = re.match(r"^(#{1,6})\s+(.*?)\s*#*\s*$", line)
    return match.group(2) if match else None


def github_slug(text):
    # The text as rendered: links by their label, no code or emphasis marks.
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", text)
    text = re.sub(r"<[^>]+>", "", text)
    text = text.replace("`", "").replace("*", "")
    text = text.strip().lower()
    kept = []
    for char in text:
        if char in " -_" or unicodedata.category(char)[0] in "LN":
            kept.append("-" if char == " " else char)
    return "".join(kept)


anchor_cache = {}


def github_anchors(path):
    """The anchors GitHub gives the headings of a Markdown file."""
    if path not in anchor_cache:
        anchors, seen = set(), {}
        fence = None
        for line in open(path, encoding="utf-8").read().split("\n"):
            stripped = line.lstrip()
            marker = re.match(r"(`{3,}|~{3,})", stripped)
            if fence is None and marker:
                fence = marker.group(1)
                continue
            if fence is not None:
                if stripped.startswith(fence):
                    fence = None
                continue
            text = heading_text(line)
            if text is None:
                continue
            slug = github_slug(text)
            count = seen.get(slug, 0)
            seen[slug] = count + 1
            anchors.add(slug if count == 0 else f"{slug}-{count}")
        anchor_cache[path] = anchors
    return anchor_cache[path]


class Page(html.parser.HTMLParser):
    """The ids of a built page, and the links inside its <main>."""

    def __init__(self):
        super().__init__()
        self.ids, self.links, self.depth = set(), [], 0

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if "id" in attrs:
            self.ids.add(attrs["id"])
        if tag == "main":
            self.depth += 1
        if self.depth:
            for name in ("href", "src"):
                if attrs.get(name):
                    self.links.append(attrs[name])

    def handle_endtag(self, tag):
        if tag == "main":
            self.depth -= 1


html_cache = {}


def built_page(path):
    if path not in html_cache:
        page = Page()
        page.feed(open(path, encoding="utf-8").read())
        html_cache[path] = page
    return html_cache[path]


def built_ids_of_source(md_path):
    rel = os.path.relpath(md_path, book_src)
    built = os.path.join(book_out, os.path.splitext(rel)[0] + ".html")
    return built_page(built).ids if os.path.exists(built) else None


def inside(path, directory):
    return os.path.commonpath([path, directory]) == directory


def check_anchor(target_path, anchor, problems, where, link):
    if not anchor or not target_path.endswith(".md"):
        return 0
    if anchor not in github_anchors(target_path):
        problems.append(f"{where}: {link}: no heading '#{anchor}' in {os.path.relpath(target_path, root)} (as GitHub renders it)")
    if inside(target_path, book_src) and build_ok:
        ids = built_ids_of_source(target_path)
        if ids is not None and anchor not in ids:
            problems.append(f"{where}: {link}: no id '{anchor}' in the built page of {os.path.relpath(target_path, root)}")
    return 1


def check_target(source, link, where, problems):
    """Checks one link of `source`; returns (links checked, anchors checked,
    external links skipped)."""
    link = link.strip().strip("<>")
    if link.startswith(("mailto:", "tel:")):
        return 0, 0, 1
    in_book = inside(source, book_src)
    if link.startswith(("http://", "https://")):
        if link == repo_url or link.startswith(repo_url + "#"):
            anchor = link.partition("#")[2]
            if anchor == "readme":  # GitHub's own anchor of the README on the repository's page
                return 1, 0, 0
            return 1, check_anchor(os.path.join(root, "README.md"), anchor, problems, where, link), 0
        for kind in ("/blob/main/", "/tree/main/"):
            if link.startswith(repo_url + kind):
                rest = link[len(repo_url + kind):]
                path, _, anchor = rest.partition("#")
                target = os.path.normpath(os.path.join(root, path))
                if not os.path.exists(target):
                    problems.append(f"{where}: {link}: {path} does not exist in the repository")
                    return 1, 0, 0
                return 1, check_anchor(target, anchor, problems, where, link), 0
        return 0, 0, 1
    path, _, anchor = link.partition("#")
    if not path:
        target = source
    else:
        target = os.path.normpath(os.path.join(os.path.dirname(source), path))
    if not inside(target, root) or not os.path.exists(target):
        problems.append(f"{where}: {link}: {os.path.relpath(target, root)} does not exist")
        return 1, 0, 0
    if in_book and not inside(target, os.path.join(root, "docs")):
        problems.append(f"{where}: {link}: a book page links outside docs/ (broken in the built book): use {repo_url}/blob/main/{os.path.relpath(target, root)}")
    elif in_book and target.endswith(".md") and not inside(target, book_src):
        problems.append(f"{where}: {link}: a book page links a Markdown file outside docs/src (mdbook renders it as .html)")
    return 1, check_anchor(target, anchor, problems, where, link), 0


LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*([^)\s]+)(?:\s+\"[^\"]*\")?\s*\)")
REFERENCE = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*(\S+)")
HTML_LINK = re.compile(r"<(?:a|img)\b[^>]*?\b(?:href|src)=\"([^\"]+)\"")
AUTOLINK = re.compile(r"<(https?://[^>\s]+)>")

tracked_list = sys.argv[2]
files = sorted({line.strip() for line in open(tracked_list) if line.strip()}) if os.path.exists(tracked_list) else []
files = [f for f in files if not f.startswith("docs/book/") and os.path.exists(os.path.join(root, f))]

# Every page of the book is listed in SUMMARY.md.
summary = os.path.join(book_src, "SUMMARY.md")
listed = set()
for _, line in prose_lines(open(summary, encoding="utf-8").read()):
    for match in LINK.finditer(line):
        listed.add(os.path.normpath(os.path.join(book_src, match.group(1))))
pages = {
    os.path.normpath(os.path.join(directory, name))
    for directory, _, names in os.walk(book_src)
    for name in names
    if name.endswith(".md") and name != "SUMMARY.md"
}
report(
    "every page of docs/src is in SUMMARY.md",
    [f"{os.path.relpath(p, root)} is not listed in docs/src/SUMMARY.md" for p in sorted(pages - listed)]
    + [f"SUMMARY.md lists {os.path.relpath(p, root)}, which does not exist" for p in sorted(listed - pages)],
    f" ({len(pages)} pages)",
)

totals = [0, 0, 0]
readme_into_book = 0
for rel in files:
    source = os.path.join(root, rel)
    problems, counts = [], [0, 0, 0]
    for number, line in prose_lines(open(source, encoding="utf-8").read()):
        targets = [m.group(1) for m in LINK.finditer(line)] + [m.group(1) for m in HTML_LINK.finditer(line)]
        targets += [m.group(1) for m in AUTOLINK.finditer(line)]
        reference = REFERENCE.match(line)
        if reference:
            targets.append(reference.group(1))
        for target in targets:
            result = check_target(source, target, f"{rel}:{number}", problems)
            counts = [a + b for a, b in zip(counts, result)]
            if rel == "README.md" and target.startswith("docs/src/"):
                readme_into_book += 1
    totals = [a + b for a, b in zip(totals, counts)]
    if counts[0] or problems:
        report(f"links of {rel}", problems, f" ({counts[0]} links, {counts[1]} anchors)")

# Links to this repository's files from elsewhere (an image label, the
# console's page, the chart's metadata): each names an existing file and heading.
URL = re.compile(re.escape(repo_url) + r"(?:/(?:blob|tree)/main/[^\s\"'<>)\]]*)?(?:#[\w-]+)?")
others = sorted(
    line.strip()
    for line in open(sys.argv[3])
    if line.strip() and not line.strip().endswith(".md") and os.path.isfile(os.path.join(root, line.strip()))
)
problems, checked = [], 0
for rel in others:
    try:
        text = open(os.path.join(root, rel), encoding="utf-8").read()
    except (UnicodeDecodeError, OSError):
        continue
    for number, line in enumerate(text.split("\n"), 1):
        for match in URL.finditer(line):
            link = match.group(0)
            if link.rstrip("/") in (repo_url + "/blob/main", repo_url + "/tree/main"):
                continue
            checked += check_target(os.path.join(root, rel), link, f"{rel}:{number}", problems)[0]
report("links to this repository from other files", problems, f" ({checked} links)")

if readme_into_book < 5:
    report("README links into the book", [f"README.md links only {readme_into_book} pages of docs/src"])
else:
    report("README links into the book", [], f" ({readme_into_book} links)")

# The built book: every relative href/src of each page's main part resolves.
if build_ok:
    problems, checked = [], 0
    docs_dir = os.path.join(root, "docs")
    for directory, _, names in os.walk(book_out):
        for name in sorted(names):
            if not name.endswith(".html") or name in ("print.html", "404.html", "toc.html"):
                continue
            page_path = os.path.join(directory, name)
            for link in built_page(page_path).links:
                if re.match(r"^[a-z][a-z0-9+.-]*:", link) or link.startswith("//"):
                    continue
                path, _, anchor = link.partition("#")
                target = page_path if not path else os.path.normpath(os.path.join(directory, path))
                checked += 1
                where = os.path.relpath(page_path, root)
                if not inside(target, docs_dir) or not os.path.exists(target):
                    problems.append(f"{where}: {link}: {os.path.relpath(target, root)} does not exist")
                elif anchor and target.endswith(".html") and anchor not in built_page(target).ids:
                    problems.append(f"{where}: {link}: no id '{anchor}' in {os.path.relpath(target, root)}")
    report("links of the built book (docs/book)", problems, f" ({checked} links)")

print(f"note: {totals[0]} links and {totals[1]} anchors checked in {len(files)} Markdown files; {totals[2]} external links not fetched")
print(f"{passed} passed, {failed} failed")
sys.exit(1 if failed else 0)
PY
