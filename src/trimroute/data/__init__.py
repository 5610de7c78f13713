"""Datasets mapped to problems (``datasets``) and answer grading with math-verify (``grading``)."""
