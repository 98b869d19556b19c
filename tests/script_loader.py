"""The scripts of ``scripts/`` as modules for the tests, and when their committed results apply."""

from ftutils.config import PROJECT_DIR
from ftutils.studies import load_script  # noqa: F401  (the tests import it from here)

SCRIPTS = PROJECT_DIR / "scripts"


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


def assert_made_by(about: dict, command: str, params: dict) -> None:
    """A committed study's provenance ``about`` names how it was made: the ``command`` it
    starts with, the script's ``params`` as stored, on one device."""
    import json

    for key in ("command", "parameters", "versions", "configuration", "machine", "weights",
                "started", "finished"):  # fmt: skip
        assert key in about, key
    assert about["command"].startswith(command)
    assert about["parameters"] == json.loads(json.dumps(params))
    assert about["configuration"]["replicas"] == 1
