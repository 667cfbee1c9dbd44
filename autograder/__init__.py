"""The transfer-learning autograder.

The path of a grade, one module each:
    intake (submission files) -> sandbox + execution (student code, isolated)
    -> harvest/artefacts (safe formats) -> grading (pytest graders vs cached reference)
    -> verdicts -> reports (HTML, gradebook CSV, Gradescope results.json)
"""
