"""bench.sections: the soak and fuzz sections survive a comparison rewrite of benchmarks.md."""

from __future__ import annotations

from bench.sections import keep_sections, sections, write_section


def test_write_then_replace_a_section(tmp_path):
    md = tmp_path / "benchmarks.md"
    md.write_text("# Benchmarks\n\n| table |\n")
    write_section(md, "soak", ["## Soak", "first"])
    write_section(md, "fuzz", ["## Fuzz", "f"])
    write_section(md, "soak", ["## Soak", "second"])
    text = md.read_text()
    assert text.startswith("# Benchmarks\n\n| table |\n")
    assert "second" in text and "first" not in text
    assert text.index("## Soak") < text.index("## Fuzz")
    assert set(sections(text)) == {"soak", "fuzz"}


def test_a_comparison_rewrite_keeps_the_sections(tmp_path):
    md = tmp_path / "benchmarks.md"
    md.write_text("# old table\n")
    write_section(md, "fuzz", ["## Fuzz", "kept"])
    rewritten = keep_sections(md, "# Benchmarks\n\n| new table |")
    assert rewritten.startswith("# Benchmarks\n\n| new table |")
    assert "kept" in rewritten and "old table" not in rewritten
