"""Batch scoring: files or SQL in, Parquet / SQL / Redis out, atomically, on any engine.

>>> from modelport.batch import JobSpec, run_job  # doctest: +SKIP
>>> run_job(JobSpec(ref="churn@production", input="s3://lake/customers/",
...                 output="s3://lake/scores/", keep=("customer_id",)))  # doctest: +SKIP
"""

from __future__ import annotations

from modelport.batch.job import BatchJob, JobSpec, Summary, run_job
from modelport.batch.parquet_sink import read_output

__all__ = ["BatchJob", "JobSpec", "Summary", "read_output", "run_job"]
