"""The committed gRPC stubs are exactly what the proto sources generate."""

import subprocess
import sys

from tests.support.mesh import ROOT


def test_generated_stubs_are_fresh() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "gen_protos.py"), "--check"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "fresh" in result.stdout
