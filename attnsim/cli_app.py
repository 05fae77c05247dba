"""`attnsim app`: start the Streamlit app (Explore, Compare, Sweep, Validate pages) on a local address.

    attnsim app                      # http://127.0.0.1:8501
    attnsim app --port 8600 --address 0.0.0.0

Runs ``python -m streamlit run <checkout>/app/streamlit_app.py`` with the given port and address, headless
(Streamlit opens no browser and asks nothing) and without usage statistics. The app lives in the source
checkout next to the package (``app/``), so ``attnsim app`` needs an editable install or a checkout.
See docs/app.md. ``add_parser`` registers the subcommand on the main parser's subparsers.
"""
from __future__ import annotations

import argparse
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

from attnsim.errors import AttnsimError

DEFAULT_PORT = 8501
DEFAULT_ADDRESS = "127.0.0.1"


def app_script() -> Path:
    """The app's entry script: ``app/streamlit_app.py`` in the checkout that holds the package."""
    import attnsim
    return Path(attnsim.__file__).resolve().parents[1] / "app" / "streamlit_app.py"


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 1 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"port {port} is outside 1..65535")
    return port


def streamlit_command(script: Path, port: int, address: str) -> list[str]:
    return [sys.executable, "-m", "streamlit", "run", str(script),
            "--server.port", str(port), "--server.address", address,
            "--server.headless", "true", "--browser.gatherUsageStats", "false"]


def cmd_app(a) -> int:
    if importlib.util.find_spec("streamlit") is None:
        raise AttnsimError("attnsim app needs streamlit: pip install streamlit")
    script = app_script()
    if not script.is_file():
        raise AttnsimError(f"the app is not at {script} (it ships in the source checkout, "
                           "next to the attnsim package; install attnsim from a checkout with pip install -e .)")
    cmd = streamlit_command(script, a.port, a.address)
    shown = "localhost" if a.address in ("0.0.0.0", "::") else a.address
    host = f"[{shown}]" if ":" in shown else shown
    print(f"attnsim app: http://{host}:{a.port}", flush=True)
    if os.name == "posix":
        # Become the Streamlit server: Ctrl-C and terminate() reach it directly, no orphaned child.
        sys.stderr.flush()
        os.execv(sys.executable, cmd)
    try:
        return subprocess.call(cmd)
    except KeyboardInterrupt:
        return 130


def add_parser(subparsers) -> argparse.ArgumentParser:
    ap = subparsers.add_parser(
        "app", help="start the interactive app (Explore, Compare, Sweep, Validate) in Streamlit",
        description="Start the Streamlit app on a local address and print it; stop it with Ctrl-C. "
                    "Needs streamlit (pip install streamlit). See docs/app.md.")
    ap.add_argument("--port", type=_port, default=DEFAULT_PORT, help=f"TCP port (default {DEFAULT_PORT})")
    ap.add_argument("--address", default=DEFAULT_ADDRESS,
                    help=f"address to listen on (default {DEFAULT_ADDRESS}, this machine only; "
                         "0.0.0.0 to serve the network)")
    ap.add_argument("--headless", action="store_true",
                    help="accepted for scripts; the server always runs headless (it opens no browser and "
                         "asks no questions): open the printed address yourself")
    ap.set_defaults(func=cmd_app)
    return ap
