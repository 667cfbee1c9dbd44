"""The students' self-check: run a notebook on the bundled data and print the public checks.

Shipped in the student bundle (`grade.py student-bundle`) as the `selfcheck/` package beside
`selfcheck.py`; it runs on the student's own machine, so it needs nothing of the harness: no
sandbox, no reference, no hidden inputs. Only the checks a handout states (shapes, types, value
ranges, names) live here, in `public/<assignment>.py`; they run in the notebook's own kernel after
its last cell, on the student's own values and on small inputs made here.

    runner.py       outside the kernel: weights, the notebook run, the per-task table
    kernel_side.py  inside the kernel: `check`, `fail`, `need` and friends, and the check loop
    public/<a>.py   one assignment's public checks (executed after kernel_side.py, in its namespace)
"""
