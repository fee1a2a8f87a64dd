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


def _table_knobs() -> list[str]:
    """Config names in the first column of the README's config table (`a.b`, `c` = a.b and a.c)."""
    section = README.split("## Configuration", 1)[1].split("\n## ", 1)[0]
    knobs = []
    for first_cell in re.findall(r"^\| (`.+?) \|", section, re.M):
        names = [n for n in re.findall(r"`([^`]+)`", first_cell) if not n.isupper()]  # skip env vars
        knobs.append(names[0])
        knobs += [names[0].rsplit(".", 1)[0] + "." + n for n in names[1:] if "." not in n]
        knobs += [n for n in names[1:] if "." in n]
    return knobs


@pytest.mark.parametrize("knob", _table_knobs())
def test_every_knob_in_the_readme_exists(knob):
    value = to_dict(Config())
    for part in knob.split(" / ")[0].split("."):
        assert part in value, f"README names {knob!r}, which the config does not have"
        value = value[part]
