"""Load a script of ``scripts/`` as a module, so tests can call its functions."""

import importlib.util
from pathlib import Path
from types import ModuleType

SCRIPTS = Path(__file__).resolve().parent.parent / "scripts"


def load_script(name: str) -> ModuleType:
    """``scripts/<name>.py`` executed as a module named ``name``."""
    spec = importlib.util.spec_from_file_location(name, SCRIPTS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def skip_unless_configuration_of_the_study() -> None:
    """Skip a reproduction test unless it runs as the committed studies ran.

    The scripts ran with ftutils' defaults here: one device, float32. Under several replicas
    or a mixed-precision policy (``make test-distributed``) other numbers are expected, and the
    committed ones are not the reference for them.
    """
    import pytest

    from ftutils import distribute

    described = distribute.describe()
    if described["replicas"] != 1 or described["precision"] != "float32":
        pytest.skip(
            "the committed study ran on one device in float32; this run has "
            f"{described['replicas']} replica(s) and precision {described['precision']}"
        )
