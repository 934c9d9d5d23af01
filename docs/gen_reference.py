"""Generate the API reference pages (docs/reference/*.md) from the docstrings.

One page per public name of ``bayesglmm`` (its ``__all__``): functions with their signature
and docstring, classes with their public methods and properties. Run by the MkDocs build
(docs/hooks.py, before the pages are collected) and by hand:

    python docs/gen_reference.py            # (re)write docs/reference/

The pages are build output (git-ignored), so docstring changes never leave them stale.
"""

from __future__ import annotations

import inspect
import re
import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent
REF = DOCS / "reference"
ROOT = DOCS.parent


def _bayesglmm():
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    import bayesglmm

    return bayesglmm


_SECTION = re.compile(r"^(Parameters|Returns|Yields|Raises|Attributes|Notes|Examples|See Also|"
                      r"Warnings|Other Parameters)\n-{3,}$", re.M)


def _numpydoc(text: str) -> str:
    """numpydoc sections ("Parameters" + dashes, "name : type" + indented description) ->
    a bold heading and a bullet list (an indented description would be a code block)."""
    if not _SECTION.search(text):
        return text
    out: list[str] = []
    lines = text.split("\n")
    i = 0
    in_section = False
    while i < len(lines):
        line = lines[i]
        if i + 1 < len(lines) and _SECTION.match(line + "\n" + lines[i + 1]):
            out += ["", f"**{line}**", ""]
            in_section = line not in ("Notes", "Examples", "Warnings")
            i += 2
            continue
        if in_section and line.strip() and not line.startswith((" ", "\t")):
            desc = []
            j = i + 1
            while j < len(lines) and (lines[j].startswith((" ", "\t")) or not lines[j].strip()):
                if lines[j].strip():
                    desc.append(lines[j].strip())
                j += 1
                if j < len(lines) and not lines[j].strip() and j + 1 < len(lines) \
                        and not lines[j + 1].startswith((" ", "\t")):
                    break
            name = line.strip()
            out.append(f"* `{name}`" + (f": {' '.join(desc)}" if desc else ""))
            i = j
            continue
        out.append(line)
        i += 1
    return "\n".join(out)


def _md(doc: str | None) -> str:
    """Docstring (reST-flavoured, numpydoc sections) -> Markdown."""
    if not doc:
        return "*(no docstring)*"
    text = _numpydoc(inspect.cleandoc(doc))
    text = re.sub(r":(?:class|func|meth|attr|mod|data):`~?([^`]+)`", r"`\1`", text)
    text = re.sub(r"``([^`]+)``", r"`\1`", text)
    # reST literal blocks ("...::" followed by an indented block) -> fenced code
    out: list[str] = []
    lines = text.split("\n")
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.rstrip().endswith("::") and i + 1 < len(lines):
            out.append(line.rstrip()[:-1])  # "Example::" -> "Example:"
            j = i + 1
            while j < len(lines) and not lines[j].strip():
                j += 1
            block = []
            while j < len(lines) and (not lines[j].strip() or lines[j].startswith((" ", "\t"))):
                block.append(lines[j])
                j += 1
            while block and not block[-1].strip():
                block.pop()
            out += ["", "```python", *inspect.cleandoc("\n".join(block)).split("\n"), "```", ""]
            i = j
            continue
        out.append(line)
        i += 1
    return "\n".join(out).strip()


def _signature(name: str, obj) -> str:
    """``name(arg, ...)`` without type annotations and without ``self``."""
    try:
        sig = inspect.signature(obj)
    except (TypeError, ValueError):
        return f"{name}(...)"
    E = inspect.Parameter.empty
    params = [p.replace(annotation=E) for p in sig.parameters.values() if p.name != "self"]
    return f"{name}{sig.replace(parameters=params, return_annotation=E)}"


def _summary_line(obj) -> str:
    doc = inspect.getdoc(obj) or ""
    first = doc.strip().split("\n\n")[0].replace("\n", " ")
    first = re.split(r"(?<=[a-z)`])\.\s", first, maxsplit=1)[0].rstrip(".") + "."
    return _md(first) if first != "." else ""


def _members(cls) -> list[tuple[str, object]]:
    out = []
    for name, member in cls.__dict__.items():
        if name.startswith("_"):
            continue
        if isinstance(member, (property, staticmethod, classmethod)) or inspect.isfunction(member):
            out.append((name, member))
    return out


def page_for(qualname: str, obj) -> str:
    lines = [f"# {qualname}", ""]
    if inspect.isclass(obj):
        lines += [f"```python\nclass bayesglmm.{_signature(qualname, obj)}\n```", "",
                  _md(obj.__doc__), ""]
        bases = [b for b in obj.__mro__[1:] if b is not object]
        members = _members(obj)
        for b in bases:  # inherited public members not overridden
            have = {n for n, _ in members}
            members += [(n, m) for n, m in _members(b) if n not in have]
        if members:
            lines += ["## Methods and properties", ""]
        for name, member in members:
            if isinstance(member, property):
                lines += [f"### {name}", "", "*property*", "", _md(member.fget.__doc__), ""]
            else:
                fn = member.__func__ if isinstance(member, (staticmethod, classmethod)) else member
                lines += [f"### {name}", "", f"```python\n{_signature(name, fn)}\n```", "",
                          _md(fn.__doc__), ""]
    else:
        lines += [f"```python\nbayesglmm.{_signature(qualname, obj)}\n```", "",
                  _md(obj.__doc__), ""]
    lines += ["", f"*Generated from the docstring of `bayesglmm.{qualname}` by "
              "docs/gen_reference.py.*", ""]
    return "\n".join(lines)


def public_names() -> list[str]:
    bg = _bayesglmm()
    return sorted((n for n in bg.__all__ if not n.startswith("_")), key=str.lower)


def generate() -> dict[str, str]:
    """{relative path under docs/: text} of every reference page."""
    bg = _bayesglmm()
    pages: dict[str, str] = {}
    rows = []
    for name in public_names():
        obj = getattr(bg, name)
        pages[f"reference/{name}.md"] = page_for(name, obj)
        kind = "class" if inspect.isclass(obj) else "function"
        rows.append(f"| [`{name}`]({name}.md) | {kind} | {_summary_line(obj).replace('|', '&#124;')} |")
    pages["reference/index.md"] = "\n".join([
        "# API reference", "",
        "One page per public name of `bayesglmm`, generated from the docstrings.", "",
        "| Name | Kind | Summary |", "|---|---|---|", *rows, "",
    ])
    return pages


def nav_entries() -> list:
    """The MkDocs nav entries of the reference section."""
    return ["reference/index.md"] + [{n: f"reference/{n}.md"} for n in public_names()]


def write() -> list[str]:
    """Write the pages; remove stale ones. Returns the paths that changed."""
    pages = generate()
    REF.mkdir(exist_ok=True)
    changed = []
    for rel, text in pages.items():
        p = DOCS / rel
        if not p.exists() or p.read_text() != text:
            p.write_text(text)
            changed.append(rel)
    for p in REF.glob("*.md"):
        if f"reference/{p.name}" not in pages:
            p.unlink()
            changed.append(f"reference/{p.name}")
    return changed


if __name__ == "__main__":
    for rel in write():
        print(f"wrote docs/{rel}")
