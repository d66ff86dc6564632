"""``python tests/kill_at_step.py STEP SCRIPT ARGS...`` or ``python tests/kill_at_step.py STEP -m MODULE ARGS...``:
run SCRIPT (or MODULE) as ``__main__`` and SIGKILL the process when step STEP+1 of a ``Trainer`` begins (i.e.
after the checkpoint of step STEP, if any, was written).

Used by tests/test_resume.py (a recipe) and tests/test_relufy_run.py (the relufy CLI) to interrupt a run the hard
way (no cleanup, no handlers run).
"""

import os
import runpy
import signal
import sys

from transformers.trainer_callback import CallbackHandler

KILL_AT = int(sys.argv[1])
_on_step_begin = CallbackHandler.on_step_begin


def on_step_begin(self, args, state, control, **kwargs):
    if state.global_step == KILL_AT:
        sys.stdout.flush()
        os.kill(os.getpid(), signal.SIGKILL)
    return _on_step_begin(self, args, state, control, **kwargs)


CallbackHandler.on_step_begin = on_step_begin
if sys.argv[2] == "-m":
    sys.argv = sys.argv[3:]
    runpy.run_module(sys.argv[0], run_name="__main__", alter_sys=True)
else:
    sys.argv = sys.argv[2:]
    sys.path.insert(0, os.path.dirname(os.path.abspath(sys.argv[0])))  # as `python SCRIPT` does (from common import)
    runpy.run_path(sys.argv[0], run_name="__main__")
