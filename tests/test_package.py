"""The repository root is one package: importable as `unidit`, and loadable by ComfyUI under any name."""
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run_python(code: str, cwd) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True, timeout=120)


def test_import_unidit_puts_no_nodes_runtime_host_or_server_module_on_the_path(tmp_path):
    result = run_python(
        "import importlib.util, unidit, unidit.runtime.model.dit, unidit.host.cli\n"
        "leaks = [n for n in ('nodes', 'runtime', 'host', 'server') if importlib.util.find_spec(n) is not None]\n"
        "print(leaks)", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_comfyui_style_load_under_an_arbitrary_module_name(tmp_path):
    # ComfyUI: spec_from_file_location(<path with . -> _x_>, <pack>/__init__.py), sys.modules set first.
    code = (
        "import importlib.util, sys\n"
        f"path = {str(ROOT / '__init__.py')!r}\n"
        "name = 'custom_nodes_x_some_folder'\n"
        "spec = importlib.util.spec_from_file_location(name, path)\n"
        "module = importlib.util.module_from_spec(spec)\n"
        "sys.modules[name] = module\n"
        "spec.loader.exec_module(module)\n"
        "print(type(module.NODE_CLASS_MAPPINGS).__name__, module.WEB_DIRECTORY)\n"
        "print(sorted(m for m in sys.modules if m.startswith(('unidit', 'runtime', 'nodes', 'host'))))\n")
    result = run_python(code, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    first, second = result.stdout.strip().splitlines()
    assert first == "dict ./web"
    assert second == "[]"  # everything was imported relative to the pack's own name


def test_the_vendored_threejs_does_not_register_itself_beside_the_editors_own():
    """The ComfyUI editor bundles three.js too; a second copy that sets window.__THREE__ makes three.js warn
    "Multiple instances of Three.js being imported" (tools/viewer/build.mjs leaves the registration out)."""
    vendored = (ROOT / "web" / "viewer" / "vendor" / "three.mjs").read_text()
    assert "WebGLRenderer" in vendored  # it is three.js
    assert "__THREE__" not in vendored and "Multiple instances of Three.js" not in vendored
