"""Operator YAML read safely, with the line of every value kept for error messages.

PyYAML's SafeLoader builds the data; a walk over the composed node graph records
where each path starts. Duplicate mapping keys (which YAML silently collapses) and
alias bombs (which expand exponentially when validated) are refused here, before
any schema sees the data.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ivr.exceptions import Problem, SourceError

PathKey = tuple[str | int, ...]

# Characters that look like a space, or like nothing, but are no YAML space: pasted from a web
# page or a chat (no-break space), or typed in an input method's full-width mode (U+3000).
_ODD_SPACE = re.compile("[\u00a0\u1680\u2000-\u200d\u202f\u205f\u2060\u3000\ufeff]")

MAX_BYTES = 1_000_000
# Counted with aliases expanded: what pydantic would walk. Far above any real tree.
MAX_EXPANDED_NODES = 200_000


@dataclass
class YamlDoc:
    """Parsed data plus a map from each path to the line it starts on (1-based)."""

    file: str
    data: Any
    lines: dict[PathKey, int] = field(default_factory=dict)

    def line_of(self, path: PathKey) -> int | None:
        """The line of `path`, or of its nearest ancestor that has one."""
        for end in range(len(path), -1, -1):
            line = self.lines.get(path[:end])
            if line is not None:
                return line
        return None

    def locate(self, loc: tuple[Any, ...]) -> tuple[PathKey, int | None]:
        """Map a validator's loc (which may hold union tags absent from the file) to a path."""
        path: PathKey = ()
        for part in loc:
            if (*path, part) in self.lines:
                path = (*path, part)
        return path, self.line_of(path)

    def problem(self, loc: tuple[Any, ...], message: str, severity: str = "error") -> Problem:
        path, line = self.locate(loc)
        return Problem(
            self.file, line, dotted(path), message, "warning" if severity == "warning" else "error"
        )


def dotted(path: PathKey) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


class _Loader(yaml.SafeLoader):
    """SafeLoader whose value errors (2026-02-30, !!int x) carry the value's line, and which
    refuses a number written with a leading 0 (`key: 011`): YAML 1.1 reads it as octal (9),
    never what the operator meant. A stored version (calls still on it) is read as it was
    accepted: before this, as octal (no version accepted since holds one)."""

    octal = False  # YAML 1.1's octal, for a stored version

    def construct_yaml_int(self, node: yaml.ScalarNode) -> Any:
        written = self.construct_scalar(node)
        if not self.octal and isinstance(written, str) and _LEADING_ZERO.fullmatch(written):
            raise ValueError(
                f"{written} has a leading 0, which YAML reads as an octal number: write it "
                f"in quotes ('{written}') for text, or without the 0 for a number"
            )
        return super().construct_yaml_int(node)

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep)
        except (ValueError, TypeError, OverflowError) as exc:
            raise yaml.constructor.ConstructorError(
                None, None, f"cannot read this value: {exc}", node.start_mark
            ) from None
        except (AttributeError, LookupError):  # PyYAML's own slip on a malformed value
            kind = str(node.tag).rsplit(":", 1)[-1]
            raise yaml.constructor.ConstructorError(
                None, None, f"cannot read this value as a {kind}", node.start_mark
            ) from None


_LEADING_ZERO = re.compile(r"[-+]?0[0-7_]+")
_Loader.add_constructor("tag:yaml.org,2002:int", _Loader.construct_yaml_int)


def load_text(text: str, file: str, *, stored: bool = False) -> YamlDoc:
    """`stored`: a text accepted before (a tree version calls are still on), rebuilt as it
    was: what later checks here refuse (`_lone_hash`) does not stop those calls."""
    if len(text.encode()) > MAX_BYTES:
        raise SourceError([Problem(file, None, "", f"file is larger than {MAX_BYTES} bytes")])
    loader: _Loader | None = None
    try:
        loader = _Loader(text)  # refuses control characters (NUL, ESC, ...) up front
        loader.octal = stored
        node = loader.get_single_node()
        if node is None:
            raise SourceError([Problem(file, 1, "", "file is empty")])
        doc = YamlDoc(file, None)
        problems: list[Problem] = []
        _walk(node, (), doc, problems, {}, set(), stored)
        if problems:
            raise SourceError(problems)
        doc.data = loader.construct_document(node)
        return doc
    except yaml.MarkedYAMLError as exc:
        last_line = max(1, len(text.splitlines()))
        mark = exc.problem_mark or exc.context_mark
        line = min(mark.line + 1, last_line) if mark else None
        reason = " ".join(str(x) for x in (exc.context, exc.problem) if x)
        lines = text.splitlines()
        where = lines[line - 1] if line is not None and 0 < line <= len(lines) else ""
        if "\t" in where[: len(where) - len(where.lstrip(" \t"))]:
            reason += " (a tab: indent with spaces; YAML does not take tabs for indentation)"
        elif "'\\t'" in reason:
            reason += " (a tab: YAML takes spaces, not tabs, after a ':' or '-'; type a space)"
        if exc.context in ("while scanning an alias", "while scanning an anchor"):
            # `key: *` and `key: &`: the star key and an ampersand need quotes.
            reason += ' (an unquoted * starts an alias and & an anchor: write "*" in quotes)'
        hint = _indentation_hint(exc, lines) if mark is not None else None
        opened = exc.context_mark
        if exc.context == "while scanning a simple key" and opened is not None:
            # Found on the line after: the key without its ':' is on the line it began.
            line = min(opened.line + 1, last_line)
            hint = "a key without ':' after it: write key: value"
        odd = _odd_indentation(lines, line)
        if odd is not None:
            line, hint = odd
        if hint:
            # The block "started" where its first key is: no help in finding this line's fault.
            reason += f" ({hint})"
        elif opened is not None and line is not None and opened.line + 1 != line:
            # An unclosed quote or bracket is found at the end; say where it began.
            reason += f" (started on line {opened.line + 1})"
        raise SourceError([Problem(file, line, "", f"not valid YAML: {reason}")]) from None
    except yaml.reader.ReaderError as exc:
        line = text.count("\n", 0, exc.position) + 1
        raise SourceError(
            [
                Problem(
                    file,
                    line,
                    "",
                    f"character U+{exc.character:04X} is not allowed in a YAML file "
                    "(a control character or NUL byte)",
                )
            ]
        ) from None
    except yaml.YAMLError as exc:
        raise SourceError([Problem(file, None, "", f"not valid YAML: {exc}")]) from None
    except RecursionError:
        raise SourceError([Problem(file, None, "", "nested too deeply")]) from None
    finally:
        if loader is not None:
            loader.dispose()


def _content_indent(line: str) -> int:
    """Where a line's key starts: after its indentation and any "- " of a list item."""
    rest = line.lstrip(" ")
    indent = len(line) - len(rest)
    while rest.startswith("- "):
        stripped = rest[2:].lstrip(" ")
        indent += len(rest) - len(stripped)
        rest = stripped
    return indent


def _line_above(lines: list[str], number: int) -> int | None:
    """The 0-based index of the nearest line before `number` (0-based) with content."""
    for i in range(min(number, len(lines)) - 1, -1, -1):
        content = lines[i].strip()
        if content and not content.startswith("#"):
            return i
    return None


def _named(character: str) -> str:
    """ "a no-break space", "an ideographic space": a character by its Unicode name."""
    name = unicodedata.name(character, "unnamed character").lower()
    return f"{'an' if name[0] in 'aeiou' else 'a'} {name}"


def _odd_indentation(lines: list[str], line: int | None) -> tuple[int, str] | None:
    """The nearest line up to `line` (1-based) indented with a character that looks like a
    space but is none, and what to say of it: YAML reads it as text, so the error is found
    lines later, where the indentation no longer adds up."""
    for i in range(min(line or 0, len(lines)) - 1, -1, -1):
        odd = _ODD_SPACE.match(lines[i].lstrip(" "))
        if odd:
            return i + 1, (
                f"this line is indented with {_named(odd[0])} "
                f"(U+{ord(odd[0]):04X}), which looks like a space but is none (a pasted or "
                "full-width space?): YAML reads it as text; type plain spaces there"
            )
    return None


def _indentation_hint(exc: yaml.MarkedYAMLError, lines: list[str]) -> str | None:
    """What PyYAML's words for a mis-indented line mean, in the operator's: the line and the
    one above it, and how far each is indented. None when the error is of another kind."""
    mark = exc.problem_mark
    if mark is None or not 0 <= mark.line < len(lines):
        return None
    here = lines[mark.line]
    above = _line_above(lines, mark.line)
    if above is None:
        return None
    indent, key_above = len(here) - len(here.lstrip(" ")), _content_indent(lines[above])
    if "expected <block end>" in str(exc.problem) and str(exc.context).startswith(
        "while parsing a block"
    ):
        return (
            f"wrong indentation: this line is indented {indent} spaces, the key on line "
            f"{above + 1} above it {key_above}, and no key above it {indent}: line it up "
            "exactly with the other keys of its own mapping"
        )
    if exc.problem == "mapping values are not allowed here":
        before = here[: mark.column]
        if ": " in before.strip():
            return (
                "a second ': ' on this line: a value with ': ' in it needs quotes (key: \"a: b\")"
            )
        if indent > key_above and re.search(r":[ \t]+[^\s#]", lines[above]):
            return (
                f"wrong indentation: this line is indented {indent} spaces, deeper than the "
                f"key on line {above + 1} ({key_above}), which already has a value: line it "
                "up with that key"
            )
    return None


def read_source(path: Path | str) -> str:
    """A file's text, or a SourceError saying why it cannot be read."""
    p = Path(path)
    try:
        raw = p.read_bytes()
    except OSError as exc:
        raise SourceError([Problem(str(p), None, "", f"cannot read: {exc.strerror}")]) from None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise SourceError([Problem(str(p), None, "", "not UTF-8 text")]) from None


def load_file(path: Path | str) -> YamlDoc:
    return load_text(read_source(path), str(path))


def _lone_hash(node: yaml.Node, path: PathKey, doc: YamlDoc, problems: list[Problem]) -> None:
    """`back_key: #` is no pound key: YAML reads an unquoted # after a space as a comment, and
    the value as empty (null), silently. A lone # there, with nothing after it, is refused; so
    is a key field's (`back_key: # pound`), where a comment after the value is far likelier the
    pound key written with a word about it than an empty key meant (`null` says that)."""
    if not isinstance(node, yaml.ScalarNode) or node.value or node.style is not None:
        return
    mark = node.start_mark
    rest = str(mark.buffer or "")[mark.pointer :].split("\n", 1)[0].strip(" \t\r\x00")
    field = path[-1] if path else None
    a_key = isinstance(field, str) and (field == "key" or field.endswith("_key"))
    if rest == "#" or (a_key and rest.startswith("#")):
        problems.append(
            Problem(
                doc.file,
                mark.line + 1,
                dotted(path),
                "'#' unquoted starts a comment, so this is empty: write \"#\" (quoted) for "
                "the pound key, or null for none",
            )
        )


def _walk(
    node: yaml.Node,
    path: PathKey,
    doc: YamlDoc,
    problems: list[Problem],
    sizes: dict[int, int],
    active: set[int],
    stored: bool = False,
) -> int:
    """Record lines; return the node's size with aliases expanded (memoised per node)."""
    if id(node) in sizes:
        return sizes[id(node)]
    if id(node) in active:
        problems.append(
            Problem(doc.file, node.start_mark.line + 1, dotted(path), "recursive alias")
        )
        return 0
    doc.lines.setdefault(path, node.start_mark.line + 1)
    active.add(id(node))
    size = 1
    if isinstance(node, yaml.MappingNode):
        seen: dict[Any, int] = {}
        for key_node, value_node in node.value:
            key = key_node.value if isinstance(key_node, yaml.ScalarNode) else repr(key_node)
            line = key_node.start_mark.line + 1
            if key in seen and key != "<<":
                problems.append(
                    Problem(
                        doc.file,
                        line,
                        dotted((*path, key)),
                        f"duplicate key (first on line {seen[key]})",
                    )
                )
            seen.setdefault(key, line)
            doc.lines.setdefault((*path, key), line)
            if not stored and isinstance(key, str) and (odd := _ODD_SPACE.search(key)):
                problems.append(
                    Problem(
                        doc.file,
                        line,
                        dotted(path),
                        f"the key {key.strip()!r} holds {_named(odd[0])} "
                        f"(U+{ord(odd[0]):04X}), which looks like a space but is none: YAML "
                        "reads it as part of the key (a pasted or full-width space?); type "
                        "plain spaces there",
                    )
                )
            if not stored:
                _lone_hash(value_node, (*path, key), doc, problems)
            size += _walk(value_node, (*path, key), doc, problems, sizes, active, stored)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            if not stored:
                _lone_hash(item, (*path, index), doc, problems)
            size += _walk(item, (*path, index), doc, problems, sizes, active, stored)
    active.discard(id(node))
    sizes[id(node)] = size
    if size > MAX_EXPANDED_NODES and not problems:
        problems.append(
            Problem(
                doc.file,
                node.start_mark.line + 1,
                dotted(path),
                f"document expands to more than {MAX_EXPANDED_NODES} values (alias bomb?)",
            )
        )
    return size
