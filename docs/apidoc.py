"""Build docs/api.md, the API reference, from the numpydoc docstrings.

    .venv/bin/python docs/apidoc.py            # rewrite docs/api.md
    .venv/bin/python docs/apidoc.py --check    # exit 1 if docs/api.md is stale

The public names are each module's ``__all__`` (``dmf``, ``dmf.cf``,
``dmf.audio``, ``dmf.jobs``, ``dmf.report``, ``dmf.errors``, ``dmf.store.generate``, which
is ``dmf.generate``); tests/test_docs.py checks that the file is current.
Numpydoc sections become Markdown headings and parameter lists; the
Examples stay as the doctests they are (pytest runs them from the source
with ``--doctest-modules``).
"""

from __future__ import annotations

import inspect
import re
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
TARGET = HERE / "api.md"
MODULES = ("dmf", "dmf.store.generate", "dmf.cf", "dmf.audio", "dmf.jobs", "dmf.report",
           "dmf.errors")
SECTION = re.compile(r"^([A-Z][A-Za-z ]+)\n-{3,}$", re.MULTILINE)
DOCTEST_NOTE = ("<!-- not run: a doctest; pytest --doctest-modules runs it from the "
                "source -->")


def public(module_name: str) -> list[tuple[str, object]]:
    import importlib

    module = importlib.import_module(module_name)
    names = getattr(module, "__all__", None) or [
        n for n, v in vars(module).items()
        if not n.startswith("_") and getattr(v, "__module__", "").startswith("dmf")]
    out = []
    for name in sorted(names, key=str.lower):
        value = getattr(module, name)
        if inspect.ismodule(value) or not (inspect.isclass(value) or callable(value)):
            continue
        out.append((f"{module_name}.{name}", value))
    return out


def signature(name: str, obj: object) -> str:
    try:
        sig = str(inspect.signature(obj))
    except (TypeError, ValueError):
        sig = "(...)"
    sig = re.sub(r" at 0x[0-9a-f]+", "", sig)
    return f"{'class ' if inspect.isclass(obj) else ''}{name}{sig}"


def render_doc(doc: str) -> list[str]:
    """A numpydoc docstring as Markdown."""
    doc = inspect.cleandoc(doc)
    parts = SECTION.split(doc)
    lines = [parts[0].strip(), ""]
    for title, body in zip(parts[1::2], parts[2::2], strict=True):
        lines += [f"**{title}**", ""]
        body = body.strip("\n")
        if title == "Examples":
            lines += [DOCTEST_NOTE, "```pycon", body.rstrip(), "```", ""]
        elif title in ("Parameters", "Returns", "Attributes", "Raises", "Yields",
                       "Other Parameters"):
            lines += [*_items(body), ""]
        else:
            lines += [body, ""]
    return lines


def _items(body: str) -> list[str]:
    """``name : type`` lines and their indented descriptions, as a list."""
    items: list[str] = []
    for line in body.splitlines():
        if line and not line.startswith(" "):
            name, _, kind = line.partition(" : ")
            items.append(f"- `{name.strip()}`" + (f" ({kind.strip()})" if kind else "") + ":")
        elif line.strip() and items:
            items[-1] += " " + line.strip()
    return [item.rstrip(":") for item in items]


def build() -> str:
    import dmf

    lines = ["# API reference", "",
             f"dmf {dmf.__version__}. Built from the docstrings by `docs/apidoc.py`; "
             "do not edit by hand. The command line is documented by `dmf --help` and "
             "`dmf COMMAND --help`.", ""]
    for module_name in MODULES:
        entries = public(module_name)
        if not entries:
            continue
        lines += [f"## {module_name}", ""]
        for name, obj in entries:
            lines += [f"### {name}", "", "```text", signature(name, obj), "```", ""]
            doc = inspect.getdoc(obj) or "(no docstring)"
            lines += render_doc(doc)
    return "\n".join(lines).rstrip() + "\n"


def main(argv: list[str]) -> int:
    text = build()
    if "--check" in argv:
        if not TARGET.exists() or TARGET.read_text() != text:
            print(f"{TARGET} is stale: run .venv/bin/python docs/apidoc.py", file=sys.stderr)
            return 1
        return 0
    TARGET.write_text(text)
    print(f"wrote {TARGET}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
