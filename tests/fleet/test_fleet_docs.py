"""docs/devices.md shows the catalog and transfer times the code actually uses."""

from pathlib import Path

from edgeupdate.fleet.catalog import CATALOG, catalog_markdown_table
from edgeupdate.fleet.network import transfer_time_markdown_table

DOC = Path(__file__).resolve().parents[2] / "docs" / "devices.md"


def _between(text: str, name: str) -> str:
    begin, end = f"<!-- {name}:begin -->", f"<!-- {name}:end -->"
    return text.split(begin, 1)[1].split(end, 1)[0].strip()


def test_docs_tables_match_the_code():
    text = DOC.read_text(encoding="utf-8")
    assert _between(text, "catalog-table") == catalog_markdown_table()
    assert _between(text, "transfer-table") == transfer_time_markdown_table()


def test_every_source_key_used_in_the_catalog_is_listed_in_the_docs():
    text = DOC.read_text(encoding="utf-8")
    listed = text.split("### Sources", 1)[1]
    for entry in CATALOG.values():
        for key in [part.split("]")[0] for part in entry.source.split("[")[1:]]:
            assert f"**[{key}]**" in listed, key
