import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from daemon import Daemon  # noqa: E402


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    setattr(item, "rep_" + rep.when, rep)


@pytest.fixture
def daemon(request):
    """rtcd on 127.0.0.1 with free ports; killed by PID afterwards. On failure the tail of its
    debug log is printed (full log in e2e/aiortc/logs/<test>.log)."""
    d = Daemon(request.node.name).start()
    yield d
    d.stop()
    rep = getattr(request.node, "rep_call", None)
    if rep is not None and rep.failed:
        print(f"\n----- rtcd log tail ({d.log_path}) -----\n{d.log_tail(120)}")
    elif not os.environ.get("AIORTC_KEEP_LOGS"):
        d.log_path.unlink(missing_ok=True)
