"""`import mlbook_utils` has no side effects and pulls in no deep-learning framework."""

import subprocess
import sys


def test_import_has_no_heavy_side_effects(tmp_path):
    code = (
        "import sys, warnings\n"
        "import numpy  # numpy adds its own filters on import: not ours\n"
        "filters = list(warnings.filters)\n"
        "import mlbook_utils\n"
        "import importlib, pkgutil\n"
        "for m in pkgutil.walk_packages(mlbook_utils.__path__, 'mlbook_utils.'):\n"
        "    importlib.import_module(m.name)\n"
        "heavy = [m for m in ('tensorflow', 'keras', 'jax', 'torch') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
        "assert warnings.filters == filters\n"
        "print('ok')\n"
    )
    env = {"MLBOOK_CACHE": str(tmp_path / "cache"), "PATH": "/usr/bin:/bin"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"
    assert not (tmp_path / "cache").exists(), "importing must not create the cache"
