"""The repository root is the package: ComfyUI loads it from custom_nodes/<any name>/, pip installs it as `unidit`.

Only `unidit` and its subpackages are installed, so no top-level `nodes`, `runtime`, `host` or `server` module
appears on sys.path beside ComfyUI's own.
"""
from setuptools import find_packages, setup

subpackages = find_packages(include=["runtime", "runtime.*", "nodes", "nodes.*", "host", "host.*"])
setup(packages=["unidit"] + [f"unidit.{name}" for name in subpackages], package_dir={"unidit": "."})
