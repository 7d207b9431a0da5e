"""The README's Python example runs as printed (in a scratch folder), so the front page cannot rot."""
import re
import warnings
from pathlib import Path

README = Path(__file__).parents[1] / "README.md"


def test_readme_api_example_runs(tmp_path, monkeypatch):
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    example = next(b for b in blocks if "netdyn.make_task" in b)
    monkeypatch.chdir(tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # e.g. "no reliable exponent": printed by the example
        exec(compile(example, str(README), "exec"), {})
    assert (tmp_path / "run.nc").is_file()
