"""Instructor tools that never touch a submission: the skeleton generator, coverage and mutants,
calibration, charged-once, the student release, GitHub Classroom, the bundled examples, the
Gradescope image check."""
