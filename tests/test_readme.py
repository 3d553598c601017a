"""The README's code runs as written (from the ACAS Xu folder, where its file names resolve)."""

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_python_blocks_run(benchmarks_dir, monkeypatch):
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    assert blocks, "the README has no python example"
    monkeypatch.chdir(benchmarks_dir / "acasxu")
    namespace: dict = {}
    for block in blocks:
        exec(compile(block, str(README), "exec"), namespace)
    assert namespace["pre"].kind in {"point", "bounded", "unbounded"}
    assert namespace["pre"].contains(namespace["h"])
