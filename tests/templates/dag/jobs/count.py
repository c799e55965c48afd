"""Test job: count the lines of its inputs. MODE makes it fail or die on purpose."""

import os
import signal
import sys


def main() -> None:
    mode, rest = sys.argv[1], sys.argv[2:]
    outdir = rest[rest.index("--out") + 1]
    inputs = rest[: rest.index("--out")]
    lines = sum(sum(1 for _ in open(path)) for path in inputs)
    if mode == "fail":
        print("ERROR: calibration constants missing for run 42", file=sys.stderr)
        sys.exit(3)
    target = os.path.join(outdir, "count.txt")
    if mode == "kill-once":
        sandbox = os.environ["STRATOFLOW_SANDBOX"]
        marker = os.path.join(sandbox, "killed-" + os.path.basename(inputs[0]))
        if not os.path.exists(marker):
            open(marker, "w").close()
            with open(target, "w") as fh:  # a partial output, then sudden death
                fh.write("PARTIAL")
                fh.flush()
            os.kill(os.getpid(), signal.SIGKILL)
    with open(target, "w") as fh:
        fh.write(f"{lines}\n")
    print(f"{inputs}: {lines} lines")


if __name__ == "__main__":
    main()
