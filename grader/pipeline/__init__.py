"""Grading submissions: unpack, run the notebook and the judge in the sandbox, score, write the feedback,
results.json and gradebooks; the TA's tools after the batch (class report, regrade, similarity, LMS)."""
