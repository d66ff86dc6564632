"""``python tests/kill_at_step.py STEP SCRIPT ARGS...``: run SCRIPT as ``__main__`` and SIGKILL the process
when step STEP+1 begins (i.e. after the checkpoint of step STEP, if any, was written).

Used by tests/test_resume.py to interrupt a recipe the hard way (no cleanup, no handlers run).
"""

import os
import runpy
import signal
import sys

from hf_lambda_gelu.hardening import HardeningCallback

KILL_AT = int(sys.argv[1])
_on_step_begin = HardeningCallback.on_step_begin


def on_step_begin(self, args, state, control, **kwargs):
    if state.global_step == KILL_AT:
        sys.stdout.flush()
        os.kill(os.getpid(), signal.SIGKILL)
    return _on_step_begin(self, args, state, control, **kwargs)


HardeningCallback.on_step_begin = on_step_begin
sys.argv = sys.argv[2:]
sys.path.insert(0, os.path.dirname(os.path.abspath(sys.argv[0])))  # as `python SCRIPT` does (from common import)
runpy.run_path(sys.argv[0], run_name="__main__")
