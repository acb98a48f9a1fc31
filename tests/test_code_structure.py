"""The shape the code keeps: one environment reader, a simulator independent of the product, thin Dagster
definitions, and no orchestration by reading Dagster's log text. Read from the source, so they fail the moment
a change breaks them."""

import ast
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PRODUCT = REPO / "segment_pipeline"
SIMULATOR = REPO / "klaviyo_simulator"
# the Segments API platform's simulator stands alone too
SEGMENTS_API_SIMULATOR = REPO / "segments_api_simulator"
# defs/ bodies map outcomes to Dagster objects; the work is in the services they call
MAX_DEFS_FUNCTION_LINES = 60


def sources(*roots: Path) -> list[Path]:
    return sorted(path for root in roots for path in root.rglob("*.py"))


def reads_environment(tree: ast.AST) -> bool:
    """`os.environ` or `os.getenv` anywhere in the module (a read, a copy or a write)."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr in ("environ", "getenv", "environb"):
            if isinstance(node.value, ast.Name) and node.value.id == "os":
                return True
        if isinstance(node, ast.ImportFrom) and node.module == "os":
            if any(alias.name in ("environ", "getenv", "environb") for alias in node.names):
                return True
    return False


def test_at_most_two_modules_read_the_environment():
    readers = [
        path.relative_to(REPO).as_posix()
        for path in sources(PRODUCT, SIMULATOR, SEGMENTS_API_SIMULATOR)
        if reads_environment(ast.parse(path.read_text(encoding="utf-8")))
    ]
    # the pipeline's one settings reader, and the simulator's command line (a separate program)
    assert readers == ["klaviyo_simulator/command.py", "segment_pipeline/settings.py"]


def test_the_reader_check_sees_every_form_of_reading():
    for text in ("import os\nos.environ['A']", "import os\nos.getenv('A')", "from os import environ"):
        assert reads_environment(ast.parse(text)), text
    assert not reads_environment(ast.parse("import os\nos.path.join('a')"))


def imported_modules(tree: ast.AST) -> set[str]:
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module)
    return found


def test_the_simulator_imports_nothing_of_the_product():
    offenders = {
        path.relative_to(REPO).as_posix(): sorted(
            m for m in imported_modules(ast.parse(path.read_text())) if m.split(".")[0] == "segment_pipeline"
        )
        for path in sources(SIMULATOR, SEGMENTS_API_SIMULATOR)
    }
    assert {path: modules for path, modules in offenders.items() if modules} == {}


def test_no_function_in_defs_is_much_over_sixty_lines():
    long_ones = []
    for path in sources(PRODUCT / "defs"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                # the body, decorators and signature included; a docstring counts too
                length = node.end_lineno - min([node.lineno, *(d.lineno for d in node.decorator_list)]) + 1
                if length > MAX_DEFS_FUNCTION_LINES:
                    long_ones.append(f"{path.relative_to(REPO)}:{node.lineno} {node.name} ({length} lines)")
    assert long_ones == []


# what reading a Dagster run's log text would look like: event names and exception paths matched as text
_LOG_PARSING = re.compile(
    r"STEP_FAILURE|STEP_SUCCESS|RUN_FAILURE|dagster\._core\.[\w.]*Failure|\"dagster job execute\""
)


def test_nothing_parses_dagster_log_text_or_imports_its_internals():
    found = []
    for path in sources(PRODUCT):
        text = path.read_text(encoding="utf-8")
        if _LOG_PARSING.search(text):
            found.append(f"{path.relative_to(REPO)}: log text")
        if "dagster._" in text:
            found.append(f"{path.relative_to(REPO)}: a private dagster module")
    assert found == []
