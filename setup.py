"""Package data that lives outside the package: the top-level cards, specs and training
configs are shipped in the wheel as ``pyserini_ext/bundled/<kind>`` (read by
``pyserini_ext.resources``). Everything else is declared in pyproject.toml."""

from setuptools import find_packages, setup

BUNDLED = {f"pyserini_ext.bundled.{kind}": kind for kind in ("encoders", "regressions", "training")}

setup(
    packages=find_packages(include=["pyserini_ext", "pyserini_ext.*"]) + list(BUNDLED),
    package_dir=BUNDLED,
    package_data={**{name: ["*.yaml"] for name in BUNDLED}, "pyserini_ext.repro": ["templates/*.j2"],
                  "pyserini_ext": ["*.properties"]},
)
