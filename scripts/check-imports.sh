#!/usr/bin/env bash
# Checks, from the sources, that imports run one way and files stay short.
#
#   bash scripts/check-imports.sh                  # src/ and loadtest/src/
#   bash scripts/check-imports.sh --loadtest-only  # loadtest/src/ only
#   bash scripts/check-imports.sh --self-test      # the checks on fixture trees
#   bash scripts/check-imports.sh DIR...           # other crates' source roots
#
# Two checks per source root:
#   imports  the graph of its top-level modules (module `a` imports `b` when
#            a file under `a` names `crate::b`, `use crate::{b, ..}` or climbs
#            to `b` with `super::`) has no cycle; a cycle is named, e.g.
#            `hub -> backplane -> hub`.
#   length   no source file is over 600 lines.
# Test code is left out of both: `#[cfg(test)]` items (a `mod tests { .. }`,
# a helper fn, a `use`), and files that are test modules (declared by
# `#[cfg(test)] mod x;`, or named tests.rs). Comments and string literals
# don't count as imports. The root file (lib.rs, main.rs) is not a module of
# the graph; its length is checked.
#
# Prints one line per check and a closing `N passed, M failed`; exits 1 if
# any check failed.
set -euo pipefail
CHECK_IMPORTS_REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)" exec python3 - "$@" <<'PY'
import os
import re
import shutil
import subprocess
import sys
import tempfile

MAX_LINES = 600  # a file a reader can hold in their head


def blank_comments_and_strings(text):
    """The code with comments and string/char literals blanked (newlines kept),
    so that neither is read as an import or counted as a brace."""
    out = []
    i, n = 0, len(text)

    def blank(chunk):
        return "".join("\n" if c == "\n" else " " for c in chunk)

    while i < n:
        c = text[i]
        if text.startswith("//", i):
            j = text.find("\n", i)
            j = n if j < 0 else j
            out.append(blank(text[i:j]))
            i = j
        elif text.startswith("/*", i):
            depth, j = 1, i + 2
            while j < n and depth:
                if text.startswith("/*", j):
                    depth, j = depth + 1, j + 2
                elif text.startswith("*/", j):
                    depth, j = depth - 1, j + 2
                else:
                    j += 1
            out.append(blank(text[i:j]))
            i = j
        elif re.match(r'(?:b|c)?r#*"', text[i:i + 260]) and (i == 0 or not (text[i - 1].isalnum() or text[i - 1] == "_")):
            raw = re.match(r'(?:b|c)?r(#*)"', text[i:])
            close = '"' + raw.group(1)
            j = text.find(close, i + raw.end())
            j = n if j < 0 else j + len(close)
            out.append(blank(text[i:j]))
            i = j
        elif c == '"' or (c in "bc" and text.startswith('"', i + 1) and (i == 0 or not (text[i - 1].isalnum() or text[i - 1] == "_"))):
            j = i + (1 if c == '"' else 2)
            while j < n and text[j] != '"':
                j += 2 if text[j] == "\\" else 1
            out.append(blank(text[i:j + 1]))
            i = j + 1
        elif c == "'":
            # A char literal ('x', '\n', '\u{1F600}', '{'), not a lifetime ('a).
            m = re.match(r"'(?:\\u\{[0-9a-fA-F]+\}|\\.|[^\\'])'", text[i:i + 12])
            if m:
                out.append(blank(m.group(0)))
                i += m.end()
            else:
                out.append(c)
                i += 1
        else:
            out.append(c)
            i += 1
    return "".join(out)


CFG_TEST = re.compile(r"#\[cfg\(test\)\]")


def test_items(code):
    """Spans of the items under `#[cfg(test)]`, and the names of the
    out-of-line modules (`#[cfg(test)] mod x;`) so declared."""
    spans, modules = [], []
    for m in CFG_TEST.finditer(code):
        j, n = m.end(), len(code)
        # further attributes on the same item
        while True:
            while j < n and code[j].isspace():
                j += 1
            if code.startswith("#[", j):
                depth = 0
                while j < n:
                    depth += {"[": 1, "]": -1}.get(code[j], 0)
                    j += 1
                    if depth == 0:
                        break
            else:
                break
        start = j
        depth = 0
        while j < n:
            ch = code[j]
            if ch in "([":
                depth += 1
            elif ch in ")]":
                depth -= 1
            elif ch == ";" and depth == 0:
                j += 1
                break
            elif ch == "{" and depth == 0:
                braces, j = 1, j + 1
                while j < n and braces:
                    braces += {"{": 1, "}": -1}.get(code[j], 0)
                    j += 1
                break
            j += 1
        item = code[start:j]
        decl = re.match(r"(?:pub(?:\([^)]*\))?\s+)?mod\s+(\w+)\s*;", item)
        if decl:
            modules.append(decl.group(1))
        spans.append((m.start(), j))
    return spans, modules


def without(code, spans):
    out, last = [], 0
    for a, b in spans:
        if a < last:
            continue
        out.append(code[last:a])
        out.append("".join("\n" if c == "\n" else " " for c in code[a:b]))
        last = b
    out.append(code[last:])
    return "".join(out)


def use_tree_heads(code, start):
    """Names at the top level of a `{ .. }` use tree beginning at `start`
    (just after the brace): `{a, b::c, d::{e, f}}` gives a, b, d."""
    heads, depth, j, expect = [], 1, start, True
    while j < len(code) and depth:
        ch = code[j]
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
        elif ch == "," and depth == 1:
            expect = True
        elif expect and depth == 1 and (ch.isalpha() or ch == "_"):
            word = re.match(r"\w+", code[j:]).group(0)
            heads.append(word)
            j += len(word)
            expect = False
            continue
        j += 1
    return heads


def module_path(rel):
    """The module path of a file: hub/delivery.rs and hub/delivery/mod.rs
    are ["hub", "delivery"]."""
    parts = rel[:-3].split(os.sep)
    if parts[-1] == "mod":
        parts.pop()
    return parts


def scan(root):
    """(modules, edges, file_lengths) of the crate whose sources are `root`;
    test files and test items left out of edges and lengths."""
    roots = {"lib.rs", "main.rs"}
    modules = set()
    for name in os.listdir(root):
        path = os.path.join(root, name)
        if name.endswith(".rs") and name not in roots:
            modules.add(name[:-3])
        elif os.path.isdir(path) and name != "bin":
            modules.add(name)
    edges = {m: set() for m in modules}
    lengths = {}
    test_paths = set()  # files (x.rs, x/mod.rs) and directories (x/) that are test modules
    files = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        rel_dir = os.path.relpath(dirpath, root)
        if rel_dir.split(os.sep)[0] == "bin":
            continue
        files += [os.path.join(dirpath, f) for f in sorted(filenames) if f.endswith(".rs")]
    # First every file's `#[cfg(test)] mod x;`, then the files that are not
    # test modules (nor under one).
    parsed = {}
    for path in files:
        rel = os.path.relpath(path, root)
        with open(path, encoding="utf-8") as f:
            text = f.read()
        code = blank_comments_and_strings(text)
        spans, test_modules = test_items(code)
        parsed[path] = (text, code, spans)
        # where a `mod x;` declared in this file lives
        base = os.path.dirname(rel)
        if os.path.basename(rel) not in ("mod.rs", "lib.rs", "main.rs"):
            base = rel[:-3]
        for name in test_modules:
            child = os.path.normpath(os.path.join(base, name))
            test_paths.add(child + ".rs")
            test_paths.add(os.path.join(child, "mod.rs"))
            test_paths.add(child + os.sep)
    for path in files:
        rel = os.path.relpath(path, root)
        if (
            rel in test_paths
            or any(rel.startswith(t) for t in test_paths if t.endswith(os.sep))
            or os.path.basename(rel) == "tests.rs"
            or (os.sep + "tests" + os.sep) in (os.sep + rel)
        ):
            continue
        text, code, spans = parsed[path]
        lengths[path] = text.count("\n") + (0 if text.endswith("\n") or not text else 1)
        if rel in roots:
            continue
        own = module_path(rel)
        top = own[0]
        if top not in modules:
            continue
        code = without(code, spans)
        found = set()
        for m in re.finditer(r"\bcrate::(\w+)", code):
            found.add(m.group(1))
        for m in re.finditer(r"\bcrate::\{", code):
            found.update(use_tree_heads(code, m.end()))
        # super::super::x from a file nested n deep reaches the root's x
        for m in re.finditer(r"\b((?:super::)+)(\w+|\{)", code):
            ups = m.group(1).count("super::")
            # in a file, `super` is the parent of the file's own module
            if ups == len(own):
                if m.group(2) == "{":
                    found.update(use_tree_heads(code, m.end()))
                else:
                    found.add(m.group(2))
        for name in found:
            if name in modules and name != top:
                edges[top].add(name)
    return modules, edges, lengths


def cycles(modules, edges):
    """One cycle per strongly connected component that has one, each as a
    list of modules starting and ending with the same one."""
    index, low, on, stack, comps, counter = {}, {}, set(), [], [], [0]

    def strong(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(edges[v]):
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            comps.append(sorted(comp))

    sys.setrecursionlimit(10000)
    for v in sorted(modules):
        if v not in index:
            strong(v)
    found = []
    for comp in sorted(comps):
        if len(comp) < 2:
            continue
        # the shortest cycle through the component's first module (BFS)
        members, first = set(comp), comp[0]
        parent, queue, end = {first: None}, [first], None
        while queue and end is None:
            nxt = []
            for v in queue:
                for w in sorted(edges[v] & members):
                    if w == first:
                        end = v
                        break
                    if w not in parent:
                        parent[w] = v
                        nxt.append(w)
                if end is not None:
                    break
            queue = nxt
        path, v = [first], end
        while v is not None and v != first:
            path.insert(1, v)
            v = parent[v]
        found.append((path + [first], comp))
    return found


def check(root, label=None):
    """Runs both checks on one source root; returns (passed, failed)."""
    label = label or root.rstrip("/") + "/"
    modules, edges, lengths = scan(root)
    passed = failed = 0
    found = cycles(modules, edges)
    if found:
        failed += 1
        for path, comp in found:
            print(f"FAIL {label}: import cycle {' -> '.join(path)} "
                  f"(one cycle among {', '.join(comp)})")
    else:
        passed += 1
        print(f"ok   {label}: no import cycle among its {len(modules)} top-level modules")
    long = sorted((p, n) for p, n in lengths.items() if n > MAX_LINES)
    if long:
        failed += 1
        for path, n in long:
            print(f"FAIL {label}: {path} is {n} lines (over {MAX_LINES})")
    else:
        passed += 1
        print(f"ok   {label}: no source file over {MAX_LINES} lines ({len(lengths)} files)")
    return passed, failed


def write(root, rel, text):
    path = os.path.join(root, rel)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)


def self_test():
    """The checks on fixture trees: a tree with a cycle and a long file must
    fail naming both; the same tree without them must pass; test code,
    comments and strings must not count."""
    import contextlib
    import io

    results = []

    def expect(name, ok):
        results.append(ok)
        print(f"{'ok  ' if ok else 'FAIL'} self-test: {name}")

    tmp = tempfile.mkdtemp(prefix="check-imports.")
    try:
        bad = os.path.join(tmp, "bad")
        write(bad, "lib.rs", "pub mod a;\npub mod b;\npub mod c;\npub mod d;\n")
        write(bad, "a.rs", "use crate::b::Thing;\n")
        write(bad, "b/mod.rs", "mod inner;\n")
        write(bad, "b/inner.rs", "use super::super::c;\n")
        write(bad, "c.rs", "use crate::{\n    a::{self, Other},\n    d,\n};\n")
        write(bad, "d.rs", "pub fn f() {}\n" + "// filler\n" * 600)
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            passed, failed = check(bad, "bad/")
        text = out.getvalue()
        expect("a cycle fails the check", failed == 2 and passed == 0)
        expect("the cycle is named", "import cycle a -> b -> c -> a" in text)
        expect("a file over 600 lines is named", f"{os.path.join(bad, 'd.rs')} is 601 lines" in text)
        script = os.path.join(os.environ["CHECK_IMPORTS_REPO"], "scripts", "check-imports.sh")
        run = subprocess.run(["bash", script, bad], capture_output=True, text=True)
        expect("the command exits 1 and closes with `0 passed, 2 failed`",
               run.returncode == 1 and run.stdout.splitlines()[-1:] == ["0 passed, 2 failed"])

        good = os.path.join(tmp, "good")
        write(good, "main.rs", "mod a;\nmod b;\nmod c;\nfn main() {}\n")
        write(good, "a.rs", "use crate::b::Thing;\nuse crate::{c, b::{x, y}};\n" + "\n" * 590)
        write(good, "b/mod.rs", "pub struct Thing;\n#[cfg(test)]\nmod tests;\n#[cfg(test)]\nmod fixture;\n"
              "#[cfg(test)]\nuse crate::a::Helper;\n"
              "#[cfg(test)]\nfn helper() { let _ = crate::a::f(); }\n")
        write(good, "b/tests.rs", "use crate::a::Everything;\n" + "\n" * 700)
        write(good, "b/fixture.rs", "use crate::a::Everything;\n" + "\n" * 700)
        write(good, "c.rs", (
            "//! Not an import: see [`crate::a`].\n"
            "/* nor crate::a /* nested */ crate::a */\n"
            "const S: &str = \"crate::a { }\";\n"
            "const R: &str = r#\"crate::{a} \"quoted\" }\"#;\n"
            "const C: char = '{';\n"
            "fn f<'a>(x: &'a str) -> &'a str { x }\n"
            "#[cfg(test)]\n#[allow(unused)]\nmod tests {\n    use crate::a;\n    fn g() { let _ = \"}\"; }\n}\n"
            "pub fn after() { crate::b::Thing; }\n"))
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            passed, failed = check(good, "good/")
        expect("an acyclic tree with short files passes", (passed, failed) == (2, 0))
        _, edges, lengths = scan(good)
        expect("test items, test files, comments and strings are not imports",
               edges == {"a": {"b", "c"}, "b": set(), "c": {"b"}})
        expect("test files are not counted for length",
               sorted(os.path.basename(p) for p in lengths) == ["a.rs", "c.rs", "main.rs", "mod.rs"])
        # (main.rs is there: the root file is no module of the graph, but its
        # length counts)
    finally:
        shutil.rmtree(tmp)
    return results.count(True), results.count(False)


def main(argv):
    # DIR arguments are read from where the script was called; src/ and
    # loadtest/src/ from the repository.
    argv = [os.path.abspath(a) if not a.startswith("-") else a for a in argv]
    os.chdir(os.environ["CHECK_IMPORTS_REPO"])
    if argv and argv[0] in ("-h", "--help"):
        print(__doc__ or "see the comment at the top of scripts/check-imports.sh")
        return 0
    if argv == ["--self-test"]:
        passed, failed = self_test()
    else:
        if argv == ["--loadtest-only"]:
            roots = ["loadtest/src"]
        elif not argv:
            roots = ["src", "loadtest/src"]
        elif any(a.startswith("-") for a in argv):
            print(f"unknown option in {argv}; see scripts/check-imports.sh", file=sys.stderr)
            return 2
        else:
            roots = argv
        passed = failed = 0
        for root in roots:
            p, f = check(root)
            passed, failed = passed + p, failed + f
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


sys.exit(main(sys.argv[1:]))
PY
