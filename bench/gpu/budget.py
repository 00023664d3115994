"""The time budget, progress log and error capture shared by the GPU-machine scripts
(xla_bench.py, ort_tools.py): each run has one chance on a lent machine, so every step logs with
its elapsed time, checks the budget left, and records a failure's text instead of stopping."""
import sys
import time
import traceback

T0 = time.perf_counter()
STATE = {"budget": 230.0}


def elapsed():
    return time.perf_counter() - T0


def left():
    return STATE["budget"] - elapsed()


def log(msg):
    print(f"[{elapsed():7.1f}s] {msg}", flush=True)


def err_text(e):
    """The exception as one line for the results JSON; the full traceback goes to stderr."""
    traceback.print_exc(file=sys.stderr)
    sys.stderr.flush()
    return f"{type(e).__name__}: {e}"[:4000]
