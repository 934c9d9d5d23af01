"""Run the code examples of the user guide and write their outputs into the pages.

Every ```python block of a page in docs/ runs, in page order, in one namespace per page
(like a notebook). What a block prints (stdout, warnings, the value of a final expression)
and the matplotlib figures it creates are written right after it, between the markers

    <!-- output -->
    ```text
    ...
    ```
    ![Figure 1](img/<page>-1.png)
    <!-- /output -->

Figures are saved as PNGs under docs/img/. Nothing between the markers is typed by hand:

    python docs/build_examples.py              # run every page, rewrite outputs and figures
    python docs/build_examples.py priors.md    # only some pages
    python docs/build_examples.py --check      # run, change nothing, exit 1 on any drift

tests/test_docs.py runs the same executor (``check_page``) and fails when an example raises
or a shown output differs from what the run produces.

Markers a page may put on the line right before a ```python fence:
  <!-- no-run -->        the block is shown, not run (e.g. code for another package)
  <!-- expect-error -->  the block must raise; the exception is shown as its output

Volatile text (temporary directories, timings) is normalised by ``normalise`` before it is
written or compared.
"""

from __future__ import annotations

import ast
import contextlib
import difflib
import io
import os
import re
import sys
import tempfile
import traceback
import warnings
from dataclasses import dataclass, field
from pathlib import Path

DOCS = Path(__file__).resolve().parent
IMG = DOCS / "img"

OUT_OPEN = "<!-- output -->"
OUT_CLOSE = "<!-- /output -->"
NO_RUN = "<!-- no-run -->"
EXPECT_ERROR = "<!-- expect-error -->"

# Pages with examples, in guide order (pages without ```python blocks are skipped anyway).
_FENCE = re.compile(r"^```python\s*$")


class ExampleError(RuntimeError):
    """An example raised (or an expect-error example did not)."""


@dataclass
class Block:
    start: int  # line index of the opening fence
    end: int  # line index of the closing fence
    code: str
    run: bool = True
    expect_error: bool = False
    out_start: int | None = None  # line index of OUT_OPEN (if present)
    out_end: int | None = None  # line index of OUT_CLOSE
    output: str = ""
    figures: list[str] = field(default_factory=list)


def pages() -> list[Path]:
    """Every Markdown page of the guide that has a ```python block (dev notes excluded)."""
    out = []
    for p in sorted(DOCS.glob("*.md")):
        if any(_FENCE.match(line) for line in p.read_text().splitlines()):
            out.append(p)
    return out


def parse(text: str) -> tuple[list[str], list[Block]]:
    lines = text.split("\n")
    blocks: list[Block] = []
    i = 0
    while i < len(lines):
        if _FENCE.match(lines[i]):
            j = i + 1
            while j < len(lines) and lines[j].strip() != "```":
                j += 1
            if j == len(lines):
                raise ValueError(f"unclosed ```python fence at line {i + 1}")
            prev = lines[i - 1].strip() if i > 0 else ""
            b = Block(start=i, end=j, code="\n".join(lines[i + 1:j]),
                      run=prev != NO_RUN, expect_error=prev == EXPECT_ERROR)
            # an existing output block: blank lines, then OUT_OPEN ... OUT_CLOSE
            k = j + 1
            while k < len(lines) and not lines[k].strip():
                k += 1
            if k < len(lines) and lines[k].strip() == OUT_OPEN:
                e = k + 1
                while e < len(lines) and lines[e].strip() != OUT_CLOSE:
                    e += 1
                if e == len(lines):
                    raise ValueError(f"unclosed {OUT_OPEN} at line {k + 1}")
                b.out_start, b.out_end = k, e
                i = e
            else:
                i = j
            blocks.append(b)
        i += 1
    return lines, blocks


# ----------------------------------------------------------------------------- normalising

_VOLATILE = [
    # timings such as "Elapsed: 1.23 s" or "(0.8 seconds)"
    (re.compile(r"(?i)(elapsed(?: time)?:?\s*)\d+(?:\.\d+)?\s*(?:s|sec|seconds)\b"), r"\1<time>"),
    (re.compile(r"0x[0-9a-f]{6,}"), "0x..."),
]


def normalise(text: str, workdir: str | None = None) -> str:
    if workdir:
        text = text.replace(os.path.realpath(workdir) + os.sep, "").replace(workdir + os.sep, "")
        text = text.replace(os.path.realpath(workdir), ".").replace(workdir, ".")
    tmp = os.path.realpath(tempfile.gettempdir())
    text = re.sub(re.escape(tmp) + r"/[^\s'\"]*", "<tmp>", text)
    for pat, rep in _VOLATILE:
        text = pat.sub(rep, text)
    lines = [line.rstrip() for line in text.split("\n")]
    while lines and not lines[-1]:
        lines.pop()
    while lines and not lines[0]:
        lines.pop(0)
    return "\n".join(lines)


# ----------------------------------------------------------------------------- running


def _setup_process() -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pandas as pd

    plt.close("all")
    plt.rcParams.update({"figure.dpi": 80, "savefig.dpi": 80, "figure.figsize": (6.4, 4.0)})
    # the width used for every table shown in the guide (getting-started.md says so)
    pd.set_option("display.width", 120)
    pd.set_option("display.max_columns", 20)


def _is_plot_object(value) -> bool:
    mods = {type(value).__module__.split(".")[0]}
    if isinstance(value, (list, tuple)) and value:
        mods |= {type(v).__module__.split(".")[0] for v in value}
    return "matplotlib" in mods


def _run_block(code: str, ns: dict, label: str) -> tuple[str, BaseException | None]:
    """Execute ``code`` in ``ns`` like a REPL cell: the repr of a final expression is shown."""
    tree = ast.parse(code, filename=label)
    last = None
    if tree.body and isinstance(tree.body[-1], ast.Expr):
        last = ast.Expression(tree.body.pop().value)
    buf = io.StringIO()
    err: BaseException | None = None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("default")
        with contextlib.redirect_stdout(buf), contextlib.redirect_stderr(io.StringIO()):
            try:
                exec(compile(tree, label, "exec"), ns)
                if last is not None:
                    value = eval(compile(last, label, "eval"), ns)
                    if value is not None and not _is_plot_object(value):
                        print(repr(value))
            except Exception as e:  # noqa: BLE001 - reported to the caller
                err = e
    shown = [w for w in caught
             if not issubclass(w.category, (DeprecationWarning, PendingDeprecationWarning,
                                            FutureWarning, ResourceWarning))]
    text = buf.getvalue()
    for w in shown:
        text += f"\n{w.category.__name__}: {w.message}"
    return text, err


def run_page(path: Path, write_images: bool = True) -> tuple[str, list[Block]]:
    """Run every example of ``path``; return the page text with fresh outputs."""
    import matplotlib.pyplot as plt

    _setup_process()
    text = path.read_text()
    lines, blocks = parse(text)
    ns: dict = {"__name__": "__main__"}
    stem = path.stem
    nfig = 0
    cwd = os.getcwd()
    with tempfile.TemporaryDirectory(prefix="bayesglmm-docs-") as work:
        os.chdir(work)  # files written by examples (export(), ...) land here
        try:
            for n, b in enumerate(blocks, 1):
                if not b.run:
                    continue
                label = f"{path.name} example {n} (line {b.start + 1})"
                out, err = _run_block(b.code, ns, label)
                if b.expect_error:
                    if err is None:
                        raise ExampleError(f"{label}: expected an exception, none was raised")
                    out += f"\n{type(err).__name__}: {err}"
                elif err is not None:
                    tb = "".join(traceback.format_exception(type(err), err, err.__traceback__))
                    raise ExampleError(f"{label} raised:\n{tb}\nCode:\n{b.code}\nOutput so far:\n{out}")
                for num in plt.get_fignums():
                    fig = plt.figure(num)
                    nfig += 1
                    name = f"{stem}-{nfig}.png"
                    if write_images:
                        IMG.mkdir(exist_ok=True)
                        fig.savefig(IMG / name, metadata={"Software": None}, bbox_inches="tight")
                    b.figures.append(name)
                plt.close("all")
                b.output = normalise(out, work)
        finally:
            os.chdir(cwd)
    return render(lines, blocks), blocks


def render(lines: list[str], blocks: list[Block]) -> str:
    out: list[str] = []
    pos = 0
    for b in blocks:
        if not b.run:
            continue  # shown as written, output block (if any) included
        out.extend(lines[pos:b.end + 1])
        # skip the old output block (and the blank lines before it)
        pos = b.out_end + 1 if b.out_start is not None else b.end + 1
        if not b.output and not b.figures:
            continue
        out.append("")
        out.append(OUT_OPEN)
        if b.output:
            out.append("```text")
            out.extend(b.output.split("\n"))
            out.append("```")
        for name in b.figures:  # <page>-<n>.png: the n-th figure of the page
            out.append(f"![Figure {name[:-4].rsplit('-', 1)[1]}](img/{name})")
        out.append(OUT_CLOSE)
    out.extend(lines[pos:])
    return "\n".join(out)


def check_page(path: Path) -> str:
    """Run the examples of ``path`` without changing anything; return a diff ('' = no drift).
    Raises ExampleError when an example fails."""
    new, blocks = run_page(path, write_images=False)
    problems = []
    for b in blocks:
        for name in b.figures:
            if not (IMG / name).is_file():
                problems.append(f"figure docs/img/{name} is missing (run docs/build_examples.py)")
    old = path.read_text()
    diff = "".join(difflib.unified_diff(
        old.splitlines(True), new.splitlines(True),
        fromfile=f"docs/{path.name} (as written)", tofile=f"docs/{path.name} (as produced now)"))
    return "\n".join(problems + ([diff] if diff else []))


def main(argv: list[str]) -> int:
    check = "--check" in argv
    names = [a for a in argv if not a.startswith("--")]
    todo = [DOCS / n for n in names] if names else pages()
    bad = 0
    for p in todo:
        print(f"{p.name} ...", file=sys.stderr, flush=True)
        if check:
            d = check_page(p)
            if d:
                bad += 1
                print(d)
        else:
            new, _ = run_page(p)
            if new != p.read_text():
                p.write_text(new)
                print(f"  updated docs/{p.name}", file=sys.stderr)
    if check and bad:
        print(f"{bad} page(s) drifted; run python docs/build_examples.py", file=sys.stderr)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
