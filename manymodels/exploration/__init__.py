"""Exploring jobs from Python: DataFrames in and out, and the HTML report of a job."""
