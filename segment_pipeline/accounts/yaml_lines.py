"""YAML read with the line of every mapping key and list item, so a validation error can name its line.

PyYAML's composer keeps a mark (line, column) on every node; the safe constructor then builds the data. We
walk the nodes once to map each location (a tuple of keys and indexes, as pydantic reports error locations)
to its line, and to refuse a key written twice in one mapping, which PyYAML would silently resolve to the last.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import yaml

Location = tuple[Any, ...]


class YamlSyntaxError(ValueError):
    """The text is not YAML; `line` is 1-based, or `None` when the parser gave no position."""

    def __init__(self, line: int | None, problem: str) -> None:
        self.line = line
        self.problem = problem
        super().__init__(f"line {line}: {problem}" if line is not None else problem)


@dataclass(frozen=True)
class DuplicateKey:
    """A key written twice in one mapping: where the second one is, and the line of the first."""

    location: Location
    line: int
    first_line: int


@dataclass(frozen=True)
class LinedYaml:
    """The data of a YAML document, the line of each location in it, and any doubled keys."""

    data: Any
    lines: Mapping[Location, int]
    duplicates: tuple[DuplicateKey, ...]

    def line_of(self, location: Location) -> int:
        """The line of a location, or of the nearest enclosing one written in the file (1 for the document)."""
        for end in range(len(location), -1, -1):
            if location[:end] in self.lines:
                return self.lines[location[:end]]
        return 1


def parse_with_lines(text: str) -> LinedYaml:
    """Parse one YAML document safely (no arbitrary tags), remembering where everything is written.

    Raises:
        YamlSyntaxError: The text is not one well-formed YAML document.
    """
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return LinedYaml(None, {}, ())
        lines: dict[Location, int] = {}
        duplicates: list[DuplicateKey] = []
        _record_lines(loader, node, (), lines, duplicates, set())
        data = loader.construct_document(node)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        problem = " ".join(part for part in (exc.context, exc.problem) if part)
        raise YamlSyntaxError(mark.line + 1 if mark is not None else None, problem) from None
    except yaml.YAMLError as exc:
        raise YamlSyntaxError(None, str(exc)) from None
    finally:
        loader.dispose()
    return LinedYaml(data, lines, tuple(duplicates))


def _record_lines(
    loader: yaml.SafeLoader,
    node: yaml.Node,
    location: Location,
    lines: dict[Location, int],
    duplicates: list[DuplicateKey],
    seen: set[int],
) -> None:
    if id(node) in seen:  # an alias: its lines were recorded where the anchor is
        return
    seen.add(id(node))
    lines.setdefault(location, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        first_line: dict[Any, int] = {}
        for key_node, value_node in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge" or not isinstance(key_node, yaml.ScalarNode):
                continue  # merged or complex keys: errors inside them point at the enclosing mapping
            key = loader.construct_object(key_node)
            line = key_node.start_mark.line + 1
            if key in first_line:
                duplicates.append(DuplicateKey(location + (key,), line, first_line[key]))
                continue
            first_line[key] = line
            lines[location + (key,)] = line
            _record_lines(loader, value_node, location + (key,), lines, duplicates, seen)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _record_lines(loader, item, location + (index,), lines, duplicates, seen)
