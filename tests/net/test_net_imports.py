"""G26: ``import libp2p`` costs about a second and 84 MB; the CLI must not pay it."""

import subprocess
import sys


def test_the_cli_does_not_import_libp2p() -> None:
    code = (
        "import sys, igor_p2p.cli.main\n"
        "bad = [m for m in sys.modules if m == 'libp2p' or m.startswith('libp2p.')]\n"
        "print(len(bad))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "0"
