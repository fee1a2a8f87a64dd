"""`banditrec build` from the documented file formats, with clear errors for bad files."""

from __future__ import annotations

import json

import pytest

from banditrec.cli import main
from retrieval.bundle import current_path


@pytest.fixture
def cli_env(monkeypatch, redis_url, store, tmp_path):
    monkeypatch.setenv("REDIS_URL", redis_url)
    monkeypatch.setenv("BANDITREC_REDIS_PREFIX", store.prefix)
    monkeypatch.setenv("BANDITREC_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("BANDITREC_CONFIG", raising=False)
    return tmp_path / "data"


def _write(path, text):
    path.write_text(text, encoding="utf-8")
    return str(path)


def test_build_from_own_catalog_and_log(cli_env, store, tmp_path):
    items = "\n".join(json.dumps({"item_id": f"p{n}", "category": ["tea", "mugs"][n % 2], "title": f"thing {n}",
                                  "attributes": {"origin": "JP", "price": 5.0 + n}}) for n in range(30))
    log = "user_id,item_id,type,timestamp,value\n" + "\n".join(
        f"c{n % 7},p{(n * 3) % 30},{['view', 'click', 'purchase'][n % 3]},{1764200000 - n * 60},{n}"
        for n in range(120))
    users = '{"user_id": "c1", "age_group": "25-34", "location": "DE"}\n'
    code = main(["build", "--catalog", _write(tmp_path / "items.jsonl", items), "--interactions",
                 _write(tmp_path / "log.csv", log), "--users", _write(tmp_path / "users.jsonl", users),
                 "--no-progress", "--now", "1764200000"])
    assert code == 0
    path = current_path(cli_env)
    assert path.name == "v000001" and json.loads((path / "meta.json").read_text())["n_items"] == 30
    c1 = store.user_state("c1")
    assert c1["profile"]["age_group"] == "25-34" and c1["n"] > 0 and c1["vectors"]["v000001"].shape == (64,)
    assert store.top_popular(1) and store.top_popular(5, scope="seg:age_group=25-34|location=DE")
    # --if-missing leaves a complete build alone
    assert main(["build", "--demo", "--if-missing", "--no-progress"]) == 0
    assert current_path(cli_env).name == "v000001"


@pytest.mark.parametrize("name,text,message", [
    ("items.jsonl", '{"item_id": "a"}\n{"item_id": 5}\n', "items.jsonl:2: item_id must be a non-empty string, got 5"),
    ("items.jsonl", '{"item_id": "a"}\nnot json\n', "items.jsonl:2: not valid JSON"),
    ("items.jsonl", '{"item_id": "a", "in_stock": "no"}\n', "items.jsonl:1: in_stock must be true or false, got 'no'"),
    ("items.jsonl", "\n", "has no items"),
])
def test_bad_catalog_files_name_the_line(cli_env, tmp_path, capsys, name, text, message):
    assert main(["build", "--catalog", _write(tmp_path / name, text), "--no-progress"]) == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize("text,message", [
    ("user,item\nu,i\n", "header must name user_id,item_id,type,timestamp; missing item_id, timestamp, type, user_id"),
    ("user_id,item_id,type,timestamp\nu,a,like,1\n", "log.csv:2: type == 'like', must be one of view, click"),
    ("user_id,item_id,type,timestamp\nu,a,view,yesterday\n",
     "log.csv:2: timestamp == 'yesterday', must be unix seconds"),
])
def test_bad_interaction_logs_name_the_line(cli_env, tmp_path, capsys, text, message):
    catalog = _write(tmp_path / "items.jsonl", '{"item_id": "a"}\n')
    assert main(["build", "--catalog", catalog, "--interactions", _write(tmp_path / "log.csv", text),
                 "--no-progress"]) == 2
    assert message in capsys.readouterr().err


def test_build_takes_one_source_and_without_one_refits_what_the_api_received(cli_env, capsys, tmp_path):
    catalog = tmp_path / "items.jsonl"
    catalog.write_text('{"item_id": "i1"}\n')
    assert main(["build", "--no-progress", "--demo", "--catalog", str(catalog)]) == 2
    assert "give either --demo or --catalog FILE" in capsys.readouterr().err
    assert main(["build", "--no-progress"]) == 2  # nothing received yet: a clear error, not a crash
    assert "no items were received through PUT /items" in capsys.readouterr().err


def test_model_list_shows_snapshots(cli_env, store, capsys):
    assert main(["model", "list"]) == 0 and capsys.readouterr().out == ""
    store.put_snapshot(b"model", {"cursor": "5-0", "learned": 12}, keep=3)
    assert main(["model", "list"]) == 0
    assert capsys.readouterr().out.startswith("v1\tcreated_at=")


def test_dead_letters_lists_the_rewards_that_could_not_be_learned(cli_env, store, capsys):
    assert main(["dead-letters"]) == 0 and capsys.readouterr().out == ""
    store.dead_letter("7-0", {"event_id": "e1", "item_id": "i3"}, "KeyError('shared')")
    assert main(["dead-letters"]) == 0
    out = capsys.readouterr()
    assert out.out == "7-0\tevent_id=e1\titem_id=i3\tKeyError('shared')\n" and "1 reward(s)" in out.err
    assert main(["dead-letters", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["entry"] == {"event_id": "e1", "item_id": "i3"}
