"""The README stays true: the Quickstart, CI's command, the curl examples, the config table."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import pytest

from banditrec.config import Config, to_dict

REPO = Path(__file__).resolve().parent.parent
README = (REPO / "README.md").read_text(encoding="utf-8")


def _quickstart_commands() -> list[str]:
    block = re.search(r"^## Quickstart\n.*?```[a-z]*\n(.*?)```", README, re.S | re.M).group(1)
    return [line.strip() for line in block.splitlines() if line.strip() and not line.strip().startswith("#")]


def test_quickstart_is_two_commands_and_ci_runs_the_second():
    assert _quickstart_commands() == ["./dev serve", "./dev test"]
    ci = (REPO / ".ci" / "run").read_text()
    assert re.search(r"^exec \./dev test$", ci, re.M)


def _curl_examples() -> list[tuple[str, str, dict | None]]:
    examples = []
    for block in re.findall(r"```bash\n(curl .*?)```", README, re.S):
        args = shlex.split(block.replace("\\\n", " "))
        method = args[args.index("-X") + 1] if "-X" in args else ("POST" if "-d" in args else "GET")
        url = next(a for a in args if a.startswith("localhost:"))
        body = json.loads(args[args.index("-d") + 1]) if "-d" in args else None
        examples.append((method, url.split(":8765", 1)[1], body))
    return examples


def test_readme_curl_examples_work(app_client):
    examples = _curl_examples()
    assert {(m, p) for m, p, _ in examples} >= {("POST", "/recommend"), ("POST", "/feedback"), ("POST", "/events"),
                                                ("PUT", "/items/sku-123"), ("DELETE", "/items/sku-123"),
                                                ("PUT", "/users/u42"), ("POST", "/admin/rebuild")}
    last = None
    for method, path, body in examples:
        if path == "/feedback":  # the README's placeholders stand for the answer above
            body = {**body, "event_id": last["event_id"], "item_id": last["items"][0]["item_id"]}
        response = app_client.open(path, method=method, json=body) if body is not None \
            else app_client.open(path, method=method)
        assert response.status_code == 200, (path, response.get_json())
        last = response.get_json()
        if path == "/recommend":
            assert len(last["items"]) == body["k"] and not {i["item_id"] for i in last["items"]} & set(body["exclude"])


def _table_rows() -> list[tuple[list[str], str]]:
    """(config names, default text) per row of the README's config table."""
    section = README.split("## Configuration", 1)[1].split("\n## ", 1)[0]
    rows = []
    for first, default in re.findall(r"^\| (`.+?) \| (.+?) \|", section, re.M):
        names = [n for n in re.findall(r"`([^`]+)`", first) if not n.isupper()]  # skip env vars
        knobs = [names[0]] + [names[0].rsplit(".", 1)[0] + "." + n if "." not in n else n for n in names[1:]]
        rows.append((knobs, default))
    return rows


def _table_knobs() -> list[str]:
    return [knob for knobs, _ in _table_rows() for knob in knobs]


def _config_value(knob: str):
    value = to_dict(Config())
    for part in knob.split(" / ")[0].split("."):
        assert part in value, f"README names {knob!r}, which the config does not have"
        value = value[part]
    return value


@pytest.mark.parametrize("knob", _table_knobs())
def test_every_knob_in_the_readme_exists(knob):
    value = to_dict(Config())
    for part in knob.split(" / ")[0].split("."):
        assert isinstance(value, dict) and part in value, f"README names {knob!r}, which the config does not have"
        value = value[part]


UNITS = {"days": 86400, "h": 3600, "MiB": 1048576}


def _parse(text: str):
    text = text.strip().strip("`").replace("−", "-")
    if text in ("true", "false"):
        return text == "true"
    number = re.fullmatch(r"(-?\d+(?:\.\d+)?)(?: (days|h|MiB))?", text)
    if number:
        return float(number.group(1)) * UNITS.get(number.group(2), 1)
    if text.startswith(("[", "{")) or text == '""':
        return json.loads(text)
    return text


@pytest.mark.parametrize("knobs,default", [r for r in _table_rows() if r[1] != "embedded"],
                         ids=lambda value: value if isinstance(value, str) else ",".join(value))
def test_the_readme_states_the_shipped_defaults(knobs, default):
    texts = re.split(r", (?=[-−\d`tf])", default) if len(knobs) > 1 else [default]
    assert len(texts) == len(knobs), (knobs, default)
    for knob, text in zip(knobs, texts):
        expected, stated = _config_value(knob), _parse(text)
        if isinstance(expected, (int, float)) and not isinstance(expected, bool):
            assert float(expected) == stated, (knob, expected, text)
        else:
            assert (list(expected) if isinstance(expected, tuple) else expected) == stated, (knob, expected, text)


# Every command in a README code block, and the test that runs it (with small sizes).
EXERCISED = {
    "./dev serve": ("tests/test_e2e.py", '"./dev", "serve"'),
    "./dev test": ("tests/test_readme.py", "exec \\./dev test"),  # .ci/run runs it (checked above)
    "banditrec serve --workers": ("tests/test_scaleout.py", '"--workers", "2"'),
    "banditrec serve": ("tests/test_e2e.py", '"./dev", "serve"'),  # ./dev serve runs it
    "banditrec build": ("tests/test_cli.py", 'main(["build"'),
    "banditrec simulate": ("tests/test_simulation.py", 'main(["simulate"'),
    "banditrec tune": ("tests/test_simulation.py", 'main(["tune"'),
    "banditrec evaluate": ("tests/test_evaluation.py", 'main(["evaluate"'),
    "banditrec export": ("tests/test_evaluation.py", 'main(["export"'),
    "banditrec report": ("tests/test_experiment.py", 'main(["report"'),
    "banditrec learn": ("tests/test_faults.py", '"learn"'),
    "banditrec model": ("tests/test_learner.py", 'main(["model"'),
    "banditrec canary start --exploration": ("tests/test_canary_exploration.py",
                                             'cli("canary", "start", "--exploration", str(candidate))'),
    "banditrec canary": ("tests/test_canary.py", 'cli("canary", "start", str(old), "--share"'),
    "banditrec config": ("tests/test_canary_exploration.py", 'cli("config", "show")'),
    "benchmarks/run_all.py": ("tests/test_benchmarks.py", "benchmarks/run_all.py"),
    "benchmarks.soak": ("tests/test_benchmarks.py", '"benchmarks.soak"'),
    "benchmarks.snapshot_stall": ("tests/test_benchmarks.py", '"benchmarks.snapshot_stall"'),
    "benchmarks.worker_memory": ("tests/test_benchmarks.py", '"benchmarks.worker_memory"'),
    "benchmarks.realdata": ("tests/test_realdata.py", "realdata.main(["),
    "benchmarks.placement": ("tests/test_realdata.py", "placement.main(["),
    "curl": ("tests/test_readme.py", "def test_readme_curl_examples_work"),
}


def _readme_commands() -> list[str]:
    lines = []
    for lang, block in re.findall(r"^```([a-z]*)\n(.*?)^```", README, re.S | re.M):
        if lang not in ("", "bash", "sh"):
            continue
        for line in block.replace("\\\n", " ").splitlines():
            line = line.split(" #", 1)[0].strip()
            if re.match(r"^(\./dev|\.venv/bin/|banditrec |curl |python)", line) and "──" not in line:
                lines.append(line)
    return lines


def test_every_readme_command_is_exercised_by_a_test():
    commands = _readme_commands()
    assert len(commands) >= 20
    for command in commands:
        normalised = command.replace(".venv/bin/", "").replace("python -m ", "").replace("python ", "")
        key = next((k for k in EXERCISED if normalised.startswith(k) or k in normalised.split()[:2]), None)
        assert key is not None, f"README command without a test: {command}"
        path, marker = EXERCISED[key]
        assert marker in (REPO / path).read_text() or re.search(marker, (REPO / ".ci" / "run").read_text()), \
            (command, path, marker)


def test_every_config_knob_is_in_the_readme():
    """Each setting of every section (and of every strategy) is named in the README."""
    missing = []
    for section, values in to_dict(Config()).items():
        for name, value in values.items():
            if section == "exploration" and isinstance(value, dict):
                missing += [f"exploration.{name}.{k}" for k in value if f"exploration.{name}.{k}" not in README
                            and not re.search(rf"`{k}`|{name}\.{k}", README)]
            elif f"{section}.{name}" not in README and not any(
                    line.startswith(f"| `{section}.") and f"`{name}`" in line for line in README.splitlines()):
                missing.append(f"{section}.{name}")
    assert not missing, f"settings the README does not mention: {missing}"
