"""The documentation stays inside the repository and says what the code does."""

import re
import subprocess
from pathlib import Path

from flashdepth.data import sequence

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
OUTSIDE = re.compile(r"shared/(spec|reference)")
ANCHOR = re.compile(r"docs/(\w+)\.md#([\w-]+)")


def _tracked_files() -> list[Path]:
    """Files of the checkout outside tests/ (git's list; a walk where git is not available)."""
    try:
        names = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    except (OSError, subprocess.CalledProcessError):
        names = [str(p.relative_to(ROOT)) for p in ROOT.rglob("*")
                 if p.is_file() and not any(part.startswith(".") or part in ("__pycache__", "build")
                                            for part in p.relative_to(ROOT).parts)]
    return [ROOT / n for n in names if not n.startswith("tests/") and (ROOT / n).is_file()]


def test_nothing_outside_tests_points_to_material_users_do_not_have():
    files = _tracked_files()
    assert any(f.name == "README.md" for f in files) and any(f.suffix == ".py" for f in files)
    offenders = [f"{f.relative_to(ROOT)}:{n}" for f in files
                 for n, line in enumerate(f.read_text(errors="ignore").splitlines(), 1) if OUTSIDE.search(line)]
    assert not offenders, f"references to shared/spec or shared/reference (move the content into docs/): {offenders}"


def _table_keys(doc: str, heading: str) -> set[str]:
    """The first-column `keys` of the first table after ``heading`` (a cell may name several)."""
    section = doc.split(heading, 1)[1]
    rows = re.search(r"\n(\|.*\|\n)+", section).group(0).strip().splitlines()[2:]  # skip header and rule
    return {key for row in rows for key in re.findall(r"`(\w+)`", row.split("|")[1])}


def test_every_sequence_format_key_is_documented_and_nothing_else():
    doc = (DOCS / "datasets.md").read_text()
    assert _table_keys(doc, "### `sequence.json`") == sequence._SEQUENCE_KEYS
    assert _table_keys(doc, "The `depth` object") == sequence._DEPTH_KEYS
    assert _table_keys(doc, "### `dataset.json`") == sequence._DATASET_KEYS
    for name in (*sequence.DEPTH_KINDS, *sequence.UNITS, sequence.SEQUENCE_FORMAT, sequence.DATASET_FORMAT):
        assert f'"{name}"' in doc, name


def _anchors(doc: str) -> set[str]:
    ids = set(re.findall(r'<a id="([\w-]+)"></a>', doc))
    headings = {re.sub(r"[^\w\- ]", "", h).strip().lower().replace(" ", "-")
                for h in re.findall(r"^#+ (.*)$", doc, flags=re.MULTILINE)}
    return ids | headings


def test_anchors_named_in_code_and_docs_exist():
    sources = [p for folder in ("flashdepth", "flashdepth_cli") for p in (ROOT / folder).rglob("*.py")]
    sources += list(DOCS.glob("*.md")) + [ROOT / "README.md"]
    links = {(f"{m[0]}.md", m[1], str(p.relative_to(ROOT))) for p in sources for m in ANCHOR.findall(p.read_text())}
    # relative links between docs: [text](datasets.md#anchor)
    links |= {(m[0], m[1], str(p.relative_to(ROOT))) for p in DOCS.glob("*.md")
              for m in re.findall(r"\]\((\w+\.md)#([\w-]+)\)", p.read_text())}
    # links within one document: [text](#anchor)
    links |= {(p.name, m, str(p.relative_to(ROOT))) for p in DOCS.glob("*.md")
              for m in re.findall(r"\]\(#([\w-]+)\)", p.read_text())}
    assert any(doc == "datasets.md" and anchor == "official-b8" for doc, anchor, _ in links)  # the code does link
    missing = [f"{where}: docs/{doc}#{anchor}" for doc, anchor, where in sorted(links)
               if not (DOCS / doc).is_file() or anchor not in _anchors((DOCS / doc).read_text())]
    assert not missing, f"links to anchors that do not exist: {missing}"
